"""Attacks on callers known by key (catalog/schema.sql caller_key): what still takes the session
user for the caller while code of another role runs (an admin's ANALYZE runs the table owner's
index expression as the owner, session_user still the admin), and what keys made on first use
break for ordinary users."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import made_before, unique, wait_for


def _during_admins_analyze(proxy, postgres, name: str, password: str, body: str) -> None:
    """Make `body` (PL/pgSQL statements) run as the user `name`, in the admin's session, by the
    admin's ANALYZE of a table of the user's: the body is in a VOLATILE function that the
    table's index expression calls. Errors in the body are swallowed (the ANALYZE goes on).
    Such functions and the index are refused to users now (catalog/users_code.sql); they are
    made as the user before that refusal (made_before), as on an upgraded cluster, so that the
    defences behind it stay tested."""
    table, act, indexed = unique("t"), unique("f"), unique("f")
    function = f"""CREATE FUNCTION public.{act}() RETURNS void LANGUAGE plpgsql AS $$ BEGIN
            {body}
            EXCEPTION WHEN OTHERS THEN NULL; END $$"""
    with proxy.connect(name, password) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
            conn.execute(function)
        conn.execute(f"CREATE TABLE public.{table} (a int)")
    # the index made on the empty table: made_before's session (session_user the bootstrap
    # superuser, event triggers off) must not be the one that runs the body
    made_before(postgres, name, function,
                f"""CREATE FUNCTION public.{indexed}(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN
            IF $1 = 1 AND current_user <> session_user THEN PERFORM public.{act}(); END IF; RETURN $1; END $$""",
                f"CREATE INDEX ON public.{table} (public.{indexed}(a))")
    with proxy.connect(name, password) as conn:
        conn.execute(f"INSERT INTO public.{table} VALUES (1)")
    with proxy.connect() as admin:
        admin.execute(f"ANALYZE public.{table}")


@pytest.fixture
def admins_rls_table(proxy):
    """admins_rls_table(reader) -> (table, policy): a table of the admin's with a row of the
    admin's and one of the reader's, under an RLS policy that shows each user their own rows
    (owner = current_user), attached to PUBLIC; the reader may SELECT it. Dropped after."""
    made = []

    def make(reader: str) -> tuple[str, str]:
        table, policy = unique("t"), unique("p")
        made.append((table, policy))
        with proxy.connect() as admin:
            admin.execute(f"CREATE TABLE public.{table} (owner varchar(64), secret text)")
            admin.execute(f"INSERT INTO public.{table} VALUES (current_user, 'the admin''s'), (%s, 'the reader''s')",
                          (reader,))
            admin.execute(f"GRANT SELECT ON public.{table} TO {reader}")
            admin.execute(f"CREATE RLS POLICY {policy} WITH (owner varchar(64)) USING (owner = current_user)")
            admin.execute(f"ATTACH RLS POLICY {policy} ON public.{table} TO PUBLIC")
            admin.execute(f"ALTER TABLE public.{table} ROW LEVEL SECURITY ON")
        return table, policy

    yield make
    with proxy.connect() as admin:
        for table, policy in made:
            for statement in (f"ALTER TABLE public.{table} ROW LEVEL SECURITY OFF",
                              f"DETACH RLS POLICY {policy} ON public.{table} FROM PUBLIC",
                              f"DROP RLS POLICY IF EXISTS {policy}", f"DROP TABLE public.{table}"):
                try:
                    admin.execute(statement)
                except psycopg.Error:
                    pass  # the attack dropped or detached it already


def test_grant_roles_in_an_admins_analyze_does_not_act_as_the_admin(proxy, new_user, postgres):
    """shiftguard.grant_roles (GRANT ROLE, PUBLIC to execute) was not converted to a key: it is
    SECURITY DEFINER and asks is_role_admin(), whose caller_key() then runs with current_user the
    management role, and falls back to the key of session_user, the admin whose ANALYZE runs the
    user's index expression. The user grants themselves sys:superuser WITH ADMIN OPTION, and
    with it CREATE/ALTER/DROP USER, IGNORE RLS, ACCESS SYSTEM TABLE, ...: they take over another
    user by setting its password."""
    (name, password), (other, other_password) = new_user(), new_user()
    _during_admins_analyze(proxy, postgres, name, password, f"""
        CALL shiftguard.grant_roles('{{"roles": ["sys:superuser"], "admin": true,
                                      "grantees": [{{"kind": "user", "name": "{name}"}}]}}');""")
    with proxy.connect() as admin:
        held = admin.execute("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                             "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (name,)).fetchall()
    assert ("sys:superuser",) not in held
    with proxy.connect(name, password) as mallory:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mallory.execute(f"ALTER USER {other} PASSWORD 'Taken1234'")
    with proxy.connect(other, other_password) as conn:  # still theirs
        assert conn.execute("SELECT current_user").fetchone() == (other,)


