"""Backend sessions kept for the next client of the same role (backend/pool.py): reused only
after a clean, idle goodbye, reset to a new session's state, and never handed to another role."""

from __future__ import annotations

import socket
import struct

import psycopg
import pytest

from proxy.protocol import messages as m

from ..conftest import ADMIN, unique, wait_for
from .test_bad_input import login, raw


def kept(proxy, user: str = None) -> int:
    """Backend sessions kept for user (its key's role part starts with the name), or for all."""
    return sum(n for key, n in proxy.proxy.context.pool.waiting().items() if user is None or key[0][0] == user)


def kept_pids(proxy, user: str) -> list[int]:
    """The backend processes of the sessions kept for user."""
    return [session.pid for key, waiting in proxy.proxy.context.pool._idle.items() if key[0][0] == user
            for _, session in waiting]


def backend_pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_a_session_left_idle_serves_the_next_client_as_new(proxy, new_user):
    name, password = new_user()
    with proxy.connect(name, password) as conn:
        first = backend_pid(conn)
        conn.execute("SET search_path TO pg_catalog")
        conn.execute("SET application_name TO 'changed'")
        conn.execute("CREATE TEMP TABLE scratch (a int)")
        conn.execute("PREPARE p AS SELECT 1")
        conn.execute("SELECT pg_advisory_lock(4242)")
        conn.execute("LISTEN somewhere")
    assert wait_for(lambda: kept(proxy, name) == 1)
    with proxy.connect(name, password) as conn:
        assert backend_pid(conn) == first  # the same backend process
        assert kept(proxy, name) == 0
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND pid = pg_backend_pid()").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
        assert conn.info.parameter_status("application_name") == ""


def seeded_randoms(postgres, seed: float) -> list[float]:
    """What random() returns after setseed(seed), as any session computes it."""
    with postgres.connect() as direct:
        direct.execute(f"SELECT setseed({seed})")
        return [direct.execute("SELECT random()").fetchone()[0] for _ in range(3)]


def test_the_next_client_does_not_draw_from_the_random_sequence_the_last_one_seeded(proxy, new_user, postgres):
    """DISCARD ALL leaves random()'s state: a client that chose it (setseed) or read it (from
    random()'s results) would know the next client's random() values."""
    name, password = new_user()
    with proxy.connect(name, password) as conn:
        first = backend_pid(conn)
        conn.execute("SELECT setseed(0.25)")
    assert wait_for(lambda: kept(proxy, name) == 1)
    with proxy.connect(name, password) as conn:
        assert backend_pid(conn) == first
        assert [conn.execute("SELECT random()").fetchone()[0] for _ in range(3)] != seeded_randoms(postgres, 0.25)


def test_set_session_authorization_does_not_outlive_the_client(proxy, new_user):
    """A superuser testing access as another user leaves; the next superuser session is its own."""
    name, _ = new_user()
    with proxy.connect() as admin:
        first = backend_pid(admin)
        admin.execute(f"SET SESSION AUTHORIZATION {name}")
        assert admin.execute("SELECT session_user").fetchone() == (name,)
    # (Another admin session, new_user's, may be kept too: this one, returned last, is taken.)
    assert wait_for(lambda: first in kept_pids(proxy, ADMIN))
    with proxy.connect() as admin:
        assert backend_pid(admin) == first
        assert admin.execute("SELECT session_user, current_user").fetchone() == (ADMIN, ADMIN)


def test_another_role_never_gets_the_session(proxy, new_user):
    alice, password = new_user()
    bob, _ = new_user()
    with proxy.connect(alice, password) as conn:
        first = backend_pid(conn)
    assert wait_for(lambda: kept(proxy, alice) == 1)
    with proxy.connect(bob, password) as conn:
        assert backend_pid(conn) != first
        assert conn.execute("SELECT session_user").fetchone() == (bob,)
    # a user dropped and created again under the same name is another role
    with proxy.connect() as admin:
        admin.execute(f"DROP USER {alice}")
        admin.execute(f"CREATE USER {alice} PASSWORD '{password}'")
    with proxy.connect(alice, password) as conn:
        assert backend_pid(conn) != first


def test_not_kept_after_leaving_inside_a_transaction_or_mid_query(proxy, new_user):
    name, password = new_user()
    conn = proxy.connect(name, password)
    first = backend_pid(conn)
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE t_in_tx (a int)")
    conn.close()  # libpq sends Terminate inside the transaction block
    with proxy.connect(name, password) as conn:
        assert backend_pid(conn) != first
        second = backend_pid(conn)
    assert wait_for(lambda: kept(proxy, name) == 1)
    sock = raw(proxy)
    login(sock, name, password)  # takes the kept session (second)
    sock.sendall(m.query("SELECT pg_sleep(30)"))
    sock.sendall(m.terminate())  # while the query runs
    sock.close()
    with proxy.connect(name, password) as conn:
        assert backend_pid(conn) not in (first, second)


