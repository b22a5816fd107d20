"""Nothing an ordinary user creates ever runs as someone else (DESIGN principle 7).

PUBLIC may create in schema public, and PostgreSQL prefers a better-matching overload there
(public.array_to_string(text[], text)) to the built-in, even with pg_catalog first on the path.
Two layers, each tested on its own:

1. Planting is refused: no ordinary user creates an operator, operator class or family, cast,
   conversion or text search object, or a function named like a built-in one with other
   argument types, through the proxy or from a DO block or function body (the event trigger).
2. Nothing of shiftguard's resolves to a planted object anyway. Traps are planted past the
   refusal (as an older shiftguard, or a backend without event triggers, would have let them
   be), owned by mallory; each logs who runs it. Then every code path of shiftguard's runs (log
   in, start, EXPLAIN, GRANT, catalog views, Redshift's functions, RLS and masking, COPY and
   UNLOAD), as the admin and as other users, and no trap may run as anyone but mallory.
"""

from __future__ import annotations

import shutil

import psycopg
import psycopg.sql
import pytest

from proxy.config import Iam
from proxy.testing import s3_roles

from ..conftest import USER_PASSWORD, installed_by_an_older_version, server_directory, unique, wait_for

# Functions of pg_catalog that shiftguard's own SQL calls, each with argument types that would
# match the calls better than the built-in does: (signature, result, body returning the built-in).
FUNCTIONS = [
    ("array_to_string(text[], text)", "text", "RETURN pg_catalog.array_to_string($1, $2)"),
    ("unnest(text[])", "SETOF text", "RETURN QUERY SELECT pg_catalog.unnest($1)"),
    ("unnest(double precision[])", "SETOF double precision", "RETURN QUERY SELECT pg_catalog.unnest($1)"),
    ("format(text, text)", "text", "RETURN pg_catalog.format($1, $2)"),
    ("format(text, text, text)", "text", "RETURN pg_catalog.format($1, $2, $3)"),
    ("format(text, regclass)", "text", "RETURN pg_catalog.format($1, $2)"),
    ("format(text, text, regclass)", "text", "RETURN pg_catalog.format($1, $2, $3)"),
    ("format(text, text, text, regclass, text)", "text", "RETURN pg_catalog.format($1, $2, $3, $4, $5)"),
    ("pg_has_role(name, text, text)", "boolean", "RETURN pg_catalog.pg_has_role($1, $2::name, $3)"),
    ("pg_has_role(text, text, text)", "boolean", "RETURN pg_catalog.pg_has_role($1::name, $2::name, $3)"),
    ("array_position(text[], text)", "integer", "RETURN pg_catalog.array_position($1, $2)"),
    ("to_jsonb(text)", "jsonb", "RETURN pg_catalog.to_jsonb($1)"),
    ("concat_ws(text, oid, oid, text)", "text", "RETURN pg_catalog.concat_ws($1, $2, $3, $4)"),
    ("lower(character varying)", "text", "RETURN pg_catalog.lower($1)"),
    ("upper(character varying)", "text", "RETURN pg_catalog.upper($1)"),
    ("length(character varying)", "integer", "RETURN pg_catalog.length($1)"),
    ("btrim(character varying)", "text", "RETURN pg_catalog.btrim($1)"),
    ("strpos(character varying, text)", "integer", "RETURN pg_catalog.strpos($1, $2)"),
    ("replace(character varying, text, text)", "text", "RETURN pg_catalog.replace($1, $2, $3)"),
    ("regexp_replace(character varying, text, text)", "text", "RETURN pg_catalog.regexp_replace($1, $2, $3)"),
    ("quote_ident(character varying)", "text", "RETURN pg_catalog.quote_ident($1)"),
    ("starts_with(character varying, text)", "boolean", "RETURN pg_catalog.starts_with($1, $2)"),
    ("make_interval(months integer)", "interval", "RETURN pg_catalog.make_interval(months => $1)"),
    ("jsonb_typeof(json)", "text", "RETURN pg_catalog.jsonb_typeof($1::jsonb)"),
]