@pytest.mark.parametrize("call", [
    "CALL shiftguard.set_table_rls('public.{table}'::regclass, false, NULL);",
    "CALL shiftguard.drop_rls_policy('{policy}', false, true);",
])
def test_rls_statements_in_an_admins_analyze_do_not_act_as_the_admin(proxy, new_user, admins_rls_table, call,
                                                                    postgres):
    """set_table_rls and drop_rls_policy (as drop_masking_policy) are SECURITY DEFINER, not
    converted to keys, and ask require_rls_admin(): in an admin's ANALYZE, caller_key() falls
    back to session_user's key (the admin's), so the table owner's index expression turns RLS off
    on (or drops the policy of) a table it may read only its own rows of."""
    name, password = new_user()
    table, policy = admins_rls_table(name)
    with proxy.connect(name, password) as mallory:
        mallory.execute("SELECT shiftguard.caller_key()")  # its key made (see the tests below)
        assert mallory.execute(f"SELECT secret FROM public.{table}").fetchall() == [("the reader's",)]
    _during_admins_analyze(proxy, postgres, name, password, call.format(table=table, policy=policy))
    with proxy.connect(name, password) as mallory:
        assert mallory.execute(f"SELECT secret FROM public.{table}").fetchall() == [("the reader's",)]


def test_an_rls_predicates_current_user_in_an_admins_analyze_is_not_the_admin(proxy, new_user, admins_rls_table,
                                                                             postgres):
    """RLS predicates are written with session_user for current_user (rls.sql), and the policy
    is found to apply by key (to the table owner's code: PUBLIC), so the owner's index
    expression, run by an admin's ANALYZE, reads the table with the predicate evaluated for the
    admin: it copies the admin's rows into a table of its own."""
    name, password = new_user()
    (table, _), loot = admins_rls_table(name), unique("t")
    with proxy.connect(name, password) as mallory:
        mallory.execute("SELECT shiftguard.caller_key()")  # its key made (see the tests below)
        mallory.execute(f"CREATE TABLE public.{loot} (secret text)")
    _during_admins_analyze(proxy, postgres, name, password,
                           f"INSERT INTO public.{loot} SELECT secret FROM public.{table};")
    with proxy.connect(name, password) as mallory:
        assert ("the admin's",) not in mallory.execute(f"SELECT secret FROM public.{loot}").fetchall()


def test_a_new_users_first_read_of_an_rls_table_works(proxy, new_user, admins_rls_table):
    """A role's key is made on first use, by caller_key(); but called from the STABLE wrappers
    (rls_exempt(), rls_applies(), ...) the row it inserts is not seen by the read that follows,
    the caller is unknown, rls_exempt__keyed raises, and the statement's rollback takes the new
    key with it: a user created through CREATE USER cannot read a table under RLS, however often
    they try, until some other statement of theirs happens to make their key."""
    name, password = new_user()
    table, _ = admins_rls_table(name)
    with proxy.connect(name, password) as conn:
        for _ in range(2):
            assert conn.execute(f"SELECT secret FROM public.{table}").fetchall() == [("the reader's",)]


def test_a_new_superusers_first_statement_sees_as_a_superuser(proxy):
    """The same first use, in an ordinary session: the key made inside a STABLE wrapper is not
    seen by the lookup that follows, so a superuser created or re-created (DROP USER, CREATE USER
    of the same name: a new role, no key) is nobody to shiftguard in its first statement:
    SVV_USER_INFO shows it only its own row."""
    name = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} CREATEUSER PASSWORD 'Secret123'")
        users = admin.execute("SELECT count(*) FROM svv_user_info").fetchone()[0]
    try:
        with proxy.connect(name, "Secret123") as conn:
            assert conn.execute("SELECT count(*) FROM svv_user_info").fetchone()[0] >= users
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER IF EXISTS {name}")


