"""One client connection from accept to close, and the registry of live sessions.

States and transitions (all of them live here):

    ACCEPTED        the peer's address is checked against the security groups before a byte is
                    read (refused: closed without a reply); from a trusted load balancer the
                    PROXY header is read first and its source address is checked instead;
                    connection limits -> STARTUP
    STARTUP         SSLRequest -> TLS (or 'N'), GSSENCRequest -> 'N', CancelRequest -> forward
                    the cancel and close, StartupMessage -> AUTHENTICATING
    AUTHENTICATING  MD5 challenge, password checked by the proxy, or (identity-provider plugins)
                    auth code 14 and an OIDC token checked by the proxy -> CONNECTING
    CONNECTING      backend session opened as the user's own role -> RELAYING
    RELAYING        proxy.relay.Relay pumps bytes until either side closes -> CLOSED

In transaction pooling (backend.pool_mode: transaction) CONNECTING takes a session of the
user's pool (backend/txpool.py, through PoolLender) and RELAYING gives it back at the end of
each transaction and takes one again at the client's next message (relay.Relay).

STARTUP to CONNECTING must finish within limits.auth_timeout. Any failure before RELAYING ends
the connection with one FATAL ErrorResponse carrying a real SQLSTATE.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import enum
import functools
import hmac
import itertools
import logging
import os
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from .. import __version__
from ..audit.metrics import Metrics
from ..audit.records import ActivityRecord, ConnectionRecord, QueryEnd, Redacted, audit_text, redact_statement
from ..audit.writer import AuditWriter
from ..backend.pool import SessionPool, pool_key
from ..backend.txpool import QueryWaitTimeout, TransactionPool
from ..backend.session import (BackendAddress, BackendRefused, BackendSession, BackendUnavailable,
                               open_session, send_cancel)
from ..catalog.long_names import LongNames
from ..catalog.sources import ColumnSources, DatabaseSources
from ..catalog.store import BACKEND_FAILURES, Catalog, UserRecord
from ..config import Config
from ..endpoint import ConnectionClosed, Endpoint
from ..iam import oidc
from ..iam.tokens import TokenAuthority, TokenRefused, split_prefixed
from ..policy.connectivity import SecurityGroupGate
from ..policy.identifiers import IdentifierCase, short_name
from ..policy.parameter_groups import ClusterSettings
from ..policy.statements import Plan
from ..protocol import messages as m
from ..protocol.redshift_types import RedshiftTypes
from ..protocol import proxy_header
from ..protocol import sqlstate
from ..protocol.auth import md5_response
from ..protocol.framing import (CancelRequest, GSSENCRequest, SSLRequest, StartupMessage,
                                decode_startup)
from ..relay import NoBackend, Relay
from ..workers import WORKER_BITS, Peers
from .auth import LoginThrottle, choose_method, read_password, verify_password
from .params import StartupParams, StartupRefused, sort_startup_params
from .waiting import WaitingLogins

log = logging.getLogger(__name__)

# Redshift's own version string: redshift_connector parses server_version with
# packaging.version and fails on PostgreSQL's "15.4 (Debian ...)" (reference/clients.md).
REDSHIFT_SERVER_VERSION = "8.0.2"

# Redshift's SHOW discovery commands (policy/show.py): redshift_connector's metadata API
# (get_tables, get_columns, ...) uses them from version 4, and from 5 the batch forms
# (SHOW TABLES FROM DATABASE d WHERE ...) for get_tables, get_columns, get_table_privileges.
SHOW_DISCOVERY_VERSION = "5"

# Native identity-provider federation: Redshift's AUTH_REQ_IDP request and the client's answer.
AUTH_IDP_TOKEN = 14
F_IDP_TOKEN = ord("i")

# Settings every backend session starts with. Redshift stores passwords as MD5, so clients
# that hash a new password themselves (psql's \password asks SHOW password_encryption) must
# be told md5; a SCRAM verifier would be refused.
# client_encoding: the proxy reads SQL as UTF-8 and refuses any other client_encoding
# (policy/encoding.py); a startup parameter also overrides the role's and database's defaults.
# role none: a database's owner may ALTER DATABASE ... SET role = themselves, which every
# superuser's login there would take (an admin's statements run as the owner, its tables theirs).
SESSION_SETTINGS = {"password_encryption": "md5", "client_encoding": "UTF8", "role": "none"}
# And, when sessions look like Redshift's: a backslash escapes in ordinary string literals, as
# in Redshift ('\\' is one backslash; the documentation's own examples rely on it).
REDSHIFT_SESSION_SETTINGS = {**SESSION_SETTINGS, "standard_conforming_strings": "off",
                             "escape_string_warning": "off"}


class State(enum.Enum):
    ACCEPTED = "accepted"
    STARTUP = "startup"
    AUTHENTICATING = "authenticating"
    CONNECTING = "connecting"
    RELAYING = "relaying"
    CLOSED = "closed"


class ClientFailure(Exception):
    """Ends the connection with a FATAL error to the client."""

    def __init__(self, sqlstate_code: str, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate_code
        self.hint = hint


@dataclass
class Context:
    """What every connection shares: configuration, catalog, backend, TLS, live sessions."""

    config: Config
    catalog: Catalog
    backend: BackendAddress
    tls: ssl.SSLContext | None
    classify: Callable[..., Plan]  # SQL, standard_conforming_strings, user=, database= (Classifier)
    gate: SecurityGroupGate | None = None
    # The cluster's parameter group as in force since its last reboot (catalog/cluster.py).
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    tokens: TokenAuthority | None = None
    audit: AuditWriter | None = None
    metrics: Metrics | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    sessions: "SessionRegistry" = field(default_factory=lambda: SessionRegistry())
    pool: SessionPool = field(default_factory=lambda: SessionPool(0, 0))  # idle backend sessions
    transactions: TransactionPool | None = None  # backend.pool_mode: transaction
    tasks: set = field(default_factory=set)
    # Client connections by address (authenticated or not), for the connection limits.
    connections: collections.Counter = field(default_factory=collections.Counter)
    connection_total: int = 0
    # Those that have not logged in yet, with their smaller budget (frontend/waiting.py).
    waiting: WaitingLogins = field(default_factory=WaitingLogins)
    refused: collections.Counter = field(default_factory=collections.Counter)  # by reason
    connection_limit: int = 500  # the backing PostgreSQL's max_connections: the cluster's limit
    # Set by server.py: before a session opens in a database (its masked tables are read; the
    # OIDs of its Redshift types are returned), and before SQL that needs no other session in a
    # database is sent (DROP DATABASE, ...: idle sessions there are closed).
    prepare_database: Callable[[str], Awaitable[RedshiftTypes | None]] | None = None
    vacate_database: Callable[[str], None] | None = None
    # Reads which tables of a database are masked or have RLS on again (server.py): awaited,
    # for the session's database, before a transaction that changed them is reported ended
    # (relay.py).
    protection_moved: Callable[[str], Awaitable[None]] | None = None
    # Binds a database's pending late-binding views (catalog/late_binding.py LateBinding.after_ddl):
    # awaited, briefly, before a transaction that ran DDL is reported ended (relay.py).
    late_bound: Callable[[str, bool], Awaitable[None]] | None = None
    # Where result columns come from, for clients granted Redshift's extended result metadata
    # (catalog/sources.py; server.py makes it).
    sources: ColumnSources | None = None
    # The map back from short names to long ones (catalog/long_names.py; server.py makes it).
    long_names: LongNames | None = None
    # With workers (workers.py): the others, to pass them cancels for their sessions.
    peers: Peers | None = None

    def refuse(self, reason: str) -> None:
        """Count a refused connection, by reason (here and in /metrics)."""
        self.refused[reason] += 1
        if self.metrics is not None:
            self.metrics.refusals.labels(reason=reason).inc()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_task_done)
        return task


def _task_done(task: asyncio.Task) -> None:
    """A spawned task's failure is reported here, once (and never as "Task exception was never
    retrieved" when the task is collected)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_coro().__qualname__, exc_info=task.exception())


