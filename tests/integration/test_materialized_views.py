"""Materialized views in Redshift's form through the proxy (psycopg): CREATE MATERIALIZED VIEW with
BACKUP, DISTSTYLE, DISTKEY, SORTKEY and AUTO REFRESH; REFRESH, ALTER ... AUTO REFRESH, DROP;
who may read and refresh one; svv_mv_info, stv_mv_info, svv_table_info, pg_table_def and
pg_views as Redshift shows them; staleness and AUTO REFRESH."""

from __future__ import annotations

import time

import psycopg
import pytest

from ..conftest import ADMIN, made_before, unique, wait_for


@pytest.fixture
def sales(proxy):
    """A schema with a sales table of three rows, dropped at the end."""
    schema = unique("mv")
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.sales (id int, region varchar(10), amount int) DISTKEY(id)")
        admin.execute(f"INSERT INTO {schema}.sales VALUES (1, 'east', 10), (2, 'west', 20), (3, 'east', 5)")
    yield schema
    with proxy.connect() as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


def mv_info(conn, schema: str) -> list[tuple]:
    return conn.execute("SELECT database_name, schema_name, user_name, name, is_stale, state, autorefresh, autorewrite "
                        "FROM svv_mv_info WHERE schema_name = %s ORDER BY name", (schema,)).fetchall()


def test_every_clause_of_create_and_what_the_catalog_shows(proxy, sales):
    with proxy.connect() as admin:
        status = admin.execute(
            f"CREATE MATERIALIZED VIEW {sales}.by_region BACKUP NO DISTSTYLE KEY DISTKEY(region) "
            "COMPOUND SORTKEY(region, total) AUTO REFRESH NO AS "
            f"(SELECT region, sum(amount) AS total FROM {sales}.sales GROUP BY region)").statusmessage
        assert status == "CREATE MATERIALIZED VIEW"
        admin.execute(f"CREATE MATERIALIZED VIEW {sales}.plain AS SELECT id FROM {sales}.sales")
        assert admin.execute(f"SELECT region, total FROM {sales}.by_region ORDER BY 1").fetchall() == [
            ("east", 15), ("west", 20)]
        assert mv_info(admin, sales) == [("dev", sales, ADMIN, "by_region", "f", 0, "f", "f"),
                                         ("dev", sales, ADMIN, "plain", "f", 0, "f", "f")]
        # dist, sort and backup where a table's are; Redshift's default for a view: EVEN
        assert admin.execute(
            "SELECT \"table\", diststyle, sortkey1, sortkey_num, backup FROM svv_table_info "
            "WHERE schema = %s AND \"table\" IN ('by_region', 'plain') ORDER BY 1", (sales,)).fetchall() == [
            ("by_region", "KEY(region)", "region", 2, False), ("plain", "EVEN", None, 0, True)]
        admin.execute(f"SET search_path TO {sales}")
        assert admin.execute("SELECT \"column\", distkey, sortkey FROM pg_table_def WHERE tablename = 'by_region' "
                             "ORDER BY 1").fetchall() == [("region", True, 1), ("total", False, 2)]
        # pg_views and information_schema.views list it, its definition the statement as written
        (definition,) = admin.execute("SELECT definition FROM pg_views WHERE schemaname = %s AND viewname = 'by_region'",
                                      (sales,)).fetchone()
        assert definition.startswith(f"CREATE MATERIALIZED VIEW {sales}.by_region BACKUP NO DISTSTYLE KEY")
        assert definition.endswith("GROUP BY region);")
        assert admin.execute("SELECT table_name FROM information_schema.views WHERE table_schema = %s "
                             "AND view_definition ILIKE '%%create materialized view%%' ORDER BY 1",
                             (sales,)).fetchall() == [("by_region",), ("plain",)]
        assert admin.execute("SELECT db_name, schema, name, is_stale, owner_user_name, autorefresh "
                             "FROM stv_mv_info WHERE schema = %s AND name = 'plain'", (sales,)).fetchall() == [
            ("dev", sales, "plain", "f", ADMIN, "f")]


