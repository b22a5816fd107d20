"""Transaction pooling (backend.pool_mode: transaction, backend/txpool.py): a client holds one
of its role's backend sessions only for a transaction; sessions are never shared across roles,
prepared statements follow a client from session to session, what leaves state in a session
pins it, cancels reach the right query, and clients wait for a session rather than fail."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.request

import asyncpg
import psycopg
import pytest

from proxy.config import Audit
from proxy.protocol import messages as m

from ..conftest import ADMIN, unique, wait_for, waits_on_a_lock
from .test_bad_input import login, raw, read_all
from .test_masking import CARDS, FULL, PASSWORD, _all_at_once, world  # noqa: F401 (a fixture)
from .test_pgjdbc import classpath, jdbc  # noqa: F401 (a fixture)
from .test_pool import seeded_randoms

CAP = 5


@pytest.fixture
def proxy(make_proxy):
    return make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=CAP)


def pool_counts(proxy, user: str) -> tuple[int, int, int]:
    """(open, idle, waiting) summed over the user's pool keys."""
    counts = [c for key, c in proxy.proxy.context.transactions.counts().items() if key[0][0] == user]
    return tuple(sum(c[i] for c in counts) for i in range(3))


def backend_pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_clients_of_a_role_share_its_sessions_between_transactions(proxy, new_user):
    name, password = new_user()
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second:
        pid = backend_pid(first)
        assert backend_pid(second) == pid
        assert wait_for(lambda: pool_counts(proxy, name) == (1, 1, 0))
        with first.transaction():
            first.execute("SELECT 1")
            assert backend_pid(second) != pid  # the first holds its session until its transaction ends
        assert second.execute("SELECT session_user, current_user").fetchone() == (name, name)


