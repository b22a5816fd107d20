"""Attacks on the materialized views' deferred write tracking (catalog/materialized_views.sql
track_requests, track_requested: the proxy makes the write trigger on another owner's table
after the view's maker commits)."""

from __future__ import annotations

import time

import psycopg
import pytest

from ..conftest import unique, wait_for


def _is_stale(conn: psycopg.Connection, view: str) -> list[tuple[str]]:
    return conn.execute("SELECT is_stale FROM svv_mv_info WHERE name = %s", (view,)).fetchall()


def test_a_write_committed_before_the_proxy_tracks_the_table_leaves_the_view_stale(proxy, new_user):
    """A reader makes a materialized view over a table an owner is writing in a transaction
    still open: the view cannot see that write, and the proxy cannot make the table's write
    trigger until the owner commits (its lock). The write was never noted; once the trigger is
    made the view, missing the owner's row, said it was fresh (is_stale 'f')."""
    reader, password = new_user()
    table, view = unique("t"), unique("mv")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (a int)")
        admin.execute(f"GRANT SELECT ON public.{table} TO {reader}")
    with proxy.connect() as owner, proxy.connect(reader, password) as conn:
        owner.execute("BEGIN")
        owner.execute(f"INSERT INTO public.{table} VALUES (1)")
        conn.execute(f"CREATE MATERIALIZED VIEW public.{view} AS SELECT count(*) AS n FROM public.{table}")
        time.sleep(0.5)  # the proxy tried to track the table, and found it locked
        owner.execute("COMMIT")
        assert conn.execute(f"SELECT n FROM public.{view}").fetchall() == [(0,)]
        assert conn.execute(f"SELECT count(*) FROM public.{table}").fetchall() == [(1,)]
        # The proxy tracks the table at its next pass; the view is not fresh then.
        assert wait_for(lambda: _is_stale(conn, view) != [("u",)], timeout=30)
        assert _is_stale(conn, view) == [("t",)]
        conn.execute(f"REFRESH MATERIALIZED VIEW public.{view}")
        assert _is_stale(conn, view) == [("f",)]
        assert conn.execute(f"SELECT n FROM public.{view}").fetchall() == [(1,)]


def test_the_proxys_tracking_holds_no_table_while_it_waits_for_others(proxy, new_user, postgres):
    """The proxy made every asked-for trigger in one transaction, waiting up to 100 ms for each
    table's lock: a user asking for a victim's table and a hundred tables of an accomplice's,
    which the accomplice held locked, had the victim's table locked against writes (SHARE ROW
    EXCLUSIVE, taken first) for ten seconds, again at every pass."""
    (mallory, password), (accomplice, accomplice_password) = new_user(), new_user()
    victim, view = unique("victim"), unique("mv")
    held = [unique("held") for _ in range(100)]
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{victim} (a int)")  # first: the lowest oid
        admin.execute(f"GRANT SELECT ON public.{victim} TO {mallory}")
    with proxy.connect(accomplice, accomplice_password) as holder, proxy.connect(mallory, password) as conn, \
            proxy.connect() as writer:
        for table in held:
            holder.execute(f"CREATE TABLE public.{table} (a int)")
            holder.execute(f"GRANT SELECT ON public.{table} TO {mallory}")
        holder.execute("BEGIN")
        for table in held:
            holder.execute(f"LOCK TABLE public.{table} IN ROW EXCLUSIVE MODE")
        try:
            union = " UNION ALL ".join(f"SELECT a FROM public.{t}" for t in [victim, *held])
            conn.execute(f"CREATE MATERIALIZED VIEW public.{view} AS {union}")
            writer.execute("SET statement_timeout = '3s'")
            with postgres.connect() as direct:  # the owner writes on while the proxy tracks the table
                tracked = "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = 'shiftguard_writes'"
                deadline = time.monotonic() + 30
                while direct.execute(tracked, (f"public.{victim}",)).fetchone() == (0,):
                    assert time.monotonic() < deadline
                    writer.execute(f"INSERT INTO public.{victim} VALUES (1)")
                    time.sleep(0.2)
            writer.execute(f"INSERT INTO public.{victim} VALUES (1)")
        finally:
            holder.execute("ROLLBACK")
            for table in held:  # (under their locks, not racing the proxy's tracking of them)
                holder.execute(f"DROP TABLE public.{table} CASCADE")


def _no_refresh_requested(postgres) -> bool:
    with postgres.connect() as direct:
        return direct.execute("SELECT count(*) FROM shiftguard_rows.refresh_requests").fetchone() == (0,)