def test_refresh_brings_in_what_the_base_tables_gained_and_is_stale_says_when(proxy, sales):
    with proxy.connect() as admin:
        admin.execute(f"CREATE MATERIALIZED VIEW {sales}.totals AS SELECT sum(amount) AS total FROM {sales}.sales")
        admin.execute(f"INSERT INTO {sales}.sales VALUES (4, 'west', 100)")
        assert admin.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(35,)]  # as last refreshed
        assert mv_info(admin, sales)[0][4] == "t"
        assert admin.execute(f"REFRESH MATERIALIZED VIEW {sales}.totals").statusmessage == "REFRESH MATERIALIZED VIEW"
        assert admin.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(135,)]
        assert mv_info(admin, sales)[0][4] == "f"
        # a write that rolled back changed nothing; DELETE and TRUNCATE do
        with admin.transaction(force_rollback=True):
            admin.execute(f"DELETE FROM {sales}.sales")
            assert mv_info(admin, sales)[0][4] == "t"  # within the writing transaction
        assert mv_info(admin, sales)[0][4] == "f"
        admin.execute(f"TRUNCATE {sales}.sales")
        assert mv_info(admin, sales)[0][4] == "t"
        # written, refreshed, then written again in the same transaction: stale
        with admin.transaction():
            admin.execute(f"INSERT INTO {sales}.sales VALUES (5, 'east', 1)")
            admin.execute(f"REFRESH MATERIALIZED VIEW {sales}.totals")
            assert mv_info(admin, sales)[0][4] == "f"  # the refresh saw the insert
            admin.execute(f"INSERT INTO {sales}.sales VALUES (6, 'east', 1)")
        assert mv_info(admin, sales)[0][4] == "t"
        # a query calling a function that is not immutable is always stale, as Redshift says
        admin.execute(f"CREATE MATERIALIZED VIEW {sales}.stamped AS SELECT count(*) AS n, getdate() AS at "
                      f"FROM {sales}.sales")
        assert [row[4] for row in mv_info(admin, sales) if row[3] == "stamped"] == ["t"]


def test_auto_refresh_yes_is_refreshed_by_the_proxy_after_a_write(proxy, sales):
    with proxy.connect() as admin:
        admin.execute(f"CREATE MATERIALIZED VIEW {sales}.totals AUTO REFRESH YES AS "
                      f"SELECT sum(amount) AS total FROM {sales}.sales")
        assert mv_info(admin, sales)[0][6] == "t"
        admin.execute(f"INSERT INTO {sales}.sales VALUES (4, 'west', 100)")
        assert wait_for(lambda: admin.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(135,)])
        assert wait_for(lambda: mv_info(admin, sales)[0][4] == "f")
        # AUTO REFRESH NO: left stale
        assert admin.execute(f"ALTER MATERIALIZED VIEW {sales}.totals AUTO REFRESH NO").statusmessage == \
            "ALTER MATERIALIZED VIEW"
        assert mv_info(admin, sales)[0][6] == "f"
        admin.execute(f"INSERT INTO {sales}.sales VALUES (5, 'east', 1)")
        assert mv_info(admin, sales)[0][4] == "t"
        assert admin.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(135,)]


