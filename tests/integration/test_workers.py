"""`shiftguard serve --workers 2` as a user runs it: clients spread over two worker processes on
one address, and what must hold across them: a cancel reaches its own query whichever worker
the kernel hands it to, the audit logs hold every line whole and once, a user's CONNECTION
LIMIT counts the sessions of all workers (and the sessions they keep give way to it), failed
logins count in all, /metrics shows every worker, init_sql runs once, a reload reaches every
worker, a worker that dies is started again, and stopping (or killing) the parent leaves
nothing behind."""

from __future__ import annotations

import collections
import itertools
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.protocol import messages as m
from proxy.workers import owner

from ..conftest import ADMIN, ADMIN_PASSWORD, USER_PASSWORD, unique, wait_for
from .test_serve import Served, clean_env, data_dir, run, server_processes  # noqa: F401 (data_dir: a fixture)

WORKERS = 2


def spread(served: Served, count: int, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> list[psycopg.Connection]:
    """count connections, alternating between the workers as far as they go (the kernel picks
    by the source port: connections that land where enough are are closed, and others opened)."""
    by_worker = collections.defaultdict(list)
    deadline = time.monotonic() + 30  # a worker started again takes logins once it listens
    while sum(map(len, by_worker.values())) < count:
        conn = served.connect(user, password)
        worker = owner(conn.info.backend_pid)
        if len(by_worker[worker]) < (count + WORKERS - 1) // WORKERS or time.monotonic() > deadline:
            by_worker[worker].append(conn)
        else:
            conn.close()
    return [conn for group in itertools.zip_longest(*by_worker.values()) for conn in group if conn is not None]


def read_until(served: Served, pattern: re.Pattern, timeout: float = 120) -> str:
    """The parent's log from here up to the first match of pattern (read from the pipe
    itself: the text stream's buffer would hide lines from select)."""
    fd, text = served.process.stderr.fileno(), ""
    deadline = time.monotonic() + timeout
    while not pattern.search(text) and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 65536).decode()
        if not chunk:
            break
        text += chunk
    assert pattern.search(text), text
    return text


def worker_pids(served: Served) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(served.process.pid)], capture_output=True,
                         text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "proxy.workers" in line]


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture(scope="module")
def served():
    directory = Path(subprocess.run(["mktemp", "-d", "/tmp/shiftguard-workers-test-XXXX"], capture_output=True,
                                    text=True).stdout.strip())
    serving = Served("--data-dir", str(directory), "--workers", str(WORKERS),
                     env=clean_env(SHIFTGUARD_AUDIT_USER_ACTIVITY="true"))
    serving.data_dir = directory
    yield serving
    assert serving.stop() == 0
    subprocess.run(["rm", "-rf", str(directory)])


def test_one_address_two_processes(served):
    conns = spread(served, 4)
    try:
        assert {owner(conn.info.backend_pid) for conn in conns} == set(range(WORKERS))
        assert len(worker_pids(served)) == WORKERS
        for conn in conns:
            assert conn.execute("SELECT current_user").fetchone() == (ADMIN,)
    finally:
        for conn in conns:
            conn.close()


