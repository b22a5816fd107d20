"""Row-level security in Redshift's syntax, enforced by PostgreSQL: who sees which rows, checked
by querying as each user through the proxy with real drivers."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import redshift_connector

from ..conftest import installed_by_an_older_version, made_before, unique, wait_for

PASSWORD = "Secret123"
CATEGORIES = [(1, "Sports", "MLB"), (2, "Sports", "NHL"), (6, "Shows", "Musicals"), (7, "Shows", "Plays"),
              (9, "Concerts", "Pop"), (10, "Concerts", "Jazz"), (11, "Concerts", "Classical")]


@pytest.fixture
def world(proxy, postgres):
    """The documentation's walk-through (r_CREATE_RLS_POLICY, t_rls-example): bob holds
    sys:secadmin, alice the role analyst, joe the role consumer; everyone may read the table."""
    n = {key: unique(key) for key in ("cat", "analyst", "consumer", "bob", "alice", "joe", "pol", "pol2")}
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {n['cat']} (catid int, catgroup varchar(10), catname varchar(10))")
        with admin.cursor() as cur:
            cur.executemany(f"INSERT INTO {n['cat']} VALUES (%s, %s, %s)", CATEGORIES)
        for statement in (f"CREATE ROLE {n['analyst']}", f"CREATE ROLE {n['consumer']}",
                          f"CREATE USER {n['bob']} PASSWORD '{PASSWORD}'",
                          f"CREATE USER {n['alice']} PASSWORD '{PASSWORD}'",
                          f"CREATE USER {n['joe']} PASSWORD '{PASSWORD}'",
                          f"GRANT ROLE sys:secadmin TO {n['bob']}", f"GRANT ROLE {n['analyst']} TO {n['alice']}",
                          f"GRANT ROLE {n['consumer']} TO {n['joe']}",
                          f"GRANT ALL ON TABLE {n['cat']} TO ROLE {n['analyst']}, ROLE {n['consumer']}, {n['bob']}"):
            admin.execute(statement)
    yield n
    with proxy.connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {n['cat']} CASCADE")
        for policy in (n["pol"], n["pol2"]):
            admin.execute(f"DROP RLS POLICY IF EXISTS {policy} CASCADE")
        admin.execute(f"DROP ROLE {n['analyst']} FORCE")
        admin.execute(f"DROP ROLE {n['consumer']} FORCE")
    with postgres.connect() as direct:
        for user in ("bob", "alice", "joe"):
            direct.execute(f"DROP OWNED BY {n[user]}")
    with proxy.connect() as admin:
        admin.execute(f"DROP USER {n['bob']}, {n['alice']}, {n['joe']}")


def ids(proxy, user: str, table: str, where: str = "") -> list[int]:
    with proxy.connect(user, PASSWORD) as conn:
        return [row[0] for row in conn.execute(f"SELECT catid FROM {table} {where} ORDER BY 1")]


ALL = [c[0] for c in CATEGORIES]
CONCERTS = [9, 10, 11]


def test_documentation_walk_through(proxy, world):
    n = world
    with proxy.connect(n["bob"], PASSWORD) as bob:  # sys:secadmin manages policies
        bob.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup VARCHAR(10)) USING (catgroup = 'Concerts')")
        bob.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['analyst']}")
        assert ids(proxy, n["alice"], n["cat"]) == ALL  # RLS still off
        bob.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
    assert ids(proxy, n["alice"], n["cat"]) == CONCERTS
    assert ids(proxy, n["joe"], n["cat"]) == []  # RLS on, no policy for him: no rows
    assert ids(proxy, n["bob"], n["cat"]) == ALL  # sys:secadmin ignores RLS
    with proxy.connect() as admin:
        assert [r[0] for r in admin.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")] == ALL  # superuser
    # The user's own predicate comes after the policy's.
    assert ids(proxy, n["alice"], n["cat"], "WHERE catid > 9") == [10, 11]
    # AWS's own driver sees the same.
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=n["alice"],
                                      password=PASSWORD, ssl=False, timeout=20)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT catname FROM {n['cat']} ORDER BY catid")
        assert [row[0] for row in cursor.fetchall()] == ["Pop", "Jazz", "Classical"]
    finally:
        conn.close()
    with proxy.connect(n["bob"], PASSWORD) as bob:
        bob.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY OFF")
    assert ids(proxy, n["joe"], n["cat"]) == ALL


def test_changes_reach_open_sessions_at_the_next_statement(proxy, world):
    n = world
    with proxy.connect() as admin, proxy.connect(n["alice"], PASSWORD) as alice:
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup VARCHAR(10)) AS c USING (c.catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON TABLE {n['cat']} TO {n['alice']}")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
        read = lambda: [r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")]
        prepared = lambda: [r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']} WHERE catid > %s ORDER BY 1",
                                                       (0,), prepare=True)]
        assert read() == CONCERTS and prepared() == CONCERTS
        admin.execute(f"ALTER RLS POLICY {n['pol']} USING (c.catgroup = 'Shows')")
        assert read() == [6, 7] and prepared() == [6, 7]
        admin.execute(f"DETACH RLS POLICY {n['pol']} ON {n['cat']} FROM {n['alice']}")
        assert read() == [] and prepared() == []
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO PUBLIC")
        assert read() == [6, 7]


def test_conjunction_and_or(proxy, world):
    n = world
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) USING (catgroup <> 'Sports')")
        admin.execute(f"CREATE RLS POLICY {n['pol2']} WITH (catid int) USING (catid < 10)")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['analyst']}")
        admin.execute(f"ATTACH RLS POLICY {n['pol2']} ON {n['cat']} TO {n['alice']}, ROLE {n['consumer']}")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")  # AND by default
        assert ids(proxy, n["alice"], n["cat"]) == [6, 7, 9]  # both apply: not Sports AND catid < 10
        assert ids(proxy, n["joe"], n["cat"]) == [1, 2, 6, 7, 9]  # only pol2 applies to him
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON CONJUNCTION TYPE OR")
        assert ids(proxy, n["alice"], n["cat"]) == ALL  # not Sports OR catid < 10
        assert ids(proxy, n["joe"], n["cat"]) == [1, 2, 6, 7, 9]
        assert admin.execute("SELECT is_rls_on, rls_conjunction_type FROM svv_rls_relation WHERE relname = %s",
                             (n["cat"],)).fetchone() == (True, "or ")


def test_lookup_table_and_current_user(proxy, world):
    """A predicate reading a lookup table the users cannot read themselves, keyed by current_user."""
    n = world
    lookup = unique("entitled")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {lookup} (username varchar(64), catgroup varchar(10))")
        admin.execute(f"INSERT INTO {lookup} VALUES ('{n['alice']}', 'Shows'), ('{n['joe']}', 'Sports'), "
                      f"('{n['joe']}', 'Concerts')")
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) AS t USING (t.catgroup IN "
                      f"(SELECT e.catgroup FROM {lookup} e WHERE e.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO PUBLIC")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
    assert ids(proxy, n["alice"], n["cat"]) == [6, 7]
    assert ids(proxy, n["joe"], n["cat"]) == [1, 2, 9, 10, 11]
    with proxy.connect(n["alice"], PASSWORD) as alice:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute(f"SELECT * FROM {lookup}")
        # A temporary table of the lookup's name changes nothing: names were resolved at CREATE.
        alice.execute(f"CREATE TEMP TABLE {lookup} (username varchar(64), catgroup varchar(10))")
        alice.execute(f"INSERT INTO {lookup} VALUES ('{n['alice']}', 'Sports')")
        assert [r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")] == [6, 7]
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            admin.execute(f"DROP TABLE {lookup}")  # the policy reads it
        admin.execute(f"DROP RLS POLICY {n['pol']} CASCADE")
        admin.execute(f"DROP TABLE {lookup}")


def test_statements_and_views(proxy, world):
    """SELECT, UPDATE and DELETE see only visible rows; INSERT is not filtered; a view applies
    the querying user's policies."""
    n = world
    view = unique("v")
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['analyst']}")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        assert alice.execute(f"UPDATE {n['cat']} SET catname = 'x'").rowcount == 3
        assert alice.execute(f"DELETE FROM {n['cat']} WHERE catid IN (1, 9)").rowcount == 1
        alice.execute(f"INSERT INTO {n['cat']} VALUES (20, 'Sports', 'Golf')")
        assert [r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")] == [10, 11]
        alice.execute(f"CREATE VIEW {view} AS SELECT catid, catgroup FROM {n['cat']}")
        alice.execute(f"GRANT SELECT ON {view} TO {n['joe']}")
        assert [r[0] for r in alice.execute(f"SELECT catid FROM {view} ORDER BY 1")] == [10, 11]
    with proxy.connect() as admin:
        rows = admin.execute(f"SELECT catid, catname FROM {n['cat']} ORDER BY 1").fetchall()
        assert rows == [(1, "MLB"), (2, "NHL"), (6, "Musicals"), (7, "Plays"), (10, "x"), (11, "x"), (20, "Golf")]
    assert ids(proxy, n["joe"], view) == []  # joe's policies (none): no rows
    with proxy.connect() as admin:
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['consumer']}")
    assert ids(proxy, n["joe"], view) == [10, 11]


