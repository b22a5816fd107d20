"""A corpus of Redshift SQL as applications send it, run unchanged through the proxy
(strict_redshift on), with the results Redshift's documentation gives."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import os
import re
import subprocess
import threading

import psycopg
import pytest
import redshift_connector

from ..conftest import ADMIN, ADMIN_PASSWORD, USER_PASSWORD, made_before, unique, waits_on_a_lock

D = decimal.Decimal
TS = datetime.datetime

# (query, expected first row); examples from the Amazon Redshift Database Developer Guide where
# it gives one.
QUERIES = [
    ("SELECT datediff(week, '2009-01-01', '2009-12-31')", (52,)),
    ("SELECT datediff(qtr, '1998-07-01', current_date) > 100", (True,)),
    ("SELECT datediff(day, '2020-01-01 23:00', '2020-01-02 01:00')", (1,)),
    ("SELECT datediff(hour, '2020-01-01 23:59', '2020-01-02 00:01')", (1,)),
    ("SELECT datediff(month, '2020-01-31', '2020-02-01')", (1,)),
    ("SELECT datediff(year, '2019-12-31', '2020-01-01')", (1,)),
    ("SELECT datediff(minute, '2020-01-01 00:00:59', '2020-01-01 00:01:00')", (1,)),
    ("SELECT datediff(seconds, '2020-01-01 00:00:00', '2020-01-01 00:01:00')", (60,)),
    ("SELECT dateadd(month, 18, '2008-02-28')", (TS(2009, 8, 28),)),
    ("SELECT dateadd(day, 30, '2008-02-28')", (TS(2008, 3, 29),)),
    ("SELECT dateadd(d, -1, '2008-03-01')", (TS(2008, 2, 29),)),
    ("SELECT dateadd(qtr, 1, '2008-01-15')", (TS(2008, 4, 15),)),
    ("SELECT dateadd(hrs, 36, '2008-01-01')", (TS(2008, 1, 2, 12),)),
    ("SELECT dateadd(week, 2, '2008-01-01')", (TS(2008, 1, 15),)),
    ("SELECT dateadd(year, 1, '2008-02-29')", (TS(2009, 2, 28),)),
    ("SELECT date_part(dow, timestamp '2008-01-05 14:00:00')", (6.0,)),
    ("SELECT date_part(minute, timestamp '2009-01-01 02:08:01')", (8.0,)),
    ("SELECT date_trunc('week', timestamp '2011-07-21 10:32:38')", (TS(2011, 7, 18),)),
    ("SELECT date_trunc(month, timestamp '2011-07-21 10:32:38')", (TS(2011, 7, 1),)),
    ("SELECT trunc(timestamp '2011-07-21 10:32:38')", (datetime.date(2011, 7, 21),)),
    ("SELECT add_months('2008-03-31', 1)", (TS(2008, 4, 30),)),
    ("SELECT months_between('1969-01-18', '1969-03-18')", (-2.0,)),
    ("SELECT convert_timezone('UTC', 'America/New_York', '2008-03-05 12:25:29')", (TS(2008, 3, 5, 7, 25, 29),)),
    ("SELECT convert_timezone('Europe/Paris', '2008-03-05 12:25:29')", (TS(2008, 3, 5, 13, 25, 29),)),
    ("SELECT getdate() <= sysdate + interval '1 second'", (True,)),
    ("SELECT sysdate IS NOT NULL, trunc(sysdate) = current_date", (True, True)),
    ("SELECT extract(year FROM getdate()) >= 2024", (True,)),
    ("SELECT nvl(NULL, 'unknown')", ("unknown",)),
    ("SELECT nvl(5, 0)", (5,)),
    ("SELECT nvl2(NULL, 'set', 'missing'), nvl2('x', 'set', 'missing')", ("missing", "set")),
    ("SELECT coalesce(NULL, NULL, 'third')", ("third",)),
    ("SELECT nullif('a', 'a') IS NULL", (True,)),
    ("SELECT len('français')", (8,)),
    ("SELECT len('abc  ')", (5,)),
    ("SELECT charindex('dog', 'fish')", (0,)),
    ("SELECT charindex('fish', 'dogfish')", (4,)),
    ("SELECT strtol('abcd1234', 16)", (2882343476,)),
    ("SELECT strtol('1234567', 10)", (1234567,)),
    ("SELECT strtol('110', 2)", (6,)),
    ("SELECT strtol('0xf', 16)", (15,)),
    ("SELECT json_extract_path_text('{\"f2\":{\"f3\":1},\"f4\":{\"f5\":99,\"f6\":\"star\"}}', 'f4', 'f6')", ("star",)),
    ("SELECT json_extract_path_text('{\"a\":1}', 'b')", ("",)),
    ("SELECT json_extract_array_element_text('[111,112,113]', 2)", ("113",)),
    ("SELECT json_array_length('[11,12,13,{\"f1\":21,\"f2\":[25,26]},14]')", (5,)),
    ("SELECT is_valid_json('{\"a\":2}'), is_valid_json('{\"a\":2'), is_valid_json_array('[1,2]')", (True, False, True)),
    ("SELECT split_part('abc$def$ghi', '$', 2)", ("def",)),
    ("SELECT left('Chicago', 3), right('Chicago', 3)", ("Chi", "ago")),
    ("SELECT replace('catsup', 'cat', 'dog')", ("dogsup",)),
    ("SELECT translate('mint tea', 'inea', 'osin')", ("most tin",)),
    ("SELECT lpad('5', 3, '0'), rpad('ab', 4, '-')", ("005", "ab--")),
    ("SELECT btrim('xyzaxyz', 'xyz')", ("a",)),
    ("SELECT initcap('defining success')", ("Defining Success",)),
    ("SELECT md5('Amazon Redshift')", ("f7415e33f972c03abd4f3fed36748f7a",)),
    ("SELECT position('fish' in 'dogfish')", (4,)),
    ("SELECT substring('caterpillar', 6, 4)", ("pill",)),
    ("SELECT regexp_replace('DonecFri@nulla.edu', '@.*\\\\.(org|gov|com|edu|ca)$', '')", ("DonecFri",)),
    ("SELECT 'a' || 'b' || 'c'", ("abc",)),
    ("SELECT cast('2008-02-18' AS date)", (datetime.date(2008, 2, 18),)),
    ("SELECT '12.5'::decimal(5,2) * 2", (D("25.00"),)),
    ("SELECT round(3.14159, 2), ceiling(1.2), floor(1.8)", (D("3.14"), D("2"), D("1"))),
    ("SELECT abs(-5), mod(10, 3), power(2, 10)::int", (5, 1, 1024)),
    ("SELECT to_char(timestamp '2009-12-31 23:15:59', 'YYYY-MM-DD HH24:MI:SS')", ("2009-12-31 23:15:59",)),
    ("SELECT to_date('02 Oct 2001', 'DD Mon YYYY')", (datetime.date(2001, 10, 2),)),
    ("SELECT case when 1 > 0 then 'yes' else 'no' end", ("yes",)),
    ("SELECT version() LIKE 'PostgreSQL 8.0.2%Redshift%'", (True,)),
    ("SELECT decode(2, 1, 'one', 2, 'two', 'other')", ("two",)),
    ("SELECT decode(3, 1, 'one', 2, 'two', 'other')", ("other",)),
    ("SELECT decode(3, 1, 'one', 2, 'two')", (None,)),
    ("SELECT decode(NULL, 1, 'one', NULL, 'null matches null', 'other')", ("null matches null",)),
    ("SELECT decode(date '2008-06-01', '2008-06-01', 'June 1st, 2008')", ("June 1st, 2008",)),
    ("SELECT decode(decode(1, 1, 2), 2, 'nested', 'no')", ("nested",)),
    ("SELECT convert_from(decode('aGk=', 'base64'), 'UTF8')", ("hi",)),  # PostgreSQL's decode(text, format)
    ("SELECT json_serialize(json_parse('{\"a\":1,\"b\":[1,\"x\",null,true]}'))", ('{"a":1,"b":[1,"x",null,true]}',)),
    ("SELECT is_array(json_parse('[1,2]')), is_object(json_parse('[1,2]')), is_scalar(json_parse('\"s\"'))",
     (True, False, True)),
    ("SELECT is_object(json_parse('{\"a\":{}}')), is_scalar(json_parse('{}')), json_parse(NULL) IS NULL",
     (True, False, True)),
]


@pytest.fixture(scope="module")
def conn(postgres, tmp_path_factory):
    from ..conftest import RunningProxy, proxy_config

    proxy = RunningProxy(proxy_config(tmp_path_factory.mktemp("redshift-sql"), strict_redshift=True),
                         postgres.target).start()
    with proxy.connect() as connection:
        yield connection
    proxy.stop()


@pytest.mark.parametrize("query, expected", QUERIES)
def test_functions(conn, query, expected):
    assert conn.execute(query).fetchone() == expected


def test_aggregates(conn):
    table = unique("t")
    conn.execute(f"CREATE TEMP TABLE {table} (g varchar(5), v int) DISTSTYLE EVEN")
    conn.execute(f"INSERT INTO {table} VALUES ('a', 1), ('a', 2), ('a', 3), ('a', 4), ('b', 7), ('b', NULL)")
    rows = conn.execute(f"SELECT g, listagg(v, ',') WITHIN GROUP (ORDER BY v DESC), median(v), "
                        f"approximate count(distinct v), count(*) FROM {table} GROUP BY g ORDER BY g").fetchall()
    assert rows == [("a", "4,3,2,1", 2.5, 4, 4), ("b", "7", 7.0, 1, 2)]
    cur = conn.execute(f"SELECT listagg(DISTINCT g) WITHIN GROUP (ORDER BY g) FROM {table}")
    assert cur.fetchone() == ("ab",) and cur.description[0].name == "listagg"
    assert conn.execute(f"SELECT listagg(g, '|') FROM (SELECT g FROM {table} ORDER BY v LIMIT 2) x").fetchone()[0] \
        in ("a|a",)


def test_decode_on_a_table(conn):
    """The documentation's CATEGORY example: abbreviations to names, others to 'Unknown'."""
    table = unique("category")
    conn.execute(f"CREATE TEMP TABLE {table} (catid int, catname varchar(10))")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'MLB'), (2, 'NHL'), (3, 'NFL'), (4, 'NBA'), (5, 'MLS'), "
                 f"(6, 'Musicals'), (7, NULL)")
    cur = conn.execute(f"select catid, decode(catname, 'NHL', 'National Hockey League', 'MLB', 'Major League Baseball', "
                       f"'MLS', 'Major League Soccer', 'NFL', 'National Football League', 'NBA', "
                       f"'National Basketball Association', 'Unknown') from {table} order by catid")
    assert cur.description[1].name == "case"
    assert cur.fetchall() == [(1, "Major League Baseball"), (2, "National Hockey League"),
                              (3, "National Football League"), (4, "National Basketball Association"),
                              (5, "Major League Soccer"), (6, "Unknown"), (7, "Unknown")]


