"""Reaching PostgreSQL: where the backend is, and opening a session that logs in as a given role.

A session logs in as the user's own mapped role (DESIGN principle 1), with that role's backend
password; this module speaks the startup and authentication exchange (trust, cleartext, MD5,
SCRAM-SHA-256 through scramp) and hands back a connected Endpoint ready for the relay.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import scramp

from ..endpoint import ConnectionClosed, Endpoint
from ..protocol import messages as m
from ..protocol.framing import DEFAULT_MAX_MESSAGE

_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class BackendUnavailable(Exception):
    """PostgreSQL could not be reached or did not speak the protocol."""


class BackendRefused(Exception):
    """PostgreSQL answered the login with an ErrorResponse; fields are passed to the client."""

    def __init__(self, fields: dict[str, str]):
        super().__init__(fields.get("M", "backend refused the connection"))
        self.fields = fields


@dataclass(frozen=True)
class BackendAddress:
    """Where PostgreSQL listens: a Unix socket directory, or host and port (with TLS options)."""

    host: str | None = None
    socket_dir: Path | None = None
    port: int = 5432
    sslmode: str = "disable"
    sslrootcert: str | None = None
    connect_timeout: float = 10.0

    @property
    def socket_path(self) -> Path | None:
        return self.socket_dir / f".s.PGSQL.{self.port}" if self.socket_dir else None

    def describe(self) -> str:
        return str(self.socket_path) if self.socket_dir else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Dsn:
    address: BackendAddress
    user: str
    password: str | None
    database: str
    options: dict[str, str] = field(default_factory=dict)


def parse_dsn(dsn: str) -> Dsn:
    """postgresql://user:password@host:port/database?sslmode=...&host=/socket/dir"""
    url = urllib.parse.urlsplit(dsn)
    if url.scheme not in ("postgres", "postgresql"):
        raise ValueError("backend DSN must be a postgresql:// URL")
    query = dict(urllib.parse.parse_qsl(url.query))
    host = urllib.parse.unquote(url.hostname or "") or query.pop("host", None) or "localhost"
    port = url.port or int(query.pop("port", 5432))
    sslmode = query.pop("sslmode", "prefer")
    if sslmode not in _SSL_MODES:
        raise ValueError(f"unknown sslmode {sslmode!r}")
    socket_dir = Path(host) if host.startswith("/") else None
    address = BackendAddress(
        host=None if socket_dir else host, socket_dir=socket_dir, port=port,
        sslmode="disable" if socket_dir else sslmode, sslrootcert=query.pop("sslrootcert", None),
        connect_timeout=float(query.pop("connect_timeout", 10)))
    user = urllib.parse.unquote(url.username or "") or "postgres"
    password = urllib.parse.unquote(url.password) if url.password is not None else None
    database = urllib.parse.unquote(url.path.lstrip("/")) or user
    return Dsn(address, user, password, database, query)


@dataclass
class BackendSession:
    endpoint: Endpoint
    parameters: dict[str, str]
    pid: int
    key: int
    # Transaction pooling: the statements shiftguard prepared in it under its own names, for
    # whichever client of the role lands on it, oldest first (relay.Relay; the values are unused).
    prepared: dict[bytes, None] = field(default_factory=dict)
    # And the settings a client's SET left in it (name -> the SET statement; relay.Relay).
    settings: dict[str, bytes] = field(default_factory=dict)
    # And the client (its relay) whose unnamed statement it holds, if any.
    unnamed_owner: object = None
    # And the parameters PostgreSQL last reported in it, to whichever client (relay.Relay).
    reported: dict[str, str] = field(default_factory=dict)
    # And the client (its relay.Lender) it last served, None while it served none: a session
    # that served another client is reset before it serves this one (txpool.restore_ahead).
    holder: object = None


