"""`shiftguard serve`: bring the parts up in order, print where they listen, shut down in two
stages. Owns process lifetime only; every part's behaviour lives in its own module."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from .backend.embedded import EmbeddedPostgres, EmbeddedTarget
from .backend.pool import SessionPool
from .backend.txpool import TransactionPool
from .backend.session import BackendAddress, parse_dsn
from .catalog.cluster import ClusterSync
from .catalog.late_binding import POLL_SECONDS as LATE_BINDING_POLL_SECONDS, LateBinding
from .catalog.connectivity import SecurityGroupSync
from .catalog.long_names import LongNames
from .catalog.sources import ColumnSources
from .catalog.store import (BACKEND_FAILURES, MASKING_CHANNEL, MV_REFRESH_CHANNEL, TRUSTED_SETTINGS, VACUUM_CHANNEL,
                            Catalog, ClusterState, UntrustedDatabase)
from .config import Config, ConfigError, admin_password, parse_address
from .fleet import Fleet
from .frontend.auth import LoginThrottle
from .frontend.connection import AcceptedClient, Context, SessionRegistry, cancel_session
from .frontend.tls import self_signed_certificate, server_context
from .audit.metrics import Metrics
from .audit.delivery import LogDelivery
from .audit.writer import AuditWriter
from .iam import http as api
from .iam.api import RedshiftApi
from .iam.data_api import DataApi
from .iam.principals import Principals
from .iam.local_idp import (OIDC_AUDIENCE, OIDC_ISSUER, PROVIDER_NAME as LOCAL_PROVIDER, LocalIdp,
                             roles_trusting)
from .iam.s3access import S3Access
from .iam.saml import SamlProvider
from .iam.sts import Callers, StsApi
from .iam.tokens import TokenAuthority, load_or_make_key
from .policy.cache import Classifier
from .policy.connectivity import SecurityGroupGate, SecurityGroups
from .policy import idp, sealing, signing
from .policy.masking import MaskedTables
from .policy.parameter_groups import ClusterSettings
from .policy.tokens import quote_ident
from .policy.statements import Translator
from .protocol import messages as m
from .protocol.redshift_types import REDSHIFT_OIDS, RedshiftTypes
from .s3 import LocalS3
from .workers import Peers, SharedThrottle, WorkerSpec, Workers, listen_for_peers
from .protocol.sqlstate import ADMIN_SHUTDOWN, CRASH_SHUTDOWN, IDLE_IN_TRANSACTION_TIMEOUT, IDLE_SESSION_TIMEOUT

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The proxy cannot start; the message says why and what to do (exit code 2)."""


def check_listen_policy(config: Config, default_password: bool) -> None:
    """With the documented default admin password, only loopback addresses may be served."""
    if not default_password:
        return
    exposed = [str(a) for a in config.listen_addresses if not a.is_loopback]
    if exposed:
        raise StartupError(
            f"refusing to listen on {', '.join(exposed)}: SHIFTGUARD_ADMIN_PASSWORD is not set, so "
            f"the admin user has the documented default password; set it, or listen on 127.0.0.1")


