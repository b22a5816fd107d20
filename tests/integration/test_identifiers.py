"""Redshift's names through the proxy, with psycopg and AWS's redshift_connector: quoted names fold
to lower case unless enable_case_sensitive_identifier is on (SET, RESET, SHOW, the cluster's
parameter group), result columns named as Redshift names them, user names keeping their case,
folding never reaching a table the folded name cannot; names of 64 to 127 bytes (PostgreSQL keeps
63) kept apart and shown whole, longer ones refused; IDENTITY(0, 1) and IDENTITY columns as
nullable as Redshift reports."""

from __future__ import annotations

import psycopg
import pytest
import redshift_connector

from proxy.config import Audit

from ..conftest import ADMIN, ADMIN_PASSWORD, USER_PASSWORD, unique, wait_for
from .test_cluster_api import client, connect as cluster_admin, own_cluster


def rsc(proxy, user: str = ADMIN, password: str = ADMIN_PASSWORD):
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=user,
                                      password=password, ssl=False, timeout=20)
    conn.autocommit = True
    return conn


def relations(postgres, prefix: str) -> list[str]:
    """The tables PostgreSQL holds whose names start with prefix, any case (read directly)."""
    with postgres.connect() as direct:
        return sorted(name for (name,) in direct.execute(
            "SELECT relname FROM pg_class WHERE lower(relname) LIKE %s AND relkind = 'r'", (prefix.lower() + "%",)))


def test_quoted_names_fold_unless_the_session_keeps_their_case(proxy, postgres):
    t = unique("Mixed")
    with proxy.connect() as conn:
        assert conn.execute("SHOW enable_case_sensitive_identifier").fetchone() == ("off",)
        conn.execute(f'CREATE TABLE "{t}" ("MyCol" int)')
        conn.execute(f"INSERT INTO {t} VALUES (1)")
        assert relations(postgres, t) == [t.lower()]                  # "Mixed_..." is mixed_...
        cur = conn.execute(f'SELECT "MyCol", mycol AS "Other", \'"Keep" Me\' AS "V" FROM "{t.upper()}"')
        assert [c.name for c in cur.description] == ["mycol", "other", "v"]
        assert cur.fetchone() == (1, 1, '"Keep" Me')                  # a string is never touched
        assert conn.execute('SELECT 1 AS "Foo"').description[0].name == "foo"

        assert conn.execute("SET enable_case_sensitive_identifier TO true").statusmessage == "SET"
        assert conn.execute("SHOW enable_case_sensitive_identifier").fetchone() == ("on",)
        assert conn.execute('SELECT 1 AS "Foo"').description[0].name == "Foo"
        conn.execute(f'CREATE TABLE "{t}" ("MyCol" int)')             # now another table
        assert relations(postgres, t) == sorted([t, t.lower()])
        assert conn.execute(f'SELECT "MyCol" FROM "{t}"').description[0].name == "MyCol"
        assert conn.execute(f"SELECT MyCol FROM {t}").fetchall() == [(1,)]   # unquoted still folds

        with pytest.raises(psycopg.errors.InvalidParameterValue, match="requires a Boolean value"):
            conn.execute("SET enable_case_sensitive_identifier TO maybe")
        assert conn.execute("RESET enable_case_sensitive_identifier").statusmessage == "RESET"
        assert conn.execute('SELECT 1 AS "Foo"').description[0].name == "foo"
        conn.execute("SET enable_case_sensitive_identifier = 'on'")
        conn.execute("RESET ALL")
        assert conn.execute("SHOW enable_case_sensitive_identifier").fetchone() == ("off",)
        conn.execute(f'DROP TABLE "{t}"')                             # the lower-case one
        assert relations(postgres, t) == [t]
        conn.execute("SET enable_case_sensitive_identifier TO on")
        conn.execute(f'DROP TABLE "{t}"')
    with proxy.connect() as conn:                                     # a new session starts off again
        assert conn.execute('SELECT 1 AS "Foo"').description[0].name == "foo"


