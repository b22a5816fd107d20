"""Attacks on the binding of others' late-binding views in the proxy's own session
(catalog/late_binding.py, catalog/schema.sql bind_late_binding_view)."""

from __future__ import annotations

import contextlib
import time

import psycopg
import pytest

from ..conftest import made_before, unique, wait_for


@contextlib.contextmanager
def _a_victims_secret(proxy, new_user):
    """A victim's table holding 31337 behind a late-binding view of theirs (neither granted), and
    another user with a schema of their own: (the user's connection, their schema, the function
    behind the victim's view, which the user may not call)."""
    victim, victim_password = new_user()
    user, password = new_user()
    theirs, schema = unique("s"), unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {theirs} AUTHORIZATION {victim}")
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
        try:
            with proxy.connect(victim, victim_password) as conn:
                conn.execute(f"CREATE TABLE {theirs}.secret (n int)")
                conn.execute(f"INSERT INTO {theirs}.secret VALUES (31337)")
                conn.execute(f"CREATE VIEW {theirs}.lv AS SELECT n FROM {theirs}.secret WITH NO SCHEMA BINDING")
                conn.execute(f"GRANT USAGE ON SCHEMA {theirs} TO {user}")  # (not the view, nor the table)
            with proxy.connect(user, password) as conn:
                function = conn.execute(
                    "SELECT p.oid::regproc::text FROM pg_catalog.pg_proc p "
                    f"WHERE p.pronamespace = '{theirs}'::regnamespace AND p.proname LIKE 'late_binding_view_%' "
                    "AND p.proname NOT LIKE '%\\_rows'").fetchone()[0]
                for callable_ in (function, f"{function}_rows"):  # (the view's, and the one it reads rows from)
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(f"SELECT n FROM {callable_}()")
                conn.execute(f"CREATE SEQUENCE {schema}.seen")
                yield conn, schema, function
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"DROP SCHEMA {theirs} CASCADE")


def _evil(schema: str, function: str, header: str = "") -> str:
    """CREATE FUNCTION schema.evil(int), returning its argument: where session_user is not its
    caller, it calls `function` and keeps what it gives in schema.seen (a sequence: no rollback
    undoes it)."""
    return f"""CREATE FUNCTION {schema}.evil(int) RETURNS int LANGUAGE plpgsql {header} AS $$
        BEGIN
            IF session_user <> current_user THEN
                PERFORM pg_catalog.setval('{schema}.seen', (SELECT n FROM {function}()));
            END IF;
            RETURN $1;
        END $$"""


def _carrying_out(postgres, conn: psycopg.Connection, schema: str, function: str, header: str = "") -> None:
    """schema.evil(int) (_evil) of conn's user; PL/pgSQL, so made before shiftguard refused users'
    such functions (made_before)."""
    made_before(postgres, conn.info.user, _evil(schema, function, header))


def _domain_running(postgres, conn: psycopg.Connection, schema: str, code: str) -> str:
    """A domain of the caller's whose CHECK runs `code` (PL/pgSQL) except in the caller's own
    session: a literal of an array of it is read, when a query is compiled, by the domain's input
    function, which checks the CHECK. Both made before shiftguard refused them (made_before)."""
    made_before(postgres, conn.info.user, f"""CREATE FUNCTION {schema}.evil(int) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            IF session_user = current_user THEN
                RAISE EXCEPTION 'not in my own session';
            END IF;
            {code}
            RETURN true;
        END $$""", f"CREATE DOMAIN {schema}.d AS int CHECK ({schema}.evil(VALUE))")
    return f"'{{1}}'::{schema}.d[]"


def _pending_then_bindable(conn: psycopg.Connection, schema: str, literal: str) -> None:
    """A pending late-binding view of the caller's reading `literal`, then its table made (its
    owner's own DDL fails to bind it: the domain's CHECK raises in the owner's session), and
    another DDL's end, which has the proxy bind it in its own session."""
    conn.execute(f"CREATE VIEW {schema}.v AS SELECT {literal} AS a FROM {schema}.later WITH NO SCHEMA BINDING")
    conn.execute(f"CREATE TABLE {schema}.later (id int)")
    conn.execute(f"CREATE TABLE {schema}.more (id int)")