def test_a_users_drop_during_the_proxys_refresh_is_not_the_deadlock_victim(proxy, postgres, new_user):
    """The proxy's AUTO REFRESH of a view (its ACCESS EXCLUSIVE lock held) met its owner's DROP
    OWNED BY, which held a base table's lock and wanted the view's (a test's clean-up failed so):
    a deadlock, and PostgreSQL ended the statement that had waited longer, the user's. Background
    work now gives way: the user's DROP goes through, the refresh is tried again later. (The
    user's PL/pgSQL function is refused now, catalog/users_code.sql: made before that refusal,
    made_before; a materialized view may still call it, its query runs only as its owner.)"""
    name, password = new_user()
    base, other, slow, view = unique("base"), unique("other"), unique("f_slow"), unique("mv")
    # the refresh reads `other` after half a second, its lock on the view held
    function = f"""CREATE FUNCTION public.{slow}() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN
            PERFORM pg_sleep(0.5); RETURN (SELECT count(*) FROM public.{other}); END $$"""
    with proxy.connect(name, password) as owner:
        owner.execute(f"CREATE TABLE public.{base} (a int)")
        owner.execute(f"CREATE TABLE public.{other} (a int)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            owner.execute(function)
        made_before(postgres, name, function)
        owner.execute(f"CREATE MATERIALIZED VIEW public.{view} AUTO REFRESH YES AS "
                      f"SELECT a, public.{slow}() AS n FROM public.{base}")
        owner.execute(f"INSERT INTO public.{base} VALUES (1)")
        with postgres.connect() as direct:
            refreshing = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                          "AND query LIKE '%refresh_stale_view%'")
            deadline = time.monotonic() + 30
            while direct.execute(refreshing).fetchone() == (0,):
                assert time.monotonic() < deadline, "the proxy never refreshed the view"
                time.sleep(0.01)
        owner.execute("BEGIN")
        owner.execute(f"LOCK TABLE public.{other} IN ACCESS EXCLUSIVE MODE")
        # waits for the refresh's lock on the view; the refresh then waits for this transaction's
        owner.execute(f"DROP MATERIALIZED VIEW public.{view}")
        owner.execute("COMMIT")
        assert owner.execute("SELECT to_regclass(%s)", (f"public.{view}",)).fetchone() == (None,)


def test_a_view_whose_refresh_fails_stops_no_other_users_auto_refresh(proxy, sales, new_user, postgres):
    """An ordinary user's AUTO REFRESH view whose refresh fails as PL/pgSQL's WHEN OTHERS does
    not catch (its own function raises query_canceled), or that waits for a lock its owner holds
    (until the proxy's command timeout cancels it, a minute later): every pass of the proxy's
    refresh failed whole, and no other view of anyone's was refreshed again. (The user's PL/pgSQL
    function is refused now, catalog/users_code.sql: made before that refusal, made_before; a
    materialized view may still call it, its query runs only as its owner.)"""
    name, password = new_user()
    base, boom, view = unique("poison_base"), unique("f_boom"), unique("poison_mv")
    function = f"""CREATE FUNCTION public.{boom}(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN
            IF $1 = 13 THEN RAISE EXCEPTION 'not now' USING ERRCODE = 'query_canceled'; END IF;
            RETURN $1; END $$"""
    with proxy.connect(name, password) as attacker:
        attacker.execute(f"CREATE TABLE public.{base} (a int)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            attacker.execute(function)
    made_before(postgres, name, function)
    with proxy.connect(name, password) as attacker:
        attacker.execute(f"CREATE MATERIALIZED VIEW public.{view} AUTO REFRESH YES AS "
                         f"SELECT public.{boom}(a) AS a FROM public.{base}")
        attacker.execute(f"INSERT INTO public.{base} VALUES (13)")
    try:
        with proxy.connect() as admin:
            admin.execute(f"CREATE MATERIALIZED VIEW {sales}.totals AUTO REFRESH YES AS "
                          f"SELECT sum(amount) AS total FROM {sales}.sales")
            admin.execute(f"INSERT INTO {sales}.sales VALUES (4, 'west', 100)")
            assert wait_for(lambda: admin.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(135,)])
            with proxy.connect(name, password) as attacker, attacker.transaction():
                attacker.execute(f"SELECT * FROM public.{view}")  # held: its refresh would wait
                admin.execute(f"INSERT INTO {sales}.sales VALUES (5, 'east', 1)")
                assert wait_for(lambda: admin.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(136,)])
    finally:
        with proxy.connect(name, password) as attacker:
            attacker.execute(f"DROP MATERIALIZED VIEW public.{view}")
            attacker.execute(f"DROP TABLE public.{base}")
            attacker.execute(f"DROP FUNCTION public.{boom}(int)")


