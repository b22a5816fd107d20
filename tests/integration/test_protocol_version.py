"""Redshift's server protocol versions through the proxy. redshift_connector (and the JDBC and ODBC
drivers) send client_protocol_version (redshift_connector's default 2, BINARY; 1 is
EXTENDED_RESULT_METADATA; 0 BASE_SERVER) and use what the server_protocol_version ParameterStatus
grants. At 1 and 2 each RowDescription names every column's schema, table, column and catalog,
with NOT NULL and IDENTITY flags; at 2 the driver asks for NUMERIC, DATE, TIME, TIMETZ and arrays
in binary and reads NUMERIC in Redshift's form. Clients that send no client_protocol_version
(psycopg, asyncpg) see PostgreSQL's protocol as before.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import asyncpg
import psycopg
import pytest
import redshift_connector
from redshift_connector.interval import IntervalDayToSecond, IntervalYearToMonth

from ..conftest import ADMIN, ADMIN_PASSWORD, unique, wait_for
from .test_data_api import data_client, data_proxy, records, run  # noqa: F401 (a fixture)

PROTOCOLS = (0, 1, 2)


def connect(proxy, version: int | None, user: str = ADMIN, password: str = ADMIN_PASSWORD):
    kwargs = {} if version is None else {"client_protocol_version": version}
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=user,
                                      password=password, timeout=20, ssl=False, **kwargs)
    conn.autocommit = True
    return conn


def described(cursor) -> list[tuple]:
    """(label, schema, table, column, catalog, NOT NULL, autoincrement, read-only, searchable) of
    each column, as the driver read the RowDescription."""
    names = ("schema_name", "table_name", "column_name", "catalog_name")
    return [(f["label"].decode(), *(f[k].decode() for k in names),
             f["nullable"], f["autoincrement"], f["read_only"], f["searchable"]) for f in cursor.ps["row_desc"]]


def query(proxy, version: int, sql: str, user: str = ADMIN, password: str = ADMIN_PASSWORD):
    with connect(proxy, version, user, password) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall(), (described(cursor) if version else None), cursor.description


@pytest.fixture
def table(proxy):
    name = unique("protover")
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {name} (id INT IDENTITY(1, 1), code VARCHAR(10) NOT NULL, note TEXT)")
        conn.execute(f"INSERT INTO {name} (code, note) VALUES ('a', 'first')")
    yield name
    with proxy.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.mark.parametrize("asked, granted", [(0, 0), (1, 1), (2, 2), (None, 2)])
def test_the_version_asked_for_is_granted(proxy, asked, granted):
    with connect(proxy, asked) as conn:
        assert (b"server_protocol_version", str(granted).encode()) in conn.parameter_statuses
        assert conn._client_protocol_version == granted  # the driver did not fall back to 0


@pytest.mark.parametrize("asked, granted", [("3", "2"), ("-1", "0"), ("two", "0"), ("99999999999", "0"), ("", "0")])
async def test_other_versions_asked_for(proxy, table, asked, granted):
    """What redshift_connector will not send (the JDBC driver asks for 3), as asyncpg sends it."""
    conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=ADMIN, password=ADMIN_PASSWORD,
                                 database="dev", ssl=False, server_settings={"client_protocol_version": asked})
    try:
        assert conn.get_settings().server_protocol_version == granted
        if granted == "0":  # PostgreSQL's RowDescription, which asyncpg reads
            assert [tuple(row) for row in await conn.fetch(f"SELECT id, code FROM {table}")] == [(1, "a")]
    finally:
        await conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_row_description_names_each_columns_source(proxy, table, version):
    rows, columns, _ = query(proxy, version, f"SELECT id, code, note, 1 + 1 AS two, t.code AS alias FROM {table} t")
    assert rows == ([1, "a", "first", 2, "a"],)
    assert columns == [
        # NOT NULL is bit 0 (the JDBC driver's columnNoNulls); an IDENTITY column autoincrements
        ("id", "public", table, "id", "dev", 1, 1, 0, 1),
        ("code", "public", table, "code", "dev", 1, 0, 0, 1),
        ("note", "public", table, "note", "dev", 0, 0, 0, 1),
        ("two", "", "", "", "", 0, 0, 1, 1),  # an expression: no names, read-only
        ("alias", "public", table, "code", "dev", 1, 0, 0, 1),
    ]


def test_base_protocol_and_other_clients_see_postgresqls_row_description(proxy, table):
    rows, columns, description = query(proxy, 0, f"SELECT id, code FROM {table}")
    assert rows == ([1, "a"],) and columns is None
    assert [d[0] for d in description] == ["id", "code"]
    with connect(proxy, 0) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT code FROM {table}")
        assert "schema_name" not in cursor.ps["row_desc"][0]
    with proxy.connect() as conn:
        assert conn.info.parameter_status("server_protocol_version") is None
        cursor = conn.execute(f"SELECT id, code FROM {table}")
        assert cursor.fetchall() == [(1, "a")] and [c.name for c in cursor.description] == ["id", "code"]
        assert conn.cursor(binary=True).execute("SELECT 1.5::numeric").fetchone() == (Decimal("1.5"),)


def test_names_follow_ddl_sent_through_the_proxy(proxy, postgres, table):
    """The names are read once and kept: a rename behind the proxy's back (straight in PostgreSQL)
    is not seen, one through the proxy is, whoever sends it (here psycopg, at no protocol)."""
    def names(sql: str) -> list[tuple]:
        return [c[1:4] for c in query(proxy, 1, sql)[1]]

    assert names(f"SELECT note FROM {table}") == [("public", table, "note")]
    with postgres.connect() as direct:
        direct.execute(f"ALTER TABLE {table} RENAME COLUMN code TO label")
    assert names(f"SELECT note, label FROM {table}") == [("public", table, "note"), ("public", table, "label")]
    assert names(f"SELECT note FROM {table}") == [("public", table, "note")]
    schema, renamed = unique("s"), unique("renamed")
    with proxy.connect() as conn:
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN note TO remark")
    assert names(f"SELECT remark FROM {table}") == [("public", table, "remark")]
    with proxy.connect() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"ALTER TABLE {table} SET SCHEMA {schema}")
        conn.execute(f"ALTER TABLE {schema}.{table} RENAME TO {renamed}")
    try:
        assert names(f"SELECT remark FROM {schema}.{renamed}") == [(schema, renamed, "remark")]
    finally:
        with proxy.connect() as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_rename_in_a_transaction_is_seen_when_it_commits(proxy, table):
    with connect(proxy, 1) as watcher, proxy.connect() as conn:
        cursor = watcher.cursor()
        cursor.execute(f"SELECT note FROM {table}")
        conn.autocommit = False
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN note TO remark")
        conn.commit()
        cursor.execute(f"SELECT * FROM {table}")
        assert [c[3] for c in described(cursor)] == ["id", "code", "remark"]


def test_views_masking_and_catalog_views_are_named_as_the_user_reads_them(proxy, new_user, table):
    user, password = new_user()
    policy, view = unique("mask"), unique("v")
    with proxy.connect() as conn:
        conn.execute(f"CREATE VIEW {view} AS SELECT code, upper(note) AS shout FROM {table}")
        conn.execute(f"GRANT SELECT ON {table} TO {user}")
    # A view's columns are the view's, as PostgreSQL reports them.
    rows, columns, _ = query(proxy, 1, f"SELECT code, shout FROM {view}")
    assert rows == (["a", "FIRST"],)
    assert [c[1:4] for c in columns] == [("public", view, "code"), ("public", view, "shout")]
    with proxy.connect() as conn:
        conn.execute(f"CREATE MASKING POLICY {policy} WITH (note TEXT) USING ('***'::TEXT)")
        conn.execute(f"ATTACH MASKING POLICY {policy} ON {table}(note) TO {user}")
    try:
        # Read through its masking view (policy/masking.py): named as the table the user named.
        masked = wait_for(lambda: (r := query(proxy, 2, f"SELECT id, note FROM {table}", user, password))[0]
                          == ([1, "***"],) and r, timeout=5)
        assert masked, "the masking policy did not reach the proxy"
        assert [c[:6] for c in masked[1]] == [("id", "public", table, "id", "dev", 1),
                                              ("note", "public", table, "note", "dev", 0)]
        # shiftguard's catalog views are pg_catalog's, as on Redshift.
        rows, columns, _ = query(proxy, 1, f"SELECT tablename, \"column\" FROM pg_table_def "
                                           f"WHERE tablename = '{table}' ORDER BY 2", user, password)
        assert rows == ([table, "code"], [table, "id"], [table, "note"])
        assert [c[1:4] for c in columns] == [("pg_catalog", "pg_table_def", "tablename"),
                                             ("pg_catalog", "pg_table_def", "column")]
        rows, columns, _ = query(proxy, 2, f"SELECT table_schema, table_name FROM svv_tables "
                                           f"WHERE table_name = '{table}'", user, password)
        assert rows == (["public", table],)
        assert {c[1] for c in columns} == {"pg_catalog"}
    finally:
        with proxy.connect() as conn:
            conn.execute(f"DETACH MASKING POLICY {policy} ON {table}(note) FROM {user}")
            conn.execute(f"DROP MASKING POLICY {policy}")
            conn.execute(f"DROP VIEW {view}")
            conn.execute(f"REVOKE ALL ON {table} FROM {user}")


def test_a_table_under_row_level_security_is_named_as_itself(proxy, new_user, table):
    user, password = new_user()
    policy = unique("rls")
    with proxy.connect() as conn:
        conn.execute(f"INSERT INTO {table} (code, note) VALUES ('b', 'second')")
        conn.execute(f"GRANT SELECT ON {table} TO {user}")
        conn.execute(f"CREATE RLS POLICY {policy} WITH (code VARCHAR(10)) USING (code = 'b')")
        conn.execute(f"ATTACH RLS POLICY {policy} ON {table} TO {user}")
        conn.execute(f"ALTER TABLE {table} ROW LEVEL SECURITY ON")
    try:
        rows = wait_for(lambda: (r := query(proxy, 2, f"SELECT code, note FROM {table}", user, password))[0]
                        == (["b", "second"],) and r, timeout=5)
        assert rows, "row-level security did not reach the proxy"
        assert [c[1:6] for c in rows[1]] == [("public", table, "code", "dev", 1), ("public", table, "note", "dev", 0)]
    finally:
        with proxy.connect() as conn:
            conn.execute(f"ALTER TABLE {table} ROW LEVEL SECURITY OFF")
            conn.execute(f"DETACH RLS POLICY {policy} ON {table} FROM {user}")
            conn.execute(f"DROP RLS POLICY {policy}")
            conn.execute(f"REVOKE ALL ON {table} FROM {user}")


# Every type the driver reads in binary at protocol 2 (NUMERIC, DATE, TIME, TIMETZ, its arrays),
# and Redshift's own. NUMERIC(38) values of at most 28 digits: the driver makes a binary one's
# Decimal in Python's default context, which rounds to 28 (as against Redshift).
VALUES_TABLE = ("n NUMERIC(18, 8), big NUMERIC(38, 4), d DATE, t TIME, tz TIMETZ, i2 SMALLINT[], i4 INT[], "
                "txt TEXT[], vc VARCHAR(8)[], f4 REAL[], o OID[], ch \"char\"[], vb VARBYTE(8), "
                "y2m INTERVAL YEAR TO MONTH, d2s INTERVAL DAY TO SECOND, a ABSTIME")
VALUES = [
    "(-12345.67891, 1234567890123456789012.3456, '2020-02-29', '24:00:00', '22:44:54.18 PDT', "
    "'{1,-2}', '{{1,2},{3,4}}', '{a,\"b c\",NULL}', '{x}', '{1.5}', '{7}', '{a}', 'abc', '1-2', '3 04:05:06', "
    "'2022-06-10')",
    "(0.00012345, -1, '4713-01-12', '00:00:00', '00:00:00 EST', '{}', NULL, '{}', NULL, NULL, NULL, NULL, "
    "from_hex('6869'), '-1-0', '-0 00:00:00.000001', 'infinity')",
    "(NULL, 0, NULL, '12:30:10.5', NULL, NULL, '{NULL}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


@pytest.fixture
def values(proxy):
    name = unique("values")
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {name} (id INT, {VALUES_TABLE})")
        for i, row in enumerate(VALUES):
            conn.execute(f"INSERT INTO {name} VALUES ({i}, {row[1:]}")
    yield name
    with proxy.connect() as conn:
        conn.execute(f"DROP TABLE {name}")


def fetch(proxy, version: int, sql: str, params=None) -> list:
    with connect(proxy, version) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        return [list(row) for row in cursor.fetchall()]


def test_values_read_the_same_at_every_protocol(proxy, values):
    sql = f"SELECT * FROM {values} ORDER BY id"
    base = fetch(proxy, 0, sql)
    utc = datetime.timezone.utc
    assert base[0][1:6] == [Decimal("-12345.67891000"), Decimal("1234567890123456789012.3456"),
                            datetime.date(2020, 2, 29), datetime.time(0, 0), datetime.time(5, 44, 54, 180000, utc)]
    assert base[0][6:13] == [[1, -2], [[1, 2], [3, 4]], ["a", "b c", None], ["x"], [1.5], [7], ["a"]]
    d2s = IntervalDayToSecond(((3 * 24 + 4) * 3600 + 5 * 60 + 6) * 10**6)
    assert base[0][13:] == ["abc", IntervalYearToMonth(14), d2s,
                            datetime.datetime(2022, 6, 10, tzinfo=utc)]
    for version in (1, 2):
        # VARBYTE: at 0 and 1 hexadecimal that the driver decodes, at 2 the bytes themselves.
        assert fetch(proxy, version, sql) == base
        # Parameters and prepared statements, too.
        assert fetch(proxy, version, f"SELECT n, d, t, i4 FROM {values} WHERE id = %s", (0,)) == \
            [[base[0][1], base[0][3], base[0][4], base[0][7]]]


def test_aclitem_arrays_read_at_every_protocol(proxy, new_user, values):
    """PostgreSQL has no binary ACLITEM, which the driver asks for at protocol 2."""
    user, _ = new_user()
    with proxy.connect() as conn:
        conn.execute(f'GRANT SELECT ON {values} TO "{user}"')
    sql = f"SELECT relacl, relname FROM pg_class WHERE relname = '{values}'"
    base = fetch(proxy, 0, sql)
    assert any(item.startswith(f"{user}=r/") for item in base[0][0])
    assert fetch(proxy, 2, sql) == fetch(proxy, 1, sql) == base


@pytest.mark.parametrize("version", PROTOCOLS)
def test_numeric_expressions_keep_their_value(proxy, version):
    """Redshift gives every NUMERIC a precision and scale; PostgreSQL's expressions have none.
    At protocol 2 they go as NUMERIC(38,18) (protocol/redshift_types.py)."""
    rows = fetch(proxy, version, "SELECT 1.5, -2::numeric / 3, sum(x), 10::numeric ^ 19 FROM "
                                 "(VALUES (1.25), (2.5)) v(x)")
    third = Decimal("-0.666666666666666667") if version == 2 else Decimal("-0.66666666666666666667")
    assert rows == [[Decimal("1.5"), third, Decimal("3.75"), Decimal(10) ** 19]]
    assert str(rows[0][0]) == ("1.500000000000000000" if version == 2 else "1.5")


def test_transaction_pooling_names_and_binary_values(make_proxy, new_user):
    pooled = make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=10)
    user, password = new_user()
    table = unique("pooled")
    with pooled.connect(user, password) as conn:
        conn.execute(f"CREATE TABLE {table} (id INT NOT NULL, n NUMERIC(10, 2), d DATE)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 2.25, '2024-02-29')")
    for version in PROTOCOLS:
        with connect(pooled, version, user, password) as conn, conn.cursor() as cursor:
            for _ in range(2):  # prepared again by the proxy in whichever session it lands in
                cursor.execute(f"SELECT id, n, d FROM {table} WHERE id = %s", (1,))
                assert cursor.fetchall() == ([1, Decimal("2.25"), datetime.date(2024, 2, 29)],)
                if version:
                    assert [c[1:6] for c in described(cursor)] == [("public", table, "id", "dev", 1),
                                                                   ("public", table, "n", "dev", 0),
                                                                   ("public", table, "d", "dev", 0)]


def test_data_api_is_unaffected(data_proxy):  # noqa: F811
    api = data_client(data_proxy)
    done = run(api, "SELECT 1.5::numeric(4, 2) AS n, current_date - current_date AS zero")
    assert records(api, done["Id"]) == (["n", "zero"], [["1.50", 0]])