async def connect(address: BackendAddress, sock: socket.socket | None = None) -> Endpoint:
    """A raw connection to PostgreSQL, TLS negotiated per sslmode; or over sock, a socket
    already connected (the Data API's in-process connection to the proxy's own frontend)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(address.connect_timeout):
            if sock is not None:
                _, endpoint = await loop.create_connection(Endpoint, sock=sock)
            elif address.socket_dir is not None:
                _, endpoint = await loop.create_unix_connection(Endpoint, str(address.socket_path))
            else:
                _, endpoint = await loop.create_connection(Endpoint, address.host, address.port)
                endpoint.transport.get_extra_info("socket").setsockopt(6, 1, 1)  # TCP_NODELAY
            if address.socket_dir is None and address.sslmode not in ("disable", "allow"):
                await _negotiate_tls(endpoint, address)
    except (OSError, asyncio.TimeoutError) as exc:
        raise BackendUnavailable(f"cannot reach PostgreSQL at {address.describe()}: {exc}") from None
    return endpoint


async def _negotiate_tls(endpoint: Endpoint, address: BackendAddress) -> None:
    endpoint.write(m.ssl_request())
    while not endpoint.buffer:
        await endpoint.fill()
    answer = endpoint.buffer[:1]
    del endpoint.buffer[:1]
    if answer == b"S":
        await endpoint.start_tls(_client_context(address.sslmode, address.sslrootcert), server_side=False,
                                 server_hostname=address.host)
    elif address.sslmode != "prefer":
        raise BackendUnavailable(f"PostgreSQL at {address.describe()} does not accept TLS "
                                 f"(sslmode={address.sslmode})")


@functools.lru_cache(maxsize=8)
def _client_context(sslmode: str, sslrootcert: str | None) -> ssl.SSLContext:
    """Made once per mode and CA file: loading the trust store takes tens of milliseconds, more
    than the rest of a login (the Data API logs in once per statement)."""
    context = ssl.create_default_context(cafile=sslrootcert)
    if sslmode in ("prefer", "require"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif sslmode == "verify-ca":
        context.check_hostname = False
    return context


async def open_session(address: BackendAddress, user: str, password: str | None, database: str,
                       params: dict[str, str], sock: socket.socket | None = None) -> BackendSession:
    """Log in as user to database with the given extra startup parameters (over sock: see
    connect)."""
    endpoint = await connect(address, sock)
    try:
        async with asyncio.timeout(address.connect_timeout * 3):
            return await _login(endpoint, user, password, database, params)
    except BaseException as exc:
        endpoint.abort()
        if isinstance(exc, ConnectionClosed):
            raise BackendUnavailable("PostgreSQL closed the connection during login") from None
        if isinstance(exc, asyncio.TimeoutError):
            raise BackendUnavailable("PostgreSQL did not complete the login in time") from None
        if isinstance(exc, (m.ProtocolViolation, scramp.ScramException)):
            raise BackendUnavailable(f"PostgreSQL login failed: {exc}") from None
        raise


async def _login(endpoint: Endpoint, user: str, password: str | None, database: str,
                 params: dict[str, str]) -> BackendSession:
    endpoint.write(m.startup_message({"user": user, "database": database, **params}))
    scram: scramp.ScramClient | None = None
    parameters: dict[str, str] = {}
    pid = key = 0
    while True:
        kind, body = await endpoint.read_message(DEFAULT_MAX_MESSAGE)
        if kind == m.B_ERROR_RESPONSE:
            raise BackendRefused(m.decode_fields(body))
        if kind == m.B_AUTHENTICATION:
            code, data = m.decode_authentication(body)
            if code == m.AUTH_OK:
                continue
            if password is None:
                raise BackendUnavailable(f"PostgreSQL asks role {user!r} for a password and none is known")
            if code == m.AUTH_CLEARTEXT:
                endpoint.write(m.password_message(password.encode() + b"\0"))
            elif code == m.AUTH_MD5:
                inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
                endpoint.write(m.password_message(b"md5" + hashlib.md5(inner + data).hexdigest().encode() + b"\0"))
            elif code == m.AUTH_SASL:
                mechanisms = m.decode_sasl_mechanisms(data)
                if "SCRAM-SHA-256" not in mechanisms:
                    raise BackendUnavailable(f"PostgreSQL offers no supported SASL mechanism: {mechanisms}")
                scram = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
                endpoint.write(m.sasl_initial_response("SCRAM-SHA-256", scram.get_client_first().encode()))
            elif code == m.AUTH_SASL_CONTINUE and scram is not None:
                scram.set_server_first(data.decode())
                endpoint.write(m.password_message(scram.get_client_final().encode()))
            elif code == m.AUTH_SASL_FINAL and scram is not None:
                scram.set_server_final(data.decode())
            else:
                raise BackendUnavailable(f"PostgreSQL asks for unsupported authentication (code {code})")
        elif kind == m.B_PARAMETER_STATUS:
            name, value = m.decode_parameter_status(body)
            parameters[name] = value
        elif kind == m.B_BACKEND_KEY_DATA:
            pid, key = m.decode_backend_key_data(body)
        elif kind == m.B_READY_FOR_QUERY:
            return BackendSession(endpoint, parameters, pid, key, reported=dict(parameters))
        elif kind in (m.B_NOTICE_RESPONSE, m.B_NEGOTIATE_PROTOCOL_VERSION):
            continue
        else:
            raise BackendUnavailable(f"unexpected message {chr(kind)!r} from PostgreSQL during login")


async def send_cancel(address: BackendAddress, pid: int, key: int) -> bool:
    """PostgreSQL's CancelRequest on a fresh connection; the server closes it without a reply,
    once it has signalled the session. False when it did not within 5 s: the cancel may still
    reach the session, whatever it runs then."""
    endpoint = await connect(address)
    try:
        endpoint.write(m.cancel_request(pid, key))
        async with asyncio.timeout(5):
            await endpoint.wait_closed()
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        endpoint.close()