def test_super_columns(conn):
    table = unique("t")
    conn.execute(f"CREATE TABLE {table} (id int, doc SUPER)")
    try:
        conn.execute(f"INSERT INTO {table} VALUES (1, json_parse('{{\"tags\":[\"a\",\"b\"]}}')), (2, json_parse('[1]'))")
        rows = conn.execute(f"SELECT id, json_serialize(doc), is_object(doc), is_array(doc) FROM {table} "
                            f"ORDER BY id").fetchall()
        assert rows == [(1, '{"tags":["a","b"]}', True, False), (2, "[1]", False, True)]
        assert conn.execute("SELECT type FROM pg_table_def WHERE tablename = %s AND \"column\" = 'doc'",
                            (table,)).fetchone() == ("super",)
    finally:
        conn.execute(f"DROP TABLE {table}")


# CREATE TABLE as applications write it -> what svv_table_info says.
DDL = [
    ("CREATE TABLE {t} (id int, name varchar(20))", ("AUTO(EVEN)", None, "N")),
    ("CREATE TABLE {t} (id int, name varchar(20)) DISTSTYLE EVEN", ("EVEN", None, "N")),
    ("CREATE TABLE {t} (id int, name varchar(20)) DISTSTYLE ALL", ("ALL", None, "N")),
    ("CREATE TABLE {t} (id int, name varchar(20)) DISTSTYLE AUTO", ("AUTO(EVEN)", None, "N")),
    ("CREATE TABLE {t} (id int DISTKEY, name varchar(20))", ("KEY(id)", None, "N")),
    ("CREATE TABLE {t} (id int, name varchar(20)) DISTKEY(name)", ("KEY(name)", None, "N")),
    ("CREATE TABLE {t} (id int, name varchar(20)) DISTSTYLE KEY DISTKEY(id) SORTKEY(name)", ("KEY(id)", "name", "N")),
    ("CREATE TABLE {t} (id int SORTKEY, name varchar(20))", ("AUTO(EVEN)", "id", "N")),
    ("CREATE TABLE {t} (id int, ts timestamp) COMPOUND SORTKEY(ts, id)", ("AUTO(EVEN)", "ts", "N")),
    ("CREATE TABLE {t} (id int, ts timestamp) INTERLEAVED SORTKEY(ts, id)", ("AUTO(EVEN)", "INTERLEAVED", "N")),
    ("CREATE TABLE {t} (id int, ts timestamp) SORTKEY AUTO", ("AUTO(EVEN)", None, "N")),
    ("CREATE TABLE {t} (id int ENCODE az64, name varchar(20) ENCODE zstd)", ("AUTO(EVEN)", None, "Y")),
    ("CREATE TABLE {t} (id int ENCODE delta, c char(1) ENCODE bytedict, n numeric(8,2) ENCODE mostly16) "
     "DISTSTYLE EVEN", ("EVEN", None, "Y")),
    ("CREATE TABLE {t} (id int ENCODE runlength, s varchar(100) ENCODE lzo, x varchar(10) ENCODE text255)",
     ("AUTO(EVEN)", None, "Y")),
    ("CREATE TABLE {t} (id int, name varchar(20)) ENCODE AUTO", ("AUTO(EVEN)", None, "Y, AUTO(ENCODE)")),
    ("CREATE TABLE {t} (id int, name varchar(20)) BACKUP NO", ("AUTO(EVEN)", None, "N")),
    ("CREATE TABLE {t} (id int IDENTITY(1, 1), name varchar(20) NOT NULL DEFAULT 'x') DISTSTYLE ALL",
     ("ALL", None, "N")),
    ("CREATE TABLE {t} (id bigint IDENTITY(100, 5) ENCODE az64, amount decimal(18,4) ENCODE az64, "
     "created timestamp DEFAULT getdate() ENCODE raw, PRIMARY KEY (id)) DISTKEY(id) SORTKEY(created)",
     ("KEY(id)", "created", "Y")),
    ("CREATE TABLE IF NOT EXISTS {t} (id int) DISTSTYLE EVEN", ("EVEN", None, "N")),
    ("CREATE TEMP TABLE {t} (id int) DISTKEY(id)", None),
    ("CREATE TABLE {t} (id integer NOT NULL, \"select\" varchar(10), \"DistKey\" int) DISTKEY(id)",
     ("KEY(id)", None, "N")),
]


