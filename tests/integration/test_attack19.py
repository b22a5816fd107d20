"""Attacks on caller_key's refusal under SET ROLE (main 3a972ea, schema.sql caller_key): it asks
only whether the 'role' setting is in force, and takes current_user for the caller otherwise. A
SECURITY DEFINER function runs as its owner with the setting untouched, and on PostgreSQL 15 a
user may hand a function of theirs to any role they are a member of (ALTER FUNCTION ... OWNER TO,
from a string a DO block EXECUTEs, which the proxy never sees): a group of theirs, or
shiftguard_users, which every user is a member of. Calling it, current_user is the group (or
shiftguard_users), no SET ROLE shows, and every RLS and masking check asks for that role, to
which no attachment of the user's reaches: the same shedding the SET ROLE fix closed. REFRESH
MATERIALIZED VIEW runs as the view's owner the same way.

And on lookup tables an RLS policy reads (main 3a972ea, 37f226e): rls@<oid> plans the lookup
as shiftguard_rls, and PostgreSQL's planner runs IMMUTABLE functions of constant arguments
while it simplifies what it loads about a table (index expressions and predicates, extended
statistics' expressions, inheritance children's CHECK constraints): the lookup table's owner
puts one of theirs there, and it runs as shiftguard_rls. Every test fails on main now."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import ADMIN, ADMIN_PASSWORD, made_before, unique
from .test_attack17 import _drop_all, cards_masked_for, narrowed_for_a_member


def _group_role(group: str) -> str:
    """SQL for the PostgreSQL role of the caller's group (groups are named otherwise there)."""
    return (f"(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            f"JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = current_user AND g.rolname LIKE '%{group}')")


def test_a_group_member_does_not_shed_their_rls_through_a_function_owned_by_the_group(proxy, new_user, postgres):
    """The member's SECURITY DEFINER function, given to the group: it reads the table as the
    group, with the 'role' setting 'none', so caller_key answers the group's key, the policy
    attached to the user (narrowing their rows under AND) no longer applies, and PUBLIC's lets
    every row through."""
    name, password = new_user()
    steal = unique("f")
    with narrowed_for_a_member(proxy, name) as (group, table):
        try:
            with proxy.connect(name, password) as mallory:
                assert mallory.execute(f"SELECT secret FROM public.{table}").fetchall() == [("for the user",)]
                function = f"""CREATE FUNCTION public.{steal}() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
                    AS $$ SELECT secret FROM public.{table} $$"""
                give = f"""DO $$ BEGIN EXECUTE format('ALTER FUNCTION public.{steal}() OWNER TO %I',
                    {_group_role(group)}); END $$"""
                with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
                    mallory.execute(function)  # a function reads no table now (catalog/users_code.sql)
                # made, and given to the group, before shiftguard refused such functions
                made_before(postgres, name, function, give)
                try:
                    rows = [r[0] for r in mallory.execute(f"SELECT * FROM public.{steal}()").fetchall()]
                except psycopg.Error:
                    rows = []  # refused: what the attacker must get
                assert "HIDDEN" not in rows, rows
        finally:
            _drop_all(proxy, [f"DROP FUNCTION IF EXISTS public.{steal}()"])


def test_a_user_does_not_shed_their_masking_through_a_function_owned_by_shiftguard_users(proxy, new_user, postgres):
    """No group needed: every user is a member of shiftguard_users (masking.sql), may give it a
    SECURITY DEFINER function of theirs, and reads through it as shiftguard_users, to which the
    masking attached to the user does not reach: the raw card numbers."""
    name, password = new_user()
    steal = unique("f")
    with cards_masked_for(proxy, name) as table:
        try:
            with proxy.connect(name, password) as mallory:
                assert mallory.execute(f"SELECT card FROM public.{table}").fetchall() == [("XXXX",)]
                function = f"""CREATE FUNCTION public.{steal}() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
                    AS $$ SELECT card FROM public.{table} $$"""
                give = f"DO $$ BEGIN EXECUTE 'ALTER FUNCTION public.{steal}() OWNER TO shiftguard_users'; END $$"
                with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
                    mallory.execute(function)  # a function reads no table now (catalog/users_code.sql)
                # made, and given to shiftguard_users, before shiftguard refused such functions
                made_before(postgres, name, function, give)
                try:
                    rows = [r[0] for r in mallory.execute(f"SELECT * FROM public.{steal}()").fetchall()]
                except psycopg.Error:
                    rows = []
                assert "4111111111111111" not in rows, rows
        finally:
            _drop_all(proxy, [f"DROP FUNCTION IF EXISTS public.{steal}()"])


