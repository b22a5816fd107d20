"""Redshift groups: CREATE/ALTER/DROP GROUP, and GROUP grantees in GRANT and REVOKE
(reference/redshift-sql-acl.md §2, §4).

A group is a PostgreSQL role named GROUP_ROLE_PREFIX + its name, so that groups and users (and
roles) may share names as in Redshift, and the mapping reads back; user and role names with
that prefix are refused. Membership is PostgreSQL role membership, so PostgreSQL enforces what
a group was granted. Pure: tokens and parse trees in, SQL out.
"""

from __future__ import annotations

import json

import pglast

from ..protocol import sqlstate
from .privileges import column_rules, default_privileges_call, grant_call, split_grant
from .signing import Signer, unsigned
from .tokens import Cursor, GrammarError, parse_tree, printed, scan

GROUP_ROLE_PREFIX = "grp:"
MAX_GROUP_BYTES = 63 - len(GROUP_ROLE_PREFIX)


def group_role(name: str) -> str:
    return GROUP_ROLE_PREFIX + name


def check_group_name(name: str) -> None:
    if not name:
        raise GrammarError("a group name cannot be empty")
    if name.startswith("__"):
        raise GrammarError(f'group name "{name}" is reserved (names beginning with "__" are)',
                           sqlstate.INVALID_PARAMETER_VALUE)
    if name == "public":
        raise GrammarError('group name "public" is reserved', sqlstate.INVALID_PARAMETER_VALUE)
    if len(name.encode()) > MAX_GROUP_BYTES:
        raise GrammarError(f"group names longer than {MAX_GROUP_BYTES} bytes are not supported",
                           sqlstate.INVALID_PARAMETER_VALUE)


def _names(cursor: Cursor, what: str) -> list[str]:
    names = [cursor.name(what)]
    while cursor.accept_symbol(","):
        names.append(cursor.name(what))
    return names


def parse_create_group(cursor: Cursor) -> tuple[str, list[str]]:
    """CREATE GROUP name [[WITH] USER u [, ...]] (CREATE GROUP consumed)."""
    name = cursor.name("group name")
    check_group_name(name)
    cursor.accept("WITH")
    users = _names(cursor, "user name") if cursor.accept("USER") else []
    cursor.end()
    return name, users


def parse_alter_group(cursor: Cursor) -> tuple[str, dict]:
    """ALTER GROUP name {ADD USER u, ... | DROP USER u, ... | RENAME TO new} (ALTER GROUP consumed)."""
    name = cursor.name("group name")
    if cursor.accept("ADD", "USER"):
        change = {"add": _names(cursor, "user name")}
    elif cursor.accept("DROP", "USER"):
        change = {"drop": _names(cursor, "user name")}
    elif cursor.accept("RENAME", "TO"):
        new = cursor.name("group name")
        check_group_name(new)
        change = {"rename_to": new}
    else:
        raise GrammarError("ALTER GROUP takes ADD USER, DROP USER or RENAME TO")
    cursor.end()
    return name, change


def parse_drop_group(cursor: Cursor) -> str:
    """DROP GROUP name (DROP GROUP consumed)."""
    name = cursor.name("group name")
    cursor.end()
    return name


def changes_json(change: dict) -> str:
    return json.dumps(change, separators=(",", ":"))


# --------------------------------------------------------------------------- GRANT / REVOKE


def rewrite_grant(statement: str, sign: Signer = unsigned) -> tuple[str | None, GrammarError | None]:
    """A GRANT, REVOKE or ALTER DEFAULT PRIVILEGES whose grantees say GROUP g: (the statement naming the groups' roles,
    or None when nothing changes; or the Redshift rule it breaks). Redshift-only privileges
    (DROP, ALTER, ...) and Redshift's column rules make it a call (policy/privileges.py)."""
    statement, role_starts = _strip_role_keywords(statement)
    tree = parse_tree(statement)
    node = outer = tree[0].stmt
    default_privileges = isinstance(node, pglast.ast.AlterDefaultPrivilegesStmt)
    if default_privileges:
        node = node.action  # ALTER DEFAULT PRIVILEGES [FOR USER u] [IN SCHEMA s] GRANT|REVOKE ...
    if not isinstance(node, pglast.ast.GrantStmt):
        return None, None  # GRANT role TO role: PostgreSQL checks ADMIN OPTION
    group_starts = _group_grantee_starts(statement)
    changed = False
    grantee_is_group = []
    for grantee in node.grantees or ():
        is_group = grantee.location in group_starts
        grantee_is_group.append(is_group)
        if is_group:
            if grantee.rolename is None:
                # GROUP PUBLIC, GROUP CURRENT_USER: PostgreSQL reads a noise word; for Redshift
                # it names a group, and none can have such a name (UNVERIFIED: the wording).
                spoken = {0: None, 1: "current_role", 2: "current_user", 3: "session_user", 4: "public"}
                name = spoken.get(int(grantee.roletype), "public")
                return None, GrammarError(f'group "{name}" does not exist', sqlstate.UNDEFINED_OBJECT)
            grantee.rolename = group_role(grantee.rolename)
            changed = True
    if node.is_grant and node.grant_option and any(grantee_is_group):
        return None, GrammarError("WITH GRANT OPTION cannot be granted to a group",
                                  sqlstate.INVALID_GRANT_OPERATION)
    if node.is_grant and node.grant_option and any(
            g.roletype != 0 or g.location in role_starts for g in node.grantees or ()):
        return None, GrammarError("WITH GRANT OPTION can be granted to users only",
                                  sqlstate.INVALID_GRANT_OPERATION)
    if not node.is_grant and node.behavior == 1:  # DROP_CASCADE
        return None, GrammarError("REVOKE ... CASCADE is not Redshift syntax; Redshift revokes with RESTRICT")
    if default_privileges:
        call = default_privileges_call(tree, outer, sign)
        return (call if call is not None else printed(tree) if changed or role_starts else None), None
    redshift_only = split_grant(node)
    checked = column_rules(tree, node)
    if redshift_only is not None:
        spec, objects = redshift_only
        postgres = checked or (printed(tree) if node.privileges is None or node.privileges else None)
        return grant_call(postgres, spec, objects), None
    if checked is not None:
        return checked, None
    return (printed(tree) if changed or role_starts else None), None


def _strip_role_keywords(statement: str) -> tuple[str, set[int]]:
    """Redshift writes role grantees as ROLE r (TO ROLE r, FROM ROLE r, ..., ROLE r); PostgreSQL
    has no keyword there. The keywords are blanked out (offsets kept) and the byte offsets of
    the role names returned."""
    tokens = scan(statement)
    starts = set()
    text = statement
    for before, token, after in zip(tokens, tokens[1:], tokens[2:]):
        if token.word == "ROLE" and (before.word in ("TO", "FROM") or before.text == ","):
            text = text[:token.start] + " " * (token.end - token.start) + text[token.end:]
            starts.add(len(statement[:after.start].encode()))
    return text, starts


def _group_grantee_starts(statement: str) -> set[int]:
    """Byte offsets (as the parse tree counts) of the names written right after GROUP."""
    starts = set()
    tokens = scan(statement)
    for before, token in zip(tokens, tokens[1:]):
        if before.word == "GROUP":
            starts.add(len(statement[:token.start].encode()))
    return starts
