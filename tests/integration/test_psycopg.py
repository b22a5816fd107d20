"""psycopg 3 through the proxy: login, parameters, transactions, COPY, errors, privileges."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique


def test_admin_sees_redshift_version_and_itself(proxy):
    with proxy.connect() as conn:
        assert conn.info.server_version == 80002
        assert conn.info.parameter_status("server_version") == "8.0.2"
        assert conn.execute("SELECT current_user").fetchone() == ("awsuser",)


def test_parameterised_query_transaction_copy_and_error(proxy):
    table = unique()
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (id int, name text)")
        conn.autocommit = False
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "one"))
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (2, "two"))
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.transaction():
                conn.execute(f"INSERT INTO {table} VALUES (3, 'three')")
                conn.execute("SELECT 1/0")
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                copy.write_row((4, "four"))
                copy.write_row((5, "five"))
            conn.commit()
            rows = cur.execute(f"SELECT id, name FROM {table} WHERE id > %s ORDER BY id", (0,)).fetchall()
        assert rows == [(1, "one"), (2, "two"), (4, "four"), (5, "five")]
        out = bytearray()
        with conn.cursor().copy(f"COPY (SELECT id FROM {table} ORDER BY id) TO STDOUT") as copy:
            for chunk in copy:
                out += chunk
        assert bytes(out) == b"1\n2\n4\n5\n"
        conn.rollback()
        conn.autocommit = True
        conn.execute(f"DROP TABLE {table}")


def test_user_logs_in_as_own_role_and_is_refused_ungranted_table(proxy, new_user):
    table = unique()
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (a int)")
    name, password = new_user()
    with proxy.connect(name, password) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (name, name)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM {table}")
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {table} TO {name}")
    with proxy.connect(name, password) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    with proxy.connect() as admin:
        admin.execute(f"DROP TABLE {table}")


def test_unknown_database_is_postgres_own_fatal(proxy):
    with pytest.raises(psycopg.OperationalError, match='database "no_such_db" does not exist'):
        proxy.connect(dbname="no_such_db")
    with proxy.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
