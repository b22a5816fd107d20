"""Attacks on the proxy's own management sessions running a user's code (catalog/store.py): a
setting a user gives the sessions in a database of theirs, the owner-by-owner VACUUM."""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg
import pytest

from ..conftest import made_before, unique, wait_for
from .test_attack12 import _a_victims_secret, _carrying_out, _evil


@contextlib.contextmanager
def _own_database(proxy, postgres, new_user):
    """A user with CREATEDB and a database of theirs made through the proxy, a victim's table
    there holding 31337 behind a late-binding view of theirs (neither granted): (the user's
    connection to it, the database, a schema of the user's there, the victim's view's function)."""
    user, password = new_user()
    victim, victim_password = new_user()
    database, schema, theirs = unique("db"), unique("s"), unique("s")
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {user} CREATEDB")
    try:
        with proxy.connect(user, password) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        with proxy.connect(dbname=database) as admin:
            admin.execute(f"CREATE SCHEMA {theirs} AUTHORIZATION {victim}")
            admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
        with proxy.connect(victim, victim_password, dbname=database) as conn:
            conn.execute(f"CREATE TABLE {theirs}.secret (n int)")
            conn.execute(f"INSERT INTO {theirs}.secret VALUES (31337)")
            conn.execute(f"CREATE VIEW {theirs}.lv AS SELECT n FROM {theirs}.secret WITH NO SCHEMA BINDING")
            conn.execute(f"GRANT USAGE ON SCHEMA {theirs} TO {user}")
        with proxy.connect(user, password, dbname=database) as conn:
            function = conn.execute(
                "SELECT p.oid::regproc::text FROM pg_catalog.pg_proc p "
                f"WHERE p.pronamespace = '{theirs}'::regnamespace AND p.proname LIKE 'late_binding_view_%'").fetchone()[0]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT n FROM {function}()")
            conn.execute(f"CREATE SEQUENCE {schema}.seen")
            yield conn, database, schema, function
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def test_a_database_owners_role_setting_does_not_make_the_proxys_sessions_theirs(proxy, postgres, new_user):
    """A database's owner may ALTER DATABASE ... SET role = themselves: every session that logs in
    there then runs as them, the proxy's too, session_user still the management role. Its queued
    VACUUM took the owner's tables for the management role's own (owner = current_user) and ran
    them in that session: the BRIN expression of the owner's function ran with session_user the
    management role, and read the victim's late-binding view."""
    with _own_database(proxy, postgres, new_user) as (conn, database, schema, function):
        conn.execute(f"ALTER DATABASE {database} SET role = {conn.info.user}")
        conn.execute(f"CREATE TABLE {schema}.t (a int)")
        with postgres.connect(dbname=database) as direct:  # (made_before's way, in this database)
            direct.execute("SET ROLE NONE")  # (the database's setting made this session the owner's)
            direct.execute("SET session_replication_role = replica")
            direct.execute(f"SET ROLE {conn.info.user}")
            direct.execute(_evil(schema, function, "IMMUTABLE"))
            direct.execute(f"CREATE INDEX ON {schema}.t USING brin ({schema}.evil(a)) WITH (pages_per_range = 1)")
        conn.execute(f"INSERT INTO {schema}.t SELECT g FROM generate_series(1, 2000) g")
        conn.execute(f"VACUUM {schema}.t")  # queued; the proxy runs it
        with postgres.connect(dbname=database) as direct:
            def vacuumed():
                proxy.call(proxy.proxy.catalog.run_vacuums())  # what the proxy's queue reader does, now
                return direct.execute("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relid = %s::regclass",
                                      (f"{schema}.t",)).fetchone() == (True,)
            assert wait_for(vacuumed, timeout=20)
        assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)


def test_a_database_owners_role_setting_does_not_make_a_superusers_session_theirs(proxy, postgres, new_user):
    """The same setting took every superuser's session there: the admin's statements ran as the
    database's owner (session_user still the admin, whose every check passed), and the tables
    the admin made there were the owner's, theirs to read."""
    with _own_database(proxy, postgres, new_user) as (conn, database, schema, function):
        conn.execute(f"ALTER DATABASE {database} SET role = {conn.info.user}")
        with proxy.connect(dbname=database) as admin:
            assert admin.execute("SELECT current_user = session_user").fetchone() == (True,)
            admin.execute(f"CREATE TABLE {schema}.admins (secret int)")
            admin.execute(f"INSERT INTO {schema}.admins VALUES (31337)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT secret FROM {schema}.admins")