# Operators that a built-in one would otherwise answer after a cast: (name, left, right, result,
# body returning the built-in's answer).
OPERATORS = [
    ("=", "character varying", "character varying", "boolean", "RETURN $1::text OPERATOR(pg_catalog.=) $2::text"),
    ("<>", "character varying", "character varying", "boolean", "RETURN $1::text OPERATOR(pg_catalog.<>) $2::text"),
    ("~", "character varying", "text", "boolean", "RETURN $1::text OPERATOR(pg_catalog.~) $2"),
    ("||", "bigint", "text", "text", "RETURN $1::text OPERATOR(pg_catalog.||) $2"),
    ("||", "text", "bigint", "text", "RETURN $1 OPERATOR(pg_catalog.||) $2::text"),
    ("||", "integer", "text", "text", "RETURN $1::text OPERATOR(pg_catalog.||) $2"),
    ("||", "text", "integer", "text", "RETURN $1 OPERATOR(pg_catalog.||) $2::text"),
    ("||", "text", "oid", "text", "RETURN $1 OPERATOR(pg_catalog.||) $2::text"),
]


def _trap(name: str, args: str, result: str, body: str, log: str) -> str:
    return (f"CREATE FUNCTION public.{name}({args}) RETURNS {result} LANGUAGE plpgsql AS $t$BEGIN "
            f"INSERT INTO public.{log} (who, trap) VALUES (current_user, {psycopg.sql.quote(name + '(' + args + ')')}); "
            f"{body}; END$t$")


def _expression(name: str, args: str, result: str, body: str, log: str) -> str:
    """A trap's function as a SQL function of one expression, without the log: the form any user
    may create (catalog/users_code.sql refuses PL/pgSQL functions to users), so that only its
    name can be what is refused."""
    return (f"CREATE FUNCTION public.{name}({args}) RETURNS {result} LANGUAGE sql "
            f"{body.replace('RETURN QUERY SELECT ', 'RETURN ')}")


def _signature(entry: str) -> tuple[str, str]:
    name, _, args = entry.partition("(")
    return name, args[:-1]


def operator_functions(log: str, function=_trap) -> list[str]:
    """The functions the trap operators call (harmless names)."""
    return [function(f"{log}_op{n}", f"{left}, {right}", result, body, log)
            for n, (op, left, right, result, body) in enumerate(OPERATORS)]


def plantings(log: str, function=_trap) -> list[str]:
    """The CREATE statements of every trap (after operator_functions)."""
    statements = [function(*_signature(signature), result, body, log) for signature, result, body in FUNCTIONS]
    for n, (op, left, right, result, body) in enumerate(OPERATORS):
        statements.append(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                          f"FUNCTION = public.{log}_op{n})")
    return statements


@pytest.fixture
def mallory(proxy, postgres):
    name = unique("mallory")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} PASSWORD '{USER_PASSWORD}'")
    yield name
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {name} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"DROP USER IF EXISTS {name}")