def test_redshift_connector_sees_column_names_as_redshift_shows_them(proxy):
    with rsc(proxy) as conn:
        cursor = conn.cursor()
        cursor.execute('SELECT 1 AS "Foo", 2 AS bar')
        assert [d[0] for d in cursor.description] == ["foo", "bar"]
        cursor.execute("SET enable_case_sensitive_identifier TO true;")
        # Another text: the driver keeps each text's prepared statement, parsed when first sent.
        cursor.execute('SELECT 1 AS "Foo", 2 AS bar;')
        assert [d[0] for d in cursor.description] == ["Foo", "bar"]
        cursor.execute("SET enable_case_sensitive_identifier TO false;")
        cursor.execute('SELECT %s AS "Foo"', ("x",))
        assert [d[0] for d in cursor.description] == ["foo"] and cursor.fetchall() == (["x"],)


def test_folding_reaches_no_table_the_folded_name_cannot(proxy, new_user):
    """A folded name is one the user could have written: PostgreSQL checks its privileges on it."""
    bob, password = new_user()
    secret, shared = unique("secret"), unique("Shared")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {secret} (x int)")               # no grant to bob
        admin.execute("SET enable_case_sensitive_identifier TO true")
        admin.execute(f'CREATE TABLE "{secret.upper()}" (x int)')     # a table that is not secret
        admin.execute(f'GRANT SELECT ON "{secret.upper()}" TO {bob}')
        admin.execute(f'CREATE TABLE "{shared}" (x int)')
        admin.execute(f'GRANT SELECT ON "{shared}" TO {bob}')
    with proxy.connect(bob, password) as conn:
        for name in (secret, f'"{secret.upper()}"', f'"{secret.capitalize()}"'):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {name}")
        with pytest.raises(psycopg.errors.UndefinedTable):            # "Shared_..." is shared_...: none
            conn.execute(f'SELECT * FROM "{shared}"')
        conn.execute("SET enable_case_sensitive_identifier TO true")
        assert conn.execute(f'SELECT * FROM "{secret.upper()}"').fetchall() == []
        assert conn.execute(f'SELECT * FROM "{shared}"').fetchall() == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM {secret}")


def test_quoted_user_names_keep_their_case(proxy):
    """Redshift: "The case of a username enclosed in double quotation marks is always preserved"."""
    user, t = unique("Ann"), unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER \"{user}\" PASSWORD '{USER_PASSWORD}'")
        admin.execute(f"CREATE TABLE {t} (x int)")
        admin.execute(f'GRANT SELECT ON "{t.upper()}" TO "{user}"')   # the table's name folds, the user's not
    try:
        with proxy.connect(user, USER_PASSWORD) as conn:
            assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
            assert conn.execute("SELECT current_user").fetchone() == (user,)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE {t}")
            admin.execute(f'DROP USER "{user}"')


def test_the_parameter_group_sets_each_new_sessions_case(make_proxy):
    cluster = own_cluster()
    proxy = make_proxy(**cluster)
    api, group = client(proxy), unique("g").replace("_", "-")
    api.create_cluster_parameter_group(ParameterGroupName=group, ParameterGroupFamily="redshift-1.0", Description="")
    api.modify_cluster_parameter_group(ParameterGroupName=group, Parameters=[
        {"ParameterName": "enable_case_sensitive_identifier", "ParameterValue": "true"}])
    identifier = proxy.config.cluster.identifier
    api.modify_cluster(ClusterIdentifier=identifier, ClusterParameterGroupName=group)
    api.reboot_cluster(ClusterIdentifier=identifier)

    def shown() -> str:
        with cluster_admin(proxy) as conn:
            return conn.execute("SHOW enable_case_sensitive_identifier").fetchone()[0]

    assert wait_for(lambda: shown() == "on")
    with cluster_admin(proxy) as conn:
        assert conn.execute('SELECT 1 AS "Foo"').description[0].name == "Foo"
        conn.execute("SET enable_case_sensitive_identifier TO off")
        assert conn.execute('SELECT 1 AS "Foo"').description[0].name == "foo"
        conn.execute("RESET enable_case_sensitive_identifier")       # back to the cluster's
        assert conn.execute('SELECT 1 AS "Foo"').description[0].name == "Foo"