def test_two_roles_never_share_a_session(proxy, new_user, postgres):
    """Two users whose privileges differ, hammering at once: each always runs as itself, with
    its own privileges only, on sessions of its own."""
    users = [new_user(), new_user()]
    tables = [unique("own"), unique("own")]
    with proxy.connect() as admin:
        for (name, _), table in zip(users, tables):
            admin.execute(f"CREATE TABLE {table} (who text)")
            admin.execute(f"INSERT INTO {table} VALUES ('{name}')")
            admin.execute(f"GRANT SELECT ON {table} TO {name}")
    pids = [set(), set()]
    failures = []

    def hammer(index: int) -> None:
        name, password = users[index]
        mine, theirs = tables[index], tables[1 - index]
        try:
            with proxy.connect(name, password) as conn:
                for _ in range(25):
                    row = conn.execute(f"SELECT session_user, current_user, pg_backend_pid(), "
                                       f"(SELECT who FROM {mine}) FROM (SELECT 1) AS one").fetchone()
                    assert row[:2] == (name, name) and row[3] == name, row
                    pids[index].add(row[2])
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(f"SELECT who FROM {theirs}")
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(i % 2,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert pids[0] and pids[1] and not pids[0] & pids[1]
    assert len(pids[0]) <= CAP and len(pids[1]) <= CAP


def test_another_client_does_not_draw_from_the_random_sequence_one_seeded(proxy, new_user, postgres):
    """setseed is no setting the reset puts back: without a new seed, a client that chose one
    (or read random()'s state from its results) knows what random() gives the next client there."""
    name, password = new_user()
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second:
        pid = backend_pid(first)
        first.execute("SELECT setseed(0.25)")
        row = second.execute("SELECT pg_backend_pid(), random(), random(), random()").fetchone()
        assert row[0] == pid
        assert list(row[1:]) != seeded_randoms(postgres, 0.25)


def test_a_client_cannot_make_the_next_clients_reset_fail_with_its_statement_timeout(proxy, new_user):
    """A stored procedure leaves statement_timeout at 1 ms and thousands of WITH HOLD cursors: the
    reset's CLOSE ALL, timed by the last client's statement_timeout, was cancelled, and the next
    client of the role there lost its connection (FATAL 08006) before any statement of its ran."""
    name, password = new_user()
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second:
        first.execute("""CREATE PROCEDURE slow_reset(n int, INOUT pid int) LANGUAGE plpgsql AS $$
            BEGIN
                FOR i IN 1..n LOOP EXECUTE format('DECLARE c%s CURSOR WITH HOLD FOR SELECT 1', i); END LOOP;
                PERFORM set_config('statement_timeout', '1', false);
                pid := pg_backend_pid();
            END $$""")
        pid = first.execute("CALL slow_reset(3000, NULL)").fetchone()[0]
        assert second.execute("SELECT pg_backend_pid(), current_setting('statement_timeout')").fetchone() == (pid, "0")


def test_a_clients_settings_are_restored_in_a_session_another_client_used(proxy, new_user):
    """PostgreSQL refuses SET temp_buffers in a session that touched a temporary table (another
    client's, from a stored procedure), and SET transaction_isolation after the first query of a
    transaction (it holds for that transaction only): put back in such a session, either ended
    the connection of the client that sent it (FATAL 08006) before any statement of its ran."""
    name, password = new_user()
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second:
        first.execute("SET temp_buffers = '16MB'")
        second.execute("CREATE PROCEDURE touch_temp() LANGUAGE plpgsql AS $$ BEGIN "  # a DO block would pin
                       "EXECUTE 'CREATE TEMP TABLE scratch (a int)'; EXECUTE 'INSERT INTO pg_temp.scratch VALUES (1)'; "
                       "END $$")
        second.execute("CALL touch_temp()")
        assert first.execute("SELECT current_setting('temp_buffers')").fetchone() == ("16MB",)
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second:
        first.execute("SET transaction_isolation = 'serializable'")  # for that statement's transaction
        pid = backend_pid(first)
        assert backend_pid(second) == pid  # now another client's
        assert first.execute("SELECT pg_backend_pid(), current_setting('transaction_isolation')"
                             ).fetchone() == (pid, "read committed")


# out of the proxy's sight: a permanent table with a column of a temporary table's row type
POISON = """CREATE PROCEDURE poison(INOUT pid int) LANGUAGE plpgsql AS $$ BEGIN
        EXECUTE 'CREATE TEMP TABLE scratch (a int)';
        EXECUTE 'CREATE TABLE public.{table} (a pg_temp.scratch)';
        EXECUTE 'GRANT SELECT ON public.{table} TO {other}';
        pid := pg_backend_pid(); END $$"""


def _leave_a_locked_leftover(first, locker, other: str, table: str) -> int:
    """first makes, from a stored procedure, a permanent table with a column of its temporary
    table's row type, which locker (logged in as other) then holds locked; first's backend pid."""
    first.execute(POISON.format(table=table, other=other))
    pid = first.execute("CALL poison(NULL)").fetchone()[0]
    locker.execute("BEGIN")
    locker.execute(f"SELECT * FROM public.{table}")
    return pid


def test_a_reset_that_cannot_finish_runs_the_clients_statements_in_another_session(proxy, new_user):
    """The last client made, from a stored procedure, a permanent table with a column of its
    temporary table's row type, and another user holds that table locked: the reset's DISCARD
    TEMP would wait for that lock (the column goes with the temporary table) for as long as it
    is held. It gives up instead, and the next client's statement runs, in another session."""
    name, password = new_user()
    other, other_password = new_user()
    table = unique("leftover")
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second, \
            proxy.connect(other, other_password) as locker:
        pid = _leave_a_locked_leftover(first, locker, other, table)
        with second.cursor() as cursor:  # its Parse, Bind and Execute go ahead, after the reset
            row = cursor.execute("SELECT pg_backend_pid(), %s::int", (42,), prepare=True).fetchone()
        assert row[0] != pid and row[1] == 42
        assert second.execute("SELECT %s::int", (7,), prepare=True).fetchone() == (7,)
        locker.execute("ROLLBACK")


def test_leftovers_in_two_sessions_do_not_end_the_next_clients_connection(proxy, new_user):
    """As above, with the user's leftovers locked in both idle sessions of the role: the
    statement is sent again in a session opened for it, not in the other idle one, whose reset
    fails too (the client got a FATAL error and lost its connection)."""
    name, password = new_user()
    other, other_password = new_user()
    tables = unique("leftover"), unique("leftover")
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second, \
            proxy.connect(name, password) as victim, proxy.connect(other, other_password) as locker:
        pids = []
        first.execute("BEGIN")  # both at once: two sessions
        second.execute("BEGIN")
        for conn, table in zip((first, second), tables):
            conn.execute(f"""CREATE FUNCTION pg_temp.poison() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
                EXECUTE 'CREATE TEMP TABLE scratch (a int)';
                EXECUTE 'CREATE TABLE public.{table} (a pg_temp.scratch)';
                EXECUTE 'GRANT SELECT ON public.{table} TO {other}';
                RETURN pg_backend_pid(); END $$""")
            pids.append(conn.execute("SELECT pg_temp.poison()").fetchone()[0])
        first.execute("COMMIT")
        second.execute("COMMIT")
        assert len(set(pids)) == 2
        locker.execute("BEGIN")
        for table in tables:
            locker.execute(f"SELECT * FROM public.{table}")
        try:
            for _ in range(3):
                assert victim.execute("SELECT pg_backend_pid()").fetchone()[0] not in pids
        finally:
            locker.execute("ROLLBACK")


async def test_a_reset_that_cannot_finish_sends_asyncpg_prepared_statements_again(make_proxy, new_user):
    """As above, for a statement asyncpg prepared before, with one session for the role (the
    client's goes, another opens): prepared again in the session the client's messages go to
    after the reset failed, and run there once."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    other, other_password = new_user()
    table = unique("leftover")

    async def connect(user: str, secret: str):
        return await asyncpg.connect(host=proxy.host, port=proxy.port, user=user, password=secret,
                                     database="dev", ssl="disable", timeout=10)

    client = await connect(name, password)
    first, locker = await connect(name, password), await connect(other, other_password)
    try:
        await client.execute(f"CREATE TABLE public.{table}_runs (n int)")
        statement = await client.prepare(f"INSERT INTO public.{table}_runs VALUES ($1) RETURNING pg_backend_pid()")
        await client.fetchval("SELECT 1")  # a Sync: asyncpg's prepare leaves its batch open
        await first.execute(POISON.format(table=table, other=other))
        pid = await first.fetchval("CALL poison(NULL)")
        async with locker.transaction():
            await locker.fetch(f"SELECT * FROM public.{table}")
            assert await statement.fetchval(1) != pid
        assert await client.fetch(f"SELECT n FROM public.{table}_runs") == [(1,)]
    finally:
        for conn in (client, first, locker):
            await conn.close()


def test_a_client_cannot_make_the_next_clients_reset_wait_for_a_safe_snapshot(proxy, new_user, postgres):
    """A function leaves SERIALIZABLE, READ ONLY, DEFERRABLE as the session's defaults for new
    transactions: the reset's own transaction began so, and its first query waited for a safe
    snapshot (no timeout reaches that wait) for as long as any serializable transaction that
    writes stayed open anywhere, holding the next client of the role with it. The reset's
    transaction is read committed whatever the last client left."""
    name, password = new_user()
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second, \
            postgres.connect() as writer:
        first.execute("SET default_transaction_isolation = serializable")
        first.execute("SET default_transaction_read_only = on")
        first.execute("SET default_transaction_deferrable = on")
        pid = backend_pid(first)
        writer.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        writer.execute("SELECT txid_current()")
        answer: list = []
        thread = threading.Thread(target=lambda: answer.append(second.execute(
            "SELECT pg_backend_pid(), current_setting('transaction_isolation'), "
            "current_setting('transaction_read_only')").fetchone()))
        thread.start()
        thread.join(60)
        hung = thread.is_alive()
        writer.execute("ROLLBACK")
        thread.join()
        assert not hung, "the next client's reset waited for the serializable writer to end"
        assert answer == [(pid, "read committed", "off")]


def test_psycopg_prepared_statements_follow_the_client_to_other_sessions(proxy, new_user):
    """psycopg prepares server-side (prepare_threshold=0: at once) under names every connection
    reuses (_pg3_0, ...): each client's name means its own SQL, wherever it lands."""
    name, password = new_user()
    with psycopg.connect(proxy.conninfo(name, password), autocommit=True, prepare_threshold=0) as one, \
            psycopg.connect(proxy.conninfo(name, password), autocommit=True, prepare_threshold=0) as two, \
            proxy.connect(name, password) as holder:
        assert one.execute("SELECT %s::int + 1", (1,)).fetchone() == (2,)
        assert two.execute("SELECT %s::text || 'x'", ("a",)).fetchone() == ("ax",)  # its own _pg3_0
        seen = set()
        for i in range(6):
            if i % 2:
                holder.execute("BEGIN")
                holder.execute("SELECT 1")  # holds the session the others were on
            seen.add(one.execute("SELECT %s::int + 1, pg_backend_pid()", (i,)).fetchone()[1])
            assert one.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
            assert two.execute("SELECT %s::text || 'x'", (str(i),)).fetchone() == (f"{i}x",)
            if i % 2:
                holder.execute("COMMIT")
        assert len(seen) > 1  # it did move
        assert one.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '_pg3%'").fetchone() == (0,)


async def test_asyncpg_statement_cache_follows_the_client(proxy, new_user):
    name, password = new_user()

    async def connect():
        return await asyncpg.connect(host=proxy.host, port=proxy.port, user=name, password=password,
                                     database="dev", ssl="disable", timeout=10)

    one, two, holder = await connect(), await connect(), await connect()
    try:
        pids = set()
        for i in range(6):
            transaction = None
            if i % 2:
                transaction = holder.transaction()
                await transaction.start()
                await holder.fetchval("SELECT 1")
            assert await one.fetchval("SELECT $1::int * 3", i) == i * 3
            assert await two.fetchval("SELECT $1::text || '!'", str(i)) == f"{i}!"
            pids.add(await one.fetchval("SELECT pg_backend_pid() + $1::int", 0))
            if transaction is not None:
                await transaction.commit()
        assert len(pids) > 1
        statement = await one.prepare("SELECT $1::int + 100")
        async with holder.transaction():
            await holder.fetchval("SELECT 1")
            assert await statement.fetchval(1) == 101
    finally:
        for conn in (one, two, holder):
            await conn.close()


def test_pgjdbc_server_prepared_statements_follow_the_client(proxy, new_user, classpath):  # noqa: F811
    name, password = new_user()
    run = jdbc(classpath, proxy, "sslmode=disable&prepareThreshold=5", name, password, mode="pooled").completed()
    assert run["pooled_sum"] == str(2 * sum(range(1, 13)))
    assert int(run["pooled_sessions"]) > 1


def test_a_prepared_name_taken_twice_is_refused_as_by_postgresql(proxy, new_user):
    name, password = new_user()
    with psycopg.connect(proxy.conninfo(name, password), autocommit=True) as conn:
        conn.pgconn.prepare(b"mine", b"SELECT 1")
        result = conn.pgconn.prepare(b"mine", b"SELECT 2")
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42P05"
        assert b'prepared statement "mine" already exists' in result.error_message
        assert conn.pgconn.exec_prepared(b"mine", []).get_value(0, 0) == b"1"


def test_set_local_stays_in_its_transaction(proxy, new_user):
    name, password = new_user()
    with proxy.connect(name, password) as conn, proxy.connect(name, password) as other:
        with conn.transaction():
            conn.execute("SET LOCAL search_path TO pg_catalog")
            assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog",)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert other.execute("SHOW search_path").fetchone() == ('"$user", public',)


@pytest.mark.parametrize("statement", [
    "CREATE TEMP TABLE scratch (a int)",
    "LISTEN somewhere",
    "SELECT pg_advisory_lock(4242)",
    "BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT 1; COMMIT",
    "PREPARE p AS SELECT 1",
    "SELECT set_config('search_path', 'pg_catalog', false)",
    "BEGIN; SET search_path TO pg_catalog; COMMIT",
])
def test_what_leaves_session_state_pins_the_session(proxy, new_user, statement):
    name, password = new_user()
    with proxy.connect(name, password) as pinned, proxy.connect(name, password) as other:
        pinned.execute(statement)
        pid = backend_pid(pinned)
        with other.transaction():
            assert backend_pid(other) != pid
            assert backend_pid(pinned) == pid  # its own, while another client is in a transaction
        assert backend_pid(other) != pid
    # A pinned session ends with its client: it is never shared.
    assert wait_for(lambda: pool_counts(proxy, name)[0] == 1)


def test_cancel_reaches_the_clients_own_query(proxy, new_user):
    name, password = new_user()
    with proxy.connect(name, password) as victim, proxy.connect(name, password) as bystander, \
            proxy.connect(name, password) as idle:
        results = {}

        def run(label, conn, seconds):
            try:
                conn.execute(f"SELECT pg_sleep({seconds})")
                results[label] = "completed"
            except psycopg.errors.QueryCanceled:
                results[label] = "canceled"

        threads = [threading.Thread(target=run, args=("victim", victim, 30)),
                   threading.Thread(target=run, args=("bystander", bystander, 3))]
        for thread in threads:
            thread.start()
        assert wait_for(lambda: pool_counts(proxy, name)[0] >= 2)
        time.sleep(0.3)
        idle.cancel_safe()  # holds no session: cancels nothing
        victim.cancel_safe()
        for thread in threads:
            thread.join(40)
        assert results == {"victim": "canceled", "bystander": "completed"}


def _cancelled_when(conn, ready, sql: str) -> str:
    """Run sql on conn, cancelling it (psycopg's cancel_safe: its cancel() blocks holding the
    GIL, and the proxy runs in this process) once ready()."""
    def cancel():
        assert wait_for(ready)
        conn.cancel_safe()

    canceller = threading.Thread(target=cancel)
    canceller.start()
    try:
        conn.execute(sql)
        return "completed"
    except psycopg.errors.QueryCanceled:
        return "canceled"
    finally:
        canceller.join()


def test_a_cancel_that_stops_the_reset_before_the_clients_statement_still_cancels_it(make_proxy, new_user, postgres):
    """The reset ahead of the client's statement waits on a lock (the last client's leftovers,
    as in test_a_reset_that_cannot_finish_...) when the client cancels: the cancel stops the
    reset, and the statement, sent again in another session, is cancelled there too."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    other, other_password = new_user()
    table = unique("leftover")
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second, \
            proxy.connect(other, other_password) as locker:
        _leave_a_locked_leftover(first, locker, other, table)
        assert _cancelled_when(second, lambda: waits_on_a_lock(postgres, "DISCARD TEMP"),
                               "SELECT pg_sleep(30)") == "canceled"
        locker.execute("ROLLBACK")
        assert second.execute("SELECT 1").fetchone() == (1,)


def test_a_cancel_sent_while_the_client_waits_for_a_session_cancels_its_statement(make_proxy, new_user):
    """All the role's sessions are taken: the waiting client's cancel is kept until its
    statement gets one, and cancels it there (as PostgreSQL cancels a statement that waits)."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    with proxy.connect(name, password) as holder, proxy.connect(name, password) as waiter:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        def waits_then_holder_commits() -> bool:
            if pool_counts(proxy, name)[2] != 1:
                return False
            threading.Timer(0.3, holder.commit).start()  # after the cancel came
            return True

        assert _cancelled_when(waiter, waits_then_holder_commits, "SELECT pg_sleep(30)") == "canceled"
        assert waiter.execute("SELECT 2").fetchone() == (2,)


def _in_transaction(postgres, name: str) -> int:
    with postgres.connect() as direct:
        return direct.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                              "AND state LIKE 'idle in transaction%%'", (name,)).fetchone()[0]


