"""shiftguard's own locks (catalog/schema.sql object_locks): the lending of CREATE on a schema,
the grants a superuser's view gives shiftguard_views and the write tracking of a materialized
view's base table each wait for another session doing the same to the same object; an ordinary
user cannot hold those locks. They were advisory locks whose keys anyone could compute and hold
in a session for as long as they liked, and every other user's statement waited behind them."""

from __future__ import annotations

import threading

import psycopg
import pytest

from ..conftest import USER_PASSWORD, unique, waits_on_a_lock

# Each statement below waits no longer than this for a lock: a statement that waits on a user's
# lock fails with lock_not_available instead of hanging the test.
LOCK_TIMEOUT = "lock_timeout = '10s'"


def oid(conn: psycopg.Connection, schema: str, relation: str | None = None) -> int:
    """A schema's or relation's oid, as anyone may read it from the catalog (without USAGE on
    the schema too)."""
    if relation is None:
        return conn.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()[0]
    return conn.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = %s", (schema, relation)).fetchone()[0]


def hold_advisory_locks(conn: psycopg.Connection, purpose: str, keys: list[str]) -> None:
    """Hold in conn's session the advisory locks the catalog took, for purpose and each key (an
    SQL expression), as any user can."""
    for key in keys:
        conn.execute(f"SELECT pg_advisory_lock(hashtext(%s), {key})", (f"shiftguard.{purpose}",))


def test_a_user_cannot_hold_the_lock_of_create_lent_on_a_schema(proxy, new_user):
    """A holder of the CREATE TABLE system permission creates in a schema where he lacks CREATE
    (shiftguard lends it for the statement), while another user holds the advisory lock the
    lending took."""
    schema, role = unique("s"), unique("r")
    (bob, _), (mallory, _) = new_user(), new_user()
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {bob}, {mallory}")
        admin.execute(f"CREATE ROLE {role}")
        admin.execute(f"GRANT CREATE TABLE TO ROLE {role}")
        admin.execute(f"GRANT ROLE {role} TO {bob}")
    try:
        with proxy.connect(mallory, USER_PASSWORD) as holder, proxy.connect(bob, USER_PASSWORD) as creator:
            hold_advisory_locks(holder, "lend_create", [f"hashtext('{oid(holder, schema)}')"])
            creator.execute(f"SET {LOCK_TIMEOUT}")
            assert creator.execute(f"CREATE TABLE {schema}.t (a int)").statusmessage == "CREATE TABLE"
            assert creator.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,)).fetchone() == (False,)
            # Nor can they take the lock that replaced it.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                holder.execute("SELECT FROM shiftguard_rows.object_locks FOR UPDATE")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                holder.execute("SELECT shiftguard.lock_object('lend_create', %s)", (oid(holder, schema),))
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"DROP ROLE {role} FORCE")


