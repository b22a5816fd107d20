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


def test_dropping_several_when_one_takes_another_along(proxy, world):
    """DROP TABLE a, b CASCADE where dropping a drops b (a child table), as PostgreSQL does it:
    b is gone without a word. Every object is checked before any is dropped."""
    n = world
    t = n["t"]
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {t}_a (x int)")
        owner.execute(f"CREATE TABLE {t}_b () INHERITS ({t}_a)")
        owner.execute(f"CREATE VIEW {t}_v1 AS SELECT * FROM {t}")
        owner.execute(f"CREATE VIEW {t}_v2 AS SELECT * FROM {t}_v1")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            owner.execute(f"DROP TABLE {t}_a, {t}_b")  # RESTRICT: dropped in PostgreSQL's order, then it fails
        assert owner.execute(f"DROP TABLE {t}_a, {t}_b CASCADE").statusmessage == "DROP TABLE"
        assert owner.execute(f"DROP VIEW {t}_v1, {t}_v2 CASCADE").statusmessage == "DROP VIEW"
        assert owner.execute(f"DROP TABLE IF EXISTS {t}_a, {t}_b CASCADE").statusmessage == "DROP TABLE"
    for name in (f"{t}_a", f"{t}_b", f"{t}_v1", f"{t}_v2"):
        assert not exists(proxy, name)
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"CREATE TEMP TABLE {t}_mine (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"must be owner of relation {t}"):
            bob.execute(f"DROP TABLE {t}_mine, {t} CASCADE")
        assert bob.execute(f"SELECT count(*) FROM {t}_mine").fetchone() == (0,)
    assert exists(proxy, t)


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
            bob.execute("CALL shiftguard.run_or_permit('ALTER DEFAULT PRIVILEGES', 'SELECT 1', ARRAY[]::oid[], %s, 'public')",
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


CREATE_PERMISSIONS = "CREATE TABLE, CREATE OR REPLACE VIEW, CREATE OR REPLACE FUNCTION, CREATE OR REPLACE PROCEDURE"


def creations(schema: str, t: str) -> list[tuple[str, str]]:
    """One statement per CREATE permission, with PostgreSQL's command tag."""
    return [(f"CREATE TABLE {schema}.{t}_t (a int PRIMARY KEY, b text DEFAULT 'x')", "CREATE TABLE"),
            (f"CREATE VIEW {schema}.{t}_v AS SELECT 1 AS one", "CREATE VIEW"),
            (f"CREATE FUNCTION {schema}.{t}_f() RETURNS int LANGUAGE sql AS $$SELECT 1$$", "CREATE FUNCTION"),
            (f"CREATE PROCEDURE {schema}.{t}_p() LANGUAGE plpgsql AS $$BEGIN NULL; END$$", "CREATE PROCEDURE")]


def may_create(conn, schema: str) -> bool:
    return conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,)).fetchone()[0]


@pytest.fixture
def lending(proxy, world):
    """world, plus a schema of the admin's where bob has USAGE only."""
    n = world
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {n['s']}")
        admin.execute(f"GRANT USAGE ON SCHEMA {n['s']} TO {n['bob']}, {n['carol']}")
    return n


def grant_create_permissions(proxy, n, user: str = "bob") -> None:
    with proxy.connect() as admin:
        admin.execute(f"GRANT {CREATE_PERMISSIONS} TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n[user]}")