def test_a_new_superuser_is_a_superuser_in_a_read_only_session(proxy):
    """In a read-only transaction make_caller_keys() gave up (read_only_sql_transaction was
    swallowed), so a role without a key yet was nobody: a new superuser whose client opens
    read-only sessions (BI tools, JDBC readOnly=true) is not a superuser to shiftguard, sees only
    its own row of SVV_USER_INFO and is refused tables under RLS."""
    name = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} CREATEUSER PASSWORD 'Secret123'")
        users = admin.execute("SELECT count(*) FROM svv_user_info").fetchone()[0]
    try:
        with proxy.connect(name, "Secret123") as conn:
            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            assert conn.execute("SELECT shiftguard.caller_is_superuser()").fetchone() == (True,)
            assert conn.execute("SELECT count(*) FROM svv_user_info").fetchone()[0] >= users
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER IF EXISTS {name}")


def test_another_users_open_transaction_does_not_hold_up_a_new_users_statements(proxy, new_user):
    """make_caller_keys() (PUBLIC) inserted keys for every role without one, in the caller's
    transaction. While that transaction stayed open, a new user's first statements waited for
    it: their own caller_key() found no key (the row not committed) and inserted theirs, which
    waited on the uncommitted one. Any user could hold every new user's statements up so: even
    ALTER USER of their own password hung. Keys are now derived from the backend secret and
    the role: there is no row to make or to wait on."""
    (name, password) = new_user()
    with proxy.connect(name, password) as mallory:
        mallory.execute("SELECT shiftguard.caller_key()")
        bob, bob_password = new_user()
        mallory.execute("BEGIN")
        mallory.execute("SELECT shiftguard.caller_key() IS NOT NULL")
        try:
            with proxy.connect(bob, bob_password) as conn:
                conn.execute("SET statement_timeout = '3s'")
                assert conn.execute("SELECT shiftguard.caller_is_superuser()").fetchone() == (False,)
                conn.execute(f"ALTER USER {bob} PASSWORD 'Changed123'")
        finally:
            mallory.execute("ROLLBACK")


def test_an_admin_glancing_at_a_users_view_read_only_does_not_hand_over_a_lasting_key(proxy, new_user, postgres):
    """An admin's key is a bearer credential that never changes: code of the user's that runs as
    the admin once (an INVOKER function in a view of theirs that the admin reads, here in a
    read-only session, where it can change nothing itself) reads the admin's key from
    caller_key_of_current_user and sends it out with pg_notify, which a read-only transaction
    allows. From then on the user passes it to any __keyed function (PUBLIC to execute) and is
    the admin to shiftguard: alter_user__keyed makes them a superuser."""
    name, password = new_user()
    function, view, channel = unique("f"), unique("v"), unique("c")
    create = f"""CREATE FUNCTION public.{function}() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
            PERFORM pg_notify('{channel}', (SELECT key FROM shiftguard.caller_key_of_current_user));
            RETURN 1; END $$"""
    with proxy.connect(name, password) as mallory:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
            mallory.execute(create)
        # the function and the view that calls it, made before shiftguard refused them
        made_before(postgres, name, create, f"CREATE VIEW public.{view} AS SELECT public.{function}() AS one",
                    f"GRANT SELECT ON public.{view} TO PUBLIC")
        mallory.execute(f"LISTEN {channel}")
        with proxy.connect() as admin:
            admin.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            assert admin.execute(f"SELECT one FROM public.{view}").fetchall() == [(1,)]
        for key in [n.payload for n in mallory.notifies(timeout=5, stop_after=1)]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                mallory.execute("CALL shiftguard.alter_user__keyed(%s, '{\"superuser\": true}', %s)", (name, key))
    with proxy.connect() as admin:
        assert admin.execute("SELECT usesuper FROM pg_user WHERE usename = %s", (name,)).fetchone() == (False,)


