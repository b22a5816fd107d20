"""Test fixtures: one real PostgreSQL for the whole run, started by the suite itself (initdb in a
temp dir, as an unprivileged OS user when run as root), and a real proxy per test on port 0,
running in a thread of its own so that blocking drivers can be used from the test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from proxy.backend.embedded import EmbeddedPostgres
from proxy.config import DEFAULT_ADMIN_PASSWORD, Config, load_config
from proxy.server import Proxy, ensure_database

# An application project using the pytest plugin; test_standin.py runs it as its own session.
collect_ignore = ["example_project"]

ADMIN = "awsuser"
ADMIN_PASSWORD = DEFAULT_ADMIN_PASSWORD
USER_PASSWORD = "Secret123"


class Postgres:
    """The suite's PostgreSQL, reached directly (not through the proxy) for checks."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.server = EmbeddedPostgres(data_dir)
        self.target = None

    def start(self) -> None:
        self.target = asyncio.run(self.server.start())
        asyncio.run(ensure_database(self.target, "dev"))

    def stop(self) -> None:
        asyncio.run(self.server.stop())

    @property
    def dsn(self) -> str:
        t = self.target
        return f"postgresql://{t.user}:{t.password}@/dev?host={t.socket_dir}&port={t.port}"

    def connect(self, dbname: str = "dev") -> psycopg.Connection:
        t = self.target
        return psycopg.connect(host=str(t.socket_dir), port=t.port, user=t.user,
                               password=t.password, dbname=dbname, autocommit=True)