def test_planting_is_refused(proxy, mallory, postgres):
    """Through the proxy, from a DO block and from a stored procedure's body: every planting
    fails, and nothing of it is left. The functions are SQL functions of one expression, which
    users may create (PL/pgSQL ones are refused to users whatever their name): their names are
    what is refused."""
    log = unique("trap")
    attempts = []
    for statement in plantings(log, _expression):
        attempts += [statement, f"DO $d$BEGIN EXECUTE {psycopg.sql.quote(statement)}; END$d$"]
    attempts += [
        # a harmless function renamed or moved onto a built-in's name
        f"CREATE FUNCTION public.f_{log}(text[], text) RETURNS text LANGUAGE sql AS $$SELECT 'x'$$; "
        f"ALTER FUNCTION public.f_{log}(text[], text) RENAME TO array_to_string",
        "CREATE FUNCTION pg_temp.array_to_string(text[], text) RETURNS text LANGUAGE sql AS $$SELECT 'x'$$",
        f"CREATE FUNCTION public.{log}_sf(text, varchar) RETURNS text LANGUAGE sql AS $$SELECT $2::text$$; "
        f"CREATE AGGREGATE public.max(varchar) (SFUNC = public.{log}_sf, STYPE = text)",
        f"CREATE PROCEDURE public.{log}_mk() LANGUAGE plpgsql AS $f$BEGIN "
        f"EXECUTE 'CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.{log}_op0)'; "
        f"END$f$; CALL public.{log}_mk()",
        # the other ways of changing what an expression resolves to
        f"CREATE TYPE public.{log}_t AS (a int); CREATE FUNCTION public.{log}_c(public.{log}_t) RETURNS text "
        f"LANGUAGE sql AS $$SELECT 'x'$$; CREATE CAST (public.{log}_t AS text) WITH FUNCTION public.{log}_c(public.{log}_t)",
        f"CREATE TYPE public.{log}_t2 AS (a int); CREATE CAST (public.{log}_t2 AS text) WITH INOUT AS IMPLICIT",
        f"CREATE CONVERSION public.{log}_conv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
        f"CREATE DEFAULT CONVERSION public.{log}_conv2 FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
        f"CREATE TEXT SEARCH DICTIONARY public.{log}_dict (TEMPLATE = pg_catalog.simple)",
        f"CREATE TEXT SEARCH CONFIGURATION public.{log}_cfg (COPY = pg_catalog.english)",
        f"CREATE OPERATOR FAMILY public.{log}_fam USING btree",
        f"CREATE OPERATOR CLASS public.{log}_cls FOR TYPE int4 USING hash AS OPERATOR 1 pg_catalog.= (int4, int4)",
        "DO $d$BEGIN EXECUTE 'CREATE CAST (varchar AS bigint) WITH INOUT'; END$d$",
        f"DO $d$BEGIN EXECUTE 'CREATE TEXT SEARCH DICTIONARY public.{log}_d2 (TEMPLATE = pg_catalog.simple)'; END$d$",
        "ALTER OPERATOR pg_catalog.= (integer, integer) SET (RESTRICT = eqsel)",
    ]
    refused = 0
    with proxy.connect(mallory, USER_PASSWORD) as conn, postgres.connect() as direct:
        conn.execute(f"CREATE TABLE public.{log} (who text, trap text)")
        for statement in operator_functions(log, _expression):
            conn.execute(statement)
        for attempt in attempts:
            try:
                conn.execute(attempt)
            except psycopg.errors.Error as exc:
                assert exc.sqlstate in ("0A000", "42723", "42501"), (attempt, exc.sqlstate, str(exc))
                refused += 1
            else:
                pytest.fail(f"planted: {attempt}")
        planted = direct.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
            "WHERE r.rolname = %s AND p.proname IN (SELECT proname FROM pg_proc "
            "WHERE pronamespace = 'pg_catalog'::regnamespace) "
            "UNION ALL SELECT o.oid::regoperator::text FROM pg_operator o JOIN pg_roles r ON r.oid = o.oprowner "
            "WHERE r.rolname = %s UNION ALL SELECT castsource::regtype || '->' || casttarget::regtype FROM pg_cast "
            "WHERE oid >= 16384 AND (castsource::regtype::text LIKE %s OR castsource = 'varchar'::regtype "
            "AND casttarget = 'bigint'::regtype)",  # the planted cast (shiftguard's VARBYTE has one to bigint)
            (mallory, mallory, f"%{log}%")).fetchall()
        assert planted == []
    # What Redshift allows: a UDF of a built-in's exact signature (the built-in runs first) and
    # any f_ name.
    with proxy.connect(mallory, USER_PASSWORD) as conn:
        conn.execute("CREATE FUNCTION public.getdate() RETURNS timestamp LANGUAGE sql AS "
                     "$$SELECT '1999-01-01'::timestamp$$")
        conn.execute(f"CREATE FUNCTION public.f_{log}_lower(varchar) RETURNS text LANGUAGE sql AS $$SELECT 'mine'$$")
        assert conn.execute("SELECT getdate() > '2020-01-01'").fetchone() == (True,)
        assert conn.execute(f"SELECT f_{log}_lower('A')").fetchone() == ("mine",)
    print(f"\nplanting attempts: {len(attempts)}, succeeded: {len(attempts) - refused}")


# --------------------------------------------------------------------------- traps planted anyway

ROLE_ARN = "arn:aws:iam::123456789012:role/MyRedshiftRole"
ROLE = f"IAM_ROLE '{ROLE_ARN}'"