def test_a_user_cannot_hold_the_lock_of_a_superusers_view(proxy, new_user):
    """A superuser's view over a table hands its grants to shiftguard_views under a lock per
    schema and table; a user holding the advisory locks it took, for both, made it wait."""
    schema = unique("s")
    mallory, _ = new_user()
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.t (a int)")
        admin.execute(f"INSERT INTO {schema}.t VALUES (7)")
    try:
        with proxy.connect(mallory, USER_PASSWORD) as holder, proxy.connect() as admin:
            hold_advisory_locks(holder, "lend_to_views_role", [str(oid(holder, schema)), str(oid(holder, schema, "t"))])
            admin.execute(f"SET {LOCK_TIMEOUT}")
            assert admin.execute(f"CREATE VIEW {schema}.v AS SELECT a FROM {schema}.t").statusmessage == "CREATE VIEW"
            assert admin.execute(f"SELECT a FROM {schema}.v").fetchall() == [(7,)]
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_user_cannot_hold_the_lock_of_a_materialized_views_base_table(proxy, new_user):
    """The first materialized view over a table makes the trigger that tracks its writes, under
    the same lock per table; a user holding its advisory lock made every user's CREATE
    MATERIALIZED VIEW over the table wait. The view is fresh, then stale after a write."""
    (owner, _), (mallory, _) = new_user(), new_user()
    table, view = unique("base"), unique("mv")
    with proxy.connect(owner, USER_PASSWORD) as conn:
        conn.execute(f"CREATE TABLE public.{table} (a int)")
    with proxy.connect(mallory, USER_PASSWORD) as holder, proxy.connect(owner, USER_PASSWORD) as conn:
        hold_advisory_locks(holder, "lend_to_views_role", [str(oid(holder, "public", table))])
        conn.execute(f"SET {LOCK_TIMEOUT}")
        assert conn.execute(f"CREATE MATERIALIZED VIEW public.{view} AS SELECT count(*) AS n FROM public.{table}"
                            ).statusmessage == "CREATE MATERIALIZED VIEW"
        assert conn.execute("SELECT is_stale FROM svv_mv_info WHERE name = %s", (view,)).fetchall() == [("f",)]
        conn.execute(f"INSERT INTO public.{table} VALUES (1)")
        assert conn.execute("SELECT is_stale FROM svv_mv_info WHERE name = %s", (view,)).fetchall() == [("t",)]


def test_a_materialized_view_and_a_view_made_at_once_over_one_table(proxy, postgres):
    """What the lock of a table is for: a materialized view makes the trigger that tracks the
    table's writes and a superuser's view gives shiftguard_views SELECT on it, both rewriting
    the table's catalog row. The view waits for the materialized view's transaction (dbt's
    threads) instead of failing with "tuple concurrently updated"."""
    schema = unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.t (a int)")
    first, second = psycopg.connect(proxy.conninfo()), psycopg.connect(proxy.conninfo(), autocommit=True)
    try:
        first.execute(f"CREATE MATERIALIZED VIEW {schema}.mv AS SELECT count(*) AS n FROM {schema}.t")
        outcome = []

        def create_view():
            try:
                outcome.append(second.execute(f"CREATE VIEW {schema}.v AS SELECT a FROM {schema}.t").statusmessage)
            except psycopg.Error as exc:
                outcome.append(repr(exc))
        other = threading.Thread(target=create_view)
        other.start()
        assert waits_on_a_lock(postgres, f"{schema}.v ")  # the second, on the first's transaction
        first.commit()
        other.join(30)
        assert outcome == ["CREATE VIEW"]
        stale = f"SELECT is_stale FROM svv_mv_info WHERE schema_name = '{schema}'"
        assert second.execute(stale).fetchall() == [("f",)]
        second.execute(f"INSERT INTO {schema}.t VALUES (1)")
        assert second.execute(stale).fetchall() == [("t",)]
        assert second.execute(f"SELECT a FROM {schema}.v").fetchall() == [(1,)]
    finally:
        first.close()
        second.close()
        with proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_dropped_objects_lock_goes_with_it(proxy, postgres, new_user):
    """The lock rows are made at an object's first use and go with the object: a user making
    and dropping tables cannot grow them without end."""
    owner, _ = new_user()
    table = unique("base")
    with proxy.connect(owner, USER_PASSWORD) as conn:
        conn.execute(f"CREATE TABLE public.{table} (a int)")
        table_oid = oid(conn, "public", table)
        conn.execute(f"CREATE MATERIALIZED VIEW public.{table}_mv AS SELECT a FROM public.{table}")
        with postgres.connect() as direct:
            locks = "SELECT count(*) FROM shiftguard_rows.object_locks WHERE object = %s"
            assert direct.execute(locks, (table_oid,)).fetchone() == (1,)
            conn.execute(f"DROP TABLE public.{table} CASCADE")
            assert direct.execute(locks, (table_oid,)).fetchone() == (0,)