@dataclass
class Session:
    pid: int
    key: int
    user: str
    database: str
    relay: Relay
    idle_timeout: int = 0  # seconds; 0: none


def idle_timeout(user_timeout: int | None, cluster_timeout: int) -> int:
    """SESSION TIMEOUT: the user's own when set, else the cluster's; 0 means none."""
    return user_timeout or cluster_timeout or 0


class SessionRegistry:
    """Live relayed sessions by the process id we gave the client (for cancel and shutdown).
    worker: this worker's index (workers.py), which the low WORKER_BITS of each id carry."""

    def __init__(self, worker: int | None = None) -> None:
        self._sessions: dict[int, Session] = {}
        self._worker = worker

    def new_pid(self) -> int:
        while True:
            if self._worker is None:
                pid = secrets.randbelow(2**31 - 2) + 1
            else:
                pid = (secrets.randbelow(2**(31 - WORKER_BITS) - 1) + 1) << WORKER_BITS | self._worker
            if pid not in self._sessions:
                return pid

    def add(self, session: Session) -> None:
        self._sessions[session.pid] = session

    def remove(self, session: Session) -> None:
        if self._sessions.get(session.pid) is session:
            del self._sessions[session.pid]

    def find(self, pid: int, key: int) -> Session | None:
        """The session whose pid and secret key both match (key compared in constant time)."""
        session = self._sessions.get(pid)
        if session is not None and hmac.compare_digest(session.key.to_bytes(4, "big"),
                                                       key.to_bytes(4, "big")):
            return session
        return None

    def __iter__(self):
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)


class AcceptedClient(Endpoint):
    """A client socket: starts its connection's coroutine as soon as it is accepted."""

    def __init__(self, context: Context):
        super().__init__()
        self._context = context

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self._context
        peer = self.peer_address()[0]
        trusted = context.gate.is_trusted_proxy(peer)
        if not trusted and not context.gate.admits(peer):
            # As a security group drops traffic: no reply at all.
            context.refuse("security group")
            log.info("connection from %s refused by the security groups", peer)
            if context.audit is not None:
                context.audit.connection(ConnectionRecord(
                    "refused: security group", datetime.datetime.now(datetime.timezone.utc), peer,
                    str(self.peer_address()[1]), reason="security group"))
            transport.abort()
            return
        context.spawn(Connection(self, context, via_proxy=trusted).run())