@pytest.mark.parametrize("goodbye", ["killed", "terminate"])
def test_a_client_gone_mid_transaction_leaves_no_session_in_a_transaction(proxy, new_user, postgres, goodbye):
    name, password = new_user()
    table = unique("kept")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (a int)")
        admin.execute(f"GRANT INSERT, SELECT ON {table} TO {name}")
    conn = proxy.connect(name, password)
    conn.execute("BEGIN")
    conn.execute(f"INSERT INTO {table} VALUES (1)")
    pid = backend_pid(conn)
    assert _in_transaction(postgres, name) == 1
    if goodbye == "killed":
        sock = socket.socket(fileno=conn.pgconn.socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
        sock.close()
    else:
        conn.close()  # Terminate, mid-transaction
    assert wait_for(lambda: _in_transaction(postgres, name) == 0)
    assert wait_for(lambda: pool_counts(proxy, name)[0] == 0)
    with proxy.connect(name, password) as next_client:
        assert backend_pid(next_client) != pid
        assert next_client.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


async def test_200_clients_share_5_sessions(proxy, new_user):
    name, password = new_user()

    async def client(i: int) -> int:
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=name, password=password,
                                     database="dev", ssl="disable", timeout=60)
        try:
            total = 0
            for j in range(3):
                async with conn.transaction():
                    total += await conn.fetchval("SELECT $1::int + $2::int", i, j)
            return total
        finally:
            await conn.close()

    async def counts():  # read on the proxy's own loop
        return pool_counts(proxy, name)

    seen = []
    running = asyncio.gather(*(client(i) for i in range(200)))
    while not running.done():
        seen.append(await asyncio.to_thread(proxy.call, counts()))
        await asyncio.sleep(0.02)
    assert await running == [3 * i + 3 for i in range(200)]
    assert max(open_ for open_, _, _ in seen) <= CAP
    assert max(waiting for _, _, waiting in seen) > 0  # clients did wait for a session


