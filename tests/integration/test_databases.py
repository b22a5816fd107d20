"""Every database of the cluster behaves like the cluster database: one made by CREATE DATABASE
through the proxy, or one that existed before the proxy started, has Redshift's SQL, catalog
views, privileges, RLS and masking; users, groups and the audit logs stay the cluster's; and
DROP DATABASE right after using a database is not refused for the proxy's idle sessions."""

from __future__ import annotations

import psycopg
import pytest
import redshift_connector

from ..conftest import ADMIN, ADMIN_PASSWORD, USER_PASSWORD, unique, wait_for


@pytest.fixture
def database(proxy, postgres):
    """database() -> the name of a database made by CREATE DATABASE through the proxy."""
    made = []

    def make() -> str:
        name = unique("db")
        with proxy.connect() as admin:
            admin.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return name

    yield make
    with postgres.connect() as direct:
        for name in made:
            direct.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def denied(proxy, user: str, dbname: str, sql: str) -> psycopg.Error:
    with proxy.connect(user, USER_PASSWORD, dbname=dbname) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql)
    return caught.value


def test_a_new_database_takes_redshift_ddl_functions_grants_and_catalog_views(proxy, new_user, database):
    before, _ = new_user()
    db = database()
    after = unique("u")
    with proxy.connect(dbname=db) as admin:
        assert admin.execute("SELECT current_database()").fetchone() == (db,)
        admin.execute("CREATE SCHEMA sales")
        admin.execute("CREATE TABLE sales.orders (id INT IDENTITY(1, 1), region VARCHAR(10) ENCODE zstd, "
                      "amount DECIMAL(8, 2)) DISTSTYLE KEY DISTKEY(region) SORTKEY(id)")
        admin.execute("INSERT INTO sales.orders (region, amount) VALUES ('north', 10), ('south', 20)")
        assert admin.execute("SELECT id, region FROM sales.orders ORDER BY id").fetchall() == [(1, "north"),
                                                                                            (2, "south")]
        assert admin.execute("SELECT getdate() <= sysdate + interval '1 second'").fetchone() == (True,)
        assert admin.execute("SELECT json_serialize(array_concat(array(1, 'a'), split_to_array('b,c')))").fetchone() \
            == ('[1,"a","b","c"]',)
        assert admin.execute('SELECT "table", diststyle, sortkey1 FROM svv_table_info WHERE "schema" = '
                             "'sales'").fetchall() == [("orders", "KEY(region)", "id")]
        admin.execute("SET search_path TO sales")  # pg_table_def shows the tables on the search path
        assert admin.execute("SELECT \"column\", distkey, sortkey FROM pg_table_def WHERE schemaname = 'sales' "
                             "AND tablename = 'orders' ORDER BY 1").fetchall() == [
            ("amount", False, 0), ("id", False, 1), ("region", True, 0)]
        admin.execute(f"CREATE USER {after} PASSWORD '{USER_PASSWORD}'")  # made here, the cluster's user
        users = {row[0] for row in admin.execute("SELECT usename FROM pg_user")}
        assert {ADMIN, before, after} <= users
        admin.execute(f"GRANT USAGE ON SCHEMA sales TO {before}, {after}")
        admin.execute(f"GRANT SELECT ON sales.orders TO {before}")
    try:
        with proxy.connect(before, USER_PASSWORD, dbname=db) as conn:
            assert conn.execute("SELECT count(*) FROM sales.orders").fetchone() == (2,)
            assert {row[0] for row in conn.execute("SELECT usename FROM pg_user")} >= {before, after}
        error = denied(proxy, after, db, "SELECT count(*) FROM sales.orders")
        assert error.sqlstate == "42501" and "permission denied" in str(error)
        with proxy.connect(dbname=db) as admin:
            admin.execute(f"GRANT SELECT ON sales.orders TO {after}")
            admin.execute(f"REVOKE SELECT ON sales.orders FROM {before}")
        with proxy.connect(after, USER_PASSWORD, dbname=db) as conn:
            assert conn.execute("SELECT sum(amount) FROM sales.orders").fetchone()[0] == 30
        assert denied(proxy, before, db, "SELECT count(*) FROM sales.orders").sqlstate == "42501"
        with proxy.connect(after, USER_PASSWORD) as conn:  # the user made there logs in to dev too
            assert conn.execute("SELECT current_database()").fetchone() == ("dev",)
        with proxy.connect(dbname=db) as admin:
            admin.execute("DROP SCHEMA sales CASCADE")
            admin.execute(f"DROP USER {after}")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER IF EXISTS {after}")
    with proxy.connect() as admin:
        assert admin.execute("SELECT count(*) FROM pg_user WHERE usename = %s", (after,)).fetchone() == (0,)
        log = admin.execute("SELECT action FROM stl_userlog WHERE username = %s ORDER BY recordtime",
                            (after,)).fetchall()
        assert log == [("create",), ("drop",)]  # the cluster's one user log