class Connection:
    def __init__(self, client: Endpoint, context: Context, via_proxy: bool = False):
        self.client = client
        self.context = context
        self.config = context.config
        self.via_proxy = via_proxy
        self.address, self.port = client.peer_address()  # the client's, once a PROXY header says so
        self._counted = False
        self.state = State.ACCEPTED
        self.session_id = str(uuid.uuid4())
        self.params: StartupParams | None = None
        self.user = ""
        self.authmethod = ""
        self.application_name = ""  # the startup packet's, then as the backend reports changes
        self._started: float | None = None
        self._logged_in = False  # 'authenticated' is in the connection log
        self._ending = ""  # why the connection ended before its session started, when it did
        self.session: Session | None = None
        self._backend: BackendSession | None = None
        self._pool_key = None  # where the backend session goes back to, if it may
        self._lender: PoolLender | None = None  # transaction pooling: the client's sessions
        self._task: asyncio.Task | None = None

    async def run(self) -> None:
        self._task = asyncio.current_task()
        try:
            async with asyncio.timeout(self.config.limits.auth_timeout):
                if not await self._admit():
                    return
                self.state = State.STARTUP
                params = self.params = await self._startup()
                if params is None:
                    return
                self.application_name = params.application_name
                self.state = State.AUTHENTICATING
                record = await self._authenticate(params)
                self.context.waiting.remove(self, self.address)  # logged in: out of that budget
                self.state = State.CONNECTING
                self._backend = await self._open_backend(params, record)
            self.state = State.RELAYING
            await self._relay(params, record, self._backend)
        except ClientFailure as exc:
            self._ending = f"{exc.sqlstate}: {exc}"
            self._fatal(exc.sqlstate, str(exc), hint=exc.hint)
        except m.ProtocolViolation as exc:
            self._ending = f"{sqlstate.PROTOCOL_VIOLATION}: {exc}"
            self._fatal(sqlstate.PROTOCOL_VIOLATION, str(exc))
        except TimeoutError:
            self._ending = "timeout"
            self._fatal(sqlstate.PROTOCOL_VIOLATION, "canceling authentication due to timeout")
        except (ConnectionClosed, ConnectionError, ssl.SSLError):
            self._ending = "the client went away"
        except BackendRefused as exc:
            fields = dict(exc.fields)
            fields["S"] = fields["V"] = "FATAL"
            self._ending = f"{fields.get('C', '')}: {fields.get('M', '')}"
            self.client.write(m.encode_error_fields(fields))
        except Exception:
            self._ending = "internal error"
            log.exception("internal error on a client connection")
            self._fatal(sqlstate.INTERNAL_ERROR, "internal error in shiftguard; see its log")
        finally:
            self.state = State.CLOSED
            self.context.waiting.remove(self, self.address)
            if self._logged_in and self._started is None:
                # Every 'authenticated' is followed by 'initiating session' or by this: a login
                # PostgreSQL refused (its connection limits) or that ended before its session.
                limit = self._ending.startswith(sqlstate.TOO_MANY_CONNECTIONS)
                self._refused("connection limit (backend)" if limit else "session not started",
                              event="connection limit" if limit else "session not started",
                              detail=self._ending or "ended before its session started")
            if self._started is not None:
                seconds = time.monotonic() - self._started
                self._log("disconnecting session", duration=int(seconds * 1_000_000))
                log.info("session ended", extra={"user": self.session.user, "database": self.session.database,
                                                 "peer": self.address, "duration_s": round(seconds, 3)})
                if self.context.metrics is not None:
                    _session_metrics(self.context.metrics, self.session.relay)
            if self._counted:
                self.context.connection_total -= 1
                self.context.connections[self.address] -= 1
                if not self.context.connections[self.address]:
                    del self.context.connections[self.address]
            if self.session is not None:
                self.context.sessions.remove(self.session)
            if self._backend is not None:  # not handed to a relay
                if self._lender is not None:
                    self._lender.release(self._backend, reusable=False)
                else:
                    self._backend.endpoint.close()
            self.client.close()

    def _fatal(self, code: str, text: str, hint: str | None = None) -> None:
        self.client.write(m.error_response("FATAL", code, text, hint=hint))

    # ---------------------------------------------------------------- the connection log

    def _log(self, event: str, reason: str = "", duration: int = 0) -> None:
        """One STL_CONNECTION_LOG record (the reason is ours, kept out of client replies)."""
        if self.context.audit is None:
            return
        params = self.params
        redshift = params.redshift if params else {}
        ssl_object = self.client.transport.get_extra_info("ssl_object") if self.client.transport else None
        cipher = ssl_object.cipher() if ssl_object is not None else None
        self.context.audit.connection(ConnectionRecord(
            event=event, recordtime=datetime.datetime.now(datetime.timezone.utc), remotehost=self.address,
            remoteport=str(self.port), pid=self.session.pid if self.session else 0,
            dbname=params.database if params else "", username=params.user if params else "",
            authmethod=self.authmethod, duration=duration,
            sslversion=ssl_object.version() if ssl_object is not None else "", sslcipher=cipher[0] if cipher else "",
            application_name=self.application_name,
            os_version=redshift.get("os_version", ""), driver_version=redshift.get("driver_version", ""),
            plugin_name=redshift.get("plugin_name", ""),
            protocol_version=params.protocol_version if params else 0,
            session_id=self.session_id, reason=reason))

    def _refused(self, reason: str, event: str | None = None, detail: str | None = None) -> None:
        """Count a refusal (reason: its label in /metrics) and log it as 'refused: event'."""
        self.context.refuse(reason)
        self._log(f"refused: {event or reason}", detail or reason)

    def _backend_away(self, user: str, step: str, exc: Exception) -> ClientFailure:
        """The catalog could not be read for a login (the backing database is down or
        restarting): one line in the log, a count, and 57P03 for the client. A traceback is
        logged only for what is no database error, which would be a bug of ours."""
        if isinstance(exc, BACKEND_FAILURES):
            reason = " ".join(str(exc).split())  # PostgreSQL's DETAIL comes on a line of its own
            log.warning("login of %r from %s refused: the backing database is unavailable (%s: %s)",
                        user, self.address, step, exc.__class__.__name__ + (f": {reason}" if reason else ""))
        else:
            log.error("login of %r from %s refused: %s failed", user, self.address, step, exc_info=exc)
        self.context.refuse("backend unavailable")
        return ClientFailure(sqlstate.CANNOT_CONNECT_NOW, "the cluster cannot accept logins now; "
                             "its backing database is unavailable", hint="Try again in a few seconds.")

    def _login_failed(self, method: str, reason: str) -> None:
        if self.context.metrics is not None:
            self.context.metrics.authentications.labels(method=method, outcome="failure").inc()
        self._log("authentication failure", reason)

    # ---------------------------------------------------------------- ACCEPTED

    async def _admit(self) -> bool:
        """The PROXY header from a trusted balancer, the security groups, the limits."""
        if self.via_proxy:
            header = await self._read_proxy_header()
            # A balancer's own health check (LOCAL) is let in; otherwise the address checked is
            # the header's source, or the balancer's own when it sent no header.
            if header is None or not header.local:
                if header is not None and header.source is not None:
                    self.address = header.source[0]
                if not self.context.gate.admits(self.address):
                    self._refused("security group")
                    log.info("connection from %s (via %s) refused by the security groups",
                             self.address, self.client.peer_address()[0])
                    self.client.abort()
                    return False
        limits, counts, waiting = self.config.limits, self.context.connections, self.context.waiting
        if limits.max_connections_per_address and counts[self.address] >= limits.max_connections_per_address:
            self._refused("address connection limit")
            raise ClientFailure(sqlstate.TOO_MANY_CONNECTIONS,
                                f"too many connections from {self.address}")
        # Not logged in yet: the smaller budget, which never keeps out one that could log in.
        refusal, evicted = waiting.add(self, self.address, limits.max_unauthenticated_connections,
                                       limits.max_unauthenticated_per_address,
                                       full=self.context.connection_total >= limits.max_client_connections)
        if refusal == "full":  # every connection has logged in: the cluster is full, in Redshift's words
            self._refused("connection limit")
            raise cluster_full_refusal(limits.max_client_connections)
        if refusal is not None:
            self._refused("address login limit")
            raise ClientFailure(sqlstate.TOO_MANY_CONNECTIONS,
                                f"too many connections from {self.address} that have not logged in yet")
        if evicted is not None:
            evicted.make_room()
        counts[self.address] += 1
        self.context.connection_total += 1
        self._counted = True
        return True

    def make_room(self) -> None:
        """Closed, before it logged in, to make room for a newer connection: the waiting budget
        is full and this is the oldest of the address that has the most waiting."""
        self._refused("login limit", detail="closed to make room: too many connections waiting to log in")
        self._fatal(sqlstate.TOO_MANY_CONNECTIONS, "too many connections are waiting to log in",
                    hint="Log in again; this connection had waited longest.")
        if self._task is not None:
            self._task.cancel()

    async def _read_proxy_header(self) -> proxy_header.ProxyHeader | None:
        """A PROXY header if the balancer sent one; None for a plain connection from it."""
        while not self.client.buffer:
            await self.client.fill()
        if not proxy_header.starts_like_proxy_header(self.client.buffer):
            return None
        while True:
            try:
                parsed = proxy_header.parse(self.client.buffer)
            except proxy_header.BadProxyHeader as exc:
                raise m.ProtocolViolation(f"invalid PROXY protocol header: {exc}") from None
            if parsed is not None:
                header, length = parsed
                del self.client.buffer[:length]
                return header
            await self.client.fill()

    # ---------------------------------------------------------------- STARTUP

    async def _startup(self) -> StartupParams | None:
        limit = self.config.limits.max_startup_size
        while True:
            try:
                raw = await self.client.read_startup(limit)
            except m.ProtocolViolation:
                if proxy_header.starts_like_proxy_header(self.client.buffer):
                    # A PROXY header from a peer that is not a trusted balancer: dropped.
                    self.context.refuse("untrusted PROXY header")
                    log.warning("PROXY protocol header from untrusted peer %s refused", self.address)
                    self.client.abort()
                    raise ConnectionClosed() from None
                raise
            packet = decode_startup(raw)
            if isinstance(packet, SSLRequest):
                await self._answer_ssl_request()
            elif isinstance(packet, GSSENCRequest):
                if self.client.tls:
                    raise m.ProtocolViolation("GSSENCRequest after TLS was established")
                self.client.write(b"N")
            elif isinstance(packet, CancelRequest):
                await self._forward_cancel(packet)
                return None
            else:
                return self._accept_startup(packet)

    async def _answer_ssl_request(self) -> None:
        if self.client.tls:
            raise m.ProtocolViolation("SSLRequest after TLS was established")
        if self.context.tls is None:
            self.client.write(b"N")
            return
        if self.client.buffer:
            # Bytes sent before the handshake would be trusted as if encrypted (CVE-2021-23214).
            raise m.ProtocolViolation("received unencrypted data after SSL request")
        self.client.write(b"S")
        await self.client.start_tls(self.context.tls, server_side=True,
                                    timeout=self.config.limits.auth_timeout)

    def _accept_startup(self, packet: StartupMessage) -> StartupParams:
        try:
            params = sort_startup_params(packet.params)
        except StartupRefused as exc:
            code = (sqlstate.INVALID_AUTHORIZATION_SPECIFICATION if "user name" in str(exc)
                    else sqlstate.FEATURE_NOT_SUPPORTED)
            raise ClientFailure(code, str(exc), hint=exc.hint) from None
        if packet.minor > 0 or params.protocol_options:
            self.client.write(m.negotiate_protocol_version(0, params.protocol_options))
        if params.uses_identity_provider and not params.database:
            params.database = self.config.cluster.database
        if (self.config.tls.require_ssl or self.context.cluster.require_ssl) and not self.client.tls:
            raise ClientFailure(
                sqlstate.INVALID_AUTHORIZATION_SPECIFICATION,
                f'connection for user "{params.user}" requires SSL (require_ssl is on)',
                hint="connect with sslmode=require")
        return params

    async def _forward_cancel(self, request: CancelRequest) -> None:
        peers = self.context.peers
        if peers is not None and not peers.mine(request.pid):
            await peers.forward(request.pid, m.cancel_request(request.pid, request.key))
        else:
            await cancel_session(self.context, request.pid, request.key)

    # ---------------------------------------------------------------- AUTHENTICATING

    async def _authenticate(self, params: StartupParams) -> UserRecord:
        if params.uses_identity_provider:
            return await self._authenticate_idp(params)
        prefixed = split_prefixed(params.user)
        if prefixed is not None and self.context.tokens is not None:
            return await self._authenticate_token(params, *prefixed)
        try:
            # A name of 64 to 127 bytes is its short name's role (policy/identifiers.py); the
            # client salts its MD5 with the name it wrote, as CREATE USER stored it.
            record = await self.context.catalog.login_record(short_name(params.user))
        except Exception as exc:
            raise self._backend_away(params.user, "user lookup", exc) from None
        method = choose_method(record, redshift_driver=params.is_redshift_driver, tls=self.client.tls,
                               scram=self.config.auth.scram)
        proved = await verify_password(self.client, params.user, record, method)
        address = self.address
        throttle = self.context.throttle
        reason = None
        if throttle.locked(params.user, address):
            reason = "too many failed logins (cooling down)"
        elif record is None:
            reason = "no such user"
        elif record.password_disabled:
            reason = "password disabled"
        elif not proved:
            reason = f"wrong password ({method.value})"
        elif record.password_expired:
            reason = "password expired (VALID UNTIL)"
        self.authmethod = "password"
        if reason is not None:
            throttle.failed(params.user, address)
            # The reason stays in our logs; the client gets the same answer for every one.
            log.info("login refused: user %r from %s: %s", params.user, address, reason)
            self._login_failed(method.value, reason)
            raise ClientFailure(sqlstate.INVALID_PASSWORD,
                                f'password authentication failed for user "{params.user}"')
        throttle.succeeded(params.user, address)
        self._authenticated(method.value)
        return record

    def _authenticated(self, method: str) -> None:
        if self.context.metrics is not None:
            self.context.metrics.authentications.labels(method=method, outcome="success").inc()
        self._log("authenticated")
        self._logged_in = True

    async def _authenticate_token(self, params: StartupParams, prefix: str, user: str) -> UserRecord:
        """IAM:alice / IAMA:alice / IAMR:role with a DbPassword from the API: over TLS the token
        itself is asked for (cleartext) and verified; otherwise MD5, checked against the minted
        tokens' md5(token || prefixed name). The session's user: the name after the prefix, or
        for GetClusterCredentialsWithIAM's tokens the prefixed name itself ("IAMR:role")."""
        catalog = self.context.catalog
        try:
            live = await catalog.live_tokens(params.user, params.database)
        except Exception as exc:
            raise self._backend_away(params.user, "token lookup", exc) from None
        chosen, reason = None, "no live token matches"
        if self.client.tls:
            self.client.write(m.auth_cleartext())
            token = (await read_password(self.client)).decode("utf-8", "replace")
            try:
                claims = self.context.tokens.verify(token, params.user, params.database)
                chosen = next((t for t in live if t["token_id"] == claims.token_id), None)
                if chosen is None:
                    reason = "token revoked or unknown"
            except TokenRefused as exc:
                reason = str(exc)
        else:
            salt = os.urandom(4)
            self.client.write(m.auth_md5(salt))
            response = await read_password(self.client)
            for token in live:  # every candidate is compared, in constant time each
                if hmac.compare_digest(md5_response("md5" + token["md5"], salt), response):
                    chosen = token
        address, throttle = self.address, self.context.throttle
        if chosen is not None and throttle.locked(params.user, address):
            chosen, reason = None, "too many failed logins (cooling down)"
        if chosen is not None:
            # GetClusterCredentialsWithIAM's users are "IAMR:role" and "IAM:user" themselves; an
            # IAMR token recorded before login_as existed is one of them too.
            user = chosen["login_as"] or (params.user if prefix == "IAMR" else user)
        if chosen is not None:
            user = await self._role_of(user)
        if chosen is not None and not await catalog.prepare_iam_login(
                user, prefix in ("IAMA", "IAMR"), chosen["groups"], chosen["roles"]):
            chosen, reason = None, "no such user, and the credentials did not ask to create it"
        record = await catalog.login_record(user) if chosen is not None else None
        self.authmethod = "IAM AssumeUser"
        if record is None:
            throttle.failed(params.user, address)
            log.info("login refused: user %r from %s: %s", params.user, address, reason)
            self._login_failed("IAM", reason)
            raise ClientFailure(sqlstate.INVALID_PASSWORD, f'password authentication failed for user "{params.user}"')
        throttle.succeeded(params.user, address)
        self._authenticated("IAM")
        return record

    async def _authenticate_idp(self, params: StartupParams) -> UserRecord:
        """Native identity-provider federation (reference/redshift-iam.md §5): auth code 14, the
        client answers 'i' with an OIDC token (redshift_connector without a NUL, JDBC with one);
        the user is namespace:name from the token, created on its first login, and its roles of
        that namespace become the token's groups."""
        self.client.write(m.authentication(AUTH_IDP_TOKEN))
        kind, body = await self.client.read_message(self.config.limits.max_startup_size)
        if kind != F_IDP_TOKEN:
            raise m.ProtocolViolation(f"expected an identity provider token, got message type {chr(kind)!r}")
        if body.endswith(b"\0"):
            body = body[:-1]
        claimed = params.user
        provider_name = params.redshift.get("provider_name")
        self.authmethod = provider_name or "identity provider"
        catalog, identity, reason = self.context.catalog, None, None
        try:
            providers = await catalog.identity_providers()
        except Exception as exc:
            raise self._backend_away(params.user, "identity provider lookup", exc) from None
        try:
            token = body.decode("utf-8")
            provider = oidc.choose_provider(token, providers, provider_name)
            self.authmethod = provider["name"]
            identity = oidc.verify(token, provider)
        except UnicodeDecodeError:
            reason = "the token is not UTF-8"
        except oidc.OidcRefused as exc:
            reason = str(exc)
        address, throttle = self.address, self.context.throttle
        key = identity.user if identity is not None else f"(identity provider {self.authmethod})"
        if identity is not None and throttle.locked(key, address):
            identity, reason = None, "too many failed logins (cooling down)"
        record = None
        if identity is not None:
            try:
                role = await self._role_of(identity.user)
                roles = await catalog.prepare_idp_login(identity.provider, role, identity.roles)
            except Exception as exc:
                raise self._backend_away(identity.user, "identity provider login", exc) from None
            record = await catalog.login_record(role)
            params.user = identity.user  # the connection log names the token's user from here on
            if record is None:
                reason = "the user could not be created"
            elif record.password_expired:
                record, reason = None, "VALID UNTIL has passed"
        if record is None:
            throttle.failed(key, address)
            # The reason stays in our logs (never the token); the client gets the same answer.
            log.info("login refused: identity provider %s from %s: %s", self.authmethod, address, reason)
            self._login_failed("identity provider", reason)
            raise ClientFailure(sqlstate.INVALID_PASSWORD, f'password authentication failed for user "{claimed}"')
        throttle.succeeded(key, address)
        log.info("identity provider %s: %s logged in with roles %s", identity.provider, identity.user,
                 ", ".join(roles) or "(none)")
        self._authenticated("identity provider")
        return record

    async def _role_of(self, user: str) -> str:
        """The role of a user name of up to 127 bytes that a token names: its short name
        (policy/identifiers.py), the long one recorded first, so that the catalogs and the
        audit logs name the user whole."""
        role = short_name(user)
        if role != user and self.context.long_names is not None:
            recorded = self.context.long_names.remember(frozenset((user,)))
            if recorded is not None:
                await recorded
        return role

    # ---------------------------------------------------------------- CONNECTING

    async def _open_backend(self, params: StartupParams, record: UserRecord) -> BackendSession:
        """A session as the user's own role (for IAM:alice, the role alice): one a client of
        the same role left idle (backend/pool.py), or a new one."""
        settings = REDSHIFT_SESSION_SETTINGS if self.config.server_version_mode == "redshift" else SESSION_SETTINGS
        given = params.sets()
        cluster = {k: v for k, v in self.context.cluster.session_settings().items() if k not in given}
        startup = {**cluster, **params.forwarded, **settings}
        role = (record.name, record.userid)
        pool = self.context.pool
        transactions = self.context.transactions
        if transactions is not None and record.connection_limit is None:
            # Transaction pooling (a user with a CONNECTION LIMIT keeps a session of its own, so
            # that the limit counts its connections as before).
            key = pool_key((*role, record.superuser, record.settings), params.database, startup)

            async def reopen() -> BackendSession:
                """A session opened for the client after its login starts, as one opened at a
                login, with the SET defaults ALTER USER set: any the role set itself (ALTER ROLE
                self SET from a DO block) are put back first (Catalog.login_record)."""
                await self.context.catalog.login_record(record.name)
                return await self._new_backend(record.name, params.database, startup)
            self._lender = PoolLender(self, transactions, key,
                                      lambda: self._new_backend(record.name, params.database, startup), reopen)
            return await self._lender.take()
        if record.connection_limit is not None:
            # Sessions kept from before the user had a limit would count against it: they go,
            # and a login refused for the limit is tried again while their processes exit.
            if pool.forget(lambda key: key[0][:2] == role) or self.context.peers is not None:
                return await self._new_backend(record.name, params.database, startup,
                                               retry=self._forget_kept(role))
        elif pool.size:
            # A session starts with the role's attributes and SET defaults as they are then: a
            # kept one serves only a client for whom they are the same. The role's OID is in
            # the key too: a user dropped and created again is another role.
            self._pool_key = pool_key((*role, record.superuser, record.settings), params.database, startup)
            kept = pool.take(self._pool_key)
            if kept is not None:
                if self.context.metrics is not None:
                    self.context.metrics.backend_reused.inc()
                return kept
        return await self._new_backend(record.name, params.database, startup)

    def _forget_kept(self, role: tuple[str, int]) -> Callable[[], int]:
        """The retry of a login refused for the user's CONNECTION LIMIT: the sessions kept for
        role go (how many), here and, at the first refusal, in the other workers (counted as
        one: theirs may be going)."""
        pool, peers = self.context.pool, self.context.peers
        asked = False

        def forget() -> int:
            nonlocal asked
            ended = pool.forget(lambda key: key[0][:2] == role)
            if peers is not None and not asked:
                asked = True
                peers.forget_role(role[1])
                ended += 1
            return ended
        return forget

    async def _new_backend(self, role: str, database: str, startup: dict[str, str],
                           retry: Callable[[], int] | None = None) -> BackendSession:
        """Log in as role. retry: for a refusal for too many connections, run it (it ends kept
        sessions, returning how many) and try again (for up to a second).

        At the cluster's limit (PostgreSQL's max_connections), the sessions kept idle for other
        clients (backend/pool.py) go first, and the login is tried again while their processes
        exit; if no slot comes free, the client gets Redshift's refusal (cluster_full_refusal)."""
        started = time.monotonic()
        waits, freeing = 20, retry is not None
        while True:
            try:
                session = await open_session(self.context.backend, role, self.context.catalog.backend_password(role),
                                             database, startup)
                break
            except BackendRefused as exc:
                if exc.fields.get("C") != sqlstate.TOO_MANY_CONNECTIONS:
                    raise
                full = cluster_full(exc.fields)
                freed = retry() if retry is not None else 0
                if full:
                    freed += self.context.pool.forget(lambda key: True)
                    if self.context.transactions is not None:
                        freed += self.context.transactions.prune(0)
                freeing = freeing or bool(freed)
                if freeing and waits:
                    waits -= 1
                    await asyncio.sleep(0.05)
                    continue
                if full:
                    log.info("login of %r refused: the backing PostgreSQL is at max_connections", role)
                    self.context.refuse("cluster connection limit")
                    raise cluster_full_refusal(self.context.connection_limit) from None
                raise
            except BackendUnavailable as exc:
                log.error("backend session for %s failed: %s", role, exc)
                raise ClientFailure(sqlstate.CONNECTION_FAILURE,
                                    "could not open a session on the backing PostgreSQL") from None
        if self.context.metrics is not None:
            self.context.metrics.backend_connect.observe(time.monotonic() - started)
        return session

    # ---------------------------------------------------------------- RELAYING

    def _parameter_changed(self, name: str, value: str) -> None:
        """ParameterStatus from the backend: Redshift logs a changed application_name."""
        if name == "application_name" and value != self.application_name:
            self.application_name = value
            self._log("set application_name")

    def _statement_log(self, params: StartupParams, record: UserRecord, pid: int) -> "SessionStatements | None":
        audit = self.context.audit
        if audit is None or not (self.config.audit.user_activity or self.context.cluster.user_activity):
            return None
        # A user of a long name is logged by it (its role has the short one: policy/identifiers.py).
        name = params.user if short_name(params.user) == record.name else record.name
        return SessionStatements(audit, self.session_id, params.database, record, pid,
                                 self.config.audit.max_statement_length, name)

    async def _relay(self, params: StartupParams, record: UserRecord, backend: BackendSession) -> None:
        registry = self.context.sessions
        pid, key = registry.new_pid(), secrets.randbits(32)
        greeting = [m.auth_ok()]
        for name, value in client_parameters(backend.parameters, self.config.server_version_mode,
                                             record.superuser, self.session_id).items():
            greeting.append(m.parameter_status(name, value))
        protocol = params.granted_protocol
        if protocol is not None:
            # Redshift's answer to client_protocol_version: the protocol the results come in
            # (frontend/params.py); without it redshift_connector falls back to 0.
            greeting.append(m.parameter_status("server_protocol_version", str(protocol)))
        greeting.append(m.backend_key_data(pid, key))
        greeting.append(m.ready_for_query(m.TX_IDLE))
        types = None
        if self.context.prepare_database is not None:
            types = await self.context.prepare_database(params.database)
        if types is not None and not params.is_redshift_driver:
            types = _variant(types, shown=False)  # protocol/redshift_types.py says why
        if protocol == 2:
            types = _variant(types or _NO_TYPES, binary=True)  # Redshift's binary forms (redshift_types.py)
        known = self.context.sources
        sources = DatabaseSources(known, params.database) if known is not None and protocol else None
        # Plans are for this session's user (S3 tickets are bound to it; policy/s3.py) and database.
        classify = functools.partial(self.context.classify, user=record.name, database=params.database)
        moved = self.context.protection_moved
        case_sensitive = self.context.cluster.case_sensitive_identifier
        relay = Relay(self.client, backend, classify, self.config.limits.max_message_size,
                      on_client_gone=lambda held: self.context.spawn(_cancel(self.context.backend, held)),
                      statement_log=self._statement_log(params, record, pid),
                      on_parameter=self._parameter_changed if self.context.audit is not None else None,
                      keep_backend=self._pool_key is not None,
                      standard_strings=backend.parameters.get("standard_conforming_strings", "on") == "on",
                      protection_moved=None if moved is None else functools.partial(moved, params.database),
                      on_vacate_database=self.context.vacate_database, lender=self._lender,
                      identifier_case=IdentifierCase(case_sensitive, case_sensitive), redshift_types=types,
                      audit_caught_up=self.context.audit.caught_up if self.context.audit is not None else None,
                      sources=sources,
                      on_alter=None if known is None else functools.partial(known.forget, params.database),
                      remember_names=self.context.long_names.remember if self.context.long_names else None,
                      recancel=lambda: self.context.spawn(cancel_session(self.context, pid, key)),
                      late_bound=None if self.context.late_bound is None else functools.partial(
                          self.context.late_bound, params.database))
        if self._lender is not None:
            self._backend = None  # the relay gives it back between transactions
        self.session = Session(pid, key, record.name, params.database, relay,
                               idle_timeout(record.session_timeout, self.config.cluster.session_timeout))
        registry.add(self.session)
        self._started = time.monotonic()
        self._log("initiating session")
        self.client.write(b"".join(greeting))
        del greeting  # (this frame lives as long as the session)
        relay.start()
        await relay.finished()
        if relay.backend_kept:
            kept, self._backend = backend, None
            self.context.spawn(self.context.pool.give(self._pool_key, kept))