def test_a_reader_in_an_open_transaction_holds_up_no_other_readers_view(proxy, new_user, postgres):
    """The request for a table's write trigger had a unique key: a reader who made a view over
    an untracked table in a transaction left open held the key, and another reader's CREATE
    MATERIALIZED VIEW over that table waited for that transaction to end."""
    (mallory, password), (bob, bob_password) = new_user(), new_user()
    table = unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (a int)")
        admin.execute(f"GRANT SELECT ON public.{table} TO {mallory}, {bob}")
    with proxy.connect(mallory, password) as holder, proxy.connect(bob, bob_password) as conn:
        assert wait_for(lambda: _no_refresh_requested(postgres))
        holder.execute("BEGIN")
        holder.execute(f"CREATE MATERIALIZED VIEW public.{unique('mv')} AS SELECT a FROM public.{table}")
        try:
            conn.execute("SET statement_timeout = '5s'")
            view = unique("mv")
            conn.execute(f"CREATE MATERIALIZED VIEW public.{view} AS SELECT a FROM public.{table}")
            conn.execute(f"REFRESH MATERIALIZED VIEW public.{view}")
        finally:
            holder.execute("ROLLBACK")


def test_a_refresh_asked_for_in_an_open_transaction_holds_up_no_ones_writes(proxy, new_user, postgres):
    """A request to refresh the database's views (refresh_requests, one row per database, its
    name the key) made in a transaction left open, as a view over another's table makes one,
    held the key: every write after it to a base table of an AUTO REFRESH view, by anyone,
    asks for the same and waited for that transaction to end."""
    (mallory, password), (alice, alice_password) = new_user(), new_user()
    theirs, mine = unique("t"), unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{theirs} (a int)")
        admin.execute(f"GRANT SELECT ON public.{theirs} TO {mallory}")
    with proxy.connect(mallory, password) as holder, proxy.connect(alice, alice_password) as writer:
        writer.execute(f"CREATE TABLE public.{mine} (a int)")
        writer.execute(f"CREATE MATERIALIZED VIEW public.{unique('mv')} AUTO REFRESH YES AS SELECT a FROM public.{mine}")
        assert wait_for(lambda: _no_refresh_requested(postgres))
        holder.execute("BEGIN")
        holder.execute(f"CREATE MATERIALIZED VIEW public.{unique('mv')} AS SELECT a FROM public.{theirs}")
        try:
            writer.execute("SET statement_timeout = '5s'")
            writer.execute(f"INSERT INTO public.{mine} VALUES (1)")
        finally:
            holder.execute("ROLLBACK")


@pytest.mark.parametrize("statement", [
    "CREATE TABLE public.{name} PARTITION OF shiftguard.pg_user FOR VALUES IN (1)",
    "CREATE TABLE public.{name} (a int) INHERITS (shiftguard.pg_user)",
    "ALTER TABLE public.{name}_own ADD FOREIGN KEY (a) REFERENCES shiftguard.pg_user (usesysid)",
    "ALTER TABLE public.{name}_parted ATTACH PARTITION shiftguard.pg_user FOR VALUES IN (1)",
    "ALTER TABLE public.{name}_parted DETACH PARTITION shiftguard.pg_user"])
def test_a_users_queued_lock_on_a_catalog_view_by_any_statement_holds_no_one_up(proxy, new_user, postgres, statement):
    """Some statements lock a relation they name before PostgreSQL asks whether the user may
    (CREATE TABLE ... PARTITION OF its parent, ACCESS EXCLUSIVE): one from a DO block, queued
    behind the user's own open transaction that read pg_user (a view in schema shiftguard, which
    everyone may name), queued everyone's reads of pg_user behind it until that transaction
    ended. Only CREATE RULE and CREATE TRIGGER gave up after two seconds."""
    import threading
    (mallory, password), (alice, alice_password) = new_user(), new_user()
    name = unique("x")
    failures = []
    with proxy.connect(mallory, password) as holder, proxy.connect(mallory, password) as queuer, \
            proxy.connect(alice, alice_password) as reader:
        queuer.execute(f"CREATE TABLE public.{name}_own (a int)")
        queuer.execute(f"DO $$ BEGIN EXECUTE 'CREATE TABLE public.{name}_parted (a int) PARTITION BY LIST (a)'; END $$")
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM pg_user")
        text = statement.format(name=name).replace("'", "''")

        def queue():
            try:
                queuer.execute(f"DO $$ BEGIN EXECUTE '{text}'; END $$")
            except psycopg.Error as exc:
                failures.append(type(exc))

        thread = threading.Thread(target=queue)
        thread.start()
        try:
            time.sleep(1)
            reader.execute("SET statement_timeout = '10s'")
            assert reader.execute("SELECT usename FROM pg_user WHERE usename = %s", (alice,)).fetchone() == (alice,)
        finally:
            holder.execute("ROLLBACK")
            thread.join()
        assert failures


