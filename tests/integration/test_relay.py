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
        conn.execute(f"CREATE TABLE {table} (a int, b varchar(1000))")  # TEXT would be VARCHAR(256), as on Redshift
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


def _replies_until_ready(sock: socket.socket, count: int = 1) -> list[tuple[int, bytes]]:
    """Messages up to the count-th ReadyForQuery."""
    buffer, messages = bytearray(), []
    while True:
        while (msg := split_message(buffer)) is not None:
            messages.append(msg)
            if msg[0] == m.B_READY_FOR_QUERY:
                count -= 1
                if not count:
                    return messages
        chunk = sock.recv(65536)
        assert chunk, f"closed after {messages}"
        buffer += chunk


@pytest.mark.parametrize("sql", ["CREATE USER x PASSWORD 'weak'", "CREATE USER x PASSWORD 'Secret123'", "SELECT 1"])
def test_a_nul_inside_a_query_gets_postgresqls_error_and_the_session_goes_on(proxy, sql):
    from .test_bad_input import login

    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        login(sock)
        sock.sendall(m.message(m.F_QUERY, sql.encode() + b"\0\0"))
        replies = _replies_until_ready(sock)
        assert [kind for kind, _ in replies] == [m.B_ERROR_RESPONSE, m.B_READY_FOR_QUERY]
        fields = m.decode_fields(replies[0][1])
        assert (fields["S"], fields["C"], fields["M"]) == ("ERROR", "08P01", "invalid message format")
        sock.sendall(m.query("SELECT 'still here'"))
        assert b"still here" in b"".join(body for _, body in _replies_until_ready(sock))


# What PostgreSQL never answers: a Query after an extended-protocol error (skipped to the next
# Sync), a Sync inside COPY (read as nothing). The session must count as idle afterwards, or
# idle timeouts never end it.
@pytest.mark.parametrize("stream, ready", [
    (m.message(ord("D"), b"Sno_such_statement\0") + m.query("SELECT 1") + m.message(ord("S")), 1),
    (m.query("CREATE TEMP TABLE t (a int); COPY t FROM STDIN") + m.message(ord("S"))
     + m.message(ord("d"), b"1\n") + m.message(ord("c")), 1),
])
def test_a_session_idle_after_what_postgresql_skips_is_closed_by_the_idle_timeout(make_proxy, stream, ready):
    from .test_bad_input import login, read_all
    from .test_users import _cluster

    proxy = make_proxy(cluster=_cluster(session_timeout=1))
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        login(sock)
        sock.sendall(stream)
        _replies_until_ready(sock, ready)
        closing = read_all(sock, timeout=15)
    assert b"57P05" in closing and b"terminating connection due to idle-session timeout" in closing


def test_refusals_after_what_postgresql_skips_still_read_as_refusals(proxy):
    from .test_bad_input import login

    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        login(sock)
        weak = m.query("CREATE USER x PASSWORD 'weak'")
        sock.sendall(m.message(ord("D"), b"Sno_such_statement\0") + weak + m.message(ord("S")) + weak)
        replies = _replies_until_ready(sock, 2)
    errors = [m.decode_fields(body) for kind, body in replies if kind == m.B_ERROR_RESPONSE]
    assert [e["C"] for e in errors] == ["26000", "22023"]
    assert "password must be 8 to 64" in errors[1]["M"]
