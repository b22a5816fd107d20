"""The embedded PostgreSQL: find the server binaries, initdb once, run the server, stop it.

The server listens only on a Unix socket in a private directory (mode 0700) and never on TCP.
When shiftguard runs as root, the server runs as an unprivileged OS user. The server is a child
of this process that receives SIGINT (fast shutdown) if this process dies, so no server is
left behind. If the server dies while shiftguard runs (killed, crashed), supervise() starts it
again, with backoff, until it runs. Everything else about the backend (logging in, SQL) lives
elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MANAGEMENT_ROLE = "shiftguard"
INSTALL_HINT = ("install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql; "
                "macOS: brew install postgresql) or set embedded.bin_dir, or use --backend DSN "
                "to front an existing PostgreSQL")


class EmbeddedError(Exception):
    """The embedded server could not be set up or started; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedTarget:
    """How to reach the running embedded server."""

    socket_dir: Path
    port: int
    user: str
    password: str


def find_bin_dir(configured: str | None = None) -> Path:
    """Where initdb and postgres are: the configured directory, pg_config --bindir, PATH, or the
    newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured))
    else:
        pg_config = shutil.which("pg_config")
        if pg_config:
            try:
                out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
                if out.returncode == 0:
                    candidates.append(Path(out.stdout.strip()))
            except (OSError, subprocess.SubprocessError):
                pass
        on_path = shutil.which("postgres")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                          key=lambda p: _version_key(p.parent.name), reverse=True)
        candidates.extend(versions)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres", "pg_ctl")):
            return directory
    searched = ", ".join(str(c) for c in candidates) or "nothing found to search"
    raise EmbeddedError(f"no PostgreSQL server binaries found (searched: {searched}); {INSTALL_HINT}")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


# Where the server's files go when shiftguard runs as root in a directory the server's OS user
# cannot reach (a checkout under /root, a `mktemp -d` directory): one directory per data_dir.
UNREACHABLE_FALLBACK = Path("/var/lib/shiftguard")


def server_directory(data_dir: Path) -> Path:
    """Where the server of data_dir keeps its files: data_dir, unless shiftguard runs as root
    and some parent of data_dir is closed to other users: then a directory of its own under
    UNREACHABLE_FALLBACK, named after data_dir so that every start finds the same one."""
    data_dir = data_dir.resolve()
    if os.geteuid() != 0 or all(os.stat(p).st_mode & 0o001 for p in data_dir.parents if p.exists()):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return UNREACHABLE_FALLBACK / digest


class EmbeddedPostgres:
    """A PostgreSQL server in data_dir/pgdata, started and stopped by this process."""

    def __init__(self, data_dir: Path, bin_dir: str | None = None, os_user: str = "postgres",
                 initdb_cache: Path | None = None, max_connections: int = 500):
        """initdb_cache: a directory keeping a fresh initdb's output (and its management
        password) to copy instead of running initdb again (proxy.testing uses it).
        max_connections: the server's (500, as a Redshift cluster's connection limit)."""
        self.max_connections = max_connections
        self.restarts = 0        # times the server was started again after it died
        self.running = False     # started and not seen dead since
        self._stopping = False
        self.data_dir = data_dir.resolve()
        self.initdb_cache = initdb_cache
        self.bin_dir = find_bin_dir(bin_dir)
        self._as_root = os.geteuid() == 0
        self._os_user = os_user
        self.server_dir = server_directory(self.data_dir)
        self.pgdata = self.server_dir / "pgdata"
        self.socket_dir = self.server_dir / "run"
        self._process: subprocess.Popen | None = None
        self.port = 5432

    # ---------------------------------------------------------------- setup

    def _user_ids(self) -> tuple[int, int] | None:
        if not self._as_root:
            return None
        try:
            entry = pwd.getpwnam(self._os_user)
        except KeyError:
            raise EmbeddedError(
                f"running as root, the embedded PostgreSQL needs an unprivileged OS user "
                f"{self._os_user!r} (create it, e.g. useradd --system {self._os_user}, or set "
                f"embedded.os_user)") from None
        if entry.pw_uid == 0:
            raise EmbeddedError(f"embedded.os_user {self._os_user!r} must not be root")
        return entry.pw_uid, entry.pw_gid

    def _run_as_server_user(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, **self._spawn_kwargs(), capture_output=True, text=True, **kwargs)

    def _spawn_kwargs(self) -> dict:
        ids = self._user_ids()
        kwargs: dict = {"cwd": str(self.server_dir), "env": _server_env()}
        if ids:
            kwargs.update(user=ids[0], group=ids[1], extra_groups=[])
        return kwargs

    def _prepare_directories(self) -> None:
        ids = self._user_ids()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if self.server_dir != self.data_dir:
            UNREACHABLE_FALLBACK.mkdir(parents=True, exist_ok=True)
            os.chmod(UNREACHABLE_FALLBACK, 0o711)
            self.server_dir.mkdir(exist_ok=True)
            (self.data_dir / "server-location").write_text(
                f"{self.server_dir}\n# the embedded PostgreSQL's files: {self._os_user!r} cannot reach "
                f"this directory\n")
            log.info("the embedded PostgreSQL keeps its files in %s (%r cannot reach %s)",
                     self.server_dir, self._os_user, self.data_dir)
        # Traversable (not listable) by the server's OS user when it is a different user.
        os.chmod(self.server_dir, 0o711 if ids else 0o700)
        for directory in (self.pgdata, self.socket_dir):
            directory.mkdir(exist_ok=True)
            if ids:
                os.chown(directory, *ids)
            os.chmod(directory, 0o700)

    def _cache_key(self) -> Path | None:
        if self.initdb_cache is None:
            return None
        version = (self.bin_dir / "..").resolve().name
        return self.initdb_cache / f"initdb-{version}-{os.geteuid()}"

    def _copy_cached_initdb(self) -> bool:
        cached = self._cache_key()
        if cached is None or not (cached / "pgdata" / "PG_VERSION").exists():
            return False
        if any(self.pgdata.iterdir()):
            return False  # not ours to replace: initdb refuses a directory that is not empty, and says so
        self.pgdata.rmdir()
        shutil.copytree(cached / "pgdata", self.pgdata, symlinks=True)
        shutil.copy2(cached / "management.password", self.data_dir / "management.password")
        ids = self._user_ids()
        for root, dirs, files in os.walk(self.pgdata):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                if ids:
                    os.chown(name, *ids)
        os.chmod(self.pgdata, 0o700)
        log.info("embedded PostgreSQL copied from the initdb cache %s", cached)
        return True

    def _cache_initdb(self) -> None:
        cached = self._cache_key()
        if cached is None or cached.exists():
            return
        try:
            partial = cached.with_name(cached.name + f".{os.getpid()}")
            shutil.copytree(self.pgdata, partial / "pgdata", symlinks=True)
            shutil.copy2(self.data_dir / "management.password", partial / "management.password")
            partial.rename(cached)
        except OSError as exc:
            log.warning("could not keep an initdb cache in %s: %s", cached, exc)

    def _password(self) -> str:
        """The management role's password, made on first start and kept in the data directory."""
        path = self.data_dir / "management.password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        return password

    def _initdb(self, password: str) -> None:
        pwfile = self.pgdata.parent / f".initdb-{os.getpid()}.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        ids = self._user_ids()
        if ids:
            os.chown(pwfile, *ids)
        try:
            result = self._run_as_server_user([
                str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", MANAGEMENT_ROLE,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
                "--no-instructions"], timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {_last_lines(result.stderr or result.stdout)}")
        # Only the private socket, only with a password, for every role.
        (self.pgdata / "pg_hba.conf").write_text(
            "# written by shiftguard: the server is reachable only through its private socket\n"
            "local all all scram-sha-256\n")

    # ---------------------------------------------------------------- run

    async def start(self) -> EmbeddedTarget:
        self._prepare_directories()
        password = self._password()
        if not (self.pgdata / "PG_VERSION").exists():
            if not await asyncio.to_thread(self._copy_cached_initdb):
                log.info("initialising embedded PostgreSQL in %s", self.pgdata)
                await asyncio.to_thread(self._initdb, password)
                await asyncio.to_thread(self._cache_initdb)
            password = self._password()
        await asyncio.to_thread(self._stop_stale_server)
        log_file = open(self.data_dir / "postgres.log", "ab")
        args = [
            str(self.bin_dir / "postgres"), "-D", str(self.pgdata),
            "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "unix_socket_permissions=0700", "-c", f"port={self.port}",
            "-c", f"max_connections={self.max_connections}", "-c", "password_encryption=scram-sha-256",
        ]
        try:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                preexec_fn=_die_with_parent, start_new_session=True, **self._spawn_kwargs())
        finally:
            log_file.close()
        await self._wait_ready(password)
        self.running = True
        log.info("embedded PostgreSQL %s running (pid %d)", self.bin_dir, self._process.pid)
        return EmbeddedTarget(self.socket_dir, self.port, MANAGEMENT_ROLE, password)

    async def supervise(self, on_down: Callable[[], None], on_up: Callable[[], None]) -> None:
        """Run until cancelled: whenever the server exits without stop() (killed, crashed),
        on_down(), then start it again, waiting 1, 2, 4 ... 30 s between attempts, then on_up().
        (PostgreSQL cannot start while processes of the dead server still hold its shared
        memory; they exit on their own once they notice, and the next attempt starts it.)"""
        while True:
            process = self._process
            if process is None:
                return
            code = await asyncio.to_thread(process.wait)
            if self._stopping or process is not self._process:
                return
            self.running = False
            log.error("the embedded PostgreSQL (pid %d) exited unexpectedly (%s); starting it again",
                      process.pid, _exit_status(code))
            on_down()
            delay = 1.0
            while True:
                await asyncio.sleep(delay)
                if self._stopping:
                    return
                try:
                    await self.start()
                    break
                except EmbeddedError as exc:
                    log.error("the embedded PostgreSQL did not start again (next try in %.0f s): %s",
                              min(delay * 2, 30.0), exc)
                except OSError as exc:
                    log.error("the embedded PostgreSQL did not start again (next try in %.0f s): %s",
                              min(delay * 2, 30.0), exc)
                delay = min(delay * 2, 30.0)
            self.restarts += 1
            on_up()

    async def _wait_ready(self, password: str, timeout: float = 60.0) -> None:
        import asyncpg

        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self._process.poll() is not None:
                raise EmbeddedError("the embedded PostgreSQL exited while starting: "
                                    f"{_last_lines((self.data_dir / 'postgres.log').read_text(errors='replace'))}")
            try:
                conn = await asyncpg.connect(host=str(self.socket_dir), port=self.port, user=MANAGEMENT_ROLE,
                                             password=password, database="postgres", timeout=5)
                await conn.close()
                return
            except (OSError, asyncpg.CannotConnectNowError, asyncio.TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise EmbeddedError(f"the embedded PostgreSQL did not become ready in {timeout:.0f} s; "
                                    f"see {self.data_dir / 'postgres.log'}")
            await asyncio.sleep(0.05)

    def _stop_stale_server(self) -> None:
        """A server left from an earlier run that was killed outright: stop it first. Only a
        process that is a postmaster of this data directory is signalled: after a crash its
        PID may belong to anything else by now. What is left of a server that died (its
        backends, which exit on their own once they notice) is told to quit at once."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (ValueError, OSError):
            return  # PostgreSQL itself says what is wrong with it
        if self._is_postmaster_here(pid):
            log.warning("stopping a PostgreSQL server left running from an earlier start (pid %d)", pid)
            self._run_as_server_user([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.pgdata),
                                      "-m", "fast", "-w", "-t", "60"], timeout=90)
            return
        leftovers = self._server_processes_here()
        for leftover in leftovers:
            log.warning("the process %d of a PostgreSQL server that died still runs in %s; telling it to quit",
                        leftover, self.pgdata)
            with contextlib.suppress(OSError):
                os.kill(leftover, signal.SIGQUIT)
        if not leftovers and _alive(pid):
            # The PID in the lock file now belongs to some other process: PostgreSQL would take
            # it for a running server and refuse to start. No process of a server uses this
            # directory, so the lock file is stale.
            log.warning("postmaster.pid names pid %d, which is not a PostgreSQL server of %s: removing the "
                        "stale lock file", pid, self.pgdata)
            pid_file.unlink(missing_ok=True)

    def _is_postmaster_here(self, pid: int) -> bool:
        """Is pid a postmaster of this data directory? (Its command line is the one this
        class runs: postgres -D <pgdata> ...; a backend's is its process title.)"""
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False  # gone, or not one of ours to look at (or no /proc: not signalled)
        return (len(args) > 2 and Path(os.fsdecode(args[0])).name == "postgres" and args[1] == b"-D"
                and Path(os.fsdecode(args[2])) == self.pgdata)

    def _server_processes_here(self) -> list[int]:
        """Processes of a PostgreSQL server working in this data directory (every server
        process changes into it), but this class's own running server."""
        found = []
        own = self._process.pid if self._process is not None and self._process.poll() is None else None
        for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                if (Path(os.readlink(entry / "cwd")) == self.pgdata
                        and Path(os.readlink(entry / "exe")).name == "postgres"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    async def stop(self) -> None:
        """Fast shutdown: PostgreSQL rolls back open transactions and exits."""
        self._stopping = True
        self.running = False
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            log.error("embedded PostgreSQL did not stop in 60 s; sending SIGQUIT")
            process.send_signal(signal.SIGQUIT)
            await asyncio.to_thread(process.wait, 30)
        log.info("embedded PostgreSQL stopped")


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SHIFTGUARD_"))}
    env.setdefault("LC_ALL", "C")
    return env


def _die_with_parent() -> None:
    """In the child, after the switch of user: SIGINT when shiftguard exits (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    except (OSError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _last_lines(text: str, count: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-count:])