def test_only_superusers_and_secadmin_manage_rls(proxy, world):
    n = world
    table = unique("own")
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {n['pol']} USING (true)")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {n['alice']}")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        alice.execute(f"CREATE TABLE {table} (catid int)")  # her own table: owners are not included
        for statement in (f"CREATE RLS POLICY {n['pol2']} USING (true)",
                          f"ALTER RLS POLICY {n['pol']} USING (false)",
                          f"ATTACH RLS POLICY {n['pol']} ON {table} TO PUBLIC",
                          f"ALTER TABLE {table} ROW LEVEL SECURITY ON",
                          f"DROP RLS POLICY {n['pol']}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="sys:secadmin"):
                alice.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute("SELECT * FROM shiftguard_rows.rls_policies")
        assert alice.execute("SELECT count(*) FROM svv_rls_policy").fetchone() == (0,)
        alice.execute(f"DROP TABLE {table}")
    with proxy.connect(n["bob"], PASSWORD) as bob:
        assert bob.execute("SELECT polname, polatts, polqual FROM svv_rls_policy WHERE polname = %s",
                           (n["pol"],)).fetchone() == (n["pol"], "[]", "TRUE")


@pytest.mark.parametrize("statement, error, fragment", [
    ("CREATE RLS POLICY {pol} WITH (nope int) USING (nope = 1); ATTACH RLS POLICY {pol} ON {cat} TO PUBLIC",
     psycopg.errors.UndefinedColumn, 'column "nope"'),
    ("CREATE RLS POLICY {pol} USING (true); ATTACH RLS POLICY {pol} ON {cat} TO awsuser",
     psycopg.errors.InvalidParameterValue, "superuser"),
    ("CREATE RLS POLICY {pol} USING (true); ATTACH RLS POLICY {pol} ON {cat} TO ROLE {pol2}",
     psycopg.errors.UndefinedObject, "does not exist"),
    ("CREATE RLS POLICY {pol} USING (true); ATTACH RLS POLICY {pol} ON pg_catalog.pg_class TO PUBLIC",
     psycopg.errors.FeatureNotSupported, "system table"),
    ("CREATE RLS POLICY {pol} USING (true); DETACH RLS POLICY {pol} ON {cat} FROM PUBLIC",
     psycopg.errors.UndefinedObject, "is not attached"),
    ("CREATE RLS POLICY {pol} USING (true); CREATE RLS POLICY {pol} USING (false)",
     psycopg.errors.DuplicateObject, "already exists"),
    ("CREATE RLS POLICY {pol} USING (true); ATTACH RLS POLICY {pol} ON {cat} TO PUBLIC; DROP RLS POLICY {pol}",
     psycopg.errors.DependentObjectsStillExist, "attached"),
    ("DROP RLS POLICY {pol}", psycopg.errors.UndefinedObject, "does not exist"),
    ("CREATE RLS POLICY {pol} WITH (a int) USING (a = $1)", psycopg.errors.SyntaxError, "cannot have parameters"),
    ("CREATE RLS POLICY {pol} USING (true) OR (1 = 1)", psycopg.errors.SyntaxError, "syntax error"),
    ("CREATE RLS POLICY {pol} USING (true) FROM x; DROP TABLE {cat}", psycopg.errors.SyntaxError, "syntax"),
    ("CREATE RLS POLICY {pol} USING ((SELECT true); DROP TABLE {cat}; SELECT (true))", psycopg.errors.SyntaxError, ""),
    ("CREATE RLS POLICY {pol} USING (true) UNION SELECT false", psycopg.errors.SyntaxError, ""),
    ("CREATE RLS POLICY {pol} USING (1 = 1) ORDER BY 1", psycopg.errors.SyntaxError, ""),
    ("CREATE RLS POLICY {pol} WITH (a int) RETURNS int) USING (true)", psycopg.errors.SyntaxError, ""),
    ("CREATE RLS POLICY {pol} WITH (a int); DROP TABLE x; --) USING (true)", psycopg.errors.SyntaxError, ""),
    ("CREATE RLS POLICY {pol} USING ((SELECT count(*) > 0 FROM shiftguard_rows.users))",
     psycopg.errors.FeatureNotSupported, "catalog table"),
    ("ALTER TABLE {cat} ROW LEVEL SECURITY ON FOR DATASHARES", psycopg.errors.FeatureNotSupported, "datashares"),
])
def test_rls_errors(proxy, world, statement, error, fragment):
    with proxy.connect() as admin:
        with pytest.raises(error, match=fragment):
            admin.execute(statement.format(**world))
        assert admin.execute(f"SELECT count(*) FROM {world['cat']}").fetchone() == (len(CATEGORIES),)


def test_a_view_a_superuser_made_applies_the_querying_users_policies(proxy, world):
    """PostgreSQL would exempt a superuser-owned view from row security; Redshift applies the
    querying user's policies through every view."""
    n = world
    view = unique("sv")
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['analyst']}")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
        admin.execute(f"CREATE VIEW {view} AS SELECT catid, catname FROM {n['cat']}")
        admin.execute(f"GRANT SELECT ON {view} TO {n['alice']}, {n['joe']}")
        assert [r[0] for r in admin.execute(f"SELECT catid FROM {view} ORDER BY 1")] == ALL  # still exempt
    assert ids(proxy, n["alice"], view) == CONCERTS
    assert ids(proxy, n["joe"], view) == []
    with proxy.connect() as admin:  # the superuser still manages it
        admin.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT catid, catname, catgroup FROM {n['cat']}")
        assert ids(proxy, n["alice"], view) == CONCERTS
        admin.execute(f"DROP VIEW {view}")


