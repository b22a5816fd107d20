"""Redshift's GEOMETRY and GEOGRAPHY on PostGIS, which shiftguard installs into pg_catalog of every
database where the backing PostgreSQL has it (the test command installs the package): tables with
both types, the ST_ functions unqualified whatever the search_path, Redshift's hexadecimal forms
of well-known binary, the values and type OIDs (GEOMETRY 3000, GEOGRAPHY 3001) that
redshift_connector reads as it reads them from a cluster (the cases of AWS's own driver suite,
test/integration/datatype), PostGIS's own types for other clients, the Data API's type names,
privileges, a user's functions of the same names in public, a database made by CREATE DATABASE,
and the refusal that says what to install in a database without PostGIS.
"""

from __future__ import annotations

import psycopg
import pytest
import redshift_connector

from ..conftest import ADMIN, ADMIN_PASSWORD, unique
from .test_data_api import data_client, data_proxy, run  # noqa: F401 (a fixture)
from .test_databases import database  # noqa: F401 (a fixture)

GEOMETRY, GEOGRAPHY = 3000, 3001

# AWS's driver suite (test/integration/datatype/_generate_test_datatype_tables.py,
# redshift_test_data): the expression selected and the value the driver must read, compared
# without regard to case as the suite does.
LINESTRING = ("01020000000a000000000000000000f03f000000000000004000000000000008400000000000001040000000000000144000000000"
              "000018400000000000001c400000000000002040000000000000224000000000000024400000000000002640000000000000284000"
              "00000000002a400000000000002c400000000000002e40000000000000304000000000000031400000000000003240000000000000"
              "33400000000000003440")
POLYGON_4326 = ("0103000020e61000000100000005000000000000000000000000000000000000000000000000000000000000000000f03f00000000"
                "0000f03f000000000000f03f000000000000f03f000000000000000000000000000000000000000000000000")
POLYGON = ("01030000000100000005000000000000000000000000000000000000000000000000000000000000000000f03f"
           "000000000000f03f000000000000f03f000000000000f03f000000000000000000000000000000000000000000000000")
DRIVER_SUITE = [
    (GEOMETRY, "ST_GeomFromText('LINESTRING(1 2,3 4,5 6,7 8,9 10,11 12,13 14,15 16,17 18,19 20)')", LINESTRING),
    (GEOMETRY, "ST_GeomFromText('POLYGON((0 0,0 1,1 1,1 0,0 0))',4326)", POLYGON_4326),
    (GEOMETRY, f"ST_GeomFromEWKB('{POLYGON_4326.upper()}')", POLYGON_4326),
    (GEOMETRY, f"ST_GeomFromEWKB('{LINESTRING.upper()}')", LINESTRING),
    (GEOMETRY, f"ST_GeomFromWKB('{POLYGON.upper()}')", POLYGON),
    (GEOGRAPHY, "ST_GeogFromText('POINT(1 1)')", "0101000020E6100000000000000000F03F000000000000F03F"),
    (GEOGRAPHY, "ST_GeogFromText('POINT(2 2)')", "0101000020E610000000000000000000400000000000000040"),
    (GEOGRAPHY, "ST_GeogFromText('SRID=4267;POINT(-77.0092 38.889588)')",
     "0101000020AB100000E3C798BB964053C000750305DE714340"),
]


def rsc_connect(proxy, database: str = "dev", **extra) -> redshift_connector.Connection:
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database=database, user=ADMIN,
                                      password=ADMIN_PASSWORD, timeout=20, ssl=False, **extra)
    conn.autocommit = True
    return conn


@pytest.fixture
def shapes(proxy):
    """A table of both types with two rows, made through the proxy in Redshift's DDL."""
    name = unique("shapes")
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {name} (id INT, g GEOMETRY, h GEOGRAPHY) DISTSTYLE EVEN SORTKEY(id)")
        conn.execute(f"INSERT INTO {name} VALUES (1, ST_GeomFromText('POINT(1 2)'), ST_GeogFromText('POINT(0 0)')), "
                     f"(2, ST_GeomFromText('POLYGON((0 0,0 1,1 1,1 0,0 0))', 4326), "
                     f"ST_GeogFromText('SRID=4267;POINT(-77.0092 38.889588)'))")
        conn.execute(f"ANALYZE {name}")
    yield name
    with proxy.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def read_driver_suite(cursor) -> None:
    """The cases of AWS's driver suite, each read as the suite reads it."""
    for oid, expression, expected in DRIVER_SUITE:
        cursor.execute(f"SELECT {expression}")
        assert cursor.description[0][1] == oid, expression
        (value,), = cursor.fetchall()
        assert value.lower() == expected.lower(), expression


