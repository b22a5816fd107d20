"""Redshift's CREATE USER, ALTER USER and DROP USER: grammar, rules, and the procedure call
each becomes (reference/redshift-sql-acl.md §1).

Parsing and the rules that need no state (password form and strength, name, ranges, option
combinations) happen here; who may do it, and what depends on other users, is checked by the
private schema's procedures inside the caller's transaction (catalog/schema.sql).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import scramp

from ..protocol import sqlstate
from ..protocol.auth import redshift_md5, scram_verifier
from . import encoding
from .identifiers import long_name_among
from .tokens import Cursor, GrammarError, fold_identifier, string_value

# PostgreSQL truncates names at 63 bytes (NAMEDATALEN); Redshift allows 127, which reach here as
# their short names (policy/identifiers.py). A longer one cannot be a role: refused, not cut.
MAX_NAME_BYTES = 63
SESSION_TIMEOUT_RANGE = (60, 1_728_000)
_FORBIDDEN_PASSWORD_CHARS = set("'\"\\/@")


@dataclass
class Password:
    """The stored forms of one PASSWORD clause ({} = DISABLE)."""

    verifiers: dict[str, str] = field(default_factory=dict)

    @property
    def disabled(self) -> bool:
        return not self.verifiers


def check_user_name(name: str) -> None:
    raw = name.encode()
    if not raw:
        raise GrammarError("a user name cannot be empty")
    if len(raw) > MAX_NAME_BYTES:
        raise GrammarError(f"user name is {len(raw)} bytes long; names longer than {MAX_NAME_BYTES} bytes "
                           f"are not supported (PostgreSQL's limit)", sqlstate.INVALID_PARAMETER_VALUE)
    if name == "public":
        raise GrammarError('user name "public" is reserved', sqlstate.INVALID_PARAMETER_VALUE)
    if name.startswith(("sys:", "ds:")):
        raise GrammarError(f'user name "{name}" uses a reserved prefix (sys: and ds: are reserved)',
                           sqlstate.INVALID_PARAMETER_VALUE)
    if name.startswith("grp:"):
        raise GrammarError(f'user name "{name}" is reserved: names starting with "grp:" stand for groups',
                           sqlstate.INVALID_PARAMETER_VALUE)
    if name.startswith("pg_"):
        raise GrammarError(f'user name "{name}" is reserved: names starting with "pg_" belong to PostgreSQL',
                           sqlstate.INVALID_PARAMETER_VALUE)


def password_rule_broken(password: str, *, beyond_ascii: bool = False) -> str | None:
    """Redshift's rules for a clear-text password: 8 to 64 characters, an upper-case letter, a
    lower-case letter and a digit, printable ASCII (33-126) other than ' " \\ / @.
    beyond_ascii: printable characters past ASCII allowed too (the 'sha256|...' form)."""
    if not 8 <= len(password) <= 64:
        return "must be 8 to 64 characters long"
    if not any("A" <= c <= "Z" for c in password):
        return "must contain at least one upper-case letter"
    if not any("a" <= c <= "z" for c in password):
        return "must contain at least one lower-case letter"
    if not any("0" <= c <= "9" for c in password):
        return "must contain at least one digit"
    if beyond_ascii:
        if any(c in _FORBIDDEN_PASSWORD_CHARS or not c.isprintable() or c.isspace() for c in password):
            return "may contain only printable characters other than ' \" \\ / @ and spaces"
    elif any(not 33 <= ord(c) <= 126 or c in _FORBIDDEN_PASSWORD_CHARS for c in password):
        return "may contain only printable ASCII characters other than ' \" \\ / @ and space"
    return None


def _hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdefABCDEF" for c in value)


def sha256_digest(password: str, salt: bytes) -> str:
    """Redshift's SHA-256 stored form: SHA256(password || salt); the salt is raw bytes (the 64
    hex digits of 'sha256|digest|salt' decoded), the same bytes the digest exchange (auth code
    13) sends to the client. UNVERIFIED against a real cluster: the documentation's example does
    not name its password; redshift_connector computes exactly this over the salt it receives."""
    return hashlib.sha256(password.encode() + salt).hexdigest()


def parse_password(value: str, user: str) -> Password:
    """One PASSWORD '...' value -> the verifiers to store."""
    if value.startswith("md5") and len(value) == 35:
        # Redshift checks only the form of an MD5 hash, not the password behind it.
        return Password({"md5": value.lower()})
    if value.startswith("sha256|"):
        parts = value.split("|")
        if len(parts) == 3:
            digest, salt = parts[1], parts[2]
            if not (_hex(digest, 64) and _hex(salt, 64)):
                raise GrammarError("a sha256 password must be 'sha256|<64 hex digest>|<64 hex salt>'",
                                   sqlstate.INVALID_PARAMETER_VALUE)
            return Password({"sha256": digest.lower(), "salt": salt.lower()})
        # Redshift's documentation puts its character rules on passwords given "in clear text";
        # this form is "another secure alternative", and AWS's own driver tests create a user
        # with 'sha256|My_sha256_PaSsWoRd' and a U+017D on a cluster and log in with it (their
        # test_connection.py, test_auth_req_digest). So characters past ASCII are taken here (as
        # UTF-8, the bytes redshift_connector hashes); the length, and the letters and digit it
        # must hold, are still asked for (UNVERIFIED whether Redshift asks).
        clear = value[len("sha256|"):]
        _check_clear(clear, beyond_ascii=True)
        salt = secrets.token_bytes(32)
        try:
            scram = scram_verifier(clear)
        except scramp.ScramException:  # SASLprep refuses it (mixed right-to-left text, ...)
            raise GrammarError("password is refused by SASLprep, which SCRAM logins need (right-to-left "
                               "letters mixed with others)", sqlstate.INVALID_PARAMETER_VALUE) from None
        return Password({"sha256": sha256_digest(clear, salt), "salt": salt.hex(), "scram": scram})
    if value.startswith("SCRAM-SHA-256$"):
        raise GrammarError("SCRAM-SHA-256 password hashes are not supported", sqlstate.FEATURE_NOT_SUPPORTED,
                           hint="Redshift stores passwords as MD5 or SHA-256: give the password in clear text, "
                                "as 'md5' || md5(password || username) or as 'sha256|...'")
    return clear_password(value, user)


def clear_password(value: str, user: str) -> Password:
    """A clear-text password (Redshift's rules checked) -> its verifiers, as ALTER USER stores them."""
    _check_clear(value)
    return Password({"md5": redshift_md5(value, user), "scram": scram_verifier(value)})


def _check_clear(password: str, *, beyond_ascii: bool = False) -> None:
    if rule := password_rule_broken(password, beyond_ascii=beyond_ascii):
        raise GrammarError(f"password {rule}", sqlstate.INVALID_PARAMETER_VALUE)


# --------------------------------------------------------------------------- statements


@dataclass
class UserSpec:
    """The options of a CREATE USER or ALTER USER; None means 'not given'."""

    password: Password | None = None
    superuser: bool | None = None
    createdb: bool | None = None
    syslog_unrestricted: bool | None = None
    groups: list[str] | None = None
    valid_until: str | None = None
    connection_limit: int | None = None    # -1: UNLIMITED
    session_timeout: int | None = None     # 0: RESET SESSION TIMEOUT
    external_id: str | None = None
    rename_to: str | None = None
    set_parameters: dict[str, str | None] = field(default_factory=dict)  # None: DEFAULT / RESET

    def as_json(self, backend_verifier: Callable[[str], str], name: str, *, creating: bool) -> str:
        """The procedure argument. A new role, or a renamed one, gets its backend verifier
        (the backend password is derived from the role name)."""
        out: dict = {}
        if self.password is not None:
            out["password"] = self.password.verifiers
        for key in ("superuser", "createdb", "syslog_unrestricted", "groups", "valid_until",
                    "connection_limit", "session_timeout", "external_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.rename_to is not None:
            out["rename_to"] = self.rename_to
            out["backend_verifier"] = backend_verifier(self.rename_to)
        elif creating:
            out["backend_verifier"] = backend_verifier(name)
        if self.set_parameters:
            out["parameters"] = self.set_parameters
        return json.dumps(out, separators=(",", ":"))


def _option(cursor: Cursor, spec: UserSpec, user: str, *, altering: bool) -> None:
    """One Redshift user option at the cursor, into spec."""
    def once(attr: str, value) -> None:
        if getattr(spec, attr) not in (None, {}):
            raise GrammarError("conflicting or redundant options")
        setattr(spec, attr, value)

    if cursor.accept("PASSWORD"):
        once("password", Password() if cursor.accept("DISABLE") else parse_password(cursor.string("password"), user))
        if cursor.accept("VALID", "UNTIL"):
            once("valid_until", cursor.string("time stamp"))
    elif cursor.accept("CREATEDB"):
        once("createdb", True)
    elif cursor.accept("NOCREATEDB"):
        once("createdb", False)
    elif cursor.accept("CREATEUSER"):
        once("superuser", True)
    elif cursor.accept("NOCREATEUSER"):
        once("superuser", False)
    elif cursor.accept("SYSLOG", "ACCESS"):
        if cursor.accept("RESTRICTED"):
            once("syslog_unrestricted", False)
        else:
            cursor.expect("UNRESTRICTED")
            once("syslog_unrestricted", True)
    elif not altering and cursor.accept("IN", "GROUP"):
        groups = [cursor.name("group name")]
        while cursor.accept_symbol(","):
            groups.append(cursor.name("group name"))
        once("groups", groups)
    elif cursor.accept("VALID", "UNTIL"):
        once("valid_until", cursor.string("time stamp"))
    elif cursor.accept("CONNECTION", "LIMIT"):
        once("connection_limit", -1 if cursor.accept("UNLIMITED") else cursor.integer("connection limit"))
    elif cursor.accept("SESSION", "TIMEOUT"):
        seconds = cursor.integer("number of seconds")
        low, high = SESSION_TIMEOUT_RANGE
        if not low <= seconds <= high:
            raise GrammarError(f"session timeout must be between {low} and {high} seconds",
                               sqlstate.INVALID_PARAMETER_VALUE)
        once("session_timeout", seconds)
    elif cursor.accept("EXTERNALID"):
        token = cursor.peek()
        once("external_id", cursor.string() if token is not None and token.name == "SCONST" else cursor.name("external id"))
    elif altering and cursor.accept("RESET", "SESSION", "TIMEOUT"):
        once("session_timeout", 0)
    elif altering and cursor.accept("RENAME", "TO"):
        new = cursor.name("user name")
        check_user_name(new)
        once("rename_to", new)
    elif altering and cursor.accept("SET"):
        parameter = cursor.name("parameter")
        if not (cursor.accept("TO") or cursor.accept_symbol("=")):
            raise GrammarError("syntax error: expected TO or = after the parameter name")
        if cursor.accept("DEFAULT"):
            value = None
        else:
            token = cursor.next()
            if token.name == "SCONST":
                value = string_value(token)
            elif token.name == "UIDENT":  # a name holding non-ASCII characters, as the proxy sends it
                value = fold_identifier(token)
            elif token.name in ("ICONST", "FCONST") or token.kind != "NO_KEYWORD" or token.name == "IDENT":
                value = token.text if token.name != "IDENT" else token.text.strip('"')
            else:
                raise GrammarError(f'syntax error at or near "{token.text}"')
        if parameter.lower() == "client_encoding" and value is not None and not encoding.is_utf8(value):
            # Harmless (a session's startup client_encoding, always UTF8, overrides it), but said
            raise GrammarError(encoding.refusal(value), sqlstate.FEATURE_NOT_SUPPORTED, hint=encoding.HINT)
        spec.set_parameters[parameter] = value
    elif altering and cursor.accept("RESET"):
        spec.set_parameters[cursor.name("parameter")] = None
    else:
        token = cursor.peek()
        raise GrammarError(f'syntax error at or near "{token.text}": not a Redshift '
                           f'{"ALTER" if altering else "CREATE"} USER option',
                           hint="see CREATE USER / ALTER USER in the Amazon Redshift Database Developer Guide")


def _check_combination(spec: UserSpec, *, creating: bool) -> None:
    if creating and spec.password is None:
        raise GrammarError("CREATE USER needs a PASSWORD clause",
                           hint="CREATE USER name PASSWORD { 'password' | 'md5hash' | 'sha256hash' | DISABLE }")
    if spec.external_id is not None and creating and not spec.password.disabled:
        raise GrammarError("EXTERNALID needs PASSWORD DISABLE", sqlstate.INVALID_PARAMETER_VALUE)
    if spec.connection_limit is not None and spec.connection_limit < -1:
        raise GrammarError("connection limit must be a number of connections or UNLIMITED",
                           sqlstate.INVALID_PARAMETER_VALUE)
    if spec.rename_to is not None and (spec.password is not None or spec.set_parameters or any(
            getattr(spec, k) is not None for k in ("superuser", "createdb", "syslog_unrestricted",
                                                   "valid_until", "connection_limit", "session_timeout",
                                                   "external_id"))):
        raise GrammarError("RENAME TO cannot be combined with other options")


def parse_create_user(cursor: Cursor, long_names: frozenset[str] = frozenset()) -> tuple[str, UserSpec]:
    """CREATE USER name [WITH] PASSWORD ... [option ...] (CREATE USER already consumed). A
    password's MD5 is salted with the name the user logs in with: a long name (one of
    long_names, the statement's), not the short one the role has."""
    name = cursor.name("user name")
    check_user_name(name)
    cursor.accept("WITH")
    spec = UserSpec()
    while not cursor.at_end():
        _option(cursor, spec, long_name_among(name, long_names), altering=False)
    _check_combination(spec, creating=True)
    return name, spec


def parse_alter_user(cursor: Cursor, long_names: frozenset[str] = frozenset()) -> tuple[str, UserSpec]:
    """ALTER USER name [WITH] option [[,] option ...] (ALTER USER already consumed; long_names
    as parse_create_user's)."""
    name = cursor.name("user name")
    cursor.accept("WITH")
    spec = UserSpec()
    if cursor.at_end():
        raise GrammarError("ALTER USER needs an option")
    while not cursor.at_end():
        _option(cursor, spec, long_name_among(name, long_names), altering=True)
        cursor.accept_symbol(",")  # UNVERIFIED whether Redshift separates options by commas; both read
    _check_combination(spec, creating=False)
    return name, spec


def parse_drop_user(cursor: Cursor) -> tuple[list[str], bool]:
    """DROP USER [IF EXISTS] name [, ...] (DROP USER already consumed)."""
    missing_ok = cursor.accept("IF", "EXISTS")
    names = [cursor.name("user name")]
    while cursor.accept_symbol(","):
        names.append(cursor.name("user name"))
    if cursor.accept("CASCADE") or cursor.accept("RESTRICT"):
        raise GrammarError("DROP USER takes no CASCADE or RESTRICT in Redshift")
    cursor.end()
    return names, missing_ok
