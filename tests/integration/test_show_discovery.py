"""Redshift's SHOW discovery commands and the metadata API of AWS's redshift_connector on them
(the show_discovery ParameterStatus tells the driver to use them): a user sees the schemas it
has USAGE on, the tables it may select from (or from one of their columns), the columns it may
select, the routines it may execute; LIKE patterns with %, _ and backslashes as Redshift reads
them (a pattern ending in a backslash too); the svv_* views that list the same."""

from __future__ import annotations

import psycopg
import pytest
import redshift_connector

from ..conftest import unique

PASSWORD = "Secret123"


@pytest.fixture
def objects(proxy, postgres):
    """A schema the user may use, with tables it may and may not read, and one it may not use."""
    me, schema, closed = unique("seer"), unique("disc"), unique("closed")
    with proxy.connect() as admin:
        for statement in (
                f"CREATE USER {me} PASSWORD '{PASSWORD}'",
                f"CREATE SCHEMA {schema}", f"CREATE SCHEMA {closed}",
                f"GRANT USAGE ON SCHEMA {schema} TO {me}", f"GRANT TEMP ON DATABASE dev TO {me}",
                f"CREATE TABLE {schema}.seen (id int PRIMARY KEY, name varchar(20) NOT NULL, amount numeric(10,2), "
                "n bigint IDENTITY(1,1)) DISTKEY(id) SORTKEY(name)",
                f"CREATE TABLE {schema}.child (id int, seen_id int REFERENCES {schema}.seen (id))",
                f"CREATE TABLE {schema}.hidden (secret int)",
                f"CREATE TABLE {schema}.cols (open int, shut int)",
                f"CREATE TABLE {schema}.a_b (x int)", f"CREATE TABLE {schema}.axb (x int)",
                f'CREATE TABLE {schema}."back\\" (x int)', f"CREATE TABLE {schema}.backx (x int)",
                f"CREATE VIEW {schema}.v AS SELECT id FROM {schema}.seen",
                f"CREATE TABLE {closed}.t (x int)",
                f"GRANT SELECT ON {schema}.seen, {schema}.child, {schema}.a_b, {schema}.axb, {schema}.\"back\\\", "
                f"{schema}.backx, {schema}.v, {closed}.t TO {me}",
                f"GRANT SELECT (open) ON {schema}.cols TO {me}",
                f"CREATE PROCEDURE {schema}.p_one(a int, b varchar) LANGUAGE plpgsql AS $$ BEGIN END $$",
                f"CREATE PROCEDURE {schema}.p_shut() LANGUAGE plpgsql AS $$ BEGIN END $$",
                f"GRANT EXECUTE ON PROCEDURE {schema}.p_one(int, varchar) TO {me}",
                f"REVOKE EXECUTE ON PROCEDURE {schema}.p_shut() FROM PUBLIC",
                f"CREATE FUNCTION {schema}.f_add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE "
                "AS $$ SELECT a + b $$",
                f"GRANT EXECUTE ON FUNCTION {schema}.f_add(int, int) TO {me}"):
            admin.execute(statement)
    yield proxy, me, schema, closed
    with proxy.connect() as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.execute(f"DROP SCHEMA {closed} CASCADE")
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {me}")
    with proxy.connect() as admin:
        admin.execute(f"DROP USER {me}")


def driver(proxy, user: str, **extra):
    return redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=user,
                                      password=PASSWORD, timeout=20, ssl=False, **extra)


