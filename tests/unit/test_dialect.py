"""Redshift SQL rewritten to PostgreSQL's (policy/dialect.py): what the rewrite makes of a
statement, and that the proxy's shortcut sends every such statement to it."""

from __future__ import annotations

import pytest

from proxy.policy import dialect
from proxy.policy.statements import Translator, classify

DIALECT = Translator(lambda role: "V", dialect=True)


def rewritten(sql: str) -> str | None:
    result = dialect.rewrite(sql)
    return result.sql if result else None


@pytest.mark.parametrize("sql, expected", [
    ("SELECT 1 WHERE 1", "SELECT 1 WHERE true"),
    ("SELECT 1 WHERE 0", "SELECT 1 WHERE false"),
    ("SELECT a FROM t WHERE 1 AND a > 2", "SELECT a FROM t WHERE true AND a > 2"),
    ("SELECT a FROM t WHERE 0 OR a > 2 ORDER BY a", "SELECT a FROM t WHERE false OR a > 2 ORDER BY a"),
    ("SELECT a FROM t WHERE 1 GROUP BY a HAVING 1", "SELECT a FROM t WHERE true GROUP BY a HAVING true"),
    ("SELECT * FROM (SELECT a FROM t WHERE 1) s", "SELECT * FROM (SELECT a FROM t WHERE true) s"),
    ("SELECT * FROM t JOIN u ON 1 WHERE 0", "SELECT * FROM t JOIN u ON true WHERE false"),
    ("SELECT * FROM t JOIN u ON 1 LEFT JOIN v ON 0", "SELECT * FROM t JOIN u ON true LEFT JOIN v ON false"),
    ("UPDATE t SET a = 2 WHERE 1 RETURNING a", "UPDATE t SET a = 2 WHERE true RETURNING a"),
    ("DELETE FROM t WHERE 0", "DELETE FROM t WHERE false"),
    ("SELECT 1 WHERE 1 UNION SELECT 2 WHERE 0 LIMIT 1", "SELECT 1 WHERE true UNION SELECT 2 WHERE false LIMIT 1"),
    ("SELECT a FROM t WHERE 1 FOR UPDATE", "SELECT a FROM t WHERE true FOR UPDATE"),
    # The integer is an operand of a larger expression: PostgreSQL reads it as Redshift does.
    ("SELECT a FROM t WHERE 1 = 1 AND a > 2", None),
    ("SELECT a FROM t WHERE 0 = 1", None),
    ("SELECT a FROM t WHERE 1 + 1 = 2", None),
    ("SELECT a FROM t WHERE 1 <> a", None),
    ("SELECT a FROM t WHERE 1 IS NOT NULL", None),
    ("SELECT a FROM t WHERE 1 BETWEEN 0 AND 2", None),
    ("SELECT a FROM t WHERE 1 NOT BETWEEN 0 AND 2", None),
    ("SELECT a FROM t WHERE 1 IN (1)", None),
    ("SELECT a FROM t WHERE 1 LIKE '1'", None),
    ("SELECT a FROM t WHERE 1::boolean", None),
    ("SELECT a FROM t WHERE 1 ISNULL", None),
    ("SELECT a FROM t GROUP BY a HAVING 1 = 1", None),
    ("SELECT * FROM t JOIN u ON 1 = 1", None),
    ("SELECT a FROM t WHERE a BETWEEN 0 AND 1", None),  # after AND, not after WHERE
    ("SELECT a FROM t WHERE 10", None),
    ("SELECT a FROM t WHERE 1.0", None),
    ("SELECT a FROM t WHERE '1'", None),
    ("SELECT a FROM t ORDER BY 1", None),
    ("SELECT a FROM t LIMIT 1", None),
])
def test_a_bare_integer_is_a_condition_only_when_it_is_the_whole_condition(sql, expected):
    assert rewritten(sql) == expected