def test_query_wait_timeout(make_proxy, proxy, new_user):
    name, password = new_user()
    tight = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1,
                       limits__query_wait_timeout=1.0)
    with tight.connect(name, password) as holder, tight.connect(name, password) as waiter:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError) as refused:
            waiter.execute("SELECT 1")
        assert refused.value.sqlstate == "53300"
        assert "query_wait_timeout" in str(refused.value)
        with pytest.raises(psycopg.OperationalError) as login:  # a login waits in the same queue
            tight.connect(name, password)
        assert "query_wait_timeout" in str(login.value)
        holder.execute("COMMIT")
        assert holder.execute("SELECT 2").fetchone() == (2,)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{tight.api_port}/metrics").read().decode()
    assert "shiftguard_query_wait_timeouts_total 2.0" in metrics
    assert 'shiftguard_transaction_pool_sessions{state="open"} 1.0' in metrics
    assert "shiftguard_transaction_pool_waiting_clients 0.0" in metrics


def test_a_client_gone_while_waiting_leaves_the_queue(make_proxy, proxy, new_user):
    name, password = new_user()
    tight = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    with tight.connect(name, password) as holder, tight.connect(name, password) as waiter:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        outcome = []

        def wait() -> None:
            try:
                waiter.execute("SELECT 1")
                outcome.append("ran")
            except psycopg.OperationalError:
                outcome.append("connection lost")

        waiting = threading.Thread(target=wait)
        waiting.start()
        assert wait_for(lambda: pool_counts(tight, name)[2] == 1)
        sock = socket.socket(fileno=waiter.pgconn.socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
        sock.shutdown(socket.SHUT_RDWR)
        assert wait_for(lambda: pool_counts(tight, name)[2] == 0)
        holder.execute("COMMIT")
        waiting.join(10)
        assert outcome == ["connection lost"]
        with tight.connect(name, password) as later:
            assert later.execute("SELECT 3").fetchone() == (3,)
        assert pool_counts(tight, name)[0] == 1


def test_set_follows_the_client_to_other_sessions(proxy, new_user):
    """A session-level SET is the client's: restored wherever it lands, never seen by another."""
    name, password = new_user()
    with proxy.connect(name, password) as setter, proxy.connect(name, password) as other, \
            proxy.connect(name, password) as holder:
        setter.execute("SET search_path TO pg_catalog, public")
        setter.execute("SET application_name TO 'setter'")
        pids = set()
        for i in range(4):
            if i % 2:
                holder.execute("BEGIN")
                holder.execute("SELECT 1")
            row = setter.execute("SELECT current_setting('search_path'), current_setting('application_name'), "
                                 "pg_backend_pid()").fetchone()
            assert row[:2] == ("pg_catalog, public", "setter")
            pids.add(row[2])
            assert other.execute("SELECT current_setting('search_path'), current_setting('application_name')"
                                 ).fetchone() == ('"$user", public', "")
            if i % 2:
                holder.execute("COMMIT")
        assert len(pids) > 1
        setter.execute("RESET search_path")
        assert setter.execute("SHOW search_path").fetchone() == ('"$user", public',)
        with setter.transaction():  # a SET in a block that rolls back leaves nothing
            setter.execute("SET search_path TO pg_catalog")
            raise psycopg.Rollback()
        assert setter.execute("SHOW search_path").fetchone() == ('"$user", public',)


def test_audit_records_name_each_client_not_the_shared_session(make_proxy, proxy, new_user, tmp_path):
    name, password = new_user()
    audited = make_proxy(backend__pool_mode="transaction", audit=Audit(dir=str(tmp_path / "audit"), user_activity=True))
    marker = unique("audit")
    with audited.connect(name, password) as one, audited.connect(name, password) as two:
        assert backend_pid(one) == backend_pid(two)  # one backend session serves both
        one.execute(f"SELECT '{marker}-one'")
        two.execute(f"SELECT '{marker}-two'")
        pids = {"one": one.info.backend_pid, "two": two.info.backend_pid}

    def logged():
        with audited.connect() as admin:
            rows = admin.execute("SELECT querytxt, pid, userid = (SELECT usesysid FROM pg_user WHERE usename = %s) "
                                 "FROM stl_query WHERE querytxt LIKE %s", (name, f"%{marker}%")).fetchall()
        return rows if len(rows) == 2 else None
    rows = wait_for(logged)
    assert {(text.split("-")[-1].rstrip("'"), pid, mine) for text, pid, mine in rows} == {
        ("one", pids["one"], True), ("two", pids["two"], True)}


def test_copy_and_pipelines_run_in_one_session_each(proxy, new_user):
    """COPY FROM STDIN and a psycopg pipeline (many extended-protocol messages, one Sync at the
    end) each hold their session until they are over; the rows are all there."""
    name, password = new_user()
    table = unique("copied")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (a int)")
        admin.execute(f"GRANT INSERT, SELECT ON {table} TO {name}")
    with proxy.connect(name, password) as conn, proxy.connect(name, password) as other:
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i,))
                if i == 500:
                    assert other.execute("SELECT 1").fetchone() == (1,)  # on another session meanwhile
        with conn.pipeline():
            cursors = [conn.execute(f"INSERT INTO {table} VALUES (%s) RETURNING a", (i,)) for i in range(50)]
        assert [c.fetchone()[0] for c in cursors] == list(range(50))
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1050,)