def test_tables_with_rls_on_take_no_part_in_inheritance(proxy, world):
    """PostgreSQL applies the row security of the table a query names: rows read through a parent
    escape the child's policies, a partition read directly escapes the parent's. A table with
    RLS on is neither parent nor child, for superusers too; one that is cannot have RLS on."""
    n = world
    cat, parent, parts = n["cat"], unique("parent"), unique("parts")
    rls_refused = f'row-level security cannot be used on "{{}}": it takes part in table inheritance or partitioning'
    linked_refused = f'table "{cat}" has row-level security on: it cannot take part in table inheritance'
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {parent} (catid int, catgroup varchar(10), catname varchar(10))")
        admin.execute(f"CREATE TABLE {parts} (LIKE {parent}) PARTITION BY LIST (catid)")
        admin.execute(f"ALTER TABLE {cat} INHERIT {parent}")
        for table in (cat, parent, parts):
            with pytest.raises(psycopg.errors.FeatureNotSupported, match=rls_refused.format(table)) as refused:
                admin.execute(f"ALTER TABLE {table} ROW LEVEL SECURITY ON")
            assert "no table inheritance or partitioning" in refused.value.diag.message_hint
        admin.execute(f"ALTER TABLE {cat} NO INHERIT {parent}")
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {cat} TO ROLE {n['analyst']}")
        admin.execute(f"ALTER TABLE {cat} ROW LEVEL SECURITY ON")
        for statement in (f"ALTER TABLE {cat} INHERIT {parent}", f"ALTER TABLE {parent} INHERIT {cat}",
                          f"ALTER TABLE {parts} ATTACH PARTITION {cat} FOR VALUES IN (1, 2, 6, 7, 9, 10, 11)",
                          f"CREATE TABLE {cat}_kid () INHERITS ({cat})",
                          f"DO $$BEGIN ALTER TABLE {cat} INHERIT {parent}; END$$",
                          f"DO $$BEGIN EXECUTE 'ALTER TABLE {parts} ATTACH PARTITION {cat} DEFAULT'; END$$",
                          f"DO $$BEGIN CREATE TABLE {cat}_kid () INHERITS ({cat}); END$$"):
            with pytest.raises(psycopg.errors.FeatureNotSupported, match=linked_refused):
                admin.execute(statement)
        admin.execute(f"ALTER TABLE {cat} ROW LEVEL SECURITY OFF")

        def linked():  # RLS off: PostgreSQL's own rules, once the proxy has read the change
            try:
                admin.execute(f"ALTER TABLE {parts} ATTACH PARTITION {cat} DEFAULT")
                return True
            except psycopg.errors.FeatureNotSupported:
                return False
        assert wait_for(linked, timeout=5)
        admin.execute(f"ALTER TABLE {parts} DETACH PARTITION {cat}")
        admin.execute(f"DROP TABLE {parent}")
        admin.execute(f"DROP TABLE {parts}")


def test_inheritance_and_partitioning_without_rls_work(proxy, world, postgres):
    """Tables without RLS or masking are linked as PostgreSQL allows, in the proxy's sight and
    out of it, while another table has RLS on."""
    n = world
    alice = n["alice"]
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['analyst']}")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {alice}")
    p = unique("p")
    # varchar(10) throughout: a DO block's DDL is out of the proxy's sight, where TEXT stays
    # PostgreSQL's text, not Redshift's VARCHAR(256)
    try:
        with proxy.connect(alice, PASSWORD) as conn:
            for statement in (f"CREATE TABLE {p}_base (a int, b varchar(10))",
                              f"CREATE TABLE {p}_c1 () INHERITS ({p}_base)",
                              f"CREATE TABLE {p}_c2 (LIKE {p}_base)",
                              f"ALTER TABLE {p}_c2 INHERIT {p}_base",
                              f"DO $$BEGIN CREATE TABLE {p}_c3 () INHERITS ({p}_base); END$$",
                              f"INSERT INTO {p}_c1 VALUES (1, 'one')", f"INSERT INTO {p}_c2 VALUES (2, 'two')",
                              f"INSERT INTO {p}_c3 VALUES (3, 'three')",
                              f"CREATE TABLE {p}_parts (a int, b varchar(10)) PARTITION BY LIST (a)",
                              f"CREATE TABLE {p}_one PARTITION OF {p}_parts FOR VALUES IN (1)",
                              f"CREATE TABLE {p}_two (a int, b varchar(10))",
                              f"ALTER TABLE {p}_parts ATTACH PARTITION {p}_two FOR VALUES IN (2)",
                              f"DO $$BEGIN CREATE TABLE {p}_three (a int, b varchar(10)); "
                              f"ALTER TABLE {p}_parts ATTACH PARTITION {p}_three FOR VALUES IN (3); END$$",
                              f"INSERT INTO {p}_parts VALUES (1, 'one'), (2, 'two'), (3, 'three')"):
                conn.execute(statement)
            assert conn.execute(f"SELECT array_agg(a ORDER BY a) FROM {p}_base").fetchone() == ([1, 2, 3],)
            assert conn.execute(f"SELECT array_agg(a ORDER BY a) FROM {p}_parts").fetchone() == ([1, 2, 3],)
            conn.execute(f"ALTER TABLE {p}_c2 NO INHERIT {p}_base")
            conn.execute(f"ALTER TABLE {p}_parts DETACH PARTITION {p}_two")
            conn.execute(f"DO $$BEGIN ALTER TABLE {p}_parts DETACH PARTITION {p}_three; END$$")
            assert conn.execute(f"SELECT array_agg(a ORDER BY a) FROM {p}_base").fetchone() == ([1, 3],)
            assert conn.execute(f"SELECT array_agg(a ORDER BY a) FROM {p}_parts").fetchone() == ([1],)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {alice}")


@pytest.fixture
def owned(proxy, world, postgres):
    """alice owns a table with RLS on whose policy shows her the concerts, and one without RLS."""
    n = world
    alice, t = n["alice"], unique("mine")
    with proxy.connect() as admin:
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {alice}")
    with proxy.connect(alice, PASSWORD) as conn:
        for table in (t, f"{t}_free"):
            conn.execute(f"CREATE TABLE {table} (catid int, catgroup varchar(10), catname varchar(10))")
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", CATEGORIES)
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {t} TO {alice}")
        admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
    yield t
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {alice} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {alice}")