@pytest.mark.parametrize("sql", ["select 1 where 1", "SELECT a FROM t WHERE\n\t0", "select 1 having 1",
                                 "select * from t join u on 1"])
def test_bare_conditions_reach_the_rewrite(sql):
    """The proxy's shortcut (statements.may_need_plan) lets no bare condition pass unread."""
    (action,) = classify(sql.encode(), DIALECT).actions
    assert action.sql is not None and ("true" in action.sql or "false" in action.sql)


@pytest.mark.parametrize("sql, expected", [
    ("SELECT TOP 5 a FROM t ORDER BY a", "SELECT  a FROM t ORDER BY a LIMIT 5"),
    ("select top 10 distinct a from t where b in (select top 2 c from u order by c) order by 1",
     "select  distinct a from t where b in (select  c from u order by c LIMIT 2) order by 1 LIMIT 10"),
    ("SELECT a FROM (SELECT TOP 3 a FROM t ORDER BY a DESC) s", "SELECT a FROM (SELECT  a FROM t ORDER BY a DESC LIMIT 3) s"),
    ("SELECT a FROM t UNION (SELECT TOP 1 b FROM u)", "SELECT a FROM t UNION (SELECT  b FROM u LIMIT 1)"),
    ("INSERT INTO t SELECT TOP 3 * FROM u", "INSERT INTO t SELECT  * FROM u LIMIT 3"),
    ("SELECT top FROM t", None),               # a column named top
    ("SELECT top, 5 FROM t", None),
    ("SELECT 'SELECT TOP 5 a'", None),
])
def test_select_top_becomes_limit(sql, expected):
    assert rewritten(sql) == expected


@pytest.mark.parametrize("sql", ["SELECT TOP 5 a FROM t UNION SELECT b FROM u",
                                 "SELECT a FROM t EXCEPT SELECT TOP 5 b FROM u"])
def test_select_top_in_a_set_operation_is_refused(sql):
    (action,) = classify(sql.encode(), DIALECT).actions
    assert action.denial.sqlstate == "0A000" and "SELECT TOP" in action.denial.message


@pytest.mark.parametrize("sql, expected", [
    ("SELECT count(*) FROM (SELECT 1)", 'SELECT count(*) FROM (SELECT 1) AS "subquery 1"'),
    ("SELECT * FROM (SELECT 1) x, (SELECT 2), (SELECT 3) AS y",
     'SELECT * FROM (SELECT 1) x, (SELECT 2) AS "subquery 1", (SELECT 3) AS y'),
    ("SELECT * FROM a JOIN (SELECT 1 AS c) ON true JOIN (SELECT 2) ON true",
     'SELECT * FROM a JOIN (SELECT 1 AS c) AS "subquery 1" ON true JOIN (SELECT 2) AS "subquery 2" ON true'),
    ("SELECT (SELECT 1), a FROM t WHERE b IN (SELECT c FROM (SELECT 1 c))",
     'SELECT (SELECT 1), a FROM t WHERE b IN (SELECT c FROM (SELECT 1 c) AS "subquery 1")'),
    ("SELECT * FROM (SELECT 1) WHERE true LIMIT 1", 'SELECT * FROM (SELECT 1) AS "subquery 1" WHERE true LIMIT 1'),
    ("DELETE FROM t USING (SELECT 1 a) WHERE t.a = 1", 'DELETE FROM t USING (SELECT 1 a) AS "subquery 1" WHERE t.a = 1'),
    ("with x as (select 1) select * from (select * from x) order by 1",
     'with x as (select 1) select * from (select * from x) AS "subquery 1" order by 1'),
    # a name the statement spells is not given again
    ('SELECT * FROM (SELECT 1) "subquery 1", (SELECT 2)', 'SELECT * FROM (SELECT 1) "subquery 1", (SELECT 2) AS "subquery 2"'),
    ("SELECT * FROM (t1 JOIN t2 ON true)", None),     # a join in parentheses takes no alias
    ("SELECT * FROM (SELECT 1) AS s", None),
    ("SELECT * FROM (SELECT 1) s", None),
    ("SELECT * FROM (SELECT 1) first", None),          # an unreserved keyword is a name there
    ("SELECT * FROM t WHERE a IN (SELECT 1)", None),
    ("SELECT a, (SELECT 1) FROM t", None),
    ("SELECT * FROM (SELECT 1", None),                 # PostgreSQL's own syntax error
])
def test_subqueries_in_from_get_an_alias(sql, expected):
    assert rewritten(sql) == expected