def test_the_unnamed_statement_is_each_clients_own_across_syncs(proxy, new_user):
    """A client may parse the unnamed statement, sync, and bind it later (asyncpg does so
    without its statement cache): it binds its own, even when another client's unnamed
    statement was parsed in that session meanwhile; and none after its own Query ended it."""
    name, password = new_user()
    with proxy.connect(name, password) as one, proxy.connect(name, password) as two:
        assert backend_pid(one) == backend_pid(two)  # one session serves both, one after the other
        assert one.pgconn.prepare(b"", b"SELECT 'one', $1::int").status == psycopg.pq.ExecStatus.COMMAND_OK
        assert two.pgconn.prepare(b"", b"SELECT 'two', $1::int").status == psycopg.pq.ExecStatus.COMMAND_OK
        for conn, label in ((one, b"one"), (two, b"two"), (one, b"one")):
            result = conn.pgconn.exec_prepared(b"", [b"7"])
            assert (result.get_value(0, 0), result.get_value(0, 1)) == (label, b"7")
        two.execute("SELECT 1")  # a Query ends the client's unnamed statement
        result = two.pgconn.exec_prepared(b"", [b"7"])
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"26000"
        assert one.pgconn.exec_prepared(b"", [b"8"]).get_value(0, 1) == b"8"


def test_set_session_authorization_pins_the_superusers_session(proxy, new_user):
    """Redshift's way for a superuser to test access as another user: its session is its own
    from then on, and no other client ever runs as that user through it."""
    name, _ = new_user()
    with proxy.connect() as tester, proxy.connect() as other:
        tester.execute(f"SET SESSION AUTHORIZATION {name}")
        pid = backend_pid(tester)
        for _ in range(3):
            assert tester.execute("SELECT session_user").fetchone() == (name,)
            with other.transaction():
                assert other.execute("SELECT session_user").fetchone() == (ADMIN,)
                assert backend_pid(other) != pid
        assert backend_pid(tester) == pid


def test_redshift_connector_in_transaction_pooling(proxy, new_user):
    from .test_redshift_connector import connect
    name, password = new_user()
    with connect(proxy, name, password) as one, connect(proxy, name, password) as two:
        first, second = one.cursor(), two.cursor()
        for i in range(3):
            first.execute("SELECT %s::int + 1, current_user", (i,))
            assert first.fetchone() == [i + 1, name]
            second.execute("SELECT %s::text || 'x'", (str(i),))
            assert second.fetchone() == [f"{i}x"]
            one.commit()  # redshift_connector opens a transaction block: it ends here
            two.commit()


def test_standard_conforming_strings_is_each_clients_own(proxy, new_user):
    """The setting decides how PostgreSQL, and so the proxy, reads string constants: a client
    that changed it reads them its way in every session it lands on; the others keep theirs
    (Redshift's default here: a backslash escapes)."""
    name, password = new_user()
    with proxy.connect(name, password) as changed, proxy.connect(name, password) as other, \
            proxy.connect(name, password) as holder:
        changed.execute("SET standard_conforming_strings = on")
        for i in range(4):
            if i % 2:
                holder.execute("BEGIN")
                holder.execute("SELECT 1")
            assert changed.execute(r"SELECT 'a\nb'").fetchone() == ("a\\nb",)
            assert other.execute(r"SELECT 'a\nb'").fetchone() == ("a\nb",)
            if i % 2:
                holder.execute("COMMIT")


def test_a_shared_session_keeps_at_most_1000_prepared_statements(proxy, new_user):
    """A client preparing ever new SQL does not grow a shared session without end: the oldest
    statements are closed in it, and prepared again when their client binds them."""
    name, password = new_user()
    with proxy.connect(name, password) as conn:
        for i in range(1010):
            assert conn.pgconn.prepare(f"s{i}".encode(), f"SELECT {i}".encode()).status == \
                psycopg.pq.ExecStatus.COMMAND_OK
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (1000,)
        for i in (0, 5, 1009):
            assert conn.pgconn.exec_prepared(f"s{i}".encode(), []).get_value(0, 0) == str(i).encode()
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (1000,)


