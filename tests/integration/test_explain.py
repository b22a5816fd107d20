"""EXPLAIN as Redshift shows it: a user whom row-level security reaches sees an RLS SecureScan
node and no policy, a masked user no masking expression, unless they hold EXPLAIN RLS /
EXPLAIN MASKING; everything else is PostgreSQL's plan. Real PostgreSQL, real proxy, real drivers."""

from __future__ import annotations

import asyncio
import json
import re

import asyncpg
import psycopg
import pytest

from ..conftest import unique, wait_for
from .test_psql import ok, psql

PASSWORD = "Secret123"
CATEGORIES = [(1, "Sports", "MLB"), (2, "Sports", "NHL"), (6, "Shows", "Musicals"), (9, "Concerts", "Pop"),
              (10, "Concerts", "Jazz"), (11, "Concerts", "Classical")]
SSN = "123-45-6789"


@pytest.fixture
def world(proxy, postgres):
    """cat has RLS on with a policy for alice (catgroup = 'Concerts'); plain has none; people's
    ssn is masked for alice; role r exists for granting system permissions."""
    n = {key: unique(key) for key in ("cat", "plain", "people", "lookup", "alice", "r", "pol", "mask")}
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {n['cat']} (catid int, catgroup varchar(10), catname varchar(10))")
        admin.execute(f"CREATE TABLE {n['plain']} (k int, v text)")
        admin.execute(f"CREATE TABLE {n['people']} (id int, name text, ssn varchar(11))")
        admin.execute(f"CREATE TABLE {n['lookup']} (grp varchar(10))")
        with admin.cursor() as cur:
            cur.executemany(f"INSERT INTO {n['cat']} VALUES (%s, %s, %s)", CATEGORIES)
            cur.executemany(f"INSERT INTO {n['plain']} VALUES (%s, %s)", [(1, "one"), (9, "nine"), (10, "ten")])
        admin.execute(f"INSERT INTO {n['people']} VALUES (1, 'Ann', '{SSN}')")
        admin.execute(f"INSERT INTO {n['lookup']} VALUES ('Shows')")
        for statement in (f"CREATE USER {n['alice']} PASSWORD '{PASSWORD}'", f"CREATE ROLE {n['r']}",
                          f"GRANT SELECT ON {n['cat']}, {n['plain']}, {n['people']} TO {n['alice']}",
                          f"CREATE RLS POLICY {n['pol']} WITH (catgroup varchar(10)) USING (catgroup = 'Concerts')",
                          f"ATTACH RLS POLICY {n['pol']} ON {n['cat']} TO {n['alice']}",
                          f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON",
                          f"CREATE MASKING POLICY {n['mask']} WITH (ssn varchar(11)) "
                          "USING ('XXX-XX-' || substring(ssn, 8, 4))",
                          f"ATTACH MASKING POLICY {n['mask']} ON {n['people']}(ssn) TO {n['alice']}"):
            admin.execute(statement)
    yield n
    with proxy.connect() as admin:
        admin.execute(f"DETACH MASKING POLICY {n['mask']} ON {n['people']}(ssn) FROM {n['alice']}")
        admin.execute(f"DROP MASKING POLICY {n['mask']}")
        for table in ("cat", "plain", "people"):
            admin.execute(f"DROP TABLE {n[table]} CASCADE")
        for policy in ("pol", f"{n['pol']}_lookup"):
            admin.execute(f"DROP RLS POLICY IF EXISTS {policy} CASCADE")
        admin.execute(f"DROP TABLE {n['lookup']}")
        admin.execute(f"DROP ROLE {n['r']} FORCE")
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {n['alice']} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"DROP USER {n['alice']}")


def explain(conn, sql: str, params=None) -> list[str]:
    cursor = conn.execute(sql, params)
    assert cursor.statusmessage == "EXPLAIN"
    assert [c.name for c in cursor.description] == ["QUERY PLAN"]
    return [row[0] for row in cursor.fetchall()]


def postgresql_plan(postgres, user: str, query: str) -> list[str]:
    """The plan PostgreSQL itself gives the user (a direct session, as that user)."""
    with postgres.connect() as direct:
        direct.execute(f"SET SESSION AUTHORIZATION {user}")
        return [row[0] for row in direct.execute(query)]


def hides_the_policy(plan: list[str], n: dict) -> None:
    """Nothing of the policy or of shiftguard's machinery, anywhere in the plan."""
    text = "\n".join(plan)
    for secret in ("Concerts", "catgroup", "shiftguard", "rls", "exempt", "InitPlan", "$"):
        assert secret not in text, (secret, plan)


def grant_permission(proxy, n: dict, permission: str) -> None:
    with proxy.connect() as admin:
        admin.execute(f"GRANT {permission} TO ROLE {n['r']}")
        admin.execute(f"GRANT ROLE {n['r']} TO {n['alice']}")


