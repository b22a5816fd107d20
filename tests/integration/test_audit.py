"""Redshift's three audit logs, as files in Redshift's formats and as system tables, and the
metrics."""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from proxy.config import Audit
from proxy.protocol import messages as m

from ..conftest import ADMIN, unique, wait_for

PASSWORD = "Secret123"
TIME = r"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}:\d{3}"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def audited(make_proxy, tmp_path):
    directory = tmp_path / "audit"
    return make_proxy(audit=Audit(dir=str(directory), user_activity=True)), directory


def test_statements_of_one_transaction_share_an_xid(audited):
    proxy, directory = audited
    tag = unique("x")
    with proxy.connect() as conn:
        conn.execute("BEGIN")
        conn.execute(f"SELECT 'a-{tag}'")
        conn.execute(f"SELECT 'b-{tag}'")
        conn.execute("COMMIT")
        conn.execute(f"SELECT 'c-{tag}'")
        conn.execute(f"SELECT 'd-{tag}'")

    def xids():
        found = {}
        for line in lines(directory / "useractivitylog"):
            match = re.search(rf"xid=(\d+) \]' LOG: SELECT '(\w)-{tag}'", line)
            if match:
                found[match.group(2)] = int(match.group(1))
        return found if len(found) == 4 else None
    found = wait_for(xids)
    assert found["a"] == found["b"]  # one transaction block
    assert len({found["a"], found["c"], found["d"]}) == 3  # each autocommit statement its own


def test_scripted_sequence_lands_in_files_and_tables(audited):
    proxy, directory = audited
    name, renamed = unique("u"), unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} PASSWORD '{PASSWORD}'")
    with pytest.raises(psycopg.OperationalError):
        proxy.connect(name, "Wrong1234")
    with proxy.connect(name, PASSWORD, application_name="audit-test") as conn:
        conn.execute("SELECT 42")
        conn.execute("SET application_name = 'renamed-app'")
        conn.execute("SET application_name = 'renamed-app'")  # no change, no record
        conn.execute(f"SELECT '{name}', pg_sleep(0.6)")  # ends after its row is stored (0.25 s batches)
        conn.execute(f'SELECT %s::text AS "{name}"', (name,))  # extended protocol: Parse, Bind, Execute, Sync
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute(f"SELECT '{name}', 1/0")
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {name} RENAME TO {renamed}")
        admin.execute(f"DROP USER {renamed}")

    connection = wait_for(lambda: [l for l in lines(directory / "connectionlog") if name in l and "disconnecting" in l]
                          and lines(directory / "connectionlog"))
    mine = [fields for fields in (l.split("|") for l in connection) if fields[6].strip() == name]
    events = [fields[0].strip() for fields in mine]
    assert events == ["authentication failure", "authenticated", "initiating session", "set application_name",
                      "disconnecting session"]
    for fields in mine:
        assert len(fields) == 22 and fields[-1] == ""  # 21 columns, as STL_CONNECTION_LOG, then '|'
        assert re.fullmatch(TIME, fields[1])
        assert fields[2].strip() == "127.0.0.1" and fields[5].strip() == "dev"
    disconnect = mine[-1]
    assert int(disconnect[8]) > 0 and disconnect[7].strip() == "password"
    # The name from the startup packet, then the one the session set, as Redshift records them.
    assert [f[15].strip() for f in mine[1:]] == ["audit-test", "audit-test", "renamed-app", "renamed-app"]
    assert len({f[20] for f in mine[1:]}) == 1  # one session id on the session's records

    userlog = wait_for(lambda: [l.split("|") for l in lines(directory / "userlog") if name in l or renamed in l]
                       if len([l for l in lines(directory / "userlog") if name in l or renamed in l]) >= 3 else None)
    actions = [(f[1].strip(), f[2].strip(), f[3].strip()) for f in userlog]
    assert actions == [(name, "", "create"), (renamed, name, "rename"), (renamed, "", "drop")]
    assert all(len(f) == 11 and re.fullmatch(TIME, f[10]) for f in userlog)

    activity = wait_for(lambda: [l for l in lines(directory / "useractivitylog") if name in l or "SELECT 42" in l])
    assert any(re.fullmatch(rf"'\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ UTC \[ db=dev user={name} pid=\d+ userid=\d+ "
                            rf"xid=[1-9]\d* \]' LOG: SELECT 42", l) for l in activity)
    created = [l for l in activity if "CREATE USER" in l]
    assert created and all("'***'" in l and PASSWORD not in l for l in created)

    with proxy.connect() as admin:
        rows = admin.execute("SELECT event, username, authmethod FROM stl_connection_log WHERE username = %s "
                             "ORDER BY recordtime", (name,)).fetchall()
        assert [r[0].strip() for r in rows] == events
        assert admin.execute("SELECT action FROM stl_userlog WHERE username IN (%s, %s) ORDER BY recordtime",
                             (name, renamed)).fetchall() == [("create",), ("rename",), ("drop",)]
        assert admin.execute("SELECT count(*) FROM sys_connection_log WHERE user_name = %s", (name,)).fetchone()[0] == 5
        assert admin.execute("SELECT application_name FROM stl_connection_log WHERE username = %s "
                             "AND event LIKE 'set application_name%%'", (name,)).fetchone()[0].strip() == "renamed-app"

        # Statement ends: stl_query has them once finished, sys_query_history with status and error.
        def finished():
            rows = admin.execute("SELECT querytxt, starttime, endtime, aborted FROM stl_query WHERE querytxt LIKE %s "
                                 "ORDER BY query", (f"SELECT %{name}%",)).fetchall()
            return rows if len(rows) == 3 else None
        sleep, extended, failed = wait_for(finished)
        assert sleep[0] == f"SELECT '{name}', pg_sleep(0.6)" and sleep[3] == 0
        assert (sleep[2] - sleep[1]).total_seconds() >= 0.6  # the end is when it finished, not when it was sent
        assert extended[0] == f'SELECT $1::text AS "{name}"' and extended[3] == 0 and extended[2] >= extended[1]
        assert failed[0] == f"SELECT '{name}', 1/0" and failed[3] == 1
        history = admin.execute("SELECT status, elapsed_time, error_message FROM sys_query_history "
                                "WHERE query_text LIKE %s ORDER BY query_id", (f"SELECT %{name}%",)).fetchall()
        assert [(status, error) for status, _, error in history] == [
            ("success", ""), ("success", ""), ("failed", "division by zero")]
        assert history[0][1] >= 600_000  # microseconds


