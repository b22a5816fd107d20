"""A user's code runs only as Redshift lets it (catalog/users_code.sql): SQL functions of one
expression (Redshift's AS $$ SELECT ... $$ form turned into RETURN by policy/dialect.py),
PL/pgSQL in stored procedures, no triggers, and nothing in a table, view, domain or aggregate of
theirs that would act with the rights of whoever uses it. Admins keep PostgreSQL's functions."""

from __future__ import annotations

import logging

import psycopg
import pytest

from ..conftest import installed_by_an_older_version, unique

REFUSED = psycopg.errors.FeatureNotSupported


def test_redshift_sql_udfs_work_for_a_user(proxy, new_user):
    """The forms of Redshift's documentation: $$ and single-quoted bodies, a SELECT with an
    alias, CREATE OR REPLACE, named and positional arguments; the function is usable at once."""
    name, password = new_user()
    f_max, f_upper = unique("f_max"), unique("f_up")
    with proxy.connect(name, password) as conn:
        conn.execute(f"""CREATE FUNCTION public.{f_max} (float, float) RETURNS float STABLE AS $$
                           SELECT CASE WHEN $1 > $2 THEN $1 ELSE $2 END
                         $$ LANGUAGE sql""")
        conn.execute(f"CREATE OR REPLACE FUNCTION public.{f_upper}(t varchar) RETURNS varchar IMMUTABLE "
                     f"AS 'select upper(t) AS shouted;' LANGUAGE sql")
        assert conn.execute(f"SELECT public.{f_max}(2, 5.5), public.{f_upper}('quiet')").fetchone() == (5.5, "QUIET")
        conn.execute(f"CREATE OR REPLACE FUNCTION public.{f_upper}(t varchar) RETURNS varchar IMMUTABLE "
                     f"AS $$ SELECT lower(t) $$ LANGUAGE sql")
        assert conn.execute(f"SELECT public.{f_upper}('LOUD')").fetchone() == ("loud",)
        # and in what a user makes with them
        table = unique("t")
        conn.execute(f"CREATE TABLE public.{table} (a float DEFAULT public.{f_max}(1, 2), b timestamp DEFAULT getdate(), "
                     f"c float DEFAULT random(), id integer IDENTITY(1, 1))")
        conn.execute(f"INSERT INTO public.{table} (b) VALUES (NULL)")
        assert conn.execute(f"SELECT a, id FROM public.{table}").fetchall() == [(2.0, 1)]
        conn.execute(f"CREATE VIEW public.{unique('v')} AS SELECT public.{f_upper}(to_char(now(), 'YYYY')) AS y")


@pytest.mark.parametrize("body, why", [
    ("LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$", "is not a SQL function of one expression"),
    ("AS $$ SELECT count(*)::int FROM pg_catalog.pg_class $$ LANGUAGE sql", "is not a SQL function of one expression"),
    ("LANGUAGE sql RETURN (SELECT count(*)::int FROM pg_catalog.pg_authid)", "reads a table or view"),
    ("LANGUAGE sql BEGIN ATOMIC SELECT 1; END", "BEGIN ATOMIC"),
    ("LANGUAGE sql SET work_mem = '1MB' RETURN 1", "sets a parameter"),
    ("LANGUAGE sql RETURN length(pg_catalog.set_config('search_path', 'evil', false))", "calls set_config"),
    ("LANGUAGE sql RETURN length(query_to_xml('SELECT 1', true, true, '')::text)", "calls query_to_xml"),
])
def test_a_user_cannot_make_a_function_that_acts_as_its_caller(proxy, new_user, body, why):
    """A function runs with the rights of whoever calls it: in a view an admin reads, in the
    default of a table an admin writes. A user's may only compute a value, as Redshift's SQL
    UDFs do; the message says why."""
    _refused_both_ways(proxy, new_user, f"CREATE FUNCTION public.{{f}}() RETURNS integer {body}", why)


def test_a_functions_parameter_default_is_checked_too(proxy, new_user):
    """A parameter's default is evaluated in the query of whoever calls the function."""
    _refused_both_ways(proxy, new_user, "CREATE FUNCTION public.{f}(a text DEFAULT pg_catalog.set_config('a.b', 'c', "
                                        "false)) RETURNS integer LANGUAGE sql RETURN length(a)", "calls set_config")


def _refused_both_ways(proxy, new_user, statement, why):
    """statement ({f}: the function's name) refused to a new user, through the proxy and from a
    DO block, with why in the message; no function made."""
    name, password = new_user()
    function = unique("f_")
    with proxy.connect(name, password) as conn:
        with pytest.raises(REFUSED, match=why):
            conn.execute(statement.format(f=function))
        with pytest.raises(REFUSED, match=why):
            conn.execute(f"DO $do$ BEGIN EXECUTE $f${statement.format(f=function).replace('$$', '$b$')}$f$; END $do$")
        assert conn.execute("SELECT to_regproc(%s)", (f"public.{function}",)).fetchone() == (None,)