def test_a_user_rls_reaches_sees_a_secure_scan_and_filtered_rows(proxy, postgres, world):
    n = world
    query = f"SELECT catid FROM {n['cat']} c WHERE catid > 1 ORDER BY catid"
    with proxy.connect(n["alice"], PASSWORD) as alice:
        for prefix in ("EXPLAIN", "EXPLAIN VERBOSE", "EXPLAIN (COSTS OFF)"):
            plan = explain(alice, f"{prefix} {query}")
            hides_the_policy(plan, n)
            assert any(re.fullmatch(r" *->  RLS SecureScan c( .*)?", line) for line in plan), plan
        # PostgreSQL's plan for her shows the policy; ours has the same nodes and costs, the RLS
        # table's scan relabelled and without its Filter, and no InitPlans of the policy.
        full = postgresql_plan(postgres, n["alice"], f"EXPLAIN {query}")
        assert "Concerts" in "\n".join(full) and "InitPlan" in "\n".join(full)
        (scan,) = [line for line in full if "Seq Scan on" in line]
        assert explain(alice, f"EXPLAIN {query}") == [
            full[0], "  Sort Key: c.catid", "  ->  RLS SecureScan c" + scan[scan.index("  (cost="):]]
        assert [r[0] for r in alice.execute(query)] == [9, 10, 11]  # still filtered


def test_explain_rls_permission_shows_the_filter(proxy, postgres, world):
    n = world
    query = f"EXPLAIN SELECT * FROM {n['cat']} WHERE catid > 1"
    with proxy.connect(n["alice"], PASSWORD) as alice:
        assert "RLS SecureScan" in "\n".join(explain(alice, query))
    grant_permission(proxy, n, "EXPLAIN RLS")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        plan = explain(alice, query)
        assert "Concerts" in "\n".join(plan) and "RLS SecureScan" not in "\n".join(plan)
        assert plan == postgresql_plan(postgres, n["alice"], query)
        assert [r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']} ORDER BY 1")] == [9, 10, 11]


def test_superuser_gets_postgresql_plan(proxy, postgres, world):
    n = world
    query = f"EXPLAIN VERBOSE SELECT c.catid, p.v FROM {n['cat']} c JOIN {n['plain']} p ON p.k = c.catid"
    with proxy.connect() as admin, postgres.connect() as direct:
        plan = explain(admin, query)
        assert plan == [row[0] for row in direct.execute(query)]
        assert any(f"Seq Scan on public.{n['cat']} c" in line for line in plan)  # superusers bypass RLS


def test_a_table_without_rls_gives_postgresql_plan_unchanged(proxy, postgres, world):
    n = world
    with proxy.connect(n["alice"], PASSWORD) as alice, postgres.connect() as direct:
        for query in (f"EXPLAIN SELECT * FROM {n['plain']} WHERE k > 1 ORDER BY v",
                      f"EXPLAIN VERBOSE SELECT k, (SELECT max(k) FROM {n['plain']}) FROM {n['plain']}"):
            assert explain(alice, query) == [row[0] for row in direct.execute(query)]
        query = f"EXPLAIN (FORMAT JSON, VERBOSE) SELECT * FROM {n['plain']}"
        (plan,) = explain(alice, query)
        assert json.loads(plan) == direct.execute(query).fetchone()[0]


def test_a_join_keeps_the_plain_table_and_join_lines(proxy, postgres, world):
    n = world
    query = (f"EXPLAIN SELECT c.catid, p.v FROM {n['cat']} c JOIN {n['plain']} p ON p.k = c.catid "
             "WHERE p.v <> 'x'")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        plan, full = explain(alice, query), postgresql_plan(postgres, n["alice"], query)
    hides_the_policy(plan, n)
    # Every line of PostgreSQL's plan but the RLS table's scan, its Filter and the policy's
    # InitPlans is there, in order.
    kept = [line for line in full if "InitPlan" not in line and "->  Result" not in line
            and f"Seq Scan on {n['cat']}" not in line and "catgroup" not in line]
    assert [line for line in plan if "RLS SecureScan" not in line] == kept
    assert any(line.startswith(("Hash Join", "Merge Join", "Nested Loop")) for line in plan), plan
    assert any(f"Seq Scan on {n['plain']} p" in line for line in plan)
    # the user's own, on the plain table (its TEXT column is Redshift's VARCHAR(256))
    assert any("Filter: ((v)::text <> 'x'::text)" in line for line in plan)


def test_a_lookup_table_policy_leaves_no_initplan(proxy, world):
    n = world
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {n['pol']}_lookup WITH (catgroup varchar(10)) "
                      f"USING (catgroup IN (SELECT grp FROM {n['lookup']}))")
        admin.execute(f"ATTACH RLS POLICY {n['pol']}_lookup ON {n['cat']} TO {n['alice']}")
        admin.execute(f"ALTER TABLE {n['cat']} ROW LEVEL SECURITY ON CONJUNCTION TYPE OR")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        for query in (f"EXPLAIN SELECT * FROM {n['cat']}", f"EXPLAIN VERBOSE SELECT * FROM {n['cat']}"):
            plan = explain(alice, query)
            hides_the_policy(plan, n)
            assert n["lookup"] not in "\n".join(plan) and "Shows" not in "\n".join(plan)
            assert plan[0].startswith("RLS SecureScan " + n["cat"])
        # The user's own subquery keeps its InitPlan; the RLS table inside it is a SecureScan.
        plan = explain(alice, f"EXPLAIN SELECT * FROM {n['plain']} WHERE k = (SELECT max(catid) FROM {n['cat']})")
        text = "\n".join(plan)
        assert re.search(r"^  InitPlan \d+ \(returns \$\d+\)$", text, re.M), plan
        assert f"RLS SecureScan {n['cat']}" in text and "Concerts" not in text and "Shows" not in text
        assert sorted(r[0] for r in alice.execute(f"SELECT catid FROM {n['cat']}")) == [6, 9, 10, 11]