# Each database's RedshiftTypes as a kind of client sees them (OIDs hidden from clients other than
# Redshift's drivers, binary forms at protocol 2), made once rather than per session:
# (its id, the changes) -> (it, the copy).
_TYPE_VARIANTS: dict[tuple, tuple[RedshiftTypes, RedshiftTypes]] = {}
_NO_TYPES = RedshiftTypes({})


def _variant(types: RedshiftTypes, **changes) -> RedshiftTypes:
    key = (id(types), *sorted(changes.items()))
    cached = _TYPE_VARIANTS.get(key)
    if cached is None or cached[0] is not types:
        if len(_TYPE_VARIANTS) > 1000:  # databases' types read again and again: start over
            _TYPE_VARIANTS.clear()
        cached = _TYPE_VARIANTS[key] = (types, replace(types, **changes))
    return cached[1]


class PoolLender:
    """A client's backend sessions in transaction pooling (relay.Lender over
    backend/txpool.py): its role's, under its pool key."""

    def __init__(self, connection: Connection, pool: TransactionPool, key, open_session, reopen=None):
        """open_session: a session for the login; reopen: one for a later transaction (default:
        open_session)."""
        self._connection = connection
        self._pool = pool
        self._key = key
        self._open = open_session
        self._reopen = reopen or open_session
        self._waiter = None  # while the client waits in the queue
        self._task = None    # while a session is opened for it

    async def take(self) -> BackendSession:
        """A session for the login: its parameters greet the client, as it reported them when it
        opened (a session another client used is restored to them before this client's first
        statement runs there: relay.Relay). At the cap the login waits too; past
        query_wait_timeout it is refused."""
        try:
            return await self._pool.acquire(self._key, self._open, self._connection.config.limits.query_wait_timeout)
        except QueryWaitTimeout:
            raise self._wait_refusal() from None

    def lend(self, settings: dict[str, bytes], give, fresh: bool = False) -> None:
        """relay.Lender.lend: give(a session), at once when an idle one came free, else once one
        is opened (_prepare); or give(NoBackend). The relay makes it this client's
        (txpool.restore_ahead)."""
        def handed(session: BackendSession | None) -> None:
            self._waiter = None
            if session is not None and fresh:
                self._pool.replace(session)
                session = None
            if session is not None:
                give(session)
            else:
                self._task = asyncio.create_task(self._prepare(give))

        def expired() -> None:
            self._waiter = None
            give(NoBackend(_fatal_reply(self._wait_refusal())))

        self._waiter = self._pool.wait(self._key, handed, self._connection.config.limits.query_wait_timeout,
                                       expired, holder=self)

    def stop(self) -> None:
        """The client went while it waited."""
        if self._waiter is not None:
            self._pool.stop_waiting(self._key, self._waiter)
            self._waiter = None
        if self._task is not None:
            self._task.cancel()

    def release(self, session: BackendSession, reusable: bool) -> None:
        self._pool.release(self._key, session, reusable)

    async def _prepare(self, give) -> None:
        try:
            session = await self._pool.open(self._key, self._reopen)
        except (ClientFailure, BackendRefused) as exc:
            give(NoBackend(_fatal_reply(exc)))
            return
        except Exception:
            log.exception("internal error getting a backend session")
            give(NoBackend(m.error_response("FATAL", sqlstate.INTERNAL_ERROR,
                                            "internal error in shiftguard; see its log")))
            return
        finally:
            self._task = None
        give(session)

    def _wait_refusal(self) -> ClientFailure:
        """PgBouncer's query_wait_timeout, in its words; 53300 (too_many_connections: the
        sessions the pool may open are all in use) rather than PgBouncer's 08P01."""
        config = self._connection.config
        log.info("query_wait_timeout: no backend session for %r came free", self._key[0][0])
        if self._connection.context.metrics is not None:
            self._connection.context.metrics.query_wait_timeouts.inc()
        return ClientFailure(
            sqlstate.TOO_MANY_CONNECTIONS,
            f"query_wait_timeout: all {config.backend.max_sessions_per_pool} backend sessions of this user "
            f"stayed busy for {config.limits.query_wait_timeout:g} s",
            hint="Try again; shorten transactions, or raise backend.max_sessions_per_pool or "
                 "limits.query_wait_timeout.")