def test_a_user_cannot_hold_the_lock_of_a_proxys_start(proxy, make_proxy, postgres, new_user):
    """A proxy installs or upgrades shiftguard in each database at its start, one proxy at a
    time; a user holding the advisory lock that took, in the cluster database and in another,
    kept every proxy on the backend from starting."""
    mallory, _ = new_user()
    other = unique("db")
    with proxy.connect() as admin:
        admin.execute(f"CREATE DATABASE {other}")
    try:
        with proxy.connect(mallory, USER_PASSWORD) as cluster, \
                proxy.connect(mallory, USER_PASSWORD, dbname=other) as elsewhere:
            for conn in (cluster, elsewhere):
                conn.execute("SELECT pg_advisory_lock(%s)", (0x5317_0001,))
            started = make_proxy()
            with started.connect(mallory, USER_PASSWORD, dbname=other) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == (other,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege), cluster.transaction():
                cluster.execute("LOCK TABLE shiftguard_rows.bootstrap IN SHARE UPDATE EXCLUSIVE MODE")
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")


def _tracked_table(conn) -> str:
    """A table of the user's whose writes shiftguard notes (a materialized view reads it)."""
    table = unique("t")
    conn.execute(f"CREATE TABLE {table} (a int)")
    conn.execute(f"CREATE MATERIALIZED VIEW {table}_mv AS SELECT count(*) AS n FROM {table}")
    return table


def test_no_table_of_shiftguards_is_in_a_schema_a_user_may_look_into(proxy, postgres, new_user):
    """In every database: what a user cannot look up, the user cannot lock (see below)."""
    user, password = new_user()
    with postgres.connect() as direct:
        databases = [r[0] for r in direct.execute("SELECT datname FROM pg_database WHERE datallowconn "
                                                   "AND datname <> 'template1'").fetchall()]
    for database in databases:
        with proxy.connect(user, password, dbname=database) as conn:
            tables = conn.execute(
                "SELECT n.nspname, count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname LIKE 'shiftguard%%' AND c.relkind IN ('r', 'p', 'f') "
                "GROUP BY n.nspname ORDER BY 1").fetchall()
            assert [n for n, _ in tables] == ["shiftguard_rows"], database
            assert conn.execute("SELECT has_schema_privilege('shiftguard_rows', 'USAGE')").fetchone() == (False,)
        with proxy.connect(dbname=database) as admin:  # nor do Redshift's views show them to a superuser
            assert admin.execute("SELECT count(*) FROM svv_table_info WHERE schema LIKE 'shiftguard%%'").fetchone() \
                == (0,), database


@pytest.mark.parametrize("statement", [
    "CREATE RULE r AS ON INSERT TO {schema}.users DO INSTEAD NOTHING",
    "CREATE TRIGGER t AFTER INSERT ON {schema}.table_writes EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "LOCK TABLE {schema}.users", "COMMENT ON TABLE {schema}.users IS 'x'"])
@pytest.mark.parametrize("schema", ["shiftguard", "shiftguard_rows"])
def test_a_user_cannot_name_shiftguards_tables_so_locks_nothing_of_theirs(proxy, new_user, statement, schema):
    """CREATE RULE and CREATE TRIGGER lock their table before PostgreSQL asks whether the user
    owns it: one queued behind the user's own open transaction that read pg_user (or wrote a
    table whose writes shiftguard notes) would queue every login (or every such write) behind
    it. shiftguard's tables are in a schema no user may look into, so the statement is refused
    at once, and logins and writes go ahead."""
    (mallory, password), (alice, alice_password) = new_user(), new_user()
    with proxy.connect(mallory, password) as holder, proxy.connect(mallory, password) as queuer, \
            proxy.connect(alice, alice_password) as writer:
        mine, theirs = _tracked_table(holder), _tracked_table(writer)
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM pg_user")
        holder.execute(f"INSERT INTO {mine} VALUES (1)")
        try:
            statement = statement.format(schema=schema).replace("'", "''")
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable)):
                queuer.execute(f"DO $$ BEGIN EXECUTE '{statement}'; END $$")
            with psycopg.connect(host=proxy.host, port=proxy.port, user=alice, password=alice_password,
                                 dbname="dev", sslmode="disable", connect_timeout=20) as login:
                assert login.execute("SELECT current_user").fetchone() == (alice,)
            writer.execute("SET statement_timeout = '20s'")
            writer.execute(f"INSERT INTO {theirs} VALUES (1)")
        finally:
            holder.execute("ROLLBACK")