def test_plpgsql_runs_in_a_users_stored_procedure(proxy, new_user):
    """Redshift's place for PL/pgSQL: CALL runs it as the caller asked."""
    name, password = new_user()
    procedure, table = unique("p"), unique("t")
    with proxy.connect(name, password) as conn:
        conn.execute(f"CREATE TABLE public.{table} (n integer)")
        conn.execute(f"""CREATE PROCEDURE public.{procedure}(k integer) AS $$
                         BEGIN FOR i IN 1..k LOOP INSERT INTO public.{table} VALUES (i); END LOOP; END
                         $$ LANGUAGE plpgsql""")
        conn.execute(f"CALL public.{procedure}(3)")
        assert conn.execute(f"SELECT sum(n) FROM public.{table}").fetchone() == (6,)


@pytest.mark.parametrize("statement, why", [
    ("CREATE TABLE public.{t} (a text DEFAULT pg_catalog.set_config('search_path', 'evil', false))",
     "calls set_config"),
    ("CREATE TABLE public.{t} (a integer CHECK (lo_export(0, '/tmp/x') = 1))", "calls lo_export"),
    ("CREATE VIEW public.{t} AS SELECT query_to_xml('SELECT 1', true, true, '') AS x", "calls query_to_xml"),
    ("CREATE VIEW public.{t} AS SELECT table_to_xml('pg_catalog.pg_class', true, true, '') AS x",
     "calls table_to_xml"),
    ("CREATE DOMAIN public.{t} AS text CHECK (VALUE <> pg_catalog.set_config('a.b', VALUE, false))",
     "calls set_config"),
    ("CREATE AGGREGATE public.{t}(text, boolean) (SFUNC = pg_catalog.set_config, STYPE = text)", "calls set_config"),
    ("CREATE TABLE public.{t} (a text DEFAULT shiftguard.caller_key())", "calls shiftguard.caller_key"),
])
def test_a_users_objects_call_nothing_that_acts_as_whoever_uses_them(proxy, new_user, statement, why):
    """Defaults and CHECK constraints run as whoever writes the table, a view's functions as
    whoever reads it, a domain's checks and an aggregate's functions as whoever uses them: the
    built-ins that act with the caller's rights (set their settings, write the server's files,
    read whole tables as them, shiftguard's own) are refused there, through the proxy and from
    a DO block."""
    name, password = new_user()
    with proxy.connect(name, password) as conn:
        with pytest.raises(REFUSED, match=why):
            conn.execute(statement.format(t=unique("o")))
        with pytest.raises(REFUSED, match=why):
            conn.execute(f"DO $do$ BEGIN EXECUTE $s${statement.format(t=unique('o'))}$s$; END $do$")


def test_a_user_cannot_make_a_trigger(proxy, new_user):
    name, password = new_user()
    table = unique("t")
    with proxy.connect(name, password) as conn:
        conn.execute(f"CREATE TABLE public.{table} (note text)")
        with pytest.raises(REFUSED, match="triggers are not supported"):
            conn.execute(f"DO $$ BEGIN EXECUTE 'CREATE TRIGGER x BEFORE UPDATE ON public.{table} FOR EACH ROW "
                         f"EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()'; END $$")


def test_an_admin_keeps_postgresql_functions(proxy):
    """Admins are trusted: their PL/pgSQL functions and triggers are PostgreSQL's."""
    function, table = unique("f_"), unique("t")
    with proxy.connect() as admin:
        try:
            admin.execute(f"CREATE FUNCTION public.{function}() RETURNS integer LANGUAGE plpgsql AS $$ BEGIN RETURN 7; END $$")
            admin.execute(f"CREATE TABLE public.{table} (note text)")
            admin.execute(f"DO $$ BEGIN EXECUTE 'CREATE TRIGGER x BEFORE UPDATE ON public.{table} FOR EACH ROW "
                          f"EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()'; END $$")
            assert admin.execute(f"SELECT public.{function}()").fetchone() == (7,)
        finally:
            admin.execute(f"DROP TABLE IF EXISTS public.{table}")
            admin.execute(f"DROP FUNCTION IF EXISTS public.{function}()")


def test_a_users_code_made_before_is_logged_at_start(make_proxy, postgres, caplog):
    """A user's PL/pgSQL function and a trigger on their table made before shiftguard refused
    them (here given to the user by a superuser, directly) are named at the next start."""
    proxy = make_proxy()
    name, function, table = unique("u"), unique("f_"), unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} PASSWORD 'Old-code-1'")
    with postgres.connect() as direct:
        direct.execute(f"CREATE FUNCTION public.{function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
        direct.execute(f"CREATE TABLE public.{table} (note text)")
        direct.execute(f"CREATE TRIGGER {table}_x BEFORE INSERT ON public.{table} FOR EACH ROW "
                       f"EXECUTE FUNCTION public.{function}()")
        direct.execute(f"ALTER FUNCTION public.{function}() OWNER TO {name}")
        direct.execute(f"ALTER TABLE public.{table} OWNER TO {name}")
        try:
            installed_by_an_older_version(direct)
            caplog.set_level(logging.WARNING, logger="proxy.catalog.store")
            make_proxy()
            logged = " ".join(r.getMessage() for r in caplog.records if "code of users'" in r.getMessage())
        finally:
            direct.execute(f"DROP TABLE public.{table}")
            direct.execute(f"DROP FUNCTION public.{function}()")
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {name}")
    assert f"function public.{function}() is not a SQL function of one expression" in logged
    assert f"trigger {table}_x on table public.{table} (owner {name})" in logged