@pytest.mark.parametrize("client_protocol", [0, 1, 2])
def test_redshift_connector_reads_the_values_of_aws_driver_suite(proxy, client_protocol):
    with rsc_connect(proxy, client_protocol_version=client_protocol) as conn, conn.cursor() as cursor:
        read_driver_suite(cursor)


def test_redshift_connector_creates_inserts_and_selects(proxy, shapes):
    with rsc_connect(proxy) as conn, conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {shapes} (id, g, h) VALUES (%s, ST_GeomFromText(%s, %s), ST_GeogFromText(%s))",
                       (3, "LINESTRING(1 2,3 4,5 6,7 8,9 10,11 12,13 14,15 16,17 18,19 20)", 0, "POINT(2 2)"))
        cursor.execute(f"SELECT g, h, ST_AsText(g), ST_SRID(h) FROM {shapes} ORDER BY id")
        assert [column[1] for column in cursor.description] == [GEOMETRY, GEOGRAPHY, 25, 23]
        rows = cursor.fetchall()
    assert [row[0].lower() for row in rows] == ["0101000000000000000000f03f0000000000000040", POLYGON_4326, LINESTRING]
    # GEOGRAPHY comes as text (upper case) at protocol 0 and in binary, hexlified by the driver
    # (lower case), at 2: AWS's suite compares without regard to case.
    assert rows[2][1].upper() == "0101000020E610000000000000000000400000000000000040"
    assert [row[2:] for row in rows] == [["POINT(1 2)", 4326], ["POLYGON((0 0,0 1,1 1,1 0,0 0))", 4267],
                                         ["LINESTRING(1 2,3 4,5 6,7 8,9 10,11 12,13 14,15 16,17 18,19 20)", 4326]]


def test_psycopg_sees_postgis_types_and_functions(proxy, shapes):
    with proxy.connect() as conn:
        conn.execute("SET search_path TO pg_temp")  # Redshift's built-ins need no schema on the path
        cursor = conn.execute(f"SELECT g, h, ST_AsText(g), ST_Distance(g, ST_GeomFromText('POINT(4 6)')), "
                              f"round(ST_Distance(h, ST_GeogFromText('POINT(1 0)'))) FROM public.{shapes} WHERE id = 1")
        postgis = conn.execute("SELECT 'geometry'::regtype::oid, 'geography'::regtype::oid").fetchone()
        assert [column.type_code for column in cursor.description[:2]] == list(postgis)
        assert GEOMETRY not in postgis
        assert cursor.fetchone() == ("0101000000000000000000F03F0000000000000040",
                                     "0101000020E610000000000000000000000000000000000000", "POINT(1 2)", 5.0, 111319)  # metres, on the WGS 84 spheroid
        # Redshift's hexadecimal well-known binary, in and out.
        assert conn.execute("SELECT ST_AsText(ST_GeomFromWKB('0101000000000000000000F03F0000000000000040', 4326)), "
                            "ST_SRID(ST_GeomFromWKB('0101000000000000000000F03F0000000000000040', 4326)), "
                            "ST_AsHexWKB(ST_GeogFromText('POINT(1 2)')), "
                            "ST_AsEWKT(ST_GeogFromWKB('0101000000000000000000F03F0000000000000040'))").fetchone() == (
            "POINT(1 2)", 4326, "0101000000000000000000F03F0000000000000040", "SRID=4326;POINT(1 2)")


def test_strict_redshift_takes_the_spatial_column_types(make_proxy):
    proxy = make_proxy(strict_redshift=True)
    name = unique("shapes")
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {name} (g GEOMETRY, h GEOGRAPHY)")
        conn.execute(f"ALTER TABLE {name} ADD COLUMN g2 GEOMETRY")
        conn.execute(f"INSERT INTO {name} VALUES (ST_Point(1, 2), ST_GeogFromText('POINT(1 2)'), NULL)")
        assert conn.execute(f"SELECT ST_X(g), ST_Y(g) FROM {name}").fetchone() == (1.0, 2.0)
        conn.execute(f"DROP TABLE {name}")


