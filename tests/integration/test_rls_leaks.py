"""The owner of an RLS-protected table, whom no policy lets see the hidden rows, tries every way
we know to read them or to switch row security off. Every attempt must come back without a
hidden row; the summary line says how many were made."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique
from .test_bypass import simple

PASSWORD = "Secret123"
HIDDEN = "SECRET"   # in every hidden row's name
ORACLE = "LEAKED"   # what an attempt selects when it has found a hidden row


def attempts(t: str, me: str) -> list[str]:
    other = f"{t}_copy"
    return [
        f"SELECT * FROM {t}",
        f"SELECT * FROM {t} WHERE catgroup = 'Sports'",
        f"SELECT * FROM ONLY {t}",
        f"SELECT * FROM {t} TABLESAMPLE SYSTEM (100)",
        f"SELECT * FROM {t} FOR UPDATE",
        f"WITH x AS (SELECT * FROM {t}) SELECT * FROM x",
        f"WITH RECURSIVE x AS (SELECT catname FROM {t}) SELECT * FROM x",
        f"SELECT * FROM (SELECT * FROM {t}) s",
        f"SELECT (SELECT string_agg(catname, ',') FROM {t})",
        f"SELECT '{ORACLE}' WHERE EXISTS (SELECT FROM {t} WHERE catgroup <> 'Concerts')",
        f"SELECT '{ORACLE}' FROM {t} HAVING count(*) > 3",
        f"SELECT CASE WHEN EXISTS (SELECT FROM {t} WHERE catgroup = 'Sports') THEN 1/zero END "
        "FROM (SELECT 0 AS zero OFFSET 0) z",
        f"SELECT * FROM {t} WHERE catname::int = 1",
        f"SELECT * FROM {t} WHERE 1/(CASE WHEN catgroup = 'Sports' THEN 0 ELSE 1 END) = 1",
        # a function that raises its argument: the policy's filter must run first
        f"CREATE FUNCTION leak_{me}(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS "
        f"$$BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END$$; SELECT * FROM {t} WHERE leak_{me}(catname)",
        f"CREATE FUNCTION rows_{me}() RETURNS SETOF {t} LANGUAGE sql AS $$SELECT * FROM {t}$$; "
        f"SELECT * FROM rows_{me}()",
        f"CREATE FUNCTION def_{me}() RETURNS SETOF {t} LANGUAGE sql SECURITY DEFINER AS $$SELECT * FROM {t}$$; "
        f"SELECT * FROM def_{me}()",
        f"DO $$DECLARE r record; BEGIN FOR r IN SELECT * FROM {t} LOOP RAISE NOTICE '%', r.catname; END LOOP; END$$",
        f"CREATE VIEW v_{me} AS SELECT * FROM {t}; SELECT * FROM v_{me}",
        f"CREATE VIEW vb_{me} WITH (security_barrier = false) AS SELECT * FROM {t}; SELECT * FROM vb_{me}",
        f"CREATE MATERIALIZED VIEW mv_{me} AS SELECT * FROM {t}; SELECT * FROM mv_{me}",
        f"CREATE TABLE {other} AS SELECT * FROM {t}; SELECT * FROM {other}",
        f"SELECT * INTO {other}2 FROM {t}; SELECT * FROM {other}2",
        f"PREPARE p_{me} AS SELECT * FROM {t}; EXECUTE p_{me}",
        f"BEGIN; DECLARE c CURSOR FOR SELECT * FROM {t}; FETCH ALL FROM c; COMMIT",
        f"UPDATE {t} SET catid = catid RETURNING *",
        f"DELETE FROM {t} WHERE catgroup = 'Sports' RETURNING *",
        f"EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) SELECT * FROM {t} WHERE catgroup = 'Sports'",
        f"EXPLAIN ANALYZE SELECT count(*) FROM {t}",
        f"EXPLAIN VERBOSE SELECT * FROM {t}",
        f"ANALYZE {t}; SELECT most_common_vals::text FROM pg_stats WHERE tablename = '{t}'",
        f"ANALYZE {t}; SELECT histogram_bounds::text FROM pg_stats WHERE tablename = '{t}'",
        # switching row security off, in the proxy's sight and out of it
        f"SET row_security = off; SELECT * FROM {t}",
        f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY; SELECT * FROM {t}",
        f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY; SELECT * FROM {t}",
        f"DO $$BEGIN EXECUTE 'ALTER TABLE {t} DISABLE ROW LEVEL SECURITY'; END$$; SELECT * FROM {t}",
        f"DO $$BEGIN EXECUTE 'ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY'; END$$; SELECT * FROM {t}",
        f"DROP POLICY shiftguard_rls ON {t}; SELECT * FROM {t}",
        f"DO $$BEGIN EXECUTE 'DROP POLICY shiftguard_rls ON {t}'; END$$; SELECT * FROM {t}",
        f"CREATE POLICY open ON {t} USING (true); SELECT * FROM {t}",
        f"DO $$BEGIN EXECUTE 'CREATE POLICY open ON {t} USING (true)'; END$$; SELECT * FROM {t}",
        f"DO $$BEGIN EXECUTE 'ALTER POLICY shiftguard_rls ON {t} USING (true)'; END$$; SELECT * FROM {t}",
        f"ALTER TABLE {t} ROW LEVEL SECURITY OFF; SELECT * FROM {t}",
        f"DETACH RLS POLICY concerts_{me} ON {t} FROM {me}; SELECT * FROM {t}",
        f"CREATE OR REPLACE FUNCTION shiftguard.rls_exempt() RETURNS boolean LANGUAGE sql AS 'SELECT true'; "
        f"SELECT * FROM {t}",
        f"CREATE FUNCTION public.rls_exempt() RETURNS boolean LANGUAGE sql AS 'SELECT true'; "
        f"SET search_path = public, shiftguard; SELECT * FROM {t}",
        f"SELECT * FROM shiftguard.rls_attachments",
        f"INSERT INTO shiftguard.rls_attachments VALUES ('concerts_{me}', '{t}'::regclass, '', 'public', 'x')",
        f"ALTER TABLE {t} DROP COLUMN catgroup; SELECT * FROM {t}",
        f"ALTER TABLE {t} ALTER COLUMN catgroup TYPE text; SELECT * FROM {t}",
        f"ALTER TABLE {t} RENAME COLUMN catgroup TO g; SELECT * FROM {t}",
        f"SET SESSION AUTHORIZATION awsuser; SELECT * FROM {t}",
        f"COPY {t} TO STDOUT",
        f"COPY (SELECT * FROM {t}) TO STDOUT",
        *inheritance_attempts(t, me),
    ]


def inheritance_attempts(t: str, me: str) -> list[str]:
    """The owner links the protected table to a table of its own: PostgreSQL applies only the row
    security of the table a query names, so rows read through a parent escape the child's
    policies. In the proxy's sight, from DO blocks and from function bodies; as child, as
    partition, as parent. Each ends in a read that shows hidden rows, or in ORACLE, if the link
    was made."""
    return [
        f"CREATE TABLE {me}_p1 (LIKE {t}); ALTER TABLE {t} INHERIT {me}_p1; SELECT * FROM {me}_p1",
        f"CREATE TABLE {me}_p2 (LIKE {t}); DO $$BEGIN EXECUTE 'ALTER TABLE {t} INHERIT {me}_p2'; END$$; "
        f"SELECT * FROM {me}_p2",
        f"CREATE TABLE {me}_p3 (LIKE {t}); CREATE FUNCTION inh_{me}() RETURNS void LANGUAGE plpgsql AS "
        f"$$BEGIN ALTER TABLE {t} INHERIT {me}_p3; END$$; SELECT inh_{me}(); SELECT * FROM {me}_p3",
        f"CREATE TABLE {me}_p4 (LIKE {t}); CREATE FUNCTION inhs_{me}() RETURNS void LANGUAGE sql AS "
        f"$$ALTER TABLE {t} INHERIT {me}_p4$$; SELECT inhs_{me}(); SELECT * FROM {me}_p4",
        f"CREATE TABLE {me}_p5 (LIKE {t}); CREATE PROCEDURE inhp_{me}() LANGUAGE plpgsql AS "
        f"$$BEGIN EXECUTE format('ALTER TABLE %I INHERIT %I', '{t}', '{me}_p5'); END$$; CALL inhp_{me}(); "
        f"SELECT * FROM {me}_p5",
        f"CREATE TABLE {me}_p6 (LIKE {t}); DO $$BEGIN ALTER TABLE {t} INHERIT {me}_p6; "
        f"EXCEPTION WHEN others THEN NULL; END$$; SELECT * FROM {me}_p6",
        f"CREATE TABLE {me}_g1 (LIKE {t}); CREATE TABLE {me}_g2 () INHERITS ({me}_g1); "
        f"ALTER TABLE {t} INHERIT {me}_g2; SELECT * FROM {me}_g1",
        f"CREATE TABLE {me}_l1 (LIKE {t}) PARTITION BY LIST (catid); "
        f"ALTER TABLE {me}_l1 ATTACH PARTITION {t} FOR VALUES IN (1, 6, 9, 10); SELECT * FROM {me}_l1",
        f"CREATE TABLE {me}_l2 (LIKE {t}) PARTITION BY LIST (catid); ALTER TABLE {me}_l2 ATTACH PARTITION {t} DEFAULT; "
        f"SELECT * FROM {me}_l2",
        f"CREATE TABLE {me}_l3 (LIKE {t}) PARTITION BY RANGE (catid); DO $$BEGIN ALTER TABLE {me}_l3 "
        f"ATTACH PARTITION {t} FOR VALUES FROM (MINVALUE) TO (MAXVALUE); END$$; SELECT * FROM {me}_l3",
        f"CREATE TABLE {me}_l4 (LIKE {t}) PARTITION BY LIST (catid); "
        f"DO $$BEGIN EXECUTE 'ALTER TABLE {me}_l4 ATTACH PARTITION {t} DEFAULT'; END$$; SELECT * FROM {me}_l4",
        f"CREATE TABLE {me}_l5 (LIKE {t}) PARTITION BY HASH (catid); CREATE FUNCTION att_{me}() RETURNS void "
        f"LANGUAGE sql AS $$ALTER TABLE {me}_l5 ATTACH PARTITION {t} FOR VALUES WITH (MODULUS 1, REMAINDER 0)$$; "
        f"SELECT att_{me}(); SELECT * FROM {me}_l5",
        # the protected table as the parent
        f"CREATE TABLE {me}_k1 () INHERITS ({t}); SELECT '{ORACLE}'",
        f"DO $$BEGIN CREATE TABLE {me}_k2 () INHERITS ({t}); END$$; SELECT '{ORACLE}'",
        f"CREATE TABLE {me}_k3 (LIKE {t}); ALTER TABLE {me}_k3 INHERIT {t}; SELECT '{ORACLE}'",
        f"CREATE TABLE {me}_k4 (LIKE {t}); DO $$BEGIN ALTER TABLE {me}_k4 INHERIT {t}; END$$; SELECT '{ORACLE}'",
        f"CREATE FUNCTION kid_{me}() RETURNS void LANGUAGE plpgsql AS "
        f"$$BEGIN EXECUTE 'CREATE TABLE {me}_k5 () INHERITS ({t})'; END$$; SELECT kid_{me}(); SELECT '{ORACLE}'",
        f"CREATE TABLE {me}_k6 PARTITION OF {t} DEFAULT; SELECT '{ORACLE}'",
        f"CREATE TEMP TABLE {me}_k7 () INHERITS ({t}); SELECT '{ORACLE}'",
    ]


@pytest.fixture
def owned_table(proxy, postgres):
    me = unique("owner")
    t = unique("cat")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {me}")
    with proxy.connect(me, PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {t} (catid int, catgroup varchar(10), catname varchar(20))")
        owner.execute(f"INSERT INTO {t} VALUES (1, 'Sports', '{HIDDEN}_MLB'), (6, 'Shows', '{HIDDEN}_Opera'), "
                      "(9, 'Concerts', 'Pop'), (10, 'Concerts', 'Jazz')")
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY concerts_{me} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY concerts_{me} ON {t} TO {me}")
        admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
    yield t, me
    with proxy.connect() as admin:
        admin.execute(f"DROP RLS POLICY concerts_{me} CASCADE")
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {me} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {me}")
        admin.execute(f"DROP USER {me}")


def run(conn: psycopg.Connection, sql: str) -> str:
    """Everything the attempt shows its author: rows, notices, error messages."""
    seen: list[str] = []
    conn.add_notice_handler(lambda notice: seen.append(str(notice.message_primary)))
    try:
        if sql.startswith("COPY") and sql.endswith("TO STDOUT"):
            with conn.cursor().copy(sql) as copy:
                seen.extend(bytes(block).decode() for block in copy)
        else:
            seen.extend(map(str, simple(conn, sql)))
    except psycopg.Error as exc:
        seen.append(str(exc))
    return "\n".join(seen)


def _dbg(): pass

def try_all(proxy, user: str, statements: list[str], marks: tuple[str, ...],
            seen: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Each statement in a session of its own; those whose output shows one of the marks. What
    each showed goes into seen, when given."""
    leaks = []
    for sql in statements:
        with proxy.connect(user, PASSWORD) as conn:
            shown = run(conn, sql)
        if seen is not None:
            seen[sql] = shown
        if any(mark in shown for mark in marks):
            leaks.append((sql, shown[:300]))
    return leaks


