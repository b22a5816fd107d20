"""Statement classification: which statements of a Query or Parse the proxy owns, and what each
becomes. Pure: SQL bytes in, a Plan out; no I/O, no session state.

Statements are found with PostgreSQL's own parser (pglast). The proxy owns the Redshift
statements PostgreSQL cannot express as such (here: CREATE/ALTER/DROP USER, which become calls
of the private schema's procedures, so PostgreSQL checks the caller in the same transaction).
Everything else is forwarded unchanged: the session's role is the user's own, so PostgreSQL
enforces its privileges. SQL that does not parse is forwarded too and PostgreSQL rejects it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from pglast import parser

from ..protocol import sqlstate
from ..protocol.auth import redshift_md5


@dataclass(frozen=True, slots=True)
class Denial:
    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """Statement `index`, bytes [start, end) of the SQL, becomes `sql` (command tag `tag`) or is denied."""

    index: int
    start: int
    end: int
    sql: bytes | None = None
    tag: bytes | None = None
    denial: Denial | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    # False when the plan must not be kept in a cache (it holds secrets or fresh salts).
    cacheable: bool = True


PASS = Plan()


class Translator:
    """What a statement handler needs from outside: a role's backend password verifier."""

    def __init__(self, backend_verifier: Callable[[str], str]):
        self.backend_verifier = backend_verifier


# Every statement a handler below owns contains one of these keywords. PostgreSQL's keywords
# are ASCII and case-insensitive and cannot be escaped or split, so SQL whose ASCII-lowered
# bytes contain none of them holds no owned statement and needs no parse. Only a shortcut:
# a hit means "parse and look", never a decision by itself.
_TRIGGER_WORDS = (b"user", b"role", b"group")


def may_need_plan(sql: bytes) -> bool:
    """False when sql certainly holds no statement the proxy owns (no parse needed)."""
    lowered = sql.lower()
    return any(word in lowered for word in _TRIGGER_WORDS)


def classify(sql: bytes, translator: Translator) -> Plan:
    """The plan for one Query or Parse SQL string."""
    if not may_need_plan(sql):
        return PASS
    try:
        text = sql.decode("utf-8")
        tree = json.loads(parser.parse_sql_json(text))
    except (UnicodeDecodeError, parser.ParseError, ValueError):
        return PASS  # PostgreSQL will refuse it with its own error
    actions = []
    cacheable = True
    for index, raw in enumerate(tree.get("stmts", ())):
        ((kind, node),) = raw["stmt"].items()
        handler = _HANDLERS.get(kind)
        if handler is None:
            continue
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0)
        end = start + length if length else len(sql)
        statement = sql[start:end]
        result = handler(node, statement, translator)
        if result is None:
            continue
        if isinstance(result, Denial):
            actions.append(Action(index, start, end, denial=result))
        else:
            replacement, tag = result
            actions.append(Action(index, start, end, sql=replacement, tag=tag))
        cacheable = False  # user statements carry passwords and fresh salts
    return Plan(tuple(actions), cacheable) if actions else PASS


# --------------------------------------------------------------------------- helpers


def sql_literal(value: str) -> str:
    """An escape-string literal, read the same whatever standard_conforming_strings says."""
    if "\0" in value:
        raise ValueError("NUL in SQL literal")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _leading_keywords(statement: bytes, count: int) -> list[str]:
    try:
        tokens = parser.scan(statement.decode())
    except parser.ParseError:
        return []
    words = [t.name for t in tokens if t.name not in ("C_COMMENT", "SQL_COMMENT")]
    return words[:count]


def _option_value(option: dict):
    arg = option.get("arg")
    if arg is None:
        return None
    ((kind, value),) = arg.items()
    return value.get("sval") if kind == "String" else value


_MD5_FORM = re.compile(r"md5[0-9a-f]{32}")
_FORBIDDEN_PASSWORD_CHARS = set("'\"\\/@ ")