@pytest.fixture
def bucket():
    directory = server_directory({"in/rows.txt": "7|seven\n8|eight\n"})
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def planted(proxy, mallory, postgres):
    """Every trap, owned by mallory, planted past the event trigger (replica mode: as an older
    shiftguard or a backend without event triggers would have let it be). Yields the log table."""
    log = unique("trap")
    with proxy.connect(mallory, USER_PASSWORD) as conn:
        conn.execute(f"CREATE TABLE public.{log} (who text, trap text)")
        conn.execute(f"GRANT INSERT ON public.{log} TO PUBLIC")
    with postgres.connect() as direct:
        direct.execute("SET search_path = pg_catalog, pg_temp")
        direct.execute("SET session_replication_role = replica")
        for statement in operator_functions(log) + plantings(log):
            direct.execute(statement)
        for signature, _, _ in FUNCTIONS:
            direct.execute(f"ALTER FUNCTION public.{signature} OWNER TO {mallory}")
        for n, (op, left, right, _, _) in enumerate(OPERATORS):
            direct.execute(f"ALTER FUNCTION public.{log}_op{n}({left}, {right}) OWNER TO {mallory}")
            direct.execute(f"ALTER OPERATOR public.{op} ({left}, {right}) OWNER TO {mallory}")
    yield log
    with postgres.connect() as direct:
        direct.execute("SET search_path = pg_catalog, pg_temp")
        for n, (op, left, right, _, _) in enumerate(OPERATORS):
            direct.execute(f"DROP OPERATOR IF EXISTS public.{op} ({left}, {right})")
        for signature, _, _ in FUNCTIONS:
            name, args = _signature(signature)
            direct.execute(f"DROP FUNCTION IF EXISTS public.{name}({args.replace('months ', '')})")


def test_traps_are_live(proxy, mallory, planted):
    """The traps do catch what resolves to them (so the test below could fail)."""
    with proxy.connect(mallory, USER_PASSWORD) as conn:
        assert conn.execute("SELECT lower('A'::varchar), 'a'::varchar = 'a'::varchar, 1::bigint || 'x', "
                            "array_to_string(ARRAY['a', 'b'], ',')").fetchone() == ("a", True, "1x", "a,b")
        caught = {r[0] for r in conn.execute(f"SELECT trap FROM public.{planted}")}
    assert {"lower(character varying)", "array_to_string(text[], text)"} <= caught
    assert any(trap.endswith("_op0(character varying, character varying)") for trap in caught)