def test_no_hidden_row_leaks(proxy, owned_table, postgres, capsys):
    t, me = owned_table
    tried = len(attempts(t, me))
    # "Rows Removed by Filter" would count the rows the policy hides.
    seen: dict[str, str] = {}
    leaks = try_all(proxy, me, attempts(t, me), (HIDDEN, ORACLE, "division by zero", "Rows Removed", "actual time"),
                    seen)
    leaked = len(leaks)
    for sql in inheritance_attempts(t, me):  # refused, and the error says why
        if "EXCEPTION WHEN" not in sql:
            assert f'table "{t}" has row-level security on: it cannot take part in table inheritance' in seen[sql], \
                seen[sql]
    with postgres.connect() as direct:  # row security is still as it was set
        assert direct.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                              (t,)).fetchone() == (True, True)
        assert direct.execute("SELECT array_agg(polname) FROM pg_policy WHERE polrelid = %s::regclass",
                              (t,)).fetchone() == (["shiftguard_rls"],)
        assert direct.execute("SELECT count(*) FROM pg_inherits WHERE %s::regclass IN (inhrelid, inhparent)",
                              (t,)).fetchone() == (0,)  # neither parent nor child of anything
        hidden = direct.execute(f"SELECT count(*) FROM {t} WHERE catname LIKE '{HIDDEN}%'").fetchone()
        assert hidden == (2,)  # and nothing was deleted by the attempts that could not see them
    with proxy.connect(me, PASSWORD) as conn:  # the owner still sees what the policy shows
        assert sorted(r[0] for r in conn.execute(f"SELECT catid FROM {t}")) == [9, 10]
    with capsys.disabled():
        print(f"\nleak attempts: {tried}, leaked: {leaked}")
    assert tried >= 70
    assert leaks == []