def test_driver_lists_what_the_user_may_see(objects):
    proxy, me, schema, closed = objects
    with driver(proxy, me) as conn:
        cursor = conn.cursor()
        assert cursor.get_show_discovery_version() == 5  # get_tables, get_columns: the batch forms
        assert ("dev",) in [tuple(row) for row in cursor.get_catalogs()]
        schemas = {row[0] for row in cursor.get_schemas()}
        assert schema in schemas and "public" in schemas and closed not in schemas
        assert {"shiftguard", "shiftguard_rows"}.isdisjoint(schemas)
        assert [tuple(row) for row in cursor.get_schemas(None, schema)] == [(schema, "dev")]

        def tables(pattern=None, schema_pattern=schema):
            return sorted(row[2] for row in cursor.get_tables(None, schema_pattern, pattern))

        assert tables() == ["a_b", "axb", "back\\", "backx", "child", "cols", "seen", "v"]
        assert tables("a_b") == ["a_b", "axb"]          # _ is any one character
        assert tables("a\\_b") == ["a_b"]               # an escaped _ is itself
        assert tables("back\\") == ["back\\"]           # a pattern ending in a backslash
        assert tables("back%") == ["back\\", "backx"]
        assert tables("%", closed) == []                # no USAGE on the schema
        table_types = {row[2]: row[3] for row in cursor.get_tables(None, schema, None)}
        assert table_types["seen"] == "TABLE" and table_types["v"] == "VIEW"

        columns = {row[3]: row for row in cursor.get_columns(None, schema, "seen", None)}
        assert list(columns) == ["id", "name", "amount", "n"]
        assert columns["name"][5] == "varchar" and columns["name"][6] == 20 and columns["name"][10] == 0
        assert columns["amount"][5] == "numeric" and columns["amount"][6] == 10 and columns["amount"][8] == 2
        assert columns["id"][5] == "int4" and columns["n"][22] == "YES"      # IS_AUTOINCREMENT
        assert [row[3] for row in cursor.get_columns(None, schema, "cols", None)] == ["open"]
        assert [row[3] for row in cursor.get_columns(None, schema, "hidden", None)] == []
        assert [row[3] for row in cursor.get_columns(None, schema, "seen", "%am%")] == ["name", "amount"]

        assert [(row[3], row[4]) for row in cursor.get_primary_keys(None, schema, "seen")] == [("id", 1)]
        imported = cursor.get_imported_keys(None, schema, "child")
        assert [(row[2], row[3], row[6], row[7]) for row in imported] == [("seen", "id", "child", "seen_id")]

        assert sorted(row[2] for row in cursor.get_procedures(None, schema, None)) == ["p_one"]
        assert [row[2] for row in cursor.get_procedures(None, schema, "p\\_%")] == ["p_one"]
        parameters = cursor.get_procedure_columns(None, schema, "p_one", None)
        assert [(row[3], row[6]) for row in parameters] == [("a", "int4"), ("b", "varchar")]
        assert [row[2] for row in cursor.get_functions(None, schema, None)] == ["f_add"]
        privileges = {(row[2], row[4], row[5]) for row in cursor.get_table_privileges(None, schema, "%")}
        assert ("seen", me, "SELECT") in privileges and not any(row[0] == "hidden" for row in privileges)