def _fatal_reply(exc: ClientFailure | BackendRefused) -> bytes:
    """The FATAL ErrorResponse a client in transaction pooling gets when no session can be had."""
    if isinstance(exc, BackendRefused):
        return m.encode_error_fields({**exc.fields, "S": "FATAL", "V": "FATAL"})
    return m.error_response("FATAL", exc.sqlstate, str(exc), hint=exc.hint)


# Transaction numbers for the activity log, unique within this process and increasing across
# restarts (they start from the clock).
_TRANSACTIONS = itertools.count(int(time.time() * 1000))


class SessionStatements:
    """One session's statements for the user activity log (passwords redacted), stl_query and
    sys_query_history: the relay's StatementLog."""

    def __init__(self, audit: AuditWriter, session_id: str, database: str, user: UserRecord, pid: int,
                 max_length: int = 65_536, name: str | None = None):
        self._audit = audit
        self._max_length = max_length  # characters of a statement that are logged
        self._session_id = session_id
        self._database = database
        self._user = user
        self._name = name or user.name  # as the user logs in
        self._pid = pid
        self._seq = 0
        self._xid = 0
        self._redacted: dict[int, Redacted] = {}  # running statements that had secrets taken out

    def started(self, sql: bytes, in_transaction: bool, standard_strings: bool) -> int:
        """xid: shiftguard's number for the transaction (the statements of one transaction block
        share it), not PostgreSQL's, which it assigns only when a transaction first writes,
        after the record must be written."""
        self._seq += 1
        if not in_transaction or not self._xid:
            self._xid = next(_TRANSACTIONS)
        redacted = redact_statement(sql.decode("utf-8", "replace"), standard_strings)
        if redacted.holds_secrets:
            self._redacted[self._seq] = redacted
        # The client's text, as the audit tables take it (records.audit_text: no NUL, cut to
        # audit.max_statement_length), so that it cannot fail a batch holding others' records.
        self._audit.activity(ActivityRecord(
            datetime.datetime.now(datetime.timezone.utc), self._database, self._name, self._pid,
            self._user.userid, self._xid, audit_text(redacted.text, self._max_length),
            session_id=self._session_id, seq=self._seq))
        return self._seq

    def ended(self, handles: list[int], error: tuple[str, str] | None) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        # The interval's first error, for each of its statements: not what it may quote of any
        # of their secrets (a syntax error quotes the text near it).
        for redacted in filter(None, (self._redacted.pop(seq, None) for seq in handles)):
            if error is not None:
                error = error[0], redacted.error_message(error[1])
        for seq in handles:
            self._audit.query_ended(QueryEnd.of(self._session_id, seq, now, error))