def test_metrics_show_every_process(served):
    """/metrics (served by the parent) shows each worker's metrics too, one family per name,
    every sample labelled with its process: the open sessions are counted where they are."""
    conns = spread(served, 4)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{served.api_port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        for conn in conns:
            conn.close()
    families = list(text_string_to_metric_families(text))
    assert len({family.name for family in families}) == len(families)
    relaying = {sample.labels["worker"]: sample.value for family in families for sample in family.samples
                if sample.name == "shiftguard_connections" and sample.labels.get("state") == "relaying"}
    assert set(relaying) == {"parent", *map(str, range(WORKERS))}
    assert relaying["parent"] == 0 and sum(relaying.values()) >= 4
    assert all(relaying[str(index)] >= 2 for index in range(WORKERS))


def running(admin: psycopg.Connection, tag: str) -> set[str]:
    rows = admin.execute("SELECT query FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
                         (f"SELECT pg_sleep(600), '{tag}%",)).fetchall()
    return {re.search(rf"'({tag}_\d+)'", query).group(1) for query, in rows}


def test_cancels_reach_their_own_query_whichever_worker_receives_them(served):
    """Each client's cancel travels on a new connection, which the kernel gives to either
    worker; sixteen of them cross over with near certainty. Every one cancels its own client's
    query (57014), and the others keep running until their own cancel."""
    tag = unique("sleep")
    conns = spread(served, 16)
    outcome: dict[str, str] = {}

    def sleep(name: str, conn: psycopg.Connection) -> None:
        try:
            conn.execute(f"SELECT pg_sleep(600), '{name}'")
            outcome[name] = "finished"
        except psycopg.Error as exc:
            outcome[name] = exc.sqlstate

    names = [f"{tag}_{n}" for n in range(len(conns))]
    threads = [threading.Thread(target=sleep, args=pair) for pair in zip(names, conns)]
    for thread in threads:
        thread.start()
    with served.connect() as admin:
        try:
            assert wait_for(lambda: running(admin, tag) == set(names))
            first, second = names[::2], names[1::2]  # each half has sessions of both workers
            for name, conn in zip(names, conns):
                if name in first:
                    conn.cancel()
            for thread, name in zip(threads, names):
                if name in first:
                    thread.join(30)
            assert {name: outcome.get(name) for name in first} == {name: "57014" for name in first}
            assert running(admin, tag) == set(second)  # no other client's query was cancelled
            for name, conn in zip(names, conns):
                if name in second:
                    conn.cancel()
            for thread in threads:
                thread.join(30)
            assert outcome == {name: "57014" for name in names}
        finally:
            for conn in conns:
                conn.close()


def test_a_cancel_with_a_wrong_key_does_nothing_on_any_worker(served):
    tag = unique("sleep")
    conns = spread(served, 2)
    outcome = {}

    def sleep(n: int) -> None:
        try:
            conns[n].execute(f"SELECT pg_sleep(600), '{tag}_{n}'")
        except psycopg.Error as exc:
            outcome[n] = exc.sqlstate

    threads = [threading.Thread(target=sleep, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    with served.connect() as admin:
        try:
            assert wait_for(lambda: len(running(admin, tag)) == 2)
            for conn in conns:
                for wrong in range(8):  # over new connections, to both workers
                    with socket.create_connection(("127.0.0.1", served.port)) as raw:
                        raw.sendall(m.cancel_request(conn.info.backend_pid, wrong))
                        assert raw.recv(1) == b""  # closed without a word, as PostgreSQL does
            time.sleep(0.5)
            assert running(admin, tag) == {f"{tag}_0", f"{tag}_1"} and outcome == {}
            for conn in conns:
                conn.cancel()
            for thread in threads:
                thread.join(30)
            assert outcome == {0: "57014", 1: "57014"}
        finally:
            for conn in conns:
                conn.close()


ACTIVITY_LINE = re.compile(r"'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ UTC \[ db=\S+ user=\S+ pid=\d+ userid=\d+ xid=\d+ \]' "
                           r"LOG: .*")


def test_audit_logs_hold_every_line_of_every_worker_whole_and_once(served):
    """Clients on both workers log in and run long statements at once; each statement is one
    whole line of the user activity log, each login one 'authenticated' line, and CREATE USER
    one line of the user log (the parent writes it, not each worker)."""
    user = unique("u")
    padding = "x" * 9000  # longer than a write buffer: a cut or interleaved line would show
    with served.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
    conns = spread(served, 8, user, USER_PASSWORD)
    statements = [f"SELECT '{user}_{n}_{k}', '{padding}'" for n in range(len(conns)) for k in range(20)]

    def run(n: int) -> None:
        for k in range(20):
            conns[n].execute(statements[n * 20 + k])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(conns))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for conn in conns:
        conn.close()
    audit = served.data_dir / "audit"

    def logged():
        text = (audit / "useractivitylog").read_text()
        return text if all(statement in text for statement in statements) else None
    activity = wait_for(logged)
    assert activity
    lines = activity.splitlines()
    assert [line for line in lines if not ACTIVITY_LINE.fullmatch(line)] == []
    ours = [line.split(" LOG: ", 1)[1] for line in lines if f"user={user} " in line]
    assert sorted(ours) == sorted(statements)
    connections = wait_for(lambda: [line for line in (audit / "connectionlog").read_text().splitlines()
                                    if line.startswith("authenticated") and f"|{user}" in line.replace(" ", "")]
                           if (audit / "connectionlog").read_text().count("disconnecting session") else None)
    fields = {len(line.split("|")) for line in (audit / "connectionlog").read_text().splitlines()}
    assert len(fields) == 1  # every line whole
    assert len(connections) >= len(conns)
    created = wait_for(lambda: [line for line in (audit / "userlog").read_text().splitlines()
                                if f"|{user} " in line and "|create" in line])
    assert len(created) == 1


def test_a_users_connection_limit_counts_the_sessions_of_every_worker(served):
    user = unique("u")
    with served.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}' CONNECTION LIMIT 2")
    held: dict[int, psycopg.Connection] = {}
    try:
        for _ in range(40):  # one session on each worker
            if len(held) == WORKERS:
                break
            try:
                conn = served.connect(user, USER_PASSWORD)
            except psycopg.OperationalError:  # a closed one's backend process still exiting
                time.sleep(0.1)
                continue
            if owner(conn.info.backend_pid) in held:
                conn.close()
            else:
                held[owner(conn.info.backend_pid)] = conn
        assert len(held) == WORKERS
        held = list(held.values())
        for _ in range(6):  # new logins land on both workers; each is refused
            with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
                served.connect(user, USER_PASSWORD)
        held.pop().close()
        with served.connect(user, USER_PASSWORD) as conn:  # the freed one, on whichever worker
            assert conn.execute("SELECT current_user").fetchone() == (user,)
    finally:
        for conn in held:
            conn.close()


def test_sessions_other_workers_kept_for_a_user_give_way_to_its_new_connection_limit(served):
    """Sessions a user's clients left idle are kept by each worker for the user's next client;
    once the user has a CONNECTION LIMIT they would count against it. A login refused for the
    limit makes every worker end those it keeps, and gets in."""
    user = unique("u")
    with served.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
        for conn in spread(served, 4, user, USER_PASSWORD):
            conn.close()
        count = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"
        # Kept: two by each worker at least (and those spread() closed at once).
        assert wait_for(lambda: admin.execute(count).fetchone()[0] >= 4)
        admin.execute(f"ALTER USER {user} CONNECTION LIMIT 1")
        for _ in range(6):  # whichever worker each lands on
            with served.connect(user, USER_PASSWORD) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (user,)
            assert wait_for(lambda: admin.execute(count).fetchone() == (0,))  # not kept: it has a limit


def test_failed_logins_count_in_every_worker(served):
    """auth.lockout_failures (10) failed logins in all, spread by the kernel over the workers,
    cool the user down from that address on every worker, as in one process."""
    user = unique("u")
    with served.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
    for _ in range(10):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            served.connect(user, "Wrong1234")
    time.sleep(0.2)  # the last failure's word to the other worker is on its way
    for _ in range(8):  # the right password now, on both workers: cooling down
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            served.connect(user, USER_PASSWORD)
    other = unique("u")  # another user from the same address is not affected
    with served.connect() as admin:
        admin.execute(f"CREATE USER {other} PASSWORD '{USER_PASSWORD}'")
    for conn in spread(served, 2, other, USER_PASSWORD):
        conn.close()


def test_a_reload_reaches_every_worker(data_dir, tmp_path):  # noqa: F811 (the fixture)
    config = tmp_path / "shiftguard.yaml"
    config.write_text("tls:\n  require_ssl: false\n"
                      f"init_sql:\n  - CREATE USER init_user PASSWORD '{USER_PASSWORD}'\n")
    served = Served("--data-dir", str(data_dir), "--workers", str(WORKERS), "--config", str(config))
    try:
        for conn in spread(served, 2, "init_user", USER_PASSWORD):  # init_sql ran once, through the workers
            conn.close()
        config.write_text(config.read_text().replace("require_ssl: false", "require_ssl: true"))
        signalled = run("reload", "--data-dir", str(data_dir))  # SIGHUP to the parent, by its pid file
        assert signalled.returncode == 0 and f"pid {served.process.pid}" in signalled.stdout
        refused = 0
        deadline = time.monotonic() + 20
        while refused < 10 and time.monotonic() < deadline:  # ten in a row: every worker has it
            try:
                served.connect().close()
                refused = 0
            except psycopg.OperationalError as exc:
                assert "requires SSL" in str(exc)
                refused += 1
        assert refused == 10
        conns = [psycopg.connect(host="127.0.0.1", port=served.port, user=ADMIN, password=ADMIN_PASSWORD,
                                 dbname="dev", sslmode="require") for _ in range(6)]
        assert {owner(conn.info.backend_pid) for conn in conns} <= set(range(WORKERS))
        for conn in conns:
            conn.close()
    finally:
        assert served.stop() == 0
    assert served.stderr.count("configuration reloaded") == WORKERS + 1


def test_a_dead_worker_is_started_again_and_stopping_leaves_nothing(data_dir):  # noqa: F811
    before = set(Path(tempfile.gettempdir()).glob("shiftguard-workers-*"))
    served = Served("--data-dir", str(data_dir), "--workers", str(WORKERS))
    (sockets,) = set(Path(tempfile.gettempdir()).glob("shiftguard-workers-*")) - before  # the workers' own
    assert oct(sockets.stat().st_mode & 0o777) == "0o700"
    assert sorted(path.name for path in sockets.iterdir()) == [f"worker-{n}.sock" for n in range(WORKERS)]
    try:
        conns = spread(served, 2)  # one on each worker
        victim = worker_pids(served)[0]
        os.kill(victim, signal.SIGKILL)
        told = read_until(served, re.compile(r"worker \d listens again"))
        assert "exited (status -9); starting it again" in told
        answers = []
        for conn in conns:
            try:
                answers.append(conn.execute("SELECT 1").fetchone())
            except psycopg.OperationalError:
                answers.append("gone")  # the killed worker's client
        assert sorted(answers, key=str) == [(1,), "gone"]  # the other worker's client did not notice
        again = spread(served, 2)
        assert {owner(conn.info.backend_pid) for conn in again} == set(range(WORKERS))  # both take logins again
        for conn in again + conns:
            conn.close()
        workers = worker_pids(served)
    finally:
        assert served.stop() == 0
    assert [pid for pid in workers if alive(pid)] == []
    assert server_processes(data_dir) == []
    assert not sockets.exists()


def test_a_killed_parent_takes_its_workers_along(data_dir):  # noqa: F811
    before = set(Path(tempfile.gettempdir()).glob("shiftguard-workers-*"))
    served = Served("--data-dir", str(data_dir), "--workers", str(WORKERS))
    (sockets,) = set(Path(tempfile.gettempdir()).glob("shiftguard-workers-*")) - before
    workers = worker_pids(served)
    assert len(workers) == WORKERS
    served.process.kill()
    served.process.wait(10)
    assert wait_for(lambda: not [pid for pid in workers if alive(pid)] and not server_processes(data_dir), 30)
    assert not sockets.exists()  # the last worker out removed it


def test_workers_in_front_of_an_external_backend(postgres, data_dir):  # noqa: F811
    """--backend: each worker logs in to the same PostgreSQL; a user created through one
    worker logs in through both, and each client's cancel ends its own query."""
    served = Served("--data-dir", str(data_dir), "--backend", postgres.dsn, "--workers", str(WORKERS),
                    env=clean_env(SHIFTGUARD_CLUSTER_ADMIN_USER="extadmin"))
    user = unique("u")
    try:
        with served.connect("extadmin") as admin:
            admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
        conns = spread(served, 4, user, USER_PASSWORD)
        assert {owner(conn.info.backend_pid) for conn in conns} == set(range(WORKERS))
        for conn in conns:
            outcome = []
            thread = threading.Thread(target=lambda: outcome.append(
                pytest.raises(psycopg.errors.QueryCanceled, conn.execute, "SELECT pg_sleep(600)")))
            thread.start()
            while thread.is_alive():  # until the query has started, a cancel finds nothing to cancel
                conn.cancel()
                thread.join(0.5)
            assert outcome and conn.execute("SELECT current_user").fetchone() == (user,)
            conn.close()
    finally:
        with served.connect("extadmin") as admin:
            admin.execute(f"DROP USER {user}")
        assert served.stop() == 0
    assert not (data_dir / "pgdata").exists()