@pytest.mark.parametrize("ddl, expected", DDL)
def test_table_ddl(conn, ddl, expected):
    table = unique("t")
    cur = conn.execute(ddl.format(t=table))
    assert cur.statusmessage == "CREATE TABLE"
    try:
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
        if expected is not None:
            row = conn.execute('SELECT diststyle, sortkey1, encoded FROM svv_table_info WHERE "table" = %s',
                               (table,)).fetchone()
            assert row == expected
    finally:
        conn.execute(f"DROP TABLE {table}")


def test_identity_ctas_like_and_alter(conn):
    base, copy, ctas = unique("t"), unique("t"), unique("t")
    conn.execute(f"CREATE TABLE {base} (id int IDENTITY(10, 10), v varchar(5) DEFAULT 'd' ENCODE zstd) SORTKEY(id)")
    conn.execute(f"INSERT INTO {base} (v) VALUES ('a'), ('b')")
    assert conn.execute(f"SELECT id, v FROM {base} ORDER BY id").fetchall() == [(10, "a"), (20, "b")]
    conn.execute(f"CREATE TABLE {copy} (LIKE {base} INCLUDING DEFAULTS)")
    conn.execute(f"INSERT INTO {copy} (id) VALUES (1)")
    assert conn.execute(f"SELECT v FROM {copy}").fetchone() == ("d",)
    conn.execute(f"CREATE TABLE {ctas} DISTKEY(v) SORTKEY(id) AS SELECT * FROM {base}")
    assert conn.execute(f"SELECT count(*) FROM {ctas}").fetchone() == (2,)
    cur = conn.execute(f"ALTER TABLE {base} ALTER DISTKEY v")
    assert cur.statusmessage == "ALTER TABLE"
    conn.execute(f"ALTER TABLE {base} ALTER DISTSTYLE ALL")
    conn.execute(f"ALTER TABLE {base} ALTER COMPOUND SORTKEY (v, id)")
    conn.execute(f"ALTER TABLE {base} ALTER COLUMN v ENCODE lzo")
    assert conn.execute('SELECT diststyle, sortkey1, sortkey_num FROM svv_table_info WHERE "table" = %s',
                        (base,)).fetchone() == ("ALL", "v", 2)
    defs = conn.execute("SELECT \"column\", encoding, sortkey FROM pg_table_def WHERE tablename = %s ORDER BY 1",
                        (base,)).fetchall()
    assert defs == [("id", "none", 2), ("v", "lzo", 1)]
    assert conn.execute(f'SELECT diststyle FROM svv_table_info WHERE "table" = %s', (ctas,)).fetchone() == ("KEY(v)",)
    for table in (base, copy, ctas):
        conn.execute(f"DROP TABLE {table}")


def test_a_foreign_key_is_named_as_redshift_names_it(conn):
    """An unnamed foreign key over several columns is named after the table and its first column
    (Redshift's PostgreSQL 8 did so; PostgreSQL 15 names it after every column); drivers show it."""
    parent, child = unique("parent"), unique("child")
    conn.execute(f"CREATE TEMP TABLE {parent} (x int UNIQUE, y int, PRIMARY KEY (x, y))")
    conn.execute(f"CREATE TEMP TABLE {child} (a int REFERENCES {parent} (x), b int, "
                 f"FOREIGN KEY (a, b) REFERENCES {parent} (x, y), FOREIGN KEY (b, a) REFERENCES {parent} (x, y))")
    names = conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f' "
                         "ORDER BY conname", (child,)).fetchall()
    assert names == [(f"{child}_a_fkey",), (f"{child}_a_fkey1",), (f"{child}_b_fkey",)]
    conn.execute(f"DROP TABLE {child}, {parent}")


@pytest.mark.parametrize("statement, feature", [
    ("CREATE INDEX ON pg_class_like_table (a)", "CREATE INDEX"),
    ("CREATE SEQUENCE s1", "CREATE SEQUENCE"),
    ("LISTEN channel", "LISTEN"),
    ("NOTIFY channel", "NOTIFY"),
    ("CREATE TYPE mood AS ENUM ('sad')", "CREATE TYPE"),
    ("CREATE DOMAIN posint AS integer", "CREATE DOMAIN"),
    ("CREATE TABLE chk (a int CHECK (a > 0))", "CHECK and EXCLUDE constraints"),
    ("CREATE TABLE part (a int) PARTITION BY RANGE (a)", "table partitioning"),
    ("SELECT * FROM (VALUES (1), (2)) AS v(a)", "VALUES as a table"),
    ("CLUSTER", "CLUSTER"),
    ("CHECKPOINT", "CHECKPOINT"),
])
def test_postgresql_only_features_fail_as_on_redshift(conn, statement, feature):
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=f"Amazon Redshift does not support {feature}"):
        conn.execute(statement)


@pytest.mark.parametrize("column_type, shown", [
    ("bytea", "bytea"), ("json", "json"), ("uuid", "uuid"), ("serial", "serial"), ("money", "money"),
    ("inet", "inet"), ("int4range", "int4range"), ("tsvector", "tsvector"), ("regclass", "regclass"),
    ("record", "record"), ("anyelement", "anyelement"), ("interval", "interval"), ("interval day", "interval"),
    ("int[]", "int4[]"), ("pg_catalog.xml", "xml"),
])
def test_postgresql_only_column_types_fail_in_redshift_words(conn, column_type, shown):
    """Redshift has no such column type: CREATE TABLE and ALTER TABLE fail with its message,
    and nothing is made."""
    with pytest.raises(psycopg.errors.FeatureNotSupported) as failure:
        conn.execute(f"CREATE TEMPORARY TABLE t1 (a {column_type})")
    assert failure.value.diag.message_primary == f'Column "t1.a" has unsupported type "{shown}".'
    conn.execute("CREATE TEMPORARY TABLE t1 (a int)")
    with pytest.raises(psycopg.errors.FeatureNotSupported,
                       match=re.escape(f'Column "t1.b" has unsupported type "{shown}"')):
        conn.execute(f"ALTER TABLE t1 ADD COLUMN b {column_type}")
    with pytest.raises(psycopg.errors.FeatureNotSupported,
                       match=re.escape(f'Column "t1.a" has unsupported type "{shown}"')):
        conn.execute(f"ALTER TABLE t1 ALTER COLUMN a TYPE {column_type}")
    assert [c.name for c in conn.execute("SELECT * FROM t1").description] == ["a"]
    conn.execute("DROP TABLE t1")


@pytest.mark.parametrize("column_type", ["anyelement", "record", "cstring", "void", "trigger"])
def test_pseudo_type_columns_fail_in_redshift_words_without_strict_mode(proxy, column_type):
    """No column can have a pseudo-type in PostgreSQL either: without strict_redshift the
    refusal is still Redshift's, as AWS's driver tests expect."""
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as failure:
            admin.execute(f"CREATE TEMPORARY TABLE t1 (a {column_type})")
        assert failure.value.diag.message_primary == f'Column "t1.a" has unsupported type "{column_type}".'
        admin.execute("CREATE TEMPORARY TABLE t1 (a bytea)")  # PostgreSQL's types are taken


