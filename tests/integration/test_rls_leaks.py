"""The owner of an RLS-protected table, whom no policy lets see the hidden rows, tries every way
we know to read them or to switch row security off. Every attempt must come back without a
hidden row; the summary line says how many were made."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import made_before, unique
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
        f"SELECT * FROM {t} WHERE leak_{me}(catname)",  # the functions: functions_made_before
        f"SELECT * FROM rows_{me}()",
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
        f"SELECT * FROM shiftguard_rows.rls_attachments",
        f"INSERT INTO shiftguard_rows.rls_attachments VALUES ('concerts_{me}', '{t}'::regclass, '', 'public', 'x')",
        f"ALTER TABLE {t} DROP COLUMN catgroup; SELECT * FROM {t}",
        f"ALTER TABLE {t} ALTER COLUMN catgroup TYPE text; SELECT * FROM {t}",
        f"ALTER TABLE {t} RENAME COLUMN catgroup TO g; SELECT * FROM {t}",
        f"SET SESSION AUTHORIZATION awsuser; SELECT * FROM {t}",
        f"COPY {t} TO STDOUT",
        f"COPY (SELECT * FROM {t}) TO STDOUT",
        *inheritance_attempts(t, me),
        *row_code_attempts(t, me),
    ]


def inheritance_attempts(t: str, me: str) -> list[str]:
    """The owner links the protected table to a table of its own: PostgreSQL applies only the row
    security of the table a query names, so rows read through a parent escape the child's
    policies. In the proxy's sight, from DO blocks and from function bodies; as child, as
    partition, as parent. Each ends in a read that shows hidden rows, or in ORACLE, if the link
    was made. The functions are made before (functions_made_before)."""
    return [
        f"CREATE TABLE {me}_p1 (LIKE {t}); ALTER TABLE {t} INHERIT {me}_p1; SELECT * FROM {me}_p1",
        f"CREATE TABLE {me}_p2 (LIKE {t}); DO $$BEGIN EXECUTE 'ALTER TABLE {t} INHERIT {me}_p2'; END$$; "
        f"SELECT * FROM {me}_p2",
        f"CREATE TABLE {me}_p3 (LIKE {t}); SELECT inh_{me}(); SELECT * FROM {me}_p3",
        f"CREATE TABLE {me}_p4 (LIKE {t}); SELECT inhs_{me}(); SELECT * FROM {me}_p4",
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
        f"CREATE TABLE {me}_l5 (LIKE {t}) PARTITION BY HASH (catid); SELECT att_{me}(); SELECT * FROM {me}_l5",
        # the protected table as the parent
        f"CREATE TABLE {me}_k1 () INHERITS ({t}); SELECT '{ORACLE}'",
        f"DO $$BEGIN CREATE TABLE {me}_k2 () INHERITS ({t}); END$$; SELECT '{ORACLE}'",
        f"CREATE TABLE {me}_k3 (LIKE {t}); ALTER TABLE {me}_k3 INHERIT {t}; SELECT '{ORACLE}'",
        f"CREATE TABLE {me}_k4 (LIKE {t}); DO $$BEGIN ALTER TABLE {me}_k4 INHERIT {t}; END$$; SELECT '{ORACLE}'",
        f"SELECT kid_{me}(); SELECT '{ORACLE}'",
        f"CREATE TABLE {me}_k6 PARTITION OF {t} DEFAULT; SELECT '{ORACLE}'",
        f"CREATE TEMP TABLE {me}_k7 () INHERITS ({t}); SELECT '{ORACLE}'",
    ]


def peek(me: str) -> str:
    """A function of the owner's that shows every value it is given (falsely IMMUTABLE, as index
    expressions and statistics require), created by the attempt itself."""
    return (f"CREATE OR REPLACE FUNCTION peek_{me}(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS "
            f"$$BEGIN RAISE NOTICE 'saw %', $1; RETURN $1; END$$; ")


def functions_made_before(t: str, me: str) -> list[str]:
    """The owner's functions that the attempts call: PL/pgSQL ones, SQL ones that read a table or
    run DDL. Users may not make them any more (catalog/users_code.sql); made before that refusal
    (made_before), they still exist on upgraded clusters, and the defences behind it must hold."""
    return [
        # shows every value it is given (falsely IMMUTABLE, as index expressions and statistics
        # require): the policy's filter must run first, and no index or constraint may run it
        f"CREATE FUNCTION public.peek_{me}(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS "
        f"$$BEGIN RAISE NOTICE 'saw %', $1; RETURN $1; END$$",
        f"CREATE FUNCTION public.leak_{me}(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS "
        f"$$BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END$$",
        f"CREATE FUNCTION public.rows_{me}() RETURNS SETOF public.{t} LANGUAGE sql AS $$SELECT * FROM public.{t}$$",
        f"CREATE FUNCTION public.def_{me}() RETURNS SETOF public.{t} LANGUAGE sql SECURITY DEFINER AS "
        f"$$SELECT * FROM public.{t}$$",
        # DDL from function bodies (inheritance_attempts, row_code_attempts)
        f"CREATE FUNCTION public.inh_{me}() RETURNS void LANGUAGE plpgsql AS "
        f"$$BEGIN ALTER TABLE {t} INHERIT {me}_p3; END$$",
        f"CREATE FUNCTION public.inhs_{me}() RETURNS void LANGUAGE sql AS $$ALTER TABLE {t} INHERIT {me}_p4$$",
        f"CREATE FUNCTION public.att_{me}() RETURNS void LANGUAGE sql AS "
        f"$$ALTER TABLE {me}_l5 ATTACH PARTITION {t} FOR VALUES WITH (MODULUS 1, REMAINDER 0)$$",
        f"CREATE FUNCTION public.kid_{me}() RETURNS void LANGUAGE plpgsql AS "
        f"$$BEGIN EXECUTE 'CREATE TABLE {me}_k5 () INHERITS ({t})'; END$$",
        f"CREATE FUNCTION public.ix_{me}() RETURNS void LANGUAGE sql AS $$CREATE INDEX ON {t} ((peek_{me}(catname)))$$",
        f"CREATE FUNCTION public.ixp_{me}() RETURNS void LANGUAGE plpgsql AS "
        f"$$BEGIN CREATE INDEX ON {t} (catid) WHERE peek_{me}(catname) <> ''; END$$",
        f"CREATE FUNCTION public.chk_{me}() RETURNS void LANGUAGE sql AS "
        f"$$ALTER TABLE {t} ADD CONSTRAINT n_{me} CHECK (catname::int > 0)$$",
        f"CREATE FUNCTION public.fk_{me}() RETURNS void LANGUAGE plpgsql AS $$BEGIN EXECUTE 'ALTER TABLE {t} "
        f"ADD FOREIGN KEY (catname) REFERENCES {me}_keys4 ON DELETE CASCADE'; END$$",
    ]


def row_code_attempts(t: str, me: str) -> list[str]:
    """The owner makes PostgreSQL run code of its own, or a built-in whose error quotes the value,
    over every row of the table, hidden ones too: index builds, constraint validation, table
    rewrites, ANALYZE of statistics on expressions, ATTACH PARTITION under a parent with such an
    index or foreign key. In the proxy's sight, from DO blocks (static and EXECUTE), from SQL and
    PL/pgSQL functions and from procedures (peek and the functions: functions_made_before). Each
    shows a hidden value (HIDDEN) or says ORACLE, or fails (the caught variants say what
    PostgreSQL said)."""
    f = f"peek_{me}"
    return [
        # expression and partial indexes: the build computes them over every row
        f"CREATE INDEX ON {t} (({f}(catname)))",
        f"CREATE UNIQUE INDEX ON {t} (catid, ({f}(catname)))",
        f"DO $$BEGIN CREATE INDEX ON {t} (({f}(catname))); END$$",
        f"DO $$BEGIN EXECUTE format('CREATE INDEX ON %I ((%I(catname)))', '{t}', '{f}'); END$$",
        f"CREATE INDEX ON {t} (catid) WHERE {f}(catname) IS NOT NULL",
        f"SELECT ix_{me}()",
        f"SELECT ixp_{me}()",
        f"CREATE PROCEDURE ixc_{me}() LANGUAGE plpgsql AS "
        f"$$BEGIN EXECUTE 'CREATE INDEX ON {t} (({f}(catname)))'; END$$; CALL ixc_{me}()",
        f"DO $$BEGIN CREATE INDEX ON {t} (({f}(catname))); "
        f"EXCEPTION WHEN others THEN RAISE NOTICE 'failed: %', SQLERRM; END$$",
        # with built-ins only: a partial index's size counts the hidden rows its predicate matches,
        # an expression index's statistics are gathered over every row
        f"CREATE INDEX {me}_pi ON {t} (catid) WHERE catgroup = 'Sports'; "
        f"SELECT '{ORACLE}' FROM pg_class WHERE relname = '{me}_pi' AND reltuples > 0",
        f"DO $$BEGIN CREATE INDEX {me}_pi2 ON {t} (catid) WHERE catgroup <> 'Concerts'; END$$; "
        f"SELECT '{ORACLE}' FROM pg_class WHERE relname = '{me}_pi2' AND reltuples > 0",
        f"CREATE INDEX {me}_ei ON {t} ((upper(catname))); ANALYZE {t}; "
        f"SELECT histogram_bounds::text, most_common_vals::text FROM pg_stats WHERE tablename = '{me}_ei'",
        f"DO $$BEGIN CREATE INDEX {me}_ei2 ON {t} ((upper(catname))); END$$; ANALYZE {t}; "
        f"SELECT histogram_bounds::text, most_common_vals::text FROM pg_stats WHERE tablename = '{me}_ei2'",
        # CHECK constraints: adding or validating one reads every row
        f"ALTER TABLE {t} ADD CONSTRAINT c_{me} CHECK ({f}(catname) IS NOT NULL)",
        f"DO $$BEGIN ALTER TABLE {t} ADD CONSTRAINT c_{me} CHECK ({f}(catname) IS NOT NULL); END$$",
        f"ALTER TABLE {t} ADD CONSTRAINT c_{me} CHECK ({f}(catname) IS NOT NULL) NOT VALID; "
        f"ALTER TABLE {t} VALIDATE CONSTRAINT c_{me}",
        f"DO $$BEGIN ALTER TABLE {t} ADD CONSTRAINT c_{me} CHECK ({f}(catname) IS NOT NULL) NOT VALID; "
        f"ALTER TABLE {t} VALIDATE CONSTRAINT c_{me}; END$$",
        f"DO $$BEGIN EXECUTE 'ALTER TABLE {t} ADD COLUMN k int CHECK ({f}(catname) IS NOT NULL)'; END$$",
        f"ALTER TABLE {t} ADD CONSTRAINT n_{me} CHECK (catname::int > 0)",  # the cast's error quotes the value
        f"SELECT chk_{me}()",
        f"ALTER TABLE {t} ADD CONSTRAINT g_{me} CHECK (catgroup = 'Concerts'); SELECT '{ORACLE}'",  # violated?
        f"DO $$BEGIN ALTER TABLE {t} ADD CONSTRAINT g_{me} CHECK (catgroup = 'Concerts'); "
        f"EXCEPTION WHEN check_violation THEN RAISE NOTICE '{ORACLE}'; END$$",
        # a column's type changed: the conversion runs over every row (a rewrite)
        f"ALTER TABLE {t} ALTER COLUMN catname TYPE text USING {f}(catname)",
        f"DO $$BEGIN ALTER TABLE {t} ALTER COLUMN catname TYPE text USING {f}(catname); END$$",
        f"ALTER TABLE {t} ALTER COLUMN catname TYPE int USING catname::int",
        f"CREATE PROCEDURE typ_{me}() LANGUAGE sql AS "
        f"$$ALTER TABLE {t} ALTER COLUMN catname TYPE int USING catname::int$$; CALL typ_{me}()",
        f"DO $$BEGIN ALTER TABLE {t} ALTER COLUMN catid TYPE bigint USING catid + 1/(CASE WHEN catgroup = 'Sports' "
        f"THEN 0 ELSE 1 END); END$$",
        # generated columns: computed for every row (a rewrite), and for every row written later
        f"ALTER TABLE {t} ADD COLUMN gen text GENERATED ALWAYS AS ({f}(catname)) STORED",
        f"DO $$BEGIN ALTER TABLE {t} ADD COLUMN gen text GENERATED ALWAYS AS ({f}(catname)) STORED; END$$",
        f"DO $$BEGIN EXECUTE 'ALTER TABLE {t} ADD COLUMN gen int GENERATED ALWAYS AS (catname::int) STORED'; END$$",
        # foreign keys: their checks read the table as its owner without row security, so deleting a
        # key the owner guessed fails when a hidden row holds it (and CASCADE would change hidden rows)
        f"CREATE TABLE {me}_keys (name varchar(20) PRIMARY KEY); "
        f"INSERT INTO {me}_keys VALUES ('Pop'), ('Jazz'), ('{HIDDEN[:3]}' || 'RET_MLB'); "
        f"ALTER TABLE {t} ADD FOREIGN KEY (catname) REFERENCES {me}_keys; "
        f"DELETE FROM {me}_keys WHERE name NOT IN ('Pop', 'Jazz')",
        f"CREATE TABLE {me}_keys2 (name varchar(20) PRIMARY KEY); "
        f"INSERT INTO {me}_keys2 VALUES ('Pop'), ('Jazz'), ('{HIDDEN[:3]}' || 'RET_MLB'); "
        f"DO $$BEGIN ALTER TABLE {t} ADD FOREIGN KEY (catname) REFERENCES {me}_keys2; END$$; "
        f"DO $$BEGIN DELETE FROM {me}_keys2 WHERE name NOT IN ('Pop', 'Jazz'); "
        f"EXCEPTION WHEN foreign_key_violation THEN RAISE NOTICE '{ORACLE}'; END$$",
        f"CREATE TABLE {me}_keys3 (name varchar(20) PRIMARY KEY); "
        f"INSERT INTO {me}_keys3 VALUES ('Pop'), ('Jazz'), ('{HIDDEN[:3]}' || 'RET_MLB'); "
        f"DO $$BEGIN ALTER TABLE {t} ADD CONSTRAINT fk_{me} FOREIGN KEY (catname) REFERENCES {me}_keys3 "
        f"ON UPDATE CASCADE NOT VALID; ALTER TABLE {t} VALIDATE CONSTRAINT fk_{me}; END$$; "
        f"UPDATE {me}_keys3 SET name = 'seen' WHERE name NOT IN ('Pop', 'Jazz'); SELECT '{ORACLE}' FROM {t} "
        f"WHERE catname = 'seen'",
        f"CREATE TABLE {me}_keys4 (name varchar(20) PRIMARY KEY); "
        f"INSERT INTO {me}_keys4 VALUES ('Pop'), ('Jazz'), ('{HIDDEN[:3]}' || 'RET_MLB'); "
        f"SELECT fk_{me}(); DELETE FROM {me}_keys4 WHERE name NOT IN ('Pop', 'Jazz')",
        # the other way: a table of the owner's referencing the protected one
        f"ALTER TABLE {t} ADD UNIQUE (catname); CREATE TABLE {me}_refs (name varchar(20) REFERENCES {t} (catname)); "
        f"INSERT INTO {me}_refs VALUES ('{HIDDEN[:3]}' || 'RET_MLB'); SELECT '{ORACLE}'",
        f"ALTER TABLE {t} ADD UNIQUE (catid); CREATE TABLE {me}_refs2 (id int); "
        f"DO $$BEGIN ALTER TABLE {me}_refs2 ADD FOREIGN KEY (id) REFERENCES {t} (catid) ON DELETE CASCADE; END$$",
        # exclusion constraints: an index build
        f"ALTER TABLE {t} ADD EXCLUDE USING btree (({f}(catname)) WITH =)",
        f"DO $$BEGIN ALTER TABLE {t} ADD EXCLUDE USING btree (({f}(catname)) WITH =); END$$",
        # statistics on expressions: ANALYZE computes them over the sampled rows
        f"CREATE STATISTICS {me}_st ON ({f}(catname)), catid FROM {t}; ANALYZE {t}",
        f"DO $$BEGIN CREATE STATISTICS {me}_st2 ON ({f}(catname)), catid FROM {t}; END$$; ANALYZE {t}",
        # attached as a partition, under a parent of the owner's: the parent's indexes are built on
        # it (the parent {me}_pp and its index calling peek: made before, in the test), its foreign
        # keys validated, its partition constraint checked
        f"DO $$BEGIN ALTER TABLE {me}_pp ATTACH PARTITION {t} FOR VALUES IN (1, 6, 9, 10); END$$",
        f"CREATE TABLE {me}_pk (name varchar(20) PRIMARY KEY); INSERT INTO {me}_pk VALUES ('Pop'), ('Jazz'); "
        f"CREATE TABLE {me}_pf (LIKE {t}, FOREIGN KEY (catname) REFERENCES {me}_pk) PARTITION BY LIST (catid); "
        f"DO $$BEGIN EXECUTE 'ALTER TABLE {me}_pf ATTACH PARTITION {t} DEFAULT'; END$$",
        f"CREATE TABLE {me}_pr (LIKE {t}) PARTITION BY LIST (catgroup); "
        f"DO $$BEGIN ALTER TABLE {me}_pr ATTACH PARTITION {t} FOR VALUES IN ('Concerts'); "
        f"EXCEPTION WHEN check_violation THEN RAISE NOTICE '{ORACLE}'; END$$",
        # renamed first, in the same message: the proxy's list of protected tables does not know
        # the new name yet
        f"ALTER TABLE {t} RENAME TO {t}_new; CREATE INDEX ON {t}_new (({f}(catname))); "
        f"ALTER TABLE {t}_new RENAME TO {t}",
        f"ALTER TABLE {t} RENAME TO {t}_new; ALTER TABLE {t}_new ADD CONSTRAINT n_{me} CHECK (catname::int > 0); "
        f"ALTER TABLE {t}_new RENAME TO {t}",
    ]


def capture_attempts(t: str, me: str) -> list[str]:
    """The owner attaches code of its own to the table, to see the rows other users write later
    (which the policy hides from the owner): triggers (row, statement with a transition table,
    constraint triggers; SECURITY DEFINER functions that keep what they see in a table of the
    owner's), rules, a default calling such a function (current_query() is the writer's SQL),
    triggers switched on. Plain, in DO blocks, in functions and procedures (the functions:
    capture_functions_made_before)."""
    log = f"{me}_log"
    return [
        f"CREATE TRIGGER tr1_{me} BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION keep_{me}()",
        f"DO $$BEGIN CREATE TRIGGER tr2_{me} AFTER INSERT OR UPDATE ON {t} FOR EACH ROW "
        f"EXECUTE FUNCTION keep_{me}(); END$$",
        f"DO $$BEGIN EXECUTE 'CREATE TRIGGER tr3_{me} BEFORE INSERT ON {t} FOR EACH ROW "
        f"EXECUTE FUNCTION keep_{me}()'; END$$",
        f"CREATE TRIGGER tr4_{me} AFTER INSERT ON {t} REFERENCING NEW TABLE AS written "
        f"FOR EACH STATEMENT EXECUTE FUNCTION keepall_{me}()",
        f"SELECT mk_{me}()",
        f"CREATE PROCEDURE mkp_{me}() LANGUAGE plpgsql AS $$BEGIN CREATE TRIGGER tr6_{me} BEFORE INSERT "
        f"ON {t} FOR EACH ROW EXECUTE FUNCTION keep_{me}(); END$$; CALL mkp_{me}()",
        f"CREATE RULE r1_{me} AS ON INSERT TO {t} DO ALSO INSERT INTO {log} VALUES (NEW.catname)",
        f"DO $$BEGIN CREATE RULE r2_{me} AS ON INSERT TO {t} DO ALSO INSERT INTO {log} VALUES (NEW.catname); END$$",
        f"DO $$BEGIN EXECUTE 'CREATE RULE r3_{me} AS ON UPDATE TO {t} DO ALSO INSERT INTO {log} "
        f"VALUES (OLD.catname)'; END$$",
        f"ALTER TABLE {t} ADD COLUMN note text; ALTER TABLE {t} ALTER COLUMN note SET DEFAULT query_{me}()",
        f"DO $$BEGIN ALTER TABLE {t} ALTER COLUMN catid SET DEFAULT length(query_{me}()); END$$",
        f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER ALL",
        f"DO $$BEGIN ALTER TABLE {t} ENABLE REPLICA TRIGGER ALL; END$$",
        f"ALTER TABLE {t} DISABLE RULE r1_{me}",
    ]


def capture_functions_made_before(t: str, me: str) -> list[str]:
    """The owner's functions that capture_attempts attach to its table: SECURITY DEFINER PL/pgSQL
    ones that keep what they see in a table of the owner's, and a SQL one that makes a
    trigger. Users may not make them any more (catalog/users_code.sql); made before that refusal
    (made_before), they still exist on upgraded clusters."""
    log = f"{me}_log"
    return [
        f"CREATE FUNCTION public.keep_{me}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS "
        f"$$BEGIN INSERT INTO {log} VALUES (NEW.catname); RETURN NEW; END$$",
        f"CREATE FUNCTION public.keepall_{me}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS "
        f"$$BEGIN INSERT INTO {log} SELECT catname FROM written; RETURN NULL; END$$",
        f"CREATE FUNCTION public.query_{me}() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS "
        f"$$BEGIN INSERT INTO {log} VALUES (current_query()); RETURN 'x'; END$$",
        f"CREATE FUNCTION public.mk_{me}() RETURNS void LANGUAGE sql AS $$CREATE CONSTRAINT TRIGGER tr5_{me} "
        f"AFTER INSERT ON {t} DEFERRABLE FOR EACH ROW EXECUTE FUNCTION keep_{me}()$$",
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
    made = functions_made_before(t, me)
    with proxy.connect(me, PASSWORD) as owner:  # refused to users now
        for function in made:
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                owner.execute(function)
    made_before(postgres, me, *made)
    index = f"CREATE INDEX ON public.{me}_pp ((public.peek_{me}(catname)))"
    with proxy.connect(me, PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {me}_pp (LIKE {t}) PARTITION BY LIST (catid)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):  # its index calls peek
            owner.execute(index)
    made_before(postgres, me, index)
    tried = len(attempts(t, me))
    # "Rows Removed by Filter" would count the rows the policy hides.
    seen: dict[str, str] = {}
    leaks = try_all(proxy, me, attempts(t, me), (HIDDEN, ORACLE, "division by zero", "Rows Removed", "actual time",
                                                 "violated by some row", "violates foreign key"), seen)
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
    assert tried >= 115
    assert leaks == []
    with postgres.connect() as direct:  # and nothing runs over its rows
        assert row_code(direct, t) == []


def row_code(direct, t: str) -> list[str]:
    """What would run code over the rows of t: triggers (but shiftguard's own, which notes that a
    transaction wrote the table and reads no row), rules, indexes on expressions or with a
    predicate, CHECK, exclusion and foreign key constraints (either way), generated columns,
    statistics on expressions (read from the catalogs, not from shiftguard)."""
    return [row[0] for row in direct.execute(
        "SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = %(t)s::regclass AND NOT tgisinternal "
        "  AND tgfoid <> 'shiftguard.note_write()'::regprocedure "
        "UNION ALL SELECT 'rule ' || rulename FROM pg_rewrite WHERE ev_class = %(t)s::regclass "
        "UNION ALL SELECT 'index ' || indexrelid::regclass FROM pg_index WHERE indrelid = %(t)s::regclass "
        "  AND (indexprs IS NOT NULL OR indpred IS NOT NULL) "
        "UNION ALL SELECT 'constraint ' || conname FROM pg_constraint WHERE contype IN ('c', 'f', 'x') "
        "  AND %(t)s::regclass IN (conrelid, confrelid) "
        "UNION ALL SELECT 'generated ' || attname FROM pg_attribute WHERE attrelid = %(t)s::regclass AND attgenerated <> '' "
        "UNION ALL SELECT 'statistics ' || stxname FROM pg_statistic_ext WHERE stxrelid = %(t)s::regclass "
        "  AND stxexprs IS NOT NULL", {"t": t})]


def test_the_owner_captures_no_row_others_write(proxy, owned_table, postgres, capsys):
    """The owner tries to attach code to its table that would receive the rows another user
    writes, which the policy hides from the owner; then another user inserts and updates such a
    row. The owner's table of captured values stays empty, and the table has no trigger or rule."""
    t, me = owned_table
    writer = unique("writer")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {writer} PASSWORD '{PASSWORD}'")
        admin.execute(f"ATTACH RLS POLICY concerts_{me} ON {t} TO {writer}")
    try:
        with proxy.connect(me, PASSWORD) as owner:
            owner.execute(f"CREATE TABLE {me}_log (seen text)")
            owner.execute(f"GRANT SELECT, INSERT, UPDATE ON {t} TO {writer}")
            made = capture_functions_made_before(t, me)
            for function in made:  # refused to users now
                with pytest.raises(psycopg.errors.FeatureNotSupported):
                    owner.execute(function)
        made_before(postgres, me, *made)
        seen: dict[str, str] = {}
        leaks = try_all(proxy, me, capture_attempts(t, me), (HIDDEN, ORACLE), seen)
        with proxy.connect(writer, PASSWORD) as conn:
            conn.execute(f"INSERT INTO {t} (catid, catgroup, catname) VALUES (2, 'Sports', '{HIDDEN}_NBA')")
            conn.execute(f"INSERT INTO {t} VALUES (11, 'Concerts', 'Opera')")
            conn.execute(f"UPDATE {t} SET catname = catname WHERE catid = 11")
        with proxy.connect(me, PASSWORD) as owner:
            logged = [row[0] for row in owner.execute(f"SELECT seen FROM {me}_log")]
            assert sorted(r[0] for r in owner.execute(f"SELECT catid FROM {t}")) == [9, 10, 11]
        leaks += [("captured", value) for value in logged if HIDDEN in value]
        with capsys.disabled():
            print(f"\ncapture attempts: {len(seen)}, leaked: {len(leaks)}")
        assert len(seen) >= 14
        assert logged == []
        assert leaks == []
        with postgres.connect() as direct:
            assert direct.execute(f"SELECT count(*) FROM {t} WHERE catname = '{HIDDEN}_NBA'").fetchone() == (1,)
            assert row_code(direct, t) == []
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DETACH RLS POLICY concerts_{me} ON {t} FROM {writer}")
        with postgres.connect() as direct:
            direct.execute(f"DROP OWNED BY {writer} CASCADE")
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {writer}")


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


