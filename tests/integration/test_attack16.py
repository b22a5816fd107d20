"""Attacks on callers known by key, round two (catalog/schema.sql "Who calls."): what is still
left on session_user while code of another role runs (an admin's ANALYZE runs the table owner's
index expression as the owner, session_user still the admin), and what the key machinery lets
one user do to another."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import made_before, unique
from .test_attack15 import _during_admins_analyze
from .test_databases import database  # noqa: F401 (a fixture)


def test_an_rls_lookup_predicate_in_an_admins_analyze_is_not_evaluated_for_the_admin(proxy, new_user, postgres):
    """The documented leftover "RLS predicates that read lookup tables keep session_user" is a
    plain leak, the same one test_attack15 closed for predicates without lookups: the policy is
    found to apply by key (to the table owner's code: PUBLIC), but its rls@<oid> function
    evaluates the predicate's current_user as session_user, the admin whose ANALYZE runs the
    user's index expression. The expression reads the admin's table and copies out the rows the
    lookup table entitles the admin to, which the user may not see."""
    name, password = new_user()
    table, lookup, policy, loot = unique("t"), unique("t"), unique("p"), unique("t")
    with proxy.connect() as admin:
        admin_name = admin.execute("SELECT current_user").fetchone()[0]
        admin.execute(f"CREATE TABLE public.{lookup} (username varchar(64), grp varchar(16))")
        admin.execute(f"INSERT INTO public.{lookup} VALUES (%s, 'admins'), (%s, 'users')", (admin_name, name))
        admin.execute(f"CREATE TABLE public.{table} (grp varchar(16), secret text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('admins', 'the admin''s'), ('users', 'the reader''s')")
        admin.execute(f"GRANT SELECT ON public.{table} TO {name}")
        admin.execute(f"CREATE RLS POLICY {policy} WITH (grp varchar(16)) AS t USING (t.grp IN "
                      f"(SELECT e.grp FROM public.{lookup} e WHERE e.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {policy} ON public.{table} TO PUBLIC")
        admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON")
    try:
        with proxy.connect(name, password) as mallory:
            mallory.execute("SELECT shiftguard.caller_key()")
            assert mallory.execute(f"SELECT secret FROM public.{table}").fetchall() == [("the reader's",)]
            mallory.execute(f"CREATE TABLE public.{loot} (secret text)")
        _during_admins_analyze(proxy, postgres, name, password,
                               f"INSERT INTO public.{loot} SELECT secret FROM public.{table};")
        with proxy.connect(name, password) as mallory:
            assert ("the admin's",) not in mallory.execute(f"SELECT secret FROM public.{loot}").fetchall()
    finally:
        with proxy.connect() as admin:
            for statement in (f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                              f"DETACH RLS POLICY {policy} ON public.{table} FROM PUBLIC",
                              f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table}",
                              f"DROP TABLE public.{lookup}"):
                try:
                    admin.execute(statement)
                except psycopg.Error:
                    pass


def test_an_open_transaction_in_another_database_does_not_lock_a_user_out_of_shiftguard(proxy, new_user, database):
    """Keys live in each database (shiftguard_rows.caller_keys), users in the cluster: a user
    made after a database has no key there until its first call, and make_caller_key (PUBLIC to
    execute, any role's oid) gives up after 50 ms on a key another open transaction is making.
    So any user who may connect to that database calls make_caller_key(victim) in a transaction
    and leaves it open: the victim's caller_key() stays NULL there for as long as it wishes, and
    every statement that asks who calls is refused ("the calling role is not known"). Keys
    are now derived from the backend secret and the role (no row to make or wait on)."""
    db = database()
    (name, password), (victim, victim_password) = new_user(), new_user()
    with proxy.connect(name, password, dbname=db) as mallory:
        mallory.execute("BEGIN")
        mallory.execute("SELECT shiftguard.caller_key() IS NOT NULL")
        try:
            with proxy.connect(victim, victim_password, dbname=db) as conn:
                conn.execute("SET statement_timeout = '10s'")
                assert conn.execute("SELECT shiftguard.caller_is_superuser()").fetchone() == (False,)
                conn.execute(f"ALTER USER {victim} PASSWORD 'Changed123'")
        finally:
            mallory.execute("ROLLBACK")


def test_show_tables_of_another_database_in_an_admins_analyze_lists_only_what_the_owner_may(
        proxy, new_user, database, postgres):
    """show_remote (the documented leftover "show_remote keeps session_user") lists another
    database's objects as session_user: the dblink session there does SET ROLE session_user
    before it calls the SHOW function. A table owner's index expression, run by an admin's
    ANALYZE, calls shiftguard.show_tables for a database its owner may not even CONNECT to and
    copies out what the admin sees there: every schema's and table's name, owner and ACL."""
    db = database()
    name, password = new_user()
    secret, loot = unique("secret_plans"), unique("t")
    with postgres.connect() as direct:
        direct.execute(f"REVOKE CONNECT ON DATABASE {db} FROM PUBLIC")
    with proxy.connect(dbname=db) as admin:
        admin.execute(f"CREATE TABLE public.{secret} (a int)")
    with proxy.connect(name, password) as mallory:
        mallory.execute("SELECT shiftguard.caller_key()")
        assert mallory.execute("SELECT count(*) FROM shiftguard.show_tables(%s, NULL, NULL) WHERE table_name = %s",
                               (db, secret)).fetchone() == (0,)
        mallory.execute(f"CREATE TABLE public.{loot} (table_name text)")
    _during_admins_analyze(proxy, postgres, name, password, f"""
        INSERT INTO public.{loot} SELECT table_name FROM shiftguard.show_tables('{db}', NULL, NULL);""")
    with proxy.connect(name, password) as mallory:
        assert (secret,) not in mallory.execute(f"SELECT table_name FROM public.{loot}").fetchall()


def test_record_late_binding_view_in_an_admins_analyze_does_not_let_a_user_drop_anothers_function(
        proxy, new_user, postgres):
    """record_late_binding_view (PUBLIC to execute, SECURITY DEFINER) is not converted to a key:
    it lets pass whoever session_user may act as (owner of the view and of the function). In an
    admin's ANALYZE, session_user is the admin (a superuser: a member of every role), so the
    table owner's index expression records a view of its own as late-binding, its function any
    function in the database: another user's, or one of shiftguard's. Once the view is dropped,
    late_binding_views_forget_dropped (PUBLIC) drops that function as the management role."""
    (name, password), (victim, victim_password) = new_user(), new_user()
    function, view = unique("f"), unique("v")
    with proxy.connect(victim, victim_password) as conn:
        conn.execute(f"CREATE FUNCTION public.{function}() RETURNS int LANGUAGE sql AS $$ SELECT 42 $$")
    with proxy.connect(name, password) as mallory:
        mallory.execute("SELECT shiftguard.caller_key()")
        mallory.execute(f"CREATE VIEW public.{view} AS SELECT 1 AS one")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # not in its own session
            mallory.execute(f"SELECT shiftguard.record_late_binding_view('public.{view}'::regclass, "
                            f"'public.{function}()'::regprocedure, ARRAY['integer'])")
    _during_admins_analyze(proxy, postgres, name, password, f"""
        PERFORM shiftguard.record_late_binding_view('public.{view}'::regclass,
                                                    'public.{function}()'::regprocedure, ARRAY['integer']);""")
    with proxy.connect(name, password) as mallory:
        mallory.execute(f"DROP VIEW public.{view}")
        mallory.execute("SELECT shiftguard.late_binding_views_forget_dropped()")
    with proxy.connect(victim, victim_password) as conn:
        assert conn.execute(f"SELECT public.{function}()").fetchone() == (42,)


def test_a_redshift_function_dropped_by_way_of_record_late_binding_view_lets_a_user_run_code_as_the_admin(
        proxy, new_user, postgres):
    """The same hole taken further: the function dropped is one of the Redshift functions
    shiftguard installs in pg_catalog (months_between). The user then defines
    public.months_between, which every unqualified call now resolves to, and the next admin to
    call months_between runs the user's code as the admin: it asks shiftguard, with the admin's
    own key, to make the user a superuser."""
    name, password = new_user()
    view, target = unique("v"), "pg_catalog.months_between(date,date)"
    with postgres.connect() as direct:
        definition = direct.execute("SELECT pg_get_functiondef(%s::regprocedure)", (target,)).fetchone()[0]
    try:
        with proxy.connect(name, password) as mallory:
            mallory.execute("SELECT shiftguard.caller_key()")
            mallory.execute(f"CREATE VIEW public.{view} AS SELECT 1 AS one")
        _during_admins_analyze(proxy, postgres, name, password, f"""
            PERFORM shiftguard.record_late_binding_view('public.{view}'::regclass, '{target}'::regprocedure,
                                                        ARRAY['integer']);""")
        with proxy.connect(name, password) as mallory:
            mallory.execute(f"DROP VIEW public.{view}")
            mallory.execute("SELECT shiftguard.late_binding_views_forget_dropped()")
            replacement = f"""CREATE FUNCTION public.months_between(date, date) RETURNS float8
                    LANGUAGE plpgsql AS $$ BEGIN
                    BEGIN CALL shiftguard.alter_user('{name}', '{{"superuser": true}}');
                    EXCEPTION WHEN OTHERS THEN NULL; END;
                    RETURN ($2 - $1) / 30.0; END $$"""
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
                mallory.execute(replacement)
        # made before shiftguard refused it, so that only pg_catalog's months_between, if still
        # there, stands between the admin and the user's code
        made_before(postgres, name, replacement)
        with proxy.connect() as admin:
            admin.execute("SELECT months_between('2026-01-01'::date, '2026-03-01'::date)")
            assert admin.execute("SELECT usesuper FROM pg_user WHERE usename = %s", (name,)).fetchone() == (False,)
    finally:
        with postgres.connect() as direct:
            direct.execute("DROP FUNCTION IF EXISTS public.months_between(date, date)")
            if direct.execute("SELECT to_regprocedure(%s)", (target,)).fetchone() == (None,):
                direct.execute(definition)
                direct.execute(f"GRANT EXECUTE ON FUNCTION {target} TO PUBLIC")


def test_a_user_cannot_hold_locks_on_every_protected_table(proxy, new_user):
    """hold_protected(p_role) (PUBLIC, SECURITY DEFINER) opens a cursor, as the management role,
    on every protected table that p_role may alter, for any role its caller names: a user with
    no privilege on any of them names the management role (the owner of schema shiftguard)
    and, in a transaction left open, holds an
    ACCESS SHARE lock on every table with RLS on or a masking policy attached. The owner's ALTER
    TABLE, TRUNCATE, DROP and ATTACH/DETACH wait for it (and every reader queues behind them)
    for as long as the user likes."""
    name, password = new_user()
    table, policy = unique("t"), unique("p")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (owner varchar(64), secret text)")
        admin.execute(f"CREATE RLS POLICY {policy} WITH (owner varchar(64)) USING (owner = current_user)")
        admin.execute(f"ATTACH RLS POLICY {policy} ON public.{table} TO PUBLIC")
        admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON")
    try:
        with proxy.connect(name, password) as mallory:
            mallory.execute("BEGIN")
            # (it takes the caller by key now: the caller's own tables only)
            mallory.execute("SELECT shiftguard.hold_protected(shiftguard.caller_key())")
            try:
                with proxy.connect() as admin:
                    admin.execute("SET lock_timeout = '3s'")
                    admin.execute(f"TRUNCATE public.{table}")
            finally:
                mallory.execute("ROLLBACK")
    finally:
        with proxy.connect() as admin:
            for statement in (f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                              f"DETACH RLS POLICY {policy} ON public.{table} FROM PUBLIC",
                              f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table}"):
                try:
                    admin.execute(statement)
                except psycopg.Error:
                    pass


def test_a_masking_expressions_current_user_in_an_admins_analyze_is_not_the_admin(proxy, new_user, postgres):
    """Masking expressions are written with session_user for current_user (policy/masking.py
    _SessionUser), though they read no table and are inlined into the masking view, where
    current_user is the reader. A policy that unmasks for a named user (conditional masking,
    CASE WHEN current_user = ...) is found to apply by key, but its expression is evaluated for
    session_user: a table owner's index expression, run by an admin's ANALYZE, reads the card
    numbers unmasked."""
    name, password = new_user()
    table, policy, loot = unique("t"), unique("p"), unique("t")
    with proxy.connect() as admin:
        admin_name = admin.execute("SELECT current_user").fetchone()[0]
        admin.execute(f"CREATE TABLE public.{table} (card text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('4111111111111111')")
        admin.execute(f"GRANT SELECT ON public.{table} TO PUBLIC")
        admin.execute(f"CREATE MASKING POLICY {policy} WITH (card VARCHAR(256)) "
                      f"USING (CASE WHEN current_user = '{admin_name}' THEN card ELSE 'XXXX' END)")
        admin.execute(f"ATTACH MASKING POLICY {policy} ON public.{table}(card) TO PUBLIC")
        oid = admin.execute(f"SELECT 'public.{table}'::regclass::oid").fetchone()[0]
    try:
        with proxy.connect(name, password) as mallory:
            mallory.execute("SELECT shiftguard.caller_key()")
            assert mallory.execute(f"SELECT card FROM public.{table}").fetchall() == [("XXXX",)]
            mallory.execute(f"CREATE TABLE public.{loot} (card text)")
        _during_admins_analyze(proxy, postgres, name, password,
                               f'INSERT INTO public.{loot} SELECT card FROM shiftguard."mask:{oid}";')
        with proxy.connect(name, password) as mallory:
            assert ("4111111111111111",) not in mallory.execute(f"SELECT card FROM public.{loot}").fetchall()
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DETACH MASKING POLICY {policy} ON public.{table}(card) FROM PUBLIC")
            admin.execute(f"DROP MASKING POLICY {policy}")
            admin.execute(f"DROP TABLE public.{table}")


def test_pg_get_late_binding_view_cols_lists_only_views_the_caller_may_read(proxy, new_user):
    """pg_catalog.pg_get_late_binding_view_cols (SECURITY DEFINER, PUBLIC) filters by
    has_table_privilege(current_user, ...), and current_user there is the management role, a
    superuser: every user sees the columns of every late-binding view in the database, those
    of views they may not read included."""
    name, password = new_user()
    table, view = unique("t"), unique("v")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (salary_of_the_ceo int)")
        admin.execute(f"CREATE VIEW public.{view} AS SELECT salary_of_the_ceo FROM public.{table} WITH NO SCHEMA BINDING")
        assert admin.execute("SELECT count(*) FROM pg_get_late_binding_view_cols() "
                             "cols(view_schema name, view_name name, col_name name, col_type varchar, col_num int) "
                             "WHERE view_name = %s", (view,)).fetchone() == (1,)
    with proxy.connect(name, password) as mallory:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mallory.execute(f"SELECT * FROM public.{view}")
        assert mallory.execute("SELECT col_name FROM pg_get_late_binding_view_cols() "
                               "cols(view_schema name, view_name name, col_name name, col_type varchar, col_num int) "
                               "WHERE view_name = %s", (view,)).fetchall() == []


def test_a_user_cannot_lock_everyone_out_of_a_masked_table(proxy, new_user):
    """mask_refresh(p_relation) (PUBLIC, SECURITY DEFINER; meant for the event trigger after an
    owner's ALTER TABLE) rebuilds any masked table's masking view and row security as the
    management role, for whoever names the table: a user with no privilege on it calls it in a
    transaction left open and holds the view's and the table's locks, so that every other
    user's read of the table waits for as long as the user likes."""
    (name, password), (reader, reader_password) = new_user(), new_user()
    table, policy = unique("t"), unique("p")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (card text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('4111111111111111')")
        admin.execute(f"GRANT SELECT ON public.{table} TO {reader}")
        admin.execute(f"CREATE MASKING POLICY {policy} WITH (card VARCHAR(256)) USING ('XXXX'::TEXT)")
        admin.execute(f"ATTACH MASKING POLICY {policy} ON public.{table}(card) TO PUBLIC")
        oid = admin.execute(f"SELECT 'public.{table}'::regclass::oid").fetchone()[0]
    try:
        with proxy.connect(name, password) as mallory:
            mallory.execute("BEGIN")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                mallory.execute("SELECT shiftguard.mask_refresh(%s)", (oid,))
            try:
                with proxy.connect(reader, reader_password) as conn:
                    conn.execute("SET statement_timeout = '3s'")
                    assert conn.execute(f"SELECT card FROM public.{table}").fetchall() == [("XXXX",)]
            finally:
                mallory.execute("ROLLBACK")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DETACH MASKING POLICY {policy} ON public.{table}(card) FROM PUBLIC")
            admin.execute(f"DROP MASKING POLICY {policy}")
            admin.execute(f"DROP TABLE public.{table}")
