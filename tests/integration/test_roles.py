"""Redshift RBAC roles through the proxy: what a role grant lets a user do, checked by doing it."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique

PASSWORD = "Secret123"


@pytest.fixture
def world(proxy, postgres):
    names = {"table": unique("t"), "r1": unique("r"), "r2": unique("r"), "alice": unique("u"), "bob": unique("u")}
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {names['table']} (a int)")
        admin.execute(f"INSERT INTO {names['table']} VALUES (7)")
        for user in ("alice", "bob"):
            admin.execute(f"CREATE USER {names[user]} PASSWORD '{PASSWORD}'")
        for role in ("r1", "r2"):
            admin.execute(f"CREATE ROLE {names[role]}")
    yield names
    with proxy.connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {names['table']}")
        for role in admin.execute("SELECT role_name FROM svv_roles").fetchall():
            if role[0] in names.values():
                admin.execute(f"DROP ROLE {role[0]} FORCE")
        admin.execute(f"DROP USER IF EXISTS {names['alice']}, {names['bob']}")


def can_read(proxy, user: str, table: str) -> bool:
    with proxy.connect(user, PASSWORD) as conn:
        try:
            return conn.execute(f"SELECT a FROM {table}").fetchone() == (7,)
        except psycopg.errors.InsufficientPrivilege:
            return False


def test_role_grants_reach_users_and_nest(proxy, world):
    t, r1, r2, alice, bob = (world[k] for k in ("table", "r1", "r2", "alice", "bob"))
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO ROLE {r1}")
        cur = admin.execute(f"GRANT ROLE {r1} TO ROLE {r2}")
        assert cur.statusmessage == "GRANT"
        admin.execute(f"GRANT ROLE {r2} TO {alice}")
    assert can_read(proxy, alice, t)  # alice -> r2 -> r1 -> SELECT
    assert not can_read(proxy, bob, t)
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.InvalidGrantOperation):
            admin.execute(f"GRANT ROLE {r2} TO ROLE {r1}")  # a cycle
        admin.execute(f"REVOKE ROLE {r1} FROM ROLE {r2}")
    assert not can_read(proxy, alice, t)


def test_admin_option_lets_a_user_grant_the_role(proxy, world):
    t, r1, alice, bob = (world[k] for k in ("table", "r1", "alice", "bob"))
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO ROLE {r1}")
        admin.execute(f"GRANT ROLE {r1} TO {alice}")
    with proxy.connect(alice, PASSWORD) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"GRANT ROLE {r1} TO {bob}")
    with proxy.connect() as admin:
        admin.execute(f"GRANT ROLE {r1} TO {alice} WITH ADMIN OPTION")
        assert admin.execute("SELECT admin_option FROM svv_user_grants WHERE user_name = %s AND role_name = %s",
                             (alice, r1)).fetchone() == (True,)
    with proxy.connect(alice, PASSWORD) as conn:
        conn.execute(f"GRANT ROLE {r1} TO {bob}")
    assert can_read(proxy, bob, t)
    with proxy.connect() as admin:
        admin.execute(f"REVOKE ADMIN OPTION FOR ROLE {r1} FROM {alice}")
    with proxy.connect(alice, PASSWORD) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"REVOKE ROLE {r1} FROM {bob}")


def test_drop_role_restrict_and_force(proxy, world):
    r1, r2, alice = world["r1"], world["r2"], world["alice"]
    with proxy.connect() as admin:
        admin.execute(f"GRANT ROLE {r1} TO {alice}")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist,
                           match="cannot drop this role since it has been granted on a user"):
            admin.execute(f"DROP ROLE {r1}")
        admin.execute(f"GRANT ROLE {r2} TO ROLE {r1}")
        admin.execute(f"REVOKE ROLE {r1} FROM {alice}")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="depends on another role"):
            admin.execute(f"DROP ROLE {r1} RESTRICT")
        cur = admin.execute(f"DROP ROLE {r1} FORCE")
        assert cur.statusmessage == "DROP ROLE"
        assert admin.execute("SELECT count(*) FROM svv_roles WHERE role_name = %s", (r1,)).fetchone() == (0,)


def test_alter_role_and_catalog_views(proxy, world):
    t, r1, r2, alice = (world[k] for k in ("table", "r1", "r2", "alice"))
    renamed = unique("r")
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO ROLE {r1}")
        admin.execute(f"GRANT ROLE {r1} TO {alice}")
        admin.execute(f"ALTER ROLE {r1} RENAME TO {renamed}, OWNER TO {alice} EXTERNALID TO 'ext-1'")
        world["r1"] = renamed
        assert admin.execute("SELECT role_owner, external_id FROM svv_roles WHERE role_name = %s",
                             (renamed,)).fetchone() == (alice, "ext-1")
        admin.execute(f"GRANT ROLE {r2} TO ROLE {renamed}")
        assert admin.execute("SELECT granted_role_name FROM svv_role_grants WHERE role_name = %s",
                             (renamed,)).fetchall() == [(r2,)]
    assert can_read(proxy, alice, t)  # grants follow the rename
    with proxy.connect(alice, PASSWORD) as conn:  # alice sees what she was granted, and owns
        assert conn.execute("SELECT user_name, role_name FROM svv_user_grants").fetchall() == [(alice, renamed)]
        assert {r[0] for r in conn.execute("SELECT role_name FROM svv_roles").fetchall()} == {renamed, r2}


@pytest.mark.parametrize("statement, error, fragment", [
    ("CREATE ROLE {alice}", psycopg.errors.DuplicateObject, "a user has that name"),
    ("CREATE ROLE x LOGIN", psycopg.errors.SyntaxError, "PostgreSQL syntax"),
    ("GRANT ROLE nosuchrole TO {alice}", psycopg.errors.UndefinedObject, 'role "nosuchrole" does not exist'),
    ("GRANT ROLE {r1} TO ROLE {r2} WITH ADMIN OPTION", psycopg.errors.InvalidGrantOperation, "user grantees only"),
    ("GRANT SELECT ON {table} TO ROLE {r1} WITH GRANT OPTION", psycopg.errors.InvalidGrantOperation, "users only"),
    ("GRANT ROLE sys:nope TO {alice}", psycopg.errors.UndefinedObject, 'role "sys:nope" does not exist'),
    ("GRANT CREATE USER TO {alice}", psycopg.errors.InvalidGrantOperation, "to roles only"),
    ("DROP ROLE sys:dba", psycopg.errors.InsufficientPrivilege, "cannot be dropped"),
])
def test_role_errors(proxy, world, statement, error, fragment):
    with proxy.connect() as admin, pytest.raises(error, match=fragment):
        admin.execute(statement.format(**world))


def test_only_role_admins_manage_roles(proxy, world):
    with proxy.connect(world["bob"], PASSWORD) as conn:
        for statement in (f"CREATE ROLE {unique('r')}", f"DROP ROLE {world['r1']}",
                          f"ALTER ROLE {world['r1']} RENAME TO x{world['r1']}", f"GRANT ROLE {world['r1']} TO {world['bob']}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_system_permissions_through_roles(proxy, world):
    r1, alice, bob = world["r1"], world["alice"], world["bob"]
    victim = unique("u")
    with proxy.connect() as admin:
        cur = admin.execute(f"GRANT CREATE USER, DROP USER TO ROLE {r1}")
        assert cur.statusmessage == "GRANT"
        admin.execute(f"GRANT ROLE {r1} TO {alice}")
        assert admin.execute("SELECT system_privilege FROM svv_system_privileges WHERE identity_name = %s "
                             "ORDER BY 1", (r1,)).fetchall() == [("CREATE USER",), ("DROP USER",)]
    with proxy.connect(alice, PASSWORD) as conn:
        conn.execute(f"CREATE USER {victim} PASSWORD '{PASSWORD}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only a superuser can create a superuser"):
            conn.execute(f"CREATE USER x{victim} PASSWORD '{PASSWORD}' CREATEUSER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # ALTER USER was not granted
            conn.execute(f"ALTER USER {victim} CONNECTION LIMIT 3")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor the superuser's own power
            conn.execute("DROP USER awsuser")
        conn.execute(f"DROP USER {victim}")
    with proxy.connect() as admin:
        admin.execute(f"REVOKE DROP USER FROM ROLE {r1}")
    with proxy.connect(alice, PASSWORD) as conn:
        conn.execute(f"CREATE USER {victim} PASSWORD '{PASSWORD}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DROP USER {victim}")
    with proxy.connect() as admin:
        admin.execute(f"DROP USER {victim}")
    with proxy.connect(bob, PASSWORD) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"CREATE USER {victim} PASSWORD '{PASSWORD}'")


def test_sys_secadmin_manages_users_and_roles_but_reads_no_tables(proxy, world):
    t, alice = world["table"], world["alice"]
    made = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"GRANT ROLE sys:secadmin TO {alice}")
    try:
        with proxy.connect(alice, PASSWORD) as conn:
            conn.execute(f"CREATE USER {made} PASSWORD '{PASSWORD}'")
            conn.execute(f"GRANT ROLE {world['r1']} TO {made}")
            conn.execute(f"DROP USER {made}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"GRANT ROLE sys:superuser TO {alice}")  # system roles: superusers only
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {t}")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"REVOKE ROLE sys:secadmin FROM {alice}")
