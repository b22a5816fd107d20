"""PostgreSQL v3 messages: type bytes, builders for what the proxy sends, decoders for what it reads.

Builders return complete wire bytes. Decoders take a message body (without the type byte and
length) and raise ProtocolViolation on malformed input. Nothing here does I/O.
Reference: PostgreSQL documentation, "Message Formats" (protocol-message-formats.html).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .sqlstate import PROTOCOL_VIOLATION

_I32 = struct.Struct("!i")
_HEADER = struct.Struct("!ci")

# Protocol version numbers and the special request codes sent in place of a version.
PROTOCOL_3_0 = 196608  # 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

# Frontend (client -> server) message types.
F_BIND = ord("B")
F_CLOSE = ord("C")
F_COPY_DATA = ord("d")
F_COPY_DONE = ord("c")
F_COPY_FAIL = ord("f")
F_DESCRIBE = ord("D")
F_EXECUTE = ord("E")
F_FLUSH = ord("H")
F_FUNCTION_CALL = ord("F")
F_PARSE = ord("P")
F_PASSWORD = ord("p")  # also SASLInitialResponse / SASLResponse / GSSResponse
F_QUERY = ord("Q")
F_SYNC = ord("S")
F_TERMINATE = ord("X")

# Backend (server -> client) message types.
B_AUTHENTICATION = ord("R")
B_BACKEND_KEY_DATA = ord("K")
B_BIND_COMPLETE = ord("2")
B_CLOSE_COMPLETE = ord("3")
B_COMMAND_COMPLETE = ord("C")
B_COPY_IN_RESPONSE = ord("G")
B_COPY_OUT_RESPONSE = ord("H")
B_COPY_BOTH_RESPONSE = ord("W")
B_DATA_ROW = ord("D")
B_EMPTY_QUERY_RESPONSE = ord("I")
B_ERROR_RESPONSE = ord("E")
B_NEGOTIATE_PROTOCOL_VERSION = ord("v")
B_NOTICE_RESPONSE = ord("N")
B_NOTIFICATION_RESPONSE = ord("A")
B_PARAMETER_DESCRIPTION = ord("t")
B_PARAMETER_STATUS = ord("S")
B_PARSE_COMPLETE = ord("1")
B_PORTAL_SUSPENDED = ord("s")
B_READY_FOR_QUERY = ord("Z")
B_ROW_DESCRIPTION = ord("T")

FRONTEND_TYPES = frozenset(
    [F_BIND, F_CLOSE, F_COPY_DATA, F_COPY_DONE, F_COPY_FAIL, F_DESCRIBE, F_EXECUTE, F_FLUSH,
     F_FUNCTION_CALL, F_PARSE, F_PASSWORD, F_QUERY, F_SYNC, F_TERMINATE]
)

# Authentication request codes (the Int32 after 'R').
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

# ReadyForQuery transaction status bytes.
TX_IDLE = ord("I")
TX_IN_BLOCK = ord("T")
TX_FAILED = ord("E")


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a valid PostgreSQL v3 message (SQLSTATE 08P01)."""

    sqlstate = PROTOCOL_VIOLATION


# --------------------------------------------------------------------------- builders


def message(type_byte: int, body: bytes = b"") -> bytes:
    """A typed message: type byte, Int32 length (self-inclusive), body."""
    return bytes((type_byte,)) + _I32.pack(len(body) + 4) + body


