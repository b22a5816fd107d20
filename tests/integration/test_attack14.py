"""Code of one user that runs with another's session_user (an admin's ANALYZE runs the table
owner's index expressions as the owner; a SECURITY DEFINER function runs as its owner in the
session of whoever calls it) called shiftguard's functions, which took session_user for the
caller: a user's index expression made its owner a superuser during an admin's ANALYZE. The
caller is now current_user where the call is made (catalog/schema.sql caller_key)."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import made_before, unique


def _is_superuser(proxy, name: str) -> bool:
    with proxy.connect() as admin:
        return admin.execute("SELECT usesuper FROM pg_user WHERE usename = %s", (name,)).fetchone() == (True,)


def _escalation(name: str, function: str) -> str:
    """A VOLATILE function that makes its owner a superuser through shiftguard, if shiftguard
    takes it for a superuser; any error swallowed, so that the statement running it goes on."""
    return f"""CREATE FUNCTION public.{function}() RETURNS void LANGUAGE plpgsql AS $$ BEGIN
        CALL shiftguard.alter_user('{name}', '{{"superuser": true}}');
        EXCEPTION WHEN OTHERS THEN NULL; END $$"""


@pytest.mark.parametrize("statement", ["ANALYZE", "ANALYZE public.{table}", "REINDEX TABLE public.{table}",
                                       "VACUUM public.{table}"])
def test_an_admins_maintenance_of_a_users_table_does_not_run_their_index_expression_as_the_admin(
        proxy, new_user, postgres, statement):
    """The PL/pgSQL functions and the index that calls them are refused to users now
    (catalog/users_code.sql); made before that refusal (made_before), they still exist on
    upgraded clusters, and caller_key behind it is what must hold."""
    name, password = new_user()
    table, escalate, indexed = unique("t"), unique("f"), unique("f")
    with proxy.connect(name, password) as mallory:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
            mallory.execute(_escalation(name, escalate))
        mallory.execute(f"CREATE TABLE public.{table} (a int)")
    # the index made on the empty table, so that made_before's session (event triggers off) runs none of it
    made_before(postgres, name, _escalation(name, escalate),
                f"""CREATE FUNCTION public.{indexed}(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN
            PERFORM public.{escalate}(); RETURN $1; END $$""",
                f"CREATE INDEX ON public.{table} (public.{indexed}(a))")
    with proxy.connect(name, password) as mallory:
        mallory.execute(f"INSERT INTO public.{table} SELECT generate_series(1, 100)")
    assert not _is_superuser(proxy, name)
    with proxy.connect() as admin:
        admin.execute(statement.format(table=table))
    assert not _is_superuser(proxy, name)


def test_an_admin_reading_a_users_view_does_not_lend_the_admin_to_their_security_definer_function(
        proxy, new_user, postgres):
    """The functions and the view that calls them are refused to users now; made before that
    refusal (made_before), as on an upgraded cluster."""
    name, password = new_user()
    escalate, definer, view = unique("f"), unique("f"), unique("v")
    with proxy.connect(name, password) as mallory:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
            mallory.execute(_escalation(name, escalate))
    made_before(postgres, name, _escalation(name, escalate),
                f"""CREATE FUNCTION public.{definer}() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN
            PERFORM public.{escalate}(); RETURN 1; END $$""",
                f"CREATE VIEW public.{view} AS SELECT public.{definer}() AS one",
                f"GRANT SELECT ON public.{view} TO PUBLIC")
    with proxy.connect() as admin:
        assert admin.execute(f"SELECT one FROM public.{view}").fetchall() == [(1,)]
    assert not _is_superuser(proxy, name)


def test_a_users_own_calls_still_act_as_them(proxy, new_user):
    """The caller found by key is the user: their own password change works, another's does not,
    and an admin's CREATE USER works (superuser)."""
    (name, password), (other, _) = new_user(), new_user()
    with proxy.connect(name, password) as conn:
        conn.execute(f"ALTER USER {name} PASSWORD 'Changed123'")
        with pytest.raises(Exception, match="permission denied"):
            conn.execute(f"ALTER USER {other} PASSWORD 'Changed123'")
        assert conn.execute("SELECT shiftguard.caller_is_superuser()").fetchone() == (False,)
    with proxy.connect(name, "Changed123") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
    with proxy.connect() as admin:
        assert admin.execute("SELECT shiftguard.caller_is_superuser()").fetchone() == (True,)