def cluster_full(fields: dict[str, str]) -> bool:
    """Is this login refusal PostgreSQL's at max_connections ("sorry, too many clients
    already", "remaining connection slots are reserved for ... superuser ...": the routines
    InitProcess and InitPostgres), not a role's or a database's CONNECTION LIMIT? The routine
    names are not translated; the messages are the fallback."""
    if fields.get("C") != sqlstate.TOO_MANY_CONNECTIONS:
        return False
    if fields.get("R"):
        return fields["R"] in ("InitProcess", "InitPostgres")
    message = fields.get("M", "")
    return "too many clients" in message or "remaining connection slots" in message


def cluster_full_refusal(limit: int) -> ClientFailure:
    """Redshift's refusal at the cluster's connection limit (500 on most node types), one
    wording for both of PostgreSQL's: 'connection limit "500" exceeded for non-bootstrap users'
    (as drivers report it from Redshift). UNVERIFIED: the SQLSTATE (53300, PostgreSQL's
    too_many_connections, which Redshift's PostgreSQL 8 base also uses for its limits) and the
    severity (FATAL, as every refused login). The bootstrap user is the admin, which like every
    superuser still gets one of PostgreSQL's reserved slots (superuser_reserved_connections)."""
    return ClientFailure(sqlstate.TOO_MANY_CONNECTIONS, f'connection limit "{limit}" exceeded for non-bootstrap users')


