"""Attacks on the day's changes: transaction pooling's kept and repeated cancels, SUPER's
compacted text, and the locks of catalog objects (shiftguard.object_locks, mv_refreshed)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from ..conftest import unique, waits_on_a_lock


def test_a_user_cannot_fake_mv_refreshed_callers_with_a_multiline_statement(proxy, new_user):
    """mv_refreshed checks the second and third lines of its PG_CONTEXT: a PERFORM whose text
    runs over several lines (a quoted column alias holding a newline) writes both lines itself."""
    name, password = new_user()
    base, view = unique("base"), unique("mv")
    with proxy.connect(name, password) as conn:
        conn.execute(f"CREATE TABLE public.{base} (a int)")
        conn.execute(f"CREATE MATERIALIZED VIEW public.{view} AS SELECT count(*) AS n FROM public.{base}")
        conn.execute(f"INSERT INTO public.{base} VALUES (1)")

        def stale():
            return conn.execute("SELECT is_stale FROM svv_mv_info WHERE name = %s", (view,)).fetchall()

        assert stale() == [("t",)]
        # Dynamic SQL (EXECUTE) whose text is "SELECT shiftguard.mv_refreshed(v_view, v_snapshot)",
        # a quoted alias starting with a newline and holding the line of an allowed caller, then
        # the FROM that makes v_view and v_snapshot columns.
        forged = ("SELECT shiftguard.mv_refreshed(v_view, v_snapshot)\"\n"
                  "PL/pgSQL function shiftguard.refresh_stale_views() line 1 at PERFORM\n"
                  f"\" FROM (SELECT ''public.{view}''::regclass AS v_view, pg_current_snapshot() AS v_snapshot) AS s")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="mv_refreshed is for shiftguard's own use"):
            conn.execute(f"DO $$ BEGIN EXECUTE '{forged}'; END $$")
        assert stale() == [("t",)]
        assert conn.execute(f"SELECT n FROM public.{view}").fetchall() == [(0,)]



def test_a_user_cannot_keep_a_proxy_from_starting(proxy, make_proxy, new_user, postgres):
    """LOCK TABLE shiftguard.bootstrap waits behind any lock request queued on the table before
    it. A user may not lock the table, but PostgreSQL takes some locks before it checks the
    privilege: a view over it made in an open transaction (ACCESS SHARE, kept), and a CREATE RULE
    on it (ACCESS EXCLUSIVE, refused only once granted) that waits behind that view, and behind
    which every later lock request waits: the next proxy's start."""
    name, password = new_user()
    view = unique("v")
    with proxy.connect(name, password) as holder, proxy.connect(name, password) as queued:
        holder.autocommit = False
        holder.execute(f"DO $$ BEGIN EXECUTE 'CREATE VIEW public.{view} AS SELECT FROM shiftguard.bootstrap'; END $$")
        failures = []

        def queue() -> None:
            try:
                queued.execute("DO $$ BEGIN EXECUTE 'CREATE RULE r AS ON INSERT TO shiftguard.bootstrap "
                               "DO INSTEAD NOTHING'; END $$")
            except psycopg.Error as exc:
                failures.append(exc)

        queuer = threading.Thread(target=queue)
        queuer.start()
        try:
            assert waits_on_a_lock(postgres, "CREATE RULE r AS ON INSERT TO shiftguard.bootstrap")
            starter = threading.Thread(target=make_proxy)
            starter.start()
            try:
                assert not waits_on_a_lock(postgres, "LOCK TABLE shiftguard.bootstrap")
            finally:
                holder.rollback()
                starter.join(60)
        finally:
            holder.rollback()
            queuer.join(60)
        assert [type(exc) for exc in failures] == [psycopg.errors.InsufficientPrivilege]