def test_an_ordinary_user_shows_the_parameters_of_their_procedure(proxy, new_user):
    """SHOW PARAMETERS runs as its caller (show.sql show_parameters) and reads the declared
    modifiers from shiftguard's table of them, which every user could read in schema shiftguard;
    in schema shiftguard_rows, which no user may look into, it failed for everyone but
    superusers (permission denied for schema shiftguard_rows)."""
    user, password = new_user()
    procedure = unique("p")
    with proxy.connect(user, password) as conn:
        conn.execute(f"CREATE PROCEDURE public.{procedure}(a varchar(10)) AS $$ BEGIN NULL; END $$ LANGUAGE plpgsql")
        rows = conn.execute(f"SHOW PARAMETERS OF PROCEDURE dev.public.{procedure}(varchar)").fetchall()
        assert [row[3:8] for row in rows] == [("a", 1, "IN", "character varying", 10)]


def test_a_base_tables_owner_cannot_make_anothers_stale_view_look_fresh(proxy, new_user):
    """The owner of a base table drops its write trigger, writes, and makes the trigger again
    (a materialized view of their own over the table): the writes between were never noted,
    and another user's view over the table, which missed them, said it was fresh."""
    (owner, owner_password), (reader, password) = new_user(), new_user()
    table, view = unique("t"), unique("mv")
    with proxy.connect(owner, owner_password) as mine, proxy.connect(reader, password) as conn:
        mine.execute(f"CREATE TABLE public.{table} (a int)")
        mine.execute(f"GRANT SELECT ON public.{table} TO {reader}")
        mine.execute(f"CREATE MATERIALIZED VIEW public.{table}_own AS SELECT a FROM public.{table}")  # tracked
        conn.execute(f"CREATE MATERIALIZED VIEW public.{view} AS SELECT count(*) AS n FROM public.{table}")
        assert _is_stale(conn, view) == [("f",)]
        mine.execute(f"DROP TRIGGER shiftguard_writes ON public.{table}")
        mine.execute(f"INSERT INTO public.{table} VALUES (1)")
        mine.execute(f"CREATE MATERIALIZED VIEW public.{table}_again AS SELECT a FROM public.{table}")
        try:
            assert conn.execute(f"SELECT n FROM public.{view}").fetchall() == [(0,)]
            assert _is_stale(conn, view) == [("t",)]
        finally:
            conn.execute(f"DROP MATERIALIZED VIEW public.{view}")


def test_a_users_locked_views_stall_no_one_elses_auto_refresh(proxy, new_user):
    """The proxy refreshed every stale AUTO REFRESH view of the database in one statement, each
    waiting up to a second for its lock: a user's seventy views, stale and held locked in a
    transaction left open, made that statement outlast the proxy's command timeout (a minute),
    which undid every refresh it had made, at every pass; another user's view was never
    refreshed."""
    (mallory, password), (victim, victim_password) = new_user(), new_user()
    base, views = unique("t"), [unique("mv") for _ in range(70)]
    mine, my_view = unique("t"), unique("mv")
    with proxy.connect(mallory, password) as holder, proxy.connect(mallory, password) as writer, \
            proxy.connect(victim, victim_password) as conn:
        conn.execute(f"CREATE TABLE public.{mine} (a int)")
        conn.execute(f"CREATE MATERIALIZED VIEW public.{my_view} AUTO REFRESH YES AS SELECT count(*) AS n FROM public.{mine}")
        writer.execute(f"CREATE TABLE public.{base} (a int)")
        for view in views:
            writer.execute(f"CREATE MATERIALIZED VIEW public.{view} AUTO REFRESH YES AS SELECT a FROM public.{base}")
        holder.execute("BEGIN")
        for view in views:
            holder.execute(f"SELECT FROM public.{view} LIMIT 0")  # its lock, held
        try:
            writer.execute(f"INSERT INTO public.{base} VALUES (1)")  # all seventy stale
            time.sleep(1)
            conn.execute(f"INSERT INTO public.{mine} VALUES (1)")
            assert wait_for(lambda: _is_stale(conn, my_view) == [("f",)], timeout=30)
            assert conn.execute(f"SELECT n FROM public.{my_view}").fetchall() == [(1,)]
        finally:
            for view in views:  # (the proxy's refreshes of them would race the users' drop)
                writer.execute(f"ALTER MATERIALIZED VIEW public.{view} AUTO REFRESH NO")
            holder.execute("ROLLBACK")
            time.sleep(1.5)
