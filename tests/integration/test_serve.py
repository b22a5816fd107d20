"""`shiftguard serve` as a user runs it: a subprocess with an embedded PostgreSQL, its output
lines, exit codes, signals, restarts, and an external backend."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from ..conftest import ADMIN, ADMIN_PASSWORD, unique, wait_for

SHIFTGUARD = [sys.executable, "-m", "proxy"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFTGUARD_")}
    env.update(extra)
    return env


class Served:
    """A running `shiftguard serve` subprocess and the addresses it printed."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            SHIFTGUARD + ["serve", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or clean_env())
        self.port = self.api_port = None
        deadline = time.monotonic() + 60
        while self.api_port is None:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"serve exited: {self.process.wait()} {self.process.stderr.read()}")
            if match := re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line):
                self.port = int(match.group(1))
            elif match := re.fullmatch(r"api listening on 127\.0\.0\.1:(\d+)\n", line):
                self.api_port = int(match.group(1))
            assert time.monotonic() < deadline

    def connect(self, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                               dbname="dev", sslmode="disable", autocommit=True)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(60)
        self.stderr = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return code


def server_processes(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"-D {data_dir}/pgdata" in line]


@pytest.fixture
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="shiftguard-serve-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)])


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(SHIFTGUARD + list(args), capture_output=True, text=True, timeout=60,
                          env=env or clean_env())


def test_version_and_help():
    version = run("--version")
    assert version.returncode == 0 and re.fullmatch(r"shiftguard \d+\.\d+\.\d+\n", version.stdout)
    overview = run("--help")
    assert overview.returncode == 0
    assert all(command in overview.stdout for command in ("serve", "credentials", "reload"))
    help_text = run("serve", "--help")
    assert help_text.returncode == 0
    for option in ("--config FILE", "--listen HOST:PORT", "--api-listen HOST:PORT", "--data-dir DIR",
                   "--backend DSN", "--workers N"):
        assert option in help_text.stdout, option


@pytest.mark.parametrize("args, env, message", [
    (["--config", "/no/such.yaml"], {}, "config file not found: /no/such.yaml"),
    (["--listen", "nowhere"], {}, "listen: expected HOST:PORT"),
    ([], {"SHIFTGUARD_CLUSTER_ACCOUNT_ID": "12"}, "cluster.account_id: must be 12 digits"),
    ([], {"SHIFTGUARD_EMBEDDED_BIN_DIR": "/nonexistent"}, "no PostgreSQL server binaries found"),
    (["--listen", "0.0.0.0:0"], {}, "SHIFTGUARD_ADMIN_PASSWORD is not set"),
    (["--workers", "0"], {}, "workers: must be between 1 and 64"),
    (["--listen", "0.0.0.0:0", "--workers", "2"], {}, "SHIFTGUARD_ADMIN_PASSWORD is not set"),
])
def test_startup_problems_exit_2_with_one_line(data_dir, args, env, message):
    result = run("serve", "--data-dir", str(data_dir), "--api-listen", "127.0.0.1:0", *args,
                 env=clean_env(**env))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("shiftguard:")]) == 1


