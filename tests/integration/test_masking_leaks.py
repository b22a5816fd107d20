"""A user whom a masking policy covers tries every way we know to read the raw values: through
the proxy's rewrite, around it, and through PostgreSQL-side paths it cannot see. Every attempt
must come back without a raw value; the summary line says how many were made."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import made_before, unique, wait_for
from .test_rls_leaks import peek, row_code, try_all

PASSWORD = "Secret123"
SECRET = "4532993817514842"
MASK = "XXXX"


def attempts(t: str, me: str) -> list[str]:
    return [
        f"SELECT * FROM {t}",
        f"SELECT card FROM public.{t}",
        f'SELECT card FROM "{t}"',
        f"SELECT card FROM ONLY {t}",
        f"TABLE {t}",
        f"SELECT {t}.* FROM {t}",
        f"SELECT x FROM {t} AS x",
        f"SELECT row_to_json(q) FROM {t} q",
        f"SELECT c2 FROM {t} AS q(c1, c2)",
        f"SELECT card FROM {t} WHERE card = '{SECRET}'",
        f"SELECT 'LEAKED' FROM {t} WHERE card LIKE '4532%'",
        f"SELECT 'LEAKED' FROM {t} WHERE substring(card, 1, 4) = '4532'",
        f"SELECT 'LEAKED' FROM {t} GROUP BY card HAVING min(card) = '{SECRET}'",
        f"SELECT string_agg(card, ',' ORDER BY card) FROM {t}",
        f"SELECT array_agg(card) FROM {t}",
        f"SELECT card, rank() OVER (ORDER BY card) FROM {t}",
        f"SELECT a.card FROM {t} a JOIN {t} b ON a.id = b.id",
        f"SELECT * FROM (SELECT card FROM {t}) s",
        f"WITH x AS (SELECT * FROM {t}) SELECT * FROM x",
        f"WITH RECURSIVE x AS (SELECT card FROM {t}) SELECT * FROM x",
        f"SELECT (SELECT card FROM {t} LIMIT 1)",
        f"SELECT card FROM {t} UNION SELECT 'x'",
        f"SELECT * FROM generate_series(1, 1) g, LATERAL (SELECT card FROM {t}) l",
        f"SELECT card::bigint FROM {t}",
        f"SELECT CASE WHEN card = '{SECRET}' THEN 1/zero END FROM {t}, (SELECT 0 AS zero OFFSET 0) z",
        # (functions in the user's temporary schema: the only place it may make these now)
        f"CREATE FUNCTION pg_temp.leak_{me}(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS "
        f"$$BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END$$; SELECT id FROM {t} WHERE pg_temp.leak_{me}(card)",
        f"CREATE FUNCTION pg_temp.rows_{me}() RETURNS SETOF text LANGUAGE sql AS $$SELECT card FROM {t}$$; "
        f"SELECT * FROM pg_temp.rows_{me}()",
        f"DO $$DECLARE r record; BEGIN FOR r IN SELECT card FROM {t} LOOP RAISE NOTICE '%', r.card; END LOOP; END$$",
        f"DO $$BEGIN RAISE NOTICE '%', (SELECT card FROM {t} LIMIT 1); END$$",
        f"PREPARE p_{me} AS SELECT card FROM {t}; EXECUTE p_{me}",
        f"BEGIN; DECLARE c CURSOR FOR SELECT card FROM {t}; FETCH ALL FROM c; COMMIT",
        f"CREATE TABLE {me}_copy AS SELECT * FROM {t}; SELECT * FROM {me}_copy",
        f"SELECT * INTO {me}_copy2 FROM {t}; SELECT * FROM {me}_copy2",
        f"CREATE TEMP TABLE {me}_tmp (card text); INSERT INTO {me}_tmp SELECT card FROM {t}; SELECT * FROM {me}_tmp",
        f"CREATE VIEW {me}_v AS SELECT * FROM {t}; SELECT * FROM {me}_v",
        f"CREATE MATERIALIZED VIEW {me}_mv AS SELECT * FROM {t}; SELECT * FROM {me}_mv",
        f"UPDATE {t} SET id = id RETURNING card",
        f"DELETE FROM {t} WHERE card = '{SECRET}' RETURNING card",
        f"MERGE INTO {me}_target USING {t} s ON false WHEN NOT MATCHED THEN INSERT VALUES (s.card)",
        f"EXPLAIN (VERBOSE, COSTS OFF) SELECT card FROM {t} WHERE card = '{SECRET[:0]}x'",
        f"ANALYZE {t}; SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = '{t}'",
        f"SELECT * FROM shiftguard_rows.masking_attachments",
        f"SELECT * FROM shiftguard.\"mask:{t}\"",
        f"SET search_path = shiftguard, public; SELECT card FROM {t}",
        f"ALTER TABLE {t} RENAME COLUMN card TO c; SELECT c FROM {t}",
        f"SET SESSION AUTHORIZATION awsuser; SELECT card FROM {t}",
        f"SELECT card FROM U&\"\\0063{t[1:]}\"",  # "c" written as an escape: the name is not in the text
        f"COPY {t} TO STDOUT",
        f"COPY (SELECT card FROM {t}) TO STDOUT",
        *statistics_attempts(f"{t}_s"),
    ]


# The raw value written so that no statement or error (whose context quotes the statement) shows it.
RAW = f"reverse('{SECRET[::-1]}')"


def estimates(table: str, a: str, b: str) -> str:
    """A DO block, out of the proxy's sight, that plans (never runs) two queries of the raw table
    and says LEAKED when the planner's row estimates differ: without statistics of the masked
    column (most common values, histogram) they are the same default."""
    rows = "substring({} from 'rows=([0-9]+)')"
    return ("DO $$DECLARE x text; y text; BEGIN "
            f"EXECUTE $q$EXPLAIN SELECT * FROM {table} WHERE {a}$q$ INTO x; "
            f"EXECUTE $q$EXPLAIN SELECT * FROM {table} WHERE {b}$q$ INTO y; "
            f"IF {rows.format('x')} <> {rows.format('y')} THEN "
            f"RAISE NOTICE 'LEAKED: % rows against %', {rows.format('x')}, {rows.format('y')}; END IF; END$$")


def statistics_attempts(t: str) -> list[str]:
    """t: a masked table in which one raw value (SECRET) dominates, analyzed before it was masked."""
    return [
        estimates(t, f"card = {RAW}", "card = 'nothing'"),   # the most common values
        estimates(t, "card < '5'", "card >= '5'"),             # the histogram
        estimates(t, f"card = {RAW} AND id > 0", "card = 'nothing' AND id > 0"),
        f"ANALYZE {t}; " + estimates(t, f"card = {RAW}", "card = 'nothing'"),
        f"SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = '{t}'",
        f"SELECT most_common_vals::text FROM pg_stats_ext WHERE tablename = '{t}'",
        f"SELECT stavalues1::text FROM pg_statistic WHERE starelid = '{t}'::regclass",
    ]


@pytest.fixture
def masked(proxy, postgres):
    me = unique("snoop")
    t = unique("cards")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {me}")
        admin.execute(f"CREATE TABLE {t} (id int, card text)")
        admin.execute(f"INSERT INTO {t} VALUES (1, '{SECRET}')")
        admin.execute(f"GRANT SELECT, UPDATE, DELETE ON {t} TO {me}")
        admin.execute(f"CREATE MASKING POLICY m_{me} WITH (card text) USING ('{MASK}'::text)")
        admin.execute(f"ATTACH MASKING POLICY m_{me} ON {t}(card) TO {me}")
        admin.execute(f"CREATE TABLE {t}_s (id int, card text)")  # one raw value dominates
        admin.execute(f"INSERT INTO {t}_s SELECT g, CASE WHEN g <= 300 THEN '{SECRET}' ELSE 'other' || g END "
                      "FROM generate_series(1, 330) g")
        admin.execute(f"ANALYZE {t}_s")  # statistics gathered before the attachment
        admin.execute(f"GRANT SELECT ON {t}_s TO {me}")
        admin.execute(f"ATTACH MASKING POLICY m_{me} ON {t}_s(card) TO {me}")
    with proxy.connect(me, PASSWORD) as conn:
        conn.execute(f"CREATE TABLE {me}_target (card text)")

    def masked_now():
        try:
            with proxy.connect(me, PASSWORD) as conn:
                return conn.execute(f"SELECT card FROM {t}").fetchone() == (MASK,)
        except psycopg.errors.InsufficientPrivilege:
            return False
    assert wait_for(masked_now, timeout=5)
    yield t, me
    with proxy.connect() as admin:
        admin.execute(f"DETACH MASKING POLICY m_{me} ON {t}(card) FROM {me}")
        admin.execute(f"DETACH MASKING POLICY m_{me} ON {t}_s(card) FROM {me}")
        admin.execute(f"DROP MASKING POLICY m_{me}")
        admin.execute(f"DROP TABLE {t}, {t}_s CASCADE")
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {me} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {me}")
        admin.execute(f"DROP USER {me}")


def test_no_raw_value_leaks(proxy, masked, postgres, capsys):
    t, me = masked
    tried = len(attempts(t, me))
    leaks = try_all(proxy, me, attempts(t, me), (SECRET, SECRET[:8], "LEAKED", "division by zero"))
    leaked = len(leaks)
    with postgres.connect() as direct:  # the data and the policy are as they were
        assert direct.execute(f"SELECT card FROM {t}").fetchall() == [(SECRET,)]
        assert direct.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                              (t,)).fetchone() == (True, True)
        assert_no_statistics(direct, f"{t}_s")
    with proxy.connect(me, PASSWORD) as conn:
        assert conn.execute(f"SELECT card FROM {t}").fetchall() == [(MASK,)]
    with capsys.disabled():
        print(f"\nmasking leak attempts: {tried}, leaked: {leaked}")
    assert tried >= 50
    assert leaks == []


def assert_no_statistics(direct, t: str) -> None:
    """The masked column card of t has no statistics, nor will ANALYZE gather any."""
    assert direct.execute("SELECT attstattarget FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'card'",
                          (t,)).fetchone() == (0,)
    assert direct.execute("SELECT count(*) FROM pg_statistic s JOIN pg_attribute a ON a.attrelid = s.starelid "
                          "AND a.attnum = s.staattnum WHERE s.starelid = %s::regclass AND a.attname = 'card'",
                          (t,)).fetchone() == (0,)


@pytest.fixture
def owned_masked(proxy, postgres):
    """A table whose owner the masking covers: the owner may link it to other tables, index it,
    set its statistics targets, and give it code that runs over its rows."""
    me = unique("owner")
    t = unique("ocards")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {me}")
    with proxy.connect(me, PASSWORD) as owner:
        owner.execute(f"CREATE TABLE {t} (id int, card text)")
        owner.execute(f"INSERT INTO {t} SELECT g, CASE WHEN g <= 300 THEN '{SECRET}' ELSE 'other' || g END "
                      "FROM generate_series(1, 330) g")
        owner.execute(f"CREATE INDEX {t}_card ON {t} (card)")
        owner.execute(f"CREATE STATISTICS {t}_st ON id, card FROM {t}")
        owner.execute(f"ANALYZE {t}")
    with proxy.connect() as admin:
        admin.execute(f"CREATE MASKING POLICY m_{me} WITH (card text) USING ('{MASK}'::text)")
        admin.execute(f"ATTACH MASKING POLICY m_{me} ON {t}(card) TO {me}")

    def masked_now():
        try:
            with proxy.connect(me, PASSWORD) as conn:
                return conn.execute(f"SELECT card FROM {t} LIMIT 1").fetchone() == (MASK,)
        except psycopg.errors.InsufficientPrivilege:
            return False
    assert wait_for(masked_now, timeout=5)
    yield t, me
    with proxy.connect() as admin:
        admin.execute(f"DETACH MASKING POLICY m_{me} ON {t}(card) FROM {me}")
        admin.execute(f"DROP MASKING POLICY m_{me}")
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {me} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {me}")
        admin.execute(f"DROP USER {me}")


def owner_attempts(t: str, me: str) -> list[str]:
    """The owner, whom the masking covers, links the table to tables of its own (rows read through
    a parent are not masked), or makes the planner keep statistics of the masked column again."""
    return [
        f"CREATE TABLE {me}_p1 (LIKE {t}); ALTER TABLE {t} INHERIT {me}_p1; SELECT card FROM {me}_p1",
        f"CREATE TABLE {me}_p2 (LIKE {t}); DO $$BEGIN EXECUTE 'ALTER TABLE {t} INHERIT {me}_p2'; END$$; "
        f"SELECT card FROM {me}_p2",
        f"CREATE TABLE {me}_p3 (LIKE {t}); CREATE FUNCTION pg_temp.inh_{me}() RETURNS void LANGUAGE plpgsql "
        f"AS $$BEGIN ALTER TABLE {t} INHERIT {me}_p3; END$$; SELECT pg_temp.inh_{me}(); SELECT card FROM {me}_p3",
        f"CREATE TABLE {me}_p4 (LIKE {t}); CREATE FUNCTION pg_temp.inhs_{me}() RETURNS void LANGUAGE sql "
        f"AS $$ALTER TABLE {t} INHERIT {me}_p4$$; SELECT pg_temp.inhs_{me}(); SELECT card FROM {me}_p4",
        f"CREATE TABLE {me}_l1 (LIKE {t}) PARTITION BY LIST (id); "
        f"ALTER TABLE {me}_l1 ATTACH PARTITION {t} DEFAULT; SELECT card FROM {me}_l1",
        f"CREATE TABLE {me}_l2 (LIKE {t}) PARTITION BY RANGE (id); DO $$BEGIN ALTER TABLE {me}_l2 "
        f"ATTACH PARTITION {t} FOR VALUES FROM (MINVALUE) TO (MAXVALUE); END$$; SELECT card FROM {me}_l2",
        f"CREATE TABLE {me}_l3 (LIKE {t}) PARTITION BY LIST (id); CREATE PROCEDURE att_{me}() LANGUAGE plpgsql AS "
        f"$$BEGIN EXECUTE 'ALTER TABLE {me}_l3 ATTACH PARTITION {t} DEFAULT'; END$$; CALL att_{me}(); "
        f"SELECT card FROM {me}_l3",
        f"CREATE TABLE {me}_k1 () INHERITS ({t}); SELECT 'LEAKED'",
        f"CREATE TABLE {me}_k2 (LIKE {t}); DO $$BEGIN ALTER TABLE {me}_k2 INHERIT {t}; END$$; SELECT 'LEAKED'",
        f"CREATE TEMP TABLE {me}_k3 (LIKE {t}); ALTER TABLE {me}_k3 INHERIT {t}; SELECT 'LEAKED'",
        # statistics of the masked column, gathered again
        f"ALTER TABLE {t} ALTER COLUMN card SET STATISTICS 1000; ANALYZE {t}; "
        + estimates(t, f"card = {RAW}", "card = 'nothing'"),
        f"DO $$BEGIN ALTER TABLE {t} ALTER COLUMN card SET STATISTICS 1000; ANALYZE {t}; END$$; "
        + estimates(t, f"card = {RAW}", "card = 'nothing'"),
        f"DO $$BEGIN EXECUTE 'ALTER TABLE {t} ALTER card SET STATISTICS -1'; END$$; ANALYZE {t}; "
        + estimates(t, "card < '5'", "card >= '5'"),
        f"ANALYZE {t}; " + estimates(t, f"card = {RAW}", "card = 'nothing'"),
        f"ANALYZE {t}; " + estimates(t, "card < '5'", "card >= '5'"),
        f"CREATE INDEX {me}_i1 ON {t} ((card || '')); ANALYZE {t}; "
        + estimates(t, f"(card || '') = {RAW}", "(card || '') = 'nothing'"),
        f"DO $$BEGIN CREATE INDEX {me}_i2 ON {t} (upper(card)); END$$; ANALYZE {t}; "
        + estimates(t, f"upper(card) = {RAW}", "upper(card) = 'nothing'"),
        # a partial index's size counts the raw values its predicate matches
        f"CREATE INDEX {me}_i3 ON {t} (id) WHERE card LIKE '4532%'; "
        f"SELECT 'LEAKED' FROM pg_class WHERE relname = '{me}_i3' AND reltuples > 0",
        f"DO $$BEGIN CREATE INDEX {me}_i4 ON {t} (id) WHERE card = {RAW}; END$$; "
        f"SELECT 'LEAKED' FROM pg_class WHERE relname = '{me}_i4' AND reltuples > 0",
        f"CREATE STATISTICS {me}_s1 (mcv) ON id, card FROM {t}; ANALYZE {t}; "
        + estimates(t, f"id > 0 AND card = {RAW}", "id > 0 AND card = 'nothing'"),
        f"DO $$BEGIN CREATE STATISTICS {me}_s2 ON (lower(card)), id FROM {t}; END$$; ANALYZE {t}; "
        f"SELECT most_common_vals::text FROM pg_stats_ext_exprs WHERE statistics_name = '{me}_s2'",
        f"ALTER STATISTICS {t}_st SET STATISTICS 100; ANALYZE {t}; "
        + estimates(t, f"id > 0 AND card = {RAW}", "id > 0 AND card = 'nothing'"),
        f"ANALYZE {t}; SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = '{t}'",
        # views and materialized views of the owner's, made where the proxy does not rewrite
        f"DO $$BEGIN CREATE VIEW {me}_v AS SELECT * FROM {t}; END$$; SELECT card FROM {me}_v",
        f"DO $$BEGIN CREATE MATERIALIZED VIEW {me}_mv AS SELECT * FROM {t}; END$$; SELECT card FROM {me}_mv",
        f"CREATE MATERIALIZED VIEW {me}_mv2 AS SELECT * FROM {t} WITH NO DATA; "
        f"DO $$BEGIN REFRESH MATERIALIZED VIEW {me}_mv2; END$$; SELECT card FROM {me}_mv2",
        *row_code_attempts(t, me),
    ]


def row_code_attempts(t: str, me: str) -> list[str]:
    """The owner makes PostgreSQL run code of its own, or a built-in whose error quotes the
    value, over the raw values of the masked column (as test_rls_leaks.row_code_attempts), or
    copies them into a column no policy masks. The owner's code is a function in its temporary
    schema (the only place a user may make a PL/pgSQL function now, catalog/users_code.sql), made
    by the attempt itself; the ATTACH PARTITION under a parent with an index calling the owner's
    function is tried on such a parent made before that refusal (made_before_parent)."""
    f = f"pg_temp.peek_{me}"
    return [
        temp_peek(me) + f"CREATE INDEX ON {t} (({f}(card)))",
        temp_peek(me) + f"DO $$BEGIN CREATE INDEX ON {t} (({f}(card))); END$$",
        temp_peek(me) + f"DO $$BEGIN EXECUTE 'CREATE INDEX ON {t} (id) WHERE {f}(card) IS NOT NULL'; END$$",
        temp_peek(me) + f"CREATE FUNCTION pg_temp.ix_{me}() RETURNS void LANGUAGE sql "
        f"AS $$CREATE INDEX ON {t} (({f}(card)))$$; SELECT pg_temp.ix_{me}()",
        temp_peek(me) + f"CREATE PROCEDURE ixp_{me}() LANGUAGE plpgsql AS $$BEGIN CREATE UNIQUE INDEX ON {t} "
        f"(id, ({f}(card))); END$$; CALL ixp_{me}()",
        f"CREATE INDEX {me}_ei ON {t} ((upper(card))); ANALYZE {t}; "
        f"SELECT most_common_vals::text FROM pg_stats WHERE tablename = '{me}_ei'",
        temp_peek(me) + f"ALTER TABLE {t} ADD CONSTRAINT c_{me} CHECK ({f}(card) IS NOT NULL)",
        temp_peek(me) + f"DO $$BEGIN ALTER TABLE {t} ADD CONSTRAINT c_{me} CHECK ({f}(card) <> '') NOT VALID; "
        f"ALTER TABLE {t} VALIDATE CONSTRAINT c_{me}; END$$",
        f"ALTER TABLE {t} ADD CONSTRAINT n_{me} CHECK (card::int > 0)",  # the cast's error quotes the value
        f"DO $$BEGIN ALTER TABLE {t} ADD CONSTRAINT n_{me} CHECK (card::int > 0); END$$",
        temp_peek(me) + f"ALTER TABLE {t} ALTER COLUMN card TYPE text USING {f}(card)",
        f"ALTER TABLE {t} ALTER COLUMN card TYPE int USING card::int",
        f"CREATE PROCEDURE typ_{me}() LANGUAGE plpgsql AS $$BEGIN ALTER TABLE {t} ALTER COLUMN card TYPE int "
        f"USING card::int; END$$; CALL typ_{me}()",
        # a generated column copies the raw value into a column no policy masks
        f"ALTER TABLE {t} ADD COLUMN copy text GENERATED ALWAYS AS (card) STORED; SELECT copy FROM {t}",
        f"DO $$BEGIN ALTER TABLE {t} ADD COLUMN copy text GENERATED ALWAYS AS (card || '') STORED; END$$; "
        f"SELECT copy FROM {t}",
        temp_peek(me) + f"DO $$BEGIN EXECUTE 'ALTER TABLE {t} ADD COLUMN copy text GENERATED ALWAYS AS ({f}(card)) "
        f"STORED'; END$$",
        # a foreign key's check reads the raw values without the masking guard
        f"CREATE TABLE {me}_keys (card text PRIMARY KEY); INSERT INTO {me}_keys VALUES ('{MASK}'), "
        f"(reverse('{SECRET[::-1]}')); ALTER TABLE {t} ADD FOREIGN KEY (card) REFERENCES {me}_keys NOT VALID; "
        f"DO $$BEGIN DELETE FROM {me}_keys WHERE card <> '{MASK}'; "
        f"EXCEPTION WHEN foreign_key_violation THEN RAISE NOTICE 'LEAKED'; END$$",
        f"CREATE TABLE {me}_keys2 (card text PRIMARY KEY); INSERT INTO {me}_keys2 VALUES ('{MASK}'), "
        f"(reverse('{SECRET[::-1]}')); DO $$BEGIN ALTER TABLE {t} ADD FOREIGN KEY (card) REFERENCES {me}_keys2 "
        f"NOT VALID; DELETE FROM {me}_keys2 WHERE card <> '{MASK}'; "
        f"EXCEPTION WHEN foreign_key_violation THEN RAISE NOTICE 'LEAKED'; END$$",
        temp_peek(me) + f"ALTER TABLE {t} ADD EXCLUDE USING btree (({f}(card)) WITH =)",
        temp_peek(me) + f"DO $$BEGIN CREATE STATISTICS {me}_st3 ON ({f}(card)), id FROM {t}; END$$; ANALYZE {t}",
        temp_peek(me) + f"CREATE TABLE {me}_pp (LIKE {t}) PARTITION BY RANGE (id); "
        f"CREATE INDEX ON {me}_pp (({f}(card))); "
        f"DO $$BEGIN ALTER TABLE {me}_pp ATTACH PARTITION {t} FOR VALUES FROM (MINVALUE) TO (MAXVALUE); END$$",
        f"ALTER TABLE {me}_pp0 ATTACH PARTITION {t} FOR VALUES FROM (MINVALUE) TO (MAXVALUE)",
        f"DO $$BEGIN ALTER TABLE {me}_pp0 ATTACH PARTITION {t} FOR VALUES FROM (MINVALUE) TO (MAXVALUE); END$$",
        temp_peek(me) + f"ALTER TABLE {t} RENAME TO {t}_new; CREATE INDEX ON {t}_new (({f}(card))); "
        f"ALTER TABLE {t}_new RENAME TO {t}",
    ]


def temp_peek(me: str) -> str:
    """test_rls_leaks.peek in the owner's temporary schema, where a user may still make it."""
    return (f"CREATE FUNCTION pg_temp.peek_{me}(text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS "
            f"$$BEGIN RAISE NOTICE 'saw %', $1; RETURN $1; END$$; ")