@pytest.mark.parametrize("sql, sent", [
    ("select case when true then 1WHEN false then 2 end", "select case when true then 1 WHEN false then 2 end"),
    ("select 1else 2", "select 1 else 2"),
    ("select 1e5x, 1.5e, .5y", "select 1e5 x, 1.5 e, .5 y"),
    ("select '1x', \"2y\", 3z -- 4w", "select '1x', \"2y\", 3 z -- 4w"),
    ("select 'é', 1x", "select E'\\u00e9', 1 x"),
])
def test_a_number_run_into_a_name_is_read_apart(sql, sent):
    """What runs is what was judged: the SQL sent is the one read apart."""
    plan = classify(sql.encode(), DIALECT)
    assert plan.text == sent and plan.actions == ()


def test_numbers_are_read_apart_before_the_statements_are_judged():
    """A number run into a name does not hide the statement after it from the proxy."""
    plan = classify(b"select 1x; create user bob password 'Abc12345'", DIALECT)
    assert plan.text.startswith("select 1 x; create user bob")
    (action,) = plan.actions
    assert action.tag == b"CREATE USER" and plan.text[action.start:action.end].startswith("create user bob")
    # Read as the session reads it: a backslash escapes only with standard_conforming_strings off.
    assert classify(b"select 'a\\'1x', 2y", DIALECT, standard_strings=False).text == "select E'a\\'1x', 2 y"


def test_not_null_violations_in_redshifts_words():
    from proxy.policy.errors import redshift_wording
    fields = {"S": "ERROR", "V": "ERROR", "C": "23502", "c": "id", "t": "t", "s": "public",
              "M": 'null value in column "id" of relation "t" violates not-null constraint',
              "D": "Failing row contains (null)."}
    assert redshift_wording(fields) == {**fields, "C": "XX000", "M": "Cannot insert a NULL value into column id"}


@pytest.mark.parametrize("sql", ["SELECT count(*) FROM (SELECT 1)", "select * from a join\n(\nselect 1) on true",
                                 "select * from a, (values (1))", "delete from t using (select 1 a) where true",
                                 "select 1 then 1WHEN", "SELECT TOP 3 * FROM t", "select 'a' as c into t",
                                 "CREATE VIEW v AS SELECT 'a' AS c", "select x::varchar( max ) from t"])
def test_every_form_reaches_the_rewrite(sql):
    """The proxy's shortcut (statements.may_need_plan) sends each to the rewrite."""
    plan = classify(sql.encode(), DIALECT)
    assert plan.actions or plan.text is not None


@pytest.mark.parametrize("sql, expected", [
    ("CREATE VIEW public.v AS SELECT * FROM public.t WITH NO SCHEMA BINDING", "CREATE VIEW public.v AS SELECT * FROM public.t"),
    ("create or replace view v (a) as (select 1 from t) with no schema binding", "create or replace view v (a) as (select 1 from t)"),
    ("CREATE VIEW v AS SELECT 1 AS binding", None),
])
def test_late_binding_views(sql, expected):
    """The view as PostgreSQL makes it (judged like any CREATE VIEW), then the procedure that
    makes it bind late (catalog/schema.sql)."""
    assert rewritten(sql) == expected
    if expected is not None:
        (action,) = classify(sql.encode(), DIALECT).actions
        assert action.sql.startswith("CALL shiftguard.create_late_binding_view(") and action.tag == b"CREATE VIEW"