def names_alike(stem: str) -> tuple[str, str, str]:
    """Names of 70, 127 and 128 bytes whose first 63 bytes are the same (PostgreSQL would cut
    all three to one)."""
    base = stem + "好" * ((63 - len(stem)) // 3)
    base += "x" * (63 - len(base.encode()))
    return base + " parent", base + "y" * 64, base + "z" * 65


def error_of(info) -> tuple[str, str]:
    error = info.value
    if isinstance(error, psycopg.Error):
        return error.sqlstate, str(error)
    return error.args[0]["C"], error.args[0]["M"]


@pytest.mark.parametrize("driver", ["psycopg", "redshift_connector"])
def test_names_of_64_to_127_bytes_are_distinct_and_shown_whole(proxy, postgres, driver):
    long, longest, too_long = names_alike(unique("Long"))
    long, longest = long.lower(), longest.lower()  # quoted names fold (enable_case_sensitive_identifier off)
    assert (len(long.encode()), len(longest.encode()), len(too_long.encode())) == (70, 127, 128)
    with (proxy.connect() if driver == "psycopg" else rsc(proxy)) as conn:
        cursor = conn if driver == "psycopg" else conn.cursor()

        def rows(sql: str) -> list:
            return [tuple(row) for row in cursor.execute(sql).fetchall()]

        cursor.execute(f'CREATE SCHEMA "{long}"')
        cursor.execute(f'CREATE SCHEMA "{longest.upper()}"')       # folds, as any quoted name
        try:
            cursor.execute(f'CREATE TABLE "{long}"."{long}" ("{long}" int, "{longest}" int)')
            cursor.execute(f'CREATE TABLE "{long}"."{longest}" ("{long}" int PRIMARY KEY)')
            cursor.execute(f'INSERT INTO "{long}"."{long}" VALUES (1, 2)')
            with pytest.raises((psycopg.Error, redshift_connector.ProgrammingError)) as info:
                cursor.execute(f'CREATE TABLE "{long}"."{long}" (a int)')  # errors name it whole too
            code, message = error_of(info)
            assert code == "42P07" and f'"{long}" already exists' in message and "#" not in message
            selected = cursor.execute(f'SELECT "{longest}", "{long}" FROM "{long}"."{long}"')
            assert [tuple(row) for row in selected.fetchall()] == [(2, 1)]
            assert [column[0] for column in selected.description] == [longest, long]  # named as written
            assert rows(f'SELECT * FROM "{long}"."{longest}"') == []  # another table
            with postgres.connect() as direct:                        # two schemas, neither cut
                assert direct.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s",
                                      (long[:20] + "%",)).fetchone() == (2,)
            schemas = rows(f"SHOW SCHEMAS FROM DATABASE dev LIKE '{long[:20]}%'")
            assert sorted(row[1] for row in schemas) == sorted([long, longest])
            tables = rows(f'SHOW TABLES FROM SCHEMA dev."{long}"')
            assert sorted(row[2] for row in tables) == sorted([long, longest])
            assert [row[2] for row in rows(f"SHOW TABLES FROM SCHEMA dev.\"{long}\" LIKE '%y'")] == [longest]
            columns = rows(f'SHOW COLUMNS FROM TABLE dev."{long}"."{long}"')
            assert [(row[1], row[2], row[3]) for row in columns] == [(long, long, long), (long, long, longest)]
            assert [row[3] for row in rows(f"SHOW COLUMNS FROM TABLE dev.\"{long}\".\"{long}\" "
                                           f"LIKE '%parent'")] == [long]
            keys = rows(f'SHOW CONSTRAINTS PRIMARY KEYS FROM TABLE dev."{long}"."{longest}"')
            assert [(row[1], row[2], row[3]) for row in keys] == [(long, longest, long)]
            cursor.execute(f'CREATE PROCEDURE "{long}"."{longest}"("{long}" OUT int) AS $$ '
                           f'BEGIN "{long}" := 7; END; $$ LANGUAGE plpgsql')   # the same name in its body
            assert rows(f'CALL "{long}"."{longest}"(NULL)') == [(7,)]
            assert [row[2] for row in rows(f'SHOW PROCEDURES FROM SCHEMA dev."{long}"')] == [longest]
            assert rows(f"SELECT table_name FROM svv_all_tables WHERE schema_name = '{long}' "
                        f"ORDER BY 1") == sorted([(long,), (longest,)])
            cursor.execute(f'CREATE VIEW "{long}".v AS SELECT 1 AS a')
            # information_schema, where dbt looks for the relations it made:
            assert rows(f"SELECT table_schema, table_name, table_type FROM information_schema.tables "
                        f"WHERE table_schema = '{long}' ORDER BY 2") == sorted(
                [(long, long, "BASE TABLE"), (long, longest, "BASE TABLE"), (long, "v", "VIEW")], key=lambda r: r[1])
            assert rows(f"SELECT table_schema, table_name FROM information_schema.views "
                        f"WHERE table_schema ILIKE '{long}'") == [(long, "v")]
            for statement in (f'CREATE TABLE "{too_long}" (a int)', f'SELECT 1 AS "{too_long}"'):
                with pytest.raises((psycopg.Error, redshift_connector.ProgrammingError)) as info:
                    cursor.execute(statement)
                code, message = error_of(info)
                assert code == "42622" and "128 bytes long" in message and "127 bytes" in message
        finally:
            cursor.execute(f'DROP SCHEMA "{long}" CASCADE')
            cursor.execute(f'DROP SCHEMA "{longest}" CASCADE')


