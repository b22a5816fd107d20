"""Redshift's column-level privileges (reference §4): SELECT and UPDATE on columns, granted by the
owner or a superuser, and one privilege held at one level only: a table grant is refused while
the grantee holds it on columns, a column grant is a no-op while it is held on the table, a
column revoke is refused then, and a table revoke removes both. Checked by what the grantee can
then read and change."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique

PASSWORD = "Secret123"


@pytest.fixture
def world(proxy, postgres):
    n = {key: unique(key) for key in ("t", "v", "owner", "bob", "carol", "g")}
    with proxy.connect() as admin:
        for user in ("owner", "bob", "carol"):
            admin.execute(f"CREATE USER {n[user]} PASSWORD '{PASSWORD}'")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {n['owner']}")
        admin.execute(f"CREATE GROUP {n['g']} WITH USER {n['carol']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {n['t']} (a int, b int, secret text)")
        owner.execute(f"INSERT INTO {n['t']} VALUES (1, 2, 'hidden')")
        owner.execute(f"CREATE VIEW {n['v']} AS SELECT a, b FROM {n['t']}")
    yield n
    with postgres.connect() as direct:
        for user in ("owner", "bob", "carol"):
            direct.execute(f"DROP OWNED BY {n[user]} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"DROP GROUP {n['g']}")
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {n['owner']}")
        admin.execute(f"DROP USER {n['owner']}, {n['bob']}, {n['carol']}")


def reads(proxy, user: str, sql: str):
    """The rows, or the SQLSTATE of the refusal."""
    with proxy.connect(user, PASSWORD) as conn:
        try:
            return conn.execute(sql).fetchall()
        except psycopg.Error as exc:
            return exc.sqlstate


def column_acl(proxy, table: str, user: str) -> list[tuple]:
    with proxy.connect() as admin:
        # Column ACL entries only (information_schema.column_privileges also lists table grants).
        return admin.execute("SELECT attname::text, a.privilege_type FROM pg_attribute, aclexplode(attacl) a "
                             "WHERE attrelid = %s::regclass AND a.grantee = %s::regrole ORDER BY 1, 2",
                             (table, user)).fetchall()


def test_column_grant_lets_the_grantee_read_those_columns_only(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        assert owner.execute(f"GRANT SELECT (a, b) ON {n['t']} TO {n['bob']}").statusmessage == "GRANT"
    assert reads(proxy, n["bob"], f"SELECT a, b FROM {n['t']}") == [(1, 2)]
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {n['t']}"):
            bob.execute(f"SELECT secret FROM {n['t']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"SELECT * FROM {n['t']}")


def test_table_grant_refused_while_held_on_columns(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT (a) ON {n['t']} TO {n['bob']}")
        with pytest.raises(psycopg.errors.InvalidGrantOperation, match="granted to .* on columns"):
            owner.execute(f"GRANT SELECT ON {n['t']} TO {n['bob']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        with pytest.raises(psycopg.errors.InvalidGrantOperation):
            owner.execute(f"GRANT ALL ON {n['t']} TO {n['bob']}")  # ALL includes SELECT
        owner.rollback()
        owner.execute(f"GRANT INSERT ON {n['t']} TO {n['bob']}")  # another privilege: no conflict
    assert reads(proxy, n["bob"], f"SELECT secret FROM {n['t']}") == "42501"
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"REVOKE SELECT (a) ON {n['t']} FROM {n['bob']}")
        owner.execute(f"GRANT SELECT ON {n['t']} TO {n['bob']}")
    assert reads(proxy, n["bob"], f"SELECT secret FROM {n['t']}") == [("hidden",)]


def test_column_grant_is_a_no_op_and_column_revoke_refused_while_held_on_table(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT ON {n['t']} TO {n['bob']}")
        assert owner.execute(f"GRANT SELECT (a) ON {n['t']} TO {n['bob']}").statusmessage == "GRANT"
    assert column_acl(proxy, n["t"], n["bob"]) == []
    with proxy.connect(n["owner"], PASSWORD) as owner:
        with pytest.raises(psycopg.errors.InvalidGrantOperation, match="on the whole relation"):
            owner.execute(f"REVOKE SELECT (a) ON {n['t']} FROM {n['bob']}")
    assert reads(proxy, n["bob"], f"SELECT a FROM {n['t']}") == [(1,)]
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"REVOKE SELECT ON {n['t']} FROM {n['bob']}")
    assert reads(proxy, n["bob"], f"SELECT a FROM {n['t']}") == "42501"


def test_table_revoke_removes_column_grants(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT (a), UPDATE (b) ON {n['t']} TO {n['bob']}")
    assert column_acl(proxy, n["t"], n["bob"]) == [("a", "SELECT"), ("b", "UPDATE")]
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"REVOKE SELECT, UPDATE ON {n['t']} FROM {n['bob']}")
    assert column_acl(proxy, n["t"], n["bob"]) == []
    assert reads(proxy, n["bob"], f"SELECT a FROM {n['t']}") == "42501"


def test_all_on_columns_is_select_and_update(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT ALL (a) ON {n['t']} TO {n['bob']}")
    assert column_acl(proxy, n["t"], n["bob"]) == [("a", "SELECT"), ("a", "UPDATE")]
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert bob.execute("SELECT column_name, privilege_type, identity_name, identity_type FROM svv_column_privileges "
                           "WHERE relation_name = %s ORDER BY 2", (n["t"],)).fetchall() == [
            ("a", "SELECT", n["bob"], "user"), ("a", "UPDATE", n["bob"], "user")]
        assert bob.execute(f"UPDATE {n['t']} SET a = a + 10 WHERE a = 1").rowcount == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"UPDATE {n['t']} SET b = 0")
    assert reads(proxy, n["bob"], f"SELECT a FROM {n['t']}") == [(11,)]


def test_group_grantee_and_multi_statement_string(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT (b) ON {n['t']} TO GROUP {n['g']}; GRANT SELECT (a) ON {n['v']} TO {n['carol']}")
    assert reads(proxy, n["carol"], f"SELECT b FROM {n['t']}") == [(2,)]
    assert reads(proxy, n["carol"], f"SELECT a FROM {n['v']}") == [(1,)]
    assert reads(proxy, n["carol"], f"SELECT a FROM {n['t']}") == "42501"


@pytest.mark.parametrize("statement, error, fragment", [
    ("GRANT INSERT (a) ON {t} TO {bob}", psycopg.errors.InvalidGrantOperation, "columns take SELECT and UPDATE"),
    ("GRANT REFERENCES (a) ON {t} TO {bob}", psycopg.errors.InvalidGrantOperation, "columns take SELECT and UPDATE"),
    ("GRANT SELECT (a) ON {t} TO {bob} WITH GRANT OPTION", psycopg.errors.InvalidGrantOperation, "no grant option"),
    ("REVOKE GRANT OPTION FOR SELECT (a) ON {t} FROM {bob}", psycopg.errors.InvalidGrantOperation,
     "no grant option"),
    ("GRANT UPDATE (a) ON {v} TO {bob}", psycopg.errors.InvalidGrantOperation, "take SELECT only"),
    ("GRANT SELECT (nope) ON {t} TO {bob}", psycopg.errors.UndefinedColumn, "nope"),
])
def test_column_grant_errors(proxy, world, statement, error, fragment):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        with pytest.raises(error, match=fragment):
            owner.execute(statement.format(t=n["t"], v=n["v"], bob=n["bob"]))
    assert column_acl(proxy, n["t"], n["bob"]) == []


def test_only_owner_or_superuser_grants_on_columns(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT ON {n['t']} TO {n['carol']} WITH GRANT OPTION")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {n['t']}"):
            carol.execute(f"GRANT SELECT (a) ON {n['t']} TO {n['bob']}")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        carol.execute(f"GRANT SELECT ON {n['t']} TO {n['bob']}")  # the table-level grant option still works
    assert reads(proxy, n["bob"], f"SELECT a FROM {n['t']}") == [(1,)]
    with proxy.connect() as admin:  # a superuser may
        admin.execute(f"GRANT UPDATE (b) ON {n['t']} TO {n['carol']}")
    assert column_acl(proxy, n["t"], n["carol"]) == [("b", "UPDATE")]


def test_refusal_inside_a_transaction_block_aborts_it(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT (a) ON {n['t']} TO {n['bob']}")
        owner.execute("BEGIN")
        owner.execute(f"GRANT SELECT (b) ON {n['t']} TO {n['bob']}")
        with pytest.raises(psycopg.errors.InvalidGrantOperation):
            owner.execute(f"GRANT SELECT ON {n['t']} TO {n['bob']}")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            owner.execute("SELECT 1")
        owner.execute("ROLLBACK")
    assert column_acl(proxy, n["t"], n["bob"]) == [("a", "SELECT")]