def test_late_binding_view_carries_its_query_and_an_empty_view():
    """For a view made before its tables exist: the query alone and the statement (judged like
    the view's) making it with no columns; neither for a view with a column list."""
    (action,) = classify(b"CREATE VIEW s.v AS SELECT a, 'x;y' FROM s.t WITH NO SCHEMA BINDING", DIALECT).actions
    assert "E'SELECT a, CAST(''x;y'' AS varchar(3)) AS \"?column?\" FROM s.t'" in action.sql
    assert "CREATE VIEW s.v AS SELECT WHERE FALSE" in action.sql
    (action,) = classify(b"CREATE VIEW s.v (b) AS SELECT a FROM s.t WITH NO SCHEMA BINDING", DIALECT).actions
    assert action.sql.endswith("E's.v', NULL, NULL, pg_catalog.current_setting('search_path'))")


@pytest.mark.parametrize("sql, attributes, call, tag", [
    ("create materialized view s.mv backup no diststyle key distkey (a) compound sortkey (a, b) auto refresh yes "
     "as (select a, b from t)",
     {"diststyle": "KEY", "distkey": "a", "sortkey": ["a", "b"], "sortkey_type": "COMPOUND", "backup": False,
      "autorefresh": True}, "create_materialized_view", b"CREATE MATERIALIZED VIEW"),
    ("CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x", {"diststyle": "EVEN", "autorefresh": False},
     "create_materialized_view", b"CREATE MATERIALIZED VIEW"),
    ('CREATE MATERIALIZED VIEW mv INTERLEAVED SORTKEY("A") AS SELECT 1 AS a',
     {"diststyle": "EVEN", "sortkey": ["A"], "sortkey_type": "INTERLEAVED", "autorefresh": False},
     "create_materialized_view", b"CREATE MATERIALIZED VIEW"),
    ("ALTER MATERIALIZED VIEW s.mv AUTO REFRESH NO", {"autorefresh": False}, "alter_materialized_view",
     b"ALTER MATERIALIZED VIEW"),
    ("ALTER MATERIALIZED VIEW mv ALTER DISTSTYLE ALL", {"diststyle": "ALL"}, "alter_materialized_view",
     b"ALTER MATERIALIZED VIEW"),
    ("REFRESH MATERIALIZED VIEW s.mv", None, "refresh_materialized_view", b"REFRESH MATERIALIZED VIEW"),
])
def test_materialized_views(sql, attributes, call, tag):
    """Redshift's clauses taken out and recorded; every form becomes its procedure's call."""
    result = dialect.rewrite(sql)
    if attributes is not None:
        assert {k: v for k, v in result.table.as_dict().items() if v is not None} == attributes
    (action,) = classify(sql.encode(), DIALECT).actions
    assert action.sql.startswith(f"CALL shiftguard.{call}(") and action.tag == tag


@pytest.mark.parametrize("sql", ["REFRESH MATERIALIZED VIEW CONCURRENTLY mv", "REFRESH MATERIALIZED VIEW mv WITH NO DATA",
                                 "ALTER MATERIALIZED VIEW mv RENAME TO other",
                                 "CREATE MATERIALIZED VIEW mv AUTO REFRESH MAYBE AS SELECT 1"])
def test_postgresqls_own_materialized_view_forms_are_left_to_it(sql):
    result = dialect.rewrite(sql)
    assert result is None or "MAYBE" in result.sql  # PostgreSQL's grammar answers what is left