def test_a_user_needs_privileges_and_cannot_take_over_the_functions(proxy, new_user, shapes):
    user, password = new_user()
    with proxy.connect(user, password) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {shapes}"):
            conn.execute(f"SELECT ST_AsText(g) FROM {shapes}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE OR REPLACE FUNCTION pg_catalog.st_astext(geometry) RETURNS text "
                         "LANGUAGE sql AS $$ SELECT 'taken' $$")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP EXTENSION postgis")
        # Nor the table's statistics, through PostGIS's functions that read them by its name.
        for call in (f"ST_EstimatedExtent('{shapes}', 'g')", f"_postgis_stats('{shapes}'::regclass, 'g')",
                     f"_postgis_selectivity('{shapes}'::regclass, 'g', ST_Point(0, 0))"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
                conn.execute(f"SELECT {call}")
        # Functions of PostGIS's names in public come after pg_catalog, for everyone.
        conn.execute("CREATE FUNCTION public.st_astext(geometry) RETURNS text LANGUAGE sql IMMUTABLE "
                     "AS $$ SELECT 'taken' $$")
    try:
        with proxy.connect() as admin:
            assert admin.execute(f"SELECT ST_AsText(g) FROM {shapes} WHERE id = 1").fetchone() == ("POINT(1 2)",)
            admin.execute(f"GRANT SELECT ON {shapes} TO {user}")
        with proxy.connect(user, password) as conn:
            assert conn.execute(f"SELECT ST_AsText(g) FROM {shapes} WHERE id = 1").fetchone() == ("POINT(1 2)",)
            # What PostGIS installed is the superuser's.
            assert conn.execute("SELECT r.rolsuper, e.extnamespace::regnamespace::text FROM pg_extension e "
                                "JOIN pg_roles r ON r.oid = e.extowner WHERE e.extname = 'postgis'").fetchone() == (
                True, "pg_catalog")
    finally:
        with proxy.connect() as admin:
            admin.execute("DROP FUNCTION IF EXISTS public.st_astext(geometry)")


def test_a_new_database_has_postgis(proxy, database):
    name = database()
    with rsc_connect(proxy, database=name) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE places (p GEOGRAPHY)")
        cursor.execute("INSERT INTO places VALUES (ST_GeogFromText('POINT(2 2)'))")
        cursor.execute("SELECT p, ST_AsText(p) FROM places")
        assert cursor.description[0][1] == GEOGRAPHY
        (value, text), = cursor.fetchall()
        assert (value.upper(), text) == ("0101000020E610000000000000000000400000000000000040", "POINT(2 2)")


def test_a_database_without_postgis_refuses_saying_what_to_install(proxy, postgres, database):
    name = database()
    with postgres.connect(name) as direct:
        direct.execute("DROP EXTENSION postgis CASCADE")
    with proxy.connect(dbname=name) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
            conn.execute("CREATE TABLE shapes (g geometry)")
        assert str(refused.value).startswith('type "geometry" is not supported by shiftguard')
        assert "postgresql-15-postgis-3" in refused.value.diag.message_hint
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="st_geogfromtext"):
            conn.execute("SELECT ST_GeogFromText('POINT(1 1)')")


def test_a_wrong_argument_is_postgresqls_error_where_postgis_is(proxy):
    with proxy.connect() as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction, match=r"function st_distance\(integer\) does not exist"):
            conn.execute("SELECT ST_Distance(1)")


def test_the_data_api_names_the_types(data_proxy):  # noqa: F811
    api = data_client(data_proxy)
    described = run(api, "SELECT ST_GeomFromText('POINT(1 2)') AS g, ST_GeogFromText('POINT(2 2)') AS h")
    assert described["Status"] == "FINISHED", described
    result = api.get_statement_result(Id=described["Id"])
    assert [c["typeName"] for c in result["ColumnMetadata"]] == ["geometry", "geography"]
    assert result["Records"] == [[{"stringValue": "0101000000000000000000F03F0000000000000040"},
                                  {"stringValue": "0101000020E610000000000000000000400000000000000040"}]]


def test_a_database_where_postgis_fails_to_install_keeps_the_rest(make_proxy, postgres, caplog):
    """A database made behind the proxy's back holding a function of one of PostGIS's names in
    pg_catalog (CREATE EXTENSION refuses to replace it): the next start installs shiftguard
    there all the same, and refuses GEOMETRY with the hint."""
    name = unique("db")
    with postgres.connect() as direct:
        direct.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    try:
        with postgres.connect(name) as direct:
            direct.execute("CREATE FUNCTION pg_catalog.postgis_version() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$")
        proxy = make_proxy()
        assert f"database {name}: installing PostGIS failed" in caplog.text
        with proxy.connect(dbname=name) as conn:
            assert conn.execute("SELECT getdate() IS NOT NULL").fetchone() == (True,)
            with pytest.raises(psycopg.errors.FeatureNotSupported, match='type "geometry" is not supported'):
                conn.execute("CREATE TABLE shapes (g GEOMETRY)")
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