def test_state_left_out_of_the_proxys_sight_never_reaches_the_next_client(proxy, new_user, postgres):
    """What a function body leaves in its session, where the proxy cannot see it (set_config(...,
    false) of any setting, role included, an advisory lock, a temporary table, LISTEN, a
    sequence's lastval), is the calling client's: a session that served another client is reset
    before it serves this one."""
    name, password = new_user()
    group, function, sequence = unique("grp"), unique("leave"), unique("seq")
    with postgres.connect() as direct:
        direct.execute(f"CREATE ROLE {group} NOLOGIN")
        direct.execute(f"GRANT {group} TO {name}")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SEQUENCE public.{sequence}")
        admin.execute(f"GRANT USAGE ON SEQUENCE public.{sequence} TO {name}")
        admin.execute(f"""CREATE FUNCTION public.{function}() RETURNS bigint LANGUAGE plpgsql AS $$
            DECLARE v bigint := nextval('public.{sequence}');
            BEGIN
                EXECUTE 'CREATE TEMP TABLE leaked_scratch (a int)';  -- (DDL under SET ROLE is refused)
                EXECUTE 'LISTEN leaked_channel';
                PERFORM set_config('search_path', 'leaked', false);
                PERFORM set_config('work_mem', '7MB', false);
                PERFORM set_config(chr(114) || 'ole', '{group}', false);
                PERFORM pg_advisory_lock(4242);
                RETURN v;
            END $$""")
        admin.execute(f"GRANT EXECUTE ON FUNCTION public.{function}() TO {name}")
    with proxy.connect(name, password) as first:
        pid = backend_pid(first)
        first.execute(f"SELECT public.{function}()")
        assert first.execute("SELECT current_user, current_setting('work_mem')").fetchone() == (group, "7MB")
        with proxy.connect(name, password) as second:
            assert backend_pid(second) == pid  # the session the first client left idle
            assert second.execute(
                "SELECT current_user, current_setting('search_path'), current_setting('work_mem'), "
                "(SELECT count(*) FROM pg_catalog.pg_listening_channels()), "
                "(SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), "
                "to_regclass('pg_temp.leaked_scratch')").fetchone() == (name, '"$user", public', "4MB", 0, 0, None)
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
                second.execute("SELECT lastval()")


def test_drop_database_is_not_refused_for_the_pools_idle_sessions(proxy, postgres):
    """A client in a database holds no session there between transactions: the pool's idle
    sessions in it are closed before DROP DATABASE (as session mode closes the ones it keeps),
    and the client learns the database is gone at its next statement."""
    db = unique("db")
    with proxy.connect() as admin:
        admin.execute(f"CREATE DATABASE {db}")
    try:
        with proxy.connect(dbname=db) as gone, proxy.connect(dbname=db) as staying:
            gone.execute("SELECT 1")
            staying.execute("SELECT 1")
        with proxy.connect(dbname=db) as staying:
            staying.execute("SELECT 1")
            assert wait_for(lambda: any(key[1] == db and counts[1]
                                        for key, counts in proxy.proxy.context.transactions.counts().items()))
            with proxy.connect() as admin:
                admin.execute(f"DROP DATABASE {db}")
                assert admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (db,)).fetchone() == (0,)
            with pytest.raises(psycopg.errors.InvalidCatalogName, match=f'database "{db}" does not exist'):
                staying.execute("SELECT 1")
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_a_masking_change_is_in_force_for_every_client_and_its_session_goes_back(proxy, world):
    """An ATTACH's ReadyForQuery waits until the proxy has read the change (relay.py
    _ready_held): the readers, 8 clients on the 5 sessions of their role, see it in
    their next statement, and the session that ran it goes back to the pool when the client
    hears it is done."""
    n = world
    raw, full = [c for _, c in CARDS], [FULL] * 3
    readers = [psycopg.connect(proxy.conninfo(n["regular"], PASSWORD), autocommit=True) for _ in range(8)]
    try:
        with proxy.connect() as admin:
            for round_ in range(4):
                attaching = not round_ % 2
                admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) TO PUBLIC" if attaching
                              else f"DETACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) FROM PUBLIC")
                assert wait_for(lambda: pool_counts(proxy, ADMIN)[:2] == (1, 1))
                assert _all_at_once(readers, n["cards"]) == [full if attaching else raw] * 8
    finally:
        for conn in readers:
            conn.close()


def test_a_role_in_two_databases_never_shares_a_session_across_them(proxy, new_user, postgres):
    """The pool key holds the database: a user's clients in dev and in another database each
    run in sessions of their own database, whichever came free last."""
    name, password = new_user()
    db = unique("db")
    with proxy.connect() as admin:
        admin.execute(f"CREATE DATABASE {db}")
    try:
        with proxy.connect(name, password) as here, proxy.connect(name, password, dbname=db) as there:
            pids = {"dev": set(), db: set()}
            for _ in range(5):
                for conn in (here, there):
                    database, pid = conn.execute("SELECT current_database(), pg_backend_pid()").fetchone()
                    assert database == conn.info.dbname
                    pids[database].add(pid)
            assert pids["dev"] and pids[db] and not pids["dev"] & pids[db]
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_a_reboot_ends_the_pools_idle_sessions_too(make_proxy, postgres):
    """RebootCluster ends every session of the cluster: those the pool holds idle as well."""
    from .test_cluster_api import client, connect, own_cluster
    rebooting = make_proxy(**own_cluster(), backend__pool_mode="transaction", backend__max_sessions_per_pool=CAP)
    admin = rebooting.config.cluster.admin_user
    with connect(rebooting) as conn:
        pid = backend_pid(conn)
    assert wait_for(lambda: pool_counts(rebooting, admin) == (1, 1, 0))
    client(rebooting).reboot_cluster(ClusterIdentifier=rebooting.config.cluster.identifier)
    assert wait_for(lambda: pool_counts(rebooting, admin) == (0, 0, 0))
    with postgres.connect() as direct:
        assert wait_for(lambda: direct.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                               (pid,)).fetchone() == (0,))


def test_a_client_takes_back_the_idle_session_it_left(proxy, new_user):
    """Of the idle sessions, a client's next transaction takes the one it left itself (which
    needs no reset), not the one another client gave back last."""
    name, password = new_user()
    with proxy.connect(name, password) as one, proxy.connect(name, password) as two:
        one.execute("BEGIN")
        first = backend_pid(one)
        second = backend_pid(two)  # another session: the first is held
        one.execute("COMMIT")      # given back after the second
        for _ in range(3):
            assert backend_pid(two) == second
            assert backend_pid(one) == first


def test_a_restored_set_reads_as_it_did_when_it_ran(proxy, new_user, postgres):
    """A client's SET statements are run again in each session it lands on, maybe where
    standard_conforming_strings reads backslashes otherwise than when they ran: text that one
    reading takes for a string and the other for statements (here a SET ROLE, which the proxy
    refuses) is kept as the proxy sent it, in a form both readings agree on."""
    name, password = new_user()
    group = unique("grp")
    with postgres.connect() as direct:
        direct.execute(f"CREATE ROLE {group} NOLOGIN")
        direct.execute(f"GRANT {group} TO {name}")
    smuggled = rf"SET application_name = 'a\''; SET ROLE {group}; -- '"
    with proxy.connect(name, password) as changed, proxy.connect(name, password) as holder:
        changed.execute("SET standard_conforming_strings = on")
        changed.execute(smuggled)  # with backslashes plain: one SET of a string
        changed.execute("SET standard_conforming_strings = on")
        pid = backend_pid(changed)
        with holder.transaction():
            assert backend_pid(holder) == pid
            assert changed.execute("SELECT current_user, current_setting('application_name'), "
                                   "pg_backend_pid()").fetchone()[:2] == (name, rf"a\'; SET ROLE {group}; -- ")
            assert backend_pid(changed) != pid
            assert changed.execute(r"SELECT 'a\nb'").fetchone() == ("a\\nb",)