def test_a_superusers_table_in_a_users_schema_is_not_vacuumed_as_the_management_role_once_replaced(
        proxy, new_user, postgres):
    """A queued VACUUM of the whole database lists its tables by name, each owner's in a statement
    of its own, the owners' first and a superuser's (as the management role) last. The owner of a
    schema may drop a table there that is not theirs: their own table's VACUUM (its BRIN expression
    sleeping) gave them time to put a table of theirs in the place of the admin's one there, with
    a BRIN expression of their function, which the management role then vacuumed as the admin's,
    session_user the management role."""
    with _a_victims_secret(proxy, new_user) as (conn, schema, function):
        _carrying_out(postgres, conn, schema, function, "IMMUTABLE")
        conn.execute(f"CREATE TABLE {schema}.mine (a int)")
        made_before(postgres, conn.info.user, f"""CREATE FUNCTION {schema}.slow(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN
                IF $1 = 2000 AND pg_catalog.current_query() ILIKE 'VACUUM%' THEN PERFORM pg_catalog.pg_sleep(3); END IF;
                RETURN $1;
            END $$""", f"CREATE INDEX ON {schema}.mine USING brin ({schema}.slow(a)) WITH (pages_per_range = 1)")
        conn.execute(f"INSERT INTO {schema}.mine SELECT g FROM generate_series(1, 2000) g")
        with proxy.connect() as admin:
            admin.execute(f"CREATE TABLE {schema}.admins (a int)")  # the admin's, in the user's schema
            admin.execute("VACUUM")  # the whole database: queued
            runner = threading.Thread(target=lambda: proxy.call(proxy.proxy.catalog.run_vacuums()))  # (or the proxy's reader)
            runner.start()
            time.sleep(1.5)  # (the user's own table's VACUUM sleeps)
            conn.execute(f"DO $$ BEGIN EXECUTE 'DROP TABLE {schema}.admins'; END $$")
            conn.execute(f"CREATE TABLE {schema}.admins (a int)")
            made_before(postgres, conn.info.user,  # (an index of the function: refused through the proxy now)
                        f"CREATE INDEX ON {schema}.admins USING brin ({schema}.evil(a)) WITH (pages_per_range = 1)")
            conn.execute(f"INSERT INTO {schema}.admins SELECT g FROM generate_series(1, 2000) g")
            runner.join(60)
        with postgres.connect() as direct:
            wait_for(lambda: direct.execute(
                "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relid = %s::regclass",
                (f"{schema}.admins",)).fetchone() == (True,), timeout=15)
        assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)


def test_the_truncate_permission_runs_no_trigger_of_a_child_table_as_the_management_role(proxy, new_user, postgres):
    """TRUNCATE TABLE, the system permission, runs TRUNCATE in a function of the management role's
    (privileges.sql permitted), refused for a table with triggers; but TRUNCATE of a parent table
    truncates its inheritance children too, and fires their TRUNCATE triggers, the user's
    function then running as the management role, a superuser."""
    user, password = new_user()
    schema, role = unique("s"), unique("r")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
        admin.execute(f"CREATE ROLE {role}")
        admin.execute(f"GRANT TRUNCATE TABLE TO ROLE {role}")
        admin.execute(f"GRANT ROLE {role} TO {user}")
        try:
            with proxy.connect(user, password) as conn:
                conn.execute(f"CREATE SEQUENCE {schema}.seen")
                conn.execute(f"CREATE TABLE {schema}.parent (a int)")
                conn.execute(f"DO $$ BEGIN EXECUTE 'CREATE TABLE {schema}.child () INHERITS ({schema}.parent)'; END $$")
                made_before(postgres, user, f"""CREATE FUNCTION {schema}.evil() RETURNS trigger LANGUAGE plpgsql AS $f$
                        BEGIN
                            IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
                                PERFORM pg_catalog.setval('{schema}.seen', 42);
                            END IF;
                            RETURN NULL;
                        END $f$""", f"CREATE TRIGGER evil BEFORE TRUNCATE ON {schema}.child "
                            f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.evil()")
                try:
                    conn.execute(f"TRUNCATE {schema}.parent")
                except psycopg.errors.FeatureNotSupported:
                    pass  # refused: the child's trigger
                assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"DROP ROLE {role} FORCE")


@pytest.mark.parametrize("called", ["", "_rows"])
def test_an_admins_analyze_runs_no_code_of_a_tables_owner_as_the_admin(proxy, new_user, postgres, called):
    """ANALYZE, as VACUUM, runs a table's owner's code (an index's expression, evaluated for the
    statistics) as the owner, but in the session that runs it: an admin's ANALYZE of the whole
    database ran it with session_user the admin, whose every check passes (another's late-binding
    view read). The queued VACUUM runs each owner's tables with the owner as session_user; ANALYZE
    is run in the admin's own session. A late-binding view's function now asks whether
    current_user may read the view too, and the function reading its rows runs only when called
    by it (catalog/schema.sql late_binding_function)."""
    with _a_victims_secret(proxy, new_user) as (conn, schema, function):
        _carrying_out(postgres, conn, schema, function + called, "IMMUTABLE")
        conn.execute(f"CREATE TABLE {schema}.t (a int)")
        # (made on the empty table: made_before's session_user is not the owner, for whom evil would read)
        made_before(postgres, conn.info.user, f"CREATE INDEX ON {schema}.t ({schema}.evil(a))")
        conn.execute(f"INSERT INTO {schema}.t SELECT g FROM generate_series(1, 100) g")
        with proxy.connect() as admin, contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            admin.execute(f"ANALYZE {schema}.t")  # (the owner's function fails it now, as it may anyway)
        assert conn.execute(f"SELECT last_value FROM {schema}.seen").fetchone() == (1,)