def test_users_groups_and_system_permissions_are_the_clusters_wherever_they_are_changed(proxy, new_user, database):
    user, _ = new_user()
    db = database()
    group, role = unique("g"), unique("r")
    with proxy.connect(dbname=db) as admin:
        admin.execute(f"CREATE GROUP {group} WITH USER {user}")
        admin.execute(f"CREATE ROLE {role}")
        admin.execute(f"GRANT CREATE USER TO ROLE {role}")
        admin.execute(f"GRANT ROLE {role} TO {user}")
        admin.execute(f"ALTER USER {user} CONNECTION LIMIT 7")
    try:
        with proxy.connect() as admin:
            assert admin.execute("SELECT usename FROM pg_user JOIN pg_group ON usesysid = ANY(grolist) "
                                 "WHERE groname = %s", (group,)).fetchall() == [(user,)]
            assert admin.execute("SELECT useconnlimit FROM pg_user_info WHERE usename = %s",
                                 (user,)).fetchone() == ("7",)
        made_by_user = unique("u")
        with proxy.connect(user, USER_PASSWORD) as conn:  # its role's system permission, in dev
            conn.execute(f"CREATE USER {made_by_user} PASSWORD DISABLE")
        with proxy.connect(dbname=db) as admin:
            assert admin.execute("SELECT count(*) FROM pg_user WHERE usename = %s",
                                 (made_by_user,)).fetchone() == (1,)
            admin.execute(f"DROP USER {made_by_user}")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP GROUP {group}")
            admin.execute(f"DROP ROLE {role} FORCE")


def test_redshift_connector_in_a_new_database(proxy, new_user, database):
    user, _ = new_user()
    db = database()
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database=db, user=ADMIN,
                                      password=ADMIN_PASSWORD, timeout=20, ssl=False)
    conn.autocommit = True
    try:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE events (id BIGINT IDENTITY(1, 1), name VARCHAR(32)) DISTKEY(name)")
        cursor.execute("INSERT INTO events (name) VALUES (%s), (%s)", ("a", "b"))
        cursor.execute("SELECT id, name FROM events ORDER BY id")
        assert [tuple(row) for row in cursor.fetchall()] == [(1, "a"), (2, "b")]
        cursor.execute("SELECT usename FROM pg_user WHERE usename = %s", (user,))
        assert [tuple(row) for row in cursor.fetchall()] == [(user,)]
        cursor.execute("SELECT trunc(getdate()) = current_date")
        assert cursor.fetchone()[0] is True
        cursor.execute(f"GRANT SELECT ON events TO {user}")
    finally:
        conn.close()
    as_user = redshift_connector.connect(host=proxy.host, port=proxy.port, database=db, user=user,
                                         password=USER_PASSWORD, timeout=20, ssl=False)
    try:
        cursor = as_user.cursor()
        cursor.execute("SELECT count(*) FROM events")
        assert cursor.fetchone()[0] == 2
        with pytest.raises(redshift_connector.ProgrammingError, match="permission denied"):
            cursor.execute("INSERT INTO events (name) VALUES ('c')")
    finally:
        as_user.close()