def test_procedures_called_directly_give_no_more_rights(proxy, postgres):
    """An RLS admin (sys:secadmin, not a superuser) calls the private procedures with JSON of
    its own making, and a user calls drop_objects with a crafted kind: nothing runs with the
    management role's rights."""
    me = unique("secadmin")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
        admin.execute(f"GRANT ROLE sys:secadmin TO {me}")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {me}")
    with proxy.connect(me, PASSWORD) as conn:
        conn.execute(f"CREATE TABLE {me}_t (a int)")  # its own: the ownership check passes
    escalate = f"ALTER ROLE {me} SUPERUSER"
    attempts = [
        ('{"name": "i1", "columns": [{"colname": "a", "type": "int) RETURNS boolean LANGUAGE sql AS $x$SELECT true$x$; '
         + escalate + '; --"}], "expression": "true", "lookups": []}'),
        ('{"name": "i2", "columns": [], "expression": "true)::boolean, false); ' + escalate
         + '; SELECT (true", "lookups": []}'),
        ('{"name": "i3\\"(); ' + escalate + '; --", "columns": [], "expression": "true", "lookups": []}'),
        '{"name": "i4", "columns": [], "expression": "true", "lookups": ["pg_authid"]}',
    ]
    with proxy.connect(me, PASSWORD) as conn:
        for spec in attempts:
            try:
                conn.execute("CALL shiftguard.create_rls_policy(%s, %s, 'public')", (spec, "0" * 64))
                conn.execute(f"ATTACH RLS POLICY i2 ON {me}_t TO PUBLIC") if '"i2"' in spec else None
            except psycopg.Error:
                pass
        try:
            conn.execute("CALL shiftguard.drop_objects(%s, ARRAY[%s::regclass]::oid[], ARRAY['x'], false, false)",
                         (f"TABLE public.{me}_t; {escalate}; DROP TABLE IF EXISTS", f"{me}_t"))
        except psycopg.Error:
            pass
    with postgres.connect() as direct:
        assert direct.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (me,)).fetchone() == (False,)
        direct.execute(f"DROP TABLE IF EXISTS {me}_t")
        direct.execute(f"REVOKE CREATE ON SCHEMA public FROM {me}")
    with proxy.connect() as admin:
        for name in ("i1", "i2", 'i3"(); ' + escalate + "; --", "i4"):
            admin.execute(f"DROP RLS POLICY IF EXISTS \"{name.replace(chr(34), chr(34) * 2)}\" CASCADE")
        admin.execute(f"DROP USER {me}")