@pytest.mark.parametrize("attrs", ['{"refreshed_snapshot": "garbage"}', '{"refreshed_xid": "1"}',
                                   '{"autorefresh": "garbage"}', '{"backup": 1}'])
def test_a_user_cannot_record_attributes_that_break_everyones_catalog(proxy, sales, new_user, attrs):
    """shiftguard.record_table is anyone's for their own tables (a DO block may call it): a
    refresh state or a flag that does not read as its type, recorded for one's own view, failed
    svv_mv_info and stv_mv_info for everyone who may see it, the proxy's AUTO REFRESH of every
    user's views and, now and then, any write to its base table. Refused; the state is the
    refresh's alone."""
    name, password = new_user()
    base, view = unique("odd_base"), unique("odd_mv")
    with proxy.connect(name, password) as attacker:
        attacker.execute(f"CREATE TABLE public.{base} (a int)")
        attacker.execute(f"CREATE MATERIALIZED VIEW public.{view} AS SELECT a FROM public.{base}")
        try:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid attributes"):
                attacker.execute(f"DO $$ BEGIN PERFORM shiftguard.record_table('public.{view}'::regclass, "
                                 f"'{attrs}'::jsonb); END $$")
            attacker.execute(f"INSERT INTO public.{base} VALUES (1)")
            with proxy.connect() as admin:
                assert admin.execute("SELECT is_stale FROM svv_mv_info WHERE name = %s", (view,)).fetchall() == [("t",)]
                assert admin.execute("SELECT is_stale FROM stv_mv_info WHERE name = %s", (view,)).fetchall() == [("t",)]
                admin.execute(f"CREATE MATERIALIZED VIEW {sales}.totals AUTO REFRESH YES AS "
                              f"SELECT sum(amount) AS total FROM {sales}.sales")
                admin.execute(f"INSERT INTO {sales}.sales VALUES (4, 'west', 100)")
                assert wait_for(lambda: admin.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(135,)])
        finally:
            attacker.execute(f"DROP MATERIALIZED VIEW public.{view}")
            attacker.execute(f"DROP TABLE public.{base}")


def test_a_user_cannot_record_a_refresh_that_did_not_happen(proxy, new_user):
    """The refresh state of a view (the snapshot its query read) is recorded by a refresh: its
    owner called shiftguard.mv_refreshed from a DO block with any snapshot, or had the creating
    procedure take a renamed stale view for a new one, and stale data read as fresh in
    svv_mv_info (AUTO REFRESH would leave it so). Refused; REFRESH makes it fresh."""
    name, password = new_user()
    base, view, renamed = unique("base"), unique("mv"), unique("mv")
    with proxy.connect(name, password) as conn:
        conn.execute(f"CREATE TABLE public.{base} (a int)")
        conn.execute(f"CREATE MATERIALIZED VIEW public.{view} AS SELECT count(*) AS n FROM public.{base}")
        conn.execute(f"INSERT INTO public.{base} VALUES (1)")

        def stale(mv):
            return conn.execute("SELECT is_stale FROM svv_mv_info WHERE name = %s", (mv,)).fetchall()

        assert stale(view) == [("t",)]
        for call in (f"PERFORM shiftguard.mv_refreshed('public.{view}'::regclass, pg_current_snapshot())",
                     f"PERFORM shiftguard.mv_refreshed('public.{view}'::regclass, "
                     "pg_current_snapshot()) FROM (SELECT 1) AS v_view"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="mv_refreshed is for shiftguard's own use"):
                conn.execute(f"DO $$ BEGIN {call}; END $$")
        conn.execute(f"DO $d$ BEGIN CALL shiftguard.create_materialized_view("
                     f"'ALTER MATERIALIZED VIEW public.{view} RENAME TO {renamed}', 'public.{renamed}', '{{}}', "
                     f"'CREATE MATERIALIZED VIEW {renamed} AS SELECT 1', 'public'); END $d$")
        assert stale(renamed) == [("t",)]
        assert conn.execute(f"SELECT n FROM public.{renamed}").fetchall() == [(0,)]
        conn.execute(f"REFRESH MATERIALIZED VIEW public.{renamed}")
        assert stale(renamed) == [("f",)]
        assert conn.execute(f"SELECT n FROM public.{renamed}").fetchall() == [(1,)]
        conn.execute(f"DROP MATERIALIZED VIEW public.{renamed}")
        conn.execute(f"DROP TABLE public.{base}")