def check_user_name(name: str) -> Denial | None:
    raw = name.encode()
    if not 1 <= len(raw) <= 127:
        return Denial(sqlstate.INVALID_PARAMETER_VALUE, "user name must be 1 to 127 bytes long")
    if name == "public":
        return Denial(sqlstate.INVALID_PARAMETER_VALUE, 'user name "public" is reserved')
    if name.startswith(("sys:", "ds:")):
        return Denial(sqlstate.INVALID_PARAMETER_VALUE,
                      f'user name "{name}" uses a reserved prefix (sys: and ds: are reserved)')
    return None


def password_to_md5(password: str, user: str) -> str | Denial:
    """A CREATE/ALTER USER password as Redshift stores it, or the rule it breaks.

    Redshift rules for a clear-text password (reference/redshift-sql-acl.md §1): 8 to 64
    characters, at least one upper-case letter, one lower-case letter and one digit, printable
    ASCII except ' " \\ / @ and space. 'md5<32 hex>' is taken as already hashed.
    """
    if _MD5_FORM.fullmatch(password):
        return password
    if password.startswith("SCRAM-SHA-256$"):
        return Denial(sqlstate.FEATURE_NOT_SUPPORTED, "SCRAM-SHA-256 password hashes are not supported",
                      hint="Redshift stores passwords as MD5: give the password in clear text or as "
                           "'md5' || md5(password || username)")
    if password.startswith("sha256|"):
        return Denial(sqlstate.FEATURE_NOT_SUPPORTED, "sha256 password hashes are not supported yet",
                      hint="give the password in clear text or as 'md5' || md5(password || username)")
    rule = None
    if not 8 <= len(password) <= 64:
        rule = "must be 8 to 64 characters long"
    elif not any(c.isupper() for c in password):
        rule = "must contain at least one upper-case letter"
    elif not any(c.islower() for c in password):
        rule = "must contain at least one lower-case letter"
    elif not any(c.isdigit() for c in password):
        rule = "must contain at least one digit"
    elif any(not 33 <= ord(c) <= 126 or c in _FORBIDDEN_PASSWORD_CHARS for c in password):
        rule = "may contain only printable ASCII characters other than ' \" \\ / @ and space"
    if rule:
        return Denial(sqlstate.INVALID_PARAMETER_VALUE, f"password {rule}")
    return redshift_md5(password, user)


# --------------------------------------------------------------------------- handlers

# A handler returns None (forward unchanged), a Denial, or (replacement SQL, command tag).
Result = Denial | tuple[bytes, bytes] | None


# PostgreSQL role attributes (LOGIN, PASSWORD, ...) would give a role a way into the backend
# that shiftguard does not control; Redshift's CREATE ROLE and ALTER ROLE have none of them.
_NOT_REDSHIFT_ROLE_SYNTAX = Denial(
    sqlstate.SYNTAX_ERROR, "role attributes are PostgreSQL syntax, not Redshift's",
    hint="Redshift: CREATE ROLE name; users are created and altered with CREATE USER and ALTER USER")


def _create_user(node: dict, statement: bytes, translator: Translator) -> Result:
    if node.get("stmt_type") != "ROLESTMT_USER":
        # CREATE ROLE / CREATE GROUP: Redshift RBAC and groups are not handled yet; PostgreSQL
        # checks CREATEROLE. Only a plain role, or a group with members, may pass.
        allowed = {"rolemembers"} if node.get("stmt_type") == "ROLESTMT_GROUP" else set()
        if any(o["DefElem"]["defname"] not in allowed for o in node.get("options", ())):
            return _NOT_REDSHIFT_ROLE_SYNTAX
        return None
    name = node["role"]
    if denial := check_user_name(name):
        return denial
    password = None
    superuser = False
    for option in node.get("options", ()):
        elem = option["DefElem"]
        if elem["defname"] == "password":
            password = _option_value(elem)
            if password is None:
                return Denial(sqlstate.SYNTAX_ERROR, "PASSWORD NULL is not Redshift syntax",
                              hint="use PASSWORD 'password' or PASSWORD DISABLE")
        elif elem["defname"] == "superuser":
            superuser = bool(_option_value(elem))
        else:
            return Denial(sqlstate.FEATURE_NOT_SUPPORTED,
                          f"CREATE USER option {elem['defname'].upper()} is not supported yet")
    if password is None:
        return Denial(sqlstate.SYNTAX_ERROR, "CREATE USER needs a PASSWORD clause",
                      hint="CREATE USER name PASSWORD 'password'")
    md5 = password_to_md5(password, name)
    if isinstance(md5, Denial):
        return md5
    sql = (f"CALL shiftguard.create_user({sql_literal(name)}, {sql_literal(md5)}, "
           f"{'true' if superuser else 'false'}, {sql_literal(translator.backend_verifier(name))})")
    return sql.encode(), b"CREATE USER"


