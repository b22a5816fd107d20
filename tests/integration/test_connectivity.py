"""Cluster connectivity: security groups, PROXY protocol, limits, reload. Loopback addresses
play other hosts: clients bind 127.0.0.2, 127.0.0.3, ... as their source."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import replace

import psycopg
import pytest

from proxy.config import Cluster, IngressRule, Limits, SecurityGroup
from proxy.protocol import messages as m
from proxy.protocol.proxy_header import V2_SIGNATURE, v2_header

from ..conftest import ADMIN, ADMIN_PASSWORD

LB = "127.0.0.9"  # plays the load balancer


def groups(*cidrs: str) -> list[SecurityGroup]:
    return [SecurityGroup("app", "test", [IngressRule(c) for c in cidrs])]


def gated(make_proxy, *cidrs: str, **changes):
    return make_proxy(security_groups=groups(*cidrs), cluster=replace(Cluster(), security_groups=["app"]),
                      trusted_proxies=[f"{LB}/32"], **changes)


def attempt(proxy, source: str, prefix: bytes = b"", tls: bool = False, host: str | None = None,
            with_message: bool = False) -> str:
    """What a client from source sees: 'admitted' (an authentication request, or 'S' to an
    SSLRequest), 'dropped' (closed without a reply), or 'error <SQLSTATE>' (with_message:
    'error <SQLSTATE>: <message>')."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect((host or proxy.host, proxy.port))
        try:
            sock.sendall(prefix + (m.ssl_request() if tls else m.startup_message({"user": ADMIN, "database": "dev"})))
            reply = sock.recv(1024)
        except (ConnectionResetError, BrokenPipeError):
            return "dropped"
    if not reply:
        return "dropped"
    if reply[:1] in (b"R", b"S"):
        return "admitted"
    if reply[:1] == b"E":
        (length,) = struct.unpack_from("!i", reply, 1)
        fields = m.decode_fields(reply[5:1 + length])
        return f"error {fields['C']}" + (f": {fields['M']}" if with_message else "")
    return f"unexpected {reply[:20]!r}"


def proxy_v1(source: str) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    dest = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {dest} 40000 5439\r\n".encode()


# (source, what it sends first, TLS) -> outcome; rules admit 127.0.0.2/32 and 10.0.0.0/8.
TABLE = [
    ("127.0.0.2", b"", False, "admitted"),
    ("127.0.0.2", b"", True, "admitted"),
    ("127.0.0.3", b"", False, "dropped"),
    ("127.0.0.3", b"", True, "dropped"),
    (LB, v2_header(("10.1.2.3", 40000), ("127.0.0.1", 5439)), False, "admitted"),
    (LB, v2_header(("10.1.2.3", 40000), ("127.0.0.1", 5439)), True, "admitted"),
    (LB, v2_header(("192.168.1.1", 40000), ("127.0.0.1", 5439)), False, "dropped"),
    (LB, proxy_v1("10.9.9.9"), False, "admitted"),
    (LB, proxy_v1("172.16.0.1"), False, "dropped"),
    (LB, proxy_v1("2001:db8::1"), False, "dropped"),
    (LB, b"", False, "dropped"),                       # the balancer itself is not admitted
    (LB, V2_SIGNATURE + b"\x20\x00\x00\x00", False, "admitted"),  # LOCAL: a health check
    ("127.0.0.2", v2_header(("10.1.2.3", 1), ("127.0.0.1", 5439)), False, "dropped"),  # untrusted header
    ("127.0.0.2", proxy_v1("10.1.2.3"), False, "dropped"),
    (LB, V2_SIGNATURE + b"\x21\x11\x00\x05" + b"\x00" * 5, False, "error 08P01"),  # short addresses
    (LB, b"PROXY TCP4 not-an-ip 1.2.3.4 1 2\r\n", False, "error 08P01"),
]


@pytest.mark.parametrize("source, prefix, tls, outcome", TABLE)
def test_admission_table(make_proxy, source, prefix, tls, outcome):
    proxy = gated(make_proxy, "127.0.0.2/32", "10.0.0.0/8")
    assert attempt(proxy, source, prefix, tls) == outcome


