"""Redshift's own types through the proxy, with the drivers people use on Redshift: VARBYTE (and
its synonyms VARBINARY and BINARY VARYING, FROM_HEX/TO_HEX/TO_VARBYTE/FROM_VARBYTE and its casts),
INTERVAL YEAR TO MONTH and DAY TO SECOND (intervaly2m, intervald2s) and ABSTIME: values written
and read back, and the type OIDs the drivers see are Redshift's (redshift_connector's
utils/oids.py: VARBYTE 6551, INTERVALY2M 1188, INTERVALD2S 1190, ABSTIME 702). TIME and TIMETZ
'24:00:00' read as Redshift's 00:00:00. GEOMETRY and GEOGRAPHY: test_spatial.py.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import asyncpg
import psycopg
import pytest
import redshift_connector
from redshift_connector.error import ProgrammingError
from redshift_connector.interval import IntervalDayToSecond, IntervalYearToMonth

from ..conftest import ADMIN, ADMIN_PASSWORD, unique
from .test_data_api import data_client, data_proxy, run  # noqa: F401 (a fixture)

VARBYTE, INTERVALY2M, INTERVALD2S, ABSTIME = 6551, 1188, 1190, 702


@pytest.fixture
def rsc(proxy):
    with redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=ADMIN,
                                    password=ADMIN_PASSWORD, timeout=20, ssl=False) as conn:
        conn.autocommit = True
        yield conn


@pytest.fixture
def table(proxy):
    """A table with a column of each type, under each of Redshift's names for it."""
    name = unique("types")
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {name} (id int, vb varbyte(8), vbin varbinary(8), bv binary varying, "
                     f"y2m interval year to month, d2s interval day to second)")
    yield name
    with proxy.connect() as conn:
        conn.execute(f"DROP TABLE {name}")


def test_redshift_connector_reads_and_writes_each_type(rsc, table):
    with rsc.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} VALUES (1, 'abc', from_hex('6869'), to_varbyte('YQ==', 'base64'), "
                       f"'1-1', '10 days 48 hours')")
        # Parameters as the driver sends them: bytes as hexadecimal text, Redshift's intervals in
        # binary with Redshift's OIDs.
        cursor.execute(f"INSERT INTO {table} (id, vb, y2m, d2s) VALUES (%s, %s, %s, %s)",
                       (2, b"\x01\x02", IntervalYearToMonth(-(2**31)), IntervalDayToSecond(2**63 - 1)))
        cursor.execute(f"SELECT vb, vbin, bv, y2m, d2s, to_hex(vb) FROM {table} ORDER BY id")
        assert [column[1] for column in cursor.description] == [VARBYTE, VARBYTE, VARBYTE, INTERVALY2M,
                                                               INTERVALD2S, 25]
        first, second = cursor.fetchall()
    # The driver reads VARBYTE's hexadecimal and decodes its bytes as UTF-8, as against Redshift.
    assert first[:3] == ["abc", "hi", "a"]
    assert first[3] == IntervalYearToMonth(13)
    assert first[4] == IntervalDayToSecond(12 * 86_400_000_000)
    assert first[5] == "616263"
    # b"\x01\x02" went as the text '0102': those four characters are the value, as on Redshift.
    assert second[0] == "0102" and second[5] == "30313032"
    assert second[3] == IntervalYearToMonth(-(2**31)) and second[4] == IntervalDayToSecond(2**63 - 1)


def test_redshift_connector_literals_functions_and_abstime(rsc):
    with rsc.cursor() as cursor:
        cursor.execute("SELECT '37 months'::intervaly2m, '10 23:59:59.999999'::intervald2s, "
                       "'2022-06-10'::abstime, 'infinity'::abstime, from_varbyte(to_varbyte('01001101', 'binary'), 'hex'), "
                       "from_varbyte('a'::varbyte, 'binary'), len('abc'::varbyte), 'ab'::varbyte || 'c'::varbyte, "
                       "(5::integer)::varbyte::integer, to_hex(5::smallint::varbyte)")
        assert [column[1] for column in cursor.description][:4] == [INTERVALY2M, INTERVALD2S, ABSTIME, ABSTIME]
        row = cursor.fetchone()
    utc = datetime.timezone.utc
    assert row[:4] == [IntervalYearToMonth(37), IntervalDayToSecond(11 * 86_400_000_000 - 1),
                       datetime.datetime(2022, 6, 10, tzinfo=utc), datetime.datetime(2038, 1, 19, 3, 14, 4, tzinfo=utc)]
    assert row[4:] == ["4d", "01100001", 3, "abc", 5, "0005"]