def wait_until_masked(proxy, n: dict) -> None:
    def masked():
        with proxy.connect(n["alice"], PASSWORD) as alice:
            try:
                return alice.execute(f"SELECT ssn FROM {n['people']}").fetchone()[0] == "XXX-XX-6789"
            except psycopg.errors.InsufficientPrivilege:
                return False  # the proxy has not picked up the attachment yet (fails closed)
    assert wait_for(masked, timeout=5)


def test_masking_expressions_need_explain_masking(proxy, world):
    n = world
    wait_until_masked(proxy, n)
    query = f"EXPLAIN VERBOSE SELECT name, ssn FROM {n['people']} WHERE ssn LIKE 'X%' ORDER BY ssn"
    with proxy.connect(n["alice"], PASSWORD) as alice:
        plan = explain(alice, query)
        text = "\n".join(plan)
        for secret in ("XXX-XX-", "substring", "CASE", "mask", "shiftguard", "InitPlan", "$"):
            assert secret not in text, (secret, plan)
        assert any("Seq Scan on public." + n["people"] in line for line in plan), plan
        assert alice.execute(f"SELECT ssn FROM {n['people']}").fetchone()[0] == "XXX-XX-6789"
    grant_permission(proxy, n, "EXPLAIN MASKING")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        text = "\n".join(explain(alice, query))
        assert "'XXX-XX-'::text" in text and "mask_choice" in text
        assert alice.execute(f"SELECT ssn FROM {n['people']}").fetchone()[0] == "XXX-XX-6789"


def test_other_formats_are_refused_when_something_is_hidden(proxy, world):
    n = world
    with proxy.connect(n["alice"], PASSWORD) as alice:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="FORMAT JSON"):
            alice.execute(f"EXPLAIN (FORMAT JSON) SELECT * FROM {n['cat']}")
        (plan,) = alice.execute(f"EXPLAIN (FORMAT JSON) SELECT * FROM {n['plain']}").fetchone()
        assert '"Relation Name": "' + n["plain"] in plan


def test_explain_analyze_is_still_refused(proxy, world):
    n = world
    with proxy.connect(n["alice"], PASSWORD) as alice:
        for query in (f"EXPLAIN ANALYZE SELECT * FROM {n['cat']}", f"EXPLAIN (ANALYZE) SELECT * FROM {n['plain']}"):
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="EXPLAIN ANALYZE"):
                alice.execute(query)
        # nor by calling the function the proxy rewrites EXPLAIN into
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="EXPLAIN ANALYZE"):
            alice.execute("SELECT * FROM shiftguard.explain(%s, %s::jsonb, current_setting('search_path'))",
                          (f"SELECT * FROM {n['cat']}", '{"analyze": "true"}'))
        for target in (f"ANALYZE SELECT * FROM {n['cat']}", f"ANALYZE VERBOSE SELECT * FROM {n['cat']}"):
            with pytest.raises(psycopg.errors.SyntaxError):
                alice.execute("SELECT * FROM shiftguard.explain(%s, '{}'::jsonb, current_setting('search_path'))",
                              (target,))