def test_the_query_log_in_an_admins_analyze_shows_the_owners_queries_only(make_proxy, tmp_path, postgres):
    """STL_QUERY and SYS_QUERY_HISTORY still show the rows of session_user: a table owner's index
    expression, run by an admin's ANALYZE, copies the admin's statements (their texts, literals
    and all) into a table of its own."""
    from proxy.config import Audit
    proxy = make_proxy(audit=Audit(dir=str(tmp_path / "audit"), user_activity=True))
    name, secret, loot = unique("u"), unique("secret"), unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} PASSWORD 'Secret123'")
    try:
        with proxy.connect(name, "Secret123") as mallory:
            mallory.execute(f"CREATE TABLE public.{loot} (querytxt text)")
        with proxy.connect() as admin:
            admin.execute(f"SELECT '{secret}'")
            assert wait_for(lambda: admin.execute("SELECT count(*) FROM stl_query WHERE querytxt LIKE %s",
                                                  (f"%{secret}%",)).fetchone()[0])
        _during_admins_analyze(proxy, postgres, name, "Secret123", f"""
            INSERT INTO public.{loot} SELECT querytxt FROM shiftguard.stl_query WHERE querytxt LIKE '%{secret}%';""")
        with proxy.connect(name, "Secret123") as mallory:
            assert mallory.execute(f"SELECT count(*) FROM public.{loot}").fetchone() == (0,)
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP OWNED BY {name}")
        with proxy.connect() as admin:
            admin.execute(f"DROP USER IF EXISTS {name}")


