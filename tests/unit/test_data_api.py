"""The Data API's pure parts: `:name` parameters as PostgreSQL's scanner reads the SQL, typed
fields and column metadata from text results, and the RowDescription/DataRow decoders."""

from __future__ import annotations

import struct

import pytest

from proxy.iam.data_sessions import column_metadata, named_parameters, typed_field
from proxy.policy.tokens import GrammarError
from proxy.protocol import messages as m


@pytest.mark.parametrize("sql, values, standard, expected", [
    ("SELECT :a", {"a": "1"}, True, "SELECT E'1'"),
    ("SELECT :a, ':a', \":a\", $$:a$$ -- :a", {"a": "x"}, True, "SELECT E'x', ':a', \":a\", $$:a$$ -- :a"),
    ("SELECT x::int, :day", {"day": "2024-01-01"}, True, "SELECT x::int, E'2024-01-01'"),  # a keyword as a name
    ("SELECT a[1:2], :v", {"v": "o'k\\"}, True, "SELECT a[1:2], E'o''k\\\\'"),
    # standard_conforming_strings off (Redshift's): \' does not end the literal, so :a is in it
    ("SELECT 'it\\'s :a', :b", {"b": "2"}, False, "SELECT E'it\\'s :a', E'2'"),
])
def test_named_parameters(sql, values, standard, expected):
    assert named_parameters([sql], values, standard) == [expected]


@pytest.mark.parametrize("sql, values, message", [
    ("SELECT :a, :b", {"a": "1"}, "Parameter b is not provided"),
    ("SELECT 1", {"a": "1"}, "Parameter a is not used"),
    ("SELECT ':a", {"a": "1"}, "unterminated"),
])
def test_named_parameters_refused(sql, values, message):
    with pytest.raises(GrammarError, match=message):
        named_parameters([sql], values, True)


def test_a_batch_shares_its_parameters():
    assert named_parameters(["SELECT :a", "SELECT :b"], {"a": "1", "b": "2"}, True) == ["SELECT E'1'", "SELECT E'2'"]


@pytest.mark.parametrize("type_name, value, field", [
    ("int8", b"9007199254740993", {"longValue": 9007199254740993}),
    ("float8", b"-1.5e-07", {"doubleValue": -1.5e-07}),
    ("bool", b"t", {"booleanValue": True}),
    ("numeric", b"12.50", {"stringValue": "12.50"}),
    ("bytea", b"\\x00ff", {"blobValue": "AP8="}),
    ("timestamptz", b"2024-01-01 12:00:00+00", {"stringValue": "2024-01-01 12:00:00+00"}),
    ("varchar", None, {"isNull": True}),
])
def test_typed_field(type_name, value, field):
    assert typed_field(type_name, value) == field


def test_column_metadata():
    numeric = m.FieldDescription("d", 0, 0, 1700, -1, ((12 << 16) | 3) + 4, 0)
    assert column_metadata(numeric, "numeric", None) == {
        "name": "d", "label": "d", "typeName": "numeric", "length": 0, "precision": 12, "scale": 3, "nullable": 1,
        "isSigned": True, "isCurrency": False, "isCaseSensitive": False, "schemaName": "", "tableName": ""}
    text = m.FieldDescription("s", 16384, 2, 1043, -1, 30 + 4, 0)
    described = column_metadata(text, "varchar", ("public", "t", True))
    assert (described["precision"], described["nullable"], described["tableName"]) == (30, 0, "t")


def test_row_decoders():
    description = struct.pack("!H", 1) + b"id\0" + struct.pack("!IhIhih", 16384, 1, 23, 4, -1, 0)
    assert m.decode_row_description(description) == [m.FieldDescription("id", 16384, 1, 23, 4, -1, 0)]
    row = struct.pack("!H", 3) + struct.pack("!i", 2) + b"42" + struct.pack("!i", -1) + struct.pack("!i", 0)
    assert m.decode_data_row(row) == [b"42", None, b""]
    for short_row in (b"\0", struct.pack("!H", 1) + struct.pack("!i", 5) + b"abc"):
        with pytest.raises(m.ProtocolViolation):
            m.decode_data_row(short_row)
    with pytest.raises(m.ProtocolViolation):
        m.decode_row_description(description[:-3])