def test_psycopg_parameters_and_prepared_statements(proxy, world):
    n = world
    with proxy.connect(n["alice"], PASSWORD) as alice, proxy.connect() as admin:
        plan = explain(alice, f"EXPLAIN SELECT * FROM {n['cat']} WHERE catid = %s", (9,))
        hides_the_policy(plan, n)
        assert plan[0].startswith(f"RLS SecureScan {n['cat']}")
        query = f"EXPLAIN SELECT * FROM {n['plain']} WHERE k = %s AND v = %s"
        for prepare in (False, True, True):
            plan = [r[0] for r in alice.execute(query, (10, "ten"), prepare=prepare)]
            assert plan == [r[0] for r in admin.execute(query, (10, "ten"))]
            assert "'ten'::text" in "\n".join(plan)  # the bound value, as PostgreSQL shows it
        # The session keeps no prepared statement of shiftguard's.
        assert alice.execute("SELECT count(*) FROM pg_prepared_statements "
                             "WHERE name = 'shiftguard_explain'").fetchone() == (0,)


def test_asyncpg_extended_protocol(proxy, world):
    n = world

    async def run():
        conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user=n["alice"], password=PASSWORD,
                                     database="dev", ssl=False)
        try:
            plain = await conn.fetch(f"EXPLAIN SELECT * FROM {n['plain']} WHERE k = $1 AND v = $2", 9, "nine")
            secure = await conn.fetch(f"EXPLAIN SELECT * FROM {n['cat']} WHERE catid > $1", 1)
            statement = await conn.prepare(f"EXPLAIN VERBOSE SELECT * FROM {n['cat']}")
            return ([r["QUERY PLAN"] for r in plain], [r["QUERY PLAN"] for r in secure],
                    [r[0] for r in await statement.fetch()])
        finally:
            await conn.close()

    plain, secure, verbose = asyncio.run(run())
    assert any("Filter: ((k = 9) AND ((v)::text = 'nine'::text))" in line for line in plain), plain  # v: VARCHAR(256)
    for plan in (secure, verbose):
        hides_the_policy(plan, n)
        assert plan[0].startswith(f"RLS SecureScan {n['cat']}"), plan


def test_psql(proxy, world):
    n = world
    lines = ok(psql(proxy, "-c", f"EXPLAIN SELECT * FROM {n['cat']} c", "-c", f"SELECT catid FROM {n['cat']} ORDER BY 1",
                    user=n["alice"], password=PASSWORD))
    assert lines[0].startswith("RLS SecureScan c  (cost=") and lines[1:] == ["9", "10", "11"]


def test_redshift_connector(proxy, world):
    """AWS's driver (extended protocol, its own BEGIN before the first statement) gets the same
    plans, with and without a parameter."""
    from .test_redshift_connector import connect
    n = world
    conn = connect(proxy, n["alice"], PASSWORD)
    try:
        cursor = conn.cursor()
        cursor.execute(f"EXPLAIN SELECT catname FROM {n['cat']} WHERE catid > %s", (5,))
        assert [d[0] for d in cursor.description] == ["QUERY PLAN"]
        plan = [row[0] for row in cursor.fetchall()]
        hides_the_policy(plan, n)
        assert plan[0].startswith(f"RLS SecureScan {n['cat']}")
        cursor.execute(f"EXPLAIN SELECT v FROM {n['plain']} WHERE k = 9")
        assert "Filter: (k = 9)" in "\n".join(row[0] for row in cursor.fetchall())
        conn.rollback()
    finally:
        conn.close()


def test_ignore_rls_without_explain_rls(proxy, world):
    """A holder of IGNORE RLS reads every row; its plan is a plain scan, and still shows no
    policy (the exemption test is the policy's too) unless it also holds EXPLAIN RLS."""
    n = world
    grant_permission(proxy, n, "IGNORE RLS")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        assert alice.execute(f"SELECT count(*) FROM {n['cat']}").fetchone() == (len(CATEGORIES),)
        plan = explain(alice, f"EXPLAIN SELECT * FROM {n['cat']}")
        hides_the_policy(plan, n)
        assert plan[0].startswith(f"Seq Scan on {n['cat']}")
    with proxy.connect() as admin:  # a policy reading a lookup table adds its own InitPlan: hidden too
        admin.execute(f"CREATE RLS POLICY {n['pol']}_lookup WITH (catgroup varchar(10)) "
                      f"USING (catgroup IN (SELECT grp FROM {n['lookup']}))")
        admin.execute(f"ATTACH RLS POLICY {n['pol']}_lookup ON {n['cat']} TO {n['alice']}")
    with proxy.connect(n["alice"], PASSWORD) as alice:
        plan = explain(alice, f"EXPLAIN SELECT * FROM {n['cat']}")
        hides_the_policy(plan, n)
        assert plan[0].startswith(f"Seq Scan on {n['cat']}") and len(plan) == 1, plan
        plan = explain(alice, f"EXPLAIN VERBOSE SELECT * FROM {n['cat']}")
        for secret in ("shiftguard", "rls", "InitPlan", "$", "Filter"):
            assert secret not in "\n".join(plan), (secret, plan)