def test_masking_in_an_admins_analyze_masks_for_the_owners_code(proxy, new_user, postgres):
    """mask_choice and mask_guard (SECURITY DEFINER, not converted) ask mask_reaches(), whose
    caller_key() falls back to session_user's key, and mask_may_read checks session_user: a
    table owner's index expression, run by an admin's ANALYZE, reads a masked table through its
    masking view as the admin (a superuser, not masked) and copies the card numbers out."""
    name, password = new_user()
    table, policy, loot = unique("t"), unique("p"), unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE public.{table} (card text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('4111111111111111')")
        admin.execute(f"GRANT SELECT ON public.{table} TO PUBLIC")
        admin.execute(f"CREATE MASKING POLICY {policy} WITH (card VARCHAR(256)) USING ('XXXX'::TEXT)")
        admin.execute(f"ATTACH MASKING POLICY {policy} ON public.{table}(card) TO PUBLIC")
        oid = admin.execute(f"SELECT 'public.{table}'::regclass::oid").fetchone()[0]
    try:
        with proxy.connect(name, password) as mallory:
            mallory.execute("SELECT shiftguard.caller_key()")  # its key made (see the tests above)
            assert mallory.execute(f"SELECT card FROM public.{table}").fetchall() == [("XXXX",)]
            mallory.execute(f"CREATE TABLE public.{loot} (card text)")
        _during_admins_analyze(proxy, postgres, name, password,
                               f'INSERT INTO public.{loot} SELECT card FROM shiftguard."mask:{oid}";')
        with proxy.connect(name, password) as mallory:
            assert ("4111111111111111",) not in mallory.execute(f"SELECT card FROM public.{loot}").fetchall()
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DETACH MASKING POLICY {policy} ON public.{table}(card) FROM PUBLIC")
            admin.execute(f"DROP MASKING POLICY {policy}")


def test_alter_group_in_an_admins_analyze_does_not_act_as_the_admin(proxy, new_user, postgres):
    """alter_group (as create_group, drop_group and the identity-provider procedures) is
    SECURITY DEFINER, not converted, and asks require_group_admin() -> caller_is_superuser(),
    whose caller_key() falls back to session_user's key: a table owner's index expression, run
    by an admin's ANALYZE, adds its owner to a group and reads what the group was granted."""
    name, password = new_user()
    group, table = unique("g"), unique("t")
    with proxy.connect() as admin:
        admin.execute(f"CREATE GROUP {group}")
        admin.execute(f"CREATE TABLE public.{table} (secret text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('the group''s')")
        admin.execute(f"GRANT SELECT ON public.{table} TO GROUP {group}")
    try:
        _during_admins_analyze(proxy, postgres, name, password,
                               f"""CALL shiftguard.alter_group('{group}', '{{"add": ["{name}"]}}');""")
        with proxy.connect(name, password) as mallory:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                mallory.execute(f"SELECT secret FROM public.{table}")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE public.{table}")
            admin.execute(f"ALTER GROUP {group} DROP USER {name}")
            admin.execute(f"DROP GROUP {group}")


def test_autovacuum_does_not_let_a_users_index_expression_act_as_the_management_role(proxy, new_user, postgres):
    """No admin needed: autovacuum's ANALYZE runs with session_user the bootstrap superuser,
    which is the management role on the embedded backend, and runs a table's index expression
    as its owner. The expression calls a SECURITY DEFINER procedure not converted to keys
    (grant_roles); inside it current_user is the management role too, so caller_key() returns
    the management role's own key (no fallback: current_user = session_user), and the owner is
    granted sys:superuser WITH ADMIN OPTION by merely inserting rows into a table of theirs."""
    name, password = new_user()
    table, ran, act, indexed = unique("t"), unique("t"), unique("f"), unique("f")
    with proxy.connect(name, password) as mallory:
        mallory.execute(f"CREATE TABLE public.{ran} (session_user_was text)")
        create = f"""CREATE FUNCTION public.{act}() RETURNS void LANGUAGE plpgsql AS $$ BEGIN
            INSERT INTO public.{ran} VALUES (session_user);
            BEGIN
                CALL shiftguard.grant_roles('{{"roles": ["sys:superuser"], "admin": true,
                                              "grantees": [{{"kind": "user", "name": "{name}"}}]}}');
            EXCEPTION WHEN OTHERS THEN NULL;
            END; END $$"""
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a SQL function of one expression"):
            mallory.execute(create)
        mallory.execute(f"CREATE TABLE public.{table} (a int)")
        mallory.execute(f"ALTER TABLE public.{table} SET (autovacuum_analyze_threshold = 0, "
                        "autovacuum_analyze_scale_factor = 0)")
        # the functions and the index that calls them, made before shiftguard refused them
        made_before(postgres, name, create,
                    f"""CREATE FUNCTION public.{indexed}(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN
            IF $1 = 1 AND current_user <> session_user THEN PERFORM public.{act}(); END IF; RETURN $1; END $$""",
                    f"CREATE INDEX ON public.{table} (public.{indexed}(a))")
        with postgres.connect() as direct:  # autovacuum looks every second, not every minute
            direct.execute("ALTER SYSTEM SET autovacuum_naptime = 1")
            direct.execute("SELECT pg_reload_conf()")
        try:
            mallory.execute(f"INSERT INTO public.{table} SELECT generate_series(1, 200)")
            if not wait_for(lambda: mallory.execute(f"SELECT count(*) FROM public.{ran}").fetchone()[0], timeout=150):
                pytest.skip("autovacuum did not analyze the table in time")
        finally:
            with postgres.connect() as direct:
                direct.execute("ALTER SYSTEM RESET autovacuum_naptime")
                direct.execute("SELECT pg_reload_conf()")
    with proxy.connect() as admin:
        held = admin.execute("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                             "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (name,)).fetchall()
    assert ("sys:superuser",) not in held


def test_a_schema_named_like_another_user_is_refused_in_an_admins_analyze(proxy, new_user, postgres):
    """require_own_schema_name (the event trigger's check that nobody makes a schema named like
    another user, which would come first on that user's search_path) lets it pass when
    session_user is trusted: a user with CREATE on the database makes, from an index expression
    run by an admin's ANALYZE (or autovacuum's, session_user the management role), a schema
    named like a victim, and the victim's unqualified names read the user's tables (or call
    their functions, as the victim)."""
    (name, password), (victim, victim_password) = new_user(), new_user()
    table = unique("t")
    with proxy.connect() as admin:
        admin.execute(f"GRANT CREATE ON DATABASE dev TO {name}")
        admin.execute(f"CREATE TABLE public.{table} (v text)")
        admin.execute(f"INSERT INTO public.{table} VALUES ('the real one')")
        admin.execute(f"GRANT SELECT ON public.{table} TO {victim}")
    with proxy.connect(name, password) as mallory:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="named like another user"):
            mallory.execute(f"CREATE SCHEMA {victim}")
    _during_admins_analyze(proxy, postgres, name, password, f"""
        CREATE SCHEMA {victim};
        CREATE TABLE {victim}.{table} (v text);
        INSERT INTO {victim}.{table} VALUES ('the user''s');
        GRANT USAGE ON SCHEMA {victim} TO PUBLIC;
        GRANT SELECT ON {victim}.{table} TO PUBLIC;""")
    try:
        with proxy.connect(victim, victim_password) as conn:
            assert conn.execute(f"SELECT v FROM {table}").fetchall() == [("the real one",)]
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE public.{table}")
