"""Redshift's object privileges that PostgreSQL has no bit for (DROP, ALTER), the DROP system
permissions, procedures that only their owner may run, svv_default_privileges: checked by doing
what they allow, as the users they were granted to."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique, wait_for

PASSWORD = "Secret123"


@pytest.fixture
def world(proxy, postgres):
    n = {key: unique(key) for key in ("t", "owner", "bob", "carol", "g", "r", "s")}
    with proxy.connect() as admin:
        for user in ("owner", "bob", "carol"):
            admin.execute(f"CREATE USER {n[user]} PASSWORD '{PASSWORD}'")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {n['owner']}")
        admin.execute(f"CREATE GROUP {n['g']} WITH USER {n['carol']}")
        admin.execute(f"CREATE ROLE {n['r']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {n['t']} (a int, b int)")
        owner.execute(f"INSERT INTO {n['t']} VALUES (1, 2)")
    yield n
    with postgres.connect() as direct:
        for user in ("owner", "bob", "carol"):
            direct.execute(f"DROP OWNED BY {n[user]} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {n['s']} CASCADE")
        admin.execute(f"DROP ROLE {n['r']} FORCE")
        admin.execute(f"DROP GROUP {n['g']}")
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {n['owner']}")
        admin.execute(f"DROP USER {n['owner']}, {n['bob']}, {n['carol']}")


def exists(proxy, table: str) -> bool:
    with proxy.connect() as admin:
        return admin.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def test_drop_privilege_lets_a_non_owner_drop(proxy, world):
    n = world
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"must be owner of relation {n['t']}"):
            bob.execute(f"DROP TABLE {n['t']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT DROP ON TABLE {n['t']} TO {n['bob']}")
    with proxy.connect() as admin:
        assert admin.execute("SELECT privilege_type, identity_type FROM svv_relation_privileges "
                             "WHERE relation_name = %s AND identity_name = %s", (n["t"], n["bob"])).fetchall() == [
            ("DROP", "user")]
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert bob.execute(f"DROP TABLE {n['t']}").statusmessage == "DROP TABLE"
    assert not exists(proxy, n["t"])


def test_grants_through_groups_roles_all_and_revoke(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT DROP ON {n['t']} TO GROUP {n['g']}")
        owner.execute(f"REVOKE DROP ON {n['t']} FROM GROUP {n['g']}")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            carol.execute(f"DROP TABLE {n['t']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT ALL ON {n['t']} TO GROUP {n['g']}")  # Redshift's ALL includes DROP
    with proxy.connect(n["carol"], PASSWORD) as carol:
        assert carol.execute(f"SELECT a FROM {n['t']}").fetchone() == (1,)
        carol.execute(f"DROP TABLE {n['t']}")
    assert not exists(proxy, n["t"])


def test_drop_table_system_permission(proxy, world):
    n = world
    with proxy.connect() as admin:
        admin.execute(f"GRANT DROP TABLE TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"DROP TABLE {n['t']}")
    assert not exists(proxy, n["t"])


def test_alter_privilege_lets_a_non_owner_rename(proxy, world):
    n = world
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
            bob.execute(f"ALTER TABLE {n['t']} RENAME COLUMN a TO c")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT, ALTER ON {n['t']} TO {n['bob']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"ALTER TABLE {n['t']} RENAME COLUMN a TO c")
        assert bob.execute(f"SELECT c FROM {n['t']}").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"ALTER TABLE {n['t']} ADD COLUMN d int")  # other ALTERs stay the owner's
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"DROP TABLE {n['t']}")  # ALTER is not DROP


def test_who_may_grant_redshift_privileges(proxy, world):
    n = world
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {n['t']}"):
            bob.execute(f"GRANT DROP ON {n['t']} TO {n['carol']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT DROP ON {n['t']} TO {n['bob']} WITH GRANT OPTION")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"GRANT DROP ON {n['t']} TO {n['carol']}")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        carol.execute(f"DROP TABLE {n['t']}")
    assert not exists(proxy, n["t"])


def test_schema_privileges(proxy, world):
    n = world
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {n['s']}")
        admin.execute(f"GRANT ALTER, DROP ON SCHEMA {n['s']} TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
        assert sorted(admin.execute("SELECT privilege_type FROM svv_schema_privileges WHERE namespace_name = %s "
                                    "AND identity_name = %s", (n["s"], n["r"])).fetchall()) == [("ALTER",), ("DROP",)]
    with proxy.connect(n["carol"], PASSWORD) as carol:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"must be owner of schema {n['s']}"):
            carol.execute(f"DROP SCHEMA {n['s']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"DROP SCHEMA {n['s']}")
    with proxy.connect() as admin:
        assert admin.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (n["s"],)).fetchone() == (0,)


@pytest.mark.parametrize("statement, error, fragment", [
    ("DROP TABLE no_such_table_here", psycopg.errors.UndefinedTable, 'table "no_such_table_here" does not exist'),
    ("DROP VIEW {t}", psycopg.errors.WrongObjectType, "is not a view"),
    ("DROP SCHEMA no_such_schema_here", psycopg.errors.InvalidSchemaName, "does not exist"),
    ("GRANT DROP ON no_such_table_here TO {bob}", psycopg.errors.UndefinedTable, "does not exist"),
    ("GRANT DROP (a) ON {t} TO {bob}", psycopg.errors.InvalidGrantOperation, "columns"),
    ("GRANT ALTER ON DATABASE no_such_db TO {bob}", psycopg.errors.InvalidCatalogName, "does not exist"),
])
def test_errors(proxy, world, statement, error, fragment):
    with proxy.connect(world["owner"], PASSWORD) as owner:
        with pytest.raises(error, match=fragment):
            owner.execute(statement.format(**world))


def test_drop_if_exists_notice_and_rollback(proxy, world):
    n = world
    notices = []
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        owner.execute("DROP TABLE IF EXISTS no_such_table_here")
        owner.execute("BEGIN")
        owner.execute(f"DROP TABLE {n['t']}")
        owner.execute("ROLLBACK")
    assert notices == ['table "no_such_table_here" does not exist, skipping']
    assert exists(proxy, n["t"])


def test_procedures_are_owner_only_functions_public(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE PROCEDURE {n['t']}_p() LANGUAGE sql AS $$SELECT 1$$")
        owner.execute(f"CREATE FUNCTION {n['t']}_f() RETURNS int LANGUAGE sql AS $$SELECT 1$$")
        owner.execute(f"CALL {n['t']}_p()")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"CALL {n['t']}_p()")
        assert bob.execute(f"SELECT {n['t']}_f()").fetchone() == (1,)
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT EXECUTE ON PROCEDURE {n['t']}_p() TO {n['bob']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"CALL {n['t']}_p()")


def test_svv_default_privileges(proxy, world):
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO GROUP {n['g']}")
        rows = owner.execute("SELECT schema_name, object_type, owner_name, privilege_type, grantee_type, grantee_name "
                             "FROM svv_default_privileges WHERE owner_name = %s", (n["owner"],)).fetchall()
        assert rows == [(None, "RELATION", n["owner"], "SELECT", "group", n["g"])]
        owner.execute(f"ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM GROUP {n['g']}")


ARN = "arn:aws:iam::123456789012:role/Loader"


def test_assumerole_grants(proxy, world):
    n = world
    check = "SELECT shiftguard.require_assumerole(%s, %s)"  # what COPY and UNLOAD ask
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(check, (ARN, "COPY"))  # PUBLIC holds ASSUMEROLE on every role until revoked
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only a superuser"):
            bob.execute(f"GRANT ASSUMEROLE ON '{ARN}' TO {n['carol']} FOR COPY")
    with proxy.connect() as admin:
        admin.execute("REVOKE ASSUMEROLE ON ALL FROM PUBLIC FOR ALL")
        try:
            admin.execute(f"GRANT ASSUMEROLE ON '{ARN}' TO {n['bob']}, GROUP {n['g']} FOR COPY, UNLOAD")
            with proxy.connect(n["bob"], PASSWORD) as bob:
                bob.execute(check, (ARN, "COPY"))
                bob.execute(check, (ARN, "UNLOAD"))
                with pytest.raises(psycopg.errors.InsufficientPrivilege,
                                   match=f'User {n["bob"]} does not have ASSUMEROLE permission on IAM role '
                                         f'"arn:aws:iam::123456789012:role/Other" for COPY'):
                    bob.execute(check, ("arn:aws:iam::123456789012:role/Other", "COPY"))
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    bob.execute(check, (ARN, "EXTERNAL FUNCTION"))
                assert sorted(bob.execute("SELECT command_type, identity_type FROM svv_iam_privileges "
                                          "WHERE iam_arn = %s", (ARN,)).fetchall()) == [("COPY", "user"),
                                                                                        ("UNLOAD", "user")]
            with proxy.connect(n["carol"], PASSWORD) as carol:  # through her group
                carol.execute(check, (ARN, "UNLOAD"))
            with proxy.connect(n["owner"], PASSWORD) as owner:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    owner.execute(check, (ARN, "COPY"))
            admin.execute(f"REVOKE ASSUMEROLE ON '{ARN}' FROM {n['bob']}, GROUP {n['g']} FOR COPY, UNLOAD")
        finally:
            admin.execute("GRANT ASSUMEROLE ON ALL TO PUBLIC FOR ALL")


def test_system_permissions_for_truncate_analyze_drop_routines_create_schema(proxy, world):
    """Each system permission lets a role's members do what it names on objects they do not
    own; without it PostgreSQL's own rules answer."""
    n = world
    t, schema = n["t"], n["s"]
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE FUNCTION {t}_f() RETURNS int LANGUAGE sql AS $$SELECT 1$$")
        owner.execute(f"CREATE PROCEDURE {t}_p() LANGUAGE sql AS $$SELECT 1$$")
    statements = [f"TRUNCATE {t}", f"ANALYZE {t}", f"DROP FUNCTION {t}_f()", f"DROP PROCEDURE {t}_p",
                  f"CREATE SCHEMA {schema}"]
    with proxy.connect(n["bob"], PASSWORD) as bob:
        for statement in statements[:1] + statements[2:]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bob.execute(statement)
    with proxy.connect() as admin:
        admin.execute(f"GRANT TRUNCATE TABLE, ANALYZE, DROP FUNCTION, DROP PROCEDURE, CREATE SCHEMA TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        tags = [bob.execute(statement).statusmessage for statement in statements]
        assert tags == ["TRUNCATE TABLE", "ANALYZE", "DROP FUNCTION", "DROP PROCEDURE", "CREATE SCHEMA"]
        bob.execute(f"CREATE TABLE {schema}.mine (a int)")  # the schema is his
        bob.execute(f"DROP FUNCTION IF EXISTS {t}_gone()")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            bob.execute(f"DROP FUNCTION {t}_gone()")
    with proxy.connect() as admin:
        assert admin.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        assert admin.execute("SELECT count(*) FROM pg_proc WHERE proname IN (%s, %s)",
                             (f"{t}_f", f"{t}_p")).fetchone() == (0,)
        assert admin.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                             (schema,)).fetchone() == (n["bob"],)


