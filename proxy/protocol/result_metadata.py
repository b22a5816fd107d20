"""Redshift's extended RowDescription (server protocol 1, EXTENDED_RESULT_METADATA, and 2): after
each field's 18 fixed bytes, its schema, table, column and catalog names (strings) and an
int16 of flags. Pure: a message body and the columns' sources in, a body out; no I/O.

The format is as Redshift's drivers read it (redshift_connector core.py handle_ROW_DESCRIPTION;
the JDBC driver's QueryExecutorImpl.receiveFields; the ODBC driver's libpq fe-protocol3.c):
flag bit 0 set means the column is NOT NULL (JDBC columnNoNulls, ODBC "NOT_NULL";
redshift_connector calls the bit `nullable`), bit 4 autoincrement (an IDENTITY column), bit 8
read-only, bit 12 searchable. Bit 1 (case-sensitive) is protocol 3's, which shiftguard does not
offer.

An expression's column (table OID 0) has empty names; a table's (or view's) column has the
database as its catalog. What Redshift sends for an expression is not documented, and the JDBC
driver gives an empty base column name for one without reading the metadata
(RedshiftResultSetMetaDataImpl.getBaseColumnName): empty names, not NOT NULL, read-only,
searchable (UNVERIFIED). Every column is searchable (UNVERIFIED: the JDBC driver's default).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from .messages import ProtocolViolation, read_cstring

_I16 = struct.Struct("!h")
_KEY = struct.Struct("!Ih")  # table OID, column number: the first 6 of a field's 18 fixed bytes
_FIXED = 18
NOT_NULL, AUTOINCREMENT, READ_ONLY, SEARCHABLE = 0x1, 0x10, 0x100, 0x1000


@dataclass(frozen=True)
class Source:
    """Where a result column comes from, as the extended RowDescription names it."""
    schema: str
    table: str
    column: str
    not_null: bool = False
    identity: bool = False


EXPRESSION = Source("", "", "")  # an expression's column: no names


def column_keys(body: bytes) -> list[tuple[int, int]]:
    """(table OID, column number) of each field of a RowDescription body."""
    return [_KEY.unpack_from(body, fixed) for fixed in _fields(body)]


def with_sources(body: bytes, sources: Mapping[tuple[int, int], Source], catalog: str) -> bytes:
    """The RowDescription body with Redshift's extended metadata, each field's from its (table
    OID, column number)'s source."""
    out = bytearray(body[:2])
    pos = 2
    for fixed in _fields(body):
        key = _KEY.unpack_from(body, fixed)
        out += body[pos:fixed + _FIXED]
        pos = fixed + _FIXED
        source = sources[key]
        named = bool(source.table)
        flags = SEARCHABLE | (0 if named else READ_ONLY)
        flags |= (NOT_NULL if source.not_null else 0) | (AUTOINCREMENT if source.identity else 0)
        for text in (source.schema, source.table, source.column, catalog if named else ""):
            out += text.encode() + b"\0"
        out += _I16.pack(flags)
    return bytes(out)


def with_names(body: bytes, names: Mapping[bytes, bytes]) -> bytes:
    """The RowDescription body with each field that names holds a name for renamed (a long
    name for its short one: policy/identifiers.py); body itself when none is."""
    out, pos, renamed = bytearray(body[:2]), 2, False
    for fixed in _fields(body):
        name = body[pos:fixed - 1]
        shown = names.get(name, name)
        renamed = renamed or shown is not name
        out += shown + b"\0" + body[fixed:fixed + _FIXED]
        pos = fixed + _FIXED
    return bytes(out) if renamed else body


def _fields(body: bytes):
    """Where each field's 18 fixed bytes start (after its name), checked to be there."""
    if len(body) < 2:
        raise ProtocolViolation("malformed RowDescription")
    pos = 2
    for _ in range(_I16.unpack_from(body)[0]):
        _name, fixed = read_cstring(body, pos)
        if fixed + _FIXED > len(body):
            raise ProtocolViolation("malformed RowDescription")
        yield fixed
        pos = fixed + _FIXED