def test_create_permissions_lend_create_on_the_schema(proxy, lending):
    """CREATE TABLE / VIEW / FUNCTION / PROCEDURE in a schema without CREATE on it: refused, then
    allowed by the system permissions; the objects are the creator's, and no CREATE is left
    behind, whether the statement succeeded or failed."""
    n = lending
    s, t = n["s"], n["t"]
    with proxy.connect(n["bob"], PASSWORD) as bob:
        for statement, _ in creations(s, t):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"schema {s}"):
                bob.execute(statement)
    grant_create_permissions(proxy, n)
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert [bob.execute(statement).statusmessage for statement, _ in creations(s, t)] == \
            [tag for _, tag in creations(s, t)]
        assert not may_create(bob, s)
        bob.execute(f"INSERT INTO {s}.{t}_t (a) VALUES (1)")
        assert bob.execute(f"SELECT b FROM {s}.{t}_t").fetchall() == [("x",)]
        assert bob.execute(f"SELECT * FROM {s}.{t}_v").fetchall() == [(1,)]
        assert bob.execute(f"SELECT {s}.{t}_f()").fetchone() == (1,)
        assert bob.execute(f"CALL {s}.{t}_p()").statusmessage == "CALL"
        # Unqualified: the first schema of the search_path; OR REPLACE of his own objects.
        bob.execute(f"SET search_path = {s}, public")
        assert bob.execute(f"CREATE TABLE {t}_u (a int)").statusmessage == "CREATE TABLE"
        assert bob.execute(f"CREATE OR REPLACE VIEW {t}_v AS SELECT 1 AS one, 2 AS two").statusmessage == "CREATE VIEW"
        assert bob.execute(f"CREATE OR REPLACE FUNCTION {t}_f() RETURNS int LANGUAGE sql AS $$SELECT 2$$"
                           ).statusmessage == "CREATE FUNCTION"
        assert bob.execute(f"SELECT {t}_f()").fetchone() == (2,)
        assert bob.execute("SHOW search_path").fetchone() == (f"{s}, public",)
        assert not may_create(bob, s)
        # A failing statement inside a transaction: the lent grant goes with the rollback.
        bob.execute("BEGIN")
        bob.execute(f"CREATE TABLE {s}.{t}_in_tx (a int)")
        assert not may_create(bob, s)
        with pytest.raises(psycopg.errors.DuplicateTable):
            bob.execute(f"CREATE TABLE {s}.{t}_t (a int)")
        bob.execute("ROLLBACK")
        assert not may_create(bob, s)
        assert bob.execute("SELECT to_regclass(%s)", (f"{s}.{t}_in_tx",)).fetchone() == (None,)
        # A temporary table needs no permission and is left alone.
        assert bob.execute(f"CREATE TEMP TABLE {t}_tmp (a int)").statusmessage == "CREATE TABLE"
    with proxy.connect() as admin:
        owners = admin.execute(
            "SELECT c.relname::text, c.relowner::regrole::text FROM pg_class c WHERE c.relnamespace = %s::regnamespace "
            "AND c.relkind IN ('r', 'v') UNION ALL SELECT p.proname::text, p.proowner::regrole::text FROM pg_proc p "
            "WHERE p.pronamespace = %s::regnamespace ORDER BY 1", (s, s)).fetchall()
        assert owners == sorted([(f"{t}_f", n["bob"]), (f"{t}_p", n["bob"]), (f"{t}_t", n["bob"]),
                                 (f"{t}_u", n["bob"]), (f"{t}_v", n["bob"])])
        assert admin.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", (n["bob"], s)).fetchone() == (False,)
        # The procedure is its owner's only (the event trigger ran for it as for any other).
        assert admin.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                             (n["carol"], f"{s}.{t}_p()")).fetchone() == (False,)
        assert admin.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                             (n["carol"], f"{s}.{t}_f()")).fetchone() == (True,)


def test_create_permissions_leave_postgresql_checking_the_rest(proxy, lending):
    """Only CREATE on the schema is lent: REFERENCES, ownership for OR REPLACE, the catalogs and
    shiftguard's schema are as before; a CREATE TABLE permission does not create views."""
    n = lending
    s, t = n["s"], n["t"]
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {t}_pk (id int PRIMARY KEY)")
        owner.execute(f"CREATE VIEW {t}_ov AS SELECT 1 AS one")
        owner.execute(f"CREATE FUNCTION {t}_of() RETURNS int LANGUAGE sql AS $$SELECT 1$$")
        owner.execute(f"GRANT SELECT ON {t}_pk TO {n['bob']}")
    with proxy.connect() as admin:
        admin.execute(f"GRANT CREATE TABLE TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"schema {s}"):
            bob.execute(f"CREATE VIEW {s}.{t}_v AS SELECT 1")  # CREATE TABLE does not cover views
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"{t}_pk"):
            bob.execute(f"CREATE TABLE {s}.{t}_fk (a int REFERENCES public.{t}_pk (id))")
        assert not may_create(bob, s)
    grant_create_permissions(proxy, n)
    with proxy.connect(n["bob"], PASSWORD) as bob:
        for statement in (f"CREATE OR REPLACE VIEW public.{t}_ov AS SELECT 2 AS one",
                          f"CREATE OR REPLACE FUNCTION public.{t}_of() RETURNS int LANGUAGE sql AS $$SELECT 2$$"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                bob.execute(statement)
        for schema in ("shiftguard", "pg_catalog", "information_schema"):
            for statement, _ in creations(schema, t):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    bob.execute(statement)
        bob.execute("SET search_path = pg_catalog")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"CREATE TABLE {t}_cat (a int)")
        bob.execute("RESET search_path")
        # What lending does not cover, refused with the reason.
        with proxy.connect(n["owner"], PASSWORD) as owner:
            owner.execute(f"CREATE TABLE {t}_parts (a int) PARTITION BY LIST (a)")
            owner.execute(f"GRANT ALL ON {t}_parts TO {n['bob']}")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="PARTITION OF"):
            bob.execute(f"CREATE TABLE {s}.{t}_part PARTITION OF public.{t}_parts FOR VALUES IN (1)")
        # A backslash reads as the session reads it (Redshift's way: it escapes), lent or not.
        assert bob.execute(f"CREATE VIEW {s}.{t}_bs AS SELECT 'it\\'s' AS x").statusmessage == "CREATE VIEW"
        assert bob.execute(f"SELECT x FROM {s}.{t}_bs").fetchone() == ("it's",)
        # CREATE TABLE AS runs a query while it creates: not covered (PostgreSQL's own check).
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"schema {s}"):
            bob.execute(f"CREATE TABLE {s}.{t}_ctas AS SELECT 1 AS a")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"schema {s}"):
            bob.execute(f"SELECT 1 AS a INTO {s}.{t}_into")
        for schema in (s, "shiftguard", "pg_catalog"):
            assert not may_create(bob, schema)
    with proxy.connect() as admin:
        assert admin.execute("SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace",
                             (s,)).fetchone() == (1,)  # the view
        assert admin.execute("SELECT count(*) FROM shiftguard_rows.create_lendings").fetchone() == (0,)