def test_a_user_with_a_long_name_logs_in_with_it(make_proxy, tmp_path):
    proxy = make_proxy(audit=Audit(dir=str(tmp_path), user_activity=True))
    name, other, _ = names_alike(unique("Ann"))
    t = unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER \"{name}\" PASSWORD '{USER_PASSWORD}'")   # user names keep their case
        admin.execute(f"CREATE TABLE {t} (x int)")
        admin.execute(f'GRANT SELECT ON {t} TO "{name}"')
    try:
        with proxy.connect(name, USER_PASSWORD) as conn:               # SCRAM
            assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        with rsc(proxy, name, USER_PASSWORD) as conn:                   # MD5, salted with the long name
            cursor = conn.cursor()
            cursor.execute(f"SELECT count(*) FROM {t}")
            assert cursor.fetchall() == ([0],)
            assert name in [row[6] for row in cursor.execute(f"SHOW GRANTS ON TABLE dev.public.{t}").fetchall()]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            proxy.connect(other, USER_PASSWORD)                         # the same first 63 bytes: no one
        def logged(log: str) -> str:  # the audit writer makes each file when it first writes it
            return (tmp_path / log).read_text() if (tmp_path / log).exists() else ""

        assert wait_for(lambda: any(name in line and f"FROM {t}" in line for line in
                                    logged("useractivitylog").splitlines()))
        assert wait_for(lambda: name in logged("connectionlog"))
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE {t}")
            admin.execute(f'DROP USER "{name}"')


def test_identity_seeds_and_nullability_as_redshift_reports_them(proxy):
    t = unique("ident")
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {t} (id int IDENTITY(0, 1), down bigint IDENTITY(0, -2), "
                     "kept int IDENTITY(1, 1) NOT NULL, v varchar(5))")
        for value in ("a", "b", "c"):
            conn.execute(f"INSERT INTO {t} (v) VALUES (%s)", (value,))
        assert conn.execute(f"SELECT id, down, kept, v FROM {t} ORDER BY id").fetchall() == [
            (0, 0, 1, "a"), (1, -2, 2, "b"), (2, -4, 3, "c")]
        nullable = {r[3]: r[6] for r in conn.execute(f"SHOW COLUMNS FROM TABLE dev.public.{t}").fetchall()}
        assert nullable == {"id": "YES", "down": "YES", "kept": "NO", "v": "YES"}
        notnull = dict(conn.execute('SELECT "column", "notnull" FROM pg_table_def WHERE tablename = %s',
                                    (t,)).fetchall())
        assert notnull == {"id": False, "down": False, "kept": True, "v": False}
        conn.execute(f"DROP TABLE {t}")
    with rsc(proxy) as conn:
        conn.cursor().execute(f"CREATE TABLE {t} (id int IDENTITY(0, 1), v int)")
        columns = {row[3]: row for row in conn.cursor().get_columns(None, "public", t, None)}
        assert (columns["id"][17], columns["id"][22]) == ("YES", "YES")    # IS_NULLABLE, IS_AUTOINCREMENT
        conn.cursor().execute(f"DROP TABLE {t}")