def test_redshift_column_types_are_accepted(conn):
    """Every Redshift column type spelling PostgreSQL has makes a table under strict_redshift."""
    conn.execute("CREATE TEMPORARY TABLE t2 (a smallint, b int2, c integer, d int, e int4, f bigint, g int8,"
                 " h decimal(5,2), i numeric, j real, k float4, l double precision, m float8, n float,"
                 " o boolean, p bool, q char(3), r character(2), s nchar(4), t bpchar, u varchar(5),"
                 " v character varying(6), w text, x date, y timestamp, z timestamp without time zone,"
                 " aa timestamptz, ab timestamp with time zone, ac time, ad timetz, ae time with time zone,"
                 " af interval year to month, ag interval day to second, ah varbyte, ai varbyte(10),"
                 " aj varbinary(5), ak binary varying(4), al intervaly2m, am intervald2s,"
                 " ap interval day to second (4))")
    assert len(conn.execute("SELECT * FROM t2").description) == 40
    conn.execute("ALTER TABLE t2 ADD COLUMN an varbinary")
    conn.execute("ALTER TABLE t2 ADD COLUMN ao interval year to month")
    conn.execute("INSERT INTO t2 (ai, aj, ak, an, af, ag, al, am, ao) VALUES ('abc', 'd', from_hex('ff'), 'e',"
                 " '1-2', '3 04:05:06', '5 years', '2 days', '7 months')")
    row = conn.execute("SELECT ai, aj, ak, an, af::text, ag::text, al::text, am::text, ao::text FROM t2").fetchone()
    assert row == ("616263", "64", "ff", "65", "1 year 2 mons", "3 days 04:05:06", "5 years", "2 days", "7 mons")
    conn.execute("DROP TABLE t2")


def test_interval_day_to_second_keeps_its_precision(conn):
    """INTERVAL DAY TO SECOND (p): values rounded to p fractional digits, and SHOW COLUMNS says p
    (redshift_connector's get_columns reads DECIMAL_DIGITS from it)."""
    table = unique("d2s")
    conn.execute(f"CREATE TABLE {table} (a interval day to second (2), b interval day to second)")
    try:
        conn.execute(f"INSERT INTO {table} VALUES ('1 day 00:00:01.23456', '00:00:01.23456'::interval)")
        assert conn.execute(f"SELECT a::text, b::text FROM {table}").fetchone() == (
            "1 day 00:00:01.23", "00:00:01.23456")
        types = {r[3]: r[7] for r in conn.execute(f"SHOW COLUMNS FROM TABLE dev.public.{table}").fetchall()}
        assert types == {"a": "intervald2s(2)", "b": "intervald2s"}
    finally:
        conn.execute(f"DROP TABLE {table}")


def test_show_server_version_answers_as_redshift(proxy, new_user):
    """SHOW server_version through the proxy: Redshift's 8.0.2 for a superuser (what the
    server_version ParameterStatus says), Redshift's refusal for everyone else, and
    server_version_num unknown, as on Redshift (8.0.2 predates it); never the backend's own
    "15.x (Debian ...)". With psycopg in both protocols, redshift_connector and psql."""
    user, password = new_user()
    with proxy.connect() as admin:
        for cursor in (admin.cursor(), psycopg.ClientCursor(admin)):  # extended, then simple protocol
            cursor.execute("SHOW server_version")
            assert cursor.fetchall() == [("8.0.2",)]
            assert cursor.description[0].name == "server_version" and cursor.statusmessage == "SHOW"
            assert admin.info.parameter_status("server_version") == "8.0.2"
            with pytest.raises(psycopg.errors.UndefinedObject,
                               match='unrecognized configuration parameter "server_version_num"'):
                cursor.execute("show SERVER_VERSION_NUM")
    with proxy.connect(user, password) as conn:
        with conn.transaction():
            conn.execute("SELECT 1")
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match='must be superuser to examine "server_version"'):
                conn.execute("SHOW server_version")
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                conn.execute("SELECT 1")  # the refusal is an error like any other: the transaction is aborted
            raise psycopg.Rollback()
        assert conn.execute("SELECT version() LIKE 'PostgreSQL 8.0.2%Redshift%'").fetchone() == (True,)

    rs = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=ADMIN,
                                    password=ADMIN_PASSWORD, ssl=False, timeout=20)
    try:
        cursor = rs.cursor()
        cursor.execute("SHOW server_version")
        assert cursor.fetchall() == (["8.0.2"],)
    finally:
        rs.close()
    rs = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=user,
                                    password=password, ssl=False, timeout=20)
    try:
        with pytest.raises(redshift_connector.ProgrammingError) as refused:
            rs.cursor().execute("SHOW server_version")
        assert refused.value.args[0]["C"] == "42501"
        assert refused.value.args[0]["M"] == 'must be superuser to examine "server_version"'
    finally:
        rs.close()

    shown = subprocess.run(["psql", "-X", "-At", "-c", "SHOW server_version",
                            f"host={proxy.host} port={proxy.port} user={ADMIN} dbname=dev sslmode=disable"],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "PGPASSWORD": ADMIN_PASSWORD})
    assert (shown.returncode, shown.stdout) == (0, "8.0.2\n"), shown.stderr


# A condition that is a bare integer (Redshift reads WHERE 1 as WHERE true) or an integer in an
# expression (WHERE 1 = 1 AND ..., as dbt and query builders write): rows of ({t} holding a = 1, 2, 3).
CONDITIONS = [
    ("SELECT a FROM {t} WHERE 1 ORDER BY a", [1, 2, 3]),
    ("SELECT a FROM {t} WHERE 0", []),
    ("SELECT a FROM {t} WHERE 1 AND a > 1 ORDER BY a", [2, 3]),
    ("SELECT a FROM {t} WHERE 0 OR a = 2", [2]),
    ("SELECT a FROM {t} WHERE 1 = 1 AND a > 1 ORDER BY a", [2, 3]),
    ("SELECT a FROM {t} WHERE 0 = 1", []),
    ("SELECT a FROM {t} WHERE 1 + 1 = 2 AND a = 3", [3]),
    ("SELECT a FROM {t} WHERE 1 IS NOT NULL AND a = 1", [1]),
    ("SELECT a FROM {t} WHERE 1 BETWEEN 0 AND 2 AND a = 1", [1]),
    ("SELECT a FROM {t} WHERE 1 IN (1) AND a = 2", [2]),
    ("SELECT a FROM {t} WHERE 1 = 0 OR a = 2", [2]),
    ("SELECT a FROM {t} GROUP BY a HAVING 1 = 1 AND a < 3 ORDER BY a", [1, 2]),
    ("SELECT a FROM {t} GROUP BY a HAVING 1 AND a < 2", [1]),
    ("SELECT x.a FROM {t} x JOIN {t} y ON 1 = 1 AND x.a = y.a WHERE 1 = 1 ORDER BY 1", [1, 2, 3]),
    ("SELECT x.a FROM {t} x JOIN {t} y ON 0 = 1", []),
    ("SELECT count(*) FROM {t} x JOIN {t} y ON 1", [9]),
    ("SELECT a FROM (SELECT a FROM {t} WHERE 1 = 1) s WHERE 1 AND a = 3", [3]),
    ("(SELECT a FROM {t} WHERE 1 = 1 EXCEPT SELECT a FROM {t} WHERE 0 = 1) ORDER BY a", [1, 2, 3]),
]