def test_show_commands_answer_with_redshifts_columns(objects):
    proxy, me, schema, closed = objects
    with proxy.connect(me, PASSWORD) as conn:
        def show(sql, *params):
            cursor = conn.execute(sql, params or None)
            assert cursor.statusmessage == "SHOW"
            return [c.name for c in cursor.description], cursor.fetchall()

        names, rows = show("SHOW DATABASES LIKE 'de_'")
        assert names == ["database_name", "database_owner", "database_type", "database_acl", "parameters",
                         "isolation_level"]
        assert [row[0] for row in rows] == ["dev"]
        names, rows = show(f"SHOW SCHEMAS FROM DATABASE dev LIKE '{schema}'")
        assert names == ["database_name", "schema_name", "schema_owner", "schema_type", "schema_acl",
                         "source_database", "schema_option"]
        assert [row[:2] for row in rows] == [("dev", schema)]
        names, rows = show(f"SHOW TABLES FROM SCHEMA dev.{schema} LIKE 'a%' LIMIT 1")
        assert names == ["database_name", "schema_name", "table_name", "table_type", "table_acl", "remarks",
                         "owner", "last_altered_time", "last_modified_time", "dist_style", "table_subtype"]
        assert [row[2:4] for row in rows] == [("a_b", "TABLE")]
        names, rows = show(f"SHOW COLUMNS FROM TABLE dev.{schema}.seen")
        assert names == ["database_name", "schema_name", "table_name", "column_name", "ordinal_position",
                         "column_default", "is_nullable", "data_type", "character_maximum_length",
                         "numeric_precision", "numeric_scale", "remarks", "sort_key_type", "sort_key", "dist_key",
                         "encoding", "collation"]
        assert [(r[3], r[6], r[7], r[8], r[13], r[14]) for r in rows] == [
            ("id", "NO", "integer", None, 0, True), ("name", "NO", "character varying", 20, 1, False),
            ("amount", "YES", "numeric", None, 0, False),
            ("n", "YES", "bigint", None, 0, False)]  # IDENTITY without NOT NULL: nullable, as Redshift says
        assert rows[3][5].startswith('"identity"(')
        names, rows = show("SHOW TABLES FROM SCHEMA %s.%s LIKE %s", "dev", schema, "back\\")
        assert [row[2] for row in rows] == ["back\\"]
        names, rows = show(f"SHOW CONSTRAINTS PRIMARY KEYS FROM TABLE dev.{schema}.seen")
        assert names == ["database_name", "schema_name", "table_name", "column_name", "key_seq", "pk_name"]
        assert [row[3:5] for row in rows] == [("id", 1)]
        names, rows = show(f"SHOW CONSTRAINTS FOREIGN KEYS EXPORTED FROM TABLE dev.{schema}.seen")
        assert [(row[2], row[3], row[6], row[7]) for row in rows] == [("seen", "id", "child", "seen_id")]
        names, rows = show(f"SHOW GRANTS ON TABLE dev.{schema}.seen")
        assert {"database_name", "schema_name", "object_name", "grantor_name", "identity_name", "privilege_type",
                "admin_option"} <= set(names)
        assert ("SELECT", me) in [(row[names.index("privilege_type")], row[names.index("identity_name")])
                                  for row in rows]
        names, rows = show(f"SHOW GRANTS ON TABLE dev.{schema}.seen FOR {me}")
        assert {row[names.index("identity_name")] for row in rows} == {me}
        names, rows = show(f"SHOW GRANTS ON SCHEMA dev.{schema} FOR {me}")
        assert names == ["database_name", "schema_name", "privilege_type", "identity_id", "identity_name",
                         "identity_type", "admin_option", "privilege_scope"]
        assert [(row[2], row[4], row[5]) for row in rows] == [("USAGE", me, "user")]
        names, rows = show(f"SHOW GRANTS ON DATABASE dev FOR {me}")
        assert names == ["database_name", "privilege_type", "identity_id", "identity_name", "identity_type",
                         "admin_option", "privilege_scope"]
        assert [(r[0], r[1], r[3], r[6]) for r in rows] == [("dev", "TEMP", me, "DATABASE")]
        names, rows = show(f"SHOW COLUMN GRANTS ON TABLE dev.{schema}.cols")
        assert [(row[3], row[4]) for row in rows] == [("open", "SELECT")]
        names, rows = show(f"SHOW PROCEDURES FROM SCHEMA dev.{schema}")
        assert names == ["database_name", "schema_name", "procedure_name", "return_type", "argument_list"]
        assert [(row[2], row[4]) for row in rows] == [("p_one", "integer, character varying")]
        names, rows = show(f"SHOW FUNCTIONS FROM SCHEMA dev.{schema} LIKE 'f%'")
        assert names[2] == "function_name" and [row[2:5] for row in rows] == [("f_add", "integer", "integer, integer")]
        names, rows = show(f"SHOW PARAMETERS OF PROCEDURE dev.{schema}.p_one(int, varchar(10))")
        assert names[:7] == ["database_name", "schema_name", "procedure_name", "parameter_name", "ordinal_position",
                             "parameter_type", "data_type"]
        assert [row[3:7] for row in rows] == [("a", 1, "IN", "integer"), ("b", 2, "IN", "character varying")]
        names, rows = show(f"SHOW PARAMETERS OF FUNCTION {schema}.f_add(integer, integer) LIKE 'b'")
        assert [row[3:6] for row in rows] == [("b", 2, "IN")]

        # the batch forms (show_discovery 5): every schema at once, filtered by WHERE
        names, rows = show("SHOW TABLES FROM DATABASE %s WHERE SCHEMA_NAME LIKE %s AND TABLE_NAME LIKE %s;",
                           "dev", "%", "back%")
        assert names[:3] == ["database_name", "schema_name", "table_name"]
        assert [row[1:3] for row in rows] == [(schema, "back\\"), (schema, "backx")]
        names, rows = show(f"SHOW COLUMNS FROM DATABASE dev WHERE SCHEMA_NAME LIKE '{schema}' "
                           "AND TABLE_NAME LIKE 'c%' AND COLUMN_NAME LIKE '%'")
        assert names[3] == "column_name" and [row[2:4] for row in rows] == [
            ("child", "id"), ("child", "seen_id"), ("cols", "open")]
        names, rows = show(f"SHOW GRANTS ON TABLES FROM DATABASE dev WHERE SCHEMA_NAME LIKE '{schema}'")
        assert {row[2] for row in rows if row[6] == me} == {"seen", "child", "a_b", "axb", "back\\", "backx", "v"}