def test_interval_parameter_beside_unused_ones(rsc):
    """One Parse with both rewrites: the interval parameter's Redshift OID made the backend's
    (its binary value converted), the unused untyped ones declared text."""
    with rsc.cursor() as cursor:
        cursor.execute("select %s", (IntervalYearToMonth(14), "unused", "also unused"))
        assert [column[1] for column in cursor.description] == [INTERVALY2M]
        assert cursor.fetchall() == ([IntervalYearToMonth(14)],)


def test_varbyte_length_limit_and_prepared_rows(rsc, table):
    with rsc.cursor() as cursor:
        with pytest.raises(ProgrammingError) as refused:
            cursor.execute(f"INSERT INTO {table} (id, vb) VALUES (1, 'too long for 8')")
        assert refused.value.args[0]["C"] == "22001"
        assert refused.value.args[0]["M"] == "value too long for type varbyte(8)"
        # The same prepared statement run again (the driver's cache): rows still converted.
        for value in ("x", "yz"):
            cursor.execute(f"INSERT INTO {table} (id, vb) VALUES (%s, %s)", (len(value), value))
        for _ in range(2):
            cursor.execute(f"SELECT id, vb, 'text ' || chr(92) || 'x41' FROM {table} WHERE vb IS NOT NULL ORDER BY id")
            assert cursor.fetchall() == ([1, "x", "text \\x41"], [2, "yz", "text \\x41"])


def test_psycopg_sees_redshifts_text_and_the_types_by_name(proxy, table):
    """A client that is not one of Redshift's drivers gets the backend's OIDs, which it can look
    up in pg_type (asyncpg and pgjdbc do): they name the types as Redshift does."""
    with proxy.connect() as conn:
        conn.execute(f"INSERT INTO {table} (id, vb, y2m, d2s) VALUES (1, %s, '37 months', '1 day 02:03:04')",
                     (b"\x00\xfe",))
        names = {psycopg.types.TypeInfo.fetch(conn, name).oid: name for name in ("varbyte", "intervaly2m", "intervald2s")}
        # The simple and the extended protocol; bytea_output = escape changes nothing.
        for execute in (lambda sql: conn.execute(sql), lambda sql: conn.execute(sql, prepare=True),
                        lambda sql: conn.cursor().execute(sql, prepare=False)):
            cursor = execute(f"SELECT vb, y2m, d2s, 'text ' || chr(92) || 'x41' FROM {table}")
            assert [names.get(column.type_code) for column in cursor.description][:3] == \
                ["varbyte", "intervaly2m", "intervald2s"]
            assert cursor.fetchall() == [("00fe", "3 years 1 mon", "1 day 02:03:04", "text \\x41")]
            conn.execute("SET bytea_output = escape")
        with pytest.raises(psycopg.errors.UndefinedFunction, match="no binary output function available for type varbyte"):
            conn.cursor(binary=True).execute(f"SELECT vb FROM {table}")


def _columns(cursor, relation: str) -> list:
    cursor.execute("SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale "
                   "FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position", (relation,))
    return [list(row) for row in cursor.fetchall()]


def test_views_and_tables_made_from_literals_have_redshifts_types(rsc):
    """A view, CREATE TABLE AS and SELECT INTO type a literal as Redshift does: 'a' is VARCHAR(1),
    1.23 NUMERIC(3,2), a string cast to TEXT or VARCHAR VARCHAR of its length (PostgreSQL: text
    and numeric without a precision, which dbt's get_columns_in_relation and its type tests read
    back); the values and the columns' names are those written."""
    long = "Lorem ipsum dolor sit amet, " * 16
    view, made, selected = unique("lit_view"), unique("lit_ctas"), unique("lit_into")
    query = (f"select 1.23 as my_num, 'a' as my_char, -0.5 as negative, cast('{long}' as text) as string_col, "
             f"'b'::varchar as cast_char, 12 as my_int, 'caf\u00e9' as accented, 'unnamed', 2.0e3 as floating")
    with rsc.cursor() as cursor:
        cursor.execute(f"create view {view} as ({query})")
        cursor.execute(f"create table {made} diststyle even as {query}")
        cursor.execute(query.replace(" as floating", f" as floating into {selected}"))
        expected = [["my_num", "numeric", None, 3, 2], ["my_char", "character varying", 1, None, None],
                    ["negative", "numeric", None, 1, 1], ["string_col", "character varying", len(long), None, None],
                    ["cast_char", "character varying", 1, None, None], ["my_int", "integer", None, 32, 0],
                    ["accented", "character varying", 5, None, None],  # bytes, as Redshift measures VARCHAR
                    ["?column?", "character varying", 7, None, None], ["floating", "numeric", None, None, None]]
        for relation in (view, made, selected):
            assert _columns(cursor, relation) == expected
            cursor.execute(f"select * from {relation}")
            assert cursor.fetchall() == ([Decimal("1.23"), "a", Decimal("-0.5"), long, "b", 12, "caf\u00e9", "unnamed",
                                          Decimal("2000")],)
        # A union's columns come from all its arms, and a subquery's are its own: left to PostgreSQL.
        cursor.execute(f"create table {made}_union as select 'a' as c union all select 'bb'")
        assert _columns(cursor, f"{made}_union") == [["c", "text", None, None, None]]
        for relation in (view, made, selected, f"{made}_union"):
            cursor.execute(f"drop {'view' if relation == view else 'table'} {relation}")