def _alter_user(node: dict, statement: bytes, translator: Translator) -> Result:
    options = node.get("options", ())
    role = node["role"]
    if _leading_keywords(statement, 2)[1:] != ["USER"]:
        return _NOT_REDSHIFT_ROLE_SYNTAX  # ALTER ROLE|GROUP ... PASSWORD/LOGIN/VALID UNTIL/...
    if role.get("roletype") != "ROLESPEC_CSTRING":
        return Denial(sqlstate.FEATURE_NOT_SUPPORTED, "ALTER USER needs a user name")
    name = role["rolename"]
    if len(options) != 1 or options[0]["DefElem"]["defname"] != "password":
        names = ", ".join(o["DefElem"]["defname"].upper() for o in options)
        return Denial(sqlstate.FEATURE_NOT_SUPPORTED, f"ALTER USER {names} is not supported yet")
    password = _option_value(options[0]["DefElem"])
    if password is None:
        return Denial(sqlstate.SYNTAX_ERROR, "PASSWORD NULL is not Redshift syntax")
    md5 = password_to_md5(password, name)
    if isinstance(md5, Denial):
        return md5
    sql = f"CALL shiftguard.set_password({sql_literal(name)}, {sql_literal(md5)})"
    return sql.encode(), b"ALTER USER"


def _alter_user_other(node: dict, statement: bytes, translator: Translator) -> Result:
    if _leading_keywords(statement, 2)[1:] != ["USER"]:
        return _NOT_REDSHIFT_ROLE_SYNTAX  # ALTER ROLE ... SET
    return Denial(sqlstate.FEATURE_NOT_SUPPORTED, "this form of ALTER USER is not supported yet")


def _rename(node: dict, statement: bytes, translator: Translator) -> Result:
    if node.get("renameType") != "OBJECT_ROLE":
        return None
    return Denial(sqlstate.FEATURE_NOT_SUPPORTED, "renaming users is not supported yet")


def _drop_user(node: dict, statement: bytes, translator: Translator) -> Result:
    if _leading_keywords(statement, 2)[1:] != ["USER"]:
        return None  # DROP ROLE: PostgreSQL checks it
    names = []
    for spec in node.get("roles", ()):
        role = spec["RoleSpec"]
        if role.get("roletype") != "ROLESPEC_CSTRING":
            return Denial(sqlstate.FEATURE_NOT_SUPPORTED, "DROP USER needs user names")
        names.append(sql_literal(role["rolename"]))
    missing_ok = "true" if node.get("missing_ok") else "false"
    sql = f"CALL shiftguard.drop_users(ARRAY[{', '.join(names)}]::text[], {missing_ok})"
    return sql.encode(), b"DROP USER"


_HANDLERS: dict[str, Callable[[dict, bytes, Translator], Result]] = {
    "CreateRoleStmt": _create_user,
    "AlterRoleStmt": _alter_user,
    "AlterRoleSetStmt": _alter_user_other,
    "RenameStmt": _rename,
    "DropRoleStmt": _drop_user,
}
