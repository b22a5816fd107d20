"""An ordinary user attacks PostGIS, which shiftguard installs into pg_catalog of every database:
PROJ reading a grid file at a path the user names, PostGIS's table management and catalog views,
its version and output-format functions. Everyone may execute only Redshift's spatial functions
(and the casts and operators under them); the rest are the superuser's, in a database made by
CREATE DATABASE too, and a start takes back what was granted behind the proxy's back. Redshift's
functions still work for that user, on their own table, and AWS's driver suite's cases read as
they do for the admin.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
import redshift_connector

from ..conftest import server_directory, unique
from .test_databases import database  # noqa: F401 (a fixture)
from .test_spatial import read_driver_suite

POINT = "ST_GeomFromText('POINT(13 52)', 4326)"


@pytest.fixture
def grid():
    """An NTv2 grid file of PROJ's own data (a datum shift over Germany, proj-data's), copied
    (readable by all) to a directory the server may read: a file at a path the user names."""
    directory = server_directory()
    path = directory / "shift.gsb"
    shutil.copy(Path("/usr/share/proj/BETA2007.gsb"), path)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def test_proj_reads_no_file_a_user_names(proxy, new_user, grid):
    user, password = new_user()
    projection = f"+proj=longlat +ellps=bessel +nadgrids={grid} +no_defs"
    with proxy.connect() as admin:  # the superuser's ST_Transform reads the file: its shift shows
        shifted = admin.execute(f"SELECT ST_X(ST_Transform({POINT}, %s))", (projection,)).fetchone()[0]
    assert round(shifted, 3) == 13.002
    with proxy.connect(user, password) as conn:
        for call in (f"ST_Transform({POINT}, %s)", f"ST_Transform({POINT}, %s, 4326)",
                     f"ST_Transform({POINT}, '+proj=longlat +datum=WGS84 +no_defs', %s)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match=r"permission denied for function st_transform"):
                conn.execute(f"SELECT ST_AsText({call})", (projection,))
        # PostGIS's entry points to PROJ by other names.
        for call in (f"postgis_transform_geometry({POINT}, '+proj=longlat +datum=WGS84', '{projection}', 0)",
                     "postgis_proj_version()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
                conn.execute(f"SELECT {call}")
        # Redshift's ST_Transform(geom, srid): projections of PostGIS's spatial_ref_sys only,
        # which only superusers write.
        assert conn.execute(f"SELECT round(ST_X(ST_Transform({POINT}, 3857)))").fetchone() == (1447153,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match="permission denied for relation spatial_ref_sys"):
            conn.execute("INSERT INTO spatial_ref_sys (srid, proj4text) VALUES (990001, %s)", (projection,))


def test_postgis_table_management_and_catalog_views_are_the_superusers(proxy, new_user):
    owner, owner_password = new_user()
    user, password = new_user()
    table = unique("hideout")
    with proxy.connect(owner, owner_password) as conn:
        conn.execute(f"CREATE TABLE {table} (id INT, g GEOMETRY)")
        conn.execute(f"INSERT INTO {table} VALUES (1, {POINT})")
    with proxy.connect(user, password) as conn:
        for view in ("geometry_columns", "geography_columns"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {view}"):
                conn.execute(f"SELECT f_table_name FROM {view}")
        conn.execute("CREATE TABLE mine (id INT, g GEOMETRY)")
        for call in (f"Find_SRID('public', '{table}', 'g')", "Populate_Geometry_Columns()",
                     "UpdateGeometrySRID('mine', 'g', 4326)", "AddGeometryColumn('mine', 'g2', 4326, 'POINT', 2)",
                     "DropGeometryColumn('mine', 'g')", f"DropGeometryTable('{table}')",
                     f"ST_FindExtent('{table}', 'g')", f"ST_EstimatedExtent('{table}', 'g')",
                     "EnableLongTransactions()", f"LockRow('{table}', 'id', '1')", "postgis_full_version()",
                     "postgis_lib_version()", "ST_AsMVTGeom(ST_Point(1, 2), ST_MakeEnvelope(0, 0, 10, 10))",
                     "ST_AsSVG(ST_Point(1, 2))", "ST_Letters('x')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
                conn.execute(f"SELECT {call}")
    with proxy.connect(owner, owner_password) as conn:
        assert conn.execute(f"SELECT ST_AsText(g) FROM {table}").fetchone() == ("POINT(13 52)",)


def test_redshift_spatial_functions_work_for_an_ordinary_user(proxy, new_user):
    user, password = new_user()
    with proxy.connect(user, password) as conn:
        conn.execute("CREATE TABLE places (id INT, g GEOMETRY, h GEOGRAPHY)")
        conn.execute("INSERT INTO places VALUES (1, ST_Point(1, 2), ST_GeogFromText('POINT(13 52)')), "
                     "(2, ST_GeomFromText('POINT(3 4)'), ST_GeogFromWKB('0101000000000000000000F03F0000000000000040'))")
        conn.execute("ANALYZE places")
        # Aggregates, comparisons and sorting on the types (their operators' functions).
        assert conn.execute("SELECT ST_AsText(ST_Collect(g ORDER BY id)), ST_AsText(ST_MakeLine(g ORDER BY id)), "
                            "ST_NumGeometries(ST_Union(g)), count(DISTINCT g) FROM places").fetchone() == (
            "MULTIPOINT((1 2),(3 4))", "LINESTRING(1 2,3 4)", 2, 2)
        assert conn.execute("SELECT id FROM places WHERE g = ST_Point(3, 4) ORDER BY g").fetchall() == [(2,)]
        # GEOGRAPHY's functions that PostGIS writes in SQL over others, as the caller.
        assert conn.execute("SELECT round(ST_Area(ST_Buffer(h, 10))), ST_AsText(ST_Intersection(h, h)), "
                            "round(ST_DistanceSphere(g, ST_Point(1, 3))), round(ST_Distance(h, h)) "
                            "FROM places WHERE id = 1").fetchone() == (312, "POINT(13 52)", 111195, 0)
        assert conn.execute("SELECT ST_AsText(ST_Centroid(ST_GeomFromGeoHash('u33d'))), "
                            "ST_IsValid(ST_GeomFromText('POLYGON((0 0,1 1,1 0,0 1,0 0))')), "
                            "ST_AsText(ST_GeomFromGeoJSON('{\"type\":\"Point\",\"coordinates\":[1,2]}')), "
                            "ST_AsGeoJSON(ST_Point(1, 2)), ST_AsHexEWKB(h), ST_AsHexWKB(g), "
                            "ST_AsEWKT(ST_SetSRID(g, 4326)), GeometryType(g), ST_GeoHash(ST_Point(13, 52), 5) "
                            "FROM places WHERE id = 2").fetchone() == (
            "POINT(13.53515625 52.470703125)", False, "POINT(1 2)", '{"type":"Point","coordinates":[1,2]}',
            "0101000020E6100000000000000000F03F0000000000000040", "010100000000000000000008400000000000001040",
            "SRID=4326;POINT(3 4)", "POINT", "u31pz")
        assert conn.execute("SELECT g::text, h::geometry::geography::text, ST_AsText('POINT(5 6)'::geometry) "
                            "FROM places WHERE id = 1").fetchone() == (
            "0101000000000000000000F03F0000000000000040", "0101000020E61000000000000000002A400000000000004A40",
            "POINT(5 6)")
    with redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=user, password=password,
                                    timeout=20, ssl=False) as conn, conn.cursor() as cursor:
        read_driver_suite(cursor)


def test_a_new_database_and_a_start_deny_the_same(proxy, make_proxy, postgres, new_user, database):  # noqa: F811
    name = database()
    user, password = new_user()
    with proxy.connect(user, password, dbname=name) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function st_transform"):
            conn.execute(f"SELECT ST_Transform({POINT}, '+proj=longlat +datum=WGS84')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match="permission denied for relation geometry_columns"):
            conn.execute("SELECT * FROM geometry_columns")
        assert conn.execute(f"SELECT round(ST_Y(ST_Transform({POINT}, 3857)))").fetchone() == (6800125,)
    # A superuser grants behind the proxy's back, in the cluster's database and the new one; the
    # next start takes it back in both.
    for dbname in ("dev", name):
        with postgres.connect(dbname) as direct:
            direct.execute("GRANT EXECUTE ON FUNCTION pg_catalog.find_srid(varchar, varchar, varchar) TO PUBLIC")
            direct.execute("GRANT SELECT ON pg_catalog.geometry_columns TO PUBLIC")
    make_proxy()
    for dbname in ("dev", name):
        with proxy.connect(user, password, dbname=dbname) as conn:
            assert conn.execute("SELECT has_function_privilege('pg_catalog.find_srid(varchar, varchar, varchar)', "
                                "'EXECUTE'), has_table_privilege('pg_catalog.geometry_columns', 'SELECT')"
                                ).fetchone() == (False, False), dbname


def test_what_everyone_may_execute_of_postgis(proxy, new_user):
    """Whatever PostGIS version is installed: nothing that runs as its owner, reads tables by
    name (PL/pgSQL, regclass or name arguments), hands PROJ a projection or tells versions."""
    user, password = new_user()
    with proxy.connect(user, password) as conn:
        executable = conn.execute(
            "SELECT p.proname, p.oid::regprocedure::text, p.prosecdef, l.lanname, "
            "       p.proargtypes::oid[]::regtype[]::text[] "
            "  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang JOIN pg_depend d ON d.objid = p.oid "
            "   AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid "
            " WHERE e.extname = 'postgis' AND has_function_privilege(p.oid, 'EXECUTE')").fetchall()
    assert "st_astext(geometry)" in {row[1] for row in executable}
    for name, signature, definer, language, arguments in executable:
        assert not definer and language != "plpgsql", signature
        assert not {"regclass", "oid", "name"} & set(arguments), signature
        assert not (name == "st_transform" and "text" in arguments), signature
        assert not name.startswith(("postgis_", "_postgis_", "st_estimatedextent", "st_asmvt")), signature
