"""Attacks on transaction pooling (backend.pool_mode: transaction, backend/txpool.py) by an
ordinary user against another client of the same role: what a shared backend session carries
from one client to the next past the reset (txpool.RESET_SESSION), and the path by which a
client runs statements in a session without the session becoming its own (holder). The pending
statistics leak also reaches the sessions session mode keeps (backend/pool.py). Fixed: the
login's session goes back before the client's first bytes are read (relay.Relay.start); kept
sessions flush their pending statistics in their reset (pool.SEED). Open: pending statistics
between clients of a transaction pool, and stl_userlog's pid (strict xfails below)."""

from __future__ import annotations

import socket
import time

import pytest

from proxy.config import Audit
from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from ..conftest import unique, wait_for
from .test_bad_input import raw
from .test_transaction_pool import backend_pid, pool_counts


def _pooled(make_proxy):
    """One backend session for the role: every client of it lands there, one after the other."""
    return make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)


def _login_with_a_query(proxy, user: str, password: str, sql: str) -> tuple[socket.socket, bytes]:
    """A raw-protocol login whose first Query goes in the packet of the password, before the
    proxy's greeting (a client may send ahead: PostgreSQL reads it after the login); everything
    the proxy answers, up to the Query's ReadyForQuery."""
    sock = raw(proxy)
    sock.sendall(m.startup_message({"user": user, "database": "dev"}))
    asked = sock.recv(1024)
    assert asked[:1] == b"R" and int.from_bytes(asked[5:9], "big") == m.AUTH_MD5, asked
    sock.sendall(m.password_message(md5_response(redshift_md5(password, user), asked[9:13]) + b"\0")
                 + m.query(sql.encode()))
    received = b""
    while received.count(m.ready_for_query(m.TX_IDLE)) < 2:  # the greeting's, the Query's
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    return sock, received


def _payee_and_plant(conn) -> None:
    """The victim's table of payees, and the stored procedure public.plant(), which the attacker
    calls (CALL public.plant(NULL)): it leaves, out of the proxy's sight, a search_path and a
    temporary table of the same name with its own row, and answers its session's pid."""
    conn.execute("CREATE TABLE public.payee (iban text)")
    conn.execute("INSERT INTO public.payee VALUES ('DE00 victim')")
    conn.execute("""CREATE PROCEDURE public.plant(p_pid INOUT int) LANGUAGE plpgsql AS $$ BEGIN
        PERFORM set_config('search_path', 'pg_catalog', false);
        EXECUTE 'CREATE TEMP TABLE payee AS SELECT ''XX99 attacker''::text AS iban';
        p_pid := pg_backend_pid(); END $$""")


def test_a_query_sent_with_the_login_reads_nothing_the_last_client_left(make_proxy, new_user):
    """A session given to a login is not made the client's (txpool.restore_ahead, which resets
    one another client used, runs only for a session lent at a client's message): it serves the
    login's greeting and goes back to the pool at once. But a Query the client sent ahead,
    with its password, is already in the proxy's buffer then: it goes to that session as the
    last client left it, unreset. The attacker reads what the victim's stored procedure left
    there out of the proxy's sight (a setting, a temporary table): the state the reset exists to drop."""
    proxy = _pooled(make_proxy)
    name, password = new_user()
    with proxy.connect(name, password) as victim:
        victim.execute("""CREATE PROCEDURE public.sign_in(p_token text, p_pid INOUT int) LANGUAGE plpgsql AS $$ BEGIN
            PERFORM set_config('myapp.token', p_token, false);
            EXECUTE 'CREATE TEMP TABLE basket AS SELECT ' || quote_literal(p_token) || '::text AS item';
            p_pid := pg_backend_pid(); END $$""")
        pid = victim.execute("CALL public.sign_in('victim-s3cret', NULL)").fetchone()[0]
        attacker, received = _login_with_a_query(
            proxy, name, password, "SELECT pg_backend_pid()::text, current_setting('myapp.token', true), "
                                   "to_regclass('pg_temp.basket')::text")
        attacker.close()
        assert str(pid).encode() in received  # the victim's session, at once
        assert b"victim-s3cret" not in received and b"basket" not in received


def test_a_query_sent_with_the_login_leaves_nothing_in_the_session_its_last_client_takes_back(make_proxy, new_user):
    """The other way: the session stays the victim's (its holder), so the victim takes it back
    (txpool.TransactionPool._idle prefers it) with no reset, and runs in what the attacker's
    Query left: a search_path of its choice, and a temporary table shadowing the victim's table
    (pg_temp comes first in any search_path), so that the victim reads the attacker's rows for
    its own; a prepared statement (a function may put its own SQL under the name of the
    victim's) would do as well."""
    proxy = _pooled(make_proxy)
    name, password = new_user()
    with proxy.connect(name, password) as victim:
        _payee_and_plant(victim)
        pid = backend_pid(victim)
        attacker, received = _login_with_a_query(proxy, name, password, "CALL public.plant(NULL)")
        attacker.close()
        assert str(pid).encode() in received
        assert victim.execute("SELECT pg_backend_pid(), current_setting('search_path'), iban FROM payee"
                              ).fetchone() == (pid, '"$user", public', "DE00 victim")