def test_integer_conditions_in_update_and_delete(conn):
    table = unique("t")
    conn.execute(f"CREATE TEMP TABLE {table} (a int, b int)")
    conn.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0), (3, 0)")
    assert conn.execute(f"UPDATE {table} SET b = 1 WHERE 1 = 1 AND a > 1").rowcount == 2
    assert conn.execute(f"UPDATE {table} SET b = 2 WHERE 0 = 1").rowcount == 0
    assert conn.execute(f"UPDATE {table} SET b = b + 10 WHERE 1").rowcount == 3
    assert conn.execute(f"DELETE FROM {table} WHERE 1 = 1 AND a = 1").rowcount == 1
    assert conn.execute(f"DELETE FROM {table} WHERE 0").rowcount == 0
    assert conn.execute(f"SELECT a, b FROM {table} ORDER BY a").fetchall() == [(2, 11), (3, 11)]
    assert conn.execute(f"DELETE FROM {table} WHERE 1").rowcount == 2


# SELECT TOP n, subqueries in FROM without an alias and numbers run into names, as Redshift reads
# them: rows of ({t} holding a = 1, 2, 3).
QUERY_FORMS = [
    ("SELECT TOP 2 a FROM {t} ORDER BY a DESC", [3, 2]),
    ("select top 1 distinct a from {t} order by a", [1]),
    ("SELECT a FROM {t} WHERE a IN (SELECT TOP 2 a FROM {t} ORDER BY a) ORDER BY a", [1, 2]),
    ("SELECT count(*) FROM (SELECT TOP 2 a FROM {t})", [2]),
    ("SELECT count(*) FROM (SELECT a FROM {t} WHERE a > 1)", [2]),
    ("SELECT max(a) FROM (SELECT a FROM {t}) JOIN (SELECT a AS b FROM {t}) ON a = b", [3]),
    ("SELECT a FROM {t}, (SELECT 2 AS b) WHERE a = b", [2]),
    ("SELECT CASE WHEN a = 1 THEN 10WHEN a = 2 THEN 20ELSE 30END FROM {t} ORDER BY a", [10, 20, 30]),
    ("SELECT a FROM {t} WHERE a = 2OR a = 3 ORDER BY a", [2, 3]),
]


@pytest.mark.parametrize("query, expected", CONDITIONS + QUERY_FORMS)
def test_redshift_query_forms(conn, query, expected):
    table = unique("t")
    conn.execute(f"CREATE TEMP TABLE {table} (a int)")
    conn.execute(f"INSERT INTO {table} VALUES (1), (2), (3)")
    assert [row[0] for row in conn.execute(query.format(t=table)).fetchall()] == expected


def test_select_top_in_a_set_operation_is_refused(conn):
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="SELECT TOP in a UNION"):
        conn.execute("SELECT TOP 1 1 UNION SELECT 2")


def test_not_null_violations_in_redshifts_words(conn, proxy):
    """Redshift's words (UNVERIFIED: as its users report them), through psycopg and AWS's driver."""
    table = unique("t")
    conn.execute(f"CREATE TABLE {table} (id int NOT NULL, name varchar(10))")
    try:
        with pytest.raises(psycopg.errors.InternalError_) as refused:
            conn.execute(f"INSERT INTO {table} (name) VALUES ('x')")
        assert refused.value.diag.message_primary == "Cannot insert a NULL value into column id"
        rs = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=ADMIN,
                                        password=ADMIN_PASSWORD, ssl=False, timeout=20)
        try:
            rs.cursor().execute(f"CREATE TEMP TABLE {table} (id int NOT NULL)")
            with pytest.raises(redshift_connector.ProgrammingError) as refused:
                rs.cursor().execute(f"INSERT INTO {table} VALUES (NULL)")
            assert (refused.value.args[0]["C"], refused.value.args[0]["M"]) == (
                "XX000", "Cannot insert a NULL value into column id")
        finally:
            rs.close()
    finally:
        conn.execute(f"DROP TABLE {table}")


def test_svv_table_info_as_dbt_docs_generate_reads_it(conn):
    """dbt asks has_table_privilege(current_user, 'svv_table_info', 'SELECT') and then reads
    Redshift's columns of it: the name in the string is the catalog view, the columns are there."""
    table = unique("t")
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10)) DISTKEY(id) SORTKEY(id)")
    try:
        conn.execute(f"INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 100) g")
        # the insert's counts reach the statistics now, not after the ANALYZE below (PostgreSQL
        # flushes a backend's at most once a second: under load, after it, as changes since)
        conn.execute("SELECT pg_stat_force_next_flush()")
        assert conn.execute("SELECT has_table_privilege(current_user, 'svv_table_info', 'SELECT'), "
                            "has_table_privilege('pg_catalog.SVV_TABLE_INFO', 'SELECT')").fetchone() == (True, True)
        info = 'SELECT * FROM svv_table_info WHERE "table" = %s'
        cursor = conn.execute(info, (table,))
        assert [c.name for c in cursor.description][:19] == [
            "database", "schema", "table_id", "table", "encoded", "diststyle", "sortkey1", "max_varchar",
            "sortkey1_enc", "sortkey_num", "size", "pct_used", "empty", "unsorted", "stats_off", "tbl_rows",
            "skew_sortkey1", "skew_rows", "estimated_visible_rows"]
        row = dict(zip([c.name for c in cursor.description], cursor.fetchone()))
        assert (row["stats_off"], row["unsorted"], row["skew_rows"]) == (100, 0, 1)  # never analyzed
        assert row["pct_used"] > 0
        conn.execute(f"ANALYZE {table}")
        assert conn.execute('SELECT tbl_rows, stats_off < 100 FROM svv_table_info WHERE "table" = %s',
                            (table,)).fetchone() == (100, True)
    finally:
        conn.execute(f"DROP TABLE {table}")


def test_a_schema_named_in_its_database_and_svv_redshift_columns(conn):
    """dbt with datasharing: true writes CREATE SCHEMA "dev"."s" and reads svv_redshift_columns."""
    schema = unique("s")
    assert conn.execute(f'CREATE SCHEMA IF NOT EXISTS "dev"."{schema}"').statusmessage == "CREATE SCHEMA"
    try:
        conn.execute(f"CREATE TABLE {schema}.t (id int NOT NULL, v varchar(5)) DISTKEY(id) SORTKEY(v)")
        assert conn.execute("SELECT column_name, ordinal_position, data_type, is_nullable, distkey, sortkey "
                            "FROM svv_redshift_columns WHERE database_name = 'dev' AND schema_name = %s ORDER BY 2",
                            (schema,)).fetchall() == [("id", 1, "integer", "NO", True, 0),
                                                      ("v", 2, "character varying", "YES", False, 1)]
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="cross-database references"):
            conn.execute(f"CREATE SCHEMA postgres.{schema}")
        with pytest.raises(psycopg.errors.InvalidCatalogName, match='database "nodb" does not exist'):
            conn.execute(f"DROP SCHEMA nodb.{schema}")
    finally:
        assert conn.execute(f"DROP SCHEMA dev.{schema} CASCADE").statusmessage == "DROP SCHEMA"


