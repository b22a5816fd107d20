"""Redshift's own types on the wire: the type OIDs clients see and send, and the values the
relay rewrites for them. Pure: message bodies in, message bodies out; no I/O.

VARBYTE, INTERVAL YEAR TO MONTH, INTERVAL DAY TO SECOND and ABSTIME are PostgreSQL types of
shiftguard's (catalog/redshift_functions.sql), GEOMETRY and GEOGRAPHY PostGIS's (installed into
pg_catalog by catalog/store.py where it is available), with OIDs PostgreSQL chose in each database.
Redshift's drivers get Redshift's OIDs for them in RowDescription and ParameterDescription, as
redshift_connector maps them (redshift_connector/utils/oids.py), and send those in Parse. Other
clients get the backend's OIDs: they look an OID they do not know up in pg_type (asyncpg, pgjdbc),
where Redshift's are not. PostGIS's values are Redshift's as they are: GEOMETRY's text is
hexadecimal EWKB, which redshift_connector reads as text; GEOGRAPHY's text the same, and its
binary (which the driver asks for under its binary protocol, and hexlifies) is EWKB. Two value
forms differ from what PostgreSQL's functions read and write, so the relay converts them, for
every client:

- VARBYTE as text is plain hexadecimal on Redshift ('6162'), bytea's is '\\x6162': a DataRow
  column of that type is rewritten (the type has no binary output, so its values are text). To
  a client granted server protocol 2 Redshift sends the bytes themselves (redshift_connector
  then asks for VARBYTE in text and reads it with text_recv, not varbytehex_recv; AWS's own
  datatype tests expect the same values at every protocol), and so does the relay;
- TIME '24:00:00' is 00:00:00 on Redshift, and TIMETZ values are UTC ("By default, TIMETZ
  values are UTC", Datetime types; it stores 8 bytes, no zone): PostgreSQL keeps 24:00 and each
  TIMETZ's own zone, and redshift_connector cannot make a time of an hour past 23 (which it
  computes from a zone west of UTC). A DataRow value of those (PostgreSQL's built-in) types is
  rewritten, in text or binary (the two cannot be mistaken: a binary time starts with zero
  bytes, a text one with digits);
- NUMERIC in binary, for a client granted server protocol 2 (BINARY: redshift_connector then
  asks for it, numeric_in_binary): Redshift's is the value times 10^scale as a two's-complement
  integer of 8 bytes (precision up to 18) or 16, the scale the column's type modifier's;
  PostgreSQL's is base-10000 digits. A DataRow value is rewritten. A column of unconstrained
  NUMERIC (type modifier -1, an expression's: Redshift gives every NUMERIC a precision and
  scale) is shown as NUMERIC(38,18), and its values rounded to 18 decimals (UNVERIFIED: Redshift
  computes each expression's own; 18 keeps what PostgreSQL's division and AVG give, which a
  NUMERIC(18,0) would round away). A value that does not fit 16 bytes, NaN or an infinity
  stays PostgreSQL's (the driver refuses it: Redshift has none of them);
- ACLITEM[] (pg_class.relacl and the like), for a client granted protocol 2, which asks for it
  in binary: PostgreSQL has no binary form of aclitem ("no binary output function available"),
  so a Bind's result format for such a column becomes text and its DataRow values are made
  binary arrays of the items' text (what the driver reads, array_recv_binary over text_recv);
- SUPER is a domain over jsonb (catalog/redshift_functions.sql), so PostgreSQL describes its
  columns as jsonb: Redshift's drivers see Redshift's SUPER OID, whose values they read as text
  (redshift_connector's text_recv), and every client gets the text as Redshift prints it, with
  no spaces after ',' and ':' (jsonb's text has them: {"a": [1, 2]}), up to MAX_COMPACTED bytes.
  Redshift has no jsonb, so a jsonb column is taken for SUPER;
- INTERVAL YEAR TO MONTH and DAY TO SECOND in binary are Redshift's 4-byte months and 8-byte
  microseconds (what redshift_connector's IntervalYearToMonth and IntervalDayToSecond send),
  PostgreSQL's interval receive reads 16 bytes: a Bind parameter of those types is rewritten.
  (Their binary output is Redshift's already: the types' send functions write it.)
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from .messages import ProtocolViolation, read_cstring

# Redshift's type OIDs (redshift_connector/utils/oids.py), by the name of shiftguard's (or PostGIS's) type.
REDSHIFT_OIDS = {"varbyte": 6551, "intervaly2m": 1188, "intervald2s": 1190, "abstime": 702,
                 "geometry": 3000, "geography": 3001}
INTERVAL_Y2M, INTERVAL_D2S = REDSHIFT_OIDS["intervaly2m"], REDSHIFT_OIDS["intervald2s"]
TIME, TIMETZ = 1083, 1266  # PostgreSQL's (and Redshift's) OIDs of TIME and TIMETZ
NUMERIC = 1700
JSONB, SUPER = 3802, 4000  # PostgreSQL's jsonb (SUPER's base type) and Redshift's SUPER
ACLITEM, ACLITEM_ARRAY = 1033, 1034
# NUMERIC(38,18) as a type modifier: what an unconstrained NUMERIC column is shown as (above).
UNCONSTRAINED_NUMERIC = (38 << 16 | 18) + 4

# What a column's values need (row_description, data_row).
VARBYTE_TEXT, VARBYTE_BYTES, TIME_24, TIMETZ_UTC, ACL_ARRAY = "varbyte", "varbyte bytes", "time", "timetz", "aclitem[]"
SUPER_TEXT = "super"
_DAY = 86_400_000_000  # microseconds
_MIDNIGHT_24 = struct.pack("!q", _DAY)  # 24:00:00 in binary
_TIMETZ_TEXT = re.compile(rb"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?")
_TIMETZ_BINARY = struct.Struct("!qi")  # microseconds, the zone in seconds west of UTC

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_FIELD_TAIL = struct.Struct("!ihIhih")  # table OID, column number, type OID, size, modifier, format
_INTERVAL = struct.Struct("!qii")       # PostgreSQL's binary interval: microseconds, days, months


@dataclass(frozen=True)
class RedshiftTypes:
    """One database's OIDs of shiftguard's Redshift types."""

    to_client: dict[int, int]   # the backend's OID -> Redshift's
    shown: bool = True          # does the client see Redshift's OIDs (else the backend's)?
    binary: bool = False        # server protocol 2: Redshift's binary NUMERIC
    to_backend: dict[int, int] = field(init=False)
    varbyte: int | None = field(init=False)
    markers: re.Pattern = field(init=False)  # the OIDs as they appear in messages, any of them

    def __post_init__(self):
        object.__setattr__(self, "to_backend", {rs: ours for ours, rs in self.to_client.items()})
        object.__setattr__(self, "varbyte", self.to_backend.get(REDSHIFT_OIDS["varbyte"]))
        binary = (NUMERIC, ACLITEM_ARRAY) if self.binary else ()
        object.__setattr__(self, "markers", re.compile(b"|".join(
            re.escape(_U32.pack(oid)) for oid in (*self.to_client, TIME, TIMETZ, *binary))))

    @classmethod
    def from_names(cls, oids: dict[str, int]) -> "RedshiftTypes | None":
        """From {type name: the backend's OID}; None when the database has none of them."""
        known = {oid: REDSHIFT_OIDS[name] for name, oid in oids.items() if name in REDSHIFT_OIDS}
        return cls({**known, JSONB: SUPER}) if known else None

    @property
    def spatial(self) -> bool:
        """Does the database have GEOMETRY (PostGIS, in pg_catalog)?"""
        return REDSHIFT_OIDS["geometry"] in self.to_backend

    def mentioned(self, body: bytes) -> bool:
        """Might body hold one of the types' OIDs? (A quick look: False is certain.)"""
        return self.markers.search(body) is not None


# (index, what its values need) for data_row: VARBYTE_TEXT, VARBYTE_BYTES, TIME_24, TIMETZ_UTC,
# ACL_ARRAY, SUPER_TEXT, or for a binary NUMERIC the type modifier the client was shown.
Columns = tuple[tuple[int, str | int], ...]


def row_description(body: bytes, types: RedshiftTypes) -> tuple[bytes, Columns] | None:
    """The RowDescription to send (with Redshift's OIDs if they are shown, an unconstrained
    NUMERIC's precision and scale under protocol 2), and its columns whose values the relay
    converts (VARBYTE as text, TIME, TIMETZ, SUPER as text; NUMERIC and ACLITEM[] under protocol 2); None when
    it has none."""
    if len(body) < 2:
        raise ProtocolViolation("malformed RowDescription")
    count = _I16.unpack_from(body)[0]
    pos, out, converted, changed = 2, bytearray(body[:2]), [], False
    for index in range(count):
        _name, after = read_cstring(body, pos)
        if after + _FIELD_TAIL.size > len(body):
            raise ProtocolViolation("malformed RowDescription")
        table, column, oid, size, modifier, fmt = _FIELD_TAIL.unpack_from(body, after)
        shown = types.to_client.get(oid)
        if oid == types.varbyte and fmt == 0:
            converted.append((index, VARBYTE_BYTES if types.binary else VARBYTE_TEXT))
        elif oid in (TIME, TIMETZ):
            converted.append((index, TIME_24 if oid == TIME else TIMETZ_UTC))
        elif oid == JSONB and fmt == 0:
            converted.append((index, SUPER_TEXT))
        elif oid == NUMERIC and types.binary:
            if modifier < 4:
                changed, modifier = True, UNCONSTRAINED_NUMERIC
            converted.append((index, modifier))
        elif oid == ACLITEM_ARRAY and types.binary:
            converted.append((index, ACL_ARRAY))
        if shown is not None and types.shown:
            changed, oid = True, shown
        out += body[pos:after]
        out += _FIELD_TAIL.pack(table, column, oid, size, modifier, fmt)
        pos = after + _FIELD_TAIL.size
    if not changed and not converted:
        return None
    return bytes(out) if changed else body, tuple(converted)


def parameter_description(body: bytes, types: RedshiftTypes) -> bytes | None:
    """A ParameterDescription with Redshift's OIDs, or None when it has none of the types."""
    oids = _oids(body, "ParameterDescription")
    shown = [types.to_client.get(oid, oid) for oid in oids]
    return body[:2] + b"".join(_U32.pack(oid) for oid in shown) if shown != oids else None


def parse_types(param_types: bytes, types: RedshiftTypes) -> tuple[bytes, dict[int, int]] | None:
    """A Parse's parameter types (count and OIDs) with the backend's OIDs for Redshift's, and
    {parameter index: Redshift OID} of the interval parameters whose binary values Bind must
    convert; None when no parameter has one of the types."""
    oids = _oids(param_types, "Parse")
    sent = [types.to_backend.get(oid, oid) for oid in oids]
    if sent == oids:
        return None
    intervals = {i: oid for i, oid in enumerate(oids) if oid in (INTERVAL_Y2M, INTERVAL_D2S)}
    return param_types[:2] + b"".join(_U32.pack(oid) for oid in sent), intervals


def _oids(body: bytes, what: str) -> list[int]:
    if len(body) < 2 or len(body) != 2 + 4 * _U16.unpack_from(body)[0]:
        raise ProtocolViolation(f"malformed {what} parameter type list")
    return [_U32.unpack_from(body, 2 + 4 * i)[0] for i in range(_U16.unpack_from(body)[0])]


def bind_intervals(body: bytes, intervals: dict[int, int]) -> bytes:
    """A Bind whose binary values of Redshift's interval types are PostgreSQL's 16-byte
    intervals: months (4 bytes) for YEAR TO MONTH, microseconds (8 bytes) for DAY TO SECOND.
    A value of another size is left for PostgreSQL to refuse."""
    def interval(index: int, binary: bool, value: bytes) -> bytes | None:
        kind = intervals.get(index)
        if binary and kind == INTERVAL_Y2M and len(value) == 4:
            return _INTERVAL.pack(0, 0, _I32.unpack(value)[0])
        if binary and kind == INTERVAL_D2S and len(value) == 8:
            return _INTERVAL.pack(struct.unpack("!q", value)[0], 0, 0)
        return None
    return _bind_values(body, interval)


# What a name or pattern holding a NUL byte is sent as: no name is 128 bytes long (Redshift keeps
# 127; PostgreSQL's text cannot hold the NUL, so the value itself could not be sent).
UNMATCHABLE_NAME = b"\x01" * 128


def bind_unmatchable(body: bytes) -> bytes:
    """A Bind of a SHOW command's names and patterns (all text) in which a value holding a NUL
    byte is one that matches no name: a name cannot hold a NUL, so Redshift finds none
    (UNVERIFIED: AWS's driver tests expect no rows), where PostgreSQL would refuse the value."""
    def unmatchable(_index: int, binary: bool, value: bytes) -> bytes | None:
        return UNMATCHABLE_NAME if not binary and b"\0" in value else None
    return _bind_values(body, unmatchable)


def _bind_values(body: bytes, change: Callable[[int, bool, bytes], bytes | None]) -> bytes:
    """A Bind with each value change(index, binary, value) returns instead of it (NULLs are
    left as they are)."""
    _portal, pos = read_cstring(body, 0)
    _statement, pos = read_cstring(body, pos)
    try:
        nformats = _I16.unpack_from(body, pos)[0]
        formats = [_I16.unpack_from(body, pos + 2 + 2 * i)[0] for i in range(nformats)]
        pos += 2 + 2 * nformats
        nvalues = _I16.unpack_from(body, pos)[0]
    except struct.error:
        raise ProtocolViolation("malformed Bind message") from None
    out = bytearray(body[:pos + 2])
    pos += 2
    for index in range(nvalues):
        if pos + 4 > len(body):
            raise ProtocolViolation("malformed Bind message")
        length = _I32.unpack_from(body, pos)[0]
        end = pos + 4 + max(length, 0)
        binary = (formats[0] if nformats == 1 else formats[index] if index < nformats else 0) == 1
        value = change(index, binary, body[pos + 4:end]) if length >= 0 else None
        if value is None:
            out += body[pos:end]
        else:
            out += _I32.pack(len(value)) + value
        pos = end
    out += body[pos:]
    return bytes(out)


def bind_text_results(body: bytes, columns: Columns) -> bytes | None:
    """A Bind that asks for those of columns that have no binary form (ACLITEM[]) in text, or
    None when it asks for none of them in binary. Only a Bind with a format code for each
    column (as Redshift's drivers send) is rewritten; one code for all is left for PostgreSQL
    to refuse, as it would."""
    texts = [index for index, kind in columns if kind == ACL_ARRAY]
    if not texts:
        return None
    _portal, pos = read_cstring(body, 0)
    _statement, pos = read_cstring(body, pos)
    try:
        pos += 2 + 2 * _I16.unpack_from(body, pos)[0]
        nvalues = _I16.unpack_from(body, pos)[0]
        pos += 2
        for _ in range(nvalues):
            pos += 4 + max(_I32.unpack_from(body, pos)[0], 0)
        nresults = _I16.unpack_from(body, pos)[0]
    except struct.error:
        raise ProtocolViolation("malformed Bind message") from None
    codes = bytearray(body[pos + 2:pos + 2 + 2 * nresults])
    if nresults < 2 or len(codes) != 2 * nresults:
        return None
    for index in texts:
        if index < nresults and _I16.unpack_from(codes, 2 * index)[0] == 1:
            _I16.pack_into(codes, 2 * index, 0)
    changed = body[:pos + 2] + bytes(codes) + body[pos + 2 + 2 * nresults:]
    return changed if changed != body else None


def _binary_text_array(value: bytes, element: int) -> bytes:
    """A one-dimensional array's text form ({a,"b c",NULL}) as PostgreSQL's binary array of
    those elements' text; a value in binary already, or of more dimensions, stays as it is."""
    if value[:1] != b"{" or value[1:2] == b"{":
        return value
    items: list[bytes | None] = []
    pos, end = 1, len(value) - 1
    while pos < end:
        if value[pos] == 0x22:  # "...", with backslash escapes
            item, pos = bytearray(), pos + 1
            while value[pos] != 0x22:
                pos += value[pos] == 0x5C
                item.append(value[pos])
                pos += 1
            items.append(bytes(item))
            pos += 1
        else:
            stop = value.find(b",", pos)
            stop = end if stop < 0 else stop
            items.append(None if value[pos:stop] == b"NULL" else value[pos:stop])
            pos = stop
        pos += 1  # the comma
    head = struct.pack("!iiI", 1 if items else 0, None in items, element)
    dims = struct.pack("!ii", len(items), 1) if items else b""
    return head + dims + b"".join(_I32.pack(-1) if item is None else _I32.pack(len(item)) + item for item in items)


def data_row(body: bytes, columns: Columns) -> bytes | None:
    """The DataRow with Redshift's values in those columns, or None if none changes: VARBYTE as
    hexadecimal (bytea's text with its '\\x' taken off, or, under bytea_output = escape, its
    escapes read) or, under protocol 2, its bytes; TIME 24:00:00 as 00:00:00, TIMETZ in UTC; SUPER
    without jsonb's spaces; a binary NUMERIC as Redshift's, an ACLITEM[] in binary."""
    if len(body) < 2:
        raise ProtocolViolation("malformed DataRow")
    count = _I16.unpack_from(body)[0]
    wanted = dict(columns)
    out, pos, last = bytearray(), 2, 0
    for index in range(count):
        if pos + 4 > len(body):
            raise ProtocolViolation("malformed DataRow")
        length = _I32.unpack_from(body, pos)[0]
        start, end = pos + 4, pos + 4 + max(length, 0)
        kind = wanted.get(index)
        if kind is not None and length >= 0:
            value = body[start:end]
            if kind == VARBYTE_TEXT:
                shown = value[2:] if value.startswith(b"\\x") else _unescape(value).hex().encode()
            elif kind == VARBYTE_BYTES:
                shown = bytes.fromhex(value[2:].decode()) if value.startswith(b"\\x") else _unescape(value)
            elif kind == TIMETZ_UTC:
                shown = _timetz_utc(value)
            elif kind == SUPER_TEXT:
                shown = _compact_json(value) if len(value) <= MAX_COMPACTED else value
            elif type(kind) is int:
                shown = _redshift_numeric(value, kind)
            elif kind == ACL_ARRAY:
                shown = _binary_text_array(value, ACLITEM)
            else:
                shown = b"00" + value[2:] if value.startswith(b"24:00:00") else bytes(8) if value == _MIDNIGHT_24 else value
            if shown != value:
                out += body[last:pos]
                out += _I32.pack(len(shown)) + shown
                last = end
        pos = end
    if pos > len(body):
        raise ProtocolViolation("malformed DataRow")
    if not last:
        return None
    out += body[last:]
    return bytes(out)


# The longest SUPER text made compact (Redshift's SUPER holds 16 MB): scanning a value costs the
# event loop about a microsecond per string in it, which every client would wait out; a longer
# value keeps jsonb's spaces.
MAX_COMPACTED = 1 << 20


def _compact_json(value: bytes) -> bytes:
    """jsonb's text without the space it writes after each ',' and ':' between values (the only
    spaces it writes outside strings); strings as they are. Text that is not jsonb's (a string
    never closed) stays as it is."""
    if b'"' not in value:
        return value.replace(b", ", b",").replace(b": ", b":")
    out, pos, end = bytearray(), 0, len(value)
    while pos < end:
        quote = value.find(b'"', pos)
        if quote < 0:
            quote = end
        out += value[pos:quote].replace(b", ", b",").replace(b": ", b":")
        if quote == end:
            break
        close = quote
        while True:  # the string's closing quote: one after an even number of backslashes
            close = value.find(b'"', close + 1)
            if close < 0:
                return value
            slashes = close - 1
            while value[slashes] == 0x5C:
                slashes -= 1
            if (close - 1 - slashes) % 2 == 0:
                break
        out += value[quote:close + 1]
        pos = close + 1
    return bytes(out)


_NUMERIC_HEAD = struct.Struct("!hhHH")  # PostgreSQL's binary numeric: digits, weight, sign, scale
_NUMERIC_NEGATIVE = 0x4000
_I64, _I128 = 1 << 63, 1 << 127


def _redshift_numeric(value: bytes, modifier: int) -> bytes:
    """A NUMERIC value in Redshift's binary form for a column of that type modifier (rounded
    half away from zero to its scale, as PostgreSQL rounds); a text value (a Query's rows: its
    first byte a digit, '-', 'N' or 'I', where a binary one's digit count starts with a byte
    below them) and what Redshift cannot hold stay as they are."""
    if len(value) < 8 or value[0] >= 0x2D:
        return value
    ndigits, weight, sign, _scale = _NUMERIC_HEAD.unpack_from(value)
    if sign not in (0, _NUMERIC_NEGATIVE) or len(value) != 8 + 2 * ndigits:
        return value
    whole = 0
    for (digit,) in struct.iter_unpack("!H", value[8:]):
        whole = whole * 10_000 + digit
    precision, scale = (modifier - 4) >> 16, (modifier - 4) & 0xFFFF
    shift = 4 * (weight + 1 - ndigits) + scale  # whole * 10^shift is the value times 10^scale
    if shift >= 0:
        scaled = whole * 10 ** shift
    else:
        scaled, rest = divmod(whole, 10 ** -shift)
        scaled += 2 * rest >= 10 ** -shift
    if sign == _NUMERIC_NEGATIVE:
        scaled = -scaled
    if precision <= 18 and -_I64 <= scaled < _I64:
        return scaled.to_bytes(8, "big", signed=True)
    return scaled.to_bytes(16, "big", signed=True) if -_I128 <= scaled < _I128 else value


def _timetz_utc(value: bytes) -> bytes:
    """A TIMETZ value, text or binary, as the same instant in UTC (hour 24 is 00); a text this
    does not read (none that PostgreSQL 15 writes) stays as it is."""
    if len(value) == _TIMETZ_BINARY.size and value[:1] == b"\0":
        micros, west = _TIMETZ_BINARY.unpack(value)
        return _TIMETZ_BINARY.pack((micros + west * 1_000_000) % _DAY, 0)
    parts = _TIMETZ_TEXT.fullmatch(value)
    if parts is None:
        return value
    hours, minutes, seconds, fraction, sign, zone_h, zone_m, zone_s = parts.groups()
    east = (int(zone_h) * 3600 + int(zone_m or 0) * 60 + int(zone_s or 0)) * (1 if sign == b"+" else -1)
    local = (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 1_000_000 + int((fraction or b"0").ljust(6, b"0"))
    utc, micros = divmod((local - east * 1_000_000) % _DAY, 1_000_000)
    text = b"%02d:%02d:%02d" % (utc // 3600, utc // 60 % 60, utc % 60)
    return text + (b".%06d" % micros).rstrip(b"0") + b"+00" if micros else text + b"+00"


def _unescape(value: bytes) -> bytes:
    """bytea's escape output (bytea_output = escape) read back: \\\\ and \\ooo octal."""
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == 0x5C and value[i + 1:i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif value[i] == 0x5C:
            out.append(int(value[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(value[i])
            i += 1
    return bytes(out)