def _lookup_setup(proxy, name, password):
    """test_attack17's: an admin's policy on a table of theirs reads a team table the user owns;
    another protected table and another policy's lookup table the user has nothing to do with.
    -> (the names, the other protected table's oid)."""
    names = dict(team=unique("t"), mine=unique("t"), secret=unique("t"), other_lookup=unique("t"),
                 p_mine=unique("p"), p_secret=unique("p"), loot=unique("t"), grab=unique("f"), evil=unique("f"))
    n = names
    with proxy.connect(name, password) as mallory:
        mallory.execute(f"CREATE TABLE public.{n['team']} (username varchar(64), grp varchar(16))")
        mallory.execute(f"INSERT INTO public.{n['team']} VALUES (%s, 'users')", (name,))
        mallory.execute(f"CREATE TABLE public.{n['loot']} (what text)")
        mallory.execute(f"GRANT INSERT ON public.{n['loot']} TO PUBLIC")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{n['mine']} (grp varchar(16), note text)")
        admin.execute(f"INSERT INTO public.{n['mine']} VALUES ('users', 'for the team')")
        admin.execute(f"GRANT SELECT ON public.{n['mine']} TO {name}")
        admin.execute(f"CREATE RLS POLICY {n['p_mine']} WITH (grp varchar(16)) AS t USING (t.grp IN "
                      f"(SELECT e.grp FROM public.{n['team']} e WHERE e.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {n['p_mine']} ON public.{n['mine']} TO PUBLIC")
        admin.execute(f"ALTER TABLE public.{n['mine']} ROW LEVEL SECURITY ON")
        admin.execute(f"CREATE TABLE public.{n['other_lookup']} (username varchar(64), region varchar(16))")
        admin.execute(f"INSERT INTO public.{n['other_lookup']} VALUES ('ceo', 'LOOKUP-ROW')")
        admin.execute(f"CREATE TABLE public.{n['secret']} (region varchar(16), salary text)")
        admin.execute(f"INSERT INTO public.{n['secret']} VALUES ('HIDDEN-REGION', '1000000')")
        admin.execute(f"CREATE RLS POLICY {n['p_secret']} WITH (region varchar(16)) AS s USING (s.region IN "
                      f"(SELECT l.region FROM public.{n['other_lookup']} l WHERE l.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {n['p_secret']} ON public.{n['secret']} TO PUBLIC")
        admin.execute(f"ALTER TABLE public.{n['secret']} ROW LEVEL SECURITY ON")
        oid = admin.execute(f"SELECT 'public.{n['secret']}'::regclass::oid").fetchone()[0]
    return names, oid


def _lookup_teardown(proxy, n):
    _drop_all(proxy, [f"ALTER TABLE public.{n['mine']} ROW LEVEL SECURITY OFF",
                      f"ALTER TABLE public.{n['secret']} ROW LEVEL SECURITY OFF",
                      f"DETACH RLS POLICY {n['p_mine']} ON public.{n['mine']} FROM PUBLIC",
                      f"DETACH RLS POLICY {n['p_secret']} ON public.{n['secret']} FROM PUBLIC",
                      f"DROP RLS POLICY IF EXISTS {n['p_mine']}", f"DROP RLS POLICY IF EXISTS {n['p_secret']}",
                      f"DROP TABLE public.{n['mine']}", f"DROP TABLE public.{n['secret']}",
                      f"DROP TABLE public.{n['other_lookup']}"])