def test_show_parameters_keeps_declared_modifiers(proxy):
    """Redshift's SHOW PARAMETERS shows a procedure parameter's declared length, precision and
    scale (redshift_connector's get_procedure_columns reads them); PostgreSQL keeps none, so the
    proxy notes them when the procedure is made, and a replacement's take over."""
    schema = unique("prm")
    with proxy.connect() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"CREATE PROCEDURE {schema}.p(a smallint, b numeric(10,5), c char(20), d varchar(256), "
                         f"e OUT int) AS $$ BEGIN e := 1; END $$ LANGUAGE plpgsql")
            rows = conn.execute(f"SHOW PARAMETERS OF PROCEDURE dev.{schema}.p(smallint, numeric, char, varchar)"
                                ).fetchall()
            assert [row[3:10] for row in rows] == [
                ("a", 1, "IN", "smallint", None, None, None),
                ("b", 2, "IN", "numeric", None, 10, 5),
                ("c", 3, "IN", "character", 20, None, None),
                ("d", 4, "IN", "character varying", 256, None, None),
                ("e", 5, "OUT", "integer", None, None, None)]
            conn.execute(f"CREATE OR REPLACE PROCEDURE {schema}.p(a smallint, b numeric(12), c char, d varchar, "
                         f"e OUT int) AS $$ BEGIN e := 2; END $$ LANGUAGE plpgsql")
            rows = conn.execute(f"SHOW PARAMETERS OF PROCEDURE dev.{schema}.p(smallint, numeric, char, varchar)"
                                ).fetchall()
            assert [row[7:10] for row in rows] == [(None, None, None), (None, 12, 0), (1, None, None),  # char is char(1)
                                                   (None,) * 3, (None,) * 3]
            # A function's are not kept, as on Redshift (AWS's driver tests expect them so).
            conn.execute(f"CREATE FUNCTION {schema}.f(x numeric(12)) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")
            rows = conn.execute(f"SHOW PARAMETERS OF FUNCTION dev.{schema}.f(numeric)").fetchall()
            assert [row[3:10] for row in rows] == [("", 0, "RETURN", "integer", None, None, None),
                                                   ("x", 1, "IN", "numeric", None, None, None)]
            # Only the proxy's own call notes modifiers.
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="shiftguard's own use"):
                conn.execute("SELECT shiftguard.note_parameters('{}', '', ARRAY['public']::name[])")
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_show_grants_lists_plain_grants_first_then_in_grant_order(proxy):
    """Within one privilege, SHOW GRANTS ON TABLE lists grants without GRANT OPTION first, then
    as they were made (the order redshift_connector's get_table_privileges tests expect)."""
    schema, first, second, boss = unique("ord"), unique("u"), unique("u"), unique("u")
    with proxy.connect() as conn:
        for user in (boss, first, second):
            conn.execute(f"CREATE USER {user} PASSWORD 'Abcdefg1'")
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"CREATE TABLE {schema}.t (x int)")
            conn.execute(f"GRANT SELECT ON {schema}.t TO {boss} WITH GRANT OPTION")
            conn.execute(f"GRANT SELECT ON {schema}.t TO {second}")
            conn.execute(f"GRANT SELECT ON {schema}.t TO {first}")
            rows = conn.execute(f"SHOW GRANTS ON TABLE dev.{schema}.t").fetchall()
            assert [(row[6], row[8]) for row in rows if row[4] == "SELECT" and row[6] != "awsuser"] == [
                (second, False), (first, False), (boss, True)]
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"DROP USER {boss}, {first}, {second}")