def test_privileges_of_another_user(proxy, sales, new_user):
    reader, password = new_user()
    with proxy.connect() as admin:
        admin.execute(f"CREATE MATERIALIZED VIEW {sales}.totals AS SELECT sum(amount) AS total FROM {sales}.sales")
        admin.execute(f"GRANT USAGE ON SCHEMA {sales} TO {reader}")
    with proxy.connect(reader, password) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="totals"):
            conn.execute(f"SELECT total FROM {sales}.totals")
        assert mv_info(conn, sales) == []  # svv_mv_info: only one's own views
        assert conn.execute("SELECT name FROM stv_mv_info WHERE schema = %s", (sales,)).fetchall() == [("totals",)]
    with proxy.connect() as admin:
        admin.execute(f"GRANT SELECT ON {sales}.totals TO {reader}")
    with proxy.connect(reader, password) as conn:
        assert conn.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(35,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
            conn.execute(f"REFRESH MATERIALIZED VIEW {sales}.totals")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
            conn.execute(f"ALTER MATERIALIZED VIEW {sales}.totals AUTO REFRESH YES")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
            conn.execute(f"DROP MATERIALIZED VIEW {sales}.totals")
    with proxy.connect() as admin:
        admin.execute(f"REVOKE SELECT ON {sales}.totals FROM {reader}")
    with proxy.connect(reader, password) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT total FROM {sales}.totals")
    # Redshift's grantee forms: a group
    member, member_password = new_user()
    group = unique("mvreaders")
    with proxy.connect() as admin:
        admin.execute(f"CREATE GROUP {group} WITH USER {member}")
        admin.execute(f"GRANT USAGE ON SCHEMA {sales} TO GROUP {group}")
        admin.execute(f"GRANT SELECT ON {sales}.totals TO GROUP {group}")
    try:
        with proxy.connect(member, member_password) as conn:
            assert conn.execute(f"SELECT total FROM {sales}.totals").fetchall() == [(35,)]
    finally:
        with proxy.connect() as admin:
            admin.execute(f"REVOKE SELECT ON {sales}.totals FROM GROUP {group}")
            admin.execute(f"REVOKE USAGE ON SCHEMA {sales} FROM GROUP {group}")
            admin.execute(f"DROP GROUP {group}")


def test_a_user_refreshes_and_drops_their_own_view(proxy, sales, new_user):
    owner, password = new_user()
    with proxy.connect() as admin:
        admin.execute(f"GRANT USAGE, CREATE ON SCHEMA {sales} TO {owner}")
        admin.execute(f"GRANT SELECT ON {sales}.sales TO {owner}")
    with proxy.connect(owner, password) as conn:
        conn.execute(f"CREATE MATERIALIZED VIEW {sales}.mine DISTSTYLE ALL AUTO REFRESH YES AS "
                     f"SELECT id FROM {sales}.sales")
        # (fresh once the proxy tracks the admin's table: test_a_view_over_anothers_table_...)
        assert wait_for(lambda: mv_info(conn, sales) == [("dev", sales, owner, "mine", "f", 0, "t", "f")])
        conn.execute(f"REFRESH MATERIALIZED VIEW {sales}.mine")
        conn.execute(f"DROP MATERIALIZED VIEW {sales}.mine")
        assert mv_info(conn, sales) == []


def test_comment_on_view_comments_on_a_materialized_view(proxy, sales, new_user):
    """Redshift's COMMENT ON VIEW takes a materialized view too: dbt's persist_docs writes its
    description so (PostgreSQL's would refuse it: "is not a view"). Only the owner may."""
    description = "Materialized view model description \"with double quotes\"\nand 'single quotes' $$ -- /* */"
    with proxy.connect() as admin:
        admin.execute(f"CREATE MATERIALIZED VIEW {sales}.totals AS SELECT sum(amount) AS total FROM {sales}.sales")
        admin.execute(f"CREATE VIEW {sales}.plain AS SELECT id FROM {sales}.sales")
        for view in ("totals", "plain"):
            status = admin.execute(f'comment on view "dev"."{sales}"."{view}" is '
                                   f"$dbt_comment_literal_block${description}$dbt_comment_literal_block$").statusmessage
            assert status == "COMMENT"
            admin.execute(f"COMMENT ON COLUMN {sales}.{view}.{'total' if view == 'totals' else 'id'} IS 'a column'")
        assert admin.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class'), col_description(c.oid, 1) FROM pg_class c "
            "WHERE c.relnamespace = %s::regnamespace ORDER BY 1", (sales,)).fetchall() == [
            ("plain", description, "a column"), ("sales", None, None), ("totals", description, "a column")]
        admin.execute(f"COMMENT ON VIEW {sales}.totals IS NULL")
        assert admin.execute(f"SELECT obj_description('{sales}.totals'::regclass, 'pg_class')").fetchone() == (None,)
        with pytest.raises(psycopg.errors.WrongObjectType, match="is not a view"):
            admin.execute(f"COMMENT ON VIEW {sales}.sales IS 'a table'")  # PostgreSQL's words, as before
        with pytest.raises(psycopg.errors.UndefinedTable):
            admin.execute(f"COMMENT ON VIEW {sales}.missing IS 'x'")
        admin.execute(f"GRANT USAGE ON SCHEMA {sales} TO PUBLIC")
    other, password = new_user()
    with proxy.connect(other, password) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
            conn.execute(f"COMMENT ON VIEW {sales}.totals IS 'not mine'")