def _plant(mallory, n, oid) -> None:
    """grab(): copies out what shiftguard_rls reads (VOLATILE, the user's); evil(integer):
    IMMUTABLE, calls grab() when run as shiftguard_rls, true otherwise. The planner runs an
    IMMUTABLE function of constant arguments while it plans (constant folding), as whoever plans.
    PL/pgSQL functions are refused to users now (catalog/users_code.sql); these are the user's
    as made before that refusal (upgraded clusters still hold such): made by an admin, through
    the proxy mallory is connected to (test_attack20 calls this with no postgres fixture), and
    given to the user, as made_before would leave them."""
    functions = [
        f"""CREATE FUNCTION public.{n['grab']}() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN
          BEGIN
            INSERT INTO public.{n['loot']} SELECT 'as ' || current_user;
            INSERT INTO public.{n['loot']} SELECT region FROM shiftguard."rls@{oid}:rows";
            INSERT INTO public.{n['loot']} SELECT region FROM public.{n['other_lookup']};
          EXCEPTION WHEN OTHERS THEN INSERT INTO public.{n['loot']} SELECT 'error: ' || SQLERRM; END;
          RETURN true; END $$""",
        f"""CREATE FUNCTION public.{n['evil']}(integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
          BEGIN
            IF current_user::text = 'shiftguard_rls' THEN PERFORM public.{n['grab']}(); END IF;
            RETURN true;
          EXCEPTION WHEN OTHERS THEN RETURN true; END $$"""]
    for function in functions:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
            mallory.execute(function)
    with psycopg.connect(host=mallory.info.host, port=mallory.info.port, user=ADMIN, password=ADMIN_PASSWORD,
                         dbname="dev", sslmode="disable", autocommit=True) as admin:
        for function in functions:
            admin.execute(function)
        for signature in (f"{n['grab']}()", f"{n['evil']}(integer)"):
            admin.execute(f"ALTER FUNCTION public.{signature} OWNER TO {mallory.info.user}")


def _looted(mallory, n) -> set[str]:
    try:
        mallory.execute(f"SELECT note FROM public.{n['mine']}").fetchall()
    except psycopg.Error:
        pass
    return {r[0] for r in mallory.execute(f"SELECT what FROM public.{n['loot']}").fetchall()}


def test_a_lookup_tables_index_expression_does_not_run_its_owners_code_as_shiftguard_rls(proxy, new_user):
    """An index on the user's lookup table over an IMMUTABLE function of theirs with a constant
    argument: PostgreSQL's relcache simplifies index expressions (eval_const_expressions) when
    it first loads them, which the planner does planning the lookup inside rls@<oid>, as
    shiftguard_rls: the function runs there and copies out every protected table's policy
    columns (shiftguard."rls@<oid>:rows") and other policies' lookup tables. A plain CREATE INDEX
    through the proxy; no DO block."""
    name, password = new_user()
    n, oid = _lookup_setup(proxy, name, password)
    try:
        with proxy.connect(name, password) as mallory:
            assert mallory.execute(f"SELECT note FROM public.{n['mine']}").fetchall() == [("for the team",)]
            _plant(mallory, n, oid)
            # held before it builds anything (as protected tables are: row_code.sql hold_protected)
            with pytest.raises(psycopg.errors.ObjectInUse, match="being used by active queries"):
                mallory.execute(f"CREATE INDEX ON public.{n['team']} ((public.{n['evil']}(1)))")
        with proxy.connect(name, password) as mallory:
            loot = _looted(mallory, n)
            assert not {"HIDDEN-REGION", "LOOKUP-ROW", "as shiftguard_rls"} & loot, loot
    finally:
        _lookup_teardown(proxy, n)


def test_a_lookup_tables_child_check_constraint_does_not_run_its_owners_code_as_shiftguard_rls(proxy, new_user):
    """A child table of the user's lookup table (guard_inheritance refuses links only to
    protected tables) with a CHECK constraint over an IMMUTABLE function of theirs: planning the
    lookup inside rls@<oid>, PostgreSQL's constraint exclusion (constraint_exclusion = partition:
    inheritance children) simplifies the child's constraints (eval_const_expressions), running
    the function as shiftguard_rls."""
    name, password = new_user()
    n, oid = _lookup_setup(proxy, name, password)
    child = unique("t")
    try:
        with proxy.connect(name, password) as mallory:
            assert mallory.execute(f"SELECT note FROM public.{n['mine']}").fetchall() == [("for the team",)]
            _plant(mallory, n, oid)
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="which RLS policy .* reads, cannot have"):
                mallory.execute(f"""DO $$ BEGIN EXECUTE 'CREATE TABLE public.{child} (CHECK (public.{n['evil']}(1))) '
                    || 'INHERITS (public.{n['team']})'; END $$""")
            loot = _looted(mallory, n)
            assert not {"HIDDEN-REGION", "LOOKUP-ROW", "as shiftguard_rls"} & loot, loot
    finally:
        _lookup_teardown(proxy, n)


