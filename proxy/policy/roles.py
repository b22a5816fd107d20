"""Redshift RBAC roles: CREATE/ALTER/DROP ROLE, GRANT/REVOKE ROLE (reference §3). Pure grammar;
the private schema's procedures check who may do it. A role is a PostgreSQL role of the same
name (Redshift keeps role and user names apart, and so does PostgreSQL), and a grant of a role
is PostgreSQL role membership, so PostgreSQL enforces what a role was granted.

System roles (sys:superuser, sys:secadmin, sys:dba, sys:operator, sys:monitor) exist from the
start and are granted like any role, by superusers only; system permissions are granted to
roles (GRANT CREATE USER, DROP TABLE, ... TO ROLE r).
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


SYSTEM_ROLES = ("sys:superuser", "sys:secadmin", "sys:dba", "sys:operator", "sys:monitor")

# Grantable system permissions (reference §3), longest phrases first for matching.
SYSTEM_PERMISSIONS = tuple(sorted((
    "CREATE USER", "DROP USER", "ALTER USER", "CREATE ROLE", "DROP ROLE", "ALTER ROLE", "CREATE SCHEMA",
    "DROP SCHEMA", "ALTER DEFAULT PRIVILEGES", "ACCESS CATALOG", "ACCESS SYSTEM TABLE", "CREATE TABLE",
    "DROP TABLE", "ALTER TABLE", "TRUNCATE TABLE", "CREATE OR REPLACE FUNCTION",
    "CREATE OR REPLACE EXTERNAL FUNCTION", "DROP FUNCTION", "CREATE OR REPLACE PROCEDURE", "DROP PROCEDURE",
    "CREATE OR REPLACE VIEW", "DROP VIEW", "CREATE MODEL", "DROP MODEL", "CREATE DATASHARE", "ALTER DATASHARE",
    "DROP DATASHARE", "CREATE LIBRARY", "DROP LIBRARY", "ANALYZE", "CANCEL", "VACUUM", "IGNORE RLS",
    "EXPLAIN RLS", "EXPLAIN MASKING"), key=lambda p: -len(p.split())))


def _role_name(cursor: Cursor) -> str:
    name = cursor.name("role name")
    if name.startswith("ds:") or (name.startswith("sys:") and name not in SYSTEM_ROLES):
        raise GrammarError(f'role "{name}" does not exist', sqlstate.UNDEFINED_OBJECT)
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


def parse_system_grant(cursor: Cursor, granting: bool) -> dict | None:
    """GRANT {permission [, ...] | ALL [PRIVILEGES]} TO ROLE r [, ...] and the REVOKE ... FROM
    form (GRANT / REVOKE consumed); None when the statement is not one (an object grant)."""
    start = cursor.pos
    privileges: list[str] = []
    if cursor.accept("ALL"):
        cursor.accept("PRIVILEGES")
        privileges = list(SYSTEM_PERMISSIONS)
    else:
        while True:
            for phrase in SYSTEM_PERMISSIONS:
                if cursor.accept(*phrase.split()):
                    privileges.append(phrase)
                    break
            else:
                cursor.pos = start
                return None
            if not cursor.accept_symbol(","):
                break
    if not cursor.accept("TO" if granting else "FROM"):
        cursor.pos = start
        return None  # GRANT ALL ON t ..., GRANT CREATE ON SCHEMA s ...: object privileges
    roles = []
    while True:
        if not cursor.accept("ROLE"):
            raise GrammarError("system permissions are granted to roles only: TO ROLE name",
                               sqlstate.INVALID_GRANT_OPERATION)
        roles.append(_role_name(cursor))
        if not cursor.accept_symbol(","):
            break
    cursor.end()
    return {"privileges": privileges, "roles": roles}


def as_json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))
