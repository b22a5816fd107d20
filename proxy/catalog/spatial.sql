-- Redshift's spatial functions whose arguments or results PostGIS spells differently, installed
-- into pg_catalog beside PostGIS (catalog/store.py _install_postgis puts it there) when it is
-- available. Redshift reads and writes well-known binary as hexadecimal VARCHAR; PostGIS's
-- functions of the same names take and give bytea. An unknown literal prefers the text overload
-- (PostgreSQL's rule: the string category first), so ST_GeomFromWKB('0101...') reads hex as on
-- Redshift while a bytea argument still reaches PostGIS's own. Idempotent; each pins its path.

-- ST_GeomFromWKB(wkb_string [, srid]): "If srid is negative, then null is returned."
CREATE OR REPLACE FUNCTION pg_catalog.st_geomfromwkb(p_wkb text) RETURNS pg_catalog.geometry
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.st_geomfromwkb(pg_catalog.decode(p_wkb, 'hex'))
$$;

CREATE OR REPLACE FUNCTION pg_catalog.st_geomfromwkb(p_wkb text, p_srid integer) RETURNS pg_catalog.geometry
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_srid OPERATOR(pg_catalog.>=) 0
                THEN pg_catalog.st_geomfromwkb(pg_catalog.decode(p_wkb, 'hex'), p_srid) END
$$;

CREATE OR REPLACE FUNCTION pg_catalog.st_geomfromewkb(p_ewkb text) RETURNS pg_catalog.geometry
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.st_geomfromewkb(pg_catalog.decode(p_ewkb, 'hex'))
$$;

-- ST_GeogFromWKB(wkb_string): SRID 4326 unless the value carries one (PostGIS's does the same).
CREATE OR REPLACE FUNCTION pg_catalog.st_geogfromwkb(p_wkb text) RETURNS pg_catalog.geography
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.st_geogfromwkb(pg_catalog.decode(p_wkb, 'hex'))
$$;

-- ST_AsHexWKB(geo): OGC well-known binary (no SRID) in upper-case hexadecimal; PostGIS has no
-- such function. ST_AsHexEWKB(geometry) is PostGIS's own; Redshift's takes a geography too.
CREATE OR REPLACE FUNCTION pg_catalog.st_ashexwkb(p_geo pg_catalog.geometry) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.upper(pg_catalog.encode(pg_catalog.st_asbinary(p_geo), 'hex'))
$$;

CREATE OR REPLACE FUNCTION pg_catalog.st_ashexwkb(p_geo pg_catalog.geography) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.upper(pg_catalog.encode(pg_catalog.st_asbinary(p_geo), 'hex'))
$$;

CREATE OR REPLACE FUNCTION pg_catalog.st_ashexewkb(p_geo pg_catalog.geography) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.st_ashexewkb(p_geo::pg_catalog.geometry)
$$;