def made_before_parent(postgres, t: str, me: str) -> None:
    """The owner's partitioned table {me}_pp0 like t with an index on its peek function over card,
    both made before shiftguard refused users' PL/pgSQL functions and what calls them (made_before):
    attaching t under it would build that index over t's raw values."""
    made_before(postgres, me, peek(me), f"CREATE TABLE public.{me}_pp0 (LIKE public.{t}) PARTITION BY RANGE (id)",
                f"CREATE INDEX ON public.{me}_pp0 ((public.peek_{me}(card)))")


def capture_attempts(t: str, me: str) -> list[str]:
    """The owner attaches code to its masked table to see the raw values others write. Its
    functions are in its temporary schema, the only place it may make them now."""
    keep = (f"CREATE OR REPLACE FUNCTION pg_temp.keep_{me}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
            f"AS $$BEGIN INSERT INTO {me}_log VALUES (NEW.card); RETURN NEW; END$$; ")
    query = (f"CREATE OR REPLACE FUNCTION pg_temp.query_{me}() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS "
             f"$$BEGIN INSERT INTO {me}_log VALUES (current_query()); RETURN 0; END$$; ")
    return [
        keep + f"CREATE TRIGGER tr1_{me} BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION pg_temp.keep_{me}()",
        keep + f"DO $$BEGIN CREATE TRIGGER tr2_{me} AFTER INSERT ON {t} FOR EACH ROW "
        f"EXECUTE FUNCTION pg_temp.keep_{me}(); END$$",
        keep + f"CREATE PROCEDURE mk_{me}() LANGUAGE sql AS $$CREATE TRIGGER tr3_{me} AFTER INSERT ON {t} "
        f"FOR EACH ROW EXECUTE FUNCTION pg_temp.keep_{me}()$$; CALL mk_{me}()",
        f"CREATE RULE r1_{me} AS ON INSERT TO {t} DO ALSO INSERT INTO {me}_log VALUES (NEW.card)",
        f"DO $$BEGIN EXECUTE 'CREATE RULE r2_{me} AS ON INSERT TO {t} DO ALSO INSERT INTO {me}_log "
        f"VALUES (NEW.card)'; END$$",
        query + f"ALTER TABLE {t} ALTER COLUMN id SET DEFAULT pg_temp.query_{me}()",
        query + f"DO $$BEGIN ALTER TABLE {t} ALTER COLUMN id SET DEFAULT pg_temp.query_{me}(); END$$",
    ]