@pytest.mark.parametrize("sql, expected", [
    ("CREATE TABLE t (a varbinary(8), b BINARY VARYING, c interval year to month, d INTERVAL DAY TO SECOND)",
     "CREATE TABLE t (a pg_catalog.varbyte(8), b pg_catalog.varbyte, c pg_catalog.intervaly2m, "
     "d pg_catalog.intervald2s)"),
    ("SELECT 'ab'::varbinary, CAST('x' AS varbinary(3))", "SELECT 'ab'::pg_catalog.varbyte, CAST('x' AS pg_catalog.varbyte(3))"),
    ("ALTER TABLE t ADD COLUMN e varbinary", "ALTER TABLE t ADD COLUMN e pg_catalog.varbyte"),
    ("SELECT interval '1-2' year to month, varbinary FROM t", None),  # a literal, and a column named so
    ('SELECT "varbinary" FROM t', None),
])
def test_redshifts_type_names_are_shiftguards_types(sql, expected):
    assert rewritten(sql) == expected


def test_spatial_types_and_functions_are_refused_saying_why():
    from proxy.policy.errors import redshift_wording
    for message, what in (('type "geometry" does not exist', 'type "geometry"'),
                          ("function st_geogfromtext(unknown) does not exist", 'function "st_geogfromtext"')):
        reworded = redshift_wording({"S": "ERROR", "C": "42704" if "type" in message else "42883", "M": message})
        assert reworded["C"] == "0A000" and reworded["M"] == f"{what} is not supported by shiftguard"
        assert "PostGIS" in reworded["H"]
    assert redshift_wording({"S": "ERROR", "C": "42883", "M": "function nosuch(integer) does not exist"}) is None
    # Where PostGIS is, a missing ST_ function (a wrong argument type, say) is PostgreSQL's error.
    assert redshift_wording({"S": "ERROR", "C": "42883", "M": "function st_distance(integer) does not exist"},
                            spatial=True) is None


_ARRAY = 'pg_catalog."array"(pg_catalog.jsonb_build_array'


@pytest.mark.parametrize("sql, expected", [
    ("SELECT array(1, 'abc', true, 3.14)", f"SELECT {_ARRAY}(1, 'abc', true, 3.14))"),
    ("select array( )", f"select {_ARRAY}( ))"),
    ("SELECT ARRAY_CONCAT(array(1), array(x, array())) FROM t",
     f"SELECT ARRAY_CONCAT({_ARRAY}(1)), {_ARRAY}(x, {_ARRAY}())))) FROM t"),
    ("SELECT array((1 + 2)), array((SELECT 1), 2)", f"SELECT {_ARRAY}((1 + 2))), {_ARRAY}((SELECT 1), 2))"),
    ("SELECT decode(a, 1, array(1), array())",
     f"SELECT CASE WHEN (a) IS NOT DISTINCT FROM (1) THEN ({_ARRAY}(1))) ELSE ({_ARRAY}())) END"),
    # PostgreSQL's own: an array of a subquery's rows, an array literal, names that are not the keyword.
    ("SELECT ARRAY(SELECT a FROM t)", None),
    ("SELECT array((SELECT 1) UNION (SELECT 2)), array((VALUES (1))), array(WITH x AS (SELECT 1) TABLE x)", None),
    ("SELECT ARRAY[1, 2], \"array\"(x), pg_catalog.array(1), 'array(1)' -- array(2)", None),
])
def test_redshifts_array_constructor(sql, expected):
    assert rewritten(sql) == expected


def test_an_array_of_more_than_a_hundred_elements_is_built_in_pieces():
    sql = rewritten(f"SELECT array({', '.join(map(str, range(250)))})")
    assert sql.count("jsonb_build_array(") == 3 and sql.count(") OPERATOR(pg_catalog.||) ") == 2
    assert "99) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array( 100," in sql


@pytest.mark.parametrize("sql", ["select array(1,2)", "SELECT ARRAY()"])
def test_array_reaches_the_rewrite(sql):
    assert "jsonb_build_array" in classify(sql.encode(), DIALECT).actions[0].sql


