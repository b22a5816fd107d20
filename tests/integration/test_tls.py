"""TLS: the self-signed certificate made on first start, a configured one, require_ssl."""

from __future__ import annotations

import socket
import ssl
import struct
from pathlib import Path

import psycopg
import pytest

from proxy.frontend.tls import self_signed_certificate
from proxy.protocol import messages as m


def test_self_signed_certificate_is_created_and_verifies_for_localhost(proxy):
    cert = Path(proxy.config.data_dir) / "tls" / "server.crt"
    assert cert.exists()
    assert oct((Path(proxy.config.data_dir) / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"
    with proxy.connect(sslmode="verify-full", sslrootcert=str(cert), host="localhost") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == ("awsuser",)


def test_require_ssl_refuses_plaintext_with_a_clear_fatal(make_proxy):
    proxy = make_proxy(tls__require_ssl=True)
    with pytest.raises(psycopg.OperationalError) as info:
        proxy.connect(sslmode="disable")
    assert "requires SSL (require_ssl is on)" in str(info.value)
    with proxy.connect(sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use


def test_configured_certificate_is_served(make_proxy, tmp_path):
    from proxy.config import TLS

    cert, key = self_signed_certificate(tmp_path / "mine", ["db.example.test"])
    proxy = make_proxy(tls=TLS(cert=str(cert), key=str(key)))
    with socket.create_connection((proxy.host, proxy.port)) as raw:
        raw.sendall(m.ssl_request())
        assert raw.recv(1) == b"S"
        context = ssl.create_default_context(cafile=str(cert))
        with context.wrap_socket(raw, server_hostname="db.example.test") as tls:
            assert tls.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(cert.read_text())
            tls.sendall(m.startup_message({"user": "awsuser", "database": "dev"}))
            reply = tls.recv(100)
    assert reply[:1] == b"R" and struct.unpack_from("!i", reply, 5)[0] == m.AUTH_MD5


def test_second_ssl_request_inside_tls_is_a_protocol_violation(proxy):
    with socket.create_connection((proxy.host, proxy.port)) as raw:
        raw.sendall(m.ssl_request())
        assert raw.recv(1) == b"S"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(raw) as tls:
            tls.sendall(m.ssl_request())
            data = tls.recv(1000)
    assert data[:1] == b"E" and b"08P01" in data