def test_visibility_of_the_system_tables(audited):
    proxy, _ = audited
    plain, unrestricted = unique("u"), unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {plain} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE USER {unrestricted} PASSWORD '{PASSWORD}' SYSLOG ACCESS UNRESTRICTED")
        admin.execute("SELECT 'admin was here'")
    try:
        for user in (plain, unrestricted):
            with proxy.connect(user, PASSWORD) as conn:
                conn.execute(f"SELECT '{user} was here'")
        time.sleep(0.6)  # the writer batches every quarter of a second
        with proxy.connect(plain, PASSWORD) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="stl_connection_log"):
                conn.execute("SELECT * FROM stl_connection_log")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM stl_userlog")
            texts = [r[0] for r in conn.execute("SELECT querytxt FROM stl_query").fetchall()]
            assert any(f"{plain} was here" in t for t in texts) and not any("admin was here" in t for t in texts)
        with proxy.connect(unrestricted, PASSWORD) as conn:
            texts = [r[0] for r in conn.execute("SELECT querytxt FROM stl_query").fetchall()]
            assert any("admin was here" in t for t in texts)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # still not the superuser-only ones
                conn.execute("SELECT * FROM stl_connection_log")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {plain}, {unrestricted}")


def test_a_statement_reading_the_logs_sees_what_came_before_it(audited):
    """Connect, then read stl_connection_log at once (AWS's driver suite does): the login is
    there, as are the statements before it, without waiting for the writer's next batch."""
    proxy, _ = audited
    for _ in range(5):  # each a fresh login, read at once
        name = unique("app")
        with proxy.connect(application_name=name) as conn:
            events = conn.execute("SELECT event FROM stl_connection_log WHERE application_name = %s",
                                  (name,)).fetchall()  # extended protocol
            assert sorted(events) == [("authenticated",), ("initiating session",)]
            conn.execute(f"SELECT '{name} ran'")
            ran = conn.execute("SELECT count(*) FROM stl_query WHERE querytxt = %s", (f"SELECT '{name} ran'",))
            assert ran.fetchone() == (1,)
            # The simple protocol, and a statement after it in the same message.
            cursor = conn.execute(f"SELECT count(*) FROM sys_connection_log WHERE application_name = '{name}'; "
                                  "SELECT 'after'", prepare=False)
            assert cursor.fetchone() == (2,) and cursor.nextset() and cursor.fetchone() == ("after",)


def dropped(proxy) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.api_port}/metrics").read().decode()
    return float(re.search(r"^shiftguard_audit_records_dropped_total (\S+)$", text, re.M).group(1))


