"""No client's input costs anyone else an audit record (issue 16): values are made valid for the
audit tables when a record is built, a batch the database refuses anyway is stored record by
record, and every 'authenticated' row is followed by the session's start or by a refusal."""

from __future__ import annotations

import concurrent.futures
import re
import socket
import struct
import threading
import urllib.request

import psycopg
import pytest

from proxy.config import Audit
from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from ..conftest import ADMIN, ADMIN_PASSWORD, unique, wait_for
from .test_bad_input import error_fields, read_all

PASSWORD = "Secret123"


@pytest.fixture
def audited(make_proxy, tmp_path):
    directory = tmp_path / "audit"
    return make_proxy(audit=Audit(dir=str(directory), user_activity=True)), directory


def metric(proxy, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.api_port}/metrics").read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def raw_login(proxy, params: dict[str, str], password: str) -> tuple[socket.socket, bytes]:
    """Startup with these parameters and an MD5 answer for password: (the socket, what came back
    up to the first ReadyForQuery or the connection's end)."""
    sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
    sock.sendall(m.startup_message(params))
    data = sock.recv(1024)
    assert data[:1] == b"R" and struct.unpack_from("!i", data, 5)[0] == m.AUTH_MD5, data[:40]
    sock.sendall(m.password_message(md5_response(redshift_md5(password, params["user"]), data[9:13]) + b"\0"))
    received = b""
    while not received.endswith(m.ready_for_query(m.TX_IDLE)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return sock, received


def run_together(jobs) -> list:
    """Run the jobs on threads of their own, each waiting at one barrier before its part that
    must coincide with the others' (so that their records share the writer's batches)."""
    barrier = threading.Barrier(len(jobs))
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: job(barrier), jobs))


def test_a_statement_holding_nul_loses_no_one_elses_statement(audited):
    """40 sessions' statements and one holding a NUL byte in the same moments: all 41 are in
    stl_query (the NUL as U+FFFD), none is dropped."""
    proxy, directory = audited
    tag = unique("nul")

    def other(n: int):
        def job(barrier):
            with proxy.connect() as conn:
                barrier.wait()
                conn.execute(f"SELECT '{tag}', {n}")
        return job

    def nul(barrier):
        sock, _ = raw_login(proxy, {"user": ADMIN, "database": "dev"}, ADMIN_PASSWORD)
        with sock:
            barrier.wait()
            sock.sendall(m.message(m.F_QUERY, f"SELECT '{tag}', 'nul'".encode() + b"\0 -- after\0"))
            return sock.recv(65536)[:1]

    answers = run_together([other(n) for n in range(40)] + [nul])
    assert answers[-1] == b"E"  # PostgreSQL refuses the message (08P01), the session goes on

    def stored():
        with proxy.connect() as admin:
            rows = admin.execute("SELECT querytxt FROM stl_query WHERE querytxt LIKE %s",
                                 (f"SELECT '{tag}'%",)).fetchall()
        return rows if len(rows) == 41 else None
    rows = wait_for(stored)
    assert rows, "statements are missing from stl_query"
    assert [r[0] for r in rows if "'nul'" in r[0]] == [f"SELECT '{tag}', 'nul'\ufffd -- after"]
    assert metric(proxy, "shiftguard_audit_records_dropped_total") == 0
    logged = [line for line in (directory / "useractivitylog").read_text().splitlines() if tag in line]
    assert len(logged) == 41 and not any("\0" in line for line in logged)


@pytest.mark.parametrize("version", ["99999999999999999999", "\u00b2", "-1", "1" * 5000])
def test_odd_startup_values_lose_no_one_elses_connection_rows(audited, version):
    """15 clients log in while one that never authenticates sends an odd client_protocol_version
    (an integer PostgreSQL's integer column cannot hold, a character that Python calls a digit):
    every client's rows are stored, the odd one gets 28P01 and its row records version 0."""
    proxy, _ = audited
    tag = unique("app")

    def client(barrier):
        with proxy.connect(application_name=tag) as conn:
            barrier.wait()
            conn.execute("SELECT 1")

    def odd(barrier):
        user = unique("nobody")
        params = {"user": user, "database": "dev", "client_protocol_version": version,
                  "application_name": tag}
        barrier.wait()
        sock, received = raw_login(proxy, params, "Wrong1234")
        with sock:
            received += read_all(sock)
        return user, error_fields(received)

    results = run_together([client] * 15 + [odd])
    user, fields = results[-1]
    assert fields["S"] == "FATAL" and fields["C"] == "28P01", fields
    assert fields["M"] == f'password authentication failed for user "{user}"'

    def stored():
        with proxy.connect() as admin:
            rows = admin.execute("SELECT trim(event), username, protocol_version FROM stl_connection_log "
                                 "WHERE application_name = %s", (tag,)).fetchall()
        return rows if len(rows) == 15 * 3 + 1 else None
    rows = wait_for(stored)
    assert rows, "connection log rows are missing"
    assert sorted(e for e, _, _ in rows) == (["authenticated"] * 15 + ["authentication failure"]
                                             + ["disconnecting session"] * 15 + ["initiating session"] * 15)
    assert [(u.strip(), v) for e, u, v in rows if e == "authentication failure"] == [(user, 0)]
    assert metric(proxy, "shiftguard_audit_records_dropped_total") == 0