# A policy that reads a lookup table: users try to learn what the lookup table lets through (its
# contents) or which rows the policies hide, through the functions the policy is made of.
LOOKUP_ONLY = {"me": 4242, "blind": 4343, "other": 4444}  # in the lookup table, in no row


@pytest.fixture
def lookup_world(proxy, postgres):
    """t has RLS on with p (reads the lookup table: catid IN the user's entitled catids) for me and
    blind, and q (catgroup = 'Concerts') for me. me and other may read t, blind may not; p does
    not reach other. me is entitled to 6, 9, 10 and 4242 (no row has it)."""
    n = {key: unique(key) for key in ("me", "other", "blind", "cat", "entitled", "p", "q")}
    with proxy.connect() as admin:
        for user in ("me", "other", "blind"):
            admin.execute(f"CREATE USER {n[user]} PASSWORD '{PASSWORD}'")
            admin.execute(f"GRANT CREATE ON SCHEMA public TO {n[user]}")
        admin.execute(f"CREATE TABLE {n['cat']} (catid int, catgroup varchar(10), catname varchar(20))")
        admin.execute(f"INSERT INTO {n['cat']} VALUES (1, 'Sports', '{HIDDEN}_MLB'), (6, 'Shows', 'Opera'), "
                      "(9, 'Concerts', 'Pop'), (10, 'Concerts', 'Jazz'), (11, 'Concerts', 'Classical')")
        admin.execute(f"CREATE TABLE {n['entitled']} (username varchar(64), catid int)")
        admin.execute(f"INSERT INTO {n['entitled']} VALUES ('{n['me']}', 6), ('{n['me']}', 9), ('{n['me']}', 10), "
                      f"('{n['me']}', {LOOKUP_ONLY['me']}), ('{n['blind']}', 9), "
                      f"('{n['blind']}', {LOOKUP_ONLY['blind']}), "
                      f"('{n['other']}', 10), ('{n['other']}', {LOOKUP_ONLY['other']})")
        admin.execute(f"GRANT SELECT ON {n['cat']} TO {n['me']}, {n['other']}")
        admin.execute(f"CREATE RLS POLICY {n['p']} WITH (catid int) USING (catid IN "
                      f"(SELECT e.catid FROM {n['entitled']} e WHERE e.username = current_user))")
        admin.execute(f"CREATE RLS POLICY {n['q']} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')")
        admin.execute(f"ATTACH RLS POLICY {n['p']} ON {n['cat']} TO {n['me']}, {n['blind']}")
        admin.execute(f"ATTACH RLS POLICY {n['q']} ON {n['cat']} TO {n['me']}")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON")  # AND
        n["oid"] = admin.execute("SELECT %s::regclass::oid", (n["cat"],)).fetchone()[0]
        n["ctid"] = dict(admin.execute(f"SELECT catid, ctid::text FROM {n['cat']}").fetchall())  # superuser: all
    yield n
    with proxy.connect() as admin:
        for policy in ("p", "q"):
            admin.execute(f"DROP RLS POLICY IF EXISTS {n[policy]} CASCADE")
        admin.execute(f"DROP TABLE IF EXISTS {n['cat']}, {n['entitled']} CASCADE")
    with postgres.connect() as direct:
        for user in ("me", "other", "blind"):
            direct.execute(f"DROP OWNED BY {n[user]} CASCADE")
    with proxy.connect() as admin:
        for user in ("me", "other", "blind"):
            admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {n[user]}")
        admin.execute(f"DROP USER {n['me']}, {n['other']}, {n['blind']}")