def test_text_and_varchar_without_length_are_varchar_256(rsc):
    """Redshift has no unlimited text column: TEXT and VARCHAR without a length are VARCHAR(256),
    BPCHAR is CHAR(256), in CREATE TABLE and ALTER TABLE; a longer value is refused as there.
    VARCHAR(MAX) and CHAR(MAX) are VARCHAR(65535) and CHAR(4096)."""
    table = unique("text_cols")
    with rsc.cursor() as cursor:
        cursor.execute(f"create table {table} (a text, b varchar, c character varying, d bpchar, e varchar(10), "
                       f"f char, h varchar(max), i char(MAX))")
        cursor.execute(f"alter table {table} add column g text")
        assert _columns(cursor, table) == [
            ["a", "character varying", 256, None, None], ["b", "character varying", 256, None, None],
            ["c", "character varying", 256, None, None], ["d", "character", 256, None, None],
            ["e", "character varying", 10, None, None], ["f", "character", 1, None, None],
            ["h", "character varying", 65535, None, None], ["i", "character", 4096, None, None],
            ["g", "character varying", 256, None, None]]
        cursor.execute("select cast('abc' as varchar(max))")
        assert cursor.fetchall() == (["abc"],)
        cursor.execute(f"insert into {table} (a, g) values (%s, %s)", ("x" * 256, "y"))
        with pytest.raises(ProgrammingError, match="22001"):
            cursor.execute(f"insert into {table} (a) values (%s)", ("x" * 257,))
        cursor.execute(f"drop table {table}")


def test_time_24_00_reads_as_midnight_and_timetz_as_utc(rsc, proxy):
    """Redshift stores TIME '24:00:00' as 00:00:00, and TIMETZ values in UTC; redshift_connector
    reads TIMETZ in binary and could not make a time of hour 24, or of one west of UTC."""
    name = unique("times")
    with rsc.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (t time, tz timetz)")
        try:
            cursor.execute(f"INSERT INTO {name} VALUES ('24:00:00', '24:00:00 CST'), ('12:30:10', '22:44:54.18 PDT')")
            cursor.execute(f"SELECT t, tz FROM {name} ORDER BY t DESC")
            utc = datetime.timezone.utc
            assert cursor.fetchall() == ([datetime.time(0, 0), datetime.time(6, 0, tzinfo=utc)],
                                         [datetime.time(12, 30, 10), datetime.time(5, 44, 54, 180000, tzinfo=utc)])
            with proxy.connect() as conn:
                assert conn.execute(f"SELECT t::text AS a, t, tz FROM {name} ORDER BY t DESC LIMIT 1").fetchone() == \
                    ("24:00:00", datetime.time(0, 0), datetime.time(6, 0, tzinfo=utc))
            # The zones of redshift_connector's own datatype tests, east and west of UTC.
            cursor.execute(f"DELETE FROM {name}")
            cursor.execute(f"INSERT INTO {name} (tz) VALUES ('00:00:00 EST'), ('12:30:10 WDT'), ('22:44:54.189717 PDT')")
            cursor.execute(f"SELECT tz FROM {name} ORDER BY tz")
            assert cursor.fetchall() == ([datetime.time(3, 30, 10, tzinfo=utc)], [datetime.time(5, 0, tzinfo=utc)],
                                         [datetime.time(5, 44, 54, 189717, tzinfo=utc)])
        finally:
            cursor.execute(f"DROP TABLE {name}")