def test_a_client_protocol_version_is_recorded(audited):
    proxy, _ = audited
    tag = unique("app")
    sock, received = raw_login(proxy, {"user": ADMIN, "database": "dev", "client_protocol_version": "2",
                                       "application_name": tag}, ADMIN_PASSWORD)
    sock.close()
    assert received.endswith(m.ready_for_query(m.TX_IDLE))
    with proxy.connect() as admin:
        assert wait_for(lambda: admin.execute(
            "SELECT DISTINCT protocol_version FROM stl_connection_log WHERE application_name = %s",
            (tag,)).fetchall()) == [(2,)]


def test_a_batch_the_database_refuses_is_stored_record_by_record(audited, postgres):
    """A record the database refuses whatever the proxy does (here a CHECK constraint made for
    the test) loses only itself: the 40 statements around it are stored, it is counted as
    rejected in /metrics, and the file log still has it."""
    proxy, directory = audited
    tag = unique("batch")
    with postgres.connect() as direct:
        direct.execute(f"ALTER TABLE shiftguard_rows.query_log ADD CONSTRAINT refuse_{tag} "
                       f"CHECK (sql NOT LIKE '%poison-{tag}%') NOT VALID")
    try:
        def other(n: int):
            def job(barrier):
                with proxy.connect() as conn:
                    barrier.wait()
                    conn.execute(f"SELECT '{tag}', {n}")
            return job

        def poison(barrier):
            with proxy.connect() as conn:
                barrier.wait()
                conn.execute(f"SELECT '{tag}', 'poison-{tag}'")

        run_together([other(n) for n in range(20)] + [poison] + [other(n) for n in range(20, 40)])

        def stored():
            with proxy.connect() as admin:
                rows = admin.execute("SELECT querytxt FROM stl_query WHERE querytxt LIKE %s",
                                     (f"SELECT '{tag}'%",)).fetchall()
            return rows if len(rows) == 40 and metric(proxy, "shiftguard_audit_records_rejected_total") else None
        rows = wait_for(stored)
        assert rows and not any("poison" in r[0] for r in rows)
        assert metric(proxy, "shiftguard_audit_records_rejected_total") == 1
        assert metric(proxy, "shiftguard_audit_records_dropped_total") == 1
        assert sum(f"poison-{tag}" in line for line in (directory / "useractivitylog").read_text().splitlines()) == 1
    finally:
        with postgres.connect() as direct:
            direct.execute(f"ALTER TABLE shiftguard_rows.query_log DROP CONSTRAINT refuse_{tag}")


def test_a_long_statement_is_logged_cut(make_proxy, tmp_path):
    proxy = make_proxy(audit=Audit(dir=str(tmp_path / "audit"), user_activity=True, max_statement_length=1024))
    tag = unique("long")
    text = f"SELECT '{tag}', '{'x' * 5000}'"
    with proxy.connect() as conn:
        assert conn.execute(text).fetchone()[1] == "x" * 5000
    with proxy.connect() as admin:
        (logged,) = wait_for(lambda: admin.execute("SELECT querytxt FROM stl_query WHERE querytxt LIKE %s",
                                                   (f"SELECT '{tag}'%",)).fetchone())
    assert logged == text[:1024] + f"... ({len(text) - 1024} more characters not logged)"


def test_a_login_refused_at_the_connection_limit_is_a_refusal_in_the_connection_log(audited):
    """'authenticated' is followed by 'initiating session' or, when PostgreSQL refuses the
    session (the user's CONNECTION LIMIT), by 'refused: connection limit' with its reason."""
    proxy, _ = audited
    name = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} PASSWORD '{PASSWORD}' CONNECTION LIMIT 1")
    try:
        with proxy.connect(name, PASSWORD):
            with pytest.raises(psycopg.OperationalError, match="too many connections"):
                proxy.connect(name, PASSWORD)

        def story():
            with proxy.connect() as admin:
                rows = admin.execute("SELECT sessionid, trim(event), reason FROM stl_connection_log "
                                     "WHERE username = %s ORDER BY recordtime", (name,)).fetchall()
            return rows if len(rows) == 5 else None
        rows = wait_for(story)
        assert rows, "connection log rows are missing"
        sessions = {}
        for session, event, reason in rows:
            sessions.setdefault(session, []).append((event, reason))
        stories = sorted([event for event, _ in events] for events in sessions.values())
        assert stories == [["authenticated", "initiating session", "disconnecting session"],
                           ["authenticated", "refused: connection limit"]]
        (refusal,) = [reason for events in sessions.values() for event, reason in events if event.startswith("refused")]
        assert refusal.startswith("53300: ") and "too many connections" in refusal
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {name}")


def test_a_client_cannot_write_a_line_of_its_own_into_the_connection_log(audited):
    proxy, directory = audited
    tag = unique("app")
    forged = f"{tag}\ninitiating session |Mon, 7 Dec 2020 20:01:55:177|10.9.9.9|"
    sock, received = raw_login(proxy, {"user": ADMIN, "database": "dev", "application_name": forged},
                               ADMIN_PASSWORD)
    sock.close()
    assert received.endswith(m.ready_for_query(m.TX_IDLE))
    def logged():
        path = directory / "connectionlog"
        return path.read_text().splitlines() if path.exists() else []
    mine = wait_for(lambda: [l for l in logged() if tag in l and l.startswith("disconnecting")])
    assert mine and "\ufffdinitiating session |Mon, 7 Dec 2020" in mine[0]
    assert not any(l.startswith("initiating session |Mon, 7 Dec 2020") for l in logged())
