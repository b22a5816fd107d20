#!/usr/bin/env python3
"""pgbench throughput: direct PostgreSQL vs PgBouncer vs shiftguard, in one interleaved run.

Starts a throw-away PostgreSQL on 127.0.0.1, a PgBouncer and a shiftguard (`--backend`) in
front of that same server, loads `pgbench -i`, then runs each workload against each target,
round-robin per repetition (the target order rotates every repetition), and prints the median
tps per target with the ratios shiftguard/direct and shiftguard/PgBouncer. Everything it
starts is stopped again at the end, on error and on Ctrl-C. See bench/README.md.

Run as root (PostgreSQL and PgBouncer are then run as the `postgres` OS user) or as an
ordinary user (they run as that user).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TARGETS = ("direct", "pgbouncer", "shiftguard", "shiftguard+activity", "shiftguard+workers")
PROXIES = ("pgbouncer", "shiftguard", "shiftguard+activity", "shiftguard+workers")
WORKLOADS = {
    # name: extra pgbench options (always with -n: no vacuum, the roles do not own the tables)
    "-S": ["-S"],
    "-S -M prepared": ["-S", "-M", "prepared"],
    "-S -C": ["-S", "-C"],
}
DATABASE = "dev"
BENCH_PASSWORD = "Bench1234"
SG_USER = "bench"             # shiftguard user (created through shiftguard; PG role of the same name)
PG_USER = "bench_direct"      # plain PostgreSQL role used directly and through PgBouncer
SG_ADMIN_DEFAULT_PASSWORD = "Shiftguard-dev-1"
MGMT_USER, MGMT_PASSWORD = "sgadmin", "Sgadmin-bench-1"   # shiftguard's --backend DSN role


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (shiftguard's worker processes: `workers`)."""
    pids = [pid]
    for one in pids:
        try:
            pids += [int(child) for child in Path(f"/proc/{one}/task/{one}/children").read_text().split()]
        except OSError:
            pass
    return pids


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process and its descendants, from /proc (None where /proc is
    unavailable)."""
    total = None
    for one in process_tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total = (total or 0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def host_cpu() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(values) - values[3] - values[4], sum(values)


def rss_kb(pid: int) -> int | None:
    """Resident memory of a process and its descendants, KiB."""
    total = None
    for one in process_tree(pid):
        try:
            total = (total or 0) + int(re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{one}/status").read_text(),
                                                 re.M).group(1))
        except (OSError, AttributeError):
            pass
    return total


def postgres_pss_kb(postmaster: int) -> int | None:
    """Proportional memory of PostgreSQL (the postmaster and every backend; shared buffers are
    counted once, split among the processes that touched them), KiB."""
    try:
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    except OSError:
        return None
    total = 0
    for pid in [str(postmaster), *children]:
        try:
            total += int(re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(),
                                   re.M).group(1))
        except (OSError, AttributeError):
            pass  # a backend that just ended
    return total


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# ------------------------------------------------------------------------------ processes

class Processes:
    """Everything this script started, stopped in reverse order by stop_all()."""

    def __init__(self, run_as: pwd.struct_passwd | None):
        self.run_as = run_as
        self.started: list[tuple[str, subprocess.Popen, int]] = []

    def popen(self, name: str, cmd: list[str], *, as_service_user: bool = False,
              stop_signal: int = signal.SIGTERM, **kwargs) -> subprocess.Popen:
        if as_service_user and self.run_as is not None:
            kwargs.update(user=self.run_as.pw_uid, group=self.run_as.pw_gid, extra_groups=[])
        # Own session: a Ctrl-C on the terminal reaches only this script, which stops the
        # children in order.
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.started.append((name, proc, stop_signal))
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        self.started = [entry for entry in self.started if entry[1] is not proc]

    def stop(self, proc: subprocess.Popen, sig: int, timeout: float = 20.0) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            except ProcessLookupError:
                pass
        self.forget(proc)

    def stop_all(self) -> None:
        for name, proc, sig in reversed(list(self.started)):
            if proc.poll() is None:
                log(f"stopping {name} (pid {proc.pid})")
            self.stop(proc, sig)


def run(cmd: list[str], *, env: dict | None = None, check: bool = True, timeout: float = 600,
        **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr.strip()}")
    return result


def client_env(password: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # No TLS on any leg the client sees: shiftguard would otherwise negotiate TLS (it has a
    # self-signed certificate) while PostgreSQL and PgBouncer here have none.
    env.update(PGPASSWORD=password, PGSSLMODE="disable", PGCONNECT_TIMEOUT="10")
    return env


def psql(bin_dir: Path, host: str, port: int, user: str, password: str | None, sql: str,
         database: str = DATABASE) -> str:
    cmd = [str(bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
           "-h", host, "-p", str(port), "-U", user, "-d", database, "-c", sql]
    return run(cmd, env=client_env(password or ""), timeout=60).stdout.strip()


def wait_for(predicate, what: str, proc: subprocess.Popen, logfile: Path, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}:\n{tail(logfile)}")
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise BenchError(f"{what} did not become ready in {timeout:.0f} s:\n{tail(logfile)}")


# ------------------------------------------------------------------------------ targets

@dataclass
class Target:
    name: str
    port: int
    user: str
    password: str
    pid: int | None = None    # the proxy's process, for its CPU time


@dataclass
class Setup:
    tmp: Path
    bin_dir: Path
    procs: Processes
    pg_port: int = 0
    pg_pid: int | None = None
    sock_dir: Path | None = None
    targets: dict[str, Target] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)


def start_postgres(s: Setup, scale: int, max_connections: int) -> None:
    data, s.sock_dir = s.tmp / "pgdata", s.tmp / "pgsock"
    s.sock_dir.mkdir()
    data.mkdir(mode=0o700)
    owner = s.procs.run_as
    if owner is not None:
        for path in (s.sock_dir, data):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    initdb = [str(s.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
              "--locale=C", "--auth-local=trust", "--auth-host=md5", "--no-sync"]
    log("initdb")
    proc = s.procs.popen("initdb", initdb, as_service_user=True, cwd=s.tmp,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=300)
    s.procs.forget(proc)
    if proc.returncode != 0:
        raise BenchError(f"initdb failed:\n{out}")
    # Unix socket (setup only, trust) for the postgres superuser; every TCP login needs a password.
    (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 md5\n")
    s.pg_port = free_port()
    s.logs["postgres"] = logfile = s.tmp / "postgres.log"
    cmd = [str(s.bin_dir / "postgres"), "-D", str(data), "-p", str(s.pg_port),
           "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={s.sock_dir}",
           "-c", f"max_connections={max_connections}", "-c", "shared_buffers=256MB",
           "-c", "logging_collector=off"]
    log(f"starting PostgreSQL on 127.0.0.1:{s.pg_port}")
    with open(logfile, "ab") as out:
        if owner is not None:
            os.chown(logfile, owner.pw_uid, owner.pw_gid)
        # SIGINT: PostgreSQL's fast shutdown.
        pg = s.procs.popen("postgres", cmd, as_service_user=True, cwd=s.tmp, stdin=subprocess.DEVNULL,
                           stdout=out, stderr=out, stop_signal=signal.SIGINT)

    def ready() -> bool:
        r = run([str(s.bin_dir / "pg_isready"), "-q", "-h", str(s.sock_dir), "-p", str(s.pg_port)],
                check=False, timeout=10)
        return r.returncode == 0
    wait_for(ready, "PostgreSQL", pg, logfile)
    s.pg_pid = pg.pid

    sock = str(s.sock_dir)
    s.versions["postgresql"] = psql(s.bin_dir, sock, s.pg_port, "postgres", None, "SELECT version()",
                                    "postgres")
    psql(s.bin_dir, sock, s.pg_port, "postgres", None,
         f"CREATE ROLE {MGMT_USER} LOGIN CREATEROLE CREATEDB PASSWORD '{MGMT_PASSWORD}'", "postgres")
    psql(s.bin_dir, sock, s.pg_port, "postgres", None, f"CREATE DATABASE {DATABASE} OWNER {MGMT_USER}",
         "postgres")
    # md5-stored password: the client-facing login is MD5 on every target (shiftguard speaks MD5).
    psql(s.bin_dir, sock, s.pg_port, "postgres", None,
         f"SET password_encryption = 'md5'; CREATE ROLE {PG_USER} LOGIN PASSWORD '{BENCH_PASSWORD}'")
    log(f"pgbench -i -s {scale}")
    t0 = time.monotonic()
    run([str(s.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), "-h", sock, "-p", str(s.pg_port),
         "-U", "postgres", DATABASE], env=client_env(""), timeout=1800)
    log(f"pgbench -i done in {time.monotonic() - t0:.1f} s")
    psql(s.bin_dir, sock, s.pg_port, "postgres", None,
         f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {PG_USER}")
    s.targets["direct"] = Target("direct", s.pg_port, PG_USER, BENCH_PASSWORD)


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/local/bin/pgbouncer") if os.access(p, os.X_OK)), None)


def ensure_pgbouncer() -> str:
    binary = find_pgbouncer()
    if binary:
        return binary
    command = "apt-get update && apt-get install -y pgbouncer"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError(f"pgbouncer is not installed; install it with: sudo sh -c '{command}' "
                         f"(or leave it out: --targets direct,shiftguard)")
    log(f"pgbouncer is missing; running: {command}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "pgbouncer"], env=env, timeout=600)
    binary = find_pgbouncer()
    if not binary:
        raise BenchError("pgbouncer still not found after apt-get install")
    return binary


def start_pgbouncer(s: Setup, binary: str, pool_mode: str, pool_size: int, clients: int) -> None:
    work = s.tmp / "pgbouncer"
    work.mkdir()
    port = free_port()
    userlist = work / "userlist.txt"
    userlist.write_text(f'"{PG_USER}" "{BENCH_PASSWORD}"\n')
    s.logs["pgbouncer"] = logfile = work / "pgbouncer.log"
    ini = work / "pgbouncer.ini"
    ini.write_text(f"""\
