"""Dynamic data masking in Redshift's syntax: which values each user sees, through the proxy,
with real drivers; what the rewrite cannot reach fails instead of showing raw values."""

from __future__ import annotations

import concurrent.futures

import psycopg
import pytest
import redshift_connector

from ..conftest import installed_by_an_older_version, made_before, unique, wait_for

PASSWORD = "Secret123"
CARDS = [(100, "4532993817514842"), (102, "5243112427642649"), (103, "373611968625635")]
FULL = "000000XXXX0000"


@pytest.fixture
def world(proxy, postgres):
    """The documentation's end-to-end example (ddm-example): credit_cards readable by PUBLIC, a
    full mask for PUBLIC, a partial one for analytics_role at a higher priority."""
    n = {key: unique(key) for key in ("cards", "regular", "analytics", "role", "full", "partial", "other")}
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {n['cards']} (customer_id INT, credit_card TEXT)")
        with admin.cursor() as cur:
            cur.executemany(f"INSERT INTO {n['cards']} VALUES (%s, %s)", CARDS)
        for statement in (f"GRANT SELECT ON {n['cards']} TO PUBLIC",
                          f"CREATE USER {n['regular']} PASSWORD '{PASSWORD}'",
                          f"CREATE USER {n['analytics']} PASSWORD '{PASSWORD}'",
                          f"CREATE ROLE {n['role']}", f"GRANT ROLE {n['role']} TO {n['analytics']}",
                          f"CREATE MASKING POLICY {n['full']} WITH (credit_card VARCHAR(256)) "
                          f"USING ('{FULL}'::TEXT)",
                          f"CREATE MASKING POLICY {n['partial']} WITH (credit_card VARCHAR(256)) "
                          "USING (substring(credit_card, 1, 6) || 'XXXXXX' || right(credit_card, 4))"):
            admin.execute(statement)
    yield n
    with proxy.connect() as admin:
        for row in admin.execute("SELECT policy_name, grantee, grantee_type FROM svv_attached_masking_policy "
                                 "WHERE table_name = %s", (n["cards"],)).fetchall():
            grantee = {"public": "PUBLIC", "role": f"ROLE {row[1]}"}.get(row[2], row[1])
            admin.execute(f"DETACH MASKING POLICY {row[0]} ON {n['cards']} (credit_card) FROM {grantee}")
        for policy in ("full", "partial", "other"):
            admin.execute(f"DROP MASKING POLICY IF EXISTS {n[policy]}")
        admin.execute(f"DROP TABLE {n['cards']} CASCADE")
        admin.execute(f"DROP ROLE {n['role']} FORCE")
    with postgres.connect() as direct:
        for user in ("regular", "analytics"):
            direct.execute(f"DROP OWNED BY {n[user]} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"DROP USER {n['regular']}, {n['analytics']}")


def cards(proxy, user: str, table: str, sql: str = "SELECT credit_card FROM {t} ORDER BY customer_id"):
    with proxy.connect(user, PASSWORD) as conn:
        return [row[0] for row in conn.execute(sql.format(t=table))]


def masked_soon(proxy, user: str, table: str, expected: list) -> list:
    """Attachments reach the proxy's rewrite within a fraction of a second (fail closed before)."""
    def seen():
        try:
            return cards(proxy, user, table)
        except psycopg.errors.InsufficientPrivilege:
            return None
    return wait_for(lambda: (seen() == expected) and expected, timeout=5) or seen()


def eventually(run):
    """run() once the proxy has picked up the latest attachments (until then it fails closed)."""
    def attempt():
        try:
            return run()
        except psycopg.errors.InsufficientPrivilege:
            return None
    return wait_for(attempt, timeout=5) or run()


def wait_until_rewritten(proxy, table: str) -> None:
    """Until this proxy reads the table through its masking view (EXPLAIN shows the masking)."""
    def rewritten():
        with proxy.connect() as admin:
            plan = admin.execute(f"EXPLAIN VERBOSE SELECT * FROM {table}").fetchall()
            return "mask_choice" in str(plan)
    assert wait_for(rewritten, timeout=5)


def partial(card: str) -> str:
    return card[:6] + "XXXXXX" + card[-4:]


def test_documentation_walk_through(proxy, world):
    n = world
    raw = [c for _, c in CARDS]
    assert cards(proxy, n["regular"], n["cards"]) == raw  # nothing attached yet
    with proxy.connect() as admin:
        admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) TO PUBLIC")
        admin.execute(f"ATTACH MASKING POLICY {n['partial']} ON {n['cards']}(credit_card) "
                      f"TO ROLE {n['role']} PRIORITY 10")
    assert masked_soon(proxy, n["regular"], n["cards"], [FULL] * 3) == [FULL] * 3
    assert cards(proxy, n["analytics"], n["cards"]) == [partial(c) for c in raw]  # priority 10 beats 0
    with proxy.connect() as admin:  # superusers are not masked
        assert [r[0] for r in admin.execute(f"SELECT credit_card FROM {n['cards']} ORDER BY 1")] == sorted(raw)
        rows = admin.execute("SELECT policy_name, grantee, grantee_type, priority, output_columns "
                             "FROM svv_attached_masking_policy WHERE table_name = %s ORDER BY priority",
                             (n["cards"],)).fetchall()
        assert rows == [(n["full"], "public", "public", 0, '["credit_card"]'),
                        (n["partial"], n["role"], "role", 10, '["credit_card"]')]
    # AWS's driver sees what psycopg sees.
    conn = redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=n["analytics"],
                                      password=PASSWORD, ssl=False, timeout=20)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT credit_card FROM {n['cards']} WHERE customer_id = 100")
        assert cursor.fetchall()[0][0] == partial(CARDS[0][1])
    finally:
        conn.close()
    with proxy.connect() as admin:
        admin.execute(f"DETACH MASKING POLICY {n['partial']} ON {n['cards']}(credit_card) FROM ROLE {n['role']}")
    assert masked_soon(proxy, n["analytics"], n["cards"], [FULL] * 3) == [FULL] * 3