def test_cancel_and_access_catalog(proxy, world):
    """CANCEL pid: one's own sessions, or anyone's with the CANCEL permission. ACCESS CATALOG
    shows every row of the privilege views."""
    import threading
    n = world
    with proxy.connect(n["owner"], PASSWORD) as sleeper:
        pid = sleeper.execute("SELECT pg_backend_pid()").fetchone()[0]
        outcome = []

        def sleep():
            try:
                sleeper.execute("SELECT pg_sleep(30)")
                outcome.append("finished")
            except psycopg.errors.QueryCanceled:
                outcome.append("cancelled")
        thread = threading.Thread(target=sleep)
        thread.start()
        try:
            wait_for(lambda: proxy_sees_running(proxy, pid), timeout=5)
            with proxy.connect(n["bob"], PASSWORD) as bob:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"cancel process {pid}"):
                    bob.execute(f"CANCEL {pid}")
            with proxy.connect() as admin:
                admin.execute(f"GRANT CANCEL TO ROLE {n['r']}")
                admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
            with proxy.connect(n["bob"], PASSWORD) as bob:
                assert bob.execute(f"CANCEL {pid} 'taking too long'").statusmessage == "CANCEL"
        finally:
            thread.join(35)
        assert outcome == ["cancelled"]
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT SELECT ON {n['t']} TO {n['bob']}")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="does not exist"):
            carol.execute("CANCEL 1")
        seen = carol.execute("SELECT count(*) FROM svv_relation_privileges WHERE relation_name = %s", (n["t"],))
        assert seen.fetchone() == (0,)  # bob's grant is not hers to see
    with proxy.connect() as admin:
        admin.execute(f"GRANT ACCESS CATALOG TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['carol']}")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        assert carol.execute("SELECT identity_name FROM svv_relation_privileges WHERE relation_name = %s",
                             (n["t"],)).fetchall() == [(n["bob"],)]


