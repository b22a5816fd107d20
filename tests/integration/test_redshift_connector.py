"""AWS's redshift_connector through the proxy: plain and TLS logins, %s parameters, DB-API
transactions, errors with their SQLSTATEs, wrong passwords and a fresh user's privileges.

COPY is not applicable: Redshift's COPY loads from S3 and the like, not from the client, and
redshift_connector has no CopyInResponse/CopyOutResponse handling at all (its `stream=` argument
of cursor.execute is never read by the protocol code; a 'G' or 'H' message from the server ends
in a KeyError inside the driver), so there is no client COPY to check.

redshift_connector is blocking; the proxy runs in its own thread, so that is fine here.

TLS: the driver has no parameter for a CA file. With ssl=True it builds
SSLContext(CERT_REQUIRED), calls load_default_certs() (OpenSSL's default verify paths, which
honour the SSL_CERT_FILE / SSL_CERT_DIR environment variables, read at that call) and adds its
bundled Redshift CA bundle. So pointing SSL_CERT_FILE at the proxy's certificate makes the driver
trust it. sslmode is 'verify-ca' (chain only) or 'verify-full' (chain and host name); any other
value, 'require' included, is replaced by the default, which in this installed 2.2.0 is
verify-full with a host-name mismatch only logged (it is verify-ca in older releases, as the
reference says). Either way the certificate chain is always verified: there is no
encrypt-without-verifying mode.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from pathlib import Path

import pytest
import redshift_connector
from redshift_connector.error import InterfaceError, IntegrityError, ProgrammingError

from ..conftest import ADMIN, ADMIN_PASSWORD, unique


def connect(proxy, user: str = ADMIN, password: str = ADMIN_PASSWORD, **tls):
    tls = tls or {"ssl": False}
    return redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev",
                                      user=user, password=password, timeout=20, **tls)


def proxy_cert(proxy) -> Path:
    cert = Path(proxy.config.data_dir) / "tls" / "server.crt"
    assert cert.exists(), f"the proxy made no certificate at {cert}"
    return cert


def sqlstate(error: Exception) -> str:
    return error.args[0]["C"]


def assert_untrusted(error: InterfaceError) -> None:
    """The driver wraps the handshake failure: InterfaceError('communication error', cause)."""
    assert error.args[0] == "communication error"
    assert isinstance(error.args[1], ssl.SSLCertVerificationError)
    assert "self-signed certificate" in str(error.args[1])


def uses_tls(conn) -> bool:
    return isinstance(conn._usock, ssl.SSLSocket)


TLS_MODES = {
    "plain": {"ssl": False},
    "verify-ca": {"ssl": True, "sslmode": "verify-ca"},
    "verify-full": {"ssl": True, "sslmode": "verify-full"},
}


@pytest.fixture(params=list(TLS_MODES))
def tls(request, proxy, monkeypatch) -> dict:
    """Connection keywords for one TLS mode, with the proxy's certificate trusted."""
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy_cert(proxy)))
    return TLS_MODES[request.param]


@pytest.fixture
def conn(proxy, tls):
    connection = connect(proxy, **tls)
    assert uses_tls(connection) == tls["ssl"]
    yield connection
    connection.close()


@pytest.fixture
def table(proxy):
    """A table for the test. Request it before `conn`: the driver keeps a transaction open
    (it sends BEGIN before the first statement after each commit/rollback), and its locks
    would hold up the DROP if `conn` were closed only after this teardown."""
    name = unique()
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name varchar(32))")
    yield name
    with proxy.connect() as admin:
        admin.execute("SET lock_timeout = '10s'")  # fail rather than hang on a held lock
        admin.execute(f"DROP TABLE IF EXISTS {name}")


def test_login_sees_redshift_version(conn):
    statuses = {key.decode(): value.decode() for key, value in conn.parameter_statuses}
    assert statuses["server_version"] == "8.0.2"
    assert str(conn._server_version) == "8.0.2"
    cursor = conn.cursor()
    cursor.execute("SELECT current_user, current_database()")
    assert [list(row) for row in cursor.fetchall()] == [[ADMIN, "dev"]]


def test_parameterised_query(conn):
    cursor = conn.cursor()
    cursor.execute("SELECT %s + 1, upper(%s), CAST(%s AS varchar) IS NULL", (41, "it's", None))
    assert [list(row) for row in cursor.fetchall()] == [[42, "IT'S", True]]
    cursor.execute("SELECT n FROM generate_series(1, 10) AS n WHERE n %% %s = 0 ORDER BY n", (3,))
    assert [row[0] for row in cursor.fetchall()] == [3, 6, 9]
    conn.rollback()


def test_transaction_commit_and_rollback(proxy, table, conn):
    cursor = conn.cursor()
    cursor.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(1, "one"), (2, "two")])
    conn.commit()
    cursor.execute(f"INSERT INTO {table} VALUES (%s, %s)", (3, "three"))
    cursor.execute(f"SELECT count(*) FROM {table}")
    assert cursor.fetchall()[0][0] == 3
    conn.rollback()
    cursor.execute(f"SELECT id, name FROM {table} ORDER BY id")
    assert [list(row) for row in cursor.fetchall()] == [[1, "one"], [2, "two"]]
    conn.rollback()
    # another session sees exactly what was committed
    with proxy.connect() as other:
        assert other.execute(f"SELECT id FROM {table} ORDER BY id").fetchall() == [(1,), (2,)]