def test_a_pending_views_compile_runs_no_code_of_its_owner_under_the_management_role(proxy, new_user, postgres):
    """The proxy compiled another's pending view (its function as made, CREATE VIEW of its query)
    in its own session, as the view's owner, but with the management role (a superuser) as
    session_user: compiling runs no function of the query, but a literal of an array of a domain
    is read by the domain's input function, which runs its CHECK, the owner's function. The
    owner's code ran in the proxy's session, where shiftguard's checks of session_user pass."""
    user, password = new_user()
    schema = unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
        try:
            with proxy.connect(user, password) as conn:
                conn.execute(f"CREATE SEQUENCE {schema}.seen")
                _pending_then_bindable(conn, schema, _domain_running(
                    postgres, conn, schema, f"PERFORM pg_catalog.setval('{schema}.seen', 42);"))
                time.sleep(1.5)  # the proxy's pass (its own after 0.2 s)
                assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_pending_views_compile_reads_no_one_elses_data(proxy, new_user, postgres):
    """Run where session_user is the management role, the owner's code called another user's
    late-binding view's function, which checks that session_user may SELECT the view (a
    superuser may) and reads the other's table as its owner; a sequence (which a rollback does not
    undo) carried the other's secret out."""
    with _a_victims_secret(proxy, new_user) as (conn, schema, function):
        _pending_then_bindable(conn, schema, _domain_running(
            postgres, conn, schema, f"PERFORM pg_catalog.setval('{schema}.seen', (SELECT n FROM {function}()));"))
        time.sleep(1.5)
        assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)


def test_many_views_of_one_owner_keep_no_one_elses_view_from_being_bound(proxy, new_user, postgres):
    """The proxy's pass (two seconds at most) took the database's pending views in random order,
    each view left out for a while only when its compile took more than 0.1 s: an owner's
    hundreds of views, each taking 0.08 s to fail (a domain's CHECK sleeping, or a wide t.*),
    filled every pass, and another's view that a DDL made readable was reached once in many
    passes (a DDL of theirs binds it; anyone else's did not)."""
    user, password = new_user()
    victim, victim_password = new_user()
    schema, theirs = unique("s"), unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
        admin.execute(f"CREATE SCHEMA {theirs} AUTHORIZATION {victim}")
        try:
            with proxy.connect(user, password) as conn:
                made_before(postgres, user, f"""CREATE FUNCTION {schema}.slow(int) RETURNS boolean LANGUAGE plpgsql AS $$
                    BEGIN PERFORM pg_catalog.pg_sleep(0.08); RETURN false; END $$""",
                            f"CREATE DOMAIN {schema}.d AS int CHECK ({schema}.slow(VALUE))")
                conn.execute("; ".join(f"CREATE VIEW {schema}.v{i} AS SELECT '{{1}}'::{schema}.d[] AS a "
                                       f"FROM {schema}.later WITH NO SCHEMA BINDING" for i in range(300)))
                assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace "
                                    "AND relkind = 'v'", (schema,)).fetchone() == (300,)
                conn.execute(f"CREATE TABLE {schema}.later (id int)")  # (the proxy's passes begin)
            with proxy.connect(victim, victim_password) as conn:
                conn.execute(f"CREATE VIEW {theirs}.v AS SELECT a FROM {theirs}.t WITH NO SCHEMA BINDING")
                admin.execute(f"CREATE TABLE {theirs}.t (a int)")  # anyone's DDL: the proxy binds the view
                admin.execute(f"GRANT SELECT ON {theirs}.t TO {victim}")  # (GRANT: no DDL tag)
                time.sleep(5)
                assert conn.execute(f"SELECT a FROM {theirs}.v").fetchall() == []
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"DROP SCHEMA {theirs} CASCADE")