def test_rls_is_not_turned_on_for_a_table_with_code_over_its_rows(proxy, world, owned, postgres):
    """A table that has triggers, rules, indexes on expressions or with a predicate, CHECK,
    exclusion or foreign key constraints (either way), generated columns, defaults calling a
    user's function, columns of a user's type or statistics on expressions cannot have RLS
    turned on: the error lists them. Without them, it can. Users may not make triggers (nor
    PL/pgSQL functions) any more; a trigger made before that refusal still counts."""
    n = world
    t = f"{owned}_free"
    function = f"CREATE FUNCTION public.{t}_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$"
    trigger = f"CREATE TRIGGER {t}_tr BEFORE INSERT ON public.{t} FOR EACH ROW EXECUTE FUNCTION public.{t}_f()"
    with proxy.connect(n["alice"], PASSWORD) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(function)
        made_before(postgres, n["alice"], function)
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(trigger)
        made_before(postgres, n["alice"], trigger)
        rule = f"CREATE RULE {t}_r AS ON UPDATE TO public.{t} DO ALSO NOTIFY x"
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="rules are not supported"):
            conn.execute(rule)
        made_before(postgres, n["alice"], rule)
    code = [f"CREATE INDEX {t}_e ON {t} ((lower(catname)))",
            f"CREATE INDEX {t}_p ON {t} (catid) WHERE catid > 0",
            f"ALTER TABLE {t} ADD CONSTRAINT {t}_c CHECK (catid > 0)",
            f"ALTER TABLE {t} ADD CONSTRAINT {t}_u UNIQUE (catid)",
            f"CREATE TABLE {t}_ref (id int CONSTRAINT {t}_fk REFERENCES {t} (catid))",
            f"ALTER TABLE {t} ADD COLUMN g int GENERATED ALWAYS AS (catid * 2) STORED",
            f"CREATE FUNCTION {t}_d() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            f"ALTER TABLE {t} ADD COLUMN d int DEFAULT {t}_d()",
            f"CREATE STATISTICS {t}_s ON (catid + 1), catgroup FROM {t}"]
    with proxy.connect(n["alice"], PASSWORD) as conn:
        for statement in code:
            conn.execute(statement)
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
            admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
        assert refused.value.diag.message_primary == (
            f'row-level security cannot be used on "{t}": it has CHECK constraint "{t}_c", foreign key "{t}_fk" of '
            f'"{t}_ref", generated column "g", index "{t}_e" (on expressions or with a WHERE clause), index "{t}_p" '
            f'(on expressions or with a WHERE clause), rule "{t}_r", statistics object "{t}_s" (on expressions), '
            f'the default of column "d" (it calls function public.{t}_d()), trigger "{t}_tr"')
        assert "Drop them first" in refused.value.diag.message_hint
    with proxy.connect(n["alice"], PASSWORD) as conn:
        for statement in (f"DROP TRIGGER {t}_tr ON {t}", f"DROP RULE {t}_r ON {t}", f"DROP INDEX {t}_e, {t}_p",
                          f"ALTER TABLE {t} DROP CONSTRAINT {t}_c", f"DROP TABLE {t}_ref",
                          f"ALTER TABLE {t} DROP COLUMN g", f"ALTER TABLE {t} ALTER COLUMN d SET DEFAULT 7",
                          f"DROP STATISTICS {t}_s"):
            conn.execute(statement)
    with proxy.connect() as admin:
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {t} TO {n['alice']}")
        admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")  # the unique constraint and constant default stay
    assert ids(proxy, n["alice"], t) == CONCERTS


def test_what_runs_no_code_over_rows_still_works(proxy, world, owned, postgres):
    """On her table with RLS on, its owner still adds, renames and drops columns, changes a
    VARCHAR's length, sets constant defaults and NOT NULL, makes plain indexes, primary keys and
    unique constraints, renames the table, in the proxy's sight and (renames) in DO blocks; on
    her table without RLS, everything PostgreSQL allows, also from DO blocks and stored
    procedures, but triggers and PL/pgSQL functions (refused to users now: she turns a trigger
    made before that refusal off and on)."""
    n = world
    t, free = owned, f"{owned}_free"
    with proxy.connect(n["alice"], PASSWORD) as conn:
        for statement in (f"ALTER TABLE {t} ADD COLUMN extra int DEFAULT 0",
                          f"ALTER TABLE {t} ALTER COLUMN extra SET DEFAULT 5, ALTER COLUMN extra SET NOT NULL",
                          f"ALTER TABLE {t} ADD COLUMN stamp timestamp DEFAULT getdate()",
                          f"ALTER TABLE {t} ADD COLUMN n serial, ADD COLUMN r float DEFAULT random()",
                          f"ALTER TABLE {t} DROP COLUMN n, DROP COLUMN r",
                          f"ALTER TABLE {t} ALTER COLUMN catname TYPE varchar(30)",
                          f"CREATE INDEX {t}_i ON {t} (catid)",
                          f"CREATE UNIQUE INDEX {t}_ui ON {t} USING btree (catname DESC) INCLUDE (catid)",
                          f"ALTER TABLE {t} ADD PRIMARY KEY (catid)",
                          f"ALTER TABLE {t} ADD CONSTRAINT {t}_u UNIQUE (catname, catid)",
                          f"ALTER TABLE {t} RENAME COLUMN extra TO more",
                          f"ALTER TABLE {t} DROP COLUMN more, DROP COLUMN stamp",
                          f"COMMENT ON TABLE {t} IS 'mine'",
                          f"ALTER TABLE {t} RENAME TO {t}_x",
                          f"DO $$BEGIN ALTER TABLE {t}_x RENAME TO {t}; END$$",
                          f"DO $$BEGIN EXECUTE 'ALTER TABLE {t} RENAME COLUMN catname TO name'; END$$",
                          f"ALTER TABLE {t} RENAME COLUMN name TO catname",
                          f"ALTER TABLE {t} DROP CONSTRAINT {t}_u",
                          f"DROP INDEX {t}_i, {t}_ui"):
            conn.execute(statement)
        conn.execute(f"INSERT INTO {t} VALUES (12, 'Concerts', 'Opera')")
        assert [r[0] for r in conn.execute(f"SELECT catid FROM {t} ORDER BY 1")] == CONCERTS + [12]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"INSERT INTO {t} VALUES (12, 'Concerts', 'Again')")
        function = f"CREATE FUNCTION public.{free}_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$"
        trigger = (f"CREATE TRIGGER {free}_tr BEFORE INSERT ON public.{free} FOR EACH ROW "
                   f"EXECUTE FUNCTION public.{free}_f()")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(function)
        made_before(postgres, n["alice"], function)
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(trigger)
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(f"DO $$BEGIN {trigger}; END$$")
        made_before(postgres, n["alice"], trigger)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="rules are not supported"):  # users' rules
            conn.execute(f"CREATE RULE {free}_r AS ON UPDATE TO {free} DO ALSO NOTIFY x")
        with pytest.raises(psycopg.errors.FeatureNotSupported):  # a SQL function's body is one SELECT
            conn.execute(f"CREATE FUNCTION {free}_ix() RETURNS void LANGUAGE sql AS "
                         f"$$CREATE INDEX ON {free} ((upper(catname)))$$")
        for statement in (f"CREATE INDEX ON {free} ((lower(catname)))",
                          f"DO $$BEGIN CREATE INDEX ON {free} (catid) WHERE catid > 1; END$$",
                          f"ALTER TABLE {free} ADD CONSTRAINT {free}_c CHECK (catid > 0)",
                          f"DO $$BEGIN ALTER TABLE {free} ADD CONSTRAINT {free}_c2 CHECK (catid < 100) NOT VALID; "
                          f"ALTER TABLE {free} VALIDATE CONSTRAINT {free}_c2; END$$",
                          f"ALTER TABLE {free} ADD UNIQUE (catid)",
                          f"CREATE TABLE {free}_ref (id int REFERENCES {free} (catid) ON DELETE CASCADE)",
                          f"DO $$BEGIN ALTER TABLE {free}_ref ADD FOREIGN KEY (id) REFERENCES {free} (catid); END$$",
                          f"ALTER TABLE {free} ALTER COLUMN catid TYPE bigint USING catid + 0",
                          f"DO $$BEGIN ALTER TABLE {free} ADD COLUMN g bigint GENERATED ALWAYS AS (catid * 2) STORED; "
                          "END$$",
                          f"ALTER TABLE {free} ADD EXCLUDE USING btree (catname WITH =)",
                          f"ALTER TABLE {free} DISABLE TRIGGER {free}_tr",
                          f"DO $$BEGIN ALTER TABLE {free} ENABLE ALWAYS TRIGGER {free}_tr; END$$",
                          f"CREATE STATISTICS {free}_s ON (catid + 1), catgroup FROM {free}",
                          f"CREATE PROCEDURE {free}_ix() LANGUAGE sql AS "
                          f"$$CREATE INDEX ON {free} ((upper(catname)))$$",
                          f"CALL {free}_ix()",
                          f"CREATE INDEX ON {free} ((lower(catname))); ALTER TABLE {free} ADD COLUMN plain int"):
            conn.execute(statement)
        assert conn.execute(f"SELECT count(*), sum(g) FROM {free}").fetchone() == (7, 2 * sum(ALL))