def test_row_level_security_and_masking_in_a_new_database(proxy, new_user, database):
    user, _ = new_user()
    db = database()
    rls, mask = unique("pol"), unique("mask")
    with proxy.connect(dbname=db) as admin:
        admin.execute("CREATE TABLE cards (region VARCHAR(10), card TEXT)")
        admin.execute("INSERT INTO cards VALUES ('north', '4532993817514842'), ('south', '5243112427642649')")
        admin.execute(f"GRANT SELECT ON cards TO {user}")
        admin.execute(f"CREATE RLS POLICY {rls} WITH (region VARCHAR(10)) USING (region = 'north')")
        admin.execute(f"ATTACH RLS POLICY {rls} ON cards TO {user}")
        admin.execute("ALTER TABLE cards ROW LEVEL SECURITY ON")
        admin.execute(f"CREATE MASKING POLICY {mask} WITH (card VARCHAR(256)) USING ('XXXX' || right(card, 4))")
        admin.execute(f"ATTACH MASKING POLICY {mask} ON cards (card) TO {user}")
        assert admin.execute("SELECT count(*) FROM svv_rls_attached_policy WHERE polname = %s",
                             (rls,)).fetchone() == (1,)

    # In force at once: the proxy read the database's masked tables again before it answered.
    with proxy.connect(user, USER_PASSWORD, dbname=db) as conn:
        assert conn.execute("SELECT region, card FROM cards").fetchall() == [("north", "XXXX4842")]
        with proxy.connect(dbname=db) as admin:
            admin.execute(f"DETACH MASKING POLICY {mask} ON cards (card) FROM {user}")
        assert conn.execute("SELECT region, card FROM cards").fetchall() == [("north", "4532993817514842")]
    with proxy.connect() as admin:  # dev has its own policies: none of these
        assert admin.execute("SELECT count(*) FROM svv_rls_policy WHERE polname = %s", (rls,)).fetchone() == (0,)
        assert admin.execute("SELECT count(*) FROM svv_masking_policy WHERE policy_name = %s",
                             (mask,)).fetchone() == (0,)


def test_drop_database_right_after_using_it(proxy, new_user, database):
    user, _ = new_user()
    db = database()
    with proxy.connect(dbname=db) as admin:
        admin.execute("CREATE TABLE t (a INT)")
        admin.execute(f"GRANT SELECT ON t TO {user}")
    with proxy.connect(user, USER_PASSWORD, dbname=db) as conn:
        conn.execute("SELECT * FROM t")
    with proxy.connect() as admin:  # the two sessions just ended wait in the proxy's pool
        admin.execute(f"DROP DATABASE {db}")
        assert admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (db,)).fetchone() == (0,)


def test_drop_database_is_refused_while_a_user_is_in_it(proxy, database):
    db = database()
    with proxy.connect(dbname=db) as inside:
        inside.execute("SELECT 1")
        with proxy.connect() as admin:
            with pytest.raises(psycopg.errors.ObjectInUse, match=f'database "{db}" is being accessed by other users'):
                admin.execute(f"DROP DATABASE {db}")
    with proxy.connect() as admin:
        admin.execute(f"ALTER DATABASE {db} RENAME TO {db}_renamed")
        admin.execute(f"DROP DATABASE {db}_renamed")


def test_create_database_right_after_a_session_in_its_template(proxy, database):
    with proxy.connect(dbname="template1") as conn:  # the session waits in the proxy's pool
        conn.execute("SELECT 1")
    db = database()  # copies template1, which PostgreSQL refuses while anyone is in it
    with proxy.connect(dbname=db) as conn:
        assert conn.execute("SELECT getdate() IS NOT NULL").fetchone() == (True,)


def test_a_start_upgrades_every_existing_database(make_proxy, postgres):
    """A database made behind the proxy's back (from template0: nothing of shiftguard in it)
    has it all after the next start; one made through CREATE DATABASE before it keeps working."""
    bare = unique("db")
    with postgres.connect() as direct:
        direct.execute(f"CREATE DATABASE {bare} TEMPLATE template0")
    try:
        first = make_proxy()
        with first.connect() as admin:
            assert admin.execute("SELECT getdate() IS NOT NULL").fetchone() == (True,)
        first.stop()
        second = make_proxy()
        user = unique("u")
        with second.connect(dbname=bare) as admin:
            admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
            admin.execute("CREATE TABLE t (id INT IDENTITY(1, 1), v VARCHAR(4)) SORTKEY(id)")
            admin.execute(f"GRANT SELECT ON t TO {user}")
            assert admin.execute("SELECT count(*) FROM pg_user WHERE usename = %s", (user,)).fetchone() == (1,)
        with second.connect(user, USER_PASSWORD, dbname=bare) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        with second.connect() as admin:
            admin.execute(f"DROP DATABASE {bare}")
            admin.execute(f"DROP USER {user}")
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {bare} WITH (FORCE)")