def test_unwritable_audit_directory_does_not_stop_the_relay(make_proxy, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proxy = make_proxy(audit=Audit(dir=str(blocker / "audit"), user_activity=True))  # cannot exist, even for root
    for _ in range(3):
        with proxy.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert wait_for(lambda: dropped(proxy) >= 3)  # the loss is counted
    with proxy.connect() as admin:  # and the system tables still got the records
        assert admin.execute("SELECT count(*) FROM stl_connection_log WHERE event LIKE 'initiating%'").fetchone()[0] >= 3


def session_starts(directory: Path) -> int:
    return sum(l.startswith("initiating session") for f in directory.glob("connectionlog*") for l in lines(f))


def test_logs_rotate_by_time_and_by_size_and_keep_every_record(make_proxy, tmp_path):
    by_time, by_size = tmp_path / "by-time", tmp_path / "by-size"
    hourly_but_short = make_proxy(audit=Audit(dir=str(by_time), rotate_seconds=1))
    sessions = 0

    def rotated():
        nonlocal sessions
        with hourly_but_short.connect():
            sessions += 1
        return list(by_time.glob("connectionlog_*"))
    assert wait_for(rotated, timeout=15)  # a one-second period ended between two writes
    assert wait_for(lambda: session_starts(by_time) == sessions)

    small = make_proxy(audit=Audit(dir=str(by_size), max_file_bytes=1024, rotate_seconds=0))
    for n in range(1, 4):
        with small.connect():
            pass
        assert wait_for(lambda: session_starts(by_size) == n)  # written, so the next batch finds it full
    assert list(by_size.glob("connectionlog_*"))  # each record is over 1000 bytes: rotated
    assert all(len(l.split("|")) == 22 for f in by_size.glob("connectionlog*") for l in lines(f))


@pytest.fixture
def full_directory(tmp_path):
    """An audit directory on a full filesystem: a 64 kB tmpfs filled to the last byte where this
    process may mount one (root), else log files that are /dev/full (ENOSPC on every write)."""
    directory = tmp_path / "full"
    directory.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)],
                                 capture_output=True).returncode == 0
    except FileNotFoundError:  # no mount(8)
        mounted = False
    if mounted:
        with open(directory / "filler", "wb", buffering=0) as filler:
            try:
                while filler.write(b"\0" * 4096):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    else:
        for name in ("connectionlog", "userlog", "useractivitylog"):
            (directory / name).symlink_to("/dev/full")
    yield directory
    if mounted:
        subprocess.run(["umount", str(directory)], check=True)


def test_full_filesystem_does_not_stop_the_relay(make_proxy, full_directory):
    proxy = make_proxy(audit=Audit(dir=str(full_directory), user_activity=True))
    marker = unique("full")
    with proxy.connect() as held:  # a session open while the writes fail
        for _ in range(3):
            with proxy.connect() as conn:
                assert conn.execute(f"SELECT '{marker}'").fetchone() == (marker,)
        assert held.execute(f"SELECT '{marker}'").fetchone() == (marker,)
    # Every line is counted as lost: 4 sessions x 3 connection-log lines, 4 activity lines.
    assert wait_for(lambda: dropped(proxy) == 16)
    assert sum(f.stat().st_size for f in full_directory.glob("*log*")) == 0  # nothing half-written
    with proxy.connect() as admin:  # the system tables still got the records
        assert wait_for(lambda: admin.execute("SELECT count(*) FROM stl_query WHERE querytxt = %s",
                                              (f"SELECT '{marker}'",)).fetchone()[0] == 4)


def test_metrics_and_probes(proxy):
    with pytest.raises(psycopg.OperationalError):
        proxy.connect(ADMIN, "Wrong1234")
    for _ in range(2):  # the second is given the session the first left (backend/pool.py)
        with proxy.connect() as conn:
            conn.execute("SELECT 1")
        time.sleep(0.2)
    base = f"http://127.0.0.1:{proxy.api_port}"
    text = wait_for(lambda: (lambda t: t if "shiftguard_backend_sessions_kept 1.0" in t else None)(
        urllib.request.urlopen(f"{base}/metrics").read().decode()))
    assert text, "no kept backend session in the metrics"
    assert re.search(r"shiftguard_backend_sessions_reused_total [1-9]", text)
    assert re.search(r'shiftguard_authentications_total\{method="md5",outcome="failure"\} 1\.0', text)
    assert re.search(r'shiftguard_authentications_total\{method="md5",outcome="success"\} [1-9]', text)
    assert re.search(r"shiftguard_statements_total [1-9]", text)
    assert urllib.request.urlopen(f"{base}/healthz").status == 200
    assert urllib.request.urlopen(f"{base}/readyz").status == 200


