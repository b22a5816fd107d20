"""Attacks on RLS lookup predicates that take the reader as a parameter (main bbe8d0e): the
table's policy passes current_user to shiftguard_rows."rls@<oid>"(tid, reader), which runs as
shiftguard_rls and reads the lookup tables (granted to shiftguard_rls) and the protected
tables' rows (views shiftguard."rls@<oid>:rows", granted to shiftguard_rls). Fixed: a table
is not turned into a view by a rule (row_code.sql guard_row_code), and shiftguard's caller key
is refused under SET ROLE (schema.sql caller_key), which every RLS and masking check asks."""

from __future__ import annotations

import contextlib

import psycopg
import pytest

from ..conftest import made_before, unique


def _drop_all(proxy, statements: list[str]) -> None:
    with proxy.connect() as admin:
        for statement in statements:
            try:
                admin.execute(statement)
            except psycopg.Error:
                pass


@contextlib.contextmanager
def narrowed_for_a_member(proxy, name: str):
    """A group with the user in it, and a table the group may read with RLS on (AND): one policy
    lets every row through for PUBLIC, one narrows the user to region 'EU' ('for the user'; the
    other row says 'HIDDEN'). Yields (group, table)."""
    group, table, p_all, p_mine = unique("g"), unique("t"), unique("p"), unique("p")
    with proxy.connect() as admin:
        admin.execute(f"CREATE GROUP {group} WITH USER {name}")
        admin.execute(f"CREATE TABLE public.{table} (region varchar(16), secret text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('EU', 'for the user'), ('US', 'HIDDEN')")
        admin.execute(f"GRANT SELECT ON public.{table} TO GROUP {group}")  # as Redshift's docs advise
        admin.execute(f"CREATE RLS POLICY {p_all} USING (true)")
        admin.execute(f"CREATE RLS POLICY {p_mine} WITH (region varchar(16)) USING (region = 'EU')")
        admin.execute(f"ATTACH RLS POLICY {p_all} ON public.{table} TO PUBLIC")
        admin.execute(f"ATTACH RLS POLICY {p_mine} ON public.{table} TO {name}")
        admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON CONJUNCTION TYPE AND")
    try:
        yield group, table
    finally:
        _drop_all(proxy, [f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                          f"DETACH RLS POLICY {p_all} ON public.{table} FROM PUBLIC",
                          f"DETACH RLS POLICY {p_mine} ON public.{table} FROM {name}",
                          f"DROP RLS POLICY IF EXISTS {p_all}", f"DROP RLS POLICY IF EXISTS {p_mine}",
                          f"DROP TABLE public.{table} CASCADE", f"ALTER GROUP {group} DROP USER {name}",
                          f"DROP GROUP {group}"])