def test_create_permissions_without_the_backslash_reading(proxy, lending):
    """A user who has CREATE on the schema runs exactly as before: Redshift's reading of '\\'
    (standard_conforming_strings off) included."""
    n = lending
    t = n["t"]
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE VIEW {t}_bs AS SELECT 'it\\'s' AS x")
        assert owner.execute(f"SELECT x FROM {t}_bs").fetchone() == ("it's",)


def test_create_permissions_through_the_extended_protocol_and_the_dialect(proxy, lending):
    """Prepared (Parse/Bind/Execute) CREATEs, and Redshift's CREATE TABLE with DISTKEY/SORTKEY."""
    import asyncio

    import asyncpg
    n = lending
    s, t = n["s"], n["t"]
    grant_create_permissions(proxy, n)
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert bob.execute("SELECT %s::int", (7,)).fetchone() == (7,)
        assert bob.execute(f"CREATE TABLE {s}.{t}_x (a int)", prepare=True).statusmessage == "CREATE TABLE"
        assert bob.execute(f"CREATE TABLE {s}.{t}_rs (a int, b varchar(10)) DISTKEY(a) SORTKEY(b)"
                           ).statusmessage == "CREATE TABLE"
        bob.execute(f"SET search_path = {s}")  # pg_table_def shows the search_path's tables, as Redshift's
        assert bob.execute("SELECT \"column\", distkey, sortkey FROM pg_table_def WHERE schemaname = %s "
                           "AND tablename = %s ORDER BY 1", (s, f"{t}_rs")).fetchall() == [("a", True, 0), ("b", False, 1)]
        assert not may_create(bob, s)

    async def through_asyncpg():
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=n["bob"], password=PASSWORD,
                                     database="dev", ssl="disable", timeout=10)
        try:
            statement = await conn.prepare(f"CREATE FUNCTION {s}.{t}_af(x int) RETURNS int LANGUAGE sql AS $$SELECT x$$")
            await statement.fetch()
            tag = statement.get_statusmsg()
            value = await conn.fetchval(f"SELECT {s}.{t}_af($1)", 5)
            return tag, value, await conn.fetchval("SELECT has_schema_privilege($1, 'CREATE')", s)
        finally:
            await conn.close()
    assert asyncio.run(through_asyncpg()) == ("CREATE FUNCTION", 5, False)
    with proxy.connect() as admin:
        assert admin.execute("SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace AND relkind = 'r' "
                             "AND relowner = %s::regrole", (s, n["bob"])).fetchone() == (2,)