def test_errors(proxy, sales):
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.UndefinedTable):
            admin.execute(f"REFRESH MATERIALIZED VIEW {sales}.missing")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a materialized view"):
            admin.execute(f"REFRESH MATERIALIZED VIEW {sales}.sales")  # PostgreSQL's words
        with pytest.raises(psycopg.errors.WrongObjectType, match="not a materialized view"):
            admin.execute(f"ALTER MATERIALIZED VIEW {sales}.sales AUTO REFRESH YES")
        with pytest.raises(psycopg.errors.SyntaxError):
            admin.execute(f"CREATE MATERIALIZED VIEW {sales}.bad AUTO REFRESH MAYBE AS SELECT 1 AS x")
        with pytest.raises(psycopg.errors.SyntaxError):
            admin.execute(f"CREATE MATERIALIZED VIEW {sales}.bad SORTKEY(x AS SELECT 1 AS x")
        # the proxy keeps serving the session
        assert admin.execute("SELECT 1").fetchone() == (1,)


def test_strict_redshift_refuses_postgresql_s_own_forms(make_proxy):
    schema = unique("mv")
    strict = make_proxy(strict_redshift=True)
    with strict.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            admin.execute(f"CREATE TABLE {schema}.t (a int)")
            admin.execute(f"CREATE MATERIALIZED VIEW {schema}.mv DISTSTYLE EVEN SORTKEY(a) AS SELECT a FROM {schema}.t")
            admin.execute(f"REFRESH MATERIALIZED VIEW {schema}.mv")
            for sql in (f"REFRESH MATERIALIZED VIEW CONCURRENTLY {schema}.mv",
                        f"REFRESH MATERIALIZED VIEW {schema}.mv WITH NO DATA",
                        f"CREATE MATERIALIZED VIEW {schema}.empty AS SELECT a FROM {schema}.t WITH NO DATA"):
                with pytest.raises(psycopg.errors.FeatureNotSupported, match="Amazon Redshift does not support"):
                    admin.execute(sql)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