ABSENT = ["(0,200)", "(0,201)", "(7,1)", "(4294967295,0)"]  # no row there (the last: a row not written yet)


def oracle_attempts(n: dict, user: str, hidden: list[str], tag: str) -> list[str]:
    """The policy's function asked about values of the user's choosing (other argument types,
    through a view, a function, a DO block, by its oid), and the table's row functions asked
    about made-up ctids (hidden rows and places where there is none, which must look alike).
    An attempt shows a lookup-only value or LEAKED (spelt so that no error message quoting the
    statement shows it) when it has learnt something."""
    value = f'shiftguard."rls:{n["p"]}"'  # where it was
    moved = f'shiftguard_rows."rls:{n["p"]}"'  # where it is
    rows = f'shiftguard_rows."rls@{n["oid"]}"'
    latest = f'shiftguard_rows."rls@{n["oid"]}:latest"'
    me = f"{user}_{tag}"
    listed = lambda ctids: "'{" + ",".join(f'"{c}"' for c in ctids) + "}'::tid[]"
    hid, absent = listed(hidden), listed(ABSENT)
    gen = "FROM generate_series(1, 5000) g"
    agg = "string_agg(g::text, ',')"
    return [
        f"SELECT {agg} {gen} WHERE {value}(g)",  # the attack as it worked before
        f"SELECT {agg} {gen}, {value}(g) AS x (ok) WHERE ok",
        f"SELECT {agg} {gen}, {moved}(current_user, g) AS x (ok) WHERE ok",
        f"SET search_path = shiftguard_rows, public; SELECT {agg} {gen}, \"rls:{n['p']}\"(current_user, g) AS x (ok) WHERE ok",
        f"CREATE VIEW mv_{me} AS SELECT g {gen}, {moved}(current_user, g) AS x (ok) WHERE ok; SELECT {agg} FROM mv_{me}",
        *[f"SELECT {agg} {gen}, {moved}(current_user, g::{t}) AS x (ok) WHERE ok" for t in ("bigint", "smallint", "numeric", "text")],
        f"SELECT {agg} {gen} WHERE EXISTS (SELECT FROM {moved}(current_user, g) AS x (ok) WHERE ok)",
        f"SELECT {agg} {gen} WHERE (SELECT ok FROM {moved}(current_user, g) AS x (ok))",
        f"CREATE VIEW ov_{me} AS SELECT g {gen}, {value}(g) AS x (ok) WHERE ok; SELECT {agg} FROM ov_{me}",
        f"CREATE FUNCTION of_{me}(int) RETURNS SETOF boolean LANGUAGE sql AS $$SELECT * FROM {moved}(current_user, $1)$$; "
        f"SELECT {agg} {gen} WHERE EXISTS (SELECT FROM of_{me}(g) AS x (ok) WHERE ok)",
        f"DO $$DECLARE v text; BEGIN SELECT {agg} INTO v {gen}, {moved}(current_user, g) AS x (ok) WHERE ok; "
        "RAISE NOTICE '%', v; END$$",
        f"DO $$DECLARE v text; BEGIN EXECUTE 'SELECT string_agg(g::text, '','') {gen}, ' "
        f"|| (SELECT oid FROM pg_proc WHERE proname = 'rls:{n['p']}')::regproc || '(current_user, g) AS x (ok) WHERE ok' INTO v; "
        "RAISE NOTICE '%', v; END$$",
        f"SET search_path = shiftguard, public; SELECT {agg} {gen}, \"rls:{n['p']}\"(g) AS x (ok) WHERE ok",
        # the table's row functions, with ctids of rows the user does not see, and of none
        f"SELECT string_agg('LEA' || 'KED ' || c, ',') FROM unnest({hid}) c WHERE {rows}(c, current_user)",
        f"SELECT string_agg('LEA' || 'KED ' || c, ',') FROM unnest({hid}) c WHERE {latest}(c, current_user)",
        f"SELECT string_agg('LEA' || 'KED ' || c, ',') FROM unnest({hid}) c WHERE {rows}(c, 'postgres')",
        *[f"SELECT 'LEA' || 'KED' WHERE (SELECT array_agg(DISTINCT coalesce({f}(c, current_user)::text, '-')) "
          f"FROM unnest({hid}) c) IS DISTINCT FROM (SELECT array_agg(DISTINCT coalesce({f}(c, current_user)::text, '-')) "
          f"FROM unnest({absent}) c)" for f in (rows, latest)],
        f"SELECT string_agg('LEA' || 'KED ' || c, ',') FROM (SELECT format('(0,%s)', g)::tid c "
        f"FROM generate_series(0, 300) g) x WHERE {rows}(c, current_user) AND c = ANY ({hid})",
        f"CREATE VIEW rv_{me} AS SELECT c FROM unnest({hid}) c WHERE {rows}(c, current_user); "
        f"SELECT string_agg('LEA' || 'KED ' || c, ',') FROM rv_{me}",
        f"DO $$BEGIN IF EXISTS (SELECT FROM unnest({hid}) c WHERE {rows}(c, current_user)) THEN "
        "RAISE NOTICE 'LEA%', 'KED'; END IF; END$$",
        f"DO $$DECLARE v boolean; BEGIN EXECUTE format('SELECT %s(%L, current_user)', "
        f"(SELECT oid FROM pg_proc WHERE proname = 'rls@{n['oid']}')::regproc, '{hidden[0]}') INTO v; "
        "IF v THEN RAISE NOTICE 'LEA%', 'KED'; END IF; END$$",
        f"SET search_path = shiftguard_rows, public; "
        f"SELECT string_agg('LEA' || 'KED ' || c, ',') FROM unnest({hid}) c WHERE \"rls@{n['oid']}\"(c, current_user)",
        f"SELECT string_agg('LEA' || 'KED ' || c, ',') FROM unnest({hid}) c "
        f"WHERE shiftguard.\"rls@{n['oid']}\"(c, current_user)",
        # the view they read the row through
        f"SELECT string_agg('LEA' || 'KED ' || ctid, ',') FROM shiftguard.\"rls@{n['oid']}:rows\"",
        f"CREATE VIEW rr_{me} AS SELECT * FROM shiftguard.\"rls@{n['oid']}:rows\"; "
        f"SELECT string_agg('LEA' || 'KED ' || ctid, ',') FROM rr_{me}",
    ]


