"""Redshift RBAC roles: CREATE/ALTER/DROP ROLE, GRANT/REVOKE ROLE (reference §3). Pure grammar;
the private schema's procedures check who may do it. A role is a PostgreSQL role of the same
name (Redshift keeps role and user names apart, and so does PostgreSQL), and a grant of a role
is PostgreSQL role membership, so PostgreSQL enforces what a role was granted.

System roles (sys:*) and system permissions are not built yet: naming them gets a clear error.
"""

from __future__ import annotations

import json

from ..protocol import sqlstate
from .tokens import Cursor, GrammarError

NOT_REDSHIFT_ROLE_SYNTAX = "role attributes (LOGIN, PASSWORD, ...) are PostgreSQL syntax, not Redshift's"
_ROLE_HINT = ("Redshift: CREATE ROLE name [EXTERNALID id]; users are created and altered with "
              "CREATE USER and ALTER USER")


def check_role_name(name: str) -> None:
    if not name:
        raise GrammarError("a role name cannot be empty")
    if name.startswith(("sys:", "ds:")):
        raise GrammarError(f'role name "{name}" is reserved (sys: and ds: name system roles)',
                           sqlstate.INVALID_PARAMETER_VALUE)
    if any(c in name for c in ":/\n"):
        raise GrammarError(f'role name "{name}" may not contain ":", "/" or a newline',
                           sqlstate.INVALID_PARAMETER_VALUE)
    if name == "public":
        raise GrammarError('role name "public" is reserved', sqlstate.INVALID_PARAMETER_VALUE)
    if len(name.encode()) > 63:
        raise GrammarError("role names longer than 63 bytes are not supported", sqlstate.INVALID_PARAMETER_VALUE)


def _role_name(cursor: Cursor) -> str:
    name = cursor.name("role name")
    if name.startswith(("sys:", "ds:")):
        raise GrammarError(f'the system role "{name}" is not supported yet', sqlstate.FEATURE_NOT_SUPPORTED)
    return name


def _external_id(cursor: Cursor) -> str:
    token = cursor.peek()
    return cursor.string() if token is not None and token.name == "SCONST" else cursor.name("external id")


def parse_create_role(cursor: Cursor) -> tuple[str, str | None]:
    """CREATE ROLE name [EXTERNALID id] (CREATE ROLE consumed)."""
    name = cursor.name("role name")
    check_role_name(name)
    external_id = _external_id(cursor) if cursor.accept("EXTERNALID") else None
    if not cursor.at_end():
        raise GrammarError(NOT_REDSHIFT_ROLE_SYNTAX, hint=_ROLE_HINT)
    return name, external_id


def parse_alter_role(cursor: Cursor) -> tuple[str, dict]:
    """ALTER ROLE r [WITH] {RENAME TO r2 | OWNER TO u} [, ...] [EXTERNALID TO id]."""
    name = _role_name(cursor)
    cursor.accept("WITH")
    changes: dict = {}
    while not cursor.at_end():
        if cursor.accept("RENAME", "TO"):
            new = cursor.name("role name")
            check_role_name(new)
            changes["rename_to"] = new
        elif cursor.accept("OWNER", "TO"):
            changes["owner"] = cursor.name("user name")
        elif cursor.accept("EXTERNALID", "TO"):
            changes["external_id"] = _external_id(cursor)
        else:
            raise GrammarError(NOT_REDSHIFT_ROLE_SYNTAX, hint=_ROLE_HINT)
        cursor.accept_symbol(",")
    if not changes:
        raise GrammarError("ALTER ROLE takes RENAME TO, OWNER TO or EXTERNALID TO", hint=_ROLE_HINT)
    return name, changes


def parse_drop_role(cursor: Cursor) -> tuple[str, bool]:
    """DROP ROLE r [FORCE | RESTRICT] (DROP ROLE consumed); RESTRICT is the default."""
    name = _role_name(cursor)
    force = cursor.accept("FORCE")
    if not force:
        cursor.accept("RESTRICT")
    cursor.end()
    return name, force


def parse_role_grant(cursor: Cursor, granting: bool) -> dict:
    """GRANT ROLE r [, ROLE r2] TO {user | ROLE r3} [, ...] [WITH ADMIN OPTION]
    REVOKE [ADMIN OPTION FOR] ROLE r [, ...] FROM {user | ROLE r3} [, ...]
    (GRANT / REVOKE consumed; the cursor is at ROLE or ADMIN)."""
    admin_only = not granting and cursor.accept("ADMIN", "OPTION", "FOR")
    roles = []
    cursor.expect("ROLE")
    roles.append(_role_name(cursor))
    while cursor.accept_symbol(","):
        cursor.expect("ROLE")
        roles.append(_role_name(cursor))
    cursor.expect("TO" if granting else "FROM")
    grantees = []
    while True:
        is_role = cursor.accept("ROLE")
        grantees.append({"name": cursor.name("role name" if is_role else "user name"),
                         "kind": "role" if is_role else "user"})
        if not cursor.accept_symbol(","):
            break
    admin = granting and cursor.accept("WITH", "ADMIN", "OPTION")
    cursor.end()
    if admin and any(g["kind"] == "role" for g in grantees):
        raise GrammarError("WITH ADMIN OPTION applies to user grantees only", sqlstate.INVALID_GRANT_OPERATION)
    return {"roles": roles, "grantees": grantees, "admin": admin or admin_only}


def as_json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))