def test_a_start_moves_an_older_installs_tables_out_of_the_schema_users_look_into(make_proxy, postgres, database):
    """Before 2026-12 shiftguard's tables (here, outside the cluster database, foreign tables over
    the cluster database's) were in schema shiftguard, which every user may look into, and a user
    could queue a lock on them. A start moves them to shiftguard_rows, and the database works."""
    db = database()
    with postgres.connect(dbname=db) as direct:
        direct.execute("SET session_replication_role = replica")  # shiftguard's event triggers off
        tables = direct.execute(
            "SELECT c.relname, c.relkind::text FROM pg_class c WHERE c.relnamespace = 'shiftguard_rows'::regnamespace "
            "AND c.relkind IN ('r', 'p', 'f') AND c.relname <> 'bootstrap'").fetchall()
        assert ("users", "f") in tables and ("table_attributes", "r") in tables
        for name, kind in tables:  # as an older version had them
            kind = "FOREIGN TABLE" if kind == "f" else "TABLE"
            direct.execute(f'ALTER {kind} shiftguard_rows."{name}" SET SCHEMA shiftguard')
            if kind == "FOREIGN TABLE":
                direct.execute(f"ALTER FOREIGN TABLE shiftguard.\"{name}\" OPTIONS (SET schema_name 'shiftguard')")
        direct.execute("UPDATE shiftguard.settings SET value = 'older' WHERE name = 'installed'")
        # (an older install's event triggers name the tables where they were; these cannot)
        triggers = [r[0] for r in direct.execute("SELECT evtname FROM pg_event_trigger").fetchall()]
        for name in triggers:
            direct.execute(f"ALTER EVENT TRIGGER {name} DISABLE")
    proxy = make_proxy()
    with postgres.connect(dbname=db) as direct:
        assert direct.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'shiftguard'::regnamespace "
                              "AND relkind IN ('r', 'p', 'f')").fetchone() == (0,)
        assert sorted(direct.execute(
            "SELECT c.relname, c.relkind::text FROM pg_class c WHERE c.relnamespace = 'shiftguard_rows'::regnamespace "
            "AND c.relkind IN ('r', 'p', 'f') AND c.relname <> 'bootstrap'").fetchall()) == sorted(tables)
        assert direct.execute("SELECT count(*) FROM pg_event_trigger WHERE evtenabled = 'O'").fetchone() == (len(triggers),)
    user = unique("u")
    with proxy.connect(dbname=db) as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
        admin.execute("CREATE TABLE t (id INT IDENTITY(1, 1), v VARCHAR(4)) DISTKEY(v)")
        admin.execute(f"GRANT SELECT ON t TO {user}")
        assert admin.execute("SELECT diststyle FROM svv_table_info WHERE \"table\" = 't'").fetchone() == ("KEY(v)",)
    try:
        with proxy.connect(user, USER_PASSWORD, dbname=db) as conn:
            assert conn.execute("SELECT usename FROM pg_user WHERE usename = %s", (user,)).fetchone() == (user,)
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        with proxy.connect(dbname=db) as admin:
            admin.execute("DROP TABLE t")
            admin.execute(f"DROP USER {user}")


def test_the_audit_logs_are_one_for_the_cluster(proxy, database):
    db = database()
    with proxy.connect(dbname=db, application_name="newdb-audit") as conn:
        conn.execute("SELECT 1")

    def logged():
        with proxy.connect() as admin:
            return admin.execute("SELECT dbname FROM stl_connection_log WHERE application_name = 'newdb-audit' "
                                 "AND event = 'authenticated'").fetchall()

    assert wait_for(logged) == [(db,)]
    with proxy.connect(dbname=db) as conn:  # read from the new database: the same log
        assert conn.execute("SELECT dbname FROM stl_connection_log WHERE application_name = 'newdb-audit' "
                            "AND event = 'authenticated'").fetchall() == [(db,)]


def test_create_database_from_another_template_is_refused(proxy):
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"CREATE DATABASE \.\.\. TEMPLATE is not supported"):
            admin.execute(f"CREATE DATABASE {unique('db')} TEMPLATE template0")