def test_nothing_of_shiftguard_runs_a_planted_object(make_proxy, proxy, mallory, planted, postgres, bucket):
    log = planted
    s3proxy = make_proxy(s3={"b": str(bucket)}, iam=Iam(roles=s3_roles([ROLE_ARN], ["b"])),
                         cluster__iam_roles=[ROLE_ARN])
    t, lookup, bob, carol, role = unique("t"), unique("lk"), unique("bob"), unique("carol"), unique("r")
    p_ok, p_lookup, p_varchar = unique("p"), unique("p"), unique("p")
    m_ok, m_regexp, m_lower = unique("m"), unique("m"), unique("m")
    ran = []

    def run(conn, statement, params=None, refused=None):
        ran.append(statement)
        if refused is None:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
        with pytest.raises(psycopg.errors.Error, match=refused):
            conn.execute(statement, params)

    with s3proxy.connect() as admin:
        for user in (bob, carol):
            run(admin, f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
        run(admin, f"CREATE TABLE {t} (k int, v varchar(20)) DISTKEY(k) SORTKEY(v)")
        run(admin, f"ALTER TABLE {t} ALTER DISTSTYLE EVEN")
        run(admin, f"INSERT INTO {t} VALUES (1, 'one'), (2, 'two'), (3, 'Concerts')")
        run(admin, f"CREATE TABLE {lookup} (k int)")
        run(admin, f"INSERT INTO {lookup} VALUES (2), (3)")
        # EXPLAIN, with and without parameters
        run(admin, f"EXPLAIN SELECT * FROM {t} WHERE v = 'x' AND k || 'a' = 'b'")
        run(admin, f"EXPLAIN VERBOSE SELECT * FROM {t} WHERE v = %s", ("x",))
        # GRANT and REVOKE in Redshift's forms
        run(admin, f"GRANT SELECT (v) ON {t} TO {bob}")
        run(admin, f"REVOKE SELECT (v) ON {t} FROM {bob}")
        run(admin, f"GRANT SELECT, DROP ON {t} TO {bob}")
        run(admin, f"REVOKE DROP ON {t} FROM {bob}")
        run(admin, f"GRANT SELECT ON {lookup} TO {bob}")
        run(admin, f"ALTER DEFAULT PRIVILEGES GRANT DROP ON TABLES TO {bob}")
        run(admin, f"ALTER DEFAULT PRIVILEGES FOR USER {bob} GRANT SELECT ON TABLES TO {carol}")
        run(admin, f"CREATE ROLE {role}")
        run(admin, f"GRANT TRUNCATE TABLE, ANALYZE, VACUUM TO ROLE {role}")
        run(admin, f"GRANT ROLE {role} TO {carol}")
        run(admin, f"ALTER USER {carol} SET statement_timeout = 60000")
        run(admin, f"VACUUM {t}")
        run(admin, f"ANALYZE {t}")
        # COPY and UNLOAD
        run(admin, f"COPY {t} FROM 's3://b/in/rows' {ROLE}")
        # (The admin's own expressions, such as v <> 'x', resolve as the admin's search_path says:
        # layer 1 keeps such an operator from being planted. Tested here is shiftguard's part.)
        run(admin, f"UNLOAD ('select * from {t} where k > 0') TO 's3://b/out/{t}_' {ROLE}")
        # the catalog views, Redshift's columns of PostgreSQL's catalogs, Redshift's functions
        for view in ("pg_table_def", "svv_table_info", "pg_user", "svv_user_info", "svv_user_grants",
                     "svv_relation_privileges", "svv_column_privileges", "svv_default_privileges", "stl_query",
                     "sys_query_history", "stl_connection_log", "stl_userlog", "svv_roles",
                     "svv_system_privileges", "svv_rls_policy", "svv_attached_masking_policy"):
            run(admin, f"SELECT count(*) FROM (SELECT * FROM {view} LIMIT 20) AS v")
        run(admin, f"SELECT attname, attencodingtype, attisdistkey FROM pg_attribute WHERE attrelid = '{t}'::regclass")
        run(admin, f"SELECT reldiststyle FROM pg_class WHERE relname = '{t}'")
        run(admin, "SELECT dateadd(day, 1, getdate()), dateadd(month, 2, '2020-01-31'::timestamp), "
                   "dateadd(quarter, 1, '2020-01-31'), datediff(day, '2020-01-01', '2020-03-01'), "
                   "add_months('2020-01-31'::timestamp, 1), months_between('2020-03-01'::date, '2020-01-01'::date), "
                   "nvl(NULL, 'x'), nvl2(1, 'a', 'b'), len('abc'), charindex('b', 'abc'), strtol('ff', 16), "
                   "json_extract_path_text('{\"a\": {\"b\": \"c\"}}', 'a', 'b'), "
                   "json_extract_array_element_text('[1, 2]', 1), json_array_length('[1, 2, 3]'), "
                   "is_valid_json('{}'), is_valid_json_array('[]'), "
                   "json_serialize(json_parse('{\"a\": [1, \"x\"], \"b\": {\"c\": null}}')), "
                   "is_array(json_parse('[1]')), convert_timezone('UTC', 'America/New_York', '2020-01-01 00:00'), "
                   "trunc('2020-01-01 10:00'::timestamp), format_encoding(1), sysdate")
        run(admin, f"SELECT median(k), listagg(v, ',') WITHIN GROUP (ORDER BY v) FROM {t}")
        # RLS and masking: what would bind to a planted object is refused, the rest works
        run(admin, f"CREATE RLS POLICY {p_varchar} WITH (v VARCHAR(20)) USING (v = 'Concerts')",
            refused="which only a superuser may own")
        run(admin, f"CREATE RLS POLICY {p_ok} WITH (k INT) USING (k > 1)")
        run(admin, f"CREATE RLS POLICY {p_lookup} WITH (k INT) USING (k IN (SELECT k FROM {lookup}))")
        run(admin, f"ATTACH RLS POLICY {p_ok} ON {t} TO {bob}")
        run(admin, f"ATTACH RLS POLICY {p_lookup} ON {t} TO {bob}")
        run(admin, f"ALTER TABLE {t} ROW LEVEL SECURITY ON")
        run(admin, f"CREATE MASKING POLICY {m_regexp} WITH (v VARCHAR(20)) USING (REGEXP_REPLACE(v, '[a-z]', 'X'))",
            refused="which only a superuser may own")
        run(admin, f"CREATE MASKING POLICY {m_lower} WITH (v VARCHAR(20)) USING (lower(v))",
            refused="which only a superuser may own")
        run(admin, f"CREATE MASKING POLICY {m_ok} WITH (v VARCHAR(20)) USING ('***'::TEXT)")
        run(admin, f"ATTACH MASKING POLICY {m_ok} ON {t}(v) TO {bob}")
        run(admin, f"EXPLAIN SELECT * FROM {t} WHERE v = 'x'")
    # other users: reading through RLS and masking, their permissions, their logins
    with s3proxy.connect(bob, USER_PASSWORD) as conn:
        def masked_rows():  # the proxy learns of new masking attachments within a moment
            try:
                return run(conn, f"SELECT k, v FROM {t} ORDER BY k")
            except psycopg.errors.InsufficientPrivilege:
                return None
        assert wait_for(masked_rows) == [(2, "***"), (3, "***")]  # k > 1 AND k IN lookup (2, 3)
        run(conn, f"EXPLAIN SELECT * FROM {t} WHERE v = 'x'")
    with s3proxy.connect(carol, USER_PASSWORD) as conn:
        run(conn, f"TRUNCATE {t}")
        run(conn, f"ANALYZE {t}")
    # the role's own defaults changed from a DO block do not outlive the session
    with s3proxy.connect(mallory, USER_PASSWORD) as conn:
        run(conn, f"DO $$BEGIN EXECUTE 'ALTER ROLE {mallory} SET work_mem = ''8MB'''; "
                  f"EXECUTE 'ALTER ROLE {mallory} IN DATABASE dev SET work_mem = ''9MB'''; END$$")
    with s3proxy.connect(mallory, USER_PASSWORD) as conn:
        assert run(conn, "SHOW work_mem") == [("4MB",)]
    with s3proxy.connect(carol, USER_PASSWORD) as conn:  # what ALTER USER set stays
        assert run(conn, "SHOW statement_timeout") == [("1min",)]
    # a proxy of another version starting on this backend (the private schema's bootstrap) and
    # its first logins
    with postgres.connect() as direct:
        installed_by_an_older_version(direct)
    again = make_proxy()
    for user, password in ((bob, USER_PASSWORD), ("awsuser", None)):
        with (again.connect(user, password) if password else again.connect()) as conn:
            run(conn, "SELECT 1")
    with postgres.connect() as direct:
        direct.execute("SET search_path = pg_catalog, pg_temp")
        strangers = direct.execute(f"SELECT who, trap FROM public.{log} WHERE who <> %s", (mallory,)).fetchall()
        superuser = direct.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (mallory,)).fetchone()[0]
        with s3proxy.connect() as admin:
            for policy in (p_ok, p_lookup):
                admin.execute(f"DETACH RLS POLICY {policy} ON {t} FROM {bob}")
                admin.execute(f"DROP RLS POLICY {policy}")
            admin.execute(f"DETACH MASKING POLICY {m_ok} ON {t}(v) FROM {bob}")
            admin.execute(f"DROP MASKING POLICY {m_ok}")
            admin.execute(f"DROP TABLE {t}, {lookup}")
            admin.execute(f"DROP ROLE {role} FORCE")
            admin.execute(f"ALTER DEFAULT PRIVILEGES REVOKE DROP ON TABLES FROM {bob}")
            for user in (bob, carol):
                direct.execute(f"DROP OWNED BY {user} CASCADE")
                admin.execute(f"DROP USER {user}")
    print(f"\nname resolution: {len(FUNCTIONS) + len(OPERATORS)} objects planted, {len(ran)} statements run "
          f"as others; planted objects run as someone else: {len(strangers)}")
    assert strangers == [], strangers
    assert superuser is False