def test_show_refusals(objects):
    proxy, me, schema, closed = objects
    with proxy.connect(me, PASSWORD) as conn:
        # a database that does not exist has nothing to list, as on Redshift
        cursor = conn.execute("SHOW TABLES FROM SCHEMA nowhere.public")
        assert cursor.description[2].name == "table_name" and cursor.fetchall() == []
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute(f"SHOW PARAMETERS OF PROCEDURE dev.{schema}.p_shut()")  # no EXECUTE: as if none
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("SHOW TABLES FROM dev.public")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute(f"SHOW TABLES FROM SCHEMA dev.{schema} LIMIT 10001")
        assert conn.execute("SHOW search_path").fetchone()[0]  # PostgreSQL's own SHOW still answers


def test_catalog_views_list_what_show_lists(objects):
    proxy, me, schema, closed = objects
    with proxy.connect(me, PASSWORD) as conn:
        tables = conn.execute("SELECT table_name, table_type FROM svv_all_tables WHERE schema_name = %s "
                              "ORDER BY 1", (schema,)).fetchall()
        assert [name for name, _ in tables] == ["a_b", "axb", "back\\", "backx", "child", "cols", "seen", "v"]
        assert conn.execute("SELECT count(*) FROM svv_redshift_tables WHERE schema_name = %s",
                            (closed,)).fetchone()[0] == 0
        assert conn.execute("SELECT table_type FROM svv_tables WHERE table_schema = %s AND table_name = 'seen'",
                            (schema,)).fetchone()[0] == "BASE TABLE"
        assert conn.execute("SELECT column_name FROM svv_all_columns WHERE schema_name = %s AND table_name = 'cols'",
                            (schema,)).fetchall() == [("open",)]
        radix = conn.execute("SELECT data_type, numeric_precision_radix FROM svv_columns WHERE table_schema = %s "
                             "AND table_name = 'seen' AND column_name = 'amount'", (schema,)).fetchone()
        assert radix == ("numeric", 10)
        assert [row[0] for row in conn.execute("SELECT schema_name FROM svv_all_schemas").fetchall()].count(schema) == 1
        assert conn.execute("SELECT prokind FROM pg_proc_info WHERE proname = 'p_one'").fetchone() == ("p",)


def test_show_under_strict_redshift(make_proxy):
    """strict_redshift refuses PostgreSQL-only SQL; the SELECTs SHOW becomes are not the user's."""
    proxy = make_proxy(strict_redshift=True)
    table = unique("strict")
    with proxy.connect() as conn:
        conn.execute(f"CREATE TABLE public.{table} (id int)")
        try:
            assert conn.execute(f"SHOW TABLES FROM SCHEMA dev.public LIKE '{table}'").fetchone()[2] == table
            assert conn.execute(f"SHOW COLUMNS FROM TABLE dev.public.{table}").fetchone()[3] == "id"
        finally:
            conn.execute(f"DROP TABLE public.{table}")