def test_defaults_a_role_set_itself_are_not_in_a_session_opened_for_another_client(proxy, new_user):
    """A role may change its own SET defaults from a DO block (ALTER ROLE self SET); a login
    puts back what ALTER USER set before its session opens, and so does every session the pool
    opens later for a client already logged in."""
    name, password = new_user()
    with proxy.connect(name, password) as other, proxy.connect(name, password) as changer:
        assert backend_pid(other) == backend_pid(changer)  # one session so far
        changer.execute(f"DO $$BEGIN ALTER ROLE {name} SET search_path = leaked; END$$")  # pins it
        assert other.execute("SHOW search_path").fetchone() == ('"$user", public',)  # a new session
        assert backend_pid(other) != backend_pid(changer)


def test_a_connected_clients_next_transaction_is_reset_from_anothers_state(make_proxy, new_user, postgres):
    """The reset of a session that served another client runs ahead of the waiting client's
    own statements, in the same round trip (txpool.restore_ahead): what the other left is gone,
    the client's own SET comes back, none of the reset's replies reach the client, and the
    client's statements run in a transaction of their own: one that fails does not undo the
    reset, and VACUUM (which refuses to run inside a transaction) runs."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    function = unique("leave")
    with proxy.connect() as admin:
        admin.execute(f"""CREATE FUNCTION public.{function}() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM set_config('work_mem', '7MB', false);
                EXECUTE 'CREATE TEMP TABLE leaked_scratch (a int)';
                RETURN 1;
            END $$""")
        admin.execute(f"GRANT EXECUTE ON FUNCTION public.{function}() TO {name}")
    with proxy.connect(name, password) as waiting, \
            proxy.connect(name, password) as leaving:
        waiting.execute("SET application_name = 'mine'")
        pid = backend_pid(waiting)
        leaving.execute(f"SELECT public.{function}()")
        assert backend_pid(leaving) == pid  # the one session, served to the other in between
        notices = []
        waiting.add_notice_handler(notices.append)
        with pytest.raises(psycopg.errors.DivisionByZero):
            waiting.execute("SELECT 1 / 0")
        waiting.execute("VACUUM")
        assert waiting.execute(
            "SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('application_name'), "
            "to_regclass('pg_temp.leaked_scratch')").fetchone() == (pid, "4MB", "mine", None)
        assert notices == []  # not the reset's COMMIT warning
        assert waiting.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_reset_that_fails_ends_that_client_only(make_proxy, new_user, postgres):
    """A client's SET that can no longer run again (its text search configuration was dropped)
    fails the reset of the session it lands on: that client gets a FATAL error saying why (its
    statement never ran), the session is closed, and the role's other clients go on."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    config = f"public.{unique('cfg')}"
    with postgres.connect() as direct:
        direct.execute(f"CREATE TEXT SEARCH CONFIGURATION {config} (COPY = pg_catalog.english)")
    with proxy.connect(name, password) as failing, \
            proxy.connect(name, password) as other:
        failing.execute(f"SET default_text_search_config = '{config}'")
        other.execute("SELECT 1")  # the session served another client: reset before the next
        with postgres.connect() as direct:
            direct.execute(f"DROP TEXT SEARCH CONFIGURATION {config}")
        with pytest.raises(psycopg.OperationalError, match="could not restore this session's settings"):
            failing.execute("CREATE TEMP TABLE never_made (a int)")
        assert other.execute("SELECT current_setting('default_text_search_config'), "
                             "to_regclass('pg_temp.never_made')").fetchone() == ("pg_catalog.english", None)


def test_a_login_on_a_session_another_client_changed_is_greeted_as_by_a_new_one(make_proxy, new_user):
    """A login takes a session another client left with its own SET in force: the login is
    greeted with the parameters of the role's sessions as they open, and its statements see
    them (the session is restored ahead of its first one), while the other client keeps its
    own; neither is told a parameter changed when it did not change for it."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    with proxy.connect(name, password) as changed:
        changed.execute("SET DateStyle = 'German'")
        assert changed.info.parameter_status("DateStyle") == "German, DMY"
        with proxy.connect(name, password) as login:
            assert backend_pid(login) == backend_pid(changed)  # the one session
            assert login.info.parameter_status("DateStyle") == "ISO, MDY"
            assert login.execute("SELECT current_setting('DateStyle'), "
                                 "'2026-12-07'::date::text").fetchone() == ("ISO, MDY", "2026-12-07")
            assert login.info.parameter_status("DateStyle") == "ISO, MDY"
            assert changed.execute("SELECT '2026-12-07'::date::text").fetchone() == ("07.12.2026",)
            assert changed.info.parameter_status("DateStyle") == "German, DMY"


def test_a_setting_a_function_puts_back_to_what_the_last_client_was_told_is_seen(make_proxy, new_user, postgres):
    """PostgreSQL reports a parameter only when it differs from what it last reported in that
    session, to the client before. After another client's SET standard_conforming_strings = on,
    the reset puts it back off for this client; a function of this client that sets it on again
    goes unreported. The proxy still knows: the client is told, its session is its own from
    then on, and its string constants are read as PostgreSQL reads them (a SET ROLE after a
    backslash-quote is seen and refused, not taken for part of a string)."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=2)
    name, password = new_user()
    group, function = unique("grp"), unique("scs")
    with postgres.connect() as direct:
        direct.execute(f"CREATE ROLE {group} NOLOGIN")
        direct.execute(f"GRANT {group} TO {name}")
    with proxy.connect() as admin:
        admin.execute(f"""CREATE FUNCTION public.{function}() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN PERFORM set_config('standard_conforming_strings', 'on', false); RETURN 1; END $$""")
        admin.execute(f"GRANT EXECUTE ON FUNCTION public.{function}() TO {name}")
    with proxy.connect(name, password) as other, proxy.connect(name, password) as client:
        other.execute("SET standard_conforming_strings = on")
        assert client.info.parameter_status("standard_conforming_strings") == "off"
        client.execute(f"SELECT public.{function}()")  # in the session the other left idle
        assert client.info.parameter_status("standard_conforming_strings") == "on"
        with pytest.raises(psycopg.Error):
            client.execute(rf"SELECT 'a\'; SET ROLE {group}; -- '")
        assert client.execute("SELECT current_user, current_setting('standard_conforming_strings')"
                              ).fetchone() == (name, "on")
        other.execute("SET standard_conforming_strings = off")  # in another session: the first is the client's
        assert other.execute(r"SELECT 'a\nb'").fetchone() == ("a\nb",)
        assert client.execute(r"SELECT 'a\nb'").fetchone() == ("a\\nb",)