def test_the_owner_reads_no_raw_value_around_the_masking(proxy, owned_masked, postgres, capsys):
    t, me = owned_masked
    made_before_parent(postgres, t, me)
    tried = len(owner_attempts(t, me))
    seen: dict[str, str] = {}
    leaks = try_all(proxy, me, owner_attempts(t, me), (SECRET, SECRET[:8], "LEAKED"), seen)
    probe = temp_peek(me) + f"SELECT pg_temp.peek_{me}('probe')"  # the owner's code does run, and shows
    assert "saw probe" in try_all(proxy, me, [probe], ("saw probe",))[0][1]
    for sql in owner_attempts(t, me)[:10]:  # refused, and the error says why
        assert f'table "{t}" has a masking policy attached: it cannot take part in table inheritance' in seen[sql], \
            seen[sql]
    with postgres.connect() as direct:
        assert direct.execute(f"SELECT count(*), count(*) FILTER (WHERE card = '{SECRET}') FROM {t}").fetchone() \
            == (330, 300)
        assert direct.execute("SELECT count(*) FROM pg_inherits WHERE %s::regclass IN (inhrelid, inhparent)",
                              (t,)).fetchone() == (0,)
        assert_no_statistics(direct, t)
        assert direct.execute("SELECT s.stxstattarget, (SELECT count(*) FROM pg_statistic_ext_data d "
                              "WHERE d.stxoid = s.oid) FROM pg_statistic_ext s WHERE s.stxname = %s",
                              (f"{t}_st",)).fetchone() == (0, 0)
    with capsys.disabled():
        print(f"\nmasking owner leak attempts: {tried}, leaked: {len(leaks)}")
    assert tried >= 45
    assert leaks == []
    with postgres.connect() as direct:  # and nothing runs over its rows
        assert row_code(direct, t) == []