async def test_asyncpg_reads_and_writes(proxy, table):
    conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=ADMIN, password=ADMIN_PASSWORD,
                                 database="dev", ssl=False)
    try:
        # asyncpg reads and writes the types as text (they are not among its codecs).
        await conn.execute(f"INSERT INTO {table} (id, vb, y2m, d2s) VALUES (1, $1, $2, $3)", "hi", "1-2", "3 days")
        await conn.execute(f"INSERT INTO {table} (id, vb) VALUES (2, from_hex('00ff'))")
        rows = await conn.fetch(f"SELECT vb, y2m, d2s, 'infinity'::abstime AS a FROM {table} ORDER BY id")
        assert [tuple(row) for row in rows] == [("6869", "1 year 2 mons", "3 days", "infinity"),
                                                ("00ff", None, None, "infinity")]
    finally:
        await conn.close()


def test_prepared_statements_keep_the_types_in_transaction_pooling(make_proxy, new_user):
    """backend.pool_mode: transaction: redshift_connector's cached prepared statements, prepared
    again by the proxy in another backend session (under the proxy's own name), still send
    Redshift's binary intervals and read VARBYTE and the intervals as Redshift's."""
    pooled = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=10)
    name, password = new_user()
    table = unique("pooled")

    def connect():
        # Clients whose startup parameters are alike share sessions: these are all the driver's.
        conn = redshift_connector.connect(host=pooled.host, port=pooled.port, database="dev", user=name,
                                          password=password, timeout=20, ssl=False)
        conn.autocommit = True  # each statement its own transaction: the session goes back after it
        return conn

    with connect() as conn:
        cursor = conn.cursor()
        cursor.execute(f"CREATE TABLE {table} (id int, vb varbyte(8), y2m interval year to month, "
                       f"d2s interval day to second)")
        for i in range(3):
            cursor.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                           (i, f"v{i}", IntervalYearToMonth(12 + i), IntervalDayToSecond(-i * 1_000_001)))
            cursor.execute(f"SELECT vb, y2m, d2s, pg_backend_pid() FROM {table} WHERE id = %s", (i,))
            assert [column[1] for column in cursor.description][:3] == [VARBYTE, INTERVALY2M, INTERVALD2S]
            row = cursor.fetchone()
            assert row[:3] == [f"v{i}", IntervalYearToMonth(12 + i), IntervalDayToSecond(-i * 1_000_001)]
            # Another client holds the session the statements were prepared in, in a transaction:
            # they run next in another one, which the proxy prepares them in.
            with connect() as other:
                other.autocommit = False
                held = other.cursor()
                held.execute("SELECT pg_backend_pid()")
                assert held.fetchone()[0] == row[3]  # the session given back last
                cursor.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                               (10 + i, "w", IntervalYearToMonth(-i), IntervalDayToSecond(i)))
                cursor.execute(f"SELECT vb, y2m, d2s, pg_backend_pid() FROM {table} WHERE id = %s", (10 + i,))
                again = cursor.fetchone()
                assert again[:3] == ["w", IntervalYearToMonth(-i), IntervalDayToSecond(i)]
                assert again[3] != row[3]
                other.rollback()
        cursor.execute(f"DROP TABLE {table}")


def test_data_api_names_the_types(data_proxy):  # noqa: F811
    """The Data API's session announces a driver_version, so it sees Redshift's OIDs: its
    ColumnMetadata names the types as Redshift does, their values are Redshift's text."""
    api = data_client(data_proxy)
    described = run(api, "SELECT 'abc'::varbyte AS v, '1-2'::intervaly2m AS y, '1 02:03:04'::intervald2s AS d, "
                         "'2020-01-02'::abstime AS a, TIME '24:00:00' AS t")
    assert described["Status"] == "FINISHED", described
    result = api.get_statement_result(Id=described["Id"])
    assert [c["typeName"] for c in result["ColumnMetadata"]] == ["varbyte", "intervaly2m", "intervald2s", "abstime",
                                                                  "time"]
    assert result["Records"] == [[{"stringValue": "616263"}, {"stringValue": "1 year 2 mons"},
                                  {"stringValue": "1 day 02:03:04"}, {"stringValue": "2020-01-02 00:00:00+00"},
                                  {"stringValue": "00:00:00"}]]
