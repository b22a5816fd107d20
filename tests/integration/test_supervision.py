"""The embedded PostgreSQL is supervised: killed outright (kill -9), it is started again and logins
work again; meanwhile /readyz says 503, logins get 57P03 and one log line each, open sessions
get a clear error; /metrics counts the restarts. A stale lock file naming some other process
never gets that process signalled."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from proxy.backend.embedded import EmbeddedPostgres



def _readyz(proxy) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{proxy.api_port}/readyz", timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _metric(proxy, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.api_port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_a_killed_server_is_started_again(own_server_proxy, caplog):
    proxy = own_server_proxy()
    caplog.set_level(logging.INFO)
    idle = proxy.connect()
    assert idle.execute("SELECT 1").fetchone() == (1,)
    busy = proxy.connect()
    outcome: list = []

    def long_query():
        try:
            busy.execute("SELECT pg_sleep(60)")
            outcome.append("finished")
        except psycopg.Error as exc:
            outcome.append(exc)

    runner = threading.Thread(target=long_query)
    runner.start()
    time.sleep(0.5)  # the query runs (what is observed below does not depend on it)
    killed = time.monotonic()
    os.kill(proxy.proxy.embedded._process.pid, signal.SIGKILL)

    # Until it runs again: /readyz 503, logins refused with 57P03. Then both work again.
    seen = []
    while time.monotonic() - killed < 120:
        ready = _readyz(proxy)
        try:
            with proxy.connect(connect_timeout=10) as conn:
                conn.execute("SELECT 1")
            login = "ok"
        except psycopg.OperationalError as exc:
            login = str(exc)
        seen.append((ready, login))
        if ready == 200 and login == "ok":
            break
        time.sleep(0.05)
    back = time.monotonic() - killed
    assert seen[-1] == (200, "ok"), seen[-1]
    # (The very first look may come before the proxy noticed: a backend of the killed server
    # can still answer for a moment.)
    assert 503 in [ready for ready, _ in seen] and 500 not in [ready for ready, _ in seen]
    refused = [login for _, login in seen if login != "ok"]
    assert refused and all("the cluster cannot accept logins now" in login or "starting up" in login
                           or "could not open a session on the backing PostgreSQL" in login for login in refused)
    print(f"logins work again {back:.1f} s after kill -9")

    # The open sessions were told.
    runner.join(30)
    assert isinstance(outcome[0], psycopg.OperationalError)
    assert outcome[0].sqlstate in ("57P01", "57P02", "08006")
    with pytest.raises(psycopg.OperationalError) as info:
        idle.execute("SELECT 1")
    assert info.value.sqlstate in ("57P01", "57P02", "08006")
    idle.close()
    busy.close()

    assert _metric(proxy, "shiftguard_backend_restarts_total") == 1
    assert _metric(proxy, "shiftguard_backend_up") == 1
    assert _metric(proxy, 'shiftguard_refusals_total{reason="backend unavailable"}') >= 1
    # One line per refused login, no traceback anywhere.
    records = [r for r in caplog.records if r.name.startswith("proxy")]
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records if r.exc_info]
    assert len([r for r in records if "refused: the backing database is unavailable" in r.getMessage()]) >= 1
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]

    # Everything works as before, the catalog included.
    with proxy.connect() as admin:
        admin.execute("CREATE USER supervised_u PASSWORD 'Secret123'")
        admin.execute("DROP USER supervised_u")


def test_a_stale_lock_file_naming_another_process_does_not_get_it_signalled(initdb_cache, tmp_path):
    data_dir = Path(tempfile.mkdtemp(prefix="shiftguard-stale-", dir="/tmp"))
    os.chmod(data_dir, 0o755)
    server = EmbeddedPostgres(data_dir, initdb_cache=initdb_cache)
    bystander = None
    try:
        asyncio.run(server.start())
        lock = (server.pgdata / "postmaster.pid").read_text().split("\n")
        asyncio.run(server.stop())
        # Some other process of the server's OS user now has the PID the lock file names.
        user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        bystander = subprocess.Popen(["sleep", "300"], user=user.pw_uid if user else None,
                                     group=user.pw_gid if user else None)
        lock[0] = str(bystander.pid)
        (server.pgdata / "postmaster.pid").write_text("\n".join(lock))
        if user:
            os.chown(server.pgdata / "postmaster.pid", user.pw_uid, user.pw_gid)
        server = EmbeddedPostgres(data_dir, initdb_cache=initdb_cache)
        asyncio.run(server.start())  # starts, and quickly (no 60 s wait for a stop that cannot come)
        assert bystander.poll() is None  # not signalled
        asyncio.run(server.stop())
    finally:
        if bystander is not None:
            bystander.kill()
            bystander.wait()
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)