def test_a_superusers_views_made_at_once_on_one_schema(proxy, postgres):
    """dbt's threads create views reading one schema in transactions open at the same time (as a
    superuser, whose views shiftguard hands to the shiftguard_views role with SELECT on what they
    read): the second waits for the first's grants instead of failing with "tuple concurrently
    updated"."""
    schema = unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.t (a int)")
    first, second = (psycopg.connect(proxy.conninfo()) for _ in range(2))
    try:
        first.execute(f"CREATE VIEW {schema}.v1 AS SELECT a FROM {schema}.t")
        outcome = []
        other = threading.Thread(target=lambda: outcome.append(
            second.execute(f"CREATE VIEW {schema}.v2 AS SELECT a FROM {schema}.t").statusmessage))
        other.start()
        assert waits_on_a_lock(postgres, f"{schema}.v2")  # the second, on the first's transaction
        first.commit()
        other.join(30)
        assert outcome == ["CREATE VIEW"]
        second.commit()
        with proxy.connect() as admin:
            admin.execute(f"INSERT INTO {schema}.t VALUES (7)")
            assert admin.execute(f"SELECT (SELECT a FROM {schema}.v1), (SELECT a FROM {schema}.v2)").fetchone() == (7, 7)
    finally:
        first.close()
        second.close()
        with proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_table_attributes_follow_the_table_through_renames(conn):
    """DISTKEY and SORTKEY stay with a table renamed (as dbt's table models are), and every
    catalog view says the same; a dropped table's attributes go with it."""
    old, new, other = unique("t"), unique("t"), unique("t")

    def keys(table):
        info = conn.execute('SELECT diststyle, sortkey1, sortkey_num FROM svv_table_info WHERE "table" = %s',
                            (table,)).fetchone()
        defs = conn.execute('SELECT "column", distkey, sortkey FROM pg_table_def WHERE tablename = %s ORDER BY 1',
                            (table,)).fetchall()
        style = conn.execute("SELECT reldiststyle FROM pg_class WHERE relname = %s", (table,)).fetchone()
        attrs = conn.execute("SELECT attname::text, attisdistkey, attsortkeyord FROM pg_attribute "
                             "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY 1", (table,)).fetchall()
        assert defs == attrs  # pg_table_def and the pg_attribute view agree
        return info, defs, style

    conn.execute(f"CREATE TABLE {old} (id int, ts timestamp, v int) DISTKEY(id) COMPOUND SORTKEY(ts, id)")
    try:
        before = keys(old)
        assert before == (("KEY(id)", "ts", 2), [("id", True, 2), ("ts", False, 1), ("v", False, 0)], (1,))
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        assert keys(new) == before
        conn.execute(f"ALTER TABLE {new} ALTER SORTKEY (v)")  # changes the sort key only
        assert keys(new) == (("KEY(id)", "v", 1), [("id", True, 0), ("ts", False, 0), ("v", False, 1)], (1,))
        conn.execute(f"CREATE SCHEMA {other}")
        conn.execute(f"ALTER TABLE {new} SET SCHEMA {other}")
        assert conn.execute('SELECT diststyle FROM svv_table_info WHERE "table" = %s', (new,)).fetchone() \
            == ("KEY(id)",)
        conn.execute(f"ALTER TABLE {other}.{new} SET SCHEMA public")
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {new}")
        conn.execute(f"DROP SCHEMA IF EXISTS {other}")
    conn.execute(f"CREATE TABLE {new} (id int, ts timestamp, v int)")  # the name again: a table of its own
    try:
        assert keys(new) == (("AUTO(EVEN)", None, 0), [("id", False, 0), ("ts", False, 0), ("v", False, 0)], (0,))
    finally:
        conn.execute(f"DROP TABLE {new}")


def test_late_binding_views_survive_their_tables(conn, proxy, new_user):
    """CREATE VIEW ... WITH NO SCHEMA BINDING (dbt's bind: false): the view binds its tables by
    name when queried, so they may be dropped, swapped by renames and made again under it, as
    dbt's table models are; its columns show in pg_get_late_binding_view_cols(); only those who
    may SELECT it read it; its function goes with it."""
    table, view = unique("t"), unique("v")
    conn.execute(f"CREATE TABLE public.{table} (a int)")
    try:
        conn.execute(f"INSERT INTO public.{table} VALUES (1), (2)")
        cur = conn.execute(f"CREATE VIEW public.{view} AS (SELECT a FROM public.{table}) WITH NO SCHEMA BINDING")
        assert cur.statusmessage == "CREATE VIEW"
        assert conn.execute(f"SELECT sum(a) FROM public.{view}").fetchone() == (3,)
        conn.execute(f"DROP TABLE public.{table}")  # no CASCADE needed: nothing binds the view to it
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(f"SELECT * FROM public.{view}")
        conn.execute(f"CREATE TABLE public.{table} (a int)")
        conn.execute(f"INSERT INTO public.{table} VALUES (5)")
        assert conn.execute(f"SELECT sum(a) FROM public.{view}").fetchone() == (5,)
        # dbt's swap: the new table takes the name, the old one is dropped
        conn.execute(f"CREATE TABLE public.{table}__tmp (a int)")
        conn.execute(f"INSERT INTO public.{table}__tmp VALUES (7)")
        conn.execute(f"ALTER TABLE public.{table} RENAME TO {table}__backup")
        conn.execute(f"ALTER TABLE public.{table}__tmp RENAME TO {table}")
        conn.execute(f"DROP TABLE public.{table}__backup CASCADE")
        assert conn.execute(f"SELECT sum(a) FROM public.{view}").fetchone() == (7,)
        conn.execute(f"CREATE OR REPLACE VIEW public.{view} AS SELECT a * 10 AS a FROM public.{table} "
                     "WITH NO SCHEMA BINDING")
        assert conn.execute(f"SELECT sum(a) FROM public.{view}").fetchone() == (70,)
        columns = ("SELECT * FROM pg_get_late_binding_view_cols() cols(view_schema name, view_name name, "
                   "col_name name, col_type varchar, col_num int) WHERE view_name = %s")
        assert conn.execute(columns, (view,)).fetchall() == [("public", view, "a", "integer", 1)]
        user, password = new_user()
        with proxy.connect(user, password) as other:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute(f"SELECT * FROM public.{view}")
            conn.execute(f"GRANT SELECT ON public.{view} TO {user}")
            # A superuser's view reads with the reader's privileges (a deviation: PostgreSQL would
            # exempt a superuser owner from row security)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute(f"SELECT * FROM public.{view}")
            conn.execute(f"GRANT SELECT ON public.{table} TO {user}")
            assert other.execute(f"SELECT sum(a) FROM public.{view}").fetchone() == (70,)
        conn.execute(f"CREATE OR REPLACE VIEW public.{view} AS SELECT a FROM public.{table}")  # bound again
        assert conn.execute(columns, (view,)).fetchall() == []
        conn.execute(f"DROP VIEW public.{view}")
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'late_binding_view_%%' AND "
                            "obj_description(oid, 'pg_proc') LIKE %s", (f"%{view}%",)).fetchone() == (0,)
    finally:
        conn.execute(f"DROP VIEW IF EXISTS public.{view}")
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")