def test_a_view_whose_compile_fails_an_assert_stops_no_pass(proxy, new_user, postgres):
    """bind_late_binding_view leaves a view pending on any error of its compile (WHEN OTHERS),
    but OTHERS is all but query_canceled and assert_failure: an owner's domain CHECK running
    ASSERT false failed the call, and with it the proxy's whole pass, every pass, before the
    views it had not reached yet (another's second view, the owners taken in turn)."""
    user, password = new_user()
    victim, victim_password = new_user()
    common, schema, theirs = unique("s"), unique("s"), unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {common}")
        admin.execute(f"GRANT USAGE ON SCHEMA {common} TO PUBLIC")
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
        admin.execute(f"CREATE SCHEMA {theirs} AUTHORIZATION {victim}")
        try:
            with proxy.connect(user, password) as conn:
                made_before(postgres, user, f"""CREATE FUNCTION {schema}.failing(int) RETURNS boolean LANGUAGE plpgsql AS $$
                    BEGIN ASSERT false; RETURN true; END $$""",
                            f"CREATE DOMAIN {schema}.d AS int CHECK ({schema}.failing(VALUE))")
                for i in range(10):
                    conn.execute(f"CREATE VIEW {schema}.v{i} AS SELECT '{{1}}'::{schema}.d[] AS a FROM {common}.t "
                                 "WITH NO SCHEMA BINDING")
            with proxy.connect(victim, victim_password) as conn:
                for i in range(3):
                    conn.execute(f"CREATE VIEW {theirs}.v{i} AS SELECT a FROM {common}.t WITH NO SCHEMA BINDING")
                admin.execute(f"CREATE TABLE {common}.t (a int)")  # anyone's DDL: the proxy binds the views
                admin.execute(f"GRANT SELECT ON {common}.t TO {victim}")
                time.sleep(3)
                for i in range(3):
                    assert conn.execute(f"SELECT a FROM {theirs}.v{i}").fetchall() == []
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"DROP SCHEMA {theirs} CASCADE")
            admin.execute(f"DROP SCHEMA {common} CASCADE")


def test_an_auto_refresh_runs_no_code_of_its_owner_under_the_management_role(proxy, new_user, postgres):
    """The same with a materialized view the proxy refreshes (AUTO REFRESH YES, materialized_views.sql
    refresh_stale_view): REFRESH runs the view's query as its owner, but in the proxy's session,
    session_user the management role; the owner's function in it read another user's late-binding
    view through that view's function (which asks whether session_user may SELECT the view)."""
    with _a_victims_secret(proxy, new_user) as (conn, schema, function):
        _carrying_out(postgres, conn, schema, function)
        conn.execute(f"CREATE TABLE {schema}.base (a int)")
        conn.execute(f"CREATE MATERIALIZED VIEW {schema}.mv AUTO REFRESH YES AS "
                     f"SELECT {schema}.evil(a) AS a FROM {schema}.base")
        conn.execute(f"INSERT INTO {schema}.base VALUES (1)")  # stale: the proxy refreshes it
        assert wait_for(lambda: conn.execute(f"SELECT a FROM {schema}.mv").fetchall() == [(1,)], timeout=20)
        assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)


def test_a_vacuum_runs_no_code_of_its_tables_owner_under_the_management_role(proxy, new_user, postgres):
    """The same with a VACUUM the proxy runs for its requester (store.py, the table's BRIN index
    on an expression of its owner's function, which VACUUM summarizes): PostgreSQL runs the
    function as the table's owner, session_user the management role."""
    with _a_victims_secret(proxy, new_user) as (conn, schema, function):
        _carrying_out(postgres, conn, schema, function, "IMMUTABLE")
        conn.execute(f"CREATE TABLE {schema}.t (a int)")
        made_before(postgres, conn.info.user,
                    f"CREATE INDEX ON {schema}.t USING brin ({schema}.evil(a)) WITH (pages_per_range = 1)")
        conn.execute(f"INSERT INTO {schema}.t SELECT g FROM generate_series(1, 2000) g")
        conn.execute(f"VACUUM {schema}.t")  # queued; the proxy runs it
        with postgres.connect() as direct:
            assert wait_for(lambda: direct.execute(
                "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relid = %s::regclass",
                (f"{schema}.t",)).fetchone() == (True,), timeout=20)
        assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)