# dbt-redshift 1.11's get_relation_last_modified (metadata/relation_last_modified.sql), as it sends it.
LAST_MODIFIED = """select ns.nspname as "schema", c.relname as identifier, max(qd.start_time) as last_modified,
    getdate() as snapshotted_at
from pg_class c join pg_namespace ns on ns.oid = c.relnamespace join sys_query_detail qd on qd.table_id = c.oid
where qd.step_name = 'insert' and ((upper(ns.nspname) = upper('{schema}') and upper(c.relname) = upper('sales')))
group by 1, 2, 4"""


def test_sys_query_detail_says_when_a_base_table_was_last_written(proxy, sales, new_user):
    writer, password = new_user()
    now = "SELECT clock_timestamp() AT TIME ZONE 'UTC'"
    steps = ("SELECT step_name, max(start_time) FROM sys_query_detail WHERE table_id = %s::regclass::oid "
             "GROUP BY 1 ORDER BY 1")
    with proxy.connect() as admin:
        table = f"{sales}.sales"
        admin.execute(f"GRANT USAGE ON SCHEMA {sales} TO {writer}")
        admin.execute(f"GRANT SELECT, INSERT ON {table} TO {writer}")
        assert admin.execute(steps, (table,)).fetchall() == []  # not tracked: no materialized view reads it
        admin.execute(f"CREATE MATERIALIZED VIEW {sales}.counted AS SELECT count(*) AS n FROM {table}")
        assert admin.execute(steps, (table,)).fetchall() == []  # tracked from now on
        with admin.transaction(force_rollback=True):
            admin.execute(f"DELETE FROM {table}")
        assert admin.execute(steps, (table,)).fetchall() == []  # rolled back: no delete
        (before,) = admin.execute(now).fetchone()
        admin.execute(f"UPDATE {table} SET amount = amount + 1 WHERE id = 1")
        (after,) = admin.execute(now).fetchone()
        written = admin.execute(steps, (table,)).fetchall()
        assert [step for step, _ in written] == ["delete", "insert"]  # an UPDATE deletes and inserts
        assert all(before <= at <= after for _, at in written)
        (schema, name, modified, _), = admin.execute(LAST_MODIFIED.format(schema=sales)).fetchall()
        assert (schema, name, modified) == (sales, "sales", written[1][1])
    with proxy.connect(writer, password) as conn:
        assert conn.execute(steps, (table,)).fetchall() == []  # others' writes are not theirs to see
        conn.execute(f"INSERT INTO {table} VALUES (9, 'north', 1)")
        ((step, at, user),) = conn.execute(
            "SELECT step_name, start_time, user_id FROM sys_query_detail WHERE table_name = 'sales'").fetchall()
        assert step == "insert" and at > after
        assert user == conn.execute("SELECT usesysid FROM pg_user WHERE usename = current_user").fetchone()[0]
    with proxy.connect() as admin:  # a superuser sees everyone's: the last insert is the writer's
        assert admin.execute(steps, (table,)).fetchall() == [written[0], ("insert", at)]