def test_autocommit(proxy, table, conn):
    conn.autocommit = True
    cursor = conn.cursor()
    cursor.execute(f"INSERT INTO {table} VALUES (%s, %s)", (10, "auto"))
    with proxy.connect() as other:
        assert other.execute(f"SELECT name FROM {table}").fetchall() == [("auto",)]


def test_errors_have_sqlstate_and_connection_survives(table, conn):
    cursor = conn.cursor()
    with pytest.raises(ProgrammingError) as error:
        cursor.execute("SELECT 1 / %s", (0,))
    assert sqlstate(error.value) == "22012"
    assert "division by zero" in error.value.args[0]["M"]
    conn.rollback()
    cursor.execute("SELECT 1 / %s", (1,))
    assert cursor.fetchall()[0][0] == 1

    with pytest.raises(ProgrammingError) as error:
        cursor.execute(f"SELECT * FROM missing_{table}")
    assert sqlstate(error.value) == "42P01"
    conn.rollback()

    cursor.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "one"))
    with pytest.raises(IntegrityError) as error:  # the driver maps 23505 to IntegrityError
        cursor.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "again"))
    assert sqlstate(error.value) == "23505"
    with pytest.raises(ProgrammingError) as error:
        cursor.execute("SELECT 1")
    assert sqlstate(error.value) == "25P02"  # in a failed transaction until it is rolled back
    conn.rollback()
    cursor.execute(f"SELECT count(*) FROM {table}")
    assert cursor.fetchall()[0][0] == 0
    cursor.execute("SELECT current_user")
    assert cursor.fetchall()[0][0] == ADMIN


@pytest.mark.parametrize("user", ["x", ADMIN])
def test_wrong_password_is_refused(proxy, user):
    with pytest.raises(ProgrammingError) as refused:
        connect(proxy, user=user, password="wrong-password")
    assert sqlstate(refused.value) == "28P01"
    assert refused.value.args[0]["M"] == f'password authentication failed for user "{user}"'


def test_new_user_is_itself_and_refused_ungranted_table(proxy, new_user, tls, table):
    name, password = new_user()
    conn = connect(proxy, name, password, **tls)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user, session_user")
        assert [list(row) for row in cursor.fetchall()] == [[name, name]]
        with pytest.raises(ProgrammingError) as refused:
            cursor.execute(f"SELECT * FROM {table}")
        assert sqlstate(refused.value) == "42501"
        assert refused.value.args[0]["M"] == f"permission denied for relation {table}"
        conn.rollback()
        cursor.execute("SELECT 1")
        assert cursor.fetchall()[0][0] == 1
    finally:
        conn.close()


def test_tls_sslmode_require_is_coerced_to_verification(proxy, monkeypatch, caplog):
    # 'require' is not a mode the driver knows: it falls back to its default, which verifies the
    # chain, so without the proxy's certificate trusted the handshake fails...
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(InterfaceError) as refused:
        connect(proxy, ssl=True, sslmode="require")
    assert_untrusted(refused.value)
    # ...and with it trusted, it connects over TLS (127.0.0.1 is in the certificate, so the
    # default mode's host-name check does not even log a mismatch).
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy_cert(proxy)))
    with caplog.at_level(logging.WARNING, logger="redshift_connector"):
        conn = connect(proxy, ssl=True, sslmode="require")
    try:
        assert uses_tls(conn)
        assert conn._usock.getpeercert()["subject"] == (
            (("commonName", "shiftguard"),), (("organizationName", "shiftguard self-signed"),))
        cursor = conn.cursor()
        cursor.execute("SELECT %s", ("over tls",))
        assert cursor.fetchall()[0][0] == "over tls"
    finally:
        conn.close()
    assert not [r for r in caplog.records if "does not name host" in r.getMessage()]


def test_tls_verify_ca_without_trust_fails(proxy, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(InterfaceError) as refused:
        connect(proxy, ssl=True, sslmode="verify-ca")
    assert_untrusted(refused.value)


def test_require_ssl_proxy_refuses_plain_and_accepts_tls(make_proxy, monkeypatch):
    proxy = make_proxy(tls__require_ssl=True)
    with pytest.raises(InterfaceError) as refused:  # the driver maps 28000 to InterfaceError
        connect(proxy, ssl=False)
    assert sqlstate(refused.value) == "28000"
    assert "requires SSL" in refused.value.args[0]["M"]
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy_cert(proxy)))
    conn = connect(proxy, ssl=True, sslmode="verify-ca")
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user")
        assert cursor.fetchall()[0][0] == ADMIN
    finally:
        conn.close()


