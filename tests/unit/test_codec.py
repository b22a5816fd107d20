"""The sans-I/O codec against tables of bytes."""

from __future__ import annotations

import struct

import pytest

from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5, verify_md5_response
from proxy.protocol.framing import (CancelRequest, GSSENCRequest, SSLRequest, StartupMessage,
                                    decode_startup, split_message, split_startup)


@pytest.mark.parametrize("packet, expected", [
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", SSLRequest()),
    (b"\x00\x00\x00\x08\x04\xd2\x16\x30", GSSENCRequest()),
    (b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x30\x39\xde\xad\xbe\xef", CancelRequest(12345, 0xDEADBEEF)),
    (b"\x00\x00\x00\x12\x00\x03\x00\x00user\x00bob\x00\x00", StartupMessage(3, 0, {"user": "bob"})),
])
def test_decode_startup_packets(packet, expected):
    assert decode_startup(packet) == expected


def test_startup_message_round_trip():
    packet = m.startup_message({"user": "bob", "database": "dev", "application_name": "x"})
    assert packet == (b"\x00\x00\x00\x32\x00\x03\x00\x00user\x00bob\x00database\x00dev\x00"
                      b"application_name\x00x\x00\x00")
    assert decode_startup(packet) == StartupMessage(3, 0, {"user": "bob", "database": "dev",
                                                           "application_name": "x"})


def test_startup_minor_version_and_protocol_2():
    packet = struct.pack("!ii", 17, (3 << 16) | 2) + b"user\0a\0\0"
    assert decode_startup(packet) == StartupMessage(3, 2, {"user": "a"})
    with pytest.raises(m.ProtocolViolation, match="unsupported frontend protocol 2.0"):
        decode_startup(struct.pack("!ii", 9, 2 << 16) + b"\0")


@pytest.mark.parametrize("raw", [
    b"\x00\x00\x00\x03",                      # below the minimum
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",                      # negative
    b"\x00\x01\x00\x00",                      # 65536 > 10 000 cap
])
def test_split_startup_rejects_bad_lengths(raw):
    with pytest.raises(m.ProtocolViolation):
        split_startup(bytearray(raw + b"\0" * 8))


def test_split_startup_waits_for_whole_packet():
    buffer = bytearray(b"\x00\x00\x00\x08\x04\xd2")
    assert split_startup(buffer) is None
    buffer += b"\x16\x2fQ"
    assert split_startup(buffer) == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert buffer == b"Q"


@pytest.mark.parametrize("packet", [
    b"\x00\x00\x00\x0c\x00\x03\x00\x00\x00user",   # not terminated
    b"\x00\x00\x00\x0e\x00\x03\x00\x00\x00\x00\x00\x00",  # empty parameter name
    b"\x00\x00\x00\x0f\x00\x03\x00\x00user\x00a\x00",  # missing final NUL... value unterminated
    b"\x00\x00\x00\x09\x04\xd2\x16\x2f\x00",          # SSLRequest with extra byte
])
def test_decode_startup_malformed(packet):
    with pytest.raises(m.ProtocolViolation):
        decode_startup(packet)


def test_split_message_and_caps():
    buffer = bytearray(b"Q\x00\x00\x00\x0dselect 1\x00X\x00\x00")
    assert split_message(buffer) == (ord("Q"), b"select 1\x00")
    assert split_message(buffer) is None
    buffer += b"\x00\x04"
    assert split_message(buffer) == (ord("X"), b"")
    with pytest.raises(m.ProtocolViolation, match="invalid message length 3"):
        split_message(bytearray(b"Q\x00\x00\x00\x03"))
    with pytest.raises(m.ProtocolViolation, match="invalid message length 2048"):
        split_message(bytearray(b"Q\x00\x00\x08\x00"), max_size=1024)


def test_builders_byte_exact():
    assert m.ready_for_query(m.TX_IN_BLOCK) == b"Z\x00\x00\x00\x05T"
    assert m.auth_ok() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert m.auth_md5(b"abcd") == b"R\x00\x00\x00\x0c\x00\x00\x00\x05abcd"
    assert m.parameter_status("server_version", "8.0.2") == b"S\x00\x00\x00\x19server_version\x008.0.2\x00"
    assert m.backend_key_data(7, 0xFFFFFFFF) == b"K\x00\x00\x00\x0c\x00\x00\x00\x07\xff\xff\xff\xff"
    assert m.command_complete("CREATE USER") == b"C\x00\x00\x00\x10CREATE USER\x00"
    assert m.negotiate_protocol_version(0, ["_pq_.x"]) == b"v\x00\x00\x00\x13\x00\x00\x00\x00\x00\x00\x00\x01_pq_.x\x00"
    assert m.cancel_request(1, 2) == b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02"


def test_error_response_round_trip():
    raw = m.error_response("FATAL", "28P01", 'password authentication failed for user "x"', hint="h")
    assert raw[:1] == b"E"
    assert struct.unpack("!i", raw[1:5])[0] == len(raw) - 1
    assert m.decode_fields(raw[5:]) == {"S": "FATAL", "V": "FATAL", "C": "28P01",
                                        "M": 'password authentication failed for user "x"', "H": "h"}
    with pytest.raises(ValueError):
        m.error_response("NOTICE", "00000", "x")
    with pytest.raises(ValueError):
        m.error_response("ERROR", "123", "x")


def test_parse_decoding_keeps_parameter_types():
    body = b"s1\x00select $1\x00\x00\x01\x00\x00\x00\x17"
    parse = m.decode_parse(body)
    assert (parse.name, parse.sql, parse.param_types) == (b"s1", b"select $1", b"\x00\x01\x00\x00\x00\x17")
    assert parse.encode() == b"P" + struct.pack("!i", len(body) + 4) + body
    with pytest.raises(m.ProtocolViolation):
        m.decode_parse(b"s1\x00select $1\x00\x00\x02\x00\x00\x00\x17")


def test_redshift_md5_matches_documentation_example():
    # reference/redshift-sql-acl.md §1: md5('ez' || 'user1')
    assert redshift_md5("ez", "user1") == "md5153c434b4b77c89e6b94f12c5393af5b"


def test_md5_challenge_verification():
    stored = redshift_md5("Secret123", "bob")
    salt = b"\x01\x02\x03\x04"
    response = md5_response(stored, salt)
    assert verify_md5_response(stored, salt, response)
    assert not verify_md5_response(stored, b"\x00\x02\x03\x04", response)
    assert not verify_md5_response(None, salt, md5_response("md5" + "0" * 32, salt))