def test_masking_applies_before_predicates_and_in_every_clause(proxy, world):
    n = world
    with proxy.connect() as admin:
        admin.execute(f"ATTACH MASKING POLICY {n['partial']} ON {n['cards']}(credit_card) TO {n['regular']}")
    masked_soon(proxy, n["regular"], n["cards"], [partial(c) for _, c in CARDS])
    t = n["cards"]
    with proxy.connect(n["regular"], PASSWORD) as conn:
        raw = CARDS[0][1]
        assert conn.execute(f"SELECT count(*) FROM {t} WHERE credit_card = %s", (raw,)).fetchone() == (0,)
        assert conn.execute(f"SELECT count(*) FROM {t} WHERE credit_card = %s", (partial(raw),)).fetchone() == (1,)
        assert conn.execute(f"SELECT c.customer_id FROM {t} c JOIN {t} d ON c.credit_card = d.credit_card "
                            "ORDER BY 1").fetchall() == [(100,), (102,), (103,)]
        assert conn.execute(f"SELECT max(credit_card) FROM {t} GROUP BY customer_id ORDER BY 1 LIMIT 1"
                            ).fetchone() == (partial(CARDS[2][1]),)
        assert conn.execute(f"WITH x AS (SELECT * FROM {t}) SELECT row_to_json(x) FROM x WHERE customer_id = 100"
                            ).fetchone()[0] == {"customer_id": 100, "credit_card": partial(raw)}
        assert conn.execute(f"SELECT credit_card FROM {t} WHERE customer_id = %s", (100,), prepare=True
                            ).fetchone() == (partial(raw),)


