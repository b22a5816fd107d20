"""protocol/redshift_types.py from tables of bytes: Redshift's OIDs shown and read, VARBYTE's
text made Redshift's hexadecimal, redshift_connector's binary intervals made PostgreSQL's."""

from __future__ import annotations

import struct

import pytest

from proxy.protocol.messages import ProtocolViolation
from proxy.protocol.redshift_types import (ACL_ARRAY, MAX_COMPACTED, SUPER_TEXT, TIME_24, TIMETZ_UTC,
                                           UNCONSTRAINED_NUMERIC, VARBYTE_BYTES, VARBYTE_TEXT, RedshiftTypes,
                                           bind_intervals, bind_text_results, data_row, parameter_description,
                                           parse_types, row_description)

# The backend's OIDs of shiftguard's types, as one database has them.
OURS = {"varbyte": 16501, "intervaly2m": 16502, "intervald2s": 16503, "abstime": 16504}
TYPES = RedshiftTypes.from_names(OURS)


def field(name: bytes, oid: int, fmt: int = 0, modifier: int = -1) -> bytes:
    return name + b"\0" + struct.pack("!ihIhih", 0, 0, oid, -1, modifier, fmt)


def row(*values: bytes | None) -> bytes:
    return struct.pack("!h", len(values)) + b"".join(
        struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v for v in values)


def test_row_description_shows_redshifts_oids_and_finds_varbyte_text_columns():
    body = struct.pack("!h", 4) + field(b"a", 23) + field(b"vb", 16501) + field(b"y2m", 16502) + field(b"vb2", 16501, 1)
    shown, columns = row_description(body, TYPES)
    assert shown == struct.pack("!h", 4) + field(b"a", 23) + field(b"vb", 6551) + field(b"y2m", 1188) + field(b"vb2", 6551, 1)
    assert columns == ((1, VARBYTE_TEXT),)  # a binary VARBYTE column has no value (the type has no binary output)
    assert row_description(struct.pack("!h", 1) + field(b"a", 23), TYPES) is None
    times = struct.pack("!h", 2) + field(b"t", 1083) + field(b"tz", 1266, 1)
    assert row_description(times, TYPES) == (times, ((0, TIME_24), (1, TIMETZ_UTC)))


def test_other_clients_keep_the_backends_oids_and_get_varbyte_columns_too():
    hidden = RedshiftTypes(TYPES.to_client, shown=False)
    body = struct.pack("!h", 1) + field(b"vb", 16501)
    assert row_description(body, hidden) == (body, ((0, VARBYTE_TEXT),))


def test_a_mention_is_only_a_hint():
    assert TYPES.mentioned(struct.pack("!I", 16503)) and not TYPES.mentioned(struct.pack("!I", 16505))
    assert RedshiftTypes.from_names({"super": 16000}) is None


def test_varbyte_text_becomes_hexadecimal_and_other_columns_stay():
    varbyte = ((0, VARBYTE_TEXT), (2, VARBYTE_TEXT), (3, VARBYTE_TEXT))
    assert data_row(row(b"\\x6162", b"\\x41", None, b""), varbyte) == row(b"6162", b"\\x41", None, b"")
    # bytea_output = escape: its escapes are read back.
    assert data_row(row(b"a\\000\\\\\\377"), ((0, VARBYTE_TEXT),)) == row(b"61005cff")