def test_a_client_gone_before_its_sessions_reset_answered_leaves_no_replies_to_the_next(make_proxy, new_user):
    """A client whose first bytes on a session another client used are a Flush and a Terminate
    goes before the replies to the session's reset came: the session is closed, not given to
    the next client with those replies still to come."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    with proxy.connect(name, password) as other:
        first = backend_pid(other)
        for _ in range(20):
            sock = raw(proxy)
            login(sock, name, password)
            other.execute("SELECT 1")  # the session served the other client last
            sock.sendall(m.message(m.F_FLUSH) + m.terminate())
            assert sock.recv(65536) == b""
            sock.close()
            assert other.execute("SELECT 'mine', 42").fetchone() == ("mine", 42)
        assert backend_pid(other) != first


def test_a_session_opened_after_the_role_changed_its_own_defaults_reads_strings_as_told(make_proxy, new_user,
                                                                                          postgres):
    """A role may change its own defaults (ALTER ROLE ... SET, in a DO block). With sessions
    like PostgreSQL's (server_version_mode: postgres, no standard_conforming_strings at login),
    a session opened for a client's later transaction would log in with them, and PostgreSQL
    reports them only at that login, which the client never sees. They are put back first: the
    session reads string constants as the client was told, as the proxy reads them."""
    proxy = make_proxy(server_version_mode="postgres", backend__pool_mode="transaction",
                       backend__max_sessions_per_pool=2)
    name, password = new_user()
    group = unique("grp")
    with postgres.connect() as direct:
        direct.execute(f"CREATE ROLE {group} NOLOGIN")
        direct.execute(f"GRANT {group} TO {name}")
    with proxy.connect(name, password) as client, proxy.connect(name, password) as other:
        assert client.info.parameter_status("standard_conforming_strings") == "on"
        other.execute(f"DO $$ BEGIN EXECUTE 'ALTER ROLE {name} SET standard_conforming_strings = off'; END $$")
        with other.transaction():
            other.execute("SELECT 1")  # holds the one session: the client's next one is opened
            # the role's own change is put back before the session opens (Catalog.login_record)
            assert client.execute("SELECT current_setting('standard_conforming_strings')").fetchone() == ("on",)
        assert client.info.parameter_status("standard_conforming_strings") == "on"
        client.execute(rf"SELECT 'x\' , ' ; SET ROLE {group}; -- '")  # one SELECT of two strings
        assert client.execute("SELECT current_user").fetchone() == (name,)


def test_a_statement_another_client_prepared_cannot_be_swapped_under_it(make_proxy, new_user):
    """The proxy prepares a client's named statement under its own name, shared by every client
    of the role. Another client of the role that replaces it in the session (DEALLOCATE and
    PREPARE in a stored procedure, which the proxy does not see) does not make the first client's
    next execution run its SQL."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1,
                       limits__query_wait_timeout=5)
    name, password = new_user()
    with proxy.connect(name, password) as victim, proxy.connect(name, password) as attacker:
        assert victim.execute("SELECT %s::int + 1", (1,), prepare=True).fetchone() == (2,)
        swap = unique("swap")
        attacker.execute(f"""CREATE PROCEDURE public.{swap}() LANGUAGE plpgsql AS $$
            DECLARE s record; BEGIN
            FOR s IN SELECT name, parameter_types FROM pg_prepared_statements WHERE name LIKE 'sg%' LOOP
                EXECUTE format('DEALLOCATE %I', s.name);
                EXECUTE format('PREPARE %I(%s) AS SELECT $1::int + 1000', s.name,
                               array_to_string(s.parameter_types, ','));
            END LOOP; END $$""")
        attacker.execute(f"CALL public.{swap}()")
        assert victim.execute("SELECT %s::int + 1", (1,), prepare=True).fetchone() == (2,)


def test_a_reset_that_fails_runs_nothing_the_client_sent_after_its_sync(make_proxy, new_user, postgres):
    """PostgreSQL skips a client's messages after a failed reset statement only up to the
    client's first Sync. A client whose reset fails (its text search configuration was dropped)
    and whose first bytes are a pipeline (Parse/Bind/Execute/Sync, then a Query) gets the FATAL
    error, and the Query after its Sync does not run either (in a session whose reset was
    rolled back, as the previous client left it)."""
    proxy = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=1)
    name, password = new_user()
    config, table = f"public.{unique('cfg')}", unique("after_sync")
    with postgres.connect() as direct:
        direct.execute(f"CREATE TEXT SEARCH CONFIGURATION {config} (COPY = pg_catalog.english)")
        direct.execute(f"CREATE TABLE public.{table} (a int)")
        direct.execute(f"GRANT INSERT, SELECT ON public.{table} TO {name}")
    sock = raw(proxy)
    login(sock, name, password)
    sock.sendall(m.query(f"SET default_text_search_config = '{config}'"))
    received = b""
    while not received.endswith(m.ready_for_query(m.TX_IDLE)):
        received += sock.recv(65536)
    with proxy.connect(name, password) as other:
        other.execute("SELECT 1")  # the session served another client: reset before the next
        with postgres.connect() as direct:
            direct.execute(f"DROP TEXT SEARCH CONFIGURATION {config}")
        sock.sendall(m.Parse(b"", b"SELECT 1", b"\0\0").encode() + m.message(m.F_BIND, b"\0\0" + b"\0\0" * 3)
                     + m.message(m.F_EXECUTE, b"\0" + b"\0\0\0\0") + m.message(m.F_SYNC)
                     + m.query(f"INSERT INTO public.{table} VALUES (1)"))
        assert b"could not restore this session's settings" in read_all(sock)
        sock.close()
        assert other.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (0,)