def test_admitted_client_logs_in_with_a_real_driver_and_refusals_are_counted(make_proxy):
    proxy = gated(make_proxy, "127.0.0.1/32")
    with proxy.connect() as conn:  # psycopg from 127.0.0.1
        assert conn.execute("SELECT current_user").fetchone() == (ADMIN,)
    assert attempt(proxy, "127.0.0.5") == "dropped"
    assert proxy.proxy.context.refused["security group"] >= 1


def test_proxy_header_in_pieces_with_tlvs(make_proxy):
    proxy = gated(make_proxy, "10.0.0.0/8")
    header = bytearray(v2_header(("10.0.0.7", 1234), ("127.0.0.1", 5439)))
    tlv = b"\x04\x00\x03abc" + b"\x02\x00\x05hello"  # NOOP and AUTHORITY TLVs: skipped
    header[14:16] = struct.pack("!H", struct.unpack_from("!H", header, 14)[0] + len(tlv))
    data = bytes(header) + tlv + m.startup_message({"user": ADMIN, "database": "dev"})
    with socket.socket() as sock:
        sock.bind((LB, 0))
        sock.connect((proxy.host, proxy.port))
        for byte in data:  # one byte at a time
            sock.sendall(bytes([byte]))
        sock.settimeout(5)
        reply = sock.recv(1024)
    assert reply[:1] == b"R" and struct.unpack_from("!i", reply, 5)[0] == m.AUTH_MD5


def test_ipv6_listener(make_proxy):
    proxy = make_proxy(listen=["[::1]:0"], security_groups=groups("::1/128"),
                       cluster=replace(Cluster(), security_groups=["app"]))
    assert attempt(proxy, "::1", host="::1") == "admitted"
    closed = make_proxy(listen=["[::1]:0"], security_groups=groups("127.0.0.0/8"),
                        cluster=replace(Cluster(), security_groups=["app"]))
    assert attempt(closed, "::1", host="::1") == "dropped"


def logged_in(proxy, source: str) -> socket.socket:
    """A session logged in from source (over the raw protocol: libpq cannot bind an address)."""
    from .test_bad_input import login

    sock = socket.create_connection((proxy.host, proxy.port), timeout=5, source_address=(source, 0))
    login(sock)
    return sock


def test_connection_limits(make_proxy):
    proxy = make_proxy(limits=replace(Limits(), max_client_connections=3, max_connections_per_address=2))
    held = [logged_in(proxy, "127.0.0.2") for _ in range(2)]
    try:
        assert attempt(proxy, "127.0.0.2") == "error 53300"  # per address
        third = logged_in(proxy, "127.0.0.3")
        # In all (every connection has logged in): the cluster is full, in Redshift's words.
        assert attempt(proxy, "127.0.0.4", with_message=True) == \
            'error 53300: connection limit "3" exceeded for non-bootstrap users'
        third.close()
        time.sleep(0.2)
        assert attempt(proxy, "127.0.0.4") == "admitted"
    finally:
        for sock in held:
            sock.close()


def test_refused_flood_does_not_keep_an_admitted_client_out(make_proxy):
    proxy = gated(make_proxy, "127.0.0.1/32")

    def flood(n: int) -> None:
        try:
            with socket.create_connection((proxy.host, proxy.port), source_address=("127.0.0.66", 0), timeout=5) as s:
                s.sendall(m.startup_message({"user": ADMIN}))
                s.recv(10)
        except OSError:
            pass

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(flood, n) for n in range(500)]
        with proxy.connect() as conn:  # while the flood runs
            assert conn.execute("SELECT 1").fetchone() == (1,)
        concurrent.futures.wait(futures)
    assert proxy.proxy.context.refused["security group"] >= 500


def test_idle_in_transaction_timeout(make_proxy):
    from .test_bad_input import login, read_all

    proxy = make_proxy(limits=replace(Limits(), idle_in_transaction_timeout=1.0))
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock, proxy.connect() as idle_outside:
        login(sock)
        sock.sendall(m.query("BEGIN"))
        closing = read_all(sock, timeout=10)
        assert b"25P03" in closing and b"idle-in-transaction timeout" in closing
        assert idle_outside.execute("SELECT 1").fetchone() == (1,)  # idle outside a transaction: kept