def test_late_binding_view_made_before_its_table(conn, proxy, new_user):
    """A late-binding view may name a table that does not exist yet (dbt makes one again after
    its table was dropped): it is made, querying it fails as the table is missing, and once the
    table is made it reads it, its columns shown with their lengths as Redshift shows them. It
    reads the table with its owner's privileges, as Redshift documents: a reader needs SELECT
    on the view, and the owner on the table."""
    schema, view = f'"{unique("s")} x"', unique("v")  # a name to quote: the view's function is made beside it
    owner, password = new_user()
    reader, _ = new_user()
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {reader}")
        with proxy.connect(owner, password) as made_by:
            cur = made_by.execute(f"CREATE VIEW {schema}.{view} AS SELECT id, name FROM {schema}.later "
                                  "WITH NO SCHEMA BINDING")
            assert cur.statusmessage == "CREATE VIEW"
            with pytest.raises(psycopg.errors.UndefinedTable, match="later\" does not exist"):
                made_by.execute(f"SELECT count(*) FROM {schema}.{view}")
            made_by.execute(f"GRANT SELECT ON {schema}.{view} TO {reader}")
        conn.execute(f"CREATE TABLE {schema}.later (id integer, name varchar(20), extra int)")
        conn.execute(f"INSERT INTO {schema}.later VALUES (1, 'Larry', 0), (2, 'Moe', 0)")
        columns = ("SELECT col_name, col_type, col_num FROM pg_get_late_binding_view_cols() cols(view_schema name, "
                   "view_name name, col_name name, col_type varchar, col_num int) WHERE view_schema = %s")
        assert conn.execute(columns, (schema.strip('"'),)).fetchall() == [
            ("id", "integer", 1), ("name", "character varying(20)", 2)]
        with proxy.connect(reader, password) as other:
            # the owner may not read the table yet: nor may the view's reader through it
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="later"):
                other.execute(f"SELECT * FROM {schema}.{view}")
            conn.execute(f"GRANT SELECT ON {schema}.later TO {owner}")
            assert other.execute(f"SELECT id, name FROM {schema}.{view} ORDER BY id").fetchall() == [
                (1, "Larry"), (2, "Moe")]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute(f"SELECT * FROM {schema}.later")  # the table itself stays closed to the reader
        # and it survives the table being dropped and made again, as any late-binding view does
        conn.execute(f"DROP TABLE {schema}.later")
        conn.execute(f"CREATE TABLE {schema}.later (id integer, name varchar(20))")
        conn.execute(f"INSERT INTO {schema}.later VALUES (3, 'Curly')")
        conn.execute(f"GRANT SELECT ON {schema}.later TO {owner}")
        with proxy.connect(owner, password) as made_by:
            assert made_by.execute(f"SELECT * FROM {schema}.{view}").fetchall() == [(3, "Curly")]
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_late_binding_view_still_missing_its_table(conn):
    """A late-binding view made before its table stays one while the table is still missing
    (other DDL does not bind it), and goes with its function when dropped."""
    view = unique("v")
    conn.execute(f"CREATE VIEW public.{view} AS SELECT * FROM public.{view}_missing WITH NO SCHEMA BINDING")
    try:
        conn.execute(f"CREATE TABLE public.{view}_other (a int)")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(f"SELECT * FROM public.{view}")
        # a column list, or OR REPLACE of a view that exists, needs the table now (not built)
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute(f"CREATE VIEW public.{view}_cols (x) AS SELECT * FROM public.{view}_missing "
                         "WITH NO SCHEMA BINDING")
    finally:
        conn.execute(f"DROP VIEW public.{view}")
        conn.execute(f"DROP TABLE IF EXISTS public.{view}_other")
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'late_binding_view_%%' AND "
                        "obj_description(oid, 'pg_proc') LIKE %s", (f"%{view}%",)).fetchone() == (0,)


@contextlib.contextmanager
def _pending_view_with_its_function_made(conn, proxy, new_user, code: str, postgres):
    """A user's late-binding view made before its table (schema.later), whose function the user
    made again as `code` (after RETURNS TABLE (...); {schema} its schema's name), and a table
    schema.seen; (schema, view, user). Refused to the user now (catalog/users_code.sql: the
    function is shiftguard's), so made as it was before shiftguard refused it (made_before)."""
    schema, view = unique("s"), unique("v")
    user, password = new_user()
    conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
    try:
        with proxy.connect(user, password) as mine:
            mine.execute(f"CREATE TABLE {schema}.seen (who text)")
            mine.execute(f"CREATE VIEW {schema}.{view} AS SELECT id FROM {schema}.later WITH NO SCHEMA BINDING")
            function = mine.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE obj_description(p.oid, "
                                    "'pg_proc') LIKE %s", (f"%{view}%",)).fetchone()[0]
            again = (f"CREATE OR REPLACE FUNCTION {function.removesuffix('(boolean)')}(p_bind boolean DEFAULT "
                     "false) RETURNS TABLE (col_name name, col_type text, base_type text, query text) "
                     + code.format(schema=schema))
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                mine.execute(again)
        made_before(postgres, user, again)
        yield schema, view, user
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_pending_late_binding_views_function_runs_only_as_its_owner(conn, proxy, new_user, postgres):
    """Anyone's DDL binds a late-binding view made before its table, through the function its
    owner owns; an owner who turns that function into SECURITY INVOKER code does not get it run
    as the superuser whose CREATE TABLE would bind the view: it is not called, the view stays
    unbound."""
    code = ("LANGUAGE sql SECURITY INVOKER AS $$ INSERT INTO {schema}.seen VALUES (current_user) "
            "RETURNING 'id'::name, 'integer', 'integer', 'SELECT 1 AS id' $$")
    with _pending_view_with_its_function_made(conn, proxy, new_user, code, postgres) as (schema, view, _):
        conn.execute(f"CREATE TABLE {schema}.later (id integer)")
        assert conn.execute(f"SELECT * FROM {schema}.seen").fetchall() == []
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute(f"SELECT id FROM {schema}.{view}")  # still the view with no columns


@pytest.mark.parametrize("code", [
    # the session's settings (a superuser's here), rows
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN "
    "PERFORM set_config('datestyle', 'SQL, DMY', false); INSERT INTO {schema}.seen VALUES (session_user); "
    "RETURN QUERY SELECT 'id'::name, 'integer', 'integer', 'SELECT id FROM {schema}.later'; END $$",
    # time: everyone's DDL would wait
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN "
    "INSERT INTO {schema}.seen VALUES (session_user); PERFORM pg_sleep(30); "
    "RETURN QUERY SELECT 'id'::name, 'integer', 'integer', 'SELECT id FROM {schema}.later'; END $$"])
def test_a_pending_late_binding_views_function_made_again_is_not_called(conn, proxy, new_user, code, postgres):
    """Anyone's DDL binds a pending view by calling the function its owner owns, in that DDL's
    session: an owner who made that function again could have set that session's settings, written
    rows, or slept, holding up the DDL (everyone's, each time). A function that is not as it was
    made is not called, and the view stays unbound; made again, it is bound."""
    with _pending_view_with_its_function_made(conn, proxy, new_user, code, postgres) as (schema, view, user):
        style = conn.execute("SHOW datestyle").fetchone()
        conn.execute("SET statement_timeout = '20s'")
        conn.execute(f"CREATE TABLE {schema}.later (id integer)")
        assert conn.execute("SHOW datestyle").fetchone() == style
        assert conn.execute(f"SELECT * FROM {schema}.seen").fetchall() == []
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute(f"SELECT id FROM {schema}.{view}")  # still the view with no columns
        conn.execute(f"GRANT SELECT ON {schema}.later TO {user}")  # the view reads with its owner's privileges
        with proxy.connect(user, USER_PASSWORD) as mine:
            mine.execute(f"CREATE OR REPLACE VIEW {schema}.{view} AS SELECT id FROM {schema}.later "
                         "WITH NO SCHEMA BINDING")
            assert mine.execute(f"SELECT id FROM {schema}.{view}").fetchall() == []