def test_a_lookup_tables_statistics_expression_does_not_run_its_owners_code_as_shiftguard_rls(proxy, new_user):
    """The same through extended statistics on an expression (CREATE STATISTICS ... ON (f(1)),
    then ANALYZE, both as the owner, where the function does nothing): the planner loads the
    built statistics' expressions and simplifies them (get_relation_statistics), running the
    function as shiftguard_rls inside rls@<oid>."""
    name, password = new_user()
    n, oid = _lookup_setup(proxy, name, password)
    stats = unique("s")
    try:
        with proxy.connect(name, password) as mallory:
            assert mallory.execute(f"SELECT note FROM public.{n['mine']}").fetchall() == [("for the team",)]
            _plant(mallory, n, oid)
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="which RLS policy .* reads, cannot have"):
                mallory.execute(f"CREATE STATISTICS public.{stats} ON (public.{n['evil']}(1)), (username || 'x') "
                                f"FROM public.{n['team']}")
            mallory.execute(f"ANALYZE public.{n['team']}")
        with proxy.connect(name, password) as mallory:
            loot = _looted(mallory, n)
            assert not {"HIDDEN-REGION", "LOOKUP-ROW", "as shiftguard_rls"} & loot, loot
    finally:
        _lookup_teardown(proxy, n)


def test_a_group_member_does_not_shed_their_rls_through_a_materialized_view_owned_by_the_group(proxy, new_user):
    """No SECURITY DEFINER function needed: REFRESH MATERIALIZED VIEW runs the view's query as
    its owner (PostgreSQL switches current_user, not the 'role' setting). The member's
    materialized view (made and refreshed through the proxy), given to the group from a DO
    block, is refreshed as the group: every row, the policy attached to the user shed."""
    name, password = new_user()
    view = unique("m")
    with narrowed_for_a_member(proxy, name) as (group, table):
        try:
            with proxy.connect(name, password) as mallory:
                mallory.autocommit = True
                rows: list[str] = []
                try:
                    mallory.execute(f"CREATE MATERIALIZED VIEW {view} AS SELECT secret FROM public.{table}")
                    assert mallory.execute(f"SELECT secret FROM {view}").fetchall() == [("for the user",)]
                    mallory.execute(f"""DO $$ BEGIN EXECUTE format('ALTER MATERIALIZED VIEW public.{view} OWNER TO %I',
                        {_group_role(group)}); END $$""")
                    mallory.execute(f"REFRESH MATERIALIZED VIEW {view}")
                    rows = [r[0] for r in mallory.execute(f"SELECT secret FROM {view}").fetchall()]
                except psycopg.Error:
                    pass  # refused: what the attacker must get
                assert "HIDDEN" not in rows, rows
        finally:
            _drop_all(proxy, [f"DROP MATERIALIZED VIEW IF EXISTS public.{view}"])


def test_a_policy_does_not_read_a_table_that_has_code_the_planner_runs(proxy, new_user):
    """The other order: the lookup table has a CHECK constraint (or an expression index, a
    statistics object on expressions, a child) before the policy is made: CREATE RLS POLICY
    refuses to read it."""
    name, password = new_user()
    team, policy = unique("t"), unique("p")
    with proxy.connect(name, password) as owner:
        owner.execute(f"CREATE TABLE public.{team} (username varchar(64), grp varchar(16))")
        owner.execute(f"DO $$ BEGIN EXECUTE 'ALTER TABLE public.{team} ADD CHECK (grp <> ''x'')'; END $$")
    try:
        with proxy.connect() as admin:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match=f'which RLS policy "{policy}" reads'):
                admin.execute(f"CREATE RLS POLICY {policy} WITH (grp varchar(16)) AS t USING (t.grp IN "
                              f"(SELECT e.grp FROM public.{team} e WHERE e.username = current_user))")
    finally:
        _drop_all(proxy, [f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{team}"])
