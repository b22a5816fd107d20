"""protocol/result_metadata.py from tables of bytes: Redshift's extended RowDescription, as its
drivers read it (redshift_connector's handle_ROW_DESCRIPTION)."""

from __future__ import annotations

import struct

import pytest

from proxy.protocol.messages import ProtocolViolation
from proxy.protocol.result_metadata import EXPRESSION, Source, column_keys, with_names, with_sources


def field(name: bytes, table: int, column: int) -> bytes:
    return name + b"\0" + struct.pack("!IhIhih", table, column, 23, 4, -1, 0)


BODY = struct.pack("!h", 2) + field(b"id", 16400, 1) + field(b"two", 0, 0)


def test_each_field_gets_its_names_and_flags():
    assert column_keys(BODY) == [(16400, 1), (0, 0)]
    sources = {(16400, 1): Source("public", "t", "id", not_null=True, identity=True), (0, 0): EXPRESSION}
    assert with_sources(BODY, sources, "dev") == (
        struct.pack("!h", 2)
        + field(b"id", 16400, 1) + b"public\0t\0id\0dev\0" + struct.pack("!h", 0x1011)  # NOT NULL, autoincrement, searchable
        + field(b"two", 0, 0) + b"\0\0\0\0" + struct.pack("!h", 0x1100))  # an expression: read-only, searchable


@pytest.mark.parametrize("body", [b"", struct.pack("!h", 1) + b"id", struct.pack("!h", 1) + b"id\0" + bytes(17)])
def test_malformed_descriptions_are_refused(body):
    with pytest.raises(ProtocolViolation):
        column_keys(body)


def test_fields_named_by_a_short_name_get_the_long_one():
    long = "l" * 70
    names = {b"two": long.encode()}
    assert with_names(BODY, names) == struct.pack("!h", 2) + field(b"id", 16400, 1) + field(long.encode(), 0, 0)
    assert with_names(BODY, {b"other": b"x"}) is BODY