def cstring(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if b"\0" in raw:
        raise ValueError("a protocol string cannot contain NUL")
    return raw + b"\0"


def _fields_body(fields: list[tuple[str, str]]) -> bytes:
    return b"".join(code.encode() + cstring(text) for code, text in fields) + b"\0"


def error_response(severity: str, sqlstate: str, text: str, *, detail: str | None = None,
                   hint: str | None = None) -> bytes:
    """ErrorResponse with S (localised and V non-localised severity), C, M and optional D, H."""
    if severity not in ("ERROR", "FATAL", "PANIC"):
        raise ValueError(f"not an error severity: {severity}")
    return message(B_ERROR_RESPONSE, _fields_body(_notice_fields(severity, sqlstate, text, detail, hint)))


def notice_response(severity: str, sqlstate: str, text: str, *, detail: str | None = None,
                    hint: str | None = None) -> bytes:
    if severity not in ("WARNING", "NOTICE", "DEBUG", "INFO", "LOG"):
        raise ValueError(f"not a notice severity: {severity}")
    return message(B_NOTICE_RESPONSE, _fields_body(_notice_fields(severity, sqlstate, text, detail, hint)))


def _notice_fields(severity, sqlstate, text, detail, hint):
    if len(sqlstate) != 5:
        raise ValueError(f"SQLSTATE must be 5 characters: {sqlstate!r}")
    fields = [("S", severity), ("V", severity), ("C", sqlstate), ("M", text)]
    if detail:
        fields.append(("D", detail))
    if hint:
        fields.append(("H", hint))
    return fields


def encode_error_fields(fields: dict[str, str], type_byte: int = B_ERROR_RESPONSE) -> bytes:
    """Re-encode decoded ErrorResponse/NoticeResponse fields (used when rewording an error)."""
    return message(type_byte, _fields_body(list(fields.items())))


def authentication(code: int, extra: bytes = b"") -> bytes:
    return message(B_AUTHENTICATION, _I32.pack(code) + extra)


def auth_ok() -> bytes:
    return authentication(AUTH_OK)


def auth_md5(salt: bytes) -> bytes:
    if len(salt) != 4:
        raise ValueError("MD5 salt is 4 bytes")
    return authentication(AUTH_MD5, salt)


def auth_cleartext() -> bytes:
    return authentication(AUTH_CLEARTEXT)


def parameter_status(name: str, value: str) -> bytes:
    return message(B_PARAMETER_STATUS, cstring(name) + cstring(value))


def backend_key_data(pid: int, key: int) -> bytes:
    return message(B_BACKEND_KEY_DATA, struct.pack("!iI", pid, key))


def ready_for_query(status: int = TX_IDLE) -> bytes:
    if status not in (TX_IDLE, TX_IN_BLOCK, TX_FAILED):
        raise ValueError(f"bad transaction status {status!r}")
    return message(B_READY_FOR_QUERY, bytes((status,)))


def command_complete(tag: str) -> bytes:
    return message(B_COMMAND_COMPLETE, cstring(tag))


def negotiate_protocol_version(newest_minor: int, unrecognized: list[str]) -> bytes:
    body = _I32.pack(newest_minor) + _I32.pack(len(unrecognized))
    body += b"".join(cstring(name) for name in unrecognized)
    return message(B_NEGOTIATE_PROTOCOL_VERSION, body)


def query(sql: str | bytes) -> bytes:
    return message(F_QUERY, cstring(sql))


def password_message(payload: bytes) -> bytes:
    return message(F_PASSWORD, payload)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return message(F_PASSWORD, cstring(mechanism) + _I32.pack(len(data)) + data)


def close_statement(name: bytes) -> bytes:
    """Close of a prepared statement."""
    return message(F_CLOSE, b"S" + name + b"\0")


def terminate() -> bytes:
    return message(F_TERMINATE)


def startup_message(params: dict[str, str], version: int = PROTOCOL_3_0) -> bytes:
    body = _I32.pack(version) + b"".join(cstring(k) + cstring(v) for k, v in params.items()) + b"\0"
    return _I32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!ii", 8, SSL_REQUEST_CODE)


def cancel_request(pid: int, key: int) -> bytes:
    return struct.pack("!iiiI", 16, CANCEL_REQUEST_CODE, pid, key)


# --------------------------------------------------------------------------- decoders


def read_cstring(body: bytes, pos: int) -> tuple[bytes, int]:
    """The NUL-terminated string at pos and the position after its NUL."""
    end = body.find(b"\0", pos)
    if end < 0:
        raise ProtocolViolation("unterminated string in message")
    return body[pos:end], end + 1


def decode_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse body -> {field code: text}."""
    fields: dict[str, str] = {}
    pos = 0
    while True:
        if pos >= len(body):
            raise ProtocolViolation("error fields not terminated")
        code = body[pos]
        if code == 0:
            return fields
        text, pos = read_cstring(body, pos + 1)
        fields[chr(code)] = text.decode("utf-8", "replace")


def decode_query(body: bytes) -> bytes:
    """Query body -> the SQL bytes (without the terminating NUL). As PostgreSQL reads it: one
    string that ends the message; a NUL before the end is "invalid message format"."""
    end = body.find(b"\0")
    if end < 0:
        raise ProtocolViolation("Query message is not NUL-terminated")
    if end != len(body) - 1:
        raise ProtocolViolation("invalid message format")
    return body[:-1]


@dataclass(frozen=True, slots=True)
class Parse:
    name: bytes
    sql: bytes
    param_types: bytes  # the raw Int16 count + Int32 OIDs, passed on unchanged

    def encode(self) -> bytes:
        return message(F_PARSE, self.name + b"\0" + self.sql + b"\0" + self.param_types)


def decode_parse(body: bytes) -> Parse:
    name, pos = read_cstring(body, 0)
    sql, pos = read_cstring(body, pos)
    rest = body[pos:]
    # The count is unsigned, as PostgreSQL reads it (pq_getmsgint): a Parse with 40,000
    # parameter types is one it runs, so it must be one the proxy reads.
    if len(rest) < 2 or len(rest) != 2 + 4 * struct.unpack_from("!H", rest)[0]:
        raise ProtocolViolation("Parse message has a malformed parameter type list")
    return Parse(name, sql, rest)


def decode_bind_names(body: bytes) -> tuple[bytes, bytes]:
    """Bind body -> (portal name, statement name); the parameters are not looked at."""
    portal, pos = read_cstring(body, 0)
    statement, _ = read_cstring(body, pos)
    return portal, statement


def decode_execute_portal(body: bytes) -> bytes:
    portal, _ = read_cstring(body, 0)
    return portal


def decode_close(body: bytes) -> tuple[int, bytes]:
    """Close or Describe body -> (b'S' or b'P' as int, name)."""
    if not body:
        raise ProtocolViolation("empty Close or Describe message")
    name, _ = read_cstring(body, 1)
    return body[0], name


def decode_command_tag(body: bytes) -> bytes:
    tag, _ = read_cstring(body, 0)
    return tag


def decode_authentication(body: bytes) -> tuple[int, bytes]:
    if len(body) < 4:
        raise ProtocolViolation("short Authentication message")
    return _I32.unpack_from(body)[0], body[4:]


def decode_parameter_status(body: bytes) -> tuple[str, str]:
    name, pos = read_cstring(body, 0)
    value, _ = read_cstring(body, pos)
    return name.decode("utf-8", "replace"), value.decode("utf-8", "replace")


def decode_backend_key_data(body: bytes) -> tuple[int, int]:
    if len(body) != 8:
        raise ProtocolViolation("BackendKeyData must be 8 bytes")
    return struct.unpack("!iI", body)


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription."""
    name: str
    table_oid: int  # 0 when the column is no table's
    attnum: int
    type_oid: int
    type_size: int
    type_modifier: int
    format: int


_FIELD = struct.Struct("!IhIhih")


def decode_row_description(body: bytes) -> list[FieldDescription]:
    if len(body) < 2:
        raise ProtocolViolation("short RowDescription message")
    count, pos, fields = struct.unpack_from("!H", body)[0], 2, []
    for _ in range(count):
        name, pos = read_cstring(body, pos)
        if len(body) < pos + _FIELD.size:
            raise ProtocolViolation("short RowDescription message")
        fields.append(FieldDescription(name.decode("utf-8", "replace"), *_FIELD.unpack_from(body, pos)))
        pos += _FIELD.size
    return fields


def decode_data_row(body: bytes) -> list[bytes | None]:
    """DataRow body -> each column's bytes, None for NULL. (The relay never decodes DataRow; the
    Data API, reading results as a client, does.)"""
    if len(body) < 2:
        raise ProtocolViolation("short DataRow message")
    count, pos, values = struct.unpack_from("!H", body)[0], 2, []
    for _ in range(count):
        if len(body) < pos + 4:
            raise ProtocolViolation("short DataRow message")
        length = _I32.unpack_from(body, pos)[0]
        pos += 4
        if length < 0:
            values.append(None)
            continue
        if len(body) < pos + length:
            raise ProtocolViolation("short DataRow message")
        values.append(body[pos:pos + length])
        pos += length
    return values


def decode_sasl_mechanisms(data: bytes) -> list[str]:
    """AuthenticationSASL payload: NUL-terminated mechanism names, then an empty one."""
    names = []
    pos = 0
    while True:
        name, pos = read_cstring(data, pos)
        if not name:
            return names
        names.append(name.decode())


def header(type_byte: int, length: int) -> bytes:
    return _HEADER.pack(bytes((type_byte,)), length)