def test_super_is_shown_as_redshifts_and_its_text_has_no_spaces_between_values():
    body = struct.pack("!h", 2) + field(b"s", 3802) + field(b"b", 3802, 1)
    assert row_description(body, TYPES) == (struct.pack("!h", 2) + field(b"s", 4000) + field(b"b", 4000, 1),
                                            ((0, SUPER_TEXT),))
    super_text = ((0, SUPER_TEXT),)
    for jsonb, redshift in [(b'{"a": [1, 2.50], "b": null}', b'{"a":[1,2.50],"b":null}'),
                            (b'["x, y: z", "q\\"", {"k\\\\": ", "}]', b'["x, y: z","q\\"",{"k\\\\":", "}]'),
                            (b'"s: t"', None), (b'12', None)]:
        assert data_row(row(jsonb), super_text) == (None if redshift is None else row(redshift))
    assert data_row(row(b'["a, b'), super_text) is None  # not jsonb's text: as it is
    huge = b"[" + b", ".join([b"1"] * (MAX_COMPACTED // 3 + 1)) + b"]"
    assert data_row(row(huge), super_text) is None  # past MAX_COMPACTED: jsonb's text


def test_time_24_00_is_midnight_and_timetz_is_utc_as_on_redshift_in_text_and_binary():
    columns = ((0, TIME_24), (1, TIMETZ_UTC))
    assert data_row(row(b"24:00:00", b"24:00:00-06"), columns) == row(b"00:00:00", b"06:00:00+00")
    assert data_row(row(b"23:59:59", b"22:44:54.18-07"), columns) == row(b"23:59:59", b"05:44:54.18+00")
    assert data_row(row(None, b"01:00:00+05:30"), columns) == row(None, b"19:30:00+00")
    day = struct.pack("!q", 86_400_000_000)
    assert data_row(row(day, day + struct.pack("!i", 21600)), columns) == \
        row(bytes(8), struct.pack("!qi", 6 * 3_600_000_000, 0))
    assert data_row(row(b"23:59:59", None), columns) is None
    assert data_row(row(b"x", b"noon"), columns) is None


def test_parse_types_and_bind_values_of_redshifts_intervals():
    param_types = struct.pack("!HIIII", 4, 23, 1188, 1190, 6551)
    sent, intervals = parse_types(param_types, TYPES)
    assert sent == struct.pack("!HIIII", 4, 23, 16502, 16503, 16501)
    assert intervals == {1: 1188, 2: 1190}
    assert parse_types(struct.pack("!HI", 1, 23), TYPES) is None
    values = [struct.pack("!i", 7), struct.pack("!i", -13), struct.pack("!q", -(2**63)), b"ab"]
    bind = b"p\0s\0" + struct.pack("!hhhhh", 4, 1, 1, 1, 0) + struct.pack("!h", 4) + b"".join(
        struct.pack("!i", len(v)) + v for v in values) + struct.pack("!hh", 1, 1)
    converted = [struct.pack("!i", 7), struct.pack("!qii", 0, 0, -13), struct.pack("!qii", -(2**63), 0, 0), b"ab"]
    assert bind_intervals(bind, intervals) == b"p\0s\0" + struct.pack("!hhhhh", 4, 1, 1, 1, 0) + struct.pack("!h", 4) \
        + b"".join(struct.pack("!i", len(v)) + v for v in converted) + struct.pack("!hh", 1, 1)
    # Text values, and NULLs, are PostgreSQL's to read as they are.
    text = b"\0s\0" + struct.pack("!hh", 0, 2) + struct.pack("!i", 4) + b"1-1 " + struct.pack("!i", -1) + b"\0\0"
    assert bind_intervals(text, intervals) == text


def test_parameter_description_and_malformed_messages():
    assert parameter_description(struct.pack("!HII", 2, 16504, 25), TYPES) == struct.pack("!HII", 2, 702, 25)
    assert parameter_description(struct.pack("!HI", 1, 25), TYPES) is None
    with pytest.raises(ProtocolViolation):
        row_description(struct.pack("!h", 1) + b"a\0\0", TYPES)
    with pytest.raises(ProtocolViolation):
        parse_types(struct.pack("!HI", 2, 23), TYPES)


BINARY = RedshiftTypes(TYPES.to_client, binary=True)  # a client granted server protocol 2
NUMERIC_18_8, NUMERIC_38_4 = (18 << 16 | 8) + 4, (38 << 16 | 4) + 4


def numeric(ndigits_weight_sign_scale: tuple, *digits: int) -> bytes:
    """PostgreSQL's binary NUMERIC: base-10000 digits, the weight of the first, sign, scale."""
    return struct.pack(f"!hhHH{len(digits)}H", *ndigits_weight_sign_scale, *digits)


def test_numeric_columns_under_protocol_2_and_an_unconstrained_ones_precision():
    body = struct.pack("!h", 3) + field(b"n", 1700, 1, NUMERIC_18_8) + field(b"u", 1700) + field(b"i", 23)
    shown, columns = row_description(body, BINARY)
    assert shown == struct.pack("!h", 3) + field(b"n", 1700, 1, NUMERIC_18_8) + \
        field(b"u", 1700, 0, UNCONSTRAINED_NUMERIC) + field(b"i", 23)
    assert columns == ((0, NUMERIC_18_8), (1, UNCONSTRAINED_NUMERIC))
    assert row_description(body, TYPES) is None  # protocols 0 and 1: NUMERIC as PostgreSQL has it


@pytest.mark.parametrize("value, modifier, redshift", [
    # -12345.67891 (1 2345 . 6789 1000) at scale 8: 8 bytes for a precision up to 18
    (numeric((4, 1, 0x4000, 5), 1, 2345, 6789, 1000), NUMERIC_18_8, struct.pack("!q", -1234567891000)),
    (numeric((0, 0, 0, 8)), NUMERIC_18_8, struct.pack("!q", 0)),
    (numeric((1, -1, 0, 4), 5000), NUMERIC_38_4, (5000).to_bytes(16, "big")),  # 0.5, 16 bytes beyond 18
    # 1.5 as NUMERIC(38,18); 0.00005 rounded half away from zero at scale 4
    (numeric((2, 0, 0, 1), 1, 5000), UNCONSTRAINED_NUMERIC, (15 * 10**17).to_bytes(16, "big")),
    (numeric((1, -2, 0x4000, 5), 5000), NUMERIC_38_4, (-1).to_bytes(16, "big", signed=True)),
    (b"-1.5", NUMERIC_18_8, b"-1.5"),  # text: a Query's rows, left as they are
    (numeric((0, 0, 0xC000, 0)), NUMERIC_18_8, numeric((0, 0, 0xC000, 0))),  # NaN: Redshift has none
    (numeric((1, 10, 0, 0), 1), NUMERIC_38_4, numeric((1, 10, 0, 0), 1)),  # 10^40: beyond 16 bytes
])
def test_binary_numeric_becomes_redshifts_scaled_integer(value, modifier, redshift):
    assert data_row(row(value), ((0, modifier),)) == (row(redshift) if redshift != value else None)


def test_aclitem_arrays_go_as_text_and_come_back_as_binary_arrays():
    columns = ((1, ACL_ARRAY),)
    bind = b"p\0s\0" + struct.pack("!hhhi", 1, 1, 1, 2) + b"\0\x07" + struct.pack("!hhh", 2, 1, 1)
    assert bind_text_results(bind, columns) == bind[:-4] + struct.pack("!hh", 1, 0)
    assert bind_text_results(bind[:-6] + struct.pack("!hh", 1, 1), columns) is None  # one code for all
    assert bind_text_results(bind, ((1, TIME_24),)) is None
    text = b'{a=r/b,"c d=r/b",NULL}'
    binary = struct.pack("!iiIii", 1, 1, 1033, 3, 1) + struct.pack("!i", 5) + b"a=r/b" + \
        struct.pack("!i", 7) + b"c d=r/b" + struct.pack("!i", -1)
    assert data_row(row(text, b"{}"), ((0, ACL_ARRAY), (1, ACL_ARRAY))) == \
        row(binary, struct.pack("!iiI", 0, 0, 1033))


def test_varbyte_goes_as_its_bytes_under_protocol_2():
    body = struct.pack("!h", 1) + field(b"vb", 16501)
    assert row_description(body, BINARY)[1] == ((0, VARBYTE_BYTES),)
    assert data_row(row(b"\\x6162ff", b"a\\000"), ((0, VARBYTE_BYTES), (1, VARBYTE_BYTES))) == row(b"ab\xff", b"a\0")


def test_postgis_types_are_shown_as_redshifts_and_their_values_pass_as_they_are():
    spatial = RedshiftTypes.from_names({**OURS, "geometry": 17001, "geography": 17002})
    assert spatial.spatial and not TYPES.spatial
    body = struct.pack("!h", 2) + field(b"g", 17001) + field(b"h", 17002, 1)
    assert row_description(body, spatial) == (struct.pack("!h", 2) + field(b"g", 3000) + field(b"h", 3001, 1), ())
    assert parse_types(struct.pack("!HI", 1, 3000), spatial) == (struct.pack("!HI", 1, 17001), {})