class Proxy:
    """The running proxy: backend, catalog, client listeners and the API server."""

    def __init__(self, config: Config, own_backend: EmbeddedTarget | None = None,
                 initdb_cache: Path | None = None, member_of: Proxy | None = None,
                 master_password: str | None = None, workers: Workers | None = None,
                 worker: WorkerSpec | None = None):
        """own_backend: an embedded server started elsewhere (by a test session, say) that this
        proxy treats as its own instead of starting one. initdb_cache: see EmbeddedPostgres.
        member_of: the configured cluster's proxy, when this is a cluster CreateCluster made
        (fleet.py): it serves no API of its own (member_of's answers for it, knowing the same
        callers), runs no init_sql, and sets its admin's password only to master_password
        (given for a new cluster; at a restart the stored one stays). workers: this is the
        parent of those worker processes, which accept the clients (it accepts none); worker:
        this is one of them (workers.py says what each does)."""
        self.config = config
        self.own_backend = own_backend
        self.initdb_cache = initdb_cache
        self.member_of = member_of
        self.master_password = master_password
        self.workers = workers
        self.worker = worker
        self.fleet: Fleet | None = None  # the clusters CreateCluster made (embedded backend only)
        self.redshift: RedshiftApi | None = None
        self.callers: Callers | None = None
        self.embedded: EmbeddedPostgres | None = None
        self.catalog: Catalog | None = None
        self.late_binding: LateBinding | None = None
        self.audit: AuditWriter | None = None
        self.context: Context | None = None
        self.security_groups: SecurityGroupSync | None = None
        self.cluster: ClusterSync | None = None
        self.servers: list[asyncio.base_events.Server] = []
        self.api_runner = None
        self.workers_backend: EmbeddedTarget | None = None  # the embedded server, for the workers
        self.addresses: list[tuple[str, int]] = []
        self._sweeper: asyncio.Task | None = None
        self._followers: list[asyncio.Task] = []  # LISTEN, and what notifications wake
        self._supervisor: asyncio.Task | None = None
        self.api_address: tuple[str, int] | None = None
        self.local_idp: LocalIdp | None = None  # iam.local_idp: the development IdP, for tests
        self.local_idp_runner = None
        self.local_idp_address: tuple[str, int] | None = None  # its HTTPS form login
        self.classifier: Classifier | None = None
        self._unreadable: set[str] = set()  # databases whose masked tables could not be read
        self._types: dict[str, RedshiftTypes | None] = {}  # each database's Redshift types' OIDs
        self._masked_read = asyncio.Lock()  # one read at a time: an older never overwrites a newer

    async def start(self) -> None:
        config = self.config
        if self.worker is not None:  # the parent set the admin up
            password = None
        elif self.member_of is None:
            password, default_password = admin_password()
            check_listen_policy(config, default_password)
        else:  # on the configured listener's host; its admin's password is CreateCluster's
            password = self.master_password
        data_dir = Path(config.data_dir)
        if config.backend.dsn:
            dsn = parse_dsn(config.backend.dsn)
            address, mapping = dsn.address, "createrole"
            mgmt_user, mgmt_password, mgmt_db = dsn.user, dsn.password, dsn.database
        else:
            target = self.own_backend
            if target is None:
                self.embedded = EmbeddedPostgres(data_dir, config.embedded.bin_dir, config.embedded.os_user,
                                                 initdb_cache=self.initdb_cache,
                                                 max_connections=config.embedded.max_connections)
                target = await self.embedded.start()
            self.workers_backend = target
            address = BackendAddress(socket_dir=target.socket_dir, port=target.port)
            mapping = "superuser"
            mgmt_user, mgmt_password, mgmt_db = target.user, target.password, config.cluster.database
            await ensure_database(target, mgmt_db)
        self.catalog = await Catalog.open(address, mgmt_user, mgmt_password, mgmt_db, mapping,
                                          config.cluster.track_table_writes)
        if password is not None:
            await self.catalog.ensure_admin(config.cluster.admin_user, password)
        self.master_password = None  # CreateCluster's password is not kept once set
        seal = sealing.sealer(self.catalog.ticket_key())  # identity providers' secrets, as they are stored
        if self.worker is None:  # a worker's parent seeds them
            await self.catalog.seed_identity_providers([idp.seal_secrets(p.spec(), seal)
                                                        for p in config.identity_providers])
            await self.catalog.seed_cluster_iam_roles(config.cluster.iam_roles, config.cluster.default_iam_role)

        principals = Principals(config)
        cluster = config.cluster
        dbusers = f"arn:aws:redshift:{cluster.region}:{cluster.account_id}:dbuser:{cluster.identifier}"
        translator = Translator(self.catalog.backend_verifier, dialect=self.catalog.redshift_functions,
                                strict=config.strict_redshift,
                                s3=LocalS3(dict(config.s3), self.catalog.ticket_key()),
                                sign=signing.signer(self.catalog.ticket_key()), seal=seal,
                                s3_access=S3Access(principals, dbusers, self.catalog.sts_secret))
        lockout = (config.auth.lockout_failures, config.auth.lockout_window, config.auth.lockout_seconds,
                   config.auth.lockout_max_pairs)
        if self.worker is not None:
            peers = Peers(self.worker.index, config.workers, self.worker.control_dir)
            throttle = SharedThrottle(peers, *lockout)
        else:
            throttle = LoginThrottle(*lockout)
        metrics = Metrics()
        audit_dir = Path(config.audit.dir) if config.audit.dir else data_dir / "audit"
        self.audit = AuditWriter(audit_dir, self.catalog, metrics, max_bytes=config.audit.max_file_bytes,
                                 rotate_seconds=config.audit.rotate_seconds,
                                 json_stdout=config.audit.json_stdout,
                                 shared=self.workers is not None or self.worker is not None,
                                 user_log=self.worker is None)
        await self.audit.start()
        sessions_gauge = metrics.connections
        # Keeps each database's masked tables (_read_masked_tables) and their plans.
        self.classifier = Classifier(translator, metrics=metrics, max_bytes=config.limits.classification_cache_bytes,
                                     max_statement_size=config.limits.max_statement_size,
                                     max_checked_size=config.limits.max_checked_statement_size,
                                     max_rewritten_size=config.limits.max_rewritten_statement_size)
        self.context = Context(config=config, catalog=self.catalog, backend=address,
                               tls=tls_context(config, data_dir), classify=self.classifier,
                               gate=SecurityGroupGate.build(SecurityGroups(), ()), throttle=throttle,
                               tokens=token_authority(config, data_dir), audit=self.audit, metrics=metrics,
                               pool=SessionPool(config.backend.pool_size, config.backend.pool_idle_seconds))
        context = self.context
        if config.backend.pool_mode == "transaction":
            transactions = context.transactions = TransactionPool(config.backend.max_sessions_per_pool,
                                                                  config.backend.pool_idle_seconds)
            for index, state in enumerate(("open", "idle")):
                metrics.transaction_pool.labels(state=state).set_function(
                    lambda index=index: sum(counts[index] for counts in transactions.counts().values()))
            metrics.transaction_pool_waiting.set_function(
                lambda: sum(counts[2] for counts in transactions.counts().values()))
        if self.worker is not None:
            context.sessions = SessionRegistry(self.worker.index)
            context.peers = peers
        context.prepare_database, context.vacate_database = self._prepare_database, self._vacate_database
        context.protection_moved = self._protection_moved
        if self.catalog.redshift_functions:  # (late-binding views are Redshift's SQL)
            self.late_binding = LateBinding(self.catalog)
            context.late_bound = self.late_binding.after_ddl
        context.sources = ColumnSources(self.catalog.column_sources)
        context.long_names = LongNames(self.catalog.record_long_names)
        context.connection_limit = int(await self.catalog.server_setting("max_connections"))
        if self.embedded is not None:
            metrics.backend_up.set_function(lambda: 1 if self.embedded.running else 0)
            self._supervisor = asyncio.create_task(self.embedded.supervise(self._backend_down, self._backend_up))
        else:
            metrics.backend_up.set(1)
        sessions_gauge.labels(state="relaying").set_function(lambda: len(context.sessions))
        sessions_gauge.labels(state="open").set_function(lambda: context.connection_total)
        sessions_gauge.labels(state="not logged in").set_function(lambda: len(context.waiting))
        metrics.backend_kept.set_function(lambda: len(context.pool))
        metrics.classification_cache_bytes.set_function(lambda: getattr(context.classify, "bytes", 0))
        # The gate admits no one until the stored security groups are read (deny by default).
        self.security_groups = SecurityGroupSync(self.catalog, self._install_security_groups)
        await self.security_groups.start(SecurityGroups.from_config(config))
        self.cluster = ClusterSync(self.catalog, config.cluster.identifier, self._install_cluster)
        await self.cluster.start()

        if self.workers is None:
            await self._listen_for_clients()
        self._sweeper = asyncio.create_task(self._close_idle_sessions())
        await self._read_masked_tables(config.cluster.database)
        masking_woken, vacuum_woken, refresh_woken = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._followers = [
            asyncio.create_task(self._listen({MASKING_CHANNEL: masking_woken} if self.worker is not None else
                                             {MASKING_CHANNEL: masking_woken, VACUUM_CHANNEL: vacuum_woken,
                                              MV_REFRESH_CHANNEL: refresh_woken})),
            # A NOTIFY reaches only listeners in the database it was sent in (the cluster's):
            # changes in the other databases are read at the poll, or by the proxy that made them.
            asyncio.create_task(_on_wake(masking_woken, self._read_masked_tables, MASKING_POLL_SECONDS,
                                         "could not read the masked tables: %s"))]
        if self.worker is not None:  # the rest is the parent's, once for all workers
            pool = self.context.pool
            self.servers.append(await listen_for_peers(
                self.worker, functools.partial(cancel_session, self.context),
                lambda oid: pool.forget(lambda key: key[0][1] == oid), throttle))
            return
        self._followers += [
            # VACUUM requests users queue in any database (catalog/privileges.sql shiftguard.vacuum):
            # those from other databases run at the poll, for the same reason.
            asyncio.create_task(_on_wake(vacuum_woken, self.catalog.run_vacuums, VACUUM_POLL_SECONDS,
                                         "could not run the queued VACUUMs: %s")),
            # Materialized views with AUTO REFRESH YES, refreshed when stale (the cluster database's).
            asyncio.create_task(_on_wake(refresh_woken, self.catalog.refresh_stale_views, VACUUM_POLL_SECONDS,
                                         "could not refresh the materialized views: %s")),
            # Users' lock requests queued on the views of schema shiftguard (Catalog.cancel_queued_locks).
            asyncio.create_task(_on_wake(asyncio.Event(), self.catalog.cancel_queued_locks, QUEUED_LOCKS_POLL_SECONDS,
                                         "could not look for lock requests on schema shiftguard: %s"))]
        if self.late_binding is not None:  # views made readable by DDL no relay saw end
            self._followers.append(asyncio.create_task(_on_wake(
                asyncio.Event(), self.late_binding.poll, LATE_BINDING_POLL_SECONDS,
                "could not bind the late-binding views: %s")))
        if self.workers is not None:
            metrics.gather = self.workers.metrics
            self.workers.reserve()
            await self.workers.start(self.workers_backend)
            self.addresses = self.workers.addresses
        host, port = self.addresses[0]
        endpoint = ({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port)
        self.callers = callers = self.member_of.callers if self.member_of else Callers(principals, self.catalog)
        if self.member_of is None and not config.backend.dsn:
            self.fleet = Fleet(config, lambda member_config, master_password: Proxy(
                member_config, initdb_cache=self.initdb_cache, member_of=self, master_password=master_password))
        self.redshift = redshift = RedshiftApi(config, principals, self.context.tokens, self.catalog, endpoint,
                                               self.security_groups, callers, cluster=self.cluster, fleet=self.fleet)
        if self.member_of is not None:
            return
        if config.iam.local_idp:
            self.local_idp = LocalIdp(data_dir / "idp", config.cluster.account_id)
        sts = StsApi(callers, config.cluster.region, *federation_providers(config, self.local_idp))
        app = api.make_app(self._ready, redshift, metrics, sts, self.local_idp, DataApi(redshift, self.context))
        api_address = config.api_address
        self.api_runner, self.api_address = await api.start(app, api_address.host, api_address.port)
        if self.local_idp is not None:
            # Its form login, over TLS with the proxy's certificate (no client certificates), on
            # a loopback address of its own.
            idp_app = api.make_local_idp_app(
                self.local_idp, lambda: roles_trusting(self.local_idp.provider_arn, self.config))
            idp_address = parse_address(config.iam.local_idp_listen)
            self.local_idp_runner, self.local_idp_address = await api.start(
                idp_app, idp_address.host, idp_address.port, server_context(*tls_files(config, data_dir)))
        await self._run_init_sql(password)
        if self.fleet is not None:
            self.fleet.restore()

    async def _listen_for_clients(self) -> None:
        """Listen on the configured addresses; a worker on those its parent reserved, which
        the other workers listen on too (SO_REUSEPORT)."""
        loop = asyncio.get_running_loop()
        if self.worker is None:
            addresses = [(listen.host, listen.port) for listen in self.config.listen_addresses]
        else:
            addresses = self.worker.addresses
        for host, port in addresses:
            server = await loop.create_server(lambda: AcceptedClient(self.context), host, port, reuse_address=True,
                                              reuse_port=self.worker is not None,
                                              backlog=self.config.limits.listen_backlog)
            self.servers.append(server)
            for sock in server.sockets:
                self.addresses.append(sock.getsockname()[:2])

    async def _run_init_sql(self, admin_password: str) -> None:
        """init_sql, once for a new cluster, as the admin through the proxy's own listener."""
        config = self.config
        statements = list(config.init_sql)
        if config.init_sql_file:
            statements.append(Path(config.init_sql_file).read_text())
        if not statements:
            return
        if not await self.catalog.init_sql_pending():
            log.info("init_sql skipped: the cluster is not new")
            return
        import asyncpg

        host, port = self.addresses[0]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        conn = await asyncpg.connect(host=host, port=port, user=config.cluster.admin_user,
                                     password=admin_password, database=config.cluster.database, ssl=False)
        try:
            for statement in statements:
                try:
                    await conn.execute(statement)
                except asyncpg.PostgresError as exc:
                    first_line = statement.strip().splitlines()[0][:80] if statement.strip() else ""
                    raise StartupError(f"init_sql failed at {first_line!r}: {exc.sqlstate} {exc}") from None
        finally:
            await conn.close()
        await self.catalog.init_sql_done()
        log.info("init_sql ran (%d entries)", len(statements))

    async def _ready(self) -> bool:
        """/readyz: the backing database answers (and the embedded one is not being restarted)."""
        if self.embedded is not None and not self.embedded.running:
            return False
        return await self.catalog.ping()

    def _backend_down(self) -> None:
        """The embedded PostgreSQL died: every session on it is over. Their clients are told so
        (as PostgreSQL tells them when it restarts after a crash), kept sessions are dropped."""
        goodbye = m.error_response(
            "FATAL", CRASH_SHUTDOWN, "terminating connection because the cluster's database server stopped",
            hint="In a moment you should be able to reconnect to the database and repeat your command.")
        ended = self._end_sessions(goodbye)
        if ended:
            log.error("closed %d open sessions; logins are refused until the server runs again", ended)

    def _end_sessions(self, goodbye: bytes) -> int:
        """Every open session ends with goodbye, and the backend sessions kept idle for the next
        client (both pool modes) close; how many open sessions ended."""
        sessions = list(self.context.sessions)
        for session in sessions:
            session.relay.close(goodbye)
        self.context.pool.close()
        if self.context.transactions is not None:
            self.context.transactions.prune(0)
        return len(sessions)

    def _backend_up(self) -> None:
        if self.context.metrics is not None:
            self.context.metrics.backend_restarts.inc()
        log.warning("the embedded PostgreSQL runs again (restart %d); logins work", self.embedded.restarts)

    # Keys a reload cannot change: they need a restart.
    # Read once at start (a reload that changes them says so); cluster's and audit's other keys
    # are read per connection.
    _RESTART_KEYS = ("listen", "api_listen", "workers", "backend", "data_dir", "embedded", "cluster", "identity_providers",
                     "iam", "s3", "strict_redshift", "audit", "log_format")
    _PER_CONNECTION = {"cluster": ("security_groups", "session_timeout"),
                       "audit": ("user_activity", "max_statement_length")}

    def _install_security_groups(self, groups: SecurityGroups) -> None:
        """The stored security groups (read by SecurityGroupSync) admit the next connection."""
        self.context.gate = SecurityGroupGate.build(groups, self.config.trusted_proxies)
        log.info("security groups in force: %s", ", ".join(
            f"{g.name} ({' '.join(g.cidrs) or 'no rules'})" for g in groups.groups if g.name in groups.attached)
            or "none attached: no client is admitted")

    def _install_cluster(self, state: ClusterState, rebooted: bool) -> None:
        """The cluster's stored state (read by ClusterSync): its parameter group's values for the
        next session; after a RebootCluster every session ends first, as a reboot ends them."""
        if rebooted:
            # UNVERIFIED: what a Redshift client is told when its cluster reboots; PostgreSQL's
            # words for a server ending sessions on an administrator's command.
            ended = self._end_sessions(m.error_response("FATAL", ADMIN_SHUTDOWN,
                                                        "terminating connection due to administrator command"))
            log.warning("cluster rebooted: ended %d sessions; parameter group %s in force", ended, state.applied_group)
        self.context.cluster = ClusterSettings(state.applied)
        self.audit.delivery = self._log_delivery(state.logging)

    def _log_delivery(self, logging: dict | None) -> LogDelivery | None:
        """Where rotated audit logs go (EnableLogging), or None."""
        if logging is None:
            return None
        directory = self.config.s3.get(logging["bucket"])
        if directory is None:
            log.error("audit logs are not delivered: bucket %s is no longer in the s3 configuration", logging["bucket"])
            return None
        cluster = self.config.cluster
        return LogDelivery(directory, logging["prefix"], cluster.account_id, cluster.region, cluster.identifier,
                           tuple(logging["exports"]))

    def reload(self, new: Config) -> None:
        """Apply a re-read configuration to new connections; established sessions keep going.
        Raises (and changes nothing) when the new TLS files cannot be loaded.

        The configuration's security groups replace the stored ones only when they differ from
        those last applied (docs/connectivity.md); that happens on the event loop as soon as the
        backing database takes it, and until then the rules in force stay."""
        tls = tls_context(new, Path(new.data_dir))
        configured = SecurityGroups.from_config(new)
        gate = SecurityGroupGate.build(self.security_groups.state or SecurityGroups(), new.trusted_proxies)
        for key in self._RESTART_KEYS:
            old_value, new_value = getattr(self.config, key), getattr(new, key)
            if key in self._PER_CONNECTION:
                old_value, new_value = ({k: v for k, v in dataclasses.asdict(value).items()
                                         if k not in self._PER_CONNECTION[key]} for value in (old_value, new_value))
            if old_value != new_value:
                log.warning("reload: %s changed; it takes effect at the next restart", key)
        throttle = self.context.throttle
        throttle.failures, throttle.window, throttle.cooldown, throttle.entries = (
            new.auth.lockout_failures, new.auth.lockout_window, new.auth.lockout_seconds,
            new.auth.lockout_max_pairs)
        classify = self.context.classify
        if isinstance(classify, Classifier):
            classify.max_bytes, classify.max_statement_size, classify.max_checked_size = (
                new.limits.classification_cache_bytes, new.limits.max_statement_size,
                new.limits.max_checked_statement_size)
            classify.max_rewritten_size = new.limits.max_rewritten_statement_size
        self.context.tls, self.context.gate, self.context.config = tls, gate, new
        self.config = new
        self.security_groups.configuration_changed(configured)
        if self.workers is not None:
            self.workers.reload(new)
        logging.getLogger().setLevel(new.log_level.upper())
        log.info("configuration reloaded")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; let sessions finish their transactions until `grace` runs out; close
        the rest; stop the API, the catalog and the embedded server."""
        for server in self.servers:
            server.close()
        # The created clusters stop alongside, each as this one does.
        members = asyncio.create_task(self.fleet.stop(grace)) if self.fleet is not None else None
        if self.workers is not None:
            await self.workers.stop(grace)
        if self.context is not None:
            self.context.pool.size = 0  # sessions ending from now on close their backend
            self.context.pool.close()
            if self.context.transactions is not None:
                self.context.transactions.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in self._followers:
            task.cancel()
        if self._followers:
            # Bounded: a follower inside a long statement (a queued VACUUM of a whole database)
            # ends when the catalog's connections are closed below, if not before.
            _, pending = await asyncio.wait(self._followers, timeout=STOP_WAIT_SECONDS)
            if pending:
                log.warning("stopping: %d background tasks still running; their connections are closed", len(pending))
        if self.context is not None:
            await self._drain_sessions(grace)
            for task in list(self.context.tasks):
                task.cancel()
            await asyncio.gather(*self.context.tasks, return_exceptions=True)
            self.context.pool.close()
        if members is not None:
            await members
        if self.api_runner is not None:
            await self.api_runner.cleanup()
        if self.local_idp_runner is not None:
            await self.local_idp_runner.cleanup()
        if self.security_groups is not None:
            await self.security_groups.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.audit is not None:
            await self.audit.stop()
        if self.late_binding is not None:
            await self.late_binding.close()
        if self.catalog is not None:
            await self.catalog.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self.embedded is not None:
            await self.embedded.stop()

    async def _read_masked_tables(self, database: str | None = None, known_too: bool = False) -> None:
        """The masked tables and tables with RLS on of each database sessions were opened in,
        read again where their version moved: statements naming them are rewritten to read
        their masking views from then on (the plans made before are dropped). database: one
        to read now if it is not known yet (a session is about to open in it), or, known_too,
        whether its version moved even if it is known."""
        classify = self.classifier
        if database is not None and not known_too and classify.masked(database) is not None:
            return
        async with self._masked_read:
            if database is not None and not known_too and classify.masked(database) is not None:
                return  # read meanwhile
            versions = await self.catalog.masking_versions()
            for name in [database] if database is not None else list(classify.databases):
                masked = classify.masked(name)
                if name not in versions:  # dropped
                    classify.set_masked(name, None)
                elif masked is None or masked.version != versions[name]:
                    views, rls = await self.catalog.protected_tables(name)
                    classify.set_masked(name, MaskedTables(versions[name], views, rls))

    async def _protection_moved(self, database: str) -> None:
        """A transaction of a session in database that changed its masked or RLS tables ended:
        they are read again before the client hears of it (relay.py holds its ReadyForQuery)."""
        await self._read_masked_tables(database, known_too=True)

    async def _prepare_database(self, database: str) -> RedshiftTypes | None:
        """Before a session opens in database: its masked tables are known. If they cannot be
        read, statements there are classified as naming none, and PostgreSQL refuses reading a
        masked table directly (closed, not leaking). Returns the OIDs of its Redshift types
        (read once; none where they are not installed: their names are then PostgreSQL's
        errors, and the relay rewrites nothing)."""
        try:
            await self._read_masked_tables(database)
            if database not in self._types and self.catalog.redshift_functions:
                self._types[database] = RedshiftTypes.from_names(await self.catalog.type_oids(database, REDSHIFT_OIDS))
        except (*BACKEND_FAILURES, UntrustedDatabase) as exc:
            if database not in self._unreadable:  # once: a database without the private schema stays so
                self._unreadable.add(database)
                log.warning("could not read the masked tables of database %s: %s", database, exc)
        return self._types.get(database)

    def _vacate_database(self, database: str) -> None:
        """DROP DATABASE, ALTER DATABASE ... RENAME or a CREATE DATABASE copying it is on its way:
        no idle session of ours stays in database (its masked tables are read again if it is
        still there at the next session)."""
        self.context.sources.forget(database)  # another database of that name has other OIDs
        ended = self.context.pool.close_database(database)
        if self.context.transactions is not None:
            ended += self.context.transactions.close_database(database)
        if ended:
            log.info("closed %d idle backend sessions in database %s for a statement that needs it empty",
                     ended, database)
        self.classifier.set_masked(database, None)
        self._types.pop(database, None)

    async def _listen(self, wakers: dict[str, asyncio.Event]) -> None:
        """Hold one connection LISTENing on each channel, and set its event at each NOTIFY, and
        every event each time listening starts (what was sent while not listening is unknown)."""
        failing = False
        while True:
            lost = asyncio.Event()
            try:
                listener = await self.catalog.listen({channel: woken.set for channel, woken in wakers.items()},
                                                     lost.set)
                try:
                    for woken in wakers.values():
                        woken.set()
                    failing = False
                    await lost.wait()
                finally:
                    await self.catalog.unlisten(listener)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the backend is away
                if not failing:
                    log.error("could not listen for the backend's notifications: %s", exc)
                failing = True
            await asyncio.sleep(RELISTEN_SECONDS)

    async def _close_idle_sessions(self) -> None:
        """SESSION TIMEOUT: a session idle (no query running, nothing sent either way) for its
        timeout is closed with a FATAL error, as PostgreSQL's idle_session_timeout does."""
        goodbye = m.error_response("FATAL", IDLE_SESSION_TIMEOUT, "terminating connection due to idle-session timeout")
        idle_in_transaction = m.error_response(
            "FATAL", IDLE_IN_TRANSACTION_TIMEOUT, "terminating connection due to idle-in-transaction timeout")
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            self.context.pool.prune()  # kept backend sessions past their idle time
            if self.context.transactions is not None:
                self.context.transactions.prune()
            now = loop.time()
            in_transaction = self.context.config.limits.idle_in_transaction_timeout
            for session in self.context.sessions:
                relay = session.relay
                if relay.busy:
                    continue
                idle = now - relay.last_activity
                if session.idle_timeout and idle >= session.idle_timeout:
                    log.info("closing idle session of %s after %d s", session.user, session.idle_timeout)
                    relay.close(goodbye)
                elif in_transaction and relay.tx_status != m.TX_IDLE and idle >= in_transaction:
                    log.info("closing session of %s idle in a transaction", session.user)
                    relay.close(idle_in_transaction)

    async def _drain_sessions(self, grace: float) -> None:
        goodbye = m.error_response("FATAL", ADMIN_SHUTDOWN, "terminating connection due to administrator command")
        deadline = asyncio.get_running_loop().time() + grace
        while True:
            for session in self.context.sessions:
                if session.relay.idle or asyncio.get_running_loop().time() >= deadline:
                    session.relay.close(goodbye)
            if not len(self.context.sessions) or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for session in self.context.sessions:
            session.relay.close(goodbye)


def token_authority(config: Config, data_dir: Path) -> TokenAuthority:
    """Signs and checks temporary credentials with the configured key, or one kept in data_dir."""
    path = Path(config.iam.token_key) if config.iam.token_key else data_dir / "tokens" / "signing.pem"
    return TokenAuthority(load_or_make_key(path), config.cluster.identifier)


def federation_providers(config: Config, local_idp: LocalIdp | None) -> tuple[list[SamlProvider], list[dict]]:
    """The SAML and OIDC providers STS federates with: the configured ones and the local IdP."""
    account = config.cluster.account_id
    saml = [SamlProvider.from_metadata(p.name, account, p.metadata_xml()) for p in config.iam.saml_providers]
    oidc = [{"arn": f"arn:aws:iam::{account}:oidc-provider/{p.arn_suffix}", "key": p.arn_suffix,
             "params": p.params()} for p in config.iam.oidc_providers]
    if local_idp is not None:
        saml.append(SamlProvider.from_metadata(LOCAL_PROVIDER, account, local_idp.metadata()))
        key = OIDC_ISSUER.removeprefix("https://")
        oidc.append({"arn": local_idp.oidc_provider_arn, "key": key,
                     "params": {"issuer": OIDC_ISSUER, "audience": [OIDC_AUDIENCE], "jwks": local_idp.jwks()}})
    return saml, oidc


def tls_files(config: Config, data_dir: Path) -> tuple[Path, Path]:
    """The configured certificate and key, or the self-signed ones made in data_dir."""
    if config.tls.cert:
        return Path(config.tls.cert), Path(config.tls.key)
    data_dir.mkdir(parents=True, exist_ok=True)
    return self_signed_certificate(data_dir / "tls")


def tls_context(config: Config, data_dir: Path):
    """The TLS server context from the configured files, or the self-signed certificate."""
    return server_context(*tls_files(config, data_dir), min_version=config.tls.min_version,
                          client_ca=config.tls.client_ca, require_client_cert=config.tls.require_client_cert)


async def ensure_database(target: EmbeddedTarget, database: str) -> None:
    """Create the cluster database on an own backend, with Redshift's default that PUBLIC may
    create in schema public (PostgreSQL 15 no longer grants it)."""
    import asyncpg

    connect = dict(host=str(target.socket_dir), port=target.port, user=target.user, password=target.password,
                   server_settings=TRUSTED_SETTINGS)
    conn = await asyncpg.connect(database="postgres", **connect)
    try:
        if await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", database):
            return
        # From template0: template1 holds the private schema linked to an existing cluster
        # database (catalog/store.py bootstrap_databases), which a new cluster database is not.
        await conn.execute(f'CREATE DATABASE {quote_ident(database)} TEMPLATE template0')
    finally:
        await conn.close()
    conn = await asyncpg.connect(database=database, **connect)
    try:
        await conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    finally:
        await conn.close()
    log.info("created database %s", database)


def _format(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


PID_FILE = "shiftguard.pid"
# How often what notifications announce is looked at anyway (a notification can be missed only
# while no connection listens, and each new one looks), and how soon listening starts again.
MASKING_POLL_SECONDS = 30.0
VACUUM_POLL_SECONDS = 30.0
RELISTEN_SECONDS = 1.0
QUEUED_LOCKS_POLL_SECONDS = 0.5
STOP_WAIT_SECONDS = 5.0  # how long stop() waits for the background tasks it cancelled


async def _on_wake(woken: asyncio.Event, act: Callable[[], Awaitable[None]], poll_seconds: float,
                   failure: str) -> None:
    """act() each time woken is set, and every poll_seconds anyway; a failure is logged once
    until act() succeeds again."""
    failing = False
    while True:
        woken.clear()
        try:
            await act()
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the backend is away; the state stays as last read
            if not failing:
                log.error(failure, exc)
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), poll_seconds)


async def serve(config: Config, reread: Callable[[], Config] | None = None) -> int:
    """Run until SIGINT or SIGTERM, reloading on SIGHUP with reread(); the exit code."""
    proxy = Proxy(config, workers=Workers(config) if config.workers > 1 else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def reload() -> None:
        if reread is None or proxy.context is None:
            return
        try:
            proxy.reload(reread())
        except (ConfigError, OSError, ssl.SSLError) as exc:
            # The old configuration stays in force.
            print(f"shiftguard: reload refused: configuration error: {exc}", file=sys.stderr, flush=True)

    loop.add_signal_handler(signal.SIGHUP, reload)
    pid_file = Path(config.data_dir) / PID_FILE
    try:
        try:
            await proxy.start()
        except BaseException:
            await proxy.stop(grace=0)
            raise
        pid_file.write_text(f"{os.getpid()}\n")
        for address in proxy.addresses:
            print(f"listening on {_format(address)}", flush=True)
        print(f"api listening on {_format(proxy.api_address)}", flush=True)
        await stop.wait()
        log.info("shutting down")
        await proxy.stop()
        return 0
    finally:
        pid_file.unlink(missing_ok=True)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)