def test_missing_binaries_message_says_how_to_install(data_dir, tmp_path):
    """The binaries' directory is there but holds no server: one line naming where it looked,
    the Debian package to install and the other ways out; no traceback, no data directory."""
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run("serve", "--data-dir", str(data_dir / "new"), "--api-listen", "127.0.0.1:0",
                 env=clean_env(SHIFTGUARD_EMBEDDED_BIN_DIR=str(empty)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("shiftguard:")]
    assert line.startswith(f"shiftguard: no PostgreSQL server binaries found (searched: {empty})")
    assert "apt-get install postgresql" in line and "embedded.bin_dir" in line and "--backend DSN" in line
    assert not (data_dir / "new" / "pgdata").exists()


def test_embedded_life_cycle(data_dir):
    table = unique()
    served = Served("--data-dir", str(data_dir))
    try:
        with served.connect() as conn:
            assert conn.info.parameter_status("server_version") == "8.0.2"
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
            conn.execute(f"CREATE TABLE {table} (a int)")
            conn.execute(f"INSERT INTO {table} VALUES (1), (2)")
            conn.execute("CREATE USER alice PASSWORD 'Secret123'")
        with served.connect("alice", "Secret123") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("alice",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{served.api_port}/healthz", timeout=5) as reply:
            assert reply.status == 200
        # The server socket directory is private to the proxy's server, and the server runs
        # as an unprivileged user when shiftguard runs as root.
        assert oct((data_dir / "run").stat().st_mode & 0o777) == "0o700"
        assert server_processes(data_dir)
        if os.geteuid() == 0:
            owners = subprocess.run(["ps", "-ww", "-eo", "user:20,args"], capture_output=True, text=True).stdout
            assert [line.split()[0] for line in owners.splitlines() if f"-D {data_dir}/pgdata" in line] == ["postgres"]
    finally:
        assert served.stop(signal.SIGTERM) == 0
    assert server_processes(data_dir) == []

    served = Served("--data-dir", str(data_dir))  # the same data directory again
    try:
        with served.connect() as conn:
            assert conn.execute(f"SELECT sum(a) FROM {table}").fetchone() == (3,)
        with served.connect("alice", "Secret123") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("alice",)
    finally:
        assert served.stop(signal.SIGINT) == 0
    assert server_processes(data_dir) == []


def test_killed_proxy_leaves_no_server_behind(data_dir):
    served = Served("--data-dir", str(data_dir))
    assert server_processes(data_dir)
    served.process.kill()
    served.process.wait(10)
    deadline = time.monotonic() + 20
    while server_processes(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_processes(data_dir) == []
    served = Served("--data-dir", str(data_dir))  # and it starts again on the same directory
    with served.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert served.stop() == 0


def test_admin_password_from_environment_and_open_listen(data_dir):
    env = clean_env(SHIFTGUARD_ADMIN_PASSWORD="Another-pw-9")
    served = Served("--data-dir", str(data_dir), env=env)
    try:
        with served.connect(password="Another-pw-9") as conn:
            assert conn.execute("SELECT current_user").fetchone() == (ADMIN,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            served.connect(password=ADMIN_PASSWORD)
    finally:
        assert served.stop() == 0


def test_external_backend(postgres, data_dir):
    # Its own admin name: the suite's other proxies treat this PostgreSQL as their own.
    served = Served("--data-dir", str(data_dir), "--backend", postgres.dsn,
                    env=clean_env(SHIFTGUARD_CLUSTER_ADMIN_USER="extadmin"))
    try:
        with served.connect("extadmin") as conn:
            # On a backend that is not its own, shiftguard never makes PostgreSQL superusers.
            assert conn.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
                                ).fetchone() == (False, True)
            assert conn.execute("SELECT current_database()").fetchone() == ("dev",)
        assert not (data_dir / "pgdata").exists()
    finally:
        assert served.stop() == 0


def test_a_management_role_that_is_no_superuser_installs_and_serves(postgres, make_proxy):
    """A backend where shiftguard's role has CREATEROLE and CREATEDB but is no superuser (a
    managed PostgreSQL; bench/run.py's setup): the private schema installs (no SQL of it may
    need a superuser: a function's SET of a custom setting does), and a user it creates logs in
    and works."""
    role, database = unique("mgmt"), unique("db")
    with postgres.connect() as direct:
        direct.execute(f"CREATE ROLE {role} LOGIN CREATEROLE CREATEDB PASSWORD 'Mgmt-pw-1'")
        # (template0: the suite's template1 has the private schema of the proxies before, a superuser's)
        direct.execute(f"CREATE DATABASE {database} OWNER {role} TEMPLATE template0")
    try:
        t = postgres.target
        proxy = make_proxy(backend__dsn=f"postgresql://{role}:Mgmt-pw-1@/{database}?host={t.socket_dir}&port={t.port}",
                           cluster__admin_user=unique("admin"), cluster__database=database)
        admin = proxy.config.cluster.admin_user
        with proxy.connect(admin, dbname=database) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
            user = unique("u")
            conn.execute(f"CREATE USER {user} PASSWORD 'Secret123'")
            conn.execute(f"CREATE TABLE public.{user}_t (a int)")
            conn.execute(f"GRANT SELECT ON public.{user}_t TO {user}")
        with postgres.connect(database) as direct:
            direct.execute(f"CREATE SCHEMA {user} AUTHORIZATION {user}")
        with proxy.connect(user, "Secret123", dbname=database) as conn:
            assert conn.execute(f"SELECT count(*) FROM public.{user}_t").fetchone() == (0,)
            # A queued VACUUM runs the table's owner's code (a BRIN index's expression) with
            # session_user the owner, as with a superuser's management role (attack12): here in
            # a session logged in as the owner, as the role cannot SET SESSION AUTHORIZATION.
            conn.execute(f"CREATE SEQUENCE {user}.seen")
            conn.execute(f"""CREATE FUNCTION {user}.f(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
                BEGIN
                    PERFORM pg_catalog.setval('{user}.seen',
                                              CASE WHEN session_user = current_user THEN 2 ELSE 3 END);
                    RETURN $1;
                END $$""")
            conn.execute(f"CREATE TABLE {user}.b (a int)")
            conn.execute(f"CREATE INDEX ON {user}.b USING brin ({user}.f(a)) WITH (pages_per_range = 1)")
            conn.execute(f"INSERT INTO {user}.b SELECT g FROM generate_series(1, 2000) g")
            conn.execute(f"SELECT setval('{user}.seen', 1)")
            conn.execute(f"VACUUM {user}.b")  # queued; the proxy runs it
            with postgres.connect(database) as direct:
                assert wait_for(lambda: direct.execute(
                    "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relid = %s::regclass",
                    (f"{user}.b",)).fetchone() == (True,), timeout=30)
            assert conn.execute(f"SELECT last_value FROM {user}.seen").fetchone() == (2,)
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            direct.execute(f"DROP OWNED BY {role}")
            direct.execute(f"DROP ROLE {role}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_200_mb_result_streams_through_in_bounded_memory(data_dir):
    served = Served("--data-dir", str(data_dir))
    try:
        with served.connect() as conn:
            conn.execute("SELECT 1")
            baseline = rss_kib(served.process.pid)
            peak = baseline
            received = 0
            rows = conn.cursor().stream("SELECT repeat('x', 1000) FROM generate_series(1, 200000)")
            for n, (value,) in enumerate(rows):
                received += len(value)
                if n % 2000 == 0:
                    peak = max(peak, rss_kib(served.process.pid))
                    time.sleep(0.01)  # a slower reader than PostgreSQL is a writer
            assert received == 200_000_000
        growth_mb = (peak - baseline) / 1024
        assert growth_mb < 8, f"proxy memory grew by {growth_mb:.1f} MB while relaying 200 MB"
    finally:
        assert served.stop() == 0


def test_shutdown_lets_an_open_transaction_finish(data_dir):
    from proxy.protocol import messages as m

    from .test_bad_input import login, read_all

    served = Served("--data-dir", str(data_dir))
    table = unique()
    with served.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (a int)")
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        login(sock)
        sock.sendall(m.query(f"BEGIN; INSERT INTO {table} VALUES (1)"))
        reply = b""
        while not reply.endswith(m.ready_for_query(m.TX_IN_BLOCK)):
            reply += sock.recv(65536)
        served.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(psycopg.OperationalError):  # new connections are no longer accepted
            served.connect()
        sock.sendall(m.query("COMMIT"))  # the open transaction may finish within the grace period
        rest = read_all(sock, timeout=15)
    assert rest.startswith(m.command_complete("COMMIT") + m.ready_for_query(m.TX_IDLE))
    assert b"57P01" in rest and b"terminating connection due to administrator command" in rest
    assert served.process.wait(30) == 0
    served.process.stdout.close()
    served.process.stderr.close()
    served = Served("--data-dir", str(data_dir))
    with served.connect() as again:
        assert again.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
    assert served.stop() == 0


def test_data_dir_the_server_user_cannot_reach(data_dir):
    # A checkout under /root or a `mktemp -d` directory: closed to the server's OS user.
    closed = data_dir / "closed"
    closed.mkdir(mode=0o700)
    inner = closed / "state"
    served = Served("--data-dir", str(inner))
    try:
        with served.connect() as conn:
            conn.execute("CREATE TABLE kept (a int)")
    finally:
        assert served.stop() == 0
    if os.geteuid() == 0:
        location = Path((inner / "server-location").read_text().splitlines()[0])
        assert location.parent == Path("/var/lib/shiftguard") and (location / "pgdata" / "PG_VERSION").exists()
        assert not (inner / "pgdata").exists()
    else:
        location = inner
        assert (inner / "pgdata" / "PG_VERSION").exists()
    served = Served("--data-dir", str(inner))  # found again on the next start
    try:
        with served.connect() as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        assert served.stop() == 0
    subprocess.run(["rm", "-rf", str(location)])


def test_init_sql_sets_up_a_new_cluster_once(data_dir, tmp_path):
    setup = tmp_path / "setup.sql"
    setup.write_text("CREATE TABLE sales (amount int); INSERT INTO sales VALUES (42);\n"
                     "GRANT SELECT ON sales TO GROUP analysts;\n")
    config = tmp_path / "shiftguard.yaml"
    config.write_text("init_sql:\n"
                      "  - CREATE USER analyst PASSWORD 'Analyst123'\n"
                      "  - CREATE GROUP analysts WITH USER analyst\n"
                      f"init_sql_file: {setup}\n")
    served = Served("--data-dir", str(data_dir), "--config", str(config))
    try:
        with served.connect("analyst", "Analyst123") as conn:
            assert conn.execute("SELECT amount FROM sales").fetchone() == (42,)
    finally:
        assert served.stop() == 0
    served = Served("--data-dir", str(data_dir), "--config", str(config))  # not run again
    try:
        with served.connect() as conn:
            assert conn.execute("SELECT count(*) FROM sales").fetchone() == (1,)
    finally:
        assert served.stop() == 0


def test_failing_init_sql_stops_the_start(data_dir, tmp_path):
    config = tmp_path / "shiftguard.yaml"
    config.write_text("init_sql:\n  - CREATE USER weak PASSWORD 'weak'\n")
    result = run("serve", "--data-dir", str(data_dir), "--config", str(config), "--listen", "127.0.0.1:0",
                 "--api-listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert "init_sql failed at \"CREATE USER weak PASSWORD 'weak'\": 22023 password must be 8 to 64" in result.stderr
    assert server_processes(data_dir) == []


def test_reload_changes_security_groups_without_dropping_sessions(data_dir, tmp_path):
    config = tmp_path / "shiftguard.yaml"

    def write(cidr: str) -> None:
        config.write_text("security_groups:\n  - name: default\n    ingress:\n"
                          f"      - cidr: {cidr}\n      - cidr: 127.0.0.1/32\n")

    def reaches(source: str) -> bool:
        with socket.socket() as sock:
            sock.settimeout(5)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", served.port))
            sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
            try:
                return sock.recv(1) == b"S"
            except ConnectionResetError:
                return False

    write("127.0.0.2/32")
    served = Served("--data-dir", str(data_dir), "--config", str(config))
    try:
        established = served.connect()
        assert reaches("127.0.0.2") and not reaches("127.0.0.3")
        write("127.0.0.3/32")
        served.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert reaches("127.0.0.3") and not reaches("127.0.0.2")
        write("not-a-cidr")  # refused with one line; the old rules stay in force
        result = run("reload", "--data-dir", str(data_dir))
        assert result.returncode == 0
        time.sleep(0.5)
        assert reaches("127.0.0.3")
        assert established.execute("SELECT 1").fetchone() == (1,)  # not dropped by either reload
        established.close()
    finally:
        assert served.stop() == 0
    assert "reload refused: configuration error: security_groups[0].ingress[0].cidr: not a CIDR block" in served.stderr


def test_credentials_cli_and_psql(data_dir):
    import json
    import os as _os

    served = Served("--data-dir", str(data_dir))
    try:
        made = run("credentials", "--data-dir", str(data_dir), "--db-user", "cli_user", "--auto-create",
                   "--db-name", "dev")
        assert made.returncode == 0, made.stderr
        creds = json.loads(made.stdout)
        assert creds["DbUser"] == "IAMA:cli_user" and creds["Expiration"].endswith("Z")
        env = {k: v for k, v in _os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = creds["DbPassword"]
        psql = subprocess.run(["psql", "-X", "-At", "-c", "SELECT current_user",
                               f"host=127.0.0.1 port={served.port} user=IAMA:cli_user dbname=dev sslmode=require"],
                              capture_output=True, text=True, env=env, timeout=30)
        assert psql.returncode == 0 and psql.stdout.strip() == "cli_user", psql.stderr
        revoked = run("credentials", "--data-dir", str(data_dir), "--db-user", "IAMA:cli_user", "--revoke")
        assert json.loads(revoked.stdout) == {"Revoked": 1}
        again = subprocess.run(["psql", "-X", "-At", "-c", "SELECT 1",
                                f"host=127.0.0.1 port={served.port} user=IAMA:cli_user dbname=dev sslmode=require"],
                               capture_output=True, text=True, env=env, timeout=30)
        assert again.returncode == 2 and "password authentication failed" in again.stderr
    finally:
        assert served.stop() == 0
