"""Redshift's SUPER array functions through the proxy (strict_redshift on), with the values and
column names AWS's documentation shows: ARRAY(...), ARRAY_CONCAT, ARRAY_FLATTEN,
GET_ARRAY_LENGTH, SPLIT_TO_ARRAY, SUBARRAY, the searches (ARRAY_CONTAINS, ARRAY_POSITION[S]),
the set functions (ARRAY_DISTINCT, ARRAY_UNION, ARRAY_INTERSECTION, ARRAY_EXCEPT,
ARRAYS_OVERLAP), ARRAY_SORT, subscripts, and JSON_TYPEOF and the IS_* functions."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.types.string import TextLoader
import redshift_connector

from ..conftest import ADMIN, ADMIN_PASSWORD, unique


@pytest.fixture(scope="module")
def strict_proxy(postgres, tmp_path_factory):
    from ..conftest import RunningProxy, proxy_config

    proxy = RunningProxy(proxy_config(tmp_path_factory.mktemp("super-arrays"), strict_redshift=True),
                         postgres.target).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def conn(strict_proxy):
    with strict_proxy.connect() as connection:
        yield connection


# (query, its column's name, the value as Redshift prints it, as clients receive it and as
# json_serialize writes it).
DOCUMENTED = [
    ("select array(1,50,null,100)", "array", "[1,50,null,100]"),
    ("select array(1,'abc',true,3.14)", "array", '[1,"abc",true,3.14]'),
    ("SELECT ARRAY_CONCAT(ARRAY(10001,10002),ARRAY(10003,10004))", "array_concat", "[10001,10002,10003,10004]"),
    ("SELECT ARRAY_CONCAT(ARRAY(10001,10002),ARRAY('ab','cd'))", "array_concat", '[10001,10002,"ab","cd"]'),
    ("SELECT ARRAY_FLATTEN(ARRAY(ARRAY(1,2,3,4),ARRAY(5,6,7,8),ARRAY(9,10)))", "array_flatten",
     "[1,2,3,4,5,6,7,8,9,10]"),
    ("SELECT SPLIT_TO_ARRAY('12|345|6789', '|')", "split_to_array", '["12","345","6789"]'),
    ("SELECT SUBARRAY(ARRAY('a', 'b', 'c', 'd', 'e', 'f'), 2, 3)", "subarray", '["c","d","e"]'),
    ("SELECT ARRAY_POSITIONS(ARRAY('red', 'green', 'red'), 'red')", "array_positions", "[0,2]"),
    ("SELECT ARRAY_DISTINCT(ARRAY(1, 1, 'a', 'a', NULL, NULL))", "array_distinct", '[1,"a",null]'),
    ("SELECT ARRAY_DISTINCT(ARRAY_CONCAT(ARRAY(1,2,3,3),ARRAY(2,3,4,4)))", "array_distinct", "[1,2,3,4]"),
    ("SELECT ARRAY_UNION(ARRAY('a','b','b'), ARRAY('b','c','c'))", "array_union", '["a","b","c"]'),
    ("SELECT ARRAY_UNION(ARRAY('b','a','b'), ARRAY(NULL,'b',NULL))", "array_union", '["b","a",null]'),
    ("SELECT ARRAY_INTERSECTION(ARRAY('a','b','c'), ARRAY('b','c','d'))", "array_intersection", '["b","c"]'),
    ("SELECT ARRAY_INTERSECTION(ARRAY('a','b','b'), ARRAY('b','b','b'))", "array_intersection", '["b","b"]'),
    ("SELECT ARRAY_INTERSECTION(ARRAY('a','b','b'), ARRAY('b','b','b'), TRUE)", "array_intersection", '["b"]'),
    ("SELECT ARRAY_INTERSECTION(ARRAY('a',NULL), ARRAY('b',NULL))", "array_intersection", "[null]"),
    ("SELECT ARRAY_EXCEPT(ARRAY('a','b','c'), ARRAY('b','c','d'))", "array_except", '["a"]'),
    ("SELECT ARRAY_EXCEPT(ARRAY('b','b','b','b'), ARRAY('b','b'))", "array_except", '["b","b"]'),
    ("SELECT ARRAY_EXCEPT(ARRAY('a','b','b'), ARRAY('b'), TRUE)", "array_except", '["a"]'),
    ("SELECT ARRAY_EXCEPT(ARRAY('a',NULL), ARRAY(NULL))", "array_except", '["a"]'),
    ("SELECT ARRAY_SORT(ARRAY('b', 'a', 0, NULL, 1, false))", "array_sort", '[false,0,1,"a","b",null]'),
    ("SELECT ARRAY_SORT(ARRAY('b', 'a', 0, NULL, 1, false), False)", "array_sort", '[null,"b","a",1,0,false]'),
    ("SELECT ARRAY_SORT(ARRAY('b', 'a', 0, NULL, 1, false), False, False)", "array_sort", '["b","a",1,0,false,null]'),
]

# AWS's examples of the functions that answer a boolean or an integer.
DOCUMENTED_SCALARS = [
    ("SELECT ARRAY_CONTAINS(ARRAY('red', 'green'), 'red')", True),
    ("SELECT ARRAY_CONTAINS(ARRAY('red', NULL, 'green'), NULL)", True),
    ("SELECT ARRAY_CONTAINS(ARRAY('red', NULL, 'green'), 'blue', TRUE)", False),
    ("SELECT ARRAY_CONTAINS(ARRAY('red', NULL, 'green'), NULL, FALSE)", None),
    ("SELECT ARRAY_CONTAINS(ARRAY('red', NULL, 'green'), 'blue', FALSE)", None),
    ("SELECT ARRAY_POSITION(ARRAY('red', 'green'), 'red')", 0),
    ("SELECT ARRAY_POSITION(ARRAY(1, 2, 3), 4)", -1),
    ("SELECT ARRAY_POSITION(ARRAY('red', 'green', 'red'), 'red')", 0),
    ("SELECT ARRAY_POSITION(ARRAY('red', NULL, 'green'), NULL)", 1),
    ("SELECT ARRAY_POSITION(ARRAY('red', NULL, 'green'), 'blue', FALSE)", None),
    ("SELECT ARRAYS_OVERLAP(ARRAY('blue', 'green'), ARRAY('red', 'green'))", True),
    ("SELECT ARRAYS_OVERLAP(ARRAY('red', NULL, 'blue'), ARRAY('green', NULL))", True),
    ("SELECT ARRAYS_OVERLAP(ARRAY('red', NULL, 'blue'), ARRAY('green'))", False),
    ("SELECT ARRAYS_OVERLAP(JSON_PARSE('[null]'), ARRAY(NULL))", True),
    ("SELECT array_position(ARRAY[10, 20, 30], 20), array_positions(ARRAY[1, 2, 1], 1)", (2, [1, 3])),  # PostgreSQL's
]


@pytest.mark.parametrize("query, column, printed", DOCUMENTED)
def test_the_documentations_examples(conn, query, column, printed):
    cur = conn.execute(query)
    assert cur.description[0].name == column
    assert cur.fetchone()[0] == json.loads(printed)
    assert conn.execute(f"SELECT json_serialize(x) FROM ({query}) AS q(x)").fetchone() == (printed,)
    as_text = conn.cursor()
    as_text.adapters.register_loader("jsonb", TextLoader)  # the text on the wire, as psql shows it
    assert as_text.execute(query).fetchone() == (printed,)


@pytest.mark.parametrize("query, expected", DOCUMENTED_SCALARS + [
    ("SELECT GET_ARRAY_LENGTH(ARRAY(1,2,3,4,5,6,7,8,9,10))", 10),  # AWS's example
    ("SELECT array()", []),
    ("SELECT array( )", []),
    ("SELECT array(NULL)", [None]),
    ("SELECT array(array(), array(1, array('x')), json_parse('{\"a\": [1]}'), 'text', 2.5::float8)",
     [[], [1, ["x"]], {"a": [1]}, "text", 2.5]),
    ("SELECT array(" + ", ".join(str(n) for n in range(250)) + ")", list(range(250))),
    ("SELECT get_array_length(array()), get_array_length(json_parse('{}')), get_array_length(NULL)", (0, None, None)),
    ("SELECT array_concat(array(), array(2)), array_concat(array(3), array())", ([2], [3])),
    ("SELECT array_concat(array(1), NULL), array_concat(json_parse('1'), array(2))", (None, None)),
    ("SELECT array_flatten(array(1, array(2, array(3))), array(4)), array_flatten(array())", ([1, 2, [3], 4], [])),
    ("SELECT array_flatten(array(1), NULL), array_flatten(json_parse('\"s\"'))", (None, None)),
    ("SELECT split_to_array('a,b,,c'), split_to_array(''), split_to_array(NULL)", (["a", "b", "", "c"], [""], None)),
    ("SELECT subarray(array(1, 2, 3, 4), 1), subarray(array(1, 2, 3), -2, 1), subarray(array(1, 2), 5, 1)",
     ([2, 3, 4], [2], [])),
    ("SELECT subarray(array(1, 2), 0, NULL), subarray(json_parse('{}'), 0, 1)", (None, None)),
    ("SELECT is_array(array()), is_array(subarray(array(1), 0, 1))", (True, True)),
    ("SELECT array_contains(array(1.0, 'x'), 1), array_positions(array(1, 2), NULL), array_position(NULL::super, 1)",
     (True, [], None)),
    ("SELECT array_union(array(1), NULL), arrays_overlap(array(), array()), array_sort(array(), NULL)",
     (None, False, None)),
    ("SELECT array_sort(array(array(1), json_parse('{\"a\": 1}'), true, 'x', 2, NULL), TRUE, TRUE)",
     [None, True, 2, "x", [1], {"a": 1}]),
    # The dynamic types: AWS's examples of JSON_TYPEOF and the IS_* functions, and their edges.
    ("SELECT JSON_TYPEOF(ARRAY(1,2)), JSON_TYPEOF(JSON_PARSE('{\"name\":\"Joe\"}')), json_typeof(json_parse('null'))",
     ("array", "object", "null")),
    ("SELECT is_boolean(json_parse('true')), is_varchar(json_parse('\"abc\"')), is_char(json_parse('\"t\"')), "
     "is_char(json_parse('\"é\"')), is_varchar(json_parse('1'))", (True, True, True, False, False)),
    ("SELECT is_smallint(json_parse('-32768')), is_smallint(json_parse('32768')), "
     "is_integer(json_parse('2147483647')), is_integer(json_parse('2147483648')), "
     "is_bigint(json_parse('2147483648')), is_bigint(json_parse('5.0'))",
     (True, False, True, False, True, False)),
    ("SELECT json_typeof('[1]'::json), array_position(ARRAY['a', 'b'], 'b')", ("array", 2)),  # PostgreSQL's
])
def test_values_and_nulls(conn, query, expected):
    row = conn.execute(query).fetchone()
    assert (row[0] if len(row) == 1 else row) == expected


def test_casts_to_super(conn):
    """x::SUPER and CAST(x AS SUPER) make SUPER scalars of numbers, booleans and strings, and back
    (AWS's example: 5::super::bool); the column is named super, as the cast's; dates are refused,
    as Redshift refuses them; JSON text cast stays JSON."""
    table = unique("t")
    conn.execute(f"CREATE TABLE {table} (name varchar(10), n int, d date)")
    try:
        conn.execute(f"INSERT INTO {table} VALUES ('abc', 7, '2020-01-02')")
        cur = conn.execute(f"SELECT 5::super, CAST(1.5 AS SUPER), true::super, name::super, n::super, "
                           f"json_typeof(name::super), 5::super::int + 1, '[1, 2]'::super FROM {table}")
        assert cur.fetchone() == (5, 1.5, True, "abc", 7, "string", 6, [1, 2])
        assert cur.description[0].name == "super"
        with pytest.raises(psycopg.errors.CannotCoerce, match="cannot cast type date to super"):
            conn.execute(f"SELECT d::super FROM {table}")
    finally:
        conn.rollback() if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR else None
        conn.execute(f"DROP TABLE {table}")


def test_array_of_a_subquery_is_postgresqls(conn):
    """ARRAY(SELECT ...) keeps PostgreSQL's meaning: an array of the subquery's rows."""
    cur = conn.execute("SELECT ARRAY(SELECT g FROM generate_series(1, 3) g), "
                       "array((SELECT 1) UNION ALL (SELECT 2)), array((SELECT 7), 8)")
    assert cur.fetchone() == ([1, 2, 3], [1, 2], [7, 8])
    assert [c.type_code for c in cur.description[:2]] == [1007, 1007]  # int4[], not SUPER


def test_super_columns_and_subscripts(conn):
    """A table with a SUPER column, as dbt's array macros make one (array_construct,
    array_concat, array_append), read back with subscripts."""
    table = unique("t")
    conn.execute(f"CREATE TABLE {table} AS SELECT 1 AS id, array( 1 , 2 , 3 ) AS arr UNION ALL "
                 f"SELECT 2 AS id, array(  ) AS arr")
    try:
        assert conn.execute("SELECT type FROM pg_table_def WHERE tablename = %s AND \"column\" = 'arr'",
                            (table,)).fetchone() == ("super",)
        conn.execute(f"INSERT INTO {table} SELECT 3, array_concat(array_concat(arr, array(4)), "
                     f"split_to_array('x,y')) FROM {table} WHERE id = 1")
        rows = conn.execute(f"SELECT id, arr, get_array_length(arr), arr[0], arr[3], arr[9] FROM {table} "
                            f"ORDER BY id").fetchall()
        assert rows == [(1, [1, 2, 3], 3, 1, None, None), (2, [], 0, None, None, None),
                        (3, [1, 2, 3, 4, "x", "y"], 6, 1, 4, None)]
        # dbt's check that two relations hold the same rows: EXCEPT on SUPER values.
        assert conn.execute(f"SELECT id, arr FROM {table} EXCEPT SELECT 1, array(1, 2, 3)").rowcount == 2
    finally:
        conn.execute(f"DROP TABLE {table}")


def test_redshift_connector_reads_them(strict_proxy):
    rs = redshift_connector.connect(host=strict_proxy.host, port=strict_proxy.port, database="dev", user=ADMIN,
                                    password=ADMIN_PASSWORD, ssl=False, timeout=20)
    try:
        cursor = rs.cursor()
        cursor.execute("SELECT json_serialize(array(1, 'abc', true, 3.14)), get_array_length(array(1, 2)), "
                       "json_serialize(subarray(split_to_array('a|b|c', '|'), 1))")
        assert cursor.fetchall() == (['[1,"abc",true,3.14]', 2, '["b","c"]'],)
        # A SUPER value is Redshift's SUPER (OID 4000) to the driver, which reads it as text.
        cursor.execute("""SELECT json_parse('{"a": [1, 2.50], "b": "x, y: z"}'), array(), NULL::super""")
        assert cursor.fetchall() == (['{"a":[1,2.50],"b":"x, y: z"}', '[]', None],)
        assert [column[1] for column in cursor.description] == [4000, 4000, 4000]
    finally:
        rs.close()


def test_look_alikes_in_public_do_not_answer(strict_proxy, postgres):
    """A user's functions named like the array functions, in public: those of the same
    parameter types are made but never answer a call with SUPER arguments (pg_catalog comes
    first); others would answer one, and are refused (catalog/schema.sql guard_name_resolution)."""
    owner = unique("u")
    with strict_proxy.connect() as admin:
        admin.execute(f"CREATE USER {owner} PASSWORD 'Secret123'")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
        try:
            with strict_proxy.connect(user=owner, password="Secret123") as mallory:
                for name, arguments, returns in (
                        ("array_concat", "super, super", "super"), ("array_flatten", "VARIADIC super[]", "super"),
                        ("get_array_length", "super", "int"), ("subarray", "super, bigint, bigint", "super"),
                        ("subarray", "super, bigint", "super"), ("split_to_array", "text, text", "super")):
                    value = "7::int" if returns == "int" else "'\"mallory\"'::super"
                    mallory.execute(f"CREATE FUNCTION public.{name}({arguments}) RETURNS {returns} IMMUTABLE "
                                    f"LANGUAGE sql AS $$ SELECT {value} $$")
                    mallory.execute(f"GRANT EXECUTE ON FUNCTION public.{name}({arguments}) TO PUBLIC")
                with pytest.raises(psycopg.errors.DuplicateFunction):
                    mallory.execute("CREATE FUNCTION public.array_concat(varchar, varchar) RETURNS super IMMUTABLE "
                                    "LANGUAGE sql AS $$ SELECT '1'::super $$")
            row = admin.execute("SELECT json_serialize(array(1, 2)), json_serialize(array_concat(array(1), array(2))), "
                                "json_serialize(array_flatten(array(array(1), array(2)))), "
                                "get_array_length(array(1)), json_serialize(subarray(array(1, 2), 1, 1)), "
                                "json_serialize(subarray(array(1, 2), 1)), "
                                "json_serialize(split_to_array('a,b', ','))").fetchone()
            assert row == ("[1,2]", "[1,2]", "[1,2]", 1, "[2]", "[2]", '["a","b"]')
        finally:
            with postgres.connect() as direct:
                direct.execute(f"DROP OWNED BY {owner}")
            admin.execute(f"DROP USER {owner}")