def test_create_permissions_in_concurrent_transactions(proxy, lending):
    """Two holders lending CREATE on one schema at once: the second waits for the first's
    transaction, then succeeds (no "tuple concurrently updated")."""
    import threading
    n = lending
    s, t = n["s"], n["t"]
    grant_create_permissions(proxy, n)
    grant_create_permissions(proxy, n, "carol")
    outcome = []
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute("BEGIN")
        bob.execute(f"CREATE TABLE {s}.{t}_one (a int)")

        def carol_creates():
            try:
                with proxy.connect(n["carol"], PASSWORD) as carol:
                    outcome.append(carol.execute(f"CREATE TABLE {s}.{t}_two (a int)").statusmessage)
            except psycopg.Error as exc:
                outcome.append(repr(exc))
        thread = threading.Thread(target=carol_creates)
        thread.start()
        thread.join(1.0)
        assert outcome == []  # waiting for bob's transaction
        bob.execute("COMMIT")
        thread.join(20)
    assert outcome == ["CREATE TABLE"]
    with proxy.connect() as admin:
        for user in ("bob", "carol"):
            assert admin.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", (n[user], s)).fetchone() == (False,)


def vacuum_count(proxy, table: str) -> int:
    with proxy.connect() as admin:
        return admin.execute("SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = %s::regclass",
                             (table,)).fetchone()[0]


REDSHIFT_VACUUMS = ["VACUUM {t}", "VACUUM FULL {t}", "VACUUM SORT ONLY {t}", "VACUUM DELETE ONLY {t} TO 75 PERCENT",
                    "VACUUM REINDEX {t}", "VACUUM RECLUSTER {t} BOOST", "vacuum {t} to 100 percent boost"]


