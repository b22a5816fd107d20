"""Cutting a byte stream into PostgreSQL messages: the startup packet and typed messages.

A length below the minimum or above the configured cap is a protocol violation here, before any
byte of the body is looked at. Used for the startup and authentication exchanges; the relay's
steady state has its own zero-copy scanner (proxy.relay).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .messages import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    SSL_REQUEST_CODE,
    ProtocolViolation,
    read_cstring,
)

DEFAULT_MAX_STARTUP = 10_000
DEFAULT_MAX_MESSAGE = 1 << 30


@dataclass(frozen=True, slots=True)
class SSLRequest:
    pass


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pid: int
    key: int


@dataclass(frozen=True, slots=True)
class StartupMessage:
    major: int
    minor: int
    params: dict[str, str] = field(default_factory=dict)


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def split_startup(buffer: bytearray, max_size: int = DEFAULT_MAX_STARTUP) -> bytes | None:
    """Remove and return one whole startup packet (length word included) from buffer, or None."""
    if len(buffer) < 4:
        return None
    (length,) = struct.unpack_from("!i", buffer)
    if length < 8 or length > max_size:
        raise ProtocolViolation(f"invalid startup packet length {length}")
    if len(buffer) < length:
        return None
    packet = bytes(buffer[:length])
    del buffer[:length]
    return packet


def decode_startup(packet: bytes) -> StartupPacket:
    """A whole startup packet -> SSLRequest | GSSENCRequest | CancelRequest | StartupMessage."""
    (code,) = struct.unpack_from("!i", packet, 4)
    if code == SSL_REQUEST_CODE:
        if len(packet) != 8:
            raise ProtocolViolation("malformed SSLRequest")
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        if len(packet) != 8:
            raise ProtocolViolation("malformed GSSENCRequest")
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        if len(packet) != 16:
            raise ProtocolViolation("malformed CancelRequest")
        pid, key = struct.unpack_from("!iI", packet, 8)
        return CancelRequest(pid, key)
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise ProtocolViolation(
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")
    body = packet[8:]
    if not body or body[-1] != 0:
        raise ProtocolViolation("startup packet is not terminated")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(body) - 1:
        name, pos = read_cstring(body, pos)
        if not name:
            raise ProtocolViolation("empty parameter name in startup packet")
        value, pos = read_cstring(body, pos)
        try:
            params[name.decode()] = value.decode()
        except UnicodeDecodeError:
            raise ProtocolViolation("startup parameter is not valid UTF-8") from None
    if pos != len(body) - 1:
        raise ProtocolViolation("malformed startup packet")
    return StartupMessage(major, minor, params)


def split_message(buffer: bytearray, max_size: int = DEFAULT_MAX_MESSAGE) -> tuple[int, bytes] | None:
    """Remove and return one typed message (type byte, body) from buffer, or None if incomplete."""
    if len(buffer) < 5:
        return None
    type_byte = buffer[0]
    (length,) = struct.unpack_from("!i", buffer, 1)
    check_length(type_byte, length, max_size)
    if len(buffer) < length + 1:
        return None
    body = bytes(buffer[5:length + 1])
    del buffer[:length + 1]
    return type_byte, body


def check_length(type_byte: int, length: int, max_size: int) -> None:
    if length < 4 or length > max_size:
        raise ProtocolViolation(
            f"invalid message length {length} for message type {chr(type_byte)!r}")