def test_a_private_schema_made_by_a_user_is_left_alone(make_proxy, postgres, caplog):
    """A database whose schema shiftguard a user made (possible only behind the proxy's back)
    gets nothing installed, and the management role runs nothing there."""
    bare, owner = unique("db"), unique("u")
    with postgres.connect() as direct:
        direct.execute(f"CREATE ROLE {owner} LOGIN")
        direct.execute(f"CREATE DATABASE {bare} TEMPLATE template0 OWNER {owner}")
    try:
        with postgres.connect(bare) as direct:
            direct.execute(f"CREATE SCHEMA shiftguard AUTHORIZATION {owner}")
        proxy = make_proxy()
        assert any(f"database {bare} left as it is: its schema shiftguard was made by a user" in r.getMessage()
                   for r in caplog.records)
        with postgres.connect(bare) as direct:
            assert direct.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'shiftguard'::regnamespace"
                                  ).fetchone() == (0,)
        with proxy.connect(dbname=bare) as admin:  # PostgreSQL's SQL, without shiftguard's catalog views
            assert admin.execute("SELECT 1").fetchone() == (1,)
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP DATABASE IF EXISTS {bare} WITH (FORCE)")
            direct.execute(f"DROP ROLE IF EXISTS {owner}")


def test_vacuum_in_a_new_database_runs_there(proxy, postgres, database):
    db = database()
    with proxy.connect(dbname=db) as admin:
        admin.execute("CREATE TABLE t (a INT)")
        admin.execute("INSERT INTO t SELECT generate_series(1, 100)")
        admin.execute("DELETE FROM t WHERE a > 50")
        admin.execute("VACUUM t")

    def vacuumed():
        proxy.call(proxy.proxy.catalog.run_vacuums())  # what the proxy's queue reader does, now
        with postgres.connect(db) as direct:
            return direct.execute("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 't'").fetchone()[0]

    assert wait_for(vacuumed) is not None


def test_a_failing_vacuum_leaves_the_others_taken_with_it_to_run(proxy, postgres, database, caplog):
    """The proxy takes the queued VACUUMs a hundred at a time: one that failed lost the rest of
    its database's and of the databases after it. One of a table a user's transaction holds
    locked (it waited for the lock as long as the user liked, an hour at most) is skipped, and
    logged by the table's name; the others run."""
    first, second = sorted((database(), database()))
    for db in (first, second):
        with proxy.connect(dbname=db) as admin:
            admin.execute("CREATE TABLE held (a int)")
            admin.execute("CREATE TABLE free (a int)")

    def vacuumed(db: str, table: str) -> bool:
        with postgres.connect(db) as direct:
            return direct.execute("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = %s",
                                  (table,)).fetchone()[0]

    with proxy.connect(dbname=first) as holder, holder.transaction():
        holder.execute("LOCK TABLE held IN SHARE UPDATE EXCLUSIVE MODE")
        with proxy.connect(dbname=first) as admin:
            admin.execute("VACUUM held")
            admin.execute("VACUUM free")
        with proxy.connect(dbname=second) as admin:
            admin.execute("VACUUM free")
        proxy.call(proxy.proxy.catalog.run_vacuums())  # what the proxy's queue reader does, now
    assert wait_for(lambda: vacuumed(first, "free") and vacuumed(second, "free"))
    assert not vacuumed(first, "held")
    assert any(f"VACUUM of public.held in database {first} skipped: another transaction holds it locked"
               in record.getMessage()
               for record in caplog.records)


def test_auto_refresh_views_of_a_new_database_are_refreshed_after_a_write(proxy, database):
    """AUTO REFRESH YES in a database made by CREATE DATABASE: refreshed soon after a write commits
    (well within the 30 s poll), as in the cluster database, and AUTO REFRESH NO is left stale."""
    db = database()
    with proxy.connect(dbname=db) as admin:
        admin.execute("CREATE TABLE sales (amount int)")
        admin.execute("INSERT INTO sales VALUES (10), (20)")
        admin.execute("CREATE MATERIALIZED VIEW auto_total AUTO REFRESH YES AS SELECT sum(amount) AS total FROM sales")
        admin.execute("CREATE MATERIALIZED VIEW kept_total AUTO REFRESH NO AS SELECT sum(amount) AS total FROM sales")
        admin.execute("INSERT INTO sales VALUES (5)")
        assert wait_for(lambda: admin.execute("SELECT total FROM auto_total").fetchall() == [(35,)], timeout=15)
        assert admin.execute("SELECT total FROM kept_total").fetchall() == [(30,)]
        assert wait_for(lambda: admin.execute("SELECT name, is_stale FROM svv_mv_info ORDER BY name").fetchall()
                        == [("auto_total", "f"), ("kept_total", "t")])