def test_a_schema_is_not_named_like_another_user(proxy, mallory, postgres):
    """Another user's "$user" schema would come first on that user's search_path: refused to a
    holder of the CREATE SCHEMA permission, through the proxy or from a DO block; the holder's own
    name is fine."""
    role = unique("r")
    with proxy.connect() as admin:
        admin.execute(f"CREATE ROLE {role}")
        admin.execute(f"GRANT CREATE SCHEMA TO ROLE {role}")
        admin.execute(f"GRANT ROLE {role} TO {mallory}")
    attempts = ["CREATE SCHEMA awsuser", "CREATE SCHEMA IF NOT EXISTS awsuser",
                f"DO $$BEGIN EXECUTE 'CREATE SCHEMA {role}'; END$$", 'CREATE SCHEMA "awsuser"']
    with proxy.connect(mallory, USER_PASSWORD) as conn:
        for attempt in attempts:
            with pytest.raises(psycopg.errors.Error) as caught:
                conn.execute(attempt)
            assert caught.value.sqlstate == "42501", (attempt, str(caught.value))
        conn.execute(f"CREATE SCHEMA {mallory}")
    with postgres.connect() as direct:
        assert direct.execute("SELECT nspname FROM pg_namespace WHERE nspname IN ('awsuser', %s, %s)",
                              (role, mallory)).fetchall() == [(mallory,)]
    with proxy.connect() as admin:
        admin.execute(f"DROP SCHEMA {mallory}")
        admin.execute(f"DROP ROLE {role} FORCE")
