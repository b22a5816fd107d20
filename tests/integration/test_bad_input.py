"""Bad input gets a clear error or a clean close, and the next client is served as usual."""

from __future__ import annotations

import concurrent.futures
import socket
import struct
import time

import pytest

from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from ..conftest import ADMIN, ADMIN_PASSWORD


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the proxy sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def error_fields(data: bytes) -> dict[str, str]:
    assert data[:1] == b"E", data[:40]
    (length,) = struct.unpack_from("!i", data, 1)
    return m.decode_fields(data[5:1 + length])


def still_serves(proxy) -> None:
    with proxy.connect() as conn:
        assert conn.execute("SELECT 42").fetchone() == (42,)


def raw(proxy) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=5)


def login(sock: socket.socket, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> bytes:
    """Log in with the raw protocol; returns everything up to the first ReadyForQuery."""
    sock.sendall(m.startup_message({"user": user, "database": "dev"}))
    data = sock.recv(1024)
    assert data[:1] == b"R" and struct.unpack_from("!i", data, 5)[0] == m.AUTH_MD5
    salt = data[9:13]
    sock.sendall(m.password_message(md5_response(redshift_md5(password, user), salt) + b"\0"))
    received = b""
    while not received.endswith(m.ready_for_query(m.TX_IDLE)):
        received += sock.recv(65536)
    return received


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00\x00\x00\x02",                     # length below the minimum
    b"\x7f\xff\xff\xff" + b"x" * 100,         # length far above the startup cap
    b"\x00\x00\x40\x00" + b"\x00\x03\x00\x00",  # 16 KB startup packet > 10 KB cap
    struct.pack("!ii", 8, 2 << 16),           # protocol 2.0
    struct.pack("!ii", 8, 1234),              # not a protocol number at all
])
def test_garbage_before_startup_gets_protocol_violation(proxy, garbage):
    with raw(proxy) as sock:
        sock.sendall(garbage)
        fields = error_fields(read_all(sock))
    assert fields["S"] == "FATAL" and fields["C"] == "08P01"
    still_serves(proxy)


def test_message_instead_of_password_is_a_protocol_violation(proxy):
    with raw(proxy) as sock:
        sock.sendall(m.startup_message({"user": ADMIN, "database": "dev"}))
        assert sock.recv(100)[:1] == b"R"
        sock.sendall(m.query("SELECT 1"))
        fields = error_fields(read_all(sock))
    assert fields["C"] == "08P01" and "expected password response" in fields["M"]
    still_serves(proxy)


def test_plaintext_after_ssl_request_is_refused(proxy):
    with raw(proxy) as sock:
        sock.sendall(m.ssl_request() + m.startup_message({"user": ADMIN}))
        fields = error_fields(read_all(sock))
    assert fields["C"] == "08P01" and "unencrypted data after SSL request" in fields["M"]


def test_gssenc_request_is_declined_and_startup_continues(proxy):
    with raw(proxy) as sock:
        sock.sendall(struct.pack("!ii", 8, m.GSSENC_REQUEST_CODE))
        assert sock.recv(1) == b"N"
        assert login(sock).endswith(m.ready_for_query(m.TX_IDLE))


def test_newer_minor_version_is_negotiated_down(proxy):
    with raw(proxy) as sock:
        packet = m.startup_message({"user": ADMIN, "database": "dev", "_pq_.fancy": "1"},
                                   version=(3 << 16) | 2)
        sock.sendall(packet)
        expected = m.negotiate_protocol_version(0, ["_pq_.fancy"])
        data = b""
        while len(data) <= len(expected):
            data += sock.recv(1024)
    assert data.startswith(expected)
    assert data[len(expected):][:1] == b"R"  # then authentication goes on as in 3.0


def test_truncated_packet_then_silence_is_closed_after_auth_timeout(make_proxy):
    proxy = make_proxy(limits__auth_timeout=1.0)
    with raw(proxy) as sock:
        sock.sendall(m.startup_message({"user": ADMIN})[:10])
        started = time.monotonic()
        fields = error_fields(read_all(sock, timeout=10))
        assert 0.8 < time.monotonic() - started < 5
    assert fields["C"] == "08P01" and "timeout" in fields["M"]
    still_serves(proxy)


def test_bad_message_length_after_login(make_proxy):
    proxy = make_proxy(limits__max_message_size=4096)
    with raw(proxy) as sock:
        login(sock)
        sock.sendall(b"Q" + struct.pack("!i", 100_000) + b"SELECT 1")
        fields = error_fields(read_all(sock))
    assert fields["C"] == "08P01" and "invalid message length 100000" in fields["M"]
    with raw(proxy) as sock:
        login(sock)
        sock.sendall(b"Q\x00\x00\x00\x02")
        assert error_fields(read_all(sock))["C"] == "08P01"
    still_serves(proxy)


def test_unknown_message_type_after_login_is_refused_by_postgres(proxy):
    with raw(proxy) as sock:
        login(sock)
        sock.sendall(b"!" + struct.pack("!i", 4))
        fields = error_fields(read_all(sock))
    assert fields["S"] == "FATAL" and fields["C"] == "08P01"
    still_serves(proxy)


def test_a_thousand_connections_opened_and_dropped_at_once(proxy, postgres):
    def open_and_drop(n: int) -> None:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=30)
        if n % 3 == 1:
            sock.sendall(m.startup_message({"user": ADMIN, "database": "dev"}))
        elif n % 3 == 2:
            sock.sendall(m.ssl_request())
        sock.close()

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        list(pool.map(open_and_drop, range(1000)))
    still_serves(proxy)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        live = proxy.call(_count_tasks(proxy))
        if live == 0:
            break
        time.sleep(0.1)
    assert live == 0, f"{live} connection tasks still alive"
    with postgres.connect() as direct:
        leaked = direct.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend'",
            (ADMIN,)).fetchone()[0]
    assert leaked == len(proxy.proxy.context.pool)  # only the sessions kept for the next client


async def _count_tasks(proxy):
    return len(proxy.proxy.context.tasks)