def test_the_owner_captures_no_raw_value_others_write(proxy, owned_masked, postgres, capsys):
    """The owner, whom the masking covers, tries to attach code to its table that would receive
    the raw values another user writes; then another user inserts a card. The owner's table of
    captured values stays empty."""
    t, me = owned_masked
    writer = unique("writer")
    fresh = "5105105105105100"
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {writer} PASSWORD '{PASSWORD}'")
    try:
        with proxy.connect(me, PASSWORD) as owner:
            owner.execute(f"CREATE TABLE {me}_log (seen text)")
            owner.execute(f"GRANT INSERT ON {t} TO {writer}")
        seen: dict[str, str] = {}
        leaks = try_all(proxy, me, capture_attempts(t, me), (SECRET, fresh, "LEAKED"), seen)
        with proxy.connect(writer, PASSWORD) as conn:
            conn.execute(f"INSERT INTO {t} (id, card) VALUES (1000, '{fresh}')")
        with proxy.connect(me, PASSWORD) as owner:
            logged = [row[0] for row in owner.execute(f"SELECT seen FROM {me}_log")]
            assert owner.execute(f"SELECT card FROM {t} WHERE id = 1000").fetchall() == [(MASK,)]
        leaks += [("captured", value) for value in logged if fresh in value]
        with capsys.disabled():
            print(f"\nmasking capture attempts: {len(seen)}, leaked: {len(leaks)}")
        assert len(seen) >= 7
        assert logged == []
        assert leaks == []
        with postgres.connect() as direct:
            assert row_code(direct, t) == []
    finally:
        with postgres.connect() as direct:
            direct.execute(f"DROP OWNED BY {writer} CASCADE")
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {writer}")