@pytest.fixture(scope="session")
def postgres():
    data_dir = Path(tempfile.mkdtemp(prefix="shiftguard-test-", dir="/tmp"))
    server = Postgres(data_dir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


class RunningProxy:
    """A Proxy on its own event loop in a thread; host/port for clients."""

    def __init__(self, config: Config, own_backend=None, initdb_cache: Path | None = None):
        self.config = config
        self.proxy = Proxy(config, own_backend, initdb_cache=initdb_cache)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "RunningProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(60)
        self.host, self.port = self.proxy.addresses[0]
        self.api_port = self.proxy.api_address[1]
        return self

    def stop(self, grace: float = 0.0) -> None:
        if self.loop.is_closed():  # stopped already (a test that restarts a proxy)
            return
        try:
            asyncio.run_coroutine_threadsafe(self.proxy.stop(grace), self.loop).result(60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def call(self, coro, timeout: float = 30):
        """Run a coroutine on the proxy's loop (to look at its state from a test)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def conninfo(self, user: str = ADMIN, password: str = ADMIN_PASSWORD, dbname: str = "dev",
                 **extra) -> str:
        parts = {"host": self.host, "port": self.port, "user": user, "password": password,
                 "dbname": dbname, "sslmode": "disable", "connect_timeout": 10, **extra}
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def connect(self, user: str = ADMIN, password: str = ADMIN_PASSWORD, **extra) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(user, password, **extra), autocommit=True)


def proxy_config(data_dir: Path, **changes) -> Config:
    config = load_config(None, env={}, overrides={
        "listen": ["127.0.0.1:0"], "api_listen": "127.0.0.1:0", "data_dir": str(data_dir)})
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            config = replace(config, **{section: replace(getattr(config, section), **{name: value})})
        else:
            config = replace(config, **{key: value})
    return config


@pytest.fixture
def make_proxy(postgres, tmp_path, initdb_cache):
    """make_proxy(tls__require_ssl=True, limits__auth_timeout=1.0, ...) -> a started proxy that
    treats the suite's PostgreSQL as its own embedded server; make_proxy(external=True, ...)
    fronts it as an external backend through its DSN instead. The clusters its CreateCluster
    makes copy the suite's initdb."""
    started: list[RunningProxy] = []

    def make(external: bool = False, **changes) -> RunningProxy:
        if external:
            changes["backend__dsn"] = postgres.dsn
        config = proxy_config(tmp_path / f"proxy{len(started)}", **changes)
        proxy = RunningProxy(config, None if external else postgres.target, initdb_cache=initdb_cache)
        started.append(proxy.start())
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="session")
def initdb_cache():
    """For proxies that run an embedded PostgreSQL of their own: initdb once, copies after."""
    cache = Path(tempfile.mkdtemp(prefix="shiftguard-initdb-", dir="/tmp"))
    os.chmod(cache, 0o755)
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def own_server_proxy(initdb_cache):
    """own_server_proxy(**changes) -> a started proxy with an embedded PostgreSQL of its own
    (in a directory under /tmp, which the server's OS user can reach)."""
    started: list[tuple[RunningProxy, Path]] = []

    def make(**changes) -> RunningProxy:
        data_dir = Path(tempfile.mkdtemp(prefix="shiftguard-own-", dir="/tmp"))
        os.chmod(data_dir, 0o755)
        proxy = RunningProxy(proxy_config(data_dir, **changes), initdb_cache=initdb_cache)
        started.append((proxy, data_dir))
        return proxy.start()

    yield make
    for proxy, data_dir in started:
        proxy.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def proxy(make_proxy) -> RunningProxy:
    return make_proxy()


@pytest.fixture
def new_user(proxy, postgres):
    """new_user() -> (name, password): a fresh Redshift user created through the proxy."""
    made = []

    def make(password: str = USER_PASSWORD) -> tuple[str, str]:
        name = f"u_{uuid.uuid4().hex[:10]}"
        with proxy.connect() as conn:
            conn.execute(f"CREATE USER {name} PASSWORD '{password}'")
        made.append(name)
        return name, password

    yield make
    with postgres.connect() as direct:
        for name in made:
            direct.execute(f"DROP OWNED BY {name}")
    with proxy.connect() as conn:
        for name in made:
            conn.execute(f"DROP USER IF EXISTS {name}")


@pytest.fixture(scope="module")
def bucket():
    """A bucket directory (server_directory) for a module's COPY and UNLOAD tests."""
    directory = server_directory()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def server_directory(files: dict[str, str] | None = None) -> Path:
    """A new directory under /tmp that the server's OS user (postgres, when the suite runs as
    root) owns, holding files {relative path: text}: an S3 bucket for COPY and UNLOAD."""
    directory = Path(tempfile.mkdtemp(prefix="shiftguard-s3-", dir="/tmp"))
    for name, text in (files or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    if os.geteuid() == 0:
        import pwd
        entry = pwd.getpwnam("postgres")
        for path in (directory, *directory.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    directory.chmod(0o755)
    return directory


def installed_by_an_older_version(direct: psycopg.Connection) -> None:
    """The cluster database's catalog as another version of shiftguard left it, as far as a
    start can tell: the next start installs it again (an unchanged one is left as it is)."""
    direct.execute("DELETE FROM shiftguard_rows.settings WHERE name = 'cluster_installed'")


def made_before(postgres: Postgres, owner: str, *statements: str) -> None:
    """Run statements as the role owner directly on the backend with shiftguard's event triggers
    off (session_replication_role = replica): what a user made before shiftguard refused it
    (catalog/users_code.sql: PL/pgSQL functions, triggers, what calls them), for the tests of
    the defences behind that refusal. Whatever the statements evaluate runs here, as
    the bootstrap superuser's session with the role set: make expression indexes before rows."""
    with postgres.connect() as direct:
        direct.execute("SET session_replication_role = replica")
        direct.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        for statement in statements:
            direct.execute(statement)


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def wait_for(predicate, timeout: float = 10.0):
    """Poll predicate until it returns something true (the audit writer batches its records)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    return predicate()


os.environ.pop("SHIFTGUARD_ADMIN_PASSWORD", None)


def waits_on_a_lock(postgres: Postgres, fragment: str) -> bool:
    """Does a statement whose text holds fragment come to wait for a lock (another transaction's)?"""
    with postgres.connect() as direct:
        return bool(wait_for(lambda: direct.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (f"%{fragment}%",)).fetchone()[0]))