def test_renamed_tables_with_rls_on_stay_known_to_the_proxy(proxy, world, owned, postgres):
    """The proxy knows the tables with RLS on by name: renamed in its sight, in a DO block, moved
    to another schema, or in a schema renamed, the proxy refuses for the new name (it reads the
    list again when the version it polls moves)."""
    n = world
    alice, t, s = n["alice"], owned, n["cat"] + "_s"
    parent = f"{t}_parent"
    with proxy.connect(alice, PASSWORD) as conn:
        conn.execute(f"CREATE TABLE {parent} (catid int, catgroup varchar(10), catname varchar(10))")

    def refused_by_the_proxy(name: str) -> bool:
        with proxy.connect(alice, PASSWORD) as conn:
            try:
                conn.execute(f"ALTER TABLE {name} INHERIT public.{parent}")
            except psycopg.errors.FeatureNotSupported as exc:  # the backend's guard says where it raised
                return exc.diag.context is None
            raise AssertionError(f"{name} was linked")

    assert wait_for(lambda: refused_by_the_proxy(t), timeout=3)
    with proxy.connect(alice, PASSWORD) as conn:
        conn.execute(f"ALTER TABLE {t} RENAME TO {t}_a")
    assert wait_for(lambda: refused_by_the_proxy(f"{t}_a"), timeout=3)
    with proxy.connect(alice, PASSWORD) as conn:
        conn.execute(f"DO $$BEGIN ALTER TABLE {t}_a RENAME TO {t}_b; END$$")
    assert wait_for(lambda: refused_by_the_proxy(f"{t}_b"), timeout=3)
    with proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {s}")
        admin.execute(f"GRANT USAGE, CREATE ON SCHEMA {s} TO {alice}")
    try:
        with proxy.connect(alice, PASSWORD) as conn:
            conn.execute(f"ALTER TABLE {t}_b SET SCHEMA {s}")
        assert wait_for(lambda: refused_by_the_proxy(f"{s}.{t}_b"), timeout=3)
        with proxy.connect() as admin:
            admin.execute(f"ALTER SCHEMA {s} RENAME TO {s}2")
        assert wait_for(lambda: refused_by_the_proxy(f"{s}2.{t}_b"), timeout=3)
        with proxy.connect(alice, PASSWORD) as conn:
            conn.execute(f"ALTER TABLE {s}2.{t}_b SET SCHEMA public")
            conn.execute(f"ALTER TABLE {t}_b RENAME TO {t}")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {s}2 CASCADE")
    assert ids(proxy, alice, t) == CONCERTS


def test_guards_left_by_an_older_version_are_made_again(make_proxy, postgres):
    """An event trigger of the same name whose tags differ, or that is disabled, is made again
    when a proxy starts (a database bootstrapped by an older version)."""
    make_proxy()
    with postgres.connect() as direct:
        direct.execute("SET search_path = pg_catalog")
        try:
            direct.execute("DROP EVENT TRIGGER shiftguard_guard_inheritance")
            direct.execute("CREATE EVENT TRIGGER shiftguard_guard_inheritance ON ddl_command_end "
                           "WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION shiftguard.guard_inheritance()")
            direct.execute("ALTER EVENT TRIGGER shiftguard_guard_masked_statistics DISABLE")
            installed_by_an_older_version(direct)
            make_proxy()
            rows = direct.execute("SELECT evtname, evtenabled, evttags FROM pg_event_trigger WHERE evtname IN "
                                  "('shiftguard_guard_inheritance', 'shiftguard_guard_masked_statistics') "
                                  "ORDER BY 1").fetchall()
        finally:  # whatever happened, the suite goes on guarded
            direct.execute("ALTER EVENT TRIGGER shiftguard_guard_masked_statistics ENABLE")
    assert rows == [("shiftguard_guard_inheritance", "O",
                     ["CREATE TABLE", "ALTER TABLE", "CREATE FOREIGN TABLE", "ALTER FOREIGN TABLE"]),
                    ("shiftguard_guard_masked_statistics", "O",
                     ["ALTER TABLE", "CREATE INDEX", "ALTER INDEX", "CREATE STATISTICS", "ALTER STATISTICS"])]


def lookup_table(admin, n: dict) -> str:
    """A lookup table of who may see which catgroup, and a policy n['pol'] reading it for the
    querying user, attached to the role analyst (alice) on cat with RLS on: alice sees Shows."""
    lookup = unique("entitled")
    admin.execute(f"CREATE TABLE {lookup} (username varchar(64), catgroup varchar(10))")
    admin.execute(f"INSERT INTO {lookup} VALUES ('{n['alice']}', 'Shows'), ('{n['joe']}', 'Concerts')")
    admin.execute(f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) AS t USING (t.catgroup IN "
                  f"(SELECT e.catgroup FROM {lookup} e WHERE e.username = current_user))")
    admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['analyst']}")
    admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
    return lookup