def test_a_pending_late_binding_views_owner_holding_a_lock_holds_up_no_ones_ddl(conn, proxy, new_user):
    """The owner's query compiles once its table has the column: binding it opens the table, and
    the owner holds that table locked in a transaction left open. The DDL that would bind it does
    not wait for that transaction (at most 10 ms); the view is bound by a later DDL."""
    schema, view = unique("s"), unique("v")
    user, password = new_user()
    conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
    try:
        with proxy.connect(user, password) as mine:
            mine.execute(f"CREATE TABLE {schema}.later (other integer)")
            mine.execute(f"CREATE VIEW {schema}.{view} AS SELECT id FROM {schema}.later WITH NO SCHEMA BINDING")
            mine.execute("BEGIN")
            mine.execute(f"ALTER TABLE {schema}.later ADD COLUMN id integer")  # ACCESS EXCLUSIVE, kept
            conn.execute("SET statement_timeout = '10s'")
            try:
                conn.execute(f"CREATE TABLE {schema}_{view}_t (a int)")  # anyone's DDL
            finally:
                conn.execute(f"DROP TABLE IF EXISTS {schema}_{view}_t")
            mine.execute("COMMIT")
            conn.execute(f"CREATE TABLE {schema}_{view}_t (a int)")
            conn.execute(f"DROP TABLE {schema}_{view}_t")
            assert mine.execute(f"SELECT id FROM {schema}.{view}").fetchall() == []  # bound now
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_late_binding_views_columns_are_listed_once(conn):
    """As on Redshift, a late-binding view's columns are listed by pg_get_late_binding_view_cols()
    alone, not by information_schema.columns or pg_attribute: dbt's column query, which reads
    both, lists each column once (an ordinary view's still show)."""
    table, view, bound = unique("t"), unique("v"), unique("b")
    conn.execute(f"CREATE TABLE public.{table} (id integer, name varchar(20))")
    try:
        conn.execute(f"CREATE VIEW public.{view} AS SELECT id, name FROM public.{table} WITH NO SCHEMA BINDING")
        conn.execute(f"CREATE VIEW public.{bound} AS SELECT id, name FROM public.{table}")
        for name, expected in ((view, 0), (bound, 2)):
            assert conn.execute("SELECT count(*) FROM information_schema.\"columns\" WHERE table_name = %s",
                                (name,)).fetchone() == (expected,)
            assert conn.execute("SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass "
                                "AND attnum > 0", (f"public.{name}",)).fetchone() == (expected,)
        # dbt-redshift's get_columns_in_relation (legacy), trimmed to its two sources
        assert conn.execute(f"""
            with bound_views as (select ordinal_position, table_schema, column_name, data_type
                                   from information_schema."columns" where table_name = '{view}'),
                 unbound_views as (select ordinal_position, view_schema, col_name, col_type
                                     from pg_get_late_binding_view_cols() cols(view_schema name, view_name name,
                                          col_name name, col_type varchar, ordinal_position int)
                                    where view_name = '{view}'),
                 unioned as (select * from bound_views union all select * from unbound_views)
            select column_name, data_type from unioned where table_schema = 'public' order by ordinal_position
            """).fetchall() == [("id", "integer"), ("name", "character varying(20)")]
    finally:
        conn.execute(f"DROP TABLE public.{table} CASCADE")
        conn.execute(f"DROP VIEW IF EXISTS public.{view}")


def test_late_binding_view_over_columns_with_lengths(conn):
    """dbt's bind: false model over a seed (varchar(5), numeric(10,2)): the view is made, reads its
    rows, and keeps reading them whole when the table is made again with wider columns."""
    table, view = unique("t"), unique("v")
    conn.execute(f"CREATE TABLE public.{table} (id integer, name varchar(5), price numeric(10,2))")
    try:
        conn.execute(f"INSERT INTO public.{table} VALUES (1, 'Larry', 9.50)")
        conn.execute(f"CREATE VIEW public.{view}__dbt_tmp AS (SELECT * FROM public.{table}) WITH NO SCHEMA BINDING")
        conn.execute(f"ALTER TABLE public.{view}__dbt_tmp RENAME TO {view}")
        assert conn.execute(f"SELECT * FROM public.{view}").fetchall() == [(1, "Larry", decimal.Decimal("9.50"))]
        conn.execute(f"DROP TABLE public.{table} CASCADE")
        conn.execute(f"CREATE TABLE public.{table} (id integer, name varchar(20), price numeric(12,3))")
        conn.execute(f"INSERT INTO public.{table} VALUES (2, 'Lawrence Kingsley', 10.125)")
        assert conn.execute(f"SELECT * FROM public.{view}").fetchall() == [(2, "Lawrence Kingsley", decimal.Decimal("10.125"))]
    finally:
        conn.execute(f"DROP VIEW IF EXISTS public.{view}")
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")


def test_a_users_late_binding_view_reads_with_its_owners_privileges(proxy, new_user):
    """As a view does: a reader needs SELECT on the view only, also after the table was made again."""
    (owner, owner_password), (reader, reader_password) = new_user(), new_user()
    schema, table, view = unique("s"), unique("t"), unique("v")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {owner}")
    try:
        with proxy.connect(owner, owner_password) as conn:
            conn.execute(f"CREATE TABLE {schema}.{table} (a int)")
            conn.execute(f"INSERT INTO {schema}.{table} VALUES (4)")
            conn.execute(f"CREATE VIEW {schema}.{view} AS SELECT a FROM {schema}.{table} WITH NO SCHEMA BINDING")
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {reader}")
            conn.execute(f"GRANT SELECT ON {schema}.{view} TO {reader}")
            with proxy.connect(reader, reader_password) as other:
                assert other.execute(f"SELECT a FROM {schema}.{view}").fetchall() == [(4,)]
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    other.execute(f"SELECT a FROM {schema}.{table}")
            conn.execute(f"DROP TABLE {schema}.{table}")
            conn.execute(f"CREATE TABLE {schema}.{table} AS SELECT 6 AS a")
            with proxy.connect(reader, reader_password) as other:
                assert other.execute(f"SELECT a FROM {schema}.{view}").fetchall() == [(6,)]
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_query_group_is_set_shown_and_reset(make_proxy, new_user, pool_mode):
    """Redshift's query_group, as dbt sets it per model: 'default' until set, then the label
    (kept from transaction to transaction, whichever backend session runs them), then 'default'
    again after RESET; another session's is its own."""
    proxy = make_proxy(backend__pool_mode=pool_mode)
    name, password = new_user()
    group = "SELECT current_setting('query_group') AS value"
    with proxy.connect(name, password) as conn, proxy.connect(name, password) as other:
        assert conn.execute(group).fetchone() == ("default",)
        conn.execute("SET query_group TO 'model_query_group'")
        for _ in range(3):
            assert conn.execute(group).fetchone() == ("model_query_group",)
        cursor = conn.execute("SHOW query_group")
        assert (cursor.description[0].name, cursor.fetchone(), cursor.statusmessage) == (
            "query_group", ("model_query_group",), "SHOW")
        assert other.execute("SHOW query_group").fetchone() == ("default",)
        conn.execute("RESET query_group")
        assert conn.execute(group).fetchone() == ("default",)
        with conn.transaction():
            conn.execute("SET LOCAL query_group = 'one_transaction'")
            assert conn.execute(group).fetchone() == ("one_transaction",)
        assert conn.execute(group).fetchone() == ("default",)