def test_a_query_sent_with_the_login_leaves_nothing_in_a_new_session_for_the_next_client(make_proxy, new_user):
    """As above, in a session opened for the attacker's login: it served no client (holder
    None), so the next client that takes it is not reset either (restore_ahead resets only a
    session another client held) and finds what the attacker's Query left."""
    proxy = _pooled(make_proxy)
    name, password = new_user()
    with proxy.connect(name, password) as setup:
        _payee_and_plant(setup)
    # The setup's session goes: the attacker's login opens one.
    assert wait_for(lambda: pool_counts(proxy, name) == (1, 1, 0))
    assert proxy.proxy.context.transactions.prune(0) == 1
    attacker, received = _login_with_a_query(proxy, name, password, "CALL public.plant(NULL)")
    attacker.close()
    assert b"p_pid" in received  # the procedure ran (its row's description)
    with proxy.connect(name, password) as victim:
        assert victim.execute("SELECT current_setting('search_path'), iban FROM payee").fetchone() == \
            ('"$user", public', "DE00 victim")


@pytest.mark.xfail(strict=True, reason=(
    "open (same role only): the reset runs ahead of the client's first statement with no Sync between, so the "
    "backend never goes idle, where PostgreSQL flushes pending statistics (pg_stat_force_next_flush only asks "
    "for it at the next idle point); flushing there costs a round trip per hand-over. Session mode's kept "
    "sessions flush them (pool.SEED)"))
def test_the_next_client_does_not_read_the_last_clients_statistics(make_proxy, new_user):
    """A backend's statistics wait in the session (pending, flushed to the shared counters at
    most once a second) and pg_stat_xact_user_tables (pg_stat_get_xact_*) reads them there as
    "this transaction's" (PostgreSQL 15 and later): the next client of the session reads how many
    rows the last client inserted, updated, deleted and read in which tables, and how it read
    them (sequential or index scans), attributed to that client's last transactions and nobody
    else's. None of the reset's statements flushes or drops them (DISCARD ALL neither)."""
    proxy = _pooled(make_proxy)
    name, password = new_user()
    table = unique("payroll")
    with proxy.connect(name, password) as victim, proxy.connect(name, password) as attacker:
        victim.execute(f"CREATE TABLE public.{table} (employee text, salary int)")
        time.sleep(1.2)  # what the creation counted is flushed: the counts below are the victim's
        pid = backend_pid(victim)
        victim.execute(f"INSERT INTO public.{table} SELECT 'e' || i, i FROM generate_series(1, 37) i")
        victim.execute(f"UPDATE public.{table} SET salary = salary + 1 WHERE employee = 'e7'")
        row = attacker.execute("SELECT pg_backend_pid(), n_tup_ins, n_tup_upd, seq_scan FROM pg_stat_xact_user_tables "
                               "WHERE relname = %s", (table,)).fetchone()
        assert row[0] == pid  # the victim's session, after it
        assert row[1:] == (0, 0, 0)


def test_the_next_login_on_a_kept_session_does_not_read_the_last_clients_statistics(make_proxy, new_user):
    """The same in session mode (backend.pool_size): a session the victim left is kept, reset
    with DISCARD ALL, and given to the next login of the role, which reads the victim's pending
    counts within the second."""
    proxy = make_proxy()
    name, password = new_user()
    table = unique("payroll")
    with proxy.connect(name, password) as setup:
        setup.execute(f"CREATE TABLE public.{table} (employee text, salary int)")
    time.sleep(1.2)
    with proxy.connect(name, password) as victim:
        pid = backend_pid(victim)
        victim.execute(f"INSERT INTO public.{table} SELECT 'e' || i, i FROM generate_series(1, 37) i")
    with proxy.connect(name, password) as attacker:
        row = attacker.execute("SELECT pg_backend_pid(), n_tup_ins FROM pg_stat_xact_user_tables WHERE relname = %s",
                               (table,)).fetchone()
    assert row == (pid, 0)


@pytest.mark.xfail(strict=True, reason=(
    "open: schema.sql log_user writes pg_backend_pid(), the shared session's; the client's pid is the proxy's "
    "(its BackendKeyData) and is not known in PostgreSQL"))
def test_stl_userlog_names_the_client_that_changed_the_user_not_the_shared_session(make_proxy, new_user, tmp_path):
    """stl_userlog's pid is pg_backend_pid() (schema.sql log_user), the backend session's: in
    transaction pooling one that every client of the role shares, and never a pid any other
    audit table gives a client (stl_connection_log and stl_query take the client's own, from its
    BackendKeyData). A user's change to itself (here its password) is logged under a process
    shared with its other clients, and cannot be joined with the statement or the connection
    that made it. (Session mode logs the backend's pid too: there it is at least one client's.)"""
    proxy = make_proxy(backend__pool_mode="transaction", audit=Audit(dir=str(tmp_path / "audit"), user_activity=True))
    name, password = new_user()
    with proxy.connect(name, password) as changer, proxy.connect(name, password) as other:
        assert backend_pid(changer) == backend_pid(other)  # one backend session serves both
        changer.execute(f"ALTER USER {name} PASSWORD 'Changed123'")
        pid = changer.info.backend_pid

    def logged():
        with proxy.connect() as admin:
            rows = admin.execute("SELECT pid FROM stl_userlog WHERE username = %s AND action = 'alter'",
                                 (name,)).fetchall()
            queried = admin.execute("SELECT pid FROM stl_query WHERE querytxt LIKE %s",
                                    (f"ALTER USER {name} PASSWORD%",)).fetchall()
        return (rows, queried) if rows and queried else None
    rows, queried = wait_for(logged)
    assert queried == [(pid,)]
    assert rows == [(pid,)]