async def test_every_connection_and_statement_is_recorded_under_load(audited):
    import asyncio

    import asyncpg

    proxy, directory = audited
    marker = unique("load")

    async def client(n: int) -> None:
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=ADMIN, password="Shiftguard-dev-1",
                                     database="dev", ssl=False, server_settings={"application_name": marker})
        try:
            for k in range(50):
                await conn.execute(f"SELECT '{marker}', {n}, {k}")
        finally:
            await conn.close()

    await asyncio.gather(*(client(n) for n in range(200)))
    await asyncio.sleep(1.0)
    with proxy.connect() as admin:
        statements = admin.execute("SELECT count(*) FROM stl_query WHERE querytxt LIKE %s",
                                   (f"SELECT '{marker}'%",)).fetchone()[0]
        sessions = admin.execute("SELECT event, count(*) FROM stl_connection_log WHERE application_name = %s "
                                 "GROUP BY event ORDER BY event", (marker,)).fetchall()
    assert statements == 200 * 50
    assert [(e.strip(), c) for e, c in sessions] == [("authenticated", 200), ("disconnecting session", 200),
                                                     ("initiating session", 200)]
    activity = [l for l in lines(directory / "useractivitylog") if marker in l]
    assert len(activity) == 200 * 50


def test_passwords_never_reach_the_logs(audited, postgres):
    """What follows PASSWORD, however it is written and however the session reads its string
    constants, is in neither the user activity log nor stl_query and sys_query_history (texts
    and error messages), from psycopg and from redshift_connector (standard_conforming_strings off);
    nor in PostgreSQL's log, which has the statement of every error."""
    import hashlib

    import redshift_connector

    proxy, directory = audited
    carol, tag = unique("carol"), unique("end")
    secrets = [f"Pw{i}q{unique('p')[2:]}" for i in range(20)]
    secrets[2] = hashlib.md5(f"{secrets[2]}{carol}".encode()).hexdigest()  # given as 'md5' || that
    p = secrets
    server_log = postgres.data_dir / "postgres.log"
    logged_before = server_log.stat().st_size
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {carol} PASSWORD '{PASSWORD}'")
    try:
        with proxy.connect() as conn:
            for sql in (
                    f"SELECT 'It\\'s', 'done'; ALTER USER {carol} PASSWORD '{p[0]}'; SELECT 'ok\\'', 'x'",
                    f"alter user {carol} password '{p[1]}'",
                    f"ALTER USER {carol} PASSWORD 'md5{p[2]}'",
                    f"ALTER USER {carol} PASSWORD 'sha256|{p[3]}'",
                    f"ALTER USER {carol} PASSWORD $${p[4]}$$",
                    f"ALTER USER {carol} PASSWORD E'{p[5]}'",
                    f"ALTER USER {carol} PASSWORD /* the new one */ '{p[6]}'",
                    f"ALTER USER {carol} PASSWORD -- the new one\n'{p[7]}'",
                    f"CREATE ROLE {carol}_r PASSWORD '{p[8]}'",
                    f"ALTER USER {carol} PASSWORD U&'{p[9]}'",
                    f"ALTER USER {carol} PASSWORD {p[10]}",
                    f"ALTER USER {carol} PASSWORD '{p[11]}",
                    f"ALTER USER {carol} PASSWORD 'Pw\\'{p[12]}'",
                    f"SELECT 'a\\'; ALTER USER {carol} PASSWORD '{p[13]}'; SELECT 'b\\'"):
                try:
                    conn.execute(sql)
                except psycopg.Error:
                    pass
            conn.execute("SET standard_conforming_strings = on")
            conn.execute(f"SELECT 'x\\'; ALTER USER {carol} PASSWORD '{p[14]}'; SELECT 'y'")
            conn.execute("SET standard_conforming_strings = off")
            conn.execute(f"ALTER USER {carol} PASSWORD '{p[15]}'", prepare=True)  # Parse, Bind, Execute
            conn.execute(f"SELECT '{tag}'")
        rs = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=ADMIN,
                                        password="Shiftguard-dev-1", ssl=False, timeout=20)
        rs.autocommit = True
        try:
            cursor = rs.cursor()
            for sql in (f"ALTER USER {carol} PASSWORD '{p[16]}'",
                        f"SELECT 'It\\'s', 'done'; ALTER USER {carol} PASSWORD '{p[17]}'; SELECT 'ok\\'', 'x'",
                        f"ALTER USER {carol} PASSWORD 'Pw\\'{p[18]}'",
                        f"ALTER USER {carol} PASSWORD E'{p[19]}'",
                        f"SELECT '{tag}'"):
                try:
                    cursor.execute(sql)
                except redshift_connector.Error:
                    pass
        finally:
            rs.close()
        with proxy.connect() as admin:
            assert wait_for(lambda: admin.execute("SELECT count(*) FROM stl_query WHERE querytxt = %s",
                                                  (f"SELECT '{tag}'",)).fetchone()[0] == 2)
            time.sleep(0.6)  # the ends of the statements before
            stored = admin.execute("SELECT querytxt FROM stl_query UNION ALL SELECT query_text || ' ' || "
                                   "error_message FROM sys_query_history").fetchall()
        activity = lines(directory / "useractivitylog")
        with server_log.open("rb") as file:
            file.seek(logged_before)
            server = file.read().decode(errors="replace")
        assert "ERROR" in server  # (the statements of errors are logged)
        logged = "\n".join(activity) + "\n".join(row[0] or "" for row in stored) + server
        assert [s for s in secrets if s in logged] == []
        mine = [line for line in activity if carol in line]
        assert len(mine) >= 18 and sum("PASSWORD '***'" in line for line in mine) >= 14
        assert any("could not be scanned" in line for line in activity)
        assert "error message not logged" in logged  # the syntax errors quoting the password
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {carol}")