def test_a_users_queued_lock_on_a_catalog_view_holds_no_one_up_for_long(proxy, postgres, new_user):
    """The catalog views of schema shiftguard are nameable by everyone (users read them): a
    CREATE RULE on one, from a DO block queued behind the user's own open transaction that read
    it, would queue everyone's reads of it behind it until that transaction ends. The proxy
    cancels it, and the reads that wait behind it go ahead (test_attack10: other statements)."""
    (mallory, password), (alice, alice_password) = new_user(), new_user()
    failures = []
    with proxy.connect(mallory, password) as holder, proxy.connect(mallory, password) as queuer, \
            proxy.connect(alice, alice_password) as reader:
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM pg_user")

        def queue():
            try:
                queuer.execute("DO $$ BEGIN EXECUTE 'CREATE RULE r AS ON INSERT TO shiftguard.pg_user "
                               "DO INSTEAD NOTHING'; END $$")
            except psycopg.Error as exc:
                failures.append(type(exc))

        thread = threading.Thread(target=queue)
        thread.start()
        try:
            assert waits_on_a_lock(postgres, "DO $$ BEGIN EXECUTE")
            reader.execute("SET statement_timeout = '20s'")
            assert reader.execute("SELECT usename FROM pg_user WHERE usename = %s", (alice,)).fetchone() == (alice,)
        finally:
            holder.execute("ROLLBACK")
            thread.join()
    assert failures == [psycopg.errors.QueryCanceled]


def test_a_users_own_triggers_and_rules_and_lock_timeout_stay(proxy, new_user):
    """A user's CREATE RULE and CREATE TRIGGER on their own table are refused (users may make
    neither now, catalog/users_code.sql), and the session's lock_timeout is as it set it, before,
    in and after a transaction (shiftguard bounded their lock wait once)."""
    user, password = new_user()
    table = unique("t")
    with proxy.connect(user, password) as conn:
        conn.execute("SET lock_timeout = '5min'")
        conn.execute(f"CREATE TABLE {table} (a int)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="rules are not supported"):
            with conn.transaction():
                assert conn.execute("SHOW lock_timeout").fetchone() == ("5min",)
                conn.execute(f"CREATE RULE {table}_r AS ON DELETE TO {table} DO INSTEAD NOTHING")
        assert conn.execute("SHOW lock_timeout").fetchone() == ("5min",)
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            with conn.transaction():
                assert conn.execute("SHOW lock_timeout").fetchone() == ("5min",)
                conn.execute(f"CREATE TRIGGER {table}_t BEFORE UPDATE ON {table} FOR EACH ROW "
                             "EXECUTE FUNCTION suppress_redundant_updates_trigger()")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(f"CREATE TRIGGER {table}_t BEFORE UPDATE ON {table} FOR EACH ROW "
                         "EXECUTE FUNCTION suppress_redundant_updates_trigger()")
        assert conn.execute("SHOW lock_timeout").fetchone() == ("5min",)
        assert conn.execute("SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass), "
                            "(SELECT count(*) FROM pg_rewrite WHERE ev_class = %s::regclass AND rulename = %s)",
                            (table, table, f"{table}_r")).fetchone() == (0, 0)
        conn.execute(f"DROP TABLE {table}")
