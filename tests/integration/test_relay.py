"""The relay with a real PostgreSQL: rewrites and denials keep both sides in step, pipelines,
COPY, notices, cancel, and a client that vanishes mid-query."""

from __future__ import annotations

import socket
import struct
import threading
import time

import psycopg
import pytest

from proxy.protocol import messages as m
from proxy.protocol.framing import split_message

from ..conftest import unique


def simple_query(conn: psycopg.Connection, sql: str) -> list[tuple[str | None, str | None]]:
    """One simple-protocol Query with several statements -> (command status, SQLSTATE) per
    statement psycopg reports; psycopg sends parameterless queries as simple Query messages."""
    cur = conn.cursor()
    results = []
    try:
        cur.execute(sql)
    except psycopg.Error as exc:
        return [(None, exc.sqlstate)]
    while True:
        results.append((cur.statusmessage, None))
        if not cur.nextset():
            return results


def test_create_user_reports_redshift_tags_in_simple_and_extended_protocol(proxy):
    a, b = unique("u"), unique("u")
    with proxy.connect() as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE USER {a} PASSWORD 'Secret123'", prepare=True)  # Parse/Bind/Execute
        assert cur.statusmessage == "CREATE USER"
        results = simple_query(conn, f"CREATE USER {b} PASSWORD 'Secret123'; SELECT 7; DROP USER {a}")
        assert results == [("CREATE USER", None), ("SELECT 1", None), ("DROP USER", None)]
        cur.execute(f"ALTER USER {b} PASSWORD 'Other1234'", prepare=True)
        assert cur.statusmessage == "ALTER USER"
        with conn.pipeline():
            first = conn.execute(f"SELECT %s::text", ("x",))
            dropped = conn.execute(f"DROP USER {b}")
        assert first.fetchone() == ("x",) and dropped.statusmessage == "DROP USER"


def test_denied_statement_inside_transaction_leaves_it_aborted(proxy):
    with proxy.connect() as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="password must be 8 to 64"):
            conn.execute("CREATE USER x PASSWORD 'weak'")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_denial_in_a_multi_statement_query_commits_nothing(proxy):
    table = unique()
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (a int)")
        results = simple_query(
            conn, f"INSERT INTO {table} VALUES (1); CREATE USER y PASSWORD 'weak'; INSERT INTO {table} VALUES (2)")
        assert results == [(None, "22023")]
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        conn.execute(f"DROP TABLE {table}")


def test_denial_in_an_extended_pipeline_skips_to_sync(proxy):
    table = unique()
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (a int)")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            with conn.pipeline():
                conn.execute(f"INSERT INTO {table} VALUES (1)")
                conn.execute("CREATE USER z PASSWORD 'weak'")
                conn.execute(f"INSERT INTO {table} VALUES (2)")
        # One Sync ends the pipeline: it was one implicit transaction, as PostgreSQL does it.
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int", (n,)) for n in range(50)]
        assert [c.fetchone()[0] for c in cursors] == list(range(50))
        conn.execute(f"DROP TABLE {table}")


def test_notices_and_large_copy_in(proxy):
    table = unique()
    notices = []
    with proxy.connect() as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DO $$BEGIN RAISE NOTICE 'hello from plpgsql'; END$$")
        conn.execute(f"CREATE TABLE {table} (a int, b text)")
        row = "x" * 1000
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for n in range(20_000):  # ~20 MB
                copy.write_row((n, row))
        assert conn.execute(f"SELECT count(*), sum(length(b)) FROM {table}").fetchone() == (20_000, 20_000_000)
        conn.execute(f"DROP TABLE {table}")
    assert notices == ["hello from plpgsql"]


def test_cancel_stops_the_running_query(proxy):
    with proxy.connect() as conn:
        timer = threading.Timer(0.5, conn.cancel_safe)  # cancel() would hold the GIL the in-process proxy needs
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_with_a_wrong_key_does_nothing(proxy):
    replies = []

    def wrong_cancel(pid: int) -> None:
        with socket.create_connection((proxy.host, proxy.port)) as raw:
            raw.sendall(struct.pack("!iiiI", 16, m.CANCEL_REQUEST_CODE, pid, 12345))
            replies.append(raw.recv(100))  # closed without a reply

    with proxy.connect() as conn:
        timer = threading.Timer(0.3, wrong_cancel, (conn.info.backend_pid,))
        timer.start()
        assert conn.execute("SELECT pg_sleep(1.5), 'finished'").fetchone() == ("", "finished")
        timer.join()
    assert replies == [b""]


def _backends_of(postgres, user: str) -> int:
    with postgres.connect() as direct:
        return direct.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (user,)).fetchone()[0]


def test_client_vanishing_mid_query_ends_the_backend_session(proxy, postgres, new_user):
    name, password = new_user()
    conn = psycopg.connect(proxy.conninfo(name, password), autocommit=True)
    conn.pgconn.send_query(b"SELECT pg_sleep(60)")
    while conn.pgconn.flush():
        pass
    time.sleep(0.3)
    assert _backends_of(postgres, name) == 1
    sock = socket.socket(fileno=conn.pgconn.socket)
    sock.shutdown(socket.SHUT_RDWR)
    sock.detach()
    deadline = time.monotonic() + 10
    while _backends_of(postgres, name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _backends_of(postgres, name) == 0
    conn.close()


def test_admin_backend_session_is_not_shared(proxy, postgres):
    with proxy.connect() as a, proxy.connect() as b:
        assert a.execute("SELECT pg_backend_pid()").fetchone() != b.execute("SELECT pg_backend_pid()").fetchone()
        assert a.info.backend_pid != b.info.backend_pid


def test_errors_from_rewritten_statements_do_not_show_internals(proxy, new_user):
    name, password = new_user()
    with proxy.connect(name, password) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            conn.execute("CREATE USER someone PASSWORD 'Secret123'")
    assert info.value.diag.message_primary == "permission denied to create user"
    assert info.value.diag.context is None
    with proxy.connect() as conn:
        with pytest.raises(psycopg.errors.DuplicateObject, match=f'user "{name}" already exists'):
            conn.execute(f"CREATE USER {name} PASSWORD 'Secret123'")


def test_backend_terminated_mid_session_ends_only_that_client(proxy, postgres):
    from .test_bad_input import login, read_all

    with proxy.connect() as bystander, socket.create_connection((proxy.host, proxy.port), timeout=10) as victim:
        login(victim)
        victim.sendall(m.query("SELECT pg_backend_pid()"))
        reply = b""
        while not reply.endswith(m.ready_for_query(m.TX_IDLE)):
            reply += victim.recv(65536)
        buffer = bytearray(reply)
        while (msg := split_message(buffer)) is not None and msg[0] != ord("D"):
            pass
        backend_pid = int(msg[1][6:])  # DataRow: Int16 1 column, Int32 length, the text
        with postgres.connect() as direct:
            direct.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
        rest = read_all(victim)  # PostgreSQL's FATAL reaches the client, then the proxy closes
        assert b"57P01" in rest and b"terminating connection due to administrator command" in rest
        assert bystander.execute("SELECT 1").fetchone() == (1,)
    with proxy.connect() as again:
        assert again.execute("SELECT 2").fetchone() == (2,)