def test_unsynced_extended_messages_and_bytes_after_terminate(proxy, new_user, postgres):
    name, password = new_user()
    table = f"after_terminate_{name}"
    # A Parse without Sync: the backend may be inside an implicit transaction; not kept.
    sock = raw(proxy)
    login(sock, name, password)
    sock.sendall(m.Parse(b"", b"SELECT 1", b"\x00\x00").encode() + m.terminate())
    sock.close()
    assert not wait_for(lambda: kept(proxy, name) == 1, timeout=1.0)
    # A Query after Terminate in the same packet never runs.
    sock = raw(proxy)
    login(sock, name, password)
    with proxy.connect() as admin:
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {name}")
    try:
        sock.sendall(m.terminate() + m.query(f"CREATE TABLE {table} (a int)"))
        sock.close()
        assert wait_for(lambda: kept(proxy, name) == 1)
        with proxy.connect() as admin:
            assert admin.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE IF EXISTS {table}")
            admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {name}")


def test_different_startup_parameters_get_their_own_session(proxy, new_user):
    name, password = new_user()
    with proxy.connect(name, password, application_name="one") as conn:
        first = backend_pid(conn)
    assert wait_for(lambda: kept(proxy, name) == 1)
    with proxy.connect(name, password, application_name="two") as conn:
        assert backend_pid(conn) != first
        assert conn.info.parameter_status("application_name") == "two"
    with proxy.connect(name, password, application_name="one") as conn:
        assert backend_pid(conn) == first
        assert conn.info.parameter_status("application_name") == "one"


def test_users_with_a_connection_limit_and_pool_size_zero_are_not_pooled(make_proxy, new_user, proxy):
    name, password = new_user()
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {name} CONNECTION LIMIT 1")
    with proxy.connect(name, password) as conn:
        first = backend_pid(conn)
    with proxy.connect(name, password) as conn:  # the limit of 1 holds: nothing kept holds it
        assert backend_pid(conn) != first
    assert kept(proxy, name) == 0
    unpooled = make_proxy(backend__pool_size=0)
    with unpooled.connect() as conn:
        first = backend_pid(conn)
    with unpooled.connect() as conn:
        assert backend_pid(conn) != first
    assert kept(unpooled) == 0


def test_at_most_pool_size_sessions_are_kept_the_longest_waiting_goes(make_proxy, postgres):
    small = make_proxy(backend__pool_size=2)
    pids = {}
    names = [unique("pooled") for _ in range(3)]
    with small.connect() as admin:
        for name in names:
            admin.execute(f"CREATE USER {name} PASSWORD 'Secret123'")
    try:
        for name in names:
            with small.connect(name, "Secret123") as conn:
                pids[name] = backend_pid(conn)
            assert wait_for(lambda: kept(small, name) == 1)
        assert len(small.proxy.context.pool) == 2 and kept(small, names[0]) == 0  # the first went
        with postgres.connect() as direct:  # and its backend with it
            assert wait_for(lambda: direct.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                                   (pids[names[0]],)).fetchone() == (0,))
        with small.connect(names[2], "Secret123") as conn:
            assert backend_pid(conn) == pids[names[2]]
    finally:
        with small.connect() as admin:
            for name in names:
                admin.execute(f"DROP USER {name}")


def test_nothing_after_the_goodbye_reaches_the_kept_session(make_proxy, new_user):
    """A client that said Terminate cannot run, log or cancel anything on the session it left:
    not a statement sent after it, not a cancel when its socket goes later (the proxy still
    holding unsent results for it), which would hit the next client's query."""
    import threading
    import time
    proxy = make_proxy(audit__user_activity=True)
    name, password = new_user()
    session = lambda: next(s for s in proxy.proxy.context.sessions if s.user == name)  # noqa: E731
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((proxy.host, proxy.port))
    login(sock, name, password)
    for _ in range(200):  # stop reading until the proxy holds results it cannot send yet
        sock.sendall(m.query("SELECT repeat('x', 8000) FROM generate_series(1, 32)"))
        time.sleep(0.05)
        if session().relay.client.transport.get_write_buffer_size() and session().relay.idle:
            break
    assert session().relay.client.transport.get_write_buffer_size(), "the proxy never held unsent bytes"
    sock.sendall(m.terminate() + m.query("SELECT 'after goodbye 4711'"))
    assert wait_for(lambda: kept(proxy, name) == 1)
    with psycopg.connect(proxy.conninfo(name, password), autocommit=True) as conn:
        outcome = {}

        def sleep():
            try:
                conn.execute("SELECT pg_sleep(1.5)")
                outcome["query"] = "finished"
            except psycopg.Error as exc:
                outcome["query"] = repr(exc)

        thread = threading.Thread(target=sleep)
        thread.start()
        time.sleep(0.5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # the old client goes now, abruptly
        thread.join(10)
    assert outcome == {"query": "finished"}
    with proxy.connect() as admin:
        assert admin.execute("SELECT count(*) FROM stl_query WHERE querytxt LIKE '%after goodbye 4711%'"
                             ).fetchone() == (0,)


def test_sessions_kept_before_a_connection_limit_do_not_count_against_it(proxy, new_user):
    name, password = new_user()
    first, second = proxy.connect(name, password), proxy.connect(name, password)
    first.close()
    second.close()
    assert wait_for(lambda: kept(proxy, name) == 2)
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {name} CONNECTION LIMIT 1")
    with proxy.connect(name, password) as conn:  # the kept two are let go for it
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert kept(proxy, name) == 0