def test_what_the_rewrite_cannot_reach_fails_closed(proxy, world, postgres):
    n = world
    t = n["cards"]
    function = (f"CREATE FUNCTION public.{t}_f() RETURNS SETOF text LANGUAGE sql "
                f"AS $$SELECT credit_card FROM public.{t}$$")
    with proxy.connect(n["regular"], PASSWORD) as conn:
        conn.execute(f"CREATE VIEW {t}_v AS SELECT * FROM {t}")  # made before the attachment
        with pytest.raises(psycopg.errors.FeatureNotSupported):  # a function that reads a table: refused now
            conn.execute(function)
    made_before(postgres, n["regular"], function)  # as it still is where it was made before that refusal
    with proxy.connect() as admin:
        admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {t}(credit_card) TO {n['regular']}")
    masked_soon(proxy, n["regular"], t, [FULL] * 3)
    for sql in (f"SELECT * FROM {t}_v", f"SELECT * FROM {t}_f()",
                f"DO $$DECLARE r record; BEGIN FOR r IN SELECT * FROM {t} LOOP END LOOP; END$$",
                f"UPDATE {t} SET customer_id = customer_id", f"DELETE FROM {t} WHERE customer_id = 0"):
        with proxy.connect(n["regular"], PASSWORD) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for relation {t}"):
                conn.execute(sql)
    with proxy.connect(n["regular"], PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with conn.cursor().copy(f"COPY {t} TO STDOUT") as copy:
                list(copy)
    with proxy.connect(n["regular"], PASSWORD) as conn:  # COPY of a query is rewritten
        with conn.cursor().copy(f"COPY (SELECT credit_card FROM {t} ORDER BY 1) TO STDOUT") as copy:
            assert b"".join(bytes(b) for b in copy) == (FULL + "\n").encode() * 3
        conn.execute(f"CREATE VIEW {t}_w AS SELECT * FROM {t}")  # made now: reads through the mask
        assert conn.execute(f"SELECT DISTINCT credit_card FROM {t}_w").fetchall() == [(FULL,)]
    # A view masks for the user who queries it.
    with proxy.connect(n["regular"], PASSWORD) as conn:
        conn.execute(f"GRANT SELECT ON {t}_w TO {n['analytics']}")
    assert cards(proxy, n["analytics"], f"{t}_w") == [c for _, c in CARDS]


def test_row_level_security_applies_before_masking(proxy, world):
    n = world
    t = n["cards"]
    rls = unique("rls")
    with proxy.connect() as admin:
        admin.execute(f"CREATE RLS POLICY {rls} WITH (customer_id int) USING (customer_id >= 102)")
        admin.execute(f"ATTACH RLS POLICY {rls} ON {t} TO {n['regular']}")
        admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
        admin.execute(f"ATTACH MASKING POLICY {n['partial']} ON {t}(credit_card) TO {n['regular']}")
    try:
        assert masked_soon(proxy, n["regular"], t, [partial(CARDS[1][1]), partial(CARDS[2][1])])
        assert cards(proxy, n["analytics"], t) == []  # RLS on, no policy for him
    finally:
        with proxy.connect() as admin:
            admin.execute(f"ALTER TABLE {t} ROW LEVEL SECURITY OFF")
            admin.execute(f"DROP RLS POLICY {rls} CASCADE")


def test_privileges_are_the_querying_users(proxy, world):
    n = world
    t = n["cards"]
    with proxy.connect() as admin:
        admin.execute(f"REVOKE SELECT ON {t} FROM PUBLIC")
        admin.execute(f"GRANT SELECT (customer_id) ON {t} TO {n['regular']}")
        admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {t}(credit_card) TO PUBLIC")
    wait_until_rewritten(proxy, t)
    # Column-level grants alone do not reach a masked table (documented deviation).
    with proxy.connect(n["regular"], PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(f"SELECT customer_id FROM {t}")
    with proxy.connect(n["analytics"], PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT customer_id FROM {t}")
    with proxy.connect() as admin:  # one level at a time (Redshift's column rules)
        admin.execute(f"REVOKE SELECT (customer_id) ON {t} FROM {n['regular']}")
        admin.execute(f"GRANT SELECT ON {t} TO {n['regular']}")
    with proxy.connect(n["regular"], PASSWORD) as conn:
        assert conn.execute(f"SELECT customer_id, credit_card FROM {t} ORDER BY 1").fetchall() == [
            (c, FULL) for c, _ in CARDS]


def test_masked_columns_keep_their_names(proxy, world):
    n = world
    t = n["cards"]
    with proxy.connect() as admin:
        admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {t}(credit_card) TO {n['regular']}")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="masking policy attached"):
            admin.execute(f"ALTER TABLE {t} RENAME COLUMN credit_card TO cc")
        admin.execute(f"ALTER TABLE {t} ADD COLUMN note text")  # the view follows new columns
    with proxy.connect(n["regular"], PASSWORD) as conn:
        assert eventually(lambda: conn.execute(f"SELECT credit_card, note FROM {t} LIMIT 1").fetchone()) == (
            FULL, None)


@pytest.mark.parametrize("statement, error, fragment", [
    ("ATTACH MASKING POLICY {full} ON {cards}(credit_card) TO PUBLIC; "
     "ATTACH MASKING POLICY {partial} ON {cards}(credit_card) TO {regular}",
     psycopg.errors.DuplicateObject, "priority"),
    ("ATTACH MASKING POLICY {full} ON {cards}(credit_card) TO PUBLIC; DROP MASKING POLICY {full}",
     psycopg.errors.DependentObjectsStillExist, "attached"),
    ("ATTACH MASKING POLICY {full} ON {cards}(nope) TO PUBLIC", psycopg.errors.UndefinedColumn, "nope"),
    ("ATTACH MASKING POLICY {full} ON {cards}(credit_card) TO {regular}, {analytics}",
     psycopg.errors.SyntaxError, "one user, role or PUBLIC"),
    ("CREATE MASKING POLICY {full} WITH (a int) USING (a)", psycopg.errors.DuplicateObject, "already exists"),
    ("CREATE MASKING POLICY {other} WITH (a int) USING ((SELECT 1))", psycopg.errors.FeatureNotSupported,
     "read tables"),
    ("DETACH MASKING POLICY {full} ON {cards}(credit_card) FROM PUBLIC", psycopg.errors.UndefinedObject,
     "not attached"),
])
def test_masking_errors(proxy, world, statement, error, fragment):
    with proxy.connect() as admin:
        with pytest.raises(error, match=fragment):
            admin.execute(statement.format(**world))


def test_only_superusers_and_secadmin_manage_masking(proxy, world):
    n = world
    with proxy.connect(n["regular"], PASSWORD) as conn:
        for statement in (f"CREATE MASKING POLICY {n['other']} WITH (a int) USING (a)",
                          f"ATTACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) TO PUBLIC",
                          f"DROP MASKING POLICY {n['full']}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM svv_masking_policy").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # forged: not from the proxy
            conn.execute("CALL shiftguard.create_masking_policy(%s, %s, 'public')",
                         ('{"name": "x", "columns": [], "expressions": ["1"], "written": ["1"]}', "0" * 64))
    with proxy.connect() as admin:
        admin.execute(f"CREATE MASKING POLICY IF NOT EXISTS {n['full']} WITH (a int) USING (a)")  # a notice
        admin.execute(f"ALTER MASKING POLICY {n['full']} USING ('hidden'::text)")
        assert admin.execute("SELECT policy_expression FROM svv_masking_policy WHERE policy_name = %s",
                             (n["full"],)).fetchone() == ('["CAST(\'hidden\' AS text)"]',)


def estimate_differs(conn, table: str, a: str, b: str) -> bool:
    """Do the planner's row estimates of two conditions on the raw table differ (EXPLAIN in a DO
    block, which the proxy does not see)? Only statistics of the column make them differ."""
    from .test_masking_leaks import estimates
    seen = []
    conn.add_notice_handler(lambda notice: seen.append(notice.message_primary))
    conn.execute(estimates(table, a, b))
    return any("LEAKED" in message for message in seen)


def test_masked_columns_keep_no_statistics(proxy, world, postgres):
    """The planner's estimates would give a masked column's raw values and their frequencies;
    a masked column and the statistics objects reading it keep none while it is masked, and
    gather them again once the last attachment is gone. (A masked table has no index on
    expressions: test_masking_is_not_attached_to_a_table_with_code_over_its_rows.)"""
    n = world
    t = unique("stats")
    dominant = CARDS[0][1]
    probe = (t, f"credit_card = reverse('{dominant[::-1]}')", "credit_card = 'nothing'")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {t} (customer_id int, credit_card text)")
        admin.execute(f"INSERT INTO {t} SELECT g, CASE WHEN g <= 300 THEN '{dominant}' ELSE g::text END "
                      "FROM generate_series(1, 330) g")
        admin.execute(f"CREATE INDEX {t}_card ON {t} (credit_card)")
        admin.execute(f"CREATE STATISTICS {t}_st ON customer_id, credit_card FROM {t}")
        admin.execute(f"GRANT SELECT ON {t} TO PUBLIC")
        admin.execute(f"ANALYZE {t}")
    with proxy.connect(n["regular"], PASSWORD) as conn:
        assert estimate_differs(conn, *probe)  # the probe sees statistics where there are some
        assert estimate_differs(conn, t, "credit_card < '5'", "credit_card >= '5'")

    def statistics(direct):
        return (direct.execute("SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = %s::regclass "
                               "AND attnum > 0 ORDER BY attnum", (t,)).fetchall(),
                direct.execute("SELECT stxstattarget FROM pg_statistic_ext WHERE stxname = %s",
                               (f"{t}_st",)).fetchone()[0],
                direct.execute("SELECT count(*) FROM pg_statistic_ext_data d JOIN pg_statistic_ext s "
                               "ON s.oid = d.stxoid WHERE s.stxname = %s", (f"{t}_st",)).fetchone()[0],
                [row[0] for row in direct.execute(
                    "SELECT DISTINCT starelid::regclass::text || '.' || staattnum FROM pg_statistic "
                    "WHERE starelid = %s::regclass ORDER BY 1", (t,))])

    with postgres.connect() as direct:
        assert statistics(direct) == ([("customer_id", -1), ("credit_card", -1)], -1, 1, [f"{t}.1", f"{t}.2"])
    with proxy.connect() as admin:
        admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {t}(credit_card) TO PUBLIC")
        admin.execute(f"ANALYZE {t}")
    masked = ([("customer_id", -1), ("credit_card", 0)], 0, 0, [f"{t}.1"])
    with postgres.connect() as direct:
        assert statistics(direct) == masked
    with proxy.connect(n["regular"], PASSWORD) as conn:
        assert not estimate_differs(conn, *probe)
        assert not estimate_differs(conn, t, "credit_card < '5'", "credit_card >= '5'")
    with proxy.connect() as admin:  # nobody gives them statistics again, not even a superuser
        for statement in (f"ALTER TABLE {t} ALTER COLUMN credit_card SET STATISTICS 100",
                          f"DO $$BEGIN ALTER TABLE {t} ALTER COLUMN credit_card SET STATISTICS -1; END$$",
                          f"ALTER STATISTICS {t}_st SET STATISTICS 10",
                          f"DO $$BEGIN CREATE STATISTICS {t}_st3 ON credit_card, customer_id FROM {t}; END$$"):
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="masked column") as refused:
                admin.execute(statement)
            assert "Detach the masking policies" in refused.value.diag.message_hint
        for statement in (f"CREATE INDEX ON {t} (upper(credit_card))",  # no masked table has them at all
                          f"CREATE INDEX ON {t} (customer_id) WHERE credit_card LIKE '4%'",
                          f"CREATE STATISTICS {t}_st3 ON (lower(credit_card)), customer_id FROM {t}"):
            with pytest.raises(psycopg.errors.FeatureNotSupported,  # the proxy's, or the backend's words
                               match="masking policy attached: it cannot have|read a masked column"):
                admin.execute(statement)
        # what reads no masked column is not touched
        admin.execute(f"ALTER TABLE {t} ALTER COLUMN customer_id SET STATISTICS 50")
        admin.execute(f"CREATE INDEX {t}_plain ON {t} (credit_card)")
        admin.execute(f"CREATE INDEX {t}_id2 ON {t} (customer_id)")
        admin.execute(f"ALTER TABLE {t} ALTER COLUMN customer_id SET STATISTICS -1")
    with postgres.connect() as direct:
        assert statistics(direct) == masked
    with proxy.connect() as admin:
        admin.execute(f"DETACH MASKING POLICY {n['full']} ON {t}(credit_card) FROM PUBLIC")
        admin.execute(f"ANALYZE {t}")
    with postgres.connect() as direct:
        assert statistics(direct) == ([("customer_id", -1), ("credit_card", -1)], -1, 1, [f"{t}.1", f"{t}.2"])
    with proxy.connect(n["regular"], PASSWORD) as conn:
        assert estimate_differs(conn, *probe)
    with proxy.connect() as admin:
        admin.execute(f"DROP TABLE {t}")


def test_tables_masked_before_keep_no_statistics_from_the_next_start(make_proxy, postgres):
    """A database whose masked columns still have statistics (masked by an older version) loses
    them when a proxy starts on it."""
    proxy = make_proxy()
    t, policy = unique("old"), unique("m")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {t} (a int, card text)")
        admin.execute(f"INSERT INTO {t} SELECT g, 'x' || (g % 3) FROM generate_series(1, 100) g")
        admin.execute(f"CREATE MASKING POLICY {policy} WITH (card text) USING ('{FULL}'::text)")
        admin.execute(f"ATTACH MASKING POLICY {policy} ON {t}(card) TO PUBLIC")
    with postgres.connect() as direct:  # as an older version left it
        direct.execute("SET search_path = pg_catalog")
        direct.execute(f"ALTER EVENT TRIGGER shiftguard_guard_masked_statistics DISABLE")
        try:
            direct.execute(f"ALTER TABLE public.{t} ALTER COLUMN card SET STATISTICS -1")
            direct.execute(f"ANALYZE public.{t}")
        finally:
            direct.execute(f"ALTER EVENT TRIGGER shiftguard_guard_masked_statistics ENABLE")
        assert direct.execute("SELECT count(*) FROM pg_statistic WHERE starelid = %s::regclass AND staattnum = 2",
                              (f"public.{t}",)).fetchone() == (1,)
        installed_by_an_older_version(direct)
    make_proxy()
    with postgres.connect() as direct:
        assert direct.execute("SELECT attstattarget, (SELECT count(*) FROM pg_statistic WHERE starelid = attrelid "
                              "AND staattnum = attnum) FROM pg_attribute WHERE attrelid = %s::regclass "
                              "AND attname = 'card'", (f"public.{t}",)).fetchone() == (0, 0)
    with proxy.connect() as admin:
        admin.execute(f"DETACH MASKING POLICY {policy} ON {t}(card) FROM PUBLIC")
        admin.execute(f"DROP MASKING POLICY {policy}")
        admin.execute(f"DROP TABLE {t}")


def test_masking_expressions_that_took_session_user_for_the_reader_are_made_again(make_proxy, postgres):
    """An older version wrote a masking expression's current_user as session_user (the admin,
    while an admin's ANALYZE runs a user's index expression). A proxy starting prints it again
    with current_user; the masking still tells readers apart."""
    proxy = make_proxy()
    t, policy, user, other = unique("old"), unique("m"), unique("u"), unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE USER {other} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE TABLE {t} (a int, card text)")
        admin.execute(f"INSERT INTO {t} VALUES (1, '4111')")
        admin.execute(f"GRANT SELECT ON {t} TO {user}, {other}")
        admin.execute(f"CREATE MASKING POLICY {policy} WITH (card text) "
                      f"USING (CASE WHEN current_user = '{user}' THEN card ELSE '{FULL}' END)")
        admin.execute(f"ATTACH MASKING POLICY {policy} ON {t}(card) TO PUBLIC")
    function = f'shiftguard."mask:{policy}:1"(text)'
    with postgres.connect() as direct:  # as an older version left it
        direct.execute("SET search_path = pg_catalog")
        direct.execute(f"CREATE OR REPLACE FUNCTION shiftguard.\"mask:{policy}:1\"(card text) RETURNS text "
                       f"LANGUAGE sql STABLE RETURN (CASE WHEN session_user = '{user}' THEN card ELSE '{FULL}' END)")
        installed_by_an_older_version(direct)
    make_proxy()
    with postgres.connect() as direct:
        body = direct.execute("SELECT pg_get_function_sqlbody(%s::regprocedure)", (function,)).fetchone()[0]
        assert "CURRENT_USER" in body and "SESSION_USER" not in body
    with proxy.connect(user, PASSWORD) as conn:
        assert conn.execute(f"SELECT card FROM {t}").fetchall() == [("4111",)]
    with proxy.connect(other, PASSWORD) as conn:
        assert conn.execute(f"SELECT card FROM {t}").fetchall() == [(FULL,)]
    with proxy.connect() as admin:
        admin.execute(f"DETACH MASKING POLICY {policy} ON {t}(card) FROM PUBLIC")
        admin.execute(f"DROP MASKING POLICY {policy}")
        admin.execute(f"DROP TABLE {t}")
        admin.execute(f"DROP USER {user}, {other}")


def test_masked_tables_take_no_part_in_inheritance(proxy, world):
    """Rows read through a parent are not masked (PostgreSQL applies the row security of the
    table a query names): a table in inheritance or partitioning cannot be masked, nor a masked
    table linked."""
    n = world
    parent, child, parts = unique("parent"), unique("child"), unique("parts")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {parent} (customer_id INT, credit_card TEXT)")
        admin.execute(f"CREATE TABLE {child} () INHERITS ({parent})")
        admin.execute(f"CREATE TABLE {parts} (customer_id INT, credit_card TEXT) PARTITION BY LIST (customer_id)")
        for table in (parent, child, parts):
            with pytest.raises(psycopg.errors.FeatureNotSupported,
                               match=f'masking cannot be used on "{table}": it takes part in table inheritance'):
                admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {table}(credit_card) TO PUBLIC")
        admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) TO PUBLIC")
        for statement in (f"ALTER TABLE {n['cards']} INHERIT {parent}",
                          f"DO $$BEGIN ALTER TABLE {n['cards']} INHERIT {parent}; END$$",
                          f"ALTER TABLE {parts} ATTACH PARTITION {n['cards']} DEFAULT",
                          f"DO $$BEGIN EXECUTE 'ALTER TABLE {parts} ATTACH PARTITION {n['cards']} DEFAULT'; END$$",
                          f"CREATE TABLE {n['cards']}_kid () INHERITS ({n['cards']})"):
            with pytest.raises(psycopg.errors.FeatureNotSupported,
                               match=f'table "{n["cards"]}" has a masking policy attached: it cannot take part'):
                admin.execute(statement)
        admin.execute(f"DETACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) FROM PUBLIC")

        def linked():  # no longer masked: PostgreSQL's own rules, once the proxy has read the change
            try:
                admin.execute(f"ALTER TABLE {n['cards']} INHERIT {parent}")
                return True
            except psycopg.errors.FeatureNotSupported:
                return False
        assert wait_for(linked, timeout=5)
        assert admin.execute(f"SELECT count(*) FROM {parent}").fetchone() == (len(CARDS),)
        admin.execute(f"ALTER TABLE {n['cards']} NO INHERIT {parent}")
        admin.execute(f"DROP TABLE {parent} CASCADE")  # and its child
        admin.execute(f"DROP TABLE {parts}")


def test_masking_is_not_attached_to_a_table_with_code_over_its_rows(proxy, world):
    """A trigger, a rule, an index on expressions or with a predicate, a CHECK constraint, a
    generated column or statistics on expressions would see the raw values of a masked column:
    a table that has one cannot be masked, and the error lists them."""
    n = world
    t = unique("coded")
    with proxy.connect() as admin:
        for statement in (f"CREATE TABLE {t} (customer_id INT, credit_card TEXT)",
                          f"CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
                          f"CREATE TRIGGER {t}_tr AFTER INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_f()",
                          f"CREATE RULE {t}_r AS ON INSERT TO {t} DO ALSO NOTIFY x",
                          f"CREATE INDEX {t}_e ON {t} ((customer_id + 1))",  # reads no masked column, even
                          f"ALTER TABLE {t} ADD CONSTRAINT {t}_c CHECK (credit_card <> '')",
                          f"ALTER TABLE {t} ADD COLUMN copy text GENERATED ALWAYS AS (credit_card) STORED"):
            admin.execute(statement)
        with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
            admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {t}(credit_card) TO PUBLIC")
        assert refused.value.diag.message_primary == (
            f'masking cannot be used on "{t}": it has CHECK constraint "{t}_c", generated column "copy", '
            f'index "{t}_e" (on expressions or with a WHERE clause), rule "{t}_r", trigger "{t}_tr"')
        for statement in (f"DROP TRIGGER {t}_tr ON {t}", f"DROP RULE {t}_r ON {t}", f"DROP INDEX {t}_e",
                          f"ALTER TABLE {t} DROP CONSTRAINT {t}_c, DROP COLUMN copy"):
            admin.execute(statement)
        admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {t}(credit_card) TO PUBLIC")
        admin.execute(f"DETACH MASKING POLICY {n['full']} ON {t}(credit_card) FROM PUBLIC")
        admin.execute(f"DROP TABLE {t}")
        admin.execute(f"DROP FUNCTION {t}_f()")


def test_the_owner_of_a_masked_table_still_alters_it(proxy, world, postgres):
    """The owner, whom the masking covers, still adds columns, sets constant defaults and NOT NULL,
    makes plain indexes and primary keys, and renames the table (also in a DO block), which stays
    masked. (Other columns of a masked table keep their names and types: its masking view reads
    them all.)"""
    n = world
    owner, t = n["regular"], unique("owned")
    with proxy.connect() as admin:
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    try:
        with proxy.connect(owner, PASSWORD) as conn:
            conn.execute(f"CREATE TABLE {t} (customer_id INT, credit_card TEXT)")
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {t} VALUES (%s, %s)", CARDS)
        with proxy.connect() as admin:
            admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {t}(credit_card) TO PUBLIC")
        assert masked_soon(proxy, owner, t, [FULL] * len(CARDS)) == [FULL] * len(CARDS)
        with proxy.connect(owner, PASSWORD) as conn:
            for statement in (f"ALTER TABLE {t} ADD COLUMN note varchar(10) DEFAULT 'none'",
                              f"ALTER TABLE {t} ALTER COLUMN note SET NOT NULL",
                              f"ALTER TABLE {t} ALTER COLUMN customer_id SET NOT NULL",
                              f"ALTER TABLE {t} ADD PRIMARY KEY (customer_id)",
                              f"CREATE INDEX {t}_card ON {t} (credit_card)",
                              f"ALTER TABLE {t} RENAME TO {t}_2"):
                conn.execute(statement)
        assert eventually(lambda: cards(proxy, owner, f"{t}_2")) == [FULL] * len(CARDS)
        with proxy.connect(owner, PASSWORD) as conn:
            conn.execute(f"DO $$BEGIN ALTER TABLE {t}_2 RENAME TO {t}; END$$")
        assert eventually(lambda: cards(proxy, owner, t)) == [FULL] * len(CARDS)
        with postgres.connect() as direct:
            assert direct.execute(f"SELECT credit_card FROM {t} ORDER BY 1").fetchall() == sorted(
                (card,) for _, card in CARDS)
        with proxy.connect() as admin:
            admin.execute(f"DETACH MASKING POLICY {n['full']} ON {t}(credit_card) FROM PUBLIC")
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE IF EXISTS {t}, {t}_2")
            admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {owner}")


def _all_at_once(connections, table: str) -> list:
    """Each connection's credit cards (or the error it got), the queries sent at the same time."""
    def read(conn):
        try:
            # Not prepared: a statement prepared before a change names the table as it was then
            # (masked: the raw table, which fails closed)
            return [row[0] for row in conn.execute(f"SELECT credit_card FROM {table} ORDER BY customer_id",
                                                   prepare=False)]
        except psycopg.Error as exc:
            return exc
    with concurrent.futures.ThreadPoolExecutor(len(connections)) as pool:
        return list(pool.map(read, connections))


def test_a_change_is_in_force_on_every_session_once_it_is_answered(proxy, world):
    """The statement after an ATTACH or DETACH, on any session of the proxy that ran it, sees
    the change: never the 42501 of the moment before the proxy has read it, never raw values.
    In both protocols, and for a change committed by a COMMIT of its own."""
    n = world
    raw, full = [c for _, c in CARDS], [FULL] * 3
    attach = f"ATTACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) TO PUBLIC"
    detach = f"DETACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) FROM PUBLIC"
    readers = [psycopg.connect(proxy.conninfo(n["regular"], PASSWORD), autocommit=True) for _ in range(10)]
    try:
        with proxy.connect() as admin:
            simple = psycopg.ClientCursor(admin)
            for round_ in range(5):
                run = admin.execute if round_ % 2 else simple.execute  # extended, then simple protocol
                run(attach)
                assert _all_at_once(readers, n["cards"]) == [full] * 10
                run(detach)
                assert _all_at_once(readers, n["cards"]) == [raw] * 10
            with admin.transaction():
                admin.execute(attach)
            assert _all_at_once(readers, n["cards"]) == [full] * 10
            admin.execute("BEGIN")
            admin.execute(detach)
            admin.execute("ROLLBACK")  # nothing changed
            assert _all_at_once(readers, n["cards"]) == [full] * 10
    finally:
        for conn in readers:
            conn.close()


def test_other_proxies_learn_a_change_by_notification(proxy, world, make_proxy, postgres):
    """A second proxy on the same backend reads an attachment made through the first as soon as
    it is committed (LISTEN/NOTIFY; it would otherwise look only every 30 s), and meanwhile
    refuses rather than show raw values; also after its listening connection was cut."""
    n = world
    other = make_proxy()
    full = [FULL] * 3
    for round_, attaching in enumerate((True, False, True, False)):
        if round_ == 2:
            with postgres.connect() as direct:
                cut = direct.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE query LIKE 'LISTEN %'").fetchone()[0]
            assert cut >= 2  # each proxy's
        with proxy.connect() as admin:
            if attaching:
                admin.execute(f"ATTACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) TO PUBLIC")
            else:
                admin.execute(f"DETACH MASKING POLICY {n['full']} ON {n['cards']}(credit_card) FROM PUBLIC")
        expected = full if attaching else [c for _, c in CARDS]
        seen = []

        def current():
            try:
                seen.append(cards(other, n["regular"], n["cards"]))
            except psycopg.errors.InsufficientPrivilege as exc:
                seen.append(exc)  # not read yet: refused, never the raw values
            return seen[-1] == expected
        assert wait_for(current, timeout=10), seen
        assert all(result == expected or isinstance(result, psycopg.Error) for result in seen), seen