def callable_by(proxy, postgres, user: str, policy: str) -> bool:
    """May the user call the policy's function (by name: its schema too)?"""
    with postgres.connect() as direct:
        return direct.execute("SELECT has_function_privilege(%s, p.oid, 'EXECUTE') "
                              "AND has_schema_privilege(%s, p.pronamespace, 'USAGE') FROM pg_proc p "
                              "WHERE p.proname = %s AND p.pronamespace::regnamespace::text LIKE 'shiftguard%%'",
                              (user, user, f"rls:{policy}")).fetchone()[0]


def test_alter_rls_policy_on_an_attached_lookup_policy(proxy, postgres, world):
    """ALTER RLS POLICY takes effect on the tables the policy is attached to, from one lookup
    predicate to another, to one that reads no table and back; whom it reaches follows role
    membership at the next statement; and a predicate that reads a table is never the users' to
    call (it would tell them what the lookup table lets through)."""
    n = world
    with proxy.connect() as admin:
        lookup = lookup_table(admin, n)
    assert ids(proxy, n["alice"], n["cat"]) == [6, 7]
    assert not callable_by(proxy, postgres, n["alice"], n["pol"])
    with proxy.connect() as admin, proxy.connect(n["alice"], PASSWORD) as alice:
        read = lambda: [r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")]
        admin.execute(f"ALTER RLS POLICY {n['pol']} USING (t.catgroup IN "
                      f"(SELECT e.catgroup FROM {lookup} e WHERE e.username <> current_user))")
        assert read() == [9, 10, 11]  # joe's entitlement, not hers
        assert not callable_by(proxy, postgres, n["alice"], n["pol"])
        admin.execute(f"ALTER RLS POLICY {n['pol']} USING (t.catgroup = 'Sports')")  # reads no table
        assert read() == [1, 2]
        assert callable_by(proxy, postgres, n["alice"], n["pol"])  # an inline predicate: nothing to hide
        admin.execute(f"ALTER RLS POLICY {n['pol']} USING (t.catgroup IN "
                      f"(SELECT e.catgroup FROM {lookup} e WHERE e.username = current_user))")
        assert read() == [6, 7]
        assert not callable_by(proxy, postgres, n["alice"], n["pol"])
        role = unique("r")  # a role that carries the attachment and no privilege
        admin.execute(f"CREATE ROLE {role}")
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {role}")
        admin.execute(f"DETACH RLS POLICY {n['pol']} ON {n['cat']} FROM ROLE {n['analyst']}")
        assert read() == []  # no policy reaches her: no rows
        admin.execute(f"GRANT ROLE {role} TO {n['alice']}")
        assert read() == [6, 7]
        admin.execute(f"REVOKE ROLE {role} FROM {n['alice']}")
        assert read() == []
        admin.execute(f"DROP RLS POLICY {n['pol']} CASCADE")
        admin.execute(f"DROP TABLE {lookup}")
        admin.execute(f"DROP ROLE {role} FORCE")


def row_functions(table_oid: int) -> list[str]:
    """What shiftguard made for a table whose policies read lookup tables (catalog/rls.sql)."""
    return [f'shiftguard_rows."rls@{table_oid}"(tid,name)', f'shiftguard_rows."rls@{table_oid}:latest"(tid,name)',
            f'shiftguard."rls@{table_oid}:rows"', "shiftguard_rls_rows policy"]


def present(postgres, table_oid: int) -> list[str]:
    with postgres.connect() as direct:
        direct.execute("SET search_path = pg_catalog")
        found = [r[0] for r in direct.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p "
            "WHERE p.pronamespace = 'shiftguard_rows'::regnamespace AND p.proname IN (%s, %s) "
            "UNION ALL SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = to_regclass(%s) "
            "UNION ALL SELECT 'shiftguard_rls_rows policy' FROM pg_policy "
            "WHERE polrelid = %s AND polname = 'shiftguard_rls_rows'",
            (f"rls@{table_oid}", f"rls@{table_oid}:latest", f'shiftguard."rls@{table_oid}:rows"', table_oid))]
    return sorted(found)


