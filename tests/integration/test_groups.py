"""Redshift groups through the proxy: membership decides what PostgreSQL lets a user do."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique

PASSWORD = "Secret123"


@pytest.fixture
def world(proxy, postgres):
    """A table, a group, a member and an outsider; all removed afterwards."""
    names = {"table": unique("t"), "group": unique("g"), "member": unique("u"), "outsider": unique("u")}
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {names['table']} (a int)")
        admin.execute(f"INSERT INTO {names['table']} VALUES (7)")
        for user in ("member", "outsider"):
            admin.execute(f"CREATE USER {names[user]} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE GROUP {names['group']} WITH USER {names['member']}")
    yield names
    with proxy.connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {names['table']}")
        if admin.execute("SELECT 1 FROM pg_group WHERE groname = %s", (names["group"],)).fetchone():
            admin.execute(f"DROP GROUP {names['group']}")
        admin.execute(f"DROP USER IF EXISTS {names['member']}, {names['outsider']}")


def can_read(proxy, user: str, table: str) -> bool:
    with proxy.connect(user, PASSWORD) as conn:
        try:
            return conn.execute(f"SELECT a FROM {table}").fetchone() == (7,)
        except psycopg.errors.InsufficientPrivilege as exc:
            assert str(exc).startswith(f"permission denied for relation {table}")
            return False


def test_grant_to_group_reaches_members_only(proxy, world):
    t, g = world["table"], world["group"]
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO GROUP {g}")
    assert can_read(proxy, world["member"], t)
    assert not can_read(proxy, world["outsider"], t)
    with proxy.connect() as admin:
        admin.execute(f"ALTER GROUP {g} ADD USER {world['outsider']}")
        admin.execute(f"ALTER GROUP {g} DROP USER {world['member']}")
    assert can_read(proxy, world["outsider"], t)
    assert not can_read(proxy, world["member"], t)
    with proxy.connect() as admin:
        admin.execute(f"REVOKE SELECT ON {t} FROM GROUP {g}")
    assert not can_read(proxy, world["outsider"], t)


def test_in_group_at_create_user_and_pg_group(proxy, world):
    t, g = world["table"], world["group"]
    late = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO GROUP {g}")
        admin.execute(f"CREATE USER {late} PASSWORD '{PASSWORD}' IN GROUP {g}")
        members = admin.execute("SELECT grolist FROM pg_group WHERE groname = %s", (g,)).fetchone()[0]
        ids = dict(admin.execute("SELECT usename, usesysid FROM pg_user").fetchall())
    try:
        assert sorted(members) == sorted([ids[world["member"]], ids[late]])
        assert can_read(proxy, late, t)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {late}")


def test_groups_and_users_may_share_a_name(proxy, world):
    shared = unique("same")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {shared} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE GROUP {shared} WITH USER {world['member']}")
        admin.execute(f"GRANT SELECT ON {world['table']} TO GROUP {shared}")
    try:
        assert can_read(proxy, world["member"], world["table"])
        assert not can_read(proxy, shared, world["table"])  # the user of that name is not the group
    finally:
        with proxy.connect() as admin:
            admin.execute(f"REVOKE SELECT ON {world['table']} FROM GROUP {shared}")
            admin.execute(f"DROP GROUP {shared}")
            admin.execute(f"DROP USER {shared}")


def test_rename_keeps_grants_and_drop_refuses_while_privileged(proxy, world):
    t, g = world["table"], world["group"]
    renamed = unique("g")
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO GROUP {g}")
        admin.execute(f"ALTER GROUP {g} RENAME TO {renamed}")
    world["group"] = renamed
    assert can_read(proxy, world["member"], t)
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.ObjectInUse,
                           match=f'group "{renamed}" can\'t be dropped because the group has a privilege on some object'):
            admin.execute(f"DROP GROUP {renamed}")
        admin.execute(f"REVOKE SELECT ON {t} FROM GROUP {renamed}")
        cur = admin.execute(f"DROP GROUP {renamed}")
        assert cur.statusmessage == "DROP GROUP"
        assert admin.execute("SELECT count(*) FROM pg_group WHERE groname = %s", (renamed,)).fetchone() == (0,)


@pytest.mark.parametrize("statement, error, fragment", [
    ("GRANT SELECT ON {t} TO GROUP {g} WITH GRANT OPTION", psycopg.errors.InvalidGrantOperation,
     "cannot be granted to a group"),
    ("REVOKE SELECT ON {t} FROM GROUP {g} CASCADE", psycopg.errors.SyntaxError, "CASCADE"),
    ("GRANT SELECT ON {t} TO GROUP nosuchgroup", psycopg.errors.UndefinedObject, 'group "nosuchgroup" does not exist'),
    ("CREATE GROUP {g}", psycopg.errors.DuplicateObject, "already exists"),
    ("CREATE GROUP __reserved", psycopg.errors.InvalidParameterValue, "reserved"),
    ("ALTER GROUP {g} ADD USER nosuchuser", psycopg.errors.UndefinedObject, 'user "nosuchuser" does not exist'),
])
def test_group_errors_leave_the_transaction_aborted(proxy, world, statement, error, fragment):
    with proxy.connect() as admin:
        admin.execute("BEGIN")
        with pytest.raises(error, match=fragment):
            admin.execute(statement.format(t=world["table"], g=world["group"]))
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            admin.execute("SELECT 1")
        admin.execute("ROLLBACK")


def test_only_superusers_manage_groups(proxy, world):
    with proxy.connect(world["outsider"], PASSWORD) as conn:
        for statement in (f"CREATE GROUP {unique('g')}", f"ALTER GROUP {world['group']} ADD USER {world['outsider']}",
                          f"DROP GROUP {world['group']}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_default_privileges_for_user_reach_the_group(proxy, world):
    owner = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {owner} PASSWORD '{PASSWORD}'")
        admin.execute(f"ALTER DEFAULT PRIVILEGES FOR USER {owner} GRANT SELECT ON TABLES TO GROUP {world['group']}")
    later = unique("t")
    try:
        with proxy.connect(owner, PASSWORD) as conn:
            conn.execute(f"CREATE TABLE {later} (a int)")
            conn.execute(f"INSERT INTO {later} VALUES (7)")
        assert can_read(proxy, world["member"], later)
        assert not can_read(proxy, world["outsider"], later)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE {later}")
            admin.execute(f"ALTER DEFAULT PRIVILEGES FOR USER {owner} REVOKE SELECT ON TABLES FROM GROUP {world['group']}")
            admin.execute(f"DROP USER {owner}")


def test_superuser_tests_access_with_set_session_authorization(proxy, world):
    t = world["table"]
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO GROUP {world['group']}")
        admin.execute(f"SET SESSION AUTHORIZATION {world['outsider']}")
        assert admin.execute("SELECT current_user").fetchone() == (world["outsider"],)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {t}"):
            admin.execute(f"SELECT * FROM {t}")
        admin.execute("RESET SESSION AUTHORIZATION")
        admin.execute(f"SET SESSION AUTHORIZATION {world['member']}")
        assert admin.execute(f"SELECT a FROM {t}").fetchone() == (7,)
        admin.execute("RESET SESSION AUTHORIZATION")
        assert admin.execute("SELECT current_user").fetchone() == ("awsuser",)
    with proxy.connect(world["outsider"], PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SET SESSION AUTHORIZATION {world['member']}")


def test_privilege_views_show_grants_by_identity_with_visibility(proxy, world):
    t, g = world["table"], world["group"]
    schema = unique("s")
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {t} TO GROUP {g}")
        admin.execute(f"GRANT INSERT, UPDATE ON {t} TO {world['outsider']} WITH GRANT OPTION")
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO GROUP {g}")
        rows = admin.execute("SELECT privilege_type, identity_name, identity_type, admin_option "
                             "FROM svv_relation_privileges WHERE relation_name = %s ORDER BY 1, 2", (t,)).fetchall()
        assert rows == [("INSERT", world["outsider"], "user", True), ("SELECT", g, "group", False),
                        ("UPDATE", world["outsider"], "user", True)]
        assert admin.execute("SELECT privilege_type, identity_name, identity_type FROM svv_schema_privileges "
                             "WHERE namespace_name = %s", (schema,)).fetchall() == [("USAGE", g, "group")]
    with proxy.connect(world["member"], PASSWORD) as conn:  # sees its group's rows, not the outsider's
        assert conn.execute("SELECT privilege_type, identity_name FROM svv_relation_privileges "
                            "WHERE relation_name = %s", (t,)).fetchall() == [("SELECT", g)]
    with proxy.connect() as admin:
        admin.execute(f"REVOKE ALL ON {t} FROM GROUP {g}")
        admin.execute(f"REVOKE ALL ON {t} FROM {world['outsider']}")
        admin.execute(f"DROP SCHEMA {schema}")
