"""The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), sans I/O: bytes
in, the client's address out. A load balancer sends it before anything else on a connection.

v1: "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\\r\\n", at most 107 bytes.
v2: a 12-byte signature, version/command, family/protocol, a 16-bit length, the addresses,
then TLVs (skipped). LOCAL (a health check) carries no client address.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107
V2_MAX_BODY = 2048  # addresses plus TLVs; HAProxy's own TLVs are far smaller


class BadProxyHeader(Exception):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """local: a connection the balancer made itself (a v2 LOCAL health check). Otherwise source
    is the client's address, or None when the header says to use the connection's own
    endpoints (v1 UNKNOWN, v2 UNSPEC)."""

    local: bool
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def starts_like_proxy_header(data: bytes) -> bool:
    """Could data (the first bytes of a connection) be the start of a PROXY header?"""
    head = bytes(data[:12])
    return V2_SIGNATURE.startswith(head) or V1_PREFIX.startswith(head[:6]) if head else False


def parse(buffer: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    """(header, its length) once buffer holds a whole header; None while more is needed."""
    data = bytes(buffer)
    if len(data) < 12 and (V2_SIGNATURE.startswith(data) or V1_PREFIX.startswith(data[:6])):
        return None
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    raise BadProxyHeader("no PROXY protocol signature")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise BadProxyHeader("PROXY v1 header longer than 107 bytes")
        return None
    parts = data[:end].decode("ascii", "replace").split(" ")
    if parts[1:2] == ["UNKNOWN"]:
        return ProxyHeader(local=False), end + 2
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise BadProxyHeader("malformed PROXY v1 header")
    version = 4 if parts[1] == "TCP4" else 6
    try:
        source = ipaddress.ip_address(parts[2])
        destination = ipaddress.ip_address(parts[3])
        ports = int(parts[4]), int(parts[5])
    except ValueError:
        raise BadProxyHeader("malformed PROXY v1 addresses") from None
    if source.version != version or destination.version != version or not all(0 <= p <= 65535 for p in ports):
        raise BadProxyHeader("malformed PROXY v1 addresses")
    return ProxyHeader(False, (str(source), ports[0]), (str(destination), ports[1])), end + 2


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    if len(data) < 16:
        return None
    version_command, family_protocol, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise BadProxyHeader("unsupported PROXY protocol version")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise BadProxyHeader("unknown PROXY v2 command")
    if length > V2_MAX_BODY:
        raise BadProxyHeader("PROXY v2 header too long")
    if len(data) < 16 + length:
        return None
    total = 16 + length
    if command == 0:  # LOCAL: the balancer's own connection; addresses are to be ignored
        return ProxyHeader(local=True), total
    body = data[16:total]
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if family == 0:  # UNSPEC: use the connection's own endpoints
        return ProxyHeader(local=False), total
    if protocol != 1:  # STREAM (TCP) only
        raise BadProxyHeader("PROXY v2 header for a protocol other than TCP")
    if family == 1:
        if length < 12:
            raise BadProxyHeader("short PROXY v2 IPv4 addresses")
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
    elif family == 2:
        if length < 36:
            raise BadProxyHeader("short PROXY v2 IPv6 addresses")
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
    else:
        raise BadProxyHeader("PROXY v2 header for a family other than IPv4/IPv6")
    return (ProxyHeader(False, (str(ipaddress.ip_address(src)), sport), (str(ipaddress.ip_address(dst)), dport)),
            total)  # whatever follows the addresses (TLVs) is skipped


def v2_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY v2 header (for tests and tools)."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body