def test_vacuum_redshift_forms_and_who_may(proxy, world):
    """Redshift's VACUUM forms: the owner may (and the table is vacuumed shortly after), a
    non-owner gets Redshift's error (PostgreSQL only warns), a holder of VACUUM may."""
    n = world
    t = n["t"]
    before = vacuum_count(proxy, t)
    with proxy.connect(n["owner"], PASSWORD) as owner:
        for form in REDSHIFT_VACUUMS + ["VACUUM", "VACUUM DELETE ONLY TO 90 PERCENT BOOST"]:
            assert owner.execute(form.format(t=t)).statusmessage == "VACUUM"
        with pytest.raises(psycopg.errors.UndefinedTable):
            owner.execute(f"VACUUM {t}_missing")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            owner.execute(f"VACUUM {t} TO 101 PERCENT")
        # not inside a transaction block, nor after another statement of the same Query
        for setup in ("BEGIN", None):
            if setup:
                owner.execute(setup)
            with pytest.raises(psycopg.errors.ActiveSqlTransaction,
                               match="^VACUUM cannot run inside a transaction block$"):
                owner.execute(f"VACUUM DELETE ONLY {t}" if setup else f"SELECT 1; VACUUM DELETE ONLY {t}")
            owner.rollback()
        assert owner.execute(f"VACUUM {t}", prepare=True).statusmessage == "VACUUM"  # extended protocol
    assert wait_for(lambda: vacuum_count(proxy, t) > before, timeout=10)
    with proxy.connect(n["bob"], PASSWORD) as bob:
        for form in REDSHIFT_VACUUMS:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {t}"):
                bob.execute(form.format(t=t))
    with proxy.connect() as admin:
        admin.execute(f"GRANT VACUUM TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
    before = vacuum_count(proxy, t)
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert bob.execute(f"VACUUM SORT ONLY {t} TO 80 PERCENT BOOST").statusmessage == "VACUUM"
        for table in ("shiftguard_rows.users", "pg_catalog.pg_class"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bob.execute(f"VACUUM {table}")
    assert wait_for(lambda: vacuum_count(proxy, t) > before, timeout=10)
    with proxy.connect() as admin:
        assert admin.execute("SELECT count(*) FROM shiftguard_rows.vacuum_requests").fetchone() == (0,)


def test_a_loop_of_vacuum_requests_queues_each_table_once(proxy, new_user):
    """A user's loop asking for VACUUMs of their table (one statement, a thousand calls) queues
    one: it queued a thousand, which the proxy then ran one after the other."""
    user, password = new_user()
    table = unique("t")
    with proxy.connect(user, password) as conn:
        conn.execute(f"CREATE TABLE public.{table} (a int)")
        before = vacuum_count(proxy, f"public.{table}")
        conn.execute(f"SELECT shiftguard.vacuum_request('public.{table}'::regclass, '{table}') "
                     "FROM generate_series(1, 1000)")
        with proxy.connect() as admin:  # (the proxy may have taken it already)
            assert admin.execute("SELECT count(*) FROM shiftguard_rows.vacuum_requests WHERE relation = %s::regclass",
                                 (f"public.{table}",)).fetchone()[0] <= 1
        assert wait_for(lambda: vacuum_count(proxy, f"public.{table}") > before, timeout=10)
        conn.execute(f"DROP TABLE public.{table}")


def test_a_refused_signed_default_privileges_call_cannot_be_reused(proxy, world):
    """The proxy signs users, schemas and statement as one: the refused call's text (readable in
    pg_stat_activity) cannot be replayed with other users or schemas."""
    import json
    import re
    n = world
    with proxy.connect() as admin:
        admin.execute(f"GRANT ALTER DEFAULT PRIVILEGES TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['bob']}")
    refused = (f"ALTER DEFAULT PRIVILEGES FOR USER shiftguard_views IN SCHEMA shiftguard "
               f"GRANT SELECT ON TABLES TO {n['bob']}")
    with proxy.connect(n["bob"], PASSWORD) as first, proxy.connect(n["bob"], PASSWORD) as second:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            first.execute(refused)
        pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            first.execute(refused)
        seen = second.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]
        literal = re.search(r"E'(\{.*\})'::pg_catalog\.jsonb, pg_catalog\.current_setting\('search_path'\)\)\s*$",
                            seen, re.S).group(1)  # an E'...' string
        signed = json.loads(literal.replace("''", "'").replace("\\\\", "\\"))
        spec = json.loads(signed["spec"])
        spec["users"], spec["schemas"] = [n["owner"]], []
        for forged in ({**signed, "spec": json.dumps(spec)}, {**spec, "signature": signed["signature"]}):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not one shiftguard wrote"):
                second.execute("SELECT shiftguard.permitted('ALTER DEFAULT PRIVILEGES', ARRAY[]::oid[], %s::jsonb)",
                               (json.dumps(forged),))
    with proxy.connect() as admin:
        assert admin.execute("SELECT count(*) FROM pg_default_acl WHERE defaclnamespace = 'shiftguard'::regnamespace"
                             ).fetchone() == (0,)


def test_drop_defaults_follow_the_new_tables_owner(proxy, world):
    """A table a SECURITY DEFINER stored procedure creates is its owner's: the owner's DROP
    defaults reach it, not the defaults of whoever called the procedure. (Users write PL/pgSQL
    in stored procedures, as on Redshift: PL/pgSQL functions are refused to them.)"""
    n = world
    made = f"{n['t']}_made"
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"CREATE PROCEDURE {n['t']}_make() LANGUAGE plpgsql SECURITY DEFINER AS "
                      f"$$BEGIN CREATE TABLE {made} (a int); END$$")
        owner.execute(f"GRANT EXECUTE ON PROCEDURE {n['t']}_make() TO {n['bob']}")
        owner.execute(f"ALTER DEFAULT PRIVILEGES GRANT DROP ON TABLES TO {n['carol']}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"ALTER DEFAULT PRIVILEGES GRANT DROP ON TABLES TO {n['bob']}")
        bob.execute(f"CALL {n['t']}_make()")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(f"DROP TABLE {made}")
        bob.execute(f"ALTER DEFAULT PRIVILEGES REVOKE DROP ON TABLES FROM {n['bob']}")
    with proxy.connect(n["carol"], PASSWORD) as carol:
        assert carol.execute(f"DROP TABLE {made}").statusmessage == "DROP TABLE"
    with proxy.connect(n["owner"], PASSWORD) as owner:
        owner.execute(f"ALTER DEFAULT PRIVILEGES REVOKE DROP ON TABLES FROM {n['carol']}")


def test_no_grant_on_an_object_yet_to_exist_and_no_reading_everyones_grants(proxy, world):
    """The grant procedure is callable by anyone: an OID with no object behind it is refused (a
    table created later under that OID would inherit the grant). The Redshift-only grants
    themselves are read through the SVV views only, which show each user what it may see."""
    n = world
    spec = '{"object_type": "table", "privileges": ["DROP"], "grantees": ["%s"], "is_grant": true, ' \
           '"grant_option": true}' % n["bob"]
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.UndefinedObject, match="does not exist"):
            bob.execute("SELECT shiftguard.redshift_grant(%s::jsonb, "
                        "ARRAY[(SELECT max(oid)::int8 + 1000 FROM pg_class)::oid])", (spec,))
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute("SELECT * FROM shiftguard.redshift_acl")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute("SELECT * FROM shiftguard_rows.default_object_privileges")