@contextlib.contextmanager
def cards_masked_for(proxy, name: str):
    """A table of card numbers everyone may read, masked ('XXXX') for the user. Yields it."""
    table, policy = unique("t"), unique("p")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (card text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('4111111111111111')")
        admin.execute(f"GRANT SELECT ON public.{table} TO PUBLIC")
        admin.execute(f"CREATE MASKING POLICY {policy} WITH (card VARCHAR(256)) USING ('XXXX'::text)")
        admin.execute(f"ATTACH MASKING POLICY {policy} ON public.{table}(card) TO {name}")
    try:
        yield table
    finally:
        _drop_all(proxy, [f"DETACH MASKING POLICY {policy} ON public.{table}(card) FROM {name}",
                          f"DROP MASKING POLICY {policy}", f"DROP TABLE public.{table} CASCADE"])


def test_a_users_lookup_table_turned_into_a_view_does_not_run_their_code_as_shiftguard_rls(proxy, new_user, postgres):
    """A lookup table a user owns (an admin's policy reads a team table the user keeps) is
    trusted by its relkind alone (schema.sql untrusted_reference: a table is inert). On
    PostgreSQL 15 its owner turns it into a view once it is empty (CREATE RULE "_RETURN" ON
    SELECT, which shiftguard refuses only on protected tables), and the policy's function,
    bound to the relation's oid, now expands the user's view inside rls@<oid>, where
    current_user is shiftguard_rls: a function of the user's in that view runs as
    shiftguard_rls and reads what it may, every protected table's policy columns on every row
    (shiftguard."rls@<oid>:rows") and every other policy's lookup table, copying them out."""
    name, password = new_user()
    team, mine, secret, other_lookup, p_mine, p_secret = (unique("t"), unique("t"), unique("t"), unique("t"),
                                                          unique("p"), unique("p"))
    steal, loot = unique("f"), unique("t")
    with proxy.connect(name, password) as mallory:
        mallory.execute(f"CREATE TABLE public.{team} (username varchar(64), grp varchar(16))")
        mallory.execute(f"INSERT INTO public.{team} VALUES (%s, 'users')", (name,))
        mallory.execute(f"CREATE TABLE public.{loot} (what text)")
        mallory.execute(f"GRANT INSERT ON public.{loot} TO PUBLIC")
    with proxy.connect() as admin:
        # a table the user's team table governs
        admin.execute(f"CREATE TABLE public.{mine} (grp varchar(16), note text)")
        admin.execute(f"INSERT INTO public.{mine} VALUES ('users', 'for the team')")
        admin.execute(f"GRANT SELECT ON public.{mine} TO {name}")
        admin.execute(f"CREATE RLS POLICY {p_mine} WITH (grp varchar(16)) AS t USING (t.grp IN "
                      f"(SELECT e.grp FROM public.{team} e WHERE e.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {p_mine} ON public.{mine} TO PUBLIC")
        admin.execute(f"ALTER TABLE public.{mine} ROW LEVEL SECURITY ON")
        # an unrelated protected table and lookup table the user has nothing to do with
        admin.execute(f"CREATE TABLE public.{other_lookup} (username varchar(64), region varchar(16))")
        admin.execute(f"INSERT INTO public.{other_lookup} VALUES ('ceo', 'LOOKUP-ROW')")
        admin.execute(f"CREATE TABLE public.{secret} (region varchar(16), salary text)")
        admin.execute(f"INSERT INTO public.{secret} VALUES ('HIDDEN-REGION', '1000000')")
        admin.execute(f"CREATE RLS POLICY {p_secret} WITH (region varchar(16)) AS s USING (s.region IN "
                      f"(SELECT l.region FROM public.{other_lookup} l WHERE l.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {p_secret} ON public.{secret} TO PUBLIC")
        admin.execute(f"ALTER TABLE public.{secret} ROW LEVEL SECURITY ON")
        oid = admin.execute(f"SELECT 'public.{secret}'::regclass::oid").fetchone()[0]
    try:
        with proxy.connect(name, password) as mallory:
            assert mallory.execute(f"SELECT note FROM public.{mine}").fetchall() == [("for the team",)]
            mallory.execute(f"DELETE FROM public.{team}")
            steal_function = f"""CREATE FUNCTION public.{steal}() RETURNS TABLE (u varchar(64), g varchar(16))
                LANGUAGE plpgsql AS $$ BEGIN
                  BEGIN
                    INSERT INTO public.{loot} SELECT 'as ' || current_user;
                    INSERT INTO public.{loot} SELECT region FROM shiftguard."rls@{oid}:rows";
                    INSERT INTO public.{loot} SELECT region FROM public.{other_lookup};
                  EXCEPTION WHEN OTHERS THEN INSERT INTO public.{loot} SELECT 'error: ' || SQLERRM; END;
                  RETURN QUERY SELECT '{name}'::varchar(64), 'users'::varchar(16);
                END $$"""
            # refused now (catalog/users_code.sql); one made before that refusal still exists
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
                mallory.execute(steal_function)
            made_before(postgres, name, steal_function)
            # in a DO block: the proxy folds quoted identifiers to lower case, as Redshift does
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot be turned into a view"):
                mallory.execute(f"""DO $$ BEGIN EXECUTE 'CREATE RULE "_RETURN" AS ON SELECT TO public.{team} '
                    || 'DO INSTEAD SELECT s.u AS username, s.g AS grp FROM public.{steal}() s'; END $$""")
            mallory.execute(f"SELECT note FROM public.{mine}").fetchall()
            loot_rows = [r[0] for r in mallory.execute(f"SELECT what FROM public.{loot}").fetchall()]
            # the policy column of every row of another protected table, another policy's lookup
            # table, and the role they were read as
            assert not {"HIDDEN-REGION", "LOOKUP-ROW", "as shiftguard_rls"} & set(loot_rows), loot_rows
    finally:
        _drop_all(proxy, [f"ALTER TABLE public.{mine} ROW LEVEL SECURITY OFF",
                          f"ALTER TABLE public.{secret} ROW LEVEL SECURITY OFF",
                          f"DETACH RLS POLICY {p_mine} ON public.{mine} FROM PUBLIC",
                          f"DETACH RLS POLICY {p_secret} ON public.{secret} FROM PUBLIC",
                          f"DROP RLS POLICY IF EXISTS {p_mine}", f"DROP RLS POLICY IF EXISTS {p_secret}",
                          f"DROP TABLE public.{mine}", f"DROP TABLE public.{secret}",
                          f"DROP TABLE public.{other_lookup}"])


def test_a_group_member_does_not_shed_the_policies_attached_to_them_by_acting_as_the_group(proxy, new_user):
    """On PostgreSQL 15 a group's members may SET ROLE to it (schema.sql add_member: SET FALSE
    only from 16). The proxy refuses SET ROLE and set_config('role', ...) in the SQL it sees,
    not in the string a DO block EXECUTEs. Acting as the group, current_user is the group: the
    table's policy asks who it reaches by current_user's key, so a policy attached to the user
    (here the one that narrows their rows under AND) no longer applies, and the predicates are
    evaluated for the group as reader."""
    name, password = new_user()
    loot = unique("t")
    with narrowed_for_a_member(proxy, name) as (group, table):
        with proxy.connect(name, password) as mallory:
            assert mallory.execute(f"SELECT secret FROM public.{table}").fetchall() == [("for the user",)]
            mallory.execute(f"CREATE TABLE public.{loot} (what text)")
            mallory.execute(f"GRANT INSERT ON public.{loot} TO PUBLIC")
            # the group's PostgreSQL role (groups are named otherwise there)
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="SET ROLE is not supported"):
                mallory.execute(f"""DO $$ BEGIN
                    EXECUTE format('SET ROL' || 'E %I', (SELECT g.rolname FROM pg_auth_members m
                        JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                        WHERE u.rolname = current_user AND g.rolname LIKE '%{group}'));
                    INSERT INTO public.{loot} SELECT 'as ' || current_user;
                    INSERT INTO public.{loot} SELECT secret FROM public.{table};
                    EXECUTE 'RESET ROL' || 'E';
                    END $$""")
            loot_rows = [r[0] for r in mallory.execute(f"SELECT what FROM public.{loot}").fetchall()]
            assert "HIDDEN" not in loot_rows