def test_create_user_through_the_driver_then_log_in(proxy, conn, tls):
    # the driver runs everything in an explicit transaction and through Parse/Bind/Execute,
    # so the proxy's CREATE USER rewrite is seen inside a transaction block here
    name = f"u_{uuid.uuid4().hex[:10]}"
    cursor = conn.cursor()
    try:
        cursor.execute(f"CREATE USER {name} PASSWORD 'Secret123'")
        conn.rollback()
        with pytest.raises(ProgrammingError) as refused:  # rolled back: no such user
            connect(proxy, name, "Secret123", **tls)
        assert sqlstate(refused.value) == "28P01"

        cursor.execute(f"CREATE USER {name} PASSWORD 'Secret123'")
        conn.commit()
        user = connect(proxy, name, "Secret123", **tls)
        try:
            user_cursor = user.cursor()
            user_cursor.execute("SELECT current_user")
            assert user_cursor.fetchall()[0][0] == name
        finally:
            user.close()

        with pytest.raises(ProgrammingError) as weak:
            cursor.execute(f"ALTER USER {name} PASSWORD 'weak'")
        assert sqlstate(weak.value) == "22023"
        assert weak.value.args[0]["M"] == "password must be 8 to 64 characters long"
        conn.rollback()

        cursor.execute(f"DROP USER {name}")
        conn.commit()
        with pytest.raises(ProgrammingError) as refused:
            connect(proxy, name, "Secret123", **tls)
        assert sqlstate(refused.value) == "28P01"
    finally:
        conn.rollback()
        with proxy.connect() as admin:
            admin.execute(f"DROP USER IF EXISTS {name}")


def test_the_drivers_bulk_insert_finds_a_temporary_table(proxy, new_user, tmp_path):
    """insert_data_bulk (and write_dataframe) look the table up in svv_all_tables and its columns
    in svv_all_columns, which list the session's own temporary tables (never another
    session's); tpc_recover reads stl_undone."""
    user, password = new_user()
    rows = tmp_path / "books.csv"
    rows.write_text("bookname,author\nDune,Herbert\nEmma,Austen\n")
    with connect(proxy, user, password) as other:
        other.cursor().execute("CREATE TEMP TABLE theirs (x int)")
        with connect(proxy, user, password) as conn:
            cursor = conn.cursor()
            cursor.execute("CREATE TEMP TABLE book (bookname varchar(20), author varchar(20))")
            cursor.execute("SELECT table_name FROM svv_all_tables WHERE table_name IN ('book', 'theirs')")
            assert [tuple(row) for row in cursor.fetchall()] == [("book",)]
            cursor.insert_data_bulk(filename=str(rows), table_name="book", parameter_indices=[0, 1],
                                    column_names=["bookname", "author"], delimiter=",", batch_size=1)
            cursor.execute("SELECT author FROM book ORDER BY 1")
            assert [tuple(row) for row in cursor.fetchall()] == [("Austen",), ("Herbert",)]
            with pytest.raises(InterfaceError, match="Invalid column name. No results were returned"):
                cursor.insert_data_bulk(filename=str(rows), table_name="book", parameter_indices=[0],
                                        column_names=["nosuch"], delimiter=",", batch_size=1)
            conn.rollback()
            assert conn.tpc_recover() == []


def test_unused_untyped_parameters_are_accepted(conn):
    """Redshift runs a statement given more parameters than it uses (redshift_connector sends a
    str given as the parameter list as one parameter per character); PostgreSQL could not type
    the unused ones. A parameter the statement uses keeps the type PostgreSQL infers."""
    cursor = conn.cursor()
    cursor.execute("select %s", "hello world")
    assert cursor.fetchone()[0] == "h"
    cursor.execute("select %s + 1", (41, "unused", "also unused"))
    assert cursor.fetchone()[0] == 42


def test_a_bulk_insert_of_32767_parameters_runs_under_strict_redshift(make_proxy):
    """redshift_connector's limit is 32,767 bind parameters, and AWS's driver suite inserts that
    many in one statement (test_cursor.py). Its text is over limits.max_checked_statement_size:
    with strict_redshift on, such SQL that nothing else would have the proxy read is sent as
    written, as without it; a smaller statement is still read (a PostgreSQL-only column type is
    refused), and a large one the proxy must read (non-ASCII text) is still refused with 54000."""
    proxy = make_proxy(strict_redshift=True)
    count = 32767
    with connect(proxy) as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TEMP TABLE many (col1 int)")
        sql = "INSERT INTO many (col1) VALUES " + ", ".join(["(%s)"] * count)
        cursor.execute(sql, [1] * count)
        cursor.execute("SELECT count(*), sum(col1) FROM many")
        assert tuple(cursor.fetchone()) == (count, count)
        with pytest.raises(ProgrammingError, match='unsupported type "bytea"'):
            cursor.execute("CREATE TEMP TABLE other (a bytea)")
        conn.rollback()
        with pytest.raises(ProgrammingError, match="too large for shiftguard to check") as refused:
            cursor.execute("SELECT length(%s), '" + "é" * 200_000 + "'", ("x",))
        assert sqlstate(refused.value) == "54000"