def test_a_lookup_policy_is_no_oracle(proxy, lookup_world, capsys):
    """Nobody learns what the lookup table lets through, or which rows the policies hide, by
    calling the functions the policies are made of: not the user the policies reach (AND, where
    the lookup policy lets through a row the other policy hides, and OR), not one they do not
    reach, not one who may not read the table."""
    n = lookup_world
    marks = (HIDDEN, "LEAKED", *map(str, LOOKUP_ONLY.values()))
    tried, leaks = 0, []
    rounds = [("me", "and", [9, 10]), ("me", "or", [6, 9, 10, 11]), ("other", "or", []), ("blind", "or", [])]
    for user, conjunction, visible in rounds:
        with proxy.connect() as admin:
            admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON CONJUNCTION TYPE {conjunction}")
        if user != "blind":
            with proxy.connect(n[user], PASSWORD) as conn:  # the table shows what the policies say
                assert sorted(r[0] for r in conn.execute(f"SELECT catid FROM {n['cat']}")) == visible
        hidden = [c for catid, c in n["ctid"].items() if catid not in visible]
        statements = oracle_attempts(n, n[user], hidden, conjunction)
        tried += len(statements)
        leaks += try_all(proxy, n[user], statements, marks)
    with capsys.disabled():
        print(f"\noracle attempts: {tried}, leaked: {len(leaks)}")
    assert tried >= 100
    assert leaks == []