[databases]
{DATABASE} = host=127.0.0.1 port={s.pg_port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {userlist}
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = {max(1000, clients + 50)}
server_tls_sslmode = disable
client_tls_sslmode = disable
logfile = {logfile}
pidfile = {work / 'pgbouncer.pid'}
log_connections = 0
log_disconnections = 0
""")
    owner = s.procs.run_as
    if owner is not None:
        for path in (work, userlist, ini):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    userlist.chmod(0o600)
    version = run([binary, "--version"], check=False).stdout.splitlines()
    s.versions["pgbouncer"] = version[0] if version else "?"
    log(f"starting PgBouncer ({pool_mode} pooling) on 127.0.0.1:{port}")
    # PgBouncer refuses to run as root; SIGINT is its safe shutdown in every version.
    proc = s.procs.popen("pgbouncer", [binary, str(ini)], as_service_user=True, cwd=work,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(work / "stderr.log", "ab"), stop_signal=signal.SIGINT)

    def ready() -> bool:
        try:
            psql(s.bin_dir, "127.0.0.1", port, PG_USER, BENCH_PASSWORD, "SELECT 1")
            return True
        except BenchError:
            return False
    wait_for(ready, "PgBouncer", proc, work / "stderr.log", timeout=30)
    s.targets["pgbouncer"] = Target("pgbouncer", port, PG_USER, BENCH_PASSWORD, proc.pid)


def start_shiftguard(s: Setup, command: list[str], admin_password: str, pool_mode: str, pool_size: int,
                     clients: int, name: str = "shiftguard", workers: int = 1) -> None:
    """name "shiftguard+activity": a second shiftguard, its user activity log on (every
    statement logged before it runs, into the files and stl_query), in front of the same
    PostgreSQL, so that the log's cost is a row of its own. "shiftguard+workers": one with
    `workers` worker processes."""
    work = s.tmp / name
    work.mkdir()
    s.logs[name] = logfile = work / "shiftguard.log"
    stdout_path = work / "stdout.log"
    dsn = f"postgresql://{MGMT_USER}:{MGMT_PASSWORD}@127.0.0.1:{s.pg_port}/{DATABASE}?sslmode=disable"
    cmd = command + ["serve", "--data-dir", str(work / "data"), "--listen", "127.0.0.1:0",
                     "--api-listen", "127.0.0.1:0", "--backend", dsn]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIFTGUARD_", "PG"))}
    env["SHIFTGUARD_ADMIN_PASSWORD"] = admin_password
    env["SHIFTGUARD_BACKEND_POOL_MODE"] = pool_mode
    env["SHIFTGUARD_BACKEND_MAX_SESSIONS_PER_POOL"] = str(pool_size)
    env["SHIFTGUARD_LIMITS_MAX_CLIENT_CONNECTIONS"] = str(max(1000, clients + 50))
    # pgbench opens all its connections at once: none is closed to make room for another.
    env["SHIFTGUARD_LIMITS_MAX_UNAUTHENTICATED_CONNECTIONS"] = str(max(250, clients + 50))
    if name == "shiftguard+activity":
        env["SHIFTGUARD_AUDIT_USER_ACTIVITY"] = "true"
    if name == "shiftguard+workers":
        env["SHIFTGUARD_WORKERS"] = str(workers)
    s.versions["shiftguard"] = run(command + ["--version"], check=False, env=env).stdout.strip()
    log(f"starting {name} --backend (same PostgreSQL), {pool_mode} pooling"
        + (f", {workers} workers" if name == "shiftguard+workers" else ""))
    # cwd is the temp dir: no config/shiftguard.yaml is picked up, the documented defaults apply.
    with open(stdout_path, "wb") as out, open(logfile, "ab") as err:
        proc = s.procs.popen(name, cmd, cwd=work, env=env, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err)

    def listening() -> int | None:
        text = stdout_path.read_text(errors="replace")
        match = re.search(r"^listening on 127\.0\.0\.1:(\d+)$", text, re.M)
        return int(match.group(1)) if match and "api listening on" in text else None
    port = wait_for(listening, name, proc, logfile, timeout=90)
    log(f"{name} listening on 127.0.0.1:{port}")
    # The bench user is a shiftguard user: created through shiftguard by its admin, which makes
    # the PostgreSQL role of the same name (once: both shiftguards share the catalog). The
    # tables' owner then grants it SELECT.
    if not any(other.startswith("shiftguard") for other in s.targets):
        psql(s.bin_dir, "127.0.0.1", port, "awsuser", admin_password,
             f"CREATE USER {SG_USER} PASSWORD '{BENCH_PASSWORD}'")
        psql(s.bin_dir, str(s.sock_dir), s.pg_port, "postgres", None,
             f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {SG_USER}")
    s.targets[name] = Target(name, port, SG_USER, BENCH_PASSWORD, proc.pid)


def check_targets(s: Setup, scale: int) -> None:
    for t in s.targets.values():
        got = psql(s.bin_dir, "127.0.0.1", t.port, t.user, t.password,
                   "SELECT count(*) FROM pgbench_branches")
        if got != str(scale):
            raise BenchError(f"{t.name}: pgbench_branches has {got!r} rows, expected {scale}")


# ------------------------------------------------------------------------------ pgbench

@dataclass
class Result:
    workload: str
    target: str
    rep: int
    tps: float | None
    ok: bool
    returncode: int | None
    transactions: int | None = None
    failed: int | None = None
    latency_ms: float | None = None
    conn_ms: float | None = None
    proxy_cpu: float | None = None     # proxy CPU seconds / wall seconds (1.0 = one core)
    cpu_us: float | None = None        # proxy CPU µs per transaction
    p50_ms: float | None = None        # transaction latency percentiles (pgbench --log)
    p99_ms: float | None = None
    proxy_rss_mb: float | None = None  # at the end of the run
    postgres_mb: float | None = None   # PostgreSQL's proportional memory at the end of the run
    host_busy: float | None = None     # share of all CPUs busy during the run (any process)
    errors: list[str] = field(default_factory=list)


def _num(pattern: str, text: str, cast=float):
    match = re.search(pattern, text, re.M)
    return cast(match.group(1)) if match else None


def pgbench(s: Setup, t: Target, workload: str, rep: int, args) -> Result:
    duration = args.warmup if rep < 0 else args.duration
    logs = s.tmp / "pgbench-log"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    # Every transaction's latency (a sample of them at many clients), for the percentiles.
    cmd = [str(s.bin_dir / "pgbench"), "-n", *WORKLOADS[workload], "-c", str(args.clients),
           "-j", str(args.jobs), "-T", str(duration), "-h", "127.0.0.1", "-p", str(t.port),
           "-U", t.user, "--log", f"--log-prefix={logs / 'tx'}", f"--sampling-rate={args.sampling_rate}",
           DATABASE]
    cpu0, wall0, host0 = (cpu_seconds(t.pid) if t.pid else None), time.monotonic(), host_cpu()
    proc = s.procs.popen("pgbench", cmd, env=client_env(t.password), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        s.procs.stop(proc, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(pgbench did not finish within {duration + 60} s; killed)"
    s.procs.forget(proc)
    cpu1, wall1, host1 = (cpu_seconds(t.pid) if t.pid else None), time.monotonic(), host_cpu()
    text = out + "\n" + err
    r = Result(workload, t.name, rep, _num(r"^tps = ([\d.]+)", text), False, proc.returncode,
               transactions=_num(r"actually processed: (\d+)", text, int),
               failed=_num(r"number of failed transactions: (\d+)", text, int),
               latency_ms=_num(r"^latency average = ([\d.]+) ms", text),
               conn_ms=_num(r"^average connection time = ([\d.]+) ms", text))
    if cpu0 is not None and cpu1 is not None:
        r.proxy_cpu = (cpu1 - cpu0) / (wall1 - wall0)
        if r.transactions:
            r.cpu_us = (cpu1 - cpu0) / r.transactions * 1e6
    if t.pid:
        rss = rss_kb(t.pid)
        r.proxy_rss_mb = rss / 1024 if rss is not None else None
    pss = postgres_pss_kb(s.pg_pid) if s.pg_pid else None
    r.postgres_mb = pss / 1024 if pss is not None else None
    latencies = []
    for path in logs.glob("tx*"):  # client transaction_no latency_us script epoch epoch_us
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1000)
    r.p50_ms, r.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
    if host0 and host1 and host1[1] > host0[1]:
        r.host_busy = (host1[0] - host0[0]) / (host1[1] - host0[1])
    r.errors = [line for line in err.splitlines() if line.strip()
                and not line.startswith(("pgbench (", "starting vacuum", "transaction type"))]
    r.ok = proc.returncode == 0 and r.tps is not None and not r.failed and not r.errors
    return r


# ------------------------------------------------------------------------------ idle clients

def idle_clients(s: Setup, t: Target, count: int) -> dict:
    """Log count clients in to a proxy and leave them idle: its resident memory before and
    with them, per client, and how long the logins took (asyncpg, 100 logins at a time)."""
    import asyncio

    import asyncpg

    async def connect_all() -> tuple[list, float]:
        gate = asyncio.Semaphore(100)

        async def one():
            async with gate:
                return await asyncpg.connect(host="127.0.0.1", port=t.port, user=t.user, password=t.password,
                                             database=DATABASE, ssl=False, timeout=120)
        start = time.monotonic()
        conns = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        return conns, time.monotonic() - start

    async def measure() -> dict:
        before = rss_kb(t.pid)
        conns, took = await connect_all()
        good = [c for c in conns if not isinstance(c, BaseException)]
        failures = [c for c in conns if isinstance(c, BaseException)]
        await asyncio.sleep(2)  # settled
        with_them = rss_kb(t.pid)
        pss = postgres_pss_kb(s.pg_pid) if s.pg_pid else None
        # every one of them still answers
        answered = sum(1 for v in await asyncio.gather(*(c.fetchval("SELECT 1") for c in good),
                                                        return_exceptions=True) if v == 1)
        await asyncio.gather(*(c.close() for c in good), return_exceptions=True)
        return {"target": t.name, "clients": count, "connected": len(good), "answered": answered,
                "errors": sorted({type(e).__name__ + ": " + str(e)[:120] for e in failures})[:3],
                "login_s": took, "rss_before_mb": before / 1024, "rss_with_mb": with_them / 1024,
                "kb_per_client": (with_them - before) / max(1, len(good)),
                "postgres_mb": pss / 1024 if pss is not None else None}
    return asyncio.run(measure())


def idle_report(rows: list[dict]) -> str:
    lines = ["Idle clients (logged in, then idle; asyncpg): the proxy's resident memory before and with",
             "them, per client; PostgreSQL's proportional memory with them; how long the logins took.",
             f"{'target':<21}{'clients':>8}{'connected':>10}{'answered':>9}{'login s':>9}{'MB before':>10}"
             f"{'MB with':>9}{'KB/client':>10}{'PG MB':>7}"]
    for r in rows:
        lines.append(f"{r['target']:<21}{r['clients']:>8}{r['connected']:>10}{r['answered']:>9}{r['login_s']:>9.1f}"
                     f"{r['rss_before_mb']:>10.1f}{r['rss_with_mb']:>9.1f}{r['kb_per_client']:>10.1f}"
                     f"{fmt(r['postgres_mb']):>7}")
        for e in r["errors"]:
            lines.append(f"    {e}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ report

def fmt(v: float | None, spec: str = ".0f") -> str:
    return "n/a" if v is None else format(v, spec)


def median_tps(results: list[Result], workload: str, target: str) -> float | None:
    values = [r.tps for r in results if r.workload == workload and r.target == target and r.ok]
    return statistics.median(values) if values else None


def _pct(values: list[float]) -> str:
    return f"{statistics.median(values) * 100:.0f}%" if values else "-"


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(results: list[Result], targets: list[str], workloads: list[str]) -> str:
    lines = []
    width = max(17, max(len(t) for t in targets) + 5)
    head = f"{'workload':<16}" + "".join(f"{t + ' tps':>{width}}" for t in targets)
    short = {"shiftguard": "sg", "shiftguard+activity": "sg+act", "shiftguard+workers": "sg+wk"}
    ratios = [(f"{short[sg]}/{base[:3]}", sg, base) for sg in short
              for base in ("direct", "pgbouncer") if sg in targets and base in targets]
    head += "".join(f"{label:>14}" for label, _, _ in ratios)
    lines += [head]
    for w in workloads:
        med = {t: median_tps(results, w, t) for t in targets}
        row = f"{w:<16}" + "".join(f"{fmt(med[t]):>{width}}" for t in targets)
        for _, sg, base in ratios:
            a, b = med[sg], med[base]
            row += f"{(format(a / b, '.2f') if a and b else 'n/a'):>14}"
        lines.append(row)
    lines.append("")
    lines.append("Per run: tps in run order (* = run with errors, excluded from the median); spread =")
    lines.append("(max-min)/median; lat ms = pgbench latency average, p50/p99 of the transactions' latencies;")
    lines.append("conn ms = average connection time; proxy CPU = the proxy process's CPU time / wall time")
    lines.append("(100% = one core) and per transaction (µs/tx: all its CPU during the run, the clients'")
    lines.append("logins included, over the transactions); host CPU = share of all CPUs busy during")
    lines.append("the run, any process; proxy MB = its resident memory, PG MB = PostgreSQL's proportional")
    lines.append("memory (all its processes), at the end of the runs (medians).")
    lines.append(f"{'workload':<16}{'target':<21}{'runs':<36}{'spread':>8}{'lat ms':>10}{'p50':>9}{'p99':>9}"
                 f"{'conn ms':>9}{'proxy CPU':>10}{'µs/tx':>7}{'host CPU':>9}{'proxy MB':>9}{'PG MB':>7}")
    for w in workloads:
        for t in targets:
            rs = [r for r in results if r.workload == w and r.target == t and r.rep >= 0]
            runs = " ".join(fmt(r.tps) + ("" if r.ok else "*") for r in rs)
            good = [r.tps for r in rs if r.ok]
            spread = (f"{(max(good) - min(good)) / statistics.median(good) * 100:.1f}%"
                      if len(good) > 1 else "n/a")
            cpu = [r.proxy_cpu for r in rs if r.proxy_cpu is not None]
            busy = [r.host_busy for r in rs if r.host_busy is not None]
            lines.append(f"{w:<16}{t:<21}{runs:<36}{spread:>8}{fmt(_median([r.latency_ms for r in rs]), '.3f'):>10}"
                         f"{fmt(_median([r.p50_ms for r in rs]), '.2f'):>9}{fmt(_median([r.p99_ms for r in rs]), '.2f'):>9}"
                         f"{fmt(_median([r.conn_ms for r in rs]), '.3f'):>9}{_pct(cpu):>10}"
                         f"{fmt(_median([r.cpu_us for r in rs]), '.1f'):>7}{_pct(busy):>9}"
                         f"{fmt(_median([r.proxy_rss_mb for r in rs]), '.0f'):>9}"
                         f"{fmt(_median([r.postgres_mb for r in rs]), '.0f'):>7}")
    bad = [r for r in results if not r.ok]
    if bad:
        lines.append("")
        lines.append("Runs with errors:")
        for r in bad:
            what = "warm-up" if r.rep < 0 else f"rep {r.rep + 1}"
            lines.append(f"  {r.workload} / {r.target} / {what}: exit {r.returncode}, tps {fmt(r.tps)}, "
                         f"failed transactions {r.failed}")
            seen = []
            for e in r.errors:
                key = re.sub(r"\d+", "N", e)
                if key not in seen:
                    seen.append(key)
                    lines.append(f"      {e}  (x{sum(1 for x in r.errors if re.sub(r'[0-9]+', 'N', x) == key)})")
                if len(seen) >= 6:
                    break
    return "\n".join(lines)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def versions_text(s: Setup) -> str:
    def pkg(name: str) -> str:
        try:
            from importlib.metadata import version
            return version(name)
        except Exception:
            return "?"
    repo = Path(__file__).resolve().parent.parent
    commit = run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", "proxy"],
                check=False).stdout.strip()
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": f"{platform.node()} {platform.system()} {platform.release()}, {os.cpu_count()} CPUs",
        "postgresql": s.versions.get("postgresql", "?"),
        "pgbench": run([str(s.bin_dir / "pgbench"), "--version"], check=False).stdout.strip(),
        "pgbouncer": s.versions.get("pgbouncer", "-"),
        "shiftguard": f"{s.versions.get('shiftguard', '-')} (git {commit or '?'}"
                      f"{', proxy/ has uncommitted changes' if dirty else ''})",
        "python": f"{platform.python_version()}, uvloop {pkg('uvloop')}, pglast {pkg('pglast')}",
        "load avg":  f"{s.versions.get('load_start', '?')} when the script started, {_loadavg()} "
                     f"at the end (1/5/15 min)",
    }
    return "\n".join(f"{k + ':':<12}{v}" for k, v in info.items())


# ------------------------------------------------------------------------------ main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--duration", "-T", type=int, default=10, help="seconds per measured pgbench run")
    p.add_argument("--reps", type=int, default=4, help="repetitions per target and workload")
    p.add_argument("--clients", "-c", type=int, default=8, help="pgbench -c")
    p.add_argument("--jobs", "-j", type=int, default=2, help="pgbench -j")
    p.add_argument("--scale", "-s", type=int, default=10, help="pgbench -i -s")
    p.add_argument("--warmup", type=int, default=3,
                   help="seconds of an unmeasured run per target and workload first (0: none)")
    p.add_argument("--quick", action="store_true",
                   help="about a minute: -T 2, 3 reps, scale 1, 1 s warm-up (overrides those options)")
    p.add_argument("--targets", default=",".join(TARGETS[:-1]), help="comma-separated subset of " + ",".join(TARGETS))
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma-separated subset of: " + ", ".join(WORKLOADS)
                        + " (write --workloads='-S -C', with '=')")
    p.add_argument("--pgbouncer-pool-mode", choices=("session", "transaction"), default="session")
    p.add_argument("--shiftguard-pool-mode", choices=("session", "transaction"), default="session",
                   help="shiftguard's backend.pool_mode")
    p.add_argument("--shiftguard-workers", type=int, default=2,
                   help="worker processes (shiftguard's `workers`) of the shiftguard+workers target")
    p.add_argument("--pool-size", type=int, default=0,
                   help="backend sessions per user and database in transaction pooling (PgBouncer's "
                        "default_pool_size, shiftguard's backend.max_sessions_per_pool); 0: -c + 4")
    p.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin", help="PostgreSQL binaries")
    p.add_argument("--shiftguard", default=shutil.which("shiftguard") or f"{sys.executable} -m proxy",
                   help="command that runs shiftguard")
    p.add_argument("--sampling-rate", type=float, default=1.0,
                   help="share of transactions whose latency pgbench logs, for p50/p99 (lower it for long runs)")
    p.add_argument("--idle-clients", type=int, default=0,
                   help="after the runs, log this many clients in to each proxy and leave them idle: "
                        "memory per idle client (needs transaction pooling in the proxies)")
    p.add_argument("--json", metavar="FILE", help="also write every run's numbers to FILE")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (data, logs)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.reps, args.scale, args.warmup = 2, 3, 1, 1
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for t in args.targets:
        if t not in TARGETS:
            p.error(f"unknown target {t!r}")
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; one of {', '.join(WORKLOADS)}")
    if args.reps < 1 or args.duration < 1:
        p.error("--reps and --duration must be at least 1")
    args.pool_size = args.pool_size or args.clients + 4
    return args


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    bin_dir = Path(args.pg_bin)
    if not (bin_dir / "postgres").exists():
        print(f"bench: no PostgreSQL server in {bin_dir} (--pg-bin)", file=sys.stderr)
        return 2
    run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    pgbouncer_bin = None
    if "pgbouncer" in args.targets:
        try:
            pgbouncer_bin = ensure_pgbouncer()
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    tmp = Path(tempfile.mkdtemp(prefix="shiftguard-bench-"))
    tmp.chmod(0o755)  # the postgres OS user works in here
    procs = Processes(run_as)
    s = Setup(tmp=tmp, bin_dir=bin_dir, procs=procs)
    results: list[Result] = []
    status = 1
    s.versions["load_start"] = _loadavg()
    try:
        # Many clients (-c 1000) need as many file descriptors, in pgbench and in the proxies.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        # Room for: -c clients per target (or the pools in transaction pooling), shiftguard's
        # catalog pool, psql.
        sg_sessions = args.pool_size if args.shiftguard_pool_mode == "transaction" else args.clients
        per_target = [args.clients if "direct" in args.targets else 0,
                      args.pool_size if args.pgbouncer_pool_mode == "transaction" else args.clients,
                      *(sg_sessions * (args.shiftguard_workers if t == "shiftguard+workers" else 1)
                        for t in args.targets if t.startswith("shiftguard"))]
        start_postgres(s, args.scale, max_connections=max(100, sum(per_target) + args.clients + 40))
        if "pgbouncer" in args.targets:
            start_pgbouncer(s, pgbouncer_bin, args.pgbouncer_pool_mode,
                            args.pool_size if args.pgbouncer_pool_mode == "transaction" else args.clients + 4,
                            args.clients)
        for name in ("shiftguard", "shiftguard+activity", "shiftguard+workers"):
            if name in args.targets:
                start_shiftguard(s, args.shiftguard.split(),
                                 os.environ.get("SHIFTGUARD_ADMIN_PASSWORD", SG_ADMIN_DEFAULT_PASSWORD),
                                 args.shiftguard_pool_mode, args.pool_size, args.clients, name,
                                 args.shiftguard_workers)
        check_targets(s, args.scale)
        targets = [t for t in TARGETS if t in args.targets]
        # First, on proxies that have served nothing yet (a process keeps the memory it once used).
        idle = []
        for t in targets:
            if args.idle_clients and t in PROXIES:
                log(f"{args.idle_clients} idle clients on {t}")
                idle.append(idle_clients(s, s.targets[t], args.idle_clients))
        total = len(args.workloads) * len(targets) * args.reps
        est = total * args.duration + (len(args.workloads) * len(targets) * args.warmup if args.warmup else 0)
        log(f"{total} measured runs of {args.duration} s (about {est / 60:.1f} min); "
            f"pgbench -c {args.clients} -j {args.jobs}, scale {args.scale}")
        if args.warmup:
            for w in args.workloads:
                for t in targets:
                    r = pgbench(s, s.targets[t], w, -1, args)
                    log(f"warm-up {w:<15} {t:<11} tps {fmt(r.tps)}{'' if r.ok else '  ERRORS'}")
                    if not r.ok:
                        results.append(r)
        for rep in range(args.reps):
            order = targets[rep % len(targets):] + targets[:rep % len(targets)]
            for w in args.workloads:
                for t in order:
                    r = pgbench(s, s.targets[t], w, rep, args)
                    results.append(r)
                    extra = f"  proxy CPU {r.proxy_cpu * 100:.0f}%" if r.proxy_cpu is not None else ""
                    log(f"rep {rep + 1}/{args.reps} {w:<15} {t:<11} tps {fmt(r.tps):>7}{extra}"
                        f"{'' if r.ok else '  ERRORS: ' + '; '.join(r.errors[:2])}")
            for t in targets:
                if t in PROXIES:
                    proc = next(p for n, p, _ in procs.started if n == t)
                    if proc.poll() is not None:
                        raise BenchError(f"{t} exited ({proc.returncode}) during the run:\n{tail(s.logs[t])}")
        print()
        print(f"pgbench -n {{workload}} -c {args.clients} -j {args.jobs} -T {args.duration}, "
              f"scale {args.scale}, {args.reps} reps per target, medians of tps; "
              f"PgBouncer pool_mode={args.pgbouncer_pool_mode}, shiftguard pool_mode={args.shiftguard_pool_mode}"
              + (f", {args.pool_size} backend sessions per pool" if "transaction" in (
                  args.pgbouncer_pool_mode, args.shiftguard_pool_mode) else ""))
        print()
        print(report(results, targets, args.workloads))
        if idle:
            print()
            print(idle_report(idle))
        print()
        print(versions_text(s))
        for name in PROXIES:
            path = s.logs.get(name)
            if path is not None:
                noisy = [line for line in path.read_text(errors="replace").splitlines()
                         if re.search(r"\b(ERROR|WARNING|CRITICAL|Traceback)\b", line)]
                if noisy:
                    print(f"\n{name} log: {len(noisy)} error/warning lines, first ones:")
                    print("\n".join("  " + line for line in noisy[:10]))
        if args.json:
            Path(args.json).write_text(json.dumps({"runs": [r.__dict__ for r in results], "idle": idle}, indent=1))
        status = 0 if all(r.ok for r in results) else 1
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        if results:
            print(report(results, [t for t in TARGETS if t in args.targets], args.workloads))
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            procs.stop_all()
        finally:
            if args.keep_tmp:
                log(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return status


if __name__ == "__main__":
    sys.exit(main())