def proxy_sees_running(proxy, pid: int) -> bool:
    with proxy.connect() as admin:
        return admin.execute("SELECT state = 'active' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (True,)


def test_alter_default_privileges_for_another_user(proxy, world):
    """FOR USER another user: a superuser, or a holder of the ALTER DEFAULT PRIVILEGES
    permission; the defaults then reach that user's new tables."""
    n = world
    statement = f"ALTER DEFAULT PRIVILEGES FOR USER {n['owner']} GRANT SELECT ON TABLES TO {n['carol']}"
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(statement)
    with proxy.connect() as admin:
        admin.execute(f"GRANT ALTER DEFAULT PRIVILEGES TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert bob.execute(statement).statusmessage == "ALTER DEFAULT PRIVILEGES"
        for refused, why in ((f"ALTER DEFAULT PRIVILEGES FOR USER shiftguard_views GRANT SELECT ON TABLES TO "
                              f"{n['bob']}", "Redshift users only"),
                             (f"ALTER DEFAULT PRIVILEGES FOR USER {n['owner']} IN SCHEMA shiftguard "
                              f"GRANT SELECT ON TABLES TO {n['bob']}", "do not reach the catalogs")):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=why):
                bob.execute(refused)
            bob.rollback()
        # The procedure runs only statements the proxy signed.
        forged = ('{"users": [], "schemas": [], "statement": "ALTER USER %s SUPERUSER", "signature": "00"}'
                  % n["bob"])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not one shiftguard wrote"):
            bob.execute("CALL shiftguard.run_or_permit('ALTER DEFAULT PRIVILEGES', 'SELECT 1', ARRAY[]::oid[], %s)",
                        (forged,))
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {n['t']}_new (a int)")
        owner.execute(f"INSERT INTO {n['t']}_new VALUES (7)")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        assert carol.execute(f"SELECT a FROM {n['t']}_new").fetchall() == [(7,)]
    with proxy.connect() as admin:
        assert admin.execute("SELECT privilege_type FROM svv_default_privileges WHERE owner_name = %s "
                             "AND grantee_name = %s", (n["owner"], n["carol"])).fetchall() == [("SELECT",)]


def test_default_drop_privilege_reaches_new_tables(proxy, world):
    """ALTER DEFAULT PRIVILEGES ... GRANT DROP ON TABLES: Redshift's DROP, which PostgreSQL has no
    bit for, on the owner's new tables (in the schema named, or in all)."""
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        assert owner.execute(f"ALTER DEFAULT PRIVILEGES GRANT DROP, SELECT ON TABLES TO {n['bob']}").statusmessage \
            == "ALTER DEFAULT PRIVILEGES"
        owner.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO GROUP {n['g']}")
        rows = owner.execute("SELECT schema_name, privilege_type, grantee_type, grantee_name FROM svv_default_privileges "
                             "WHERE owner_name = %s AND privilege_type IN ('DROP', 'SELECT') ORDER BY 1, 2, 4",
                             (n["owner"],)).fetchall()
        assert rows == [("public", "DROP", "group", n["g"]), ("public", "SELECT", "group", n["g"]),
                        (None, "DROP", "user", n["bob"]), (None, "SELECT", "user", n["bob"])]
        owner.execute(f"CREATE TABLE {n['t']}_b (a int)")
        owner.execute(f"CREATE TABLE {n['t']}_c (a int)")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert bob.execute(f"SELECT count(*) FROM {n['t']}_b").fetchone() == (0,)
        assert bob.execute(f"DROP TABLE {n['t']}_b").statusmessage == "DROP TABLE"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"DROP TABLE {n['t']}")  # created before the defaults
    with proxy.connect(n["carol"], PASSWORD) as carol:  # through the group
        assert carol.execute(f"DROP TABLE {n['t']}_c").statusmessage == "DROP TABLE"
    with proxy.connect(n["bob"], PASSWORD) as bob:  # another user's defaults
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to change default"):
            bob.execute(f"ALTER DEFAULT PRIVILEGES FOR USER {n['owner']} GRANT DROP ON TABLES TO {n['bob']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"ALTER DEFAULT PRIVILEGES REVOKE DROP, SELECT ON TABLES FROM {n['bob']}")
        owner.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM GROUP {n['g']}")
        owner.execute(f"CREATE TABLE {n['t']}_d (a int)")
        assert owner.execute("SELECT count(*) FROM svv_default_privileges WHERE owner_name = %s",
                             (n["owner"],)).fetchone() == (0,)
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"DROP TABLE {n['t']}_d")


def test_a_user_holding_redshift_only_privileges_cannot_be_dropped(proxy, world):
    """As with PostgreSQL's privileges: else a new user of the same name would inherit them."""
    n = world
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"GRANT DROP ON {n['t']} TO {n['bob']}, GROUP {n['g']}")
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.ObjectInUse, match="has a privilege on some object"):
            admin.execute(f"DROP USER {n['bob']}")
        with pytest.raises(psycopg.errors.ObjectInUse, match="has a privilege on some object"):
            admin.execute(f"DROP GROUP {n['g']}")
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"REVOKE DROP ON {n['t']} FROM {n['bob']}, GROUP {n['g']}")
