"""Attacks on main's newest fixes (ddba2af, 3a972ea): the lookup tables of RLS policies may not
carry code PostgreSQL's planner evaluates (row_code.sql read_code, require_no_read_code,
guard_row_code), checked when the policy is made and at the end of each DDL command that could
add some (an event trigger at ddl_command_end); and on who runs a user's code (schema.sql
caller_key, guard_name_resolution). Every test fails on main now."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique
from .test_attack19 import _drop_all, _looted, _lookup_setup, _lookup_teardown, _plant


def _attempt(conn, statement: str) -> None:
    try:
        conn.execute(statement)
    except psycopg.Error:
        pass  # refused: what the attacker must get


def test_an_expression_index_left_invalid_by_a_concurrent_build_is_not_made_valid_on_a_lookup_table(proxy, new_user):
    """CREATE INDEX CONCURRENTLY commits the index (not yet valid) before its last transaction,
    where the ddl_command_end trigger refuses it: that rollback only leaves it INVALID, with its
    expression, on the lookup table. PostgreSQL 15 fires no event trigger for REINDEX, which
    marks an invalid index valid: from a DO block, nothing of shiftguard's sees it, and the
    planner then simplifies the expression (eval_const_expressions on the IMMUTABLE function of a
    constant) when it plans the lookup inside rls@<oid>, running the owner's function as
    shiftguard_rls: every protected table's policy columns and other policies' lookup tables."""
    name, password = new_user()
    n, oid = _lookup_setup(proxy, name, password)
    index = f"cic_{n['team']}"
    try:
        with proxy.connect(name, password) as mallory:
            mallory.autocommit = True
            assert mallory.execute(f"SELECT note FROM public.{n['mine']}").fetchall() == [("for the team",)]
            _plant(mallory, n, oid)
            # refused before it builds anything (shiftguard holds lookup tables as it holds protected ones)
            with pytest.raises(psycopg.errors.ObjectInUse, match="being used by active queries"):
                mallory.execute(f"CREATE INDEX CONCURRENTLY {index} ON public.{n['team']} ((public.{n['evil']}(1)))")
            assert mallory.execute("SELECT to_regclass(%s)", (f"public.{index}",)).fetchone() == (None,)
            try:
                mallory.execute(f"DO $$ BEGIN EXECUTE 'REINDEX INDEX public.{index}'; END $$")
            except psycopg.Error:
                pass  # refused: what the attacker must get
        with proxy.connect(name, password) as mallory:
            loot = _looted(mallory, n)
            assert not {"HIDDEN-REGION", "LOOKUP-ROW", "as shiftguard_rls"} & loot, loot
    finally:
        _lookup_teardown(proxy, n)


def test_a_users_overload_of_an_admins_function_in_public_does_not_run_in_another_users_query(proxy, new_user):
    """guard_name_resolution refuses a user's function named like a built-in one (pg_catalog),
    but not one named like another user's (or an admin's) function in public: PostgreSQL picks
    the better-matching overload, wherever it is on the path, so mallory's public.f(integer)
    takes every call of the admin's public.f(float) with an integer argument, and runs as
    whoever makes it (current_user the caller, a Redshift user: caller_key answers for them).
    Here it runs in the victim's own query of a table whose RLS policy lets only the victim
    see its rows, reads them as the victim and copies them into mallory's table. (On Redshift a
    UDF reads no table: SQL UDFs have no FROM, Python UDFs no database access.)"""
    mallory_name, mallory_password = new_user()
    victim, victim_password = new_user()
    table, policy, loot, function = unique("t"), unique("p"), unique("t"), unique("f_")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (region varchar(16), amount integer)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('VICTIM-ROW', 7)")
        admin.execute(f"GRANT SELECT ON public.{table} TO {victim}, {mallory_name}")
        admin.execute(f"CREATE RLS POLICY {policy} USING (true)")
        admin.execute(f"ATTACH RLS POLICY {policy} ON public.{table} TO {victim}")
        admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON")
        admin.execute(f"CREATE FUNCTION public.{function}(float) RETURNS float STABLE AS $$ SELECT $1 * 2 $$ LANGUAGE sql")
    try:
        with proxy.connect(mallory_name, mallory_password) as mallory:
            assert mallory.execute(f"SELECT region FROM public.{table}").fetchall() == []
            mallory.execute(f"CREATE TABLE public.{loot} (what text)")
            mallory.execute(f"GRANT INSERT ON public.{loot} TO PUBLIC")
            try:
                mallory.execute(f"""CREATE FUNCTION public.{function}(integer) RETURNS float LANGUAGE plpgsql AS $$
                    BEGIN
                      INSERT INTO public.{loot} SELECT 'as ' || current_user;
                      INSERT INTO public.{loot} SELECT region FROM public.{table};
                      RETURN $1 * 2;
                    END $$""")
            except psycopg.Error:
                pass  # refused: what the attacker must get
        with proxy.connect(victim, victim_password) as conn:
            assert conn.execute(f"SELECT region, {function}(amount) FROM public.{table}").fetchall() == [("VICTIM-ROW", 14)]
        with proxy.connect(mallory_name, mallory_password) as mallory:
            try:
                loot_rows = {r[0] for r in mallory.execute(f"SELECT what FROM public.{loot}").fetchall()}
            except psycopg.Error:
                loot_rows = set()
            assert "VICTIM-ROW" not in loot_rows and f"as {victim}" not in loot_rows, loot_rows
    finally:
        _drop_all(proxy, [f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                          f"DETACH RLS POLICY {policy} ON public.{table} FROM {victim}",
                          f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table}",
                          f"DROP FUNCTION IF EXISTS public.{function}(integer)",
                          f"DROP FUNCTION IF EXISTS public.{function}(float)"])


def test_a_function_in_a_users_view_does_not_run_as_another_user_who_reads_the_view(proxy, new_user):
    """A view runs its functions as whoever reads it (PostgreSQL checks the view owner's
    privileges on its tables, but current_user stays the reader): mallory's view over a plain
    table of hers calls her PL/pgSQL function, which runs as the victim reading the view
    (caller_key answers for the victim: a Redshift user, no SET ROLE), reads the rows only the
    victim's RLS policy shows and copies them into mallory's table. On Redshift a view's UDFs
    cannot read or write tables (SQL UDFs have no FROM, Python UDFs no database access)."""
    mallory_name, mallory_password = new_user()
    victim, victim_password = new_user()
    table, policy, loot, view, steal = unique("t"), unique("p"), unique("t"), unique("v"), unique("f_")
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
            mallory.execute(f"CREATE TABLE public.{loot} (what text)")
            mallory.execute(f"GRANT INSERT ON public.{loot} TO PUBLIC")
            _attempt(mallory, f"""CREATE FUNCTION public.{steal}() RETURNS text LANGUAGE plpgsql AS $$
                BEGIN
                  INSERT INTO public.{loot} SELECT 'as ' || current_user;
                  INSERT INTO public.{loot} SELECT region FROM public.{table};
                  RETURN 'hello';
                EXCEPTION WHEN OTHERS THEN RETURN 'hello'; END $$""")
            _attempt(mallory, f"CREATE VIEW public.{view} AS SELECT public.{steal}() AS greeting")
            _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
        with proxy.connect(victim, victim_password) as conn:
            try:
                conn.execute(f"SELECT greeting FROM public.{view}").fetchall()
            except psycopg.Error:
                pass  # refused: what the attacker must get
        with proxy.connect(mallory_name, mallory_password) as mallory:
            loot_rows = {r[0] for r in mallory.execute(f"SELECT what FROM public.{loot}").fetchall()}
            assert "VICTIM-ROW" not in loot_rows and f"as {victim}" not in loot_rows, loot_rows
    finally:
        _drop_all(proxy, [f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                          f"DETACH RLS POLICY {policy} ON public.{table} FROM {victim}",
                          f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table}"])


def test_an_admin_reading_a_users_view_does_not_make_the_user_a_superuser(proxy, new_user, postgres):
    """The same with the admin reading: the admin's role is a PostgreSQL superuser, and the
    function in mallory's view runs as the admin (ALTER ROLE is on a shared object: no event
    trigger of shiftguard's sees it), making mallory's role a superuser, whom no RLS or masking
    reaches (superusers bypass row security)."""
    name, password = new_user()
    view, function = unique("v"), unique("f_")
    with proxy.connect(name, password) as mallory:
        _attempt(mallory, f"""CREATE FUNCTION public.{function}() RETURNS text LANGUAGE plpgsql AS $$
            BEGIN
              BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', '{name}'); EXCEPTION WHEN OTHERS THEN NULL; END;
              RETURN 'hello';
            END $$""")
        _attempt(mallory, f"CREATE VIEW public.{view} AS SELECT public.{function}() AS greeting")
        _attempt(mallory, f"GRANT SELECT ON public.{view} TO PUBLIC")
    try:
        with proxy.connect() as admin:
            try:
                admin.execute(f"SELECT greeting FROM public.{view}").fetchall()
            except psycopg.Error:
                pass  # refused: what the attacker must get
        with proxy.connect(name, password) as mallory:
            assert mallory.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    finally:
        with postgres.connect() as direct:
            direct.execute(f"ALTER ROLE {name} NOSUPERUSER")


def test_an_admin_writing_to_a_users_table_does_not_run_the_users_trigger_as_the_admin(proxy, new_user, postgres):
    """Redshift has no triggers; the proxy refuses CREATE TRIGGER it sees, but a DO block makes
    one on a table of mallory's own (not protected, so guard_row_code lets it be). A row the
    admin writes there (a shared staging table) fires it as the admin, a PostgreSQL superuser:
    mallory's role becomes one."""
    name, password = new_user()
    table, function = unique("t"), unique("f_")
    with proxy.connect(name, password) as mallory:
        mallory.execute(f"CREATE TABLE public.{table} (note text)")
        mallory.execute(f"GRANT INSERT ON public.{table} TO PUBLIC")
        _attempt(mallory, f"""CREATE FUNCTION public.{function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', '{name}'); EXCEPTION WHEN OTHERS THEN NULL; END;
              RETURN NEW;
            END $$""")
        try:
            mallory.execute(f"""DO $$ BEGIN EXECUTE 'CREATE TRIGGER x BEFORE INSERT ON public.{table} '
                || 'FOR EACH ROW EXECUTE FUNCTION public.{function}()'; END $$""")
        except psycopg.Error:
            pass  # refused: what the attacker must get
    try:
        with proxy.connect() as admin:
            try:
                admin.execute(f"INSERT INTO public.{table} VALUES ('from the admin')")
            except psycopg.Error:
                pass
        with proxy.connect(name, password) as mallory:
            assert mallory.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    finally:
        with postgres.connect() as direct:
            direct.execute(f"ALTER ROLE {name} NOSUPERUSER")