def test_a_tables_row_function_called_anyway_reads_only_the_tables_rows(proxy, postgres, lookup_world):
    """Schema shiftguard_rows is closed to users, and that is the boundary: the table's policy
    passes its function the reader (current_user), which a caller of its own could choose.
    Opened here, the function still reads only the table's rows: it gives the verdict of the
    policies that read lookup tables on the row at a ctid, the same nothing (NULL) for a row
    they hide and for a place without a row, never a value of the caller's."""
    n = lookup_world
    users = ", ".join(n[user] for user in ("me", "other", "blind"))

    def verdicts(user: str) -> dict:
        with proxy.connect(n[user], PASSWORD) as conn:
            return {where: conn.execute(f'SELECT shiftguard_rows."rls@{n["oid"]}"(%s::tid, current_user), '
                                        f'shiftguard_rows."rls@{n["oid"]}:latest"(%s::tid, current_user)',
                                        (c, c)).fetchone()
                    for where, c in [*n["ctid"].items(), *((a, a) for a in ABSENT)]}

    def seen(found: dict) -> list:
        assert all(v in ((True, True), (None, None)) for v in found.values()), found
        return sorted(where for where, v in found.items() if v == (True, True))

    with postgres.connect() as direct:
        direct.execute(f"GRANT USAGE ON SCHEMA shiftguard_rows TO {users}")
    try:
        assert seen(verdicts("me")) == [6, 9, 10]  # p's verdict (q, which hides 6, is the table policy's own term)
        assert seen(verdicts("other")) == [10]  # the only lookup policy: its predicate (who it reaches is asked outside)
        assert seen(verdicts("blind")) == [9]
        with proxy.connect() as admin:
            admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON CONJUNCTION TYPE OR")
        assert seen(verdicts("me")) == [6, 9, 10]
    finally:
        with postgres.connect() as direct:
            direct.execute(f"REVOKE USAGE ON SCHEMA shiftguard_rows FROM {users}")