@pytest.fixture
def other_database(proxy, postgres):
    """Another database of the cluster, made by CREATE DATABASE, with a schema holding a table a
    user may read and one it may not; the user's name."""
    me, other = unique("far"), unique("otherdb")
    with proxy.connect() as admin:
        admin.execute(f"CREATE DATABASE {other}")
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
    with proxy.connect(dbname=other) as admin:
        for statement in (
                "CREATE SCHEMA far", f"GRANT USAGE ON SCHEMA far TO {me}",
                "CREATE TABLE far.open (id int PRIMARY KEY, name varchar(20) NOT NULL)", "CREATE TABLE far.shut (x int)",
                f"GRANT SELECT ON far.open TO {me}", "COMMENT ON TABLE far.open IS 'far away'",
                "CREATE PROCEDURE far.p_far(a int) LANGUAGE plpgsql AS $$ BEGIN END $$",
                f"GRANT EXECUTE ON PROCEDURE far.p_far(int) TO {me}"):
            admin.execute(statement)
    yield other, me
    with postgres.connect() as direct:
        direct.execute(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")
        direct.execute(f"DROP OWNED BY {me}")
    with proxy.connect() as admin:
        admin.execute(f"DROP USER {me}")


def test_show_lists_another_database_as_its_user_would_there(proxy, other_database):
    """Connected to dev, SHOW ... FROM DATABASE other lists what the user would see connected to
    other (Redshift's cross-database discovery, which redshift_connector's metadata API uses
    with a catalog argument): its grants there decide, as bind parameters or literals."""
    other, me = other_database
    with proxy.connect(me, PASSWORD) as conn:
        assert "far" in [row[1] for row in conn.execute(f"SHOW SCHEMAS FROM DATABASE {other}")]
        rows = conn.execute(f"SHOW TABLES FROM SCHEMA {other}.far").fetchall()
        assert [(row[0], row[1], row[2], row[5]) for row in rows] == [(other, "far", "open", "far away")]
        cursor = conn.cursor()
        cursor.execute("SHOW TABLES FROM SCHEMA %s.%s LIKE %s", (other, "far", "o%"))  # bind parameters
        assert [row[2] for row in cursor.fetchall()] == ["open"]
        rows = conn.execute(f"SHOW COLUMNS FROM TABLE {other}.far.open").fetchall()
        assert [(row[3], row[6], row[7]) for row in rows] == [
            ("id", "NO", "integer"), ("name", "NO", "character varying")]
        rows = conn.execute(f"SHOW CONSTRAINTS PRIMARY KEYS FROM TABLE {other}.far.open").fetchall()
        assert [row[3] for row in rows] == ["id"]
        assert conn.execute(f"SHOW TABLES FROM SCHEMA {other}.far LIKE 'shut'").fetchall() == []
        assert conn.execute(f"SHOW PROCEDURES FROM SCHEMA {other}.far").fetchall()[0][2] == "p_far"
        names = conn.execute(f"SHOW COLUMNS FROM DATABASE {other} WHERE SCHEMA_NAME LIKE 'far'").fetchall()
        assert [row[3] for row in names] == ["id", "name"]
    with proxy.connect(dbname=other) as admin:
        admin.execute(f"GRANT ALL ON far.open TO {me}")
    with proxy.connect(me, PASSWORD) as conn:  # GRANT ALL as Redshift lists it: RULE and TRIGGER too
        rows = conn.execute(f"SHOW GRANTS ON TABLE {other}.far.open FOR {me}").fetchall()
        assert sorted(row[4] for row in rows) == ["ALTER", "DELETE", "DROP", "INSERT", "REFERENCES", "RULE",
                                                  "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"]
    with proxy.connect(me, PASSWORD, dbname=other) as conn:  # SVV_RELATION_PRIVILEGES has no TRIGGER
        assert sorted(row[0] for row in conn.execute(
            "SELECT privilege_type FROM svv_relation_privileges WHERE relation_name = 'open'")) == [
            "ALTER", "DELETE", "DROP", "INSERT", "REFERENCES", "SELECT", "TRUNCATE", "UPDATE"]
    with driver(proxy, me, database_metadata_current_db_only=False) as conn:  # every database's
        tables = conn.cursor().get_tables(other, "far", None)
        assert [(row[0], row[1], row[2]) for row in tables] == [(other, "far", "open")]
        columns = conn.cursor().get_columns(other, "far", "open", None)
        assert [row[3] for row in columns] == ["id", "name"]
    with proxy.connect(dbname=other) as admin:  # no CONNECT there: nothing to list
        admin.execute(f"REVOKE CONNECT ON DATABASE {other} FROM PUBLIC")
    with proxy.connect(me, PASSWORD) as conn:
        assert conn.execute(f"SHOW TABLES FROM SCHEMA {other}.far").fetchall() == []
        assert conn.execute(f"SHOW SCHEMAS FROM DATABASE {other}").fetchall() == []


def test_another_database_is_read_only_through_the_show_functions(proxy, other_database):
    """The function that reads another database runs only the SHOW functions, with the caller's
    text as literals and as the caller's own role; dblink stays out of users' reach."""
    other, me = other_database
    with proxy.connect(me, PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads only the SHOW functions"):
            conn.execute("SELECT * FROM shiftguard.show_remote(%s, 'pg_catalog.version()', '{}', shiftguard.caller_key()) "
                         "AS r(v text)", (other,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM shiftguard.dblink('dbname=postgres', 'SELECT 1') AS r(v int)")
        # a name that would end the literal and run SQL as the management role there
        sneaky = "far'; RESET ROLE; CREATE TABLE far.planted (x int); SELECT '"
        assert conn.execute("SHOW TABLES FROM SCHEMA %s.%s", (other, sneaky)).fetchall() == []
        assert conn.execute(f"SHOW TABLES FROM SCHEMA {other}.far LIKE %s", (sneaky,)).fetchall() == []
        # as itself there: the table it may not read stays unlisted whatever it passes
        assert [row[2] for row in conn.execute(
            f"SELECT * FROM shiftguard.show_tables('{other}', 'far', NULL)").fetchall()] == ["open"]
    with proxy.connect(dbname=other) as admin:
        assert admin.execute("SELECT to_regclass('far.planted')").fetchone() == (None,)


def test_a_name_or_pattern_holding_a_nul_finds_nothing(objects):
    """A bound name or LIKE pattern of a SHOW command holding a NUL byte (AWS's driver tests
    send control characters) finds no object, as no name holds one: no rows, where PostgreSQL
    would refuse the value (22021). Values without one are as they were."""
    proxy, me, schema, _closed = objects
    with driver(proxy, me) as conn:
        cursor = conn.cursor()
        assert list(cursor.get_schemas(None, schema + "\0")) == []
        assert list(cursor.get_tables(None, schema, "se\0en")) == []
        assert list(cursor.get_columns(None, schema, "seen", "i\0d")) == []
        assert [row[2] for row in cursor.get_tables(None, schema, "seen")] == ["seen"]
        cursor.execute(f"SHOW TABLES FROM SCHEMA dev.{schema} LIKE %s", ("se\0%",))
        assert list(cursor.fetchall()) == []
        with pytest.raises(redshift_connector.ProgrammingError, match="22021"):  # elsewhere PostgreSQL's answer
            cursor.execute("SELECT %s::text", ("a\0b",))


def test_show_tables_types_as_dbt_reads_them(proxy):
    """SHOW TABLES says TABLE or VIEW, and its table_subtype which kind: dbt-redshift with
    datasharing: true lists a materialized view as one (a table_type it does not know is a table)."""
    schema = unique("types")
    with proxy.connect() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"CREATE TABLE {schema}.t (a int)")
            conn.execute(f"CREATE VIEW {schema}.v AS SELECT a FROM {schema}.t")
            conn.execute(f"CREATE MATERIALIZED VIEW {schema}.mv AS SELECT a FROM {schema}.t")
            rows = conn.execute(f"SHOW TABLES FROM SCHEMA dev.{schema}").fetchall()
            assert [(r[2], r[3], r[10]) for r in rows] == [
                ("mv", "VIEW", "MATERIALIZED VIEW"), ("t", "TABLE", "REGULAR TABLE"), ("v", "VIEW", "REGULAR VIEW")]
            assert conn.execute("SELECT table_name, table_type FROM svv_tables WHERE table_schema = %s ORDER BY 1",
                                (schema,)).fetchall() == [("mv", "VIEW"), ("t", "BASE TABLE"), ("v", "VIEW")]
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