@pytest.mark.parametrize("sql, expected", [
    ("CREATE VIEW v AS SELECT 1.23 AS my_num, 'a' AS my_char",
     "CREATE VIEW v AS SELECT CAST(1.23 AS numeric(3,2)) AS my_num, CAST('a' AS varchar(1)) AS my_char"),
    ("create table t as (select -0.50 n, cast('abc' as text) s, 'de'::character varying v, 7 i, 1e3 f)",
     "create table t as (select CAST(-0.50 AS numeric(2,2)) n, cast('abc' as varchar(3)) s, 'de'::varchar(2) v, "
     "7 i, 1e3 f)"),
    # A column without a name keeps PostgreSQL's: ?column?, or the cast's type name.
    ("SELECT 'ab', CAST('x' AS text), 'y'::text INTO TEMP t FROM u",
     "SELECT CAST('ab' AS varchar(2)) AS \"?column?\", CAST('x' AS varchar(1)) AS \"text\", "
     "'y'::varchar(1) AS \"text\" INTO TEMP t FROM u"),
    ("CREATE VIEW v AS WITH w AS (SELECT 'a' AS c) SELECT c, 'zz' AS d FROM w",
     "CREATE VIEW v AS WITH w AS (SELECT 'a' AS c) SELECT c, CAST('zz' AS varchar(2)) AS d FROM w"),
    ("CREATE TABLE t (a text, b varchar, c character varying, d bpchar, e text[], f varchar(3), g char, h int)",
     "CREATE TABLE t (a varchar(256), b varchar(256), c varchar(256), d char(256), e text[], f varchar(3), g char, "
     "h int)"),
    ("ALTER TABLE t ADD COLUMN c pg_catalog.text", "ALTER TABLE t ADD COLUMN c varchar(256)"),
    ("CREATE TABLE t (a varchar(max), b CHARACTER VARYING ( MAX ), c char(max))",
     "CREATE TABLE t (a varchar(65535), b CHARACTER VARYING ( 65535 ), c char(4096))"),
    ("SELECT CAST(x AS varchar(max)) FROM t", "SELECT CAST(x AS varchar(65535)) FROM t"),
    ('SELECT max(x), varchar("max") FROM t', None),
    # Left to PostgreSQL: a set operation, an ordinary query, an INSERT, what it cannot parse.
    ("CREATE VIEW v AS SELECT 'a' AS c UNION SELECT 'bb'", None),
    ("SELECT 'a', 1.5 FROM t", None),
    ("INSERT INTO t SELECT 'a', 1.5", None),
    ("CREATE VIEW v AS SELECT 'a' AS", None),
])
def test_literals_and_unsized_text_get_redshifts_column_types(sql, expected):
    assert rewritten(sql) == expected


@pytest.mark.parametrize("sql, call", [
    ("comment on view s.v is $x$it's$x$", "CALL shiftguard.comment_on_view(E's.v', E'it''s', "),
    # (quoted names folded, as Redshift folds them)
    ('COMMENT ON VIEW "dev"."S"."V" IS NULL', "CALL shiftguard.comment_on_view(E'\"dev\".\"s\".\"v\"', NULL, "),
    ("COMMENT ON VIEW v IS 'a' || 'b'", None),  # not COMMENT's grammar: PostgreSQL's error
    ("COMMENT ON TABLE t IS 'x'", None),
])
def test_comment_on_view_is_for_materialized_views_too(sql, call):
    actions = classify(sql.encode(), DIALECT).actions
    if call is None:
        assert not actions  # sent as written
    else:
        assert actions[0].sql.startswith(call) and actions[0].tag == b"COMMENT"


@pytest.mark.parametrize("sql, expected", [
    ("SET query_group TO 'etl'", "SET shiftguard.query_group TO 'etl'"),
    ("set session QUERY_GROUP = 'a b'", "set session shiftguard.query_group = 'a b'"),
    ("SET LOCAL query_group TO DEFAULT", "SET LOCAL shiftguard.query_group TO DEFAULT"),
    ("RESET query_group", "RESET shiftguard.query_group"),
    ("SHOW query_group", "SELECT pg_catalog.redshift_query_group() AS query_group"),
    ("SELECT current_setting('query_group') AS value", "SELECT pg_catalog.redshift_query_group() AS value"),
])
def test_query_group_is_a_placeholder_setting(sql, expected):
    assert dialect.rewrite(sql).sql == expected


