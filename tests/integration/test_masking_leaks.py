"""A user whom a masking policy covers tries every way we know to read the raw values: through
the proxy's rewrite, around it, and through PostgreSQL-side paths it cannot see. Every attempt
must come back without a raw value; the summary line says how many were made."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique, wait_for
from .test_rls_leaks import try_all

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
        f"CREATE FUNCTION leak_{me}(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS "
        f"$$BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END$$; SELECT id FROM {t} WHERE leak_{me}(card)",
        f"CREATE FUNCTION rows_{me}() RETURNS SETOF text LANGUAGE sql AS $$SELECT card FROM {t}$$; "
        f"SELECT * FROM rows_{me}()",
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
        f"SELECT * FROM shiftguard.masking_attachments",
        f"SELECT * FROM shiftguard.\"mask:{t}\"",
        f"SET search_path = shiftguard, public; SELECT card FROM {t}",
        f"ALTER TABLE {t} RENAME COLUMN card TO c; SELECT c FROM {t}",
        f"SET SESSION AUTHORIZATION awsuser; SELECT card FROM {t}",
        f"SELECT card FROM U&\"\\0063{t[1:]}\"",  # "c" written as an escape: the name is not in the text
        f"COPY {t} TO STDOUT",
        f"COPY (SELECT card FROM {t}) TO STDOUT",
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
        admin.execute(f"DROP MASKING POLICY m_{me}")
        admin.execute(f"DROP TABLE {t} CASCADE")
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
    with proxy.connect(me, PASSWORD) as conn:
        assert conn.execute(f"SELECT card FROM {t}").fetchall() == [(MASK,)]
    with capsys.disabled():
        print(f"\nmasking leak attempts: {tried}, leaked: {leaked}")
    assert tried >= 40
    assert leaks == []
