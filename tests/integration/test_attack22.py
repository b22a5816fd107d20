"""Attacks on main's guard of users' code (catalog/users_code.sql, 59b110c): nothing of a user's,
and no function that acts as its caller, may run with the rights of whoever reads, writes or
calls what they made, an admin above all (a PostgreSQL superuser on the embedded backend), nor
write down what that reader or writer sees."""

from __future__ import annotations

from ..conftest import unique
from .test_attack17 import _drop_all
from .test_attack21 import _attempt


def _rls_table(proxy, table: str, policy: str, victim: str, mallory: str) -> None:
    """An admin's table whose one row only victim's attachment shows; mallory may read it."""
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (region varchar(16))")
        admin.execute(f"INSERT INTO public.{table} VALUES ('VICTIM-ROW')")
        admin.execute(f"GRANT SELECT ON public.{table} TO {victim}, {mallory}")
        admin.execute(f"CREATE RLS POLICY {policy} USING (true)")
        admin.execute(f"ATTACH RLS POLICY {policy} ON public.{table} TO {victim}")
        admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON")


def _rls_cleanup(proxy, table: str, policy: str, victim: str) -> None:
    _drop_all(proxy, [f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                      f"DETACH RLS POLICY {policy} ON public.{table} FROM {victim}",
                      f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table} CASCADE"])


def test_a_users_rule_does_not_write_what_another_user_who_writes_their_table_sees_into_the_users_table(proxy, new_user):
    """users_code_refusal looks at a rule only for the functions it calls; a rule that calls none
    passes. A rule's actions run in the query of whoever writes the table, and shiftguard's row
    security answers for current_user, that writer, though PostgreSQL checks the rule's table
    permissions as its owner. So a rule ON INSERT of the user's table (the proxy passes CREATE
    RULE, Redshift has none) copies into a table of the user's the
    rows only the writer's attachment shows: the theft attack21 did with nextval in a view,
    here with no function at all."""
    mallory_name, mallory_password = new_user()
    victim, victim_password = new_user()
    table, policy = unique("t"), unique("p")
    inbox, loot = unique("inbox"), unique("loot")
    _rls_table(proxy, table, policy, victim, mallory_name)
    try:
        with proxy.connect(mallory_name, mallory_password) as mallory:
            assert mallory.execute(f"SELECT region FROM public.{table}").fetchall() == []
            mallory.execute(f"CREATE TABLE public.{inbox} (note varchar(64))")
            mallory.execute(f"CREATE TABLE public.{loot} (region varchar(16))")
            mallory.execute(f"GRANT INSERT ON public.{inbox} TO PUBLIC")
            _attempt(mallory, f"CREATE RULE keep AS ON INSERT TO public.{inbox} "
                              f"DO ALSO INSERT INTO public.{loot} SELECT region FROM public.{table}")
        with proxy.connect(victim, victim_password) as conn:
            _attempt(conn, f"INSERT INTO public.{inbox} VALUES ('hello')")
        with proxy.connect(mallory_name, mallory_password) as mallory:
            stolen = [r[0] for r in mallory.execute(f"SELECT region FROM public.{loot}").fetchall()]
        assert "VICTIM-ROW" not in stolen, stolen
    finally:
        _drop_all(proxy, [f"DROP TABLE IF EXISTS public.{inbox}", f"DROP TABLE IF EXISTS public.{loot}"])
        _rls_cleanup(proxy, table, policy, victim)


def test_a_users_rule_does_not_copy_what_only_the_admin_sees_of_other_sessions_into_the_users_table(proxy, new_user):
    """The same rule, reading pg_catalog.pg_stat_activity: acts_as_caller refuses a user's code
    that calls pg_stat_get_activity, but the view that calls it is no function, so a rule naming
    it calls nothing the guard looks at. The view's function shows every session's query text
    to whoever calls it when that is a superuser (GetUserId, the writer, not the rule's owner), so
    an admin's INSERT into the user's table copies other users' statements, secrets in them,
    into the user's table."""
    mallory_name, mallory_password = new_user()
    victim, victim_password = new_user()
    inbox, loot = unique("inbox"), unique("loot")
    secret = unique("SECRET")
    try:
        with proxy.connect(mallory_name, mallory_password) as mallory:
            mallory.execute(f"CREATE TABLE public.{inbox} (note varchar(64))")
            mallory.execute(f"CREATE TABLE public.{loot} (q varchar(65535))")
            mallory.execute(f"GRANT INSERT ON public.{inbox} TO PUBLIC")
            _attempt(mallory, f"CREATE RULE keep AS ON INSERT TO public.{inbox} "
                              f"DO ALSO INSERT INTO public.{loot} SELECT query FROM pg_catalog.pg_stat_activity")
        with proxy.connect(victim, victim_password) as conn:
            conn.execute(f"SELECT '{secret}' AS token").fetchall()
            with proxy.connect(mallory_name, mallory_password) as mallory:  # (not hers to see herself)
                seen = " ".join(str(r[0]) for r in mallory.execute("SELECT query FROM pg_catalog.pg_stat_activity"))
                assert secret not in seen
            with proxy.connect() as admin:
                _attempt(admin, f"INSERT INTO public.{inbox} VALUES ('hello')")
        with proxy.connect(mallory_name, mallory_password) as mallory:
            stolen = " ".join(str(r[0]) for r in mallory.execute(f"SELECT q FROM public.{loot}").fetchall())
        assert secret not in stolen, stolen[:500]
    finally:
        _drop_all(proxy, [f"DROP TABLE IF EXISTS public.{inbox}", f"DROP TABLE IF EXISTS public.{loot}"])