def test_the_tables_row_functions_come_and_go_with_its_lookup_policies(proxy, postgres, world):
    """A table whose attached policies read lookup tables gets its row functions, row view and the
    policy that lets them read it while RLS is on; RLS OFF, DETACH, DROP RLS POLICY ... CASCADE
    and dropping the table (through the proxy, or with CASCADE out of its sight) take them away."""
    n = world
    with proxy.connect() as admin:
        lookup = lookup_table(admin, n)
        oid = admin.execute("SELECT %s::regclass::oid", (n["cat"],)).fetchone()[0]
        expected = sorted(row_functions(oid))
        assert present(postgres, oid) == expected
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY OFF")
        assert present(postgres, oid) == []
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")
        assert present(postgres, oid) == expected
        admin.execute(f"DETACH RLS POLICY {n['pol']} ON {n['cat']} FROM ROLE {n['analyst']}")
        assert present(postgres, oid) == []
        assert ids(proxy, n["alice"], n["cat"]) == []
        admin.execute(f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO ROLE {n['analyst']}")
        assert present(postgres, oid) == expected
        assert ids(proxy, n["alice"], n["cat"]) == [6, 7]
        admin.execute(f"DROP RLS POLICY {n['pol']} CASCADE")
        assert present(postgres, oid) == []
        for drop in ("DROP TABLE {t}", "DO $$BEGIN EXECUTE 'DROP TABLE {t} CASCADE'; END$$"):
            table = unique("t")
            admin.execute(f"CREATE TABLE {table} (catid int, catgroup varchar(10))")
            admin.execute(f"CREATE RLS POLICY {n['pol2']} WITH (catgroup varchar(10)) USING (catgroup IN "
                          f"(SELECT e.catgroup FROM {lookup} e))")
            admin.execute(f"ATTACH RLS POLICY {n['pol2']} ON {table} TO PUBLIC")
            admin.execute(f"ALTER TABLE {table} ROW LEVEL SECURITY ON")
            table_oid = admin.execute("SELECT %s::regclass::oid", (table,)).fetchone()[0]
            assert present(postgres, table_oid) == sorted(row_functions(table_oid))
            admin.execute(drop.format(t=table))
            assert present(postgres, table_oid) == []
            admin.execute(f"DROP RLS POLICY {n['pol2']}")  # nothing attached any more
        admin.execute(f"DROP TABLE {lookup}")


def test_lookup_predicates_are_not_evaluated_on_written_values(proxy, world):
    """PostgreSQL checks the row an UPDATE writes (and one INSERT ... RETURNING writes) against
    the policy as if reading it; a predicate that reads a lookup table lets such a row through
    (evaluated on values the user chose, it would tell what the lookup table lets through).
    Redshift does not filter what UPDATE writes; the row is hidden from then on."""
    n = world
    with proxy.connect() as admin:
        lookup = lookup_table(admin, n)
    with proxy.connect(n["alice"], PASSWORD) as alice:
        assert alice.execute(f"UPDATE {n['cat']} SET catgroup = 'Sports' WHERE catid = 6 "
                             "RETURNING catid, catgroup").fetchall() == [(6, "Sports")]
        assert alice.execute(f"INSERT INTO {n['cat']} VALUES (30, 'Sports', 'Golf') "
                             "RETURNING catid, catgroup").fetchall() == [(30, "Sports")]
        assert [r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")] == [7]
    with proxy.connect() as admin:
        admin.execute(f"DROP RLS POLICY {n['pol']} CASCADE")
        admin.execute(f"DROP TABLE {lookup}")


def test_a_row_updated_meanwhile_is_checked_again_in_its_new_version(proxy, world):
    """READ COMMITTED: an UPDATE, DELETE or SELECT ... FOR UPDATE waiting for another session's
    update of a row checks the policy again on the row's new version (PostgreSQL's
    EvalPlanQual), which the statement's own snapshot cannot see: the predicate reading the
    lookup table reads it again with a snapshot of its own, and the statement goes on with it."""
    n = world
    with proxy.connect() as admin:
        lookup = lookup_table(admin, n)
    statements = [(f"UPDATE {n['cat']} SET catname = catname || '+b' WHERE catid = 6 RETURNING catname", "first0+b"),
                  (f"SELECT catname FROM {n['cat']} WHERE catid = 6 FOR UPDATE", "first1"),
                  (f"DELETE FROM {n['cat']} WHERE catid = 6 RETURNING catname", "first2")]
    with proxy.connect(n["alice"], PASSWORD) as first, proxy.connect(n["alice"], PASSWORD) as second:
        for i, (statement, expected) in enumerate(statements):
            first.execute("BEGIN")
            first.execute(f"UPDATE {n['cat']} SET catname = 'first{i}' WHERE catid = 6")
            result: dict = {}
            waiting = threading.Thread(target=lambda: result.update(rows=second.execute(statement).fetchall()))
            waiting.start()
            time.sleep(0.5)
            assert waiting.is_alive()  # it waits for the row's lock
            first.execute("COMMIT")
            waiting.join(10)
            assert result["rows"] == [(expected,)], statement
        assert [r[0] for r in first.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")] == [7]
    with proxy.connect() as admin:
        admin.execute(f"DROP RLS POLICY {n['pol']} CASCADE")
        admin.execute(f"DROP TABLE {lookup}")


def _entitled_table(proxy, user: str, t: str, lookup: str, pol: str, entitled: tuple) -> int:
    """t (k 1 to 10) with RLS on, its one policy reading the lookup table: the user sees the k
    the lookup table lists for them. Returns t's oid."""
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {t} (k int, v text)")
        admin.execute(f"INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 10) g")
        admin.execute(f"CREATE TABLE {lookup} (username varchar(64), k int)")
        admin.cursor().executemany(f"INSERT INTO {lookup} VALUES (%s, %s)", [(user, k) for k in entitled])
        admin.execute(f"GRANT SELECT ON {t} TO {user}")
        admin.execute(f"CREATE RLS POLICY {pol} WITH (k int) USING (k IN "
                      f"(SELECT e.k FROM {lookup} e WHERE e.username = current_user))")
        admin.execute(f"ATTACH RLS POLICY {pol} ON {t} TO PUBLIC")
        admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
        return admin.execute("SELECT %s::regclass::oid", (t,)).fetchone()[0]


def test_lookup_policies_of_an_older_version_are_carried_over(make_proxy, postgres):
    """A database bootstrapped by a version that made a policy reading a lookup table a SECURITY
    DEFINER function anyone could call (the oracle): a proxy starting makes it the invoker form
    nobody may call, bound to the same objects, and the table's row security is made again."""
    proxy = make_proxy()
    user, t, lookup, pol = unique("u"), unique("t"), unique("entitled"), unique("p")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{PASSWORD}'")
    oid = _entitled_table(proxy, user, t, lookup, pol, (3, 5, 4242))
    oracle = f"SELECT string_agg(g::text, ',') FROM generate_series(1, 5000) g WHERE shiftguard.\"rls:{pol}\"(g)"
    with postgres.connect() as direct:  # what the older version made of it
        direct.execute("SET search_path = pg_catalog")
        installed_by_an_older_version(direct)
        for statement in (f"DROP POLICY shiftguard_rls ON public.{t}", f"DROP POLICY shiftguard_rls_rows ON public.{t}",
                          f'DROP FUNCTION shiftguard_rows."rls@{oid}"(tid, name), shiftguard_rows."rls@{oid}:latest"(tid, name)',
                          f'DROP VIEW shiftguard."rls@{oid}:rows"',
                          f'DROP FUNCTION shiftguard_rows."rls:{pol}"(name, integer)',
                          f'CREATE FUNCTION shiftguard."rls:{pol}"(k integer) RETURNS boolean LANGUAGE sql STABLE '
                          f"SECURITY DEFINER BEGIN ATOMIC SELECT coalesce((k IN (SELECT e.k FROM public.{lookup} e "
                          f"WHERE e.username::text = session_user))::pg_catalog.bool, false) "
                          f"FROM (SELECT $1 AS k) AS {pol}; END",
                          f'ALTER FUNCTION shiftguard."rls:{pol}"(integer) OWNER TO shiftguard_rls',
                          f'GRANT EXECUTE ON FUNCTION shiftguard."rls:{pol}"(integer) TO PUBLIC',
                          f"CREATE POLICY shiftguard_rls ON public.{t} AS PERMISSIVE FOR ALL TO PUBLIC USING "
                          f"((SELECT shiftguard.rls_exempt()) OR ((SELECT shiftguard.rls_applies('{pol}', {oid})) AND "
                          f"(NOT (SELECT shiftguard.rls_applies('{pol}', {oid})) OR shiftguard.\"rls:{pol}\"(k)))) "
                          "WITH CHECK (true)"):
            direct.execute(statement)
    with proxy.connect(user, PASSWORD) as conn:
        assert [r[0] for r in conn.execute(f"SELECT k FROM {t} ORDER BY 1")] == [3, 5]
        assert conn.execute(oracle).fetchone() == ("3,5,4242",)  # the hole this closes
    make_proxy()
    with postgres.connect() as direct:
        assert direct.execute("SELECT proretset, prosecdef, has_function_privilege(%s, oid, 'EXECUTE') FROM pg_proc "
                              "WHERE pronamespace = 'shiftguard_rows'::regnamespace AND proname = %s",
                              (user, f"rls:{pol}")).fetchone() == (True, False, False)
    assert present(postgres, oid) == sorted(row_functions(oid))
    with proxy.connect(user, PASSWORD) as conn:
        assert [r[0] for r in conn.execute(f"SELECT k FROM {t} ORDER BY 1")] == [3, 5]
        with pytest.raises(psycopg.Error):
            conn.execute(oracle)
    with proxy.connect() as admin:
        admin.execute(f"DROP RLS POLICY {pol} CASCADE")
        admin.execute(f"DROP TABLE {t}, {lookup}")
        admin.execute(f"DROP USER {user}")


def _lookup_policy_made_by_session_user_version(proxy, postgres, user, t, lookup, pol, predicate_function):
    """A policy reading a lookup table, its functions as the version before the reader
    parameter made them (the querying user written session_user, rls@<oid>(tid))."""
    oid = _entitled_table(proxy, user, t, lookup, pol, (3, 5))
    with postgres.connect() as direct:
        direct.execute("SET search_path = pg_catalog")
        installed_by_an_older_version(direct)
        for statement in (f"DROP POLICY shiftguard_rls ON public.{t}",
                          f'DROP FUNCTION shiftguard_rows."rls@{oid}"(tid, name), '
                          f'shiftguard_rows."rls@{oid}:latest"(tid, name)',
                          f'DROP FUNCTION shiftguard_rows."rls:{pol}"(name, integer)',
                          predicate_function,
                          f'ALTER FUNCTION shiftguard_rows."rls:{pol}"(integer) OWNER TO shiftguard_rls',
                          f'REVOKE ALL ON FUNCTION shiftguard_rows."rls:{pol}"(integer) FROM PUBLIC',
                          *(f'CREATE FUNCTION shiftguard_rows."rls@{oid}{suffix}"(tid) RETURNS bool LANGUAGE sql '
                            f'STABLE SECURITY DEFINER BEGIN ATOMIC SELECT true FROM shiftguard."rls@{oid}:rows" r '
                            f'CROSS JOIN LATERAL shiftguard_rows."rls:{pol}"(r.k) p (ok) WHERE r.ctid = $1 AND p.ok; END'
                            for suffix in ("", ":latest")),
                          *(f'ALTER FUNCTION shiftguard_rows."rls@{oid}{suffix}"(tid) OWNER TO shiftguard_rls'
                            for suffix in ("", ":latest")),
                          f"CREATE POLICY shiftguard_rls ON public.{t} AS PERMISSIVE FOR ALL TO PUBLIC USING "
                          f"((SELECT shiftguard.rls_exempt()) OR ((SELECT shiftguard.rls_applies('{pol}', {oid})) AND "
                          f"(NOT (SELECT shiftguard.rls_applies('{pol}', {oid})) OR "
                          f"shiftguard_rows.\"rls@{oid}\"(ctid)))) WITH CHECK (true)"):
            direct.execute(statement)
    return oid


def test_lookup_policies_that_took_session_user_for_the_reader_are_made_again(make_proxy, postgres):
    """The version before took the querying user of a predicate reading lookup tables for
    session_user (an admin's ANALYZE running a user's index expression read as the admin). A
    proxy starting makes the policy's functions again with the reader passed in, bound to the
    same lookup table: the user still sees the rows the lookup table gives them, and no
    function of the old form is left."""
    proxy = make_proxy()
    user, t, lookup, pol = unique("u"), unique("t"), unique("entitled"), unique("p")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{PASSWORD}'")
    oid = _lookup_policy_made_by_session_user_version(
        proxy, postgres, user, t, lookup, pol,
        f'CREATE FUNCTION shiftguard_rows."rls:{pol}"(k integer) RETURNS SETOF boolean LANGUAGE sql STABLE '
        f"BEGIN ATOMIC SELECT true FROM (SELECT $1 AS k) AS {pol} WHERE (k IN (SELECT e.k FROM public.{lookup} e "
        f"WHERE e.username::text = session_user))::pg_catalog.bool; END")
    with proxy.connect(user, PASSWORD) as conn:
        assert [r[0] for r in conn.execute(f"SELECT k FROM {t} ORDER BY 1")] == [3, 5]
    make_proxy()
    with postgres.connect() as direct:
        assert direct.execute("SELECT pg_get_function_identity_arguments(oid) FROM pg_proc "
                              "WHERE pronamespace = 'shiftguard_rows'::regnamespace AND proname = %s",
                              (f"rls:{pol}",)).fetchall() == [("name, k integer",)]
        assert "session_user" not in direct.execute("SELECT lower(pg_get_function_sqlbody(%s::regprocedure))",
                                                    (f'shiftguard_rows."rls:{pol}"(name, integer)',)).fetchone()[0]
    assert present(postgres, oid) == sorted(row_functions(oid))
    with proxy.connect(user, PASSWORD) as conn:
        assert [r[0] for r in conn.execute(f"SELECT k FROM {t} ORDER BY 1")] == [3, 5]
    with proxy.connect() as admin:
        admin.execute(f"DROP RLS POLICY {pol} CASCADE")
        admin.execute(f"DROP TABLE {t}, {lookup}")
        admin.execute(f"DROP USER {user}")


def test_a_lookup_policy_that_cannot_be_carried_over_is_refused_until_given_again(make_proxy, postgres):
    """A stored predicate the proxy cannot read again (here: made unreadable) is not guessed
    at: reading the tables it is attached to fails with an error that names the policy and
    says what to do, and ALTER RLS POLICY gives it again."""
    proxy = make_proxy()
    user, t, lookup, pol = unique("u"), unique("t"), unique("entitled"), unique("p")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{PASSWORD}'")
    _lookup_policy_made_by_session_user_version(
        proxy, postgres, user, t, lookup, pol,
        f'CREATE FUNCTION shiftguard_rows."rls:{pol}"(k integer) RETURNS SETOF boolean LANGUAGE sql STABLE '
        f"BEGIN ATOMIC SELECT true FROM (SELECT $1 AS k) AS {pol} WHERE (k IN (SELECT e.k FROM public.{lookup} e "
        f"WHERE e.username::text = session_user))::pg_catalog.bool; END")
    with postgres.connect() as direct:
        direct.execute("UPDATE shiftguard_rows.rls_policies SET predicate = 'k IN (SELECT' WHERE name = %s", (pol,))
    make_proxy()
    with proxy.connect(user, PASSWORD) as conn:
        with pytest.raises(psycopg.Error, match=f'RLS policy "{pol}" could not be carried over') as caught:
            conn.execute(f"SELECT k FROM {t}")
        assert f"ALTER RLS POLICY {pol} USING" in caught.value.diag.message_hint
    with proxy.connect() as admin:
        admin.execute(f"ALTER RLS POLICY {pol} USING (k IN (SELECT e.k FROM {lookup} e WHERE e.username = current_user))")
    with proxy.connect(user, PASSWORD) as conn:
        assert [r[0] for r in conn.execute(f"SELECT k FROM {t} ORDER BY 1")] == [3, 5]
    with proxy.connect() as admin:
        admin.execute(f"DROP RLS POLICY {pol} CASCADE")
        admin.execute(f"DROP TABLE {t}, {lookup}")
        admin.execute(f"DROP USER {user}")