def test_a_user_does_not_shed_the_masking_attached_to_them_by_acting_as_shiftguard_users(proxy, new_user):
    """Every user is a member of shiftguard_users (masking.sql), so on PostgreSQL 15 every user
    may SET ROLE to it, no group needed, from a string a DO block EXECUTEs. As shiftguard_users
    no masking attachment of the user's reaches current_user (mask_guard and mask_choice ask by
    its key), so a direct read of the table, which the masking guard lets through, returns the
    raw values; the same goes for RLS policies attached to the user."""
    name, password = new_user()
    loot = unique("t")
    with cards_masked_for(proxy, name) as table:
        with proxy.connect(name, password) as mallory:
            assert mallory.execute(f"SELECT card FROM public.{table}").fetchall() == [("XXXX",)]
            mallory.execute(f"CREATE TABLE public.{loot} (what text)")
            mallory.execute(f"GRANT INSERT ON public.{loot} TO PUBLIC")
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="SET ROLE is not supported"):
                mallory.execute(f"""DO $$ BEGIN
                    EXECUTE 'SET ROL' || 'E shiftguard_users';
                    INSERT INTO public.{loot} SELECT 'as ' || current_user;
                    INSERT INTO public.{loot} SELECT card FROM public.{table};
                    EXECUTE 'RESET ROL' || 'E';
                    END $$""")
            loot_rows = [r[0] for r in mallory.execute(f"SELECT what FROM public.{loot}").fetchall()]
            assert "4111111111111111" not in loot_rows


def test_a_lookup_tables_owner_does_not_take_the_policy_down_with_it(proxy, new_user):
    """DROP TABLE ... CASCADE of a lookup table a user owns would drop the policy's function,
    and with it the row security of the admin's table (which then showed no rows to anyone
    not exempt): refused, with what to do instead."""
    name, password = new_user()
    team, table, policy = unique("t"), unique("t"), unique("p")
    with proxy.connect(name, password) as owner:
        owner.execute(f"CREATE TABLE public.{team} (username varchar(64), grp varchar(16))")
        owner.execute(f"INSERT INTO public.{team} VALUES (%s, 'users')", (name,))
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (grp varchar(16), note text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('users', 'for the team')")
        admin.execute(f"GRANT SELECT ON public.{table} TO {name}")
        admin.execute(f"CREATE RLS POLICY {policy} WITH (grp varchar(16)) AS t USING (t.grp IN "
                      f"(SELECT e.grp FROM public.{team} e WHERE e.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {policy} ON public.{table} TO PUBLIC")
        admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON")
    try:
        with proxy.connect(name, password) as owner:
            for statement in (f"DROP TABLE public.{team} CASCADE",
                              f"DO $$ BEGIN EXECUTE 'DROP TABLE public.{team} CASCADE'; END $$"):
                with pytest.raises(psycopg.errors.DependentObjectsStillExist, match=f'RLS policy "{policy}" reads'):
                    owner.execute(statement)
            assert owner.execute(f"SELECT note FROM public.{table}").fetchall() == [("for the team",)]
    finally:
        _drop_all(proxy, [f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                          f"DETACH RLS POLICY {policy} ON public.{table} FROM PUBLIC",
                          f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table}",
                          f"DROP TABLE public.{team}"])