def test_reload_under_load_drops_nothing(make_proxy):
    """20 clients query in a loop (half on one connection, half on a new connection each time)
    while the configuration is reloaded again and again, its security groups changing each time:
    every query succeeds, and the last configuration is the one in force."""
    proxy = gated(make_proxy, "127.0.0.1/32")
    plain, wider = proxy.config, replace(proxy.config, security_groups=groups("127.0.0.1/32", "127.0.0.2/32"))
    stop = threading.Event()
    done = [0] * 20
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with proxy.connect() as held:
                while not stop.is_set():
                    if n % 2:
                        with proxy.connect() as fresh:
                            assert fresh.execute("SELECT %s::int", (n,)).fetchone() == (n,)
                    else:
                        assert held.execute("SELECT %s::int", (n,)).fetchone() == (n,)
                    done[n] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def everyone_progressed(since: list[int]) -> bool:
        deadline = time.monotonic() + 30
        while any(now <= before for now, before in zip(done, since)) and not errors:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return not errors

    async def reload(config):
        proxy.proxy.reload(config)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    try:
        assert everyone_progressed([0] * 20), errors
        for round_ in range(6):
            before = list(done)
            proxy.call(reload(wider if round_ % 2 else plain))
            assert everyone_progressed(before), errors
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors
    deadline = time.monotonic() + 10  # the last reload (wider) is in force
    while attempt(proxy, "127.0.0.2") != "admitted" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert attempt(proxy, "127.0.0.2") == "admitted"


# --------------------------------------------------------------------------- a real load balancer


@pytest.fixture
def haproxy(tmp_path):
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert os.path.exists(binary), "haproxy is not installed: apt-get install haproxy"
    started = []

    def start(target_port: int) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{port}
    default_backend shiftguard
backend shiftguard
    server sg 127.0.0.1:{target_port} send-proxy-v2 source {LB}
""")
        process = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.05)
        raise AssertionError("haproxy did not start")

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def test_behind_haproxy_send_proxy_v2(make_proxy, haproxy):
    # The balancer (127.0.0.9) is trusted but not admitted; the client behind it (127.0.0.1) is.
    proxy = gated(make_proxy, "127.0.0.1/32")
    port = haproxy(proxy.port)
    with psycopg.connect(host="127.0.0.1", port=port, user=ADMIN, password=ADMIN_PASSWORD, dbname="dev",
                         sslmode="require") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ADMIN,)
        assert conn.pgconn.ssl_in_use
    closed = gated(make_proxy, "10.0.0.0/8")  # now the client behind the balancer is not admitted
    port = haproxy(closed.port)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user=ADMIN, password=ADMIN_PASSWORD, dbname="dev",
                        sslmode="disable", connect_timeout=5)


def test_reload_says_what_needs_a_restart(make_proxy, caplog):
    """A reload that changes what is read once at start (IAM, the S3 buckets, strict_redshift,
    the audit files) says so, one warning each; what is read per connection (the statement log
    switch) changes without one."""
    from proxy.config import IamUser

    proxy = make_proxy()
    config = proxy.config
    per_connection = replace(config, audit=replace(config.audit, user_activity=not config.audit.user_activity))
    at_start = replace(per_connection, iam=replace(config.iam, users=[*config.iam.users, IamUser("reloaded")]),
                       s3={**config.s3, "reloaded-bucket": str(config.data_dir)},
                       strict_redshift=not config.strict_redshift,
                       audit=replace(per_connection.audit, rotate_seconds=config.audit.rotate_seconds + 60))

    def warned(config) -> list[str]:
        async def reload():
            proxy.proxy.reload(config)
        caplog.clear()
        proxy.call(reload())
        return sorted(r.getMessage() for r in caplog.records if "takes effect at the next restart" in r.getMessage())

    caplog.set_level(logging.WARNING, logger="proxy.server")
    assert warned(per_connection) == []
    assert warned(at_start) == [f"reload: {key} changed; it takes effect at the next restart"
                                for key in ("audit", "iam", "s3", "strict_redshift")]