def test_sys_query_detail_says_when_any_table_made_since_was_last_written(make_proxy, new_user):
    """dbt's source freshness from metadata, for tables no materialized view reads, under
    cluster.track_table_writes: a table made by CREATE TABLE and loaded, and one made by CREATE
    TABLE AS, are each last written when their rows went in; a table written again moves on; a
    temporary table is not tracked. Without it (the default), a new table is not tracked."""
    proxy = make_proxy(cluster__track_table_writes=True)
    user, password = new_user()
    schema = unique("fresh")
    now = "SELECT clock_timestamp() AT TIME ZONE 'UTC'"
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
    try:
        with proxy.connect(user, password) as conn:
            (before,) = conn.execute(now).fetchone()
            conn.execute(f"CREATE TABLE {schema}.loaded (id int, name varchar(10))")
            conn.execute(f"INSERT INTO {schema}.loaded VALUES (1, 'Martin'), (2, 'Jeter')")
            conn.execute(f"CREATE TABLE {schema}.made AS SELECT 1 AS id, 'test' AS name")
            (after,) = conn.execute(now).fetchone()
            for table in ("loaded", "made"):
                (found,) = conn.execute(LAST_MODIFIED.replace("'sales'", f"'{table}'").format(schema=schema)).fetchall()
                assert found[:2] == (schema, table) and before <= found[2] <= after, table
            conn.execute(f"INSERT INTO {schema}.loaded VALUES (3, 'Ruth')")
            (moved,) = conn.execute(LAST_MODIFIED.replace("'sales'", "'loaded'").format(schema=schema)).fetchall()
            assert moved[2] > after
            conn.execute("CREATE TEMP TABLE scratch (a int)")
            conn.execute("INSERT INTO scratch VALUES (1)")
            assert conn.execute("SELECT count(*) FROM sys_query_detail WHERE table_name = 'scratch'").fetchone() == (0,)
            loaded = conn.execute(f"SELECT '{schema}.loaded'::regclass::oid::integer").fetchone()[0]
            conn.execute(f"DROP TABLE {schema}.loaded")  # its writes go with it
            assert conn.execute("SELECT count(*) FROM sys_query_detail WHERE table_id = %s", (loaded,)).fetchone() == (0,)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    off = make_proxy()  # the setting is the cluster's: this one puts it back to its default
    with off.connect(user, password) as conn:
        conn.execute("CREATE TABLE untracked (a int)")
        conn.execute("INSERT INTO untracked VALUES (1)")
        assert conn.execute("SELECT count(*) FROM sys_query_detail WHERE table_name = 'untracked'").fetchone() == (0,)
        conn.execute("DROP TABLE untracked")


def test_a_view_over_anothers_table_has_its_writes_tracked_once_made(proxy, sales, new_user):
    """A user who may only read a table makes a materialized view over it: the table's write
    trigger is the proxy's to make, after the user's transaction commits (made in the user's,
    it would lock the owner's writes out for as long as that stayed open: test_attack9). Until
    then the view's staleness is unknown; then it is stale (the writes before the trigger, which
    the view may have missed, are unknown: test_attack10), fresh once refreshed, and stale once
    the owner writes."""
    reader, password = new_user()
    view = unique("mv")
    with proxy.connect() as admin:
        admin.execute(f"GRANT USAGE ON SCHEMA {sales} TO {reader}")
        admin.execute(f"GRANT SELECT ON {sales}.sales TO {reader}")
        admin.execute(f"GRANT CREATE ON SCHEMA {sales} TO {reader}")
    with proxy.connect(reader, password) as conn:
        conn.execute(f"CREATE MATERIALIZED VIEW {sales}.{view} AS SELECT count(*) AS n FROM {sales}.sales")

        def stale():
            return conn.execute("SELECT is_stale FROM svv_mv_info WHERE name = %s", (view,)).fetchall()

        assert wait_for(lambda: stale() == [("t",)])
        conn.execute(f"REFRESH MATERIALIZED VIEW {sales}.{view}")
        assert stale() == [("f",)]
        with proxy.connect() as admin:
            admin.execute(f"INSERT INTO {sales}.sales VALUES (4, 'north', 1)")
        assert stale() == [("t",)]
        conn.execute(f"REFRESH MATERIALIZED VIEW {sales}.{view}")
        assert stale() == [("f",)]
        assert conn.execute(f"SELECT n FROM {sales}.{view}").fetchall() == [(4,)]