@pytest.mark.parametrize("sql", ["SET search_path TO public", "SHOW query_group_x", "SELECT current_setting('timezone')",
                                 "RESET ALL", "SELECT 'query_group'"])
def test_other_settings_are_not_query_group(sql):
    assert dialect.rewrite(sql) is None


@pytest.mark.parametrize("sql, expected", [
    ("SELECT 5::super, CAST(1.5 AS SUPER), true::super", "SELECT pg_catalog.super(5), pg_catalog.super(1.5), "
     "pg_catalog.super(true)"),
    ("SELECT t.name::super, a[0]::super, coalesce(a, b)::super, (x + 1)::super FROM t",
     "SELECT pg_catalog.super(t.name), pg_catalog.super(a[0]), pg_catalog.super(coalesce(a, b)), "
     "pg_catalog.super((x + 1)) FROM t"),
    ("SELECT CAST(CAST(5 AS super) AS int), 5::super::int", "SELECT CAST(pg_catalog.super(5) AS int), "
     "pg_catalog.super(5)::int"),
])
def test_casts_to_super_make_super_scalars(sql, expected):
    assert rewritten(sql) == expected


@pytest.mark.parametrize("sql", [
    "SELECT '[1, 2]'::super, CAST('{}' AS SUPER), NULL::super",  # JSON text, as ever; NULL
    "SELECT $1::super", "SELECT x::int::super", "SELECT CASE WHEN a THEN 1 END::super",
    "CREATE TABLE t (s super)", "SELECT x::pg_catalog.super", "SELECT x::super[]",
])
def test_what_casts_to_super_leave_alone(sql):
    assert rewritten(sql) in (None, sql)


@pytest.mark.parametrize("sql, expected", [
    ("CREATE FUNCTION f_a(int) RETURNS int STABLE AS $$ SELECT $1 + 1 AS x $$ LANGUAGE sql",
     "CREATE FUNCTION f_a(int) RETURNS int STABLE  LANGUAGE sql RETURN $1 + 1"),
    ("CREATE OR REPLACE FUNCTION f_b(a float, b float) RETURNS float IMMUTABLE "
     "AS 'select case when a > b then a else b end;' LANGUAGE sql",
     "CREATE OR REPLACE FUNCTION f_b(a float, b float) RETURNS float IMMUTABLE  LANGUAGE sql "
     "RETURN case when a > b then a else b end"),
    ("CREATE FUNCTION f_c(text) RETURNS text LANGUAGE 'sql' AS $body$ SELECT upper($1) shout $body$ STRICT",
     "CREATE FUNCTION f_c(text) RETURNS text LANGUAGE 'sql'  STRICT RETURN upper($1)"),
    # not one expression without FROM, or not SQL: left for the backend to judge
    ("CREATE FUNCTION f_d() RETURNS int AS $$ SELECT count(*) FROM t $$ LANGUAGE sql", None),
    ("CREATE FUNCTION f_e() RETURNS int AS $$ SELECT 1 UNION SELECT 2 $$ LANGUAGE sql", None),
    ("CREATE FUNCTION f_f() RETURNS int AS $$ SELECT 1; SELECT 2 $$ LANGUAGE sql", None),
    ("CREATE FUNCTION f_g() RETURNS int AS $$ SELECT 1, 2 $$ LANGUAGE sql", None),
    ("CREATE FUNCTION f_h() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$", None),
    ("CREATE PROCEDURE p_a() AS $$ SELECT 1 $$ LANGUAGE sql", None),
    ("CREATE FUNCTION f_i() RETURNS int LANGUAGE sql RETURN 1", None),
])
def test_a_redshift_sql_udf_becomes_a_return_body(sql, expected):
    assert rewritten(sql) == expected