async def test_each_execution_of_a_prepared_statement_is_a_row_of_stl_query(audited):
    """As on Redshift: a statement prepared once and run 25 times is 25 rows (a Parse is not a
    statement run; one that fails is logged, with its error); a portal fetched in parts is one."""
    import asyncpg

    proxy, _ = audited
    marker = unique("prep")
    conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=ADMIN, password="Shiftguard-dev-1",
                                 database="dev", ssl=False, statement_cache_size=0)
    try:
        statement = await conn.prepare(f"SELECT '{marker}', $1::int")
        for n in range(25):
            assert await statement.fetchval(n, column=1) == n
        async with conn.transaction():
            cursor = await conn.cursor(f"SELECT '{marker}-cursor', generate_series(1, 10)")
            assert len(await cursor.fetch(3)) == 3 and len(await cursor.fetch(7)) == 7
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.prepare(f"SELECT '{marker}-missing' FROM no_such_table_{marker}")
    finally:
        await conn.close()

    def rows(pattern: str):
        with proxy.connect() as admin:
            return admin.execute("SELECT aborted FROM stl_query WHERE querytxt LIKE %s ORDER BY query",
                                 (pattern,)).fetchall()
    assert wait_for(lambda: len(rows(f"SELECT '{marker}', $1::int")) == 25)
    assert rows(f"SELECT '{marker}', $1::int") == [(0,)] * 25
    assert wait_for(lambda: rows(f"SELECT '{marker}-cursor'%")) == [(0,)]
    assert wait_for(lambda: rows(f"SELECT '{marker}-missing'%")) == [(1,)]


def test_the_log_names_what_an_execute_ran_after_a_parse_that_failed(audited):
    """A Parse of a name that is taken fails (42P05); an Execute of that name afterwards runs
    the name's first statement, and the log says so."""
    from .test_bad_input import login

    proxy, _ = audited
    marker = unique("named")
    first, second = f"SELECT '{marker}-first'", f"SELECT '{marker}-second'"

    def parse(sql: str) -> bytes:
        return m.message(ord("P"), b"s1\0" + sql.encode() + b"\0\0\0")

    run = (m.message(ord("B"), b"\0s1\0\0\0\0\0\0\0") + m.message(ord("E"), b"\0\0\0\0\0")
           + m.message(ord("S")))
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        login(sock)
        sock.sendall(parse(first) + m.message(ord("S")) + parse(second) + m.message(ord("S")) + run)
        received = b""
        while received.count(m.ready_for_query(m.TX_IDLE)) < 3:
            received += sock.recv(65536)
        assert b"42P05" in received and f"{marker}-first".encode() in received

    def rows():
        with proxy.connect() as admin:
            return admin.execute("SELECT querytxt, aborted FROM stl_query WHERE querytxt LIKE %s ORDER BY query",
                                 (f"SELECT '{marker}%",)).fetchall()
    assert wait_for(lambda: len(rows()) == 2)
    assert rows() == [(second, 1), (first, 0)]  # the failed Parse, then the Execute of the first