async def cancel_session(context: Context, pid: int, key: int) -> None:
    """A CancelRequest for a session of this process: what it runs on its backend is cancelled."""
    session = context.sessions.find(pid, key)
    if session is None:
        return  # as PostgreSQL: a wrong key does nothing and says nothing
    await session.relay.started(context.config.limits.query_wait_timeout)
    backend = session.relay.cancel_target()
    if backend is None:
        return  # transaction pooling: the client holds no backend session, so runs nothing
    read = True
    try:
        read = await send_cancel(context.backend, backend.pid, backend.key)
    except BackendUnavailable as exc:
        log.warning("could not forward a cancel request: %s", exc)
    finally:
        session.relay.cancel_done(read)


async def _cancel(address: BackendAddress, backend: BackendSession) -> None:
    """Cancel what a session runs, as its client went away; if PostgreSQL cannot be reached,
    there is nothing to cancel."""
    try:
        await send_cancel(address, backend.pid, backend.key)
    except BackendUnavailable as exc:
        log.info("could not cancel the query of a client that went away: %s", exc)


def _session_metrics(metrics, relay: Relay) -> None:
    metrics.statements.inc(relay.statements)
    metrics.bytes.labels(direction="client to backend").inc(relay.bytes_in)
    metrics.bytes.labels(direction="backend to client").inc(relay.bytes_out)
    for code in relay.denials:
        metrics.denials.labels(sqlstate=code).inc()


def client_parameters(backend: dict[str, str], mode: str, superuser: bool, session_id: str) -> dict[str, str]:
    """The ParameterStatus set a client sees: Redshift's (reference/redshift-iam.md §4) on top
    of the backend's own, or the backend's unchanged in `backend` mode."""
    if mode == "backend":
        return dict(backend)
    params = dict(backend)
    params.update({
        "server_version": REDSHIFT_SERVER_VERSION,
        "server_encoding": "UNICODE",
        "is_superuser": "on" if superuser else "off",
        "padb_version": "1.0.0",
        "padb_revision": f"shiftguard-{__version__}",
        "max_numeric_precision": "38",
        "max_varchar_size": "65535",
        # on: every database of the cluster can be listed from any (catalog/show.sql show_remote),
        # so redshift_connector's metadata API takes a catalog when database_metadata_current_db_only
        # is off, as on an RA3 cluster
        "datashare_enabled": "on",
        "case_sensitive": "on",
        "session_id": session_id,
        "show_discovery": SHOW_DISCOVERY_VERSION,
    })
    params.pop("server_version_num", None)
    return params
