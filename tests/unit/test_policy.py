"""Statement classification verdicts: SQL in, plan out (Redshift's user statements, role
attribute refusals, catalog views)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from proxy.policy.cache import Classifier
from proxy.policy.statements import PASS, Translator, classify, databases_to_vacate, sql_literal
from proxy.policy.tokens import GrammarError, scan, split_statements, string_value
from proxy.policy.users import parse_password, password_rule_broken, sha256_digest
from proxy.protocol.auth import redshift_md5

TRANSLATOR = Translator(lambda role: f"VERIFIER-{role}")


def plan(sql: str):
    return classify(sql.encode(), TRANSLATOR)


def call_arguments(sql: str) -> tuple[str, dict]:
    """(procedure, its JSON options) of a translated CREATE/ALTER USER."""
    match = re.fullmatch(r"CALL shiftguard\.(\w+)\(E'(.*?)', E'(.*)'::jsonb\)", sql)
    assert match, sql
    return match.group(2), json.loads(match.group(3).replace("''", "'"))


@pytest.mark.parametrize("sql", [
    "SELECT 1", "select * from t where a = 'CREATE USER x PASSWORD ''y'''",
    "/* CREATE USER x PASSWORD 'Abcdefg1' */ SELECT 1", "INSERT INTO t VALUES (1)",
    "GRANT INSERT ON t TO bob", "GRANT r TO bob", "not sql at all",
    "COPY t FROM STDIN", "", "SELECT * FROM users WHERE role = 'x'", "select 'unterminated",
])
def test_statements_the_proxy_does_not_own_pass(sql):
    assert plan(sql) is PASS


def test_create_user_documentation_example():
    # CREATE USER's own example (reference §1): password abcD1234, CREATEDB, connection limit 30.
    result = plan("create user dbuser with password 'abcD1234' createdb connection limit 30")
    (action,) = result.actions
    assert action.tag == b"CREATE USER" and not result.cacheable
    assert "abcD1234" not in action.sql
    name, options = call_arguments(action.sql)
    assert name == "dbuser"
    assert options["password"]["md5"] == redshift_md5("abcD1234", "dbuser")
    assert options["password"]["scram"].startswith("SCRAM-SHA-256$4096:")
    assert (options["createdb"], options["connection_limit"]) == (True, 30)
    assert options["backend_verifier"] == "VERIFIER-dbuser"


@pytest.mark.parametrize("sql, expected", [
    ("CREATE USER a PASSWORD 'md5153c434b4b77c89e6b94f12c5393af5b'",
     {"password": {"md5": "md5153c434b4b77c89e6b94f12c5393af5b"}}),
    ("CREATE USER iam_superuser PASSWORD 'md5A1234567890123456780123456789012' CREATEUSER",
     {"password": {"md5": "md5a1234567890123456780123456789012"}, "superuser": True}),
    ("CREATE USER myco_aad:bob EXTERNALID \"ABC123\" PASSWORD DISABLE",
     {"password": {}, "external_id": "ABC123"}),
    ("CREATE USER dbuser password 'abcD1234' SESSION TIMEOUT 120", {"session_timeout": 120}),
    ("create user dbuser with password 'abcD1234' valid until '2017-06-10'", {"valid_until": "2017-06-10"}),
    ("CREATE USER u PASSWORD DISABLE SYSLOG ACCESS UNRESTRICTED NOCREATEDB NOCREATEUSER IN GROUP g1, \"G2\" "
     "CONNECTION LIMIT UNLIMITED", {"password": {}, "syslog_unrestricted": True, "createdb": False,
                                   "superuser": False, "groups": ["g1", "G2"], "connection_limit": -1}),
    ("CREATE USER \"MixedCase\" PASSWORD 'abcD1234'", {}),
])
def test_create_user_options(sql, expected):
    (action,) = plan(sql).actions
    name, options = call_arguments(action.sql)
    for key, value in expected.items():
        assert options[key] == value, key
    if "MixedCase" in sql:
        assert name == "MixedCase"


def test_sha256_forms():
    digest = "fe95f2bc7c4a111b6f0f7d0b60bfedd1935fb295f8dce1d62708ab8d2f564baf"
    salt = "c721bff5d9042cf541ff7b9d48fa8a6e545c19a763e3710151f9513038b0f6c6"
    (action,) = plan(f"CREATE USER admin2 PASSWORD 'sha256|{digest}|{salt}'").actions
    assert call_arguments(action.sql)[1]["password"] == {"sha256": digest, "salt": salt}
    made = parse_password("sha256|Mypassword1", "admin")
    assert made.verifiers["sha256"] == sha256_digest("Mypassword1", bytes.fromhex(made.verifiers["salt"]))
    assert sha256_digest("Mypassword1", b"\x01" * 32) == hashlib.sha256(b"Mypassword1" + b"\x01" * 32).hexdigest()
    # past ASCII: the UTF-8 bytes are hashed, as redshift_connector hashes them
    made = parse_password("sha256|My_sha256_PaSsWoRd\u017d", "admin")
    salt_bytes = bytes.fromhex(made.verifiers["salt"])
    assert made.verifiers["sha256"] == hashlib.sha256("My_sha256_PaSsWoRd\u017d".encode() + salt_bytes).hexdigest()


@pytest.mark.parametrize("sql, sqlstate, fragment", [
    ("CREATE USER bob", "42601", "needs a PASSWORD"),
    ("CREATE USER bob PASSWORD 'short1A'", "22023", "8 to 64"),
    ("CREATE USER bob PASSWORD 'alllower123'", "22023", "upper-case"),
    ("CREATE USER bob PASSWORD 'ALLUPPER123'", "22023", "lower-case"),
    ("CREATE USER bob PASSWORD 'NoDigitsHere'", "22023", "digit"),
    ("CREATE USER bob PASSWORD 'Has/Slash123'", "22023", "printable ASCII"),
    ("CREATE USER bob PASSWORD 'Has@At123'", "22023", "printable ASCII"),
    ('CREATE USER "sys:x" PASSWORD \'Secret123\'', "22023", "reserved prefix"),
    ('CREATE USER "public" PASSWORD \'Secret123\'', "22023", "reserved"),
    ('CREATE USER pg_x PASSWORD \'Secret123\'', "22023", "pg_"),
    ("CREATE USER " + "a" * 64 + " PASSWORD 'Secret123'", "22023", "63 bytes"),
    ("CREATE USER bob PASSWORD 'Secret123' SUPERUSER", "42601", "not a Redshift CREATE USER option"),
    ("CREATE USER bob PASSWORD 'Secret123' CREATEDB NOCREATEDB", "42601", "redundant"),
    ("CREATE USER bob PASSWORD 'Secret123' SESSION TIMEOUT 59", "22023", "between 60 and 1728000"),
    ("CREATE USER bob PASSWORD 'Secret123' SESSION TIMEOUT 1728001", "22023", "between 60 and 1728000"),
    ("CREATE USER bob PASSWORD 'Secret123' EXTERNALID x", "22023", "PASSWORD DISABLE"),
    ("CREATE USER bob PASSWORD 'sha256|abc|def'", "22023", "64 hex"),
    ("CREATE USER bob PASSWORD 'Caf\u00e9Latte123'", "22023", "printable ASCII"),
    ("CREATE USER bob PASSWORD 'sha256|Caf\u00e9 Latte123'", "22023", "printable characters"),
    ("CREATE USER bob PASSWORD 'sha256|caf\u00e9latte1'", "22023", "upper-case"),
    ("CREATE USER bob PASSWORD 'sha256|Abc12345\u05d0'", "22023", "SASLprep"),
    ("CREATE USER bob PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5'", "0A000", "SCRAM"),
    ("ALTER USER bob", "42601", "needs an option"),
    ("ALTER USER bob RENAME TO carl CREATEDB", "42601", "cannot be combined"),
    ("ALTER USER bob SUPERUSER", "42601", "not a Redshift ALTER USER option"),
    ("DROP USER bob CASCADE", "42601", "CASCADE"),
    ("CREATE USER MAPPING FOR x SERVER s", "42601", "not a Redshift CREATE USER option"),
    # PostgreSQL role attributes would let a role log in to the backend around the proxy.
    ("ALTER ROLE bob PASSWORD 'Secret123'", "42601", "not Redshift's"),
    ("ALTER ROLE CURRENT_USER WITH LOGIN", "42601", "not Redshift's"),
    ("ALTER ROLE bob SET search_path = x", "42601", "not Redshift's"),
    ("CREATE ROLE r LOGIN PASSWORD 'Secret123'", "42601", "not Redshift's"),
    ("ALTER ROLE bob BYPASSRLS", "42601", "not Redshift's"),
    ("CREATE ROLE \"a/b\"", "22023", "may not contain"),
    ("DROP ROLE r CASCADE", "42601", "syntax error"),
    ("GRANT ROLE a TO ROLE b WITH ADMIN OPTION", "0LP01", "user grantees only"),
    ("GRANT SELECT ON t TO ROLE r WITH GRANT OPTION", "0LP01", "users only"),
    ("CREATE GROUP g LOGIN", "42601", 'syntax error at or near "LOGIN"'),
    ("CREATE GROUP __g", "22023", "reserved"),
    ('CREATE USER "grp:x" PASSWORD \'Secret123\'', "22023", "stand for groups"),
    ("ALTER GROUP g SET x = 1", "42601", "ADD USER, DROP USER or RENAME TO"),
    ("GRANT ALL ON t TO GROUP g WITH GRANT OPTION", "0LP01", "to a group"),
    ("GRANT ALL ON t TO PUBLIC WITH GRANT OPTION", "0LP01", "users only"),
    ("REVOKE SELECT ON t FROM bob CASCADE", "42601", "CASCADE"),
])
def test_refusals_name_the_rule(sql, sqlstate, fragment):
    (action,) = plan(sql).actions
    assert action.denial.sqlstate == sqlstate, action.denial
    assert fragment in action.denial.message


@pytest.mark.parametrize("sql, expected", [
    ("ALTER USER bob PASSWORD 'Other1234' VALID UNTIL 'infinity'", {"valid_until": "infinity"}),
    ("ALTER USER bob PASSWORD DISABLE", {"password": {}}),
    ("ALTER USER bob RENAME TO carl", {"rename_to": "carl", "backend_verifier": "VERIFIER-carl"}),
    ("ALTER USER bob CREATEUSER, CONNECTION LIMIT 3", {"superuser": True, "connection_limit": 3}),
    ("ALTER USER bob RESET SESSION TIMEOUT", {"session_timeout": 0}),
    ("ALTER USER bob SET search_path TO 'a, b'", {"parameters": {"search_path": "a, b"}}),
    ("ALTER USER bob SET statement_timeout = 5000", {"parameters": {"statement_timeout": "5000"}}),
    ("ALTER USER bob SET datestyle TO DEFAULT", {"parameters": {"datestyle": None}}),
    ("ALTER USER bob RESET search_path", {"parameters": {"search_path": None}}),
    ("ALTER USER bob EXTERNALID 'X1' SYSLOG ACCESS RESTRICTED", {"external_id": "X1", "syslog_unrestricted": False}),
])
def test_alter_user_changes(sql, expected):
    (action,) = plan(sql).actions
    assert action.tag == b"ALTER USER"
    name, changes = call_arguments(action.sql)
    assert name == "bob"
    if "'Other1234'" in sql:
        assert changes.pop("password")["md5"] == redshift_md5("Other1234", "bob")
    assert changes == expected


def test_multi_statement_spans_are_characters():
    sql = "SELECT '\N{LATIN SMALL LETTER E WITH ACUTE}\N{HIRAGANA LETTER A}'; DROP USER IF EXISTS a, \"B\"; SELECT 2"
    result = plan(sql)
    (action,) = result.actions
    # The spans refer to the text sent, the client's written in ASCII (tokens.as_ascii).
    assert result.text == "SELECT E'\\u00e9\\u3042'; DROP USER IF EXISTS a, \"B\"; SELECT 2"
    assert result.text[action.start:action.end] == 'DROP USER IF EXISTS a, "B"'
    assert action.index == 1
    assert action.sql == "CALL shiftguard.drop_users(ARRAY[E'a', E'B']::text[], true)"


def test_catalog_views_are_pointed_at_the_private_schema():
    result = plan("select u.usename from pg_catalog.pg_user u join svl_user_info s using (usesysid) "
                  "where exists (select 1 from public.pg_user)")
    (action,) = result.actions
    assert result.cacheable and action.tag is None
    assert "shiftguard.pg_user AS u" in action.sql and "shiftguard.svl_user_info" in action.sql
    assert "public.pg_user" in action.sql  # a user's own table of that name is left alone


def test_a_catalog_view_named_in_a_privilege_function_is_ours():
    result = plan("select has_table_privilege(current_user, 'svv_table_info', 'SELECT'), "
                  "has_table_privilege('PG_CATALOG.pg_user', 'select'), to_regclass('svv_table_info'), "
                  "has_table_privilege('public.svv_table_info', 'select'), "
                  "has_table_privilege('\"svv_table_info\"', 'select'), has_table_privilege('pg_class', 'select')")
    (action,) = result.actions
    assert action.sql.count("'shiftguard.svv_table_info'") == 2 and "'shiftguard.pg_user'" in action.sql
    # a user's own table, a quoted name and PostgreSQL's own catalogs are left alone
    assert "'public.svv_table_info'" in action.sql and "'\"svv_table_info\"'" in action.sql
    assert "'pg_class'" in action.sql


def test_scanner_helpers():
    assert split_statements("select ';' ; ; select 2;") == [(0, 10), (15, 23)]
    assert [string_value(t) for t in scan("'it''s' E'a\\nb' $$x'y$$") if t.name == "SCONST"] == ["it's", "a\nb", "x'y"]
    with pytest.raises(GrammarError):
        split_statements("select 'unterminated")


@pytest.mark.parametrize("password, broken", [
    ("abcD1234", None), ("@AbC4321!", "may contain"), ("A" * 63 + "b1", "8 to 64"), ("Ab1" + " x" * 3, "may contain"),
])
def test_password_rules(password, broken):
    rule = password_rule_broken(password)
    assert (rule is None) if broken is None else (broken in rule)


def test_sql_literal_is_safe_whatever_standard_conforming_strings_says():
    assert sql_literal("a'b\\c") == "E'a''b\\\\c'"
    with pytest.raises(ValueError):
        sql_literal("a\0b")


def test_classifier_caches_only_cacheable_plans():
    calls = []
    translator = Translator(lambda role: calls.append(role) or "V")
    classifier = Classifier(translator, size=2)
    assert classifier(b"SELECT 1") is PASS
    first = classifier(b"CREATE USER a PASSWORD 'Secret123'")
    second = classifier(b"CREATE USER a PASSWORD 'Secret123'")
    assert first is not second and calls == ["a", "a"]
    for n in range(5):
        classifier(f"SELECT {n} FROM pg_user".encode())
    assert len(classifier._plans) <= 2


@pytest.mark.parametrize("sql, expected, tag", [
    ("CREATE GROUP g WITH USER a, \"B\"", "CALL shiftguard.create_group(E'g', ARRAY[E'a', E'B']::text[])", b"CREATE GROUP"),
    ("CREATE GROUP g", "CALL shiftguard.create_group(E'g', ARRAY[]::text[])", b"CREATE GROUP"),
    ("ALTER GROUP g DROP USER a", 'CALL shiftguard.alter_group(E\'g\', E\'{"drop":["a"]}\'::jsonb)', b"ALTER GROUP"),
    ("DROP GROUP g", "CALL shiftguard.drop_group(E'g')", b"DROP GROUP"),
    ("GRANT INSERT, DELETE ON t TO GROUP g, bob", 'GRANT INSERT, DELETE ON TABLE t TO "grp:g", bob', None),
    # Redshift's column rules: the table-level part runs after a check, the column part is built
    # by the procedure (a column grant is a no-op for a grantee holding it on the table).
    ("GRANT SELECT, UPDATE (a) ON t TO GROUP g, bob",
     'CALL shiftguard.grant_checked(E\'GRANT SELECT ON TABLE t TO "grp:g", bob\', '
     'E\'{"is_grant":true,"check":["SELECT"],"columns":[{"privilege":"UPDATE","columns":["a"]}],'
     '"grantees":["grp:g","bob"]}\'::pg_catalog.jsonb, ARRAY[E\'t\'::regclass]::oid[], '
     "pg_catalog.current_setting('search_path'))", b"GRANT"),
    ("REVOKE INSERT ON ALL TABLES IN SCHEMA s FROM GROUP \"Mé\"",
     'REVOKE INSERT ON ALL TABLES IN SCHEMA s FROM U&"grp:M\\00e9"', None),  # sent in ASCII
    # Redshift's ALL includes DROP and ALTER, which PostgreSQL has no bits for.
    ("REVOKE ALL ON ALL TABLES IN SCHEMA s FROM GROUP g",
     "CALL shiftguard.grant_privileges(E'REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA s FROM \"grp:g\"', "
     "E'{\"is_grant\":false,\"object_type\":\"table\",\"privileges\":[\"DROP\",\"ALTER\"],\"grantees\":[\"grp:g\"],"
     "\"grant_option\":false}'::pg_catalog.jsonb, shiftguard.tables_in(ARRAY[E'\"s\"'::regnamespace]::oid[]), "
     "pg_catalog.current_setting('search_path'))", b"REVOKE"),
])
def test_group_statements(sql, expected, tag):
    (action,) = plan(sql).actions
    assert (action.sql, action.tag) == (expected, tag)


@pytest.mark.parametrize("sql, expected, tag", [
    ("CREATE ROLE sales_ro", "CALL shiftguard.create_role(E'sales_ro', NULL)", b"CREATE ROLE"),
    ("DROP ROLE r FORCE", "CALL shiftguard.drop_role(E'r', true)", b"DROP ROLE"),
    ("DROP ROLE r", "CALL shiftguard.drop_role(E'r', false)", b"DROP ROLE"),
    ("GRANT INSERT ON t TO ROLE r, GROUP g, bob", 'GRANT INSERT ON TABLE t TO r, "grp:g", bob', None),
    ("REVOKE ROLE a FROM ROLE b", 'CALL shiftguard.revoke_roles(E\'{"roles":["a"],"grantees":[{"name":"b","kind":"role"}],"admin":false}\'::jsonb)', b"REVOKE"),
])
def test_role_statements(sql, expected, tag):
    (action,) = plan(sql).actions
    assert (action.sql, action.tag) == (expected, tag)


@pytest.mark.parametrize("sql, expected", [
    ("CREATE RLS POLICY p WITH (catgroup VARCHAR(10)) USING (catgroup = 'Concerts')",
     {"name": "p", "alias": None, "columns": [{"colname": "catgroup", "type": "varchar(10)"}],
      "predicate": "catgroup = 'Concerts'", "expression": "catgroup = 'Concerts'", "lookups": [],
      "inline": "catgroup = 'Concerts'"}),
    ('create rls policy "P x" with (a int, "B" numeric(10, 2)) as t using (t.a = 1 -- ) comment\n)',
     {"name": "P x", "alias": "t", "columns": [{"colname": "a", "type": "integer"}, {"colname": "B", "type": "numeric(10, 2)"}],
      "predicate": "t.a = 1", "expression": "t.a = 1", "lookups": [], "inline": "a = 1"}),
    ("CREATE RLS POLICY p WITH (u text) r USING (u = current_user OR EXISTS (SELECT FROM s.lookup l "
     "WHERE l.x = r.u AND l.y = user))",
     {"name": "p", "alias": "r", "columns": [{"colname": "u", "type": "text"}],
      "predicate": "u = CURRENT_USER OR EXISTS (SELECT FROM s.lookup AS l WHERE l.x = r.u AND l.y = USER)",
      "expression": "u = $1 OR EXISTS (SELECT FROM s.lookup AS l WHERE l.x = r.u AND l.y = $1)",
      "lookups": ['"s"."lookup"'], "inline": None}),
    ("CREATE RLS POLICY p WITH (u text) USING (u = session_user)",
     {"name": "p", "alias": None, "columns": [{"colname": "u", "type": "text"}],
      "predicate": "u = SESSION_USER", "expression": "u = $1", "lookups": [], "inline": "u = CURRENT_USER"}),
    ('CREATE RLS POLICY p WITH (u text) USING (u IN ("current_user"(), pg_catalog.session_user(), getpgusername()))',
     {"name": "p", "alias": None, "columns": [{"colname": "u", "type": "text"}],
      "predicate": 'u IN ("current_user"(), pg_catalog."session_user"(), getpgusername())',
      "expression": "u IN ($1, $1, $1)", "lookups": [],
      "inline": "u IN (CURRENT_USER, CURRENT_USER, CURRENT_USER)"}),
])
def test_create_rls_policy(sql, expected):
    (action,) = plan(sql).actions
    match = re.fullmatch(r"CALL shiftguard\.create_rls_policy\(E'(.*)', E'', "
                         r"pg_catalog\.current_setting\('search_path'\)\)", action.sql)
    assert match, action.sql
    assert json.loads(match.group(1).replace("''", "'").replace("\\\\", "\\")) == expected
    assert action.tag == b"CREATE RLS POLICY"


@pytest.mark.parametrize("sql, fragment", [
    ("CREATE RLS POLICY p USING (true) OR (false)", "syntax error"),
    ("CREATE RLS POLICY p WITH (a) USING (true)", 'column "a" needs a type'),
    ("CREATE RLS POLICY p WITH (a int, a int) USING (true)", "declared twice"),
    ("CREATE RLS POLICY p WITH (a int) RETURNS int) USING (true)", "syntax error"),
    ("CREATE RLS POLICY p WITH (a int); SELECT 1; --) USING (true)", "expected USING"),
    ("CREATE RLS POLICY p WITH (a no such type) USING (true)", "is not a type name"),
    ("CREATE RLS POLICY p USING ()", "empty"),
    ("ALTER TABLE t ROW LEVEL SECURITY MAYBE", "ON or OFF"),
    ("ALTER TABLE t DISABLE ROW LEVEL SECURITY", "not supported"),
    ("ALTER TABLE t NO FORCE ROW LEVEL SECURITY", "not supported"),
    ("DROP POLICY shiftguard_rls ON t", "not supported"),
    ("EXPLAIN (ANALYSE) SELECT 1", "EXPLAIN ANALYZE is not supported"),
])
def test_rls_refusals(sql, fragment):
    actions = plan(sql).actions
    assert actions and actions[0].denial is not None, actions
    assert fragment in actions[0].denial.message


def test_rls_statements_become_procedure_calls():
    assert plan("ATTACH RLS POLICY p ON TABLE s.t, u TO bob, ROLE r, PUBLIC").actions[0].sql == (
        "CALL shiftguard.attach_rls_policy(E'p', ARRAY[E'\"s\".\"t\"'::regclass, E'\"u\"'::regclass]::oid[], "
        "E'[{\"kind\":\"user\",\"name\":\"bob\"},{\"kind\":\"role\",\"name\":\"r\"},{\"kind\":\"public\",\"name\":\"\"}]'"
        "::jsonb, true)")
    assert plan("ALTER TABLE t ROW LEVEL SECURITY ON CONJUNCTION TYPE OR").actions[0].sql == (
        "CALL shiftguard.set_table_rls(E'\"t\"'::regclass, true, E'or')")
    assert plan("DROP RLS POLICY IF EXISTS dev.p CASCADE").actions[0].sql == (
        "CALL shiftguard.drop_rls_policy(E'p', true, true)")
    (action,) = plan("ALTER TABLE t ADD COLUMN c int").actions  # PostgreSQL's own, marked (below)
    assert (action.sql, action.tag) == ("/*shiftguard:no-row-code*/ ALTER TABLE t ADD COLUMN c int", None)


@pytest.mark.parametrize("sql, expected", [
    ("EXPLAIN SELECT 1",
     """SELECT "QUERY PLAN" FROM shiftguard.explain(E'SELECT 1', E'{}'::pg_catalog.jsonb, """
     """pg_catalog.current_setting('search_path'))"""),
    ("explain verbose select * from t where a = 'x';",
     """SELECT "QUERY PLAN" FROM shiftguard.explain(E'select * from t where a = ''x''', """
     """E'{"verbose": "true"}'::pg_catalog.jsonb, pg_catalog.current_setting('search_path'))"""),
    ("EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) /* c */ SELECT (1)",  # the comment is not part of the query
     """SELECT "QUERY PLAN" FROM shiftguard.explain(E'SELECT (1)', """
     """E'{"costs": "off", "format": "json", "verbose": "true"}'::pg_catalog.jsonb, """
     """pg_catalog.current_setting('search_path'))"""),
    # Parameters (extended protocol): typed by an unreferenced WITH query, passed as text.
    ("EXPLAIN SELECT * FROM t WHERE a = $2 AND b = $1",
     """WITH "shiftguard explain parameters" AS (SELECT * FROM t WHERE a = $2 AND b = $1\n) """
     """SELECT "QUERY PLAN" FROM shiftguard.explain(E'SELECT * FROM t WHERE a = $2 AND b = $1', """
     """E'{}'::pg_catalog.jsonb, pg_catalog.current_setting('search_path'), """
     """ARRAY[$1::pg_catalog.text, $2::pg_catalog.text]::pg_catalog.text[], """
     """ARRAY[pg_catalog.pg_typeof($1), pg_catalog.pg_typeof($2)]::pg_catalog.regtype[])"""),
    # A data-modifying WITH query would run: no WITH for DML.
    ("EXPLAIN DELETE FROM t WHERE a = $1",
     """SELECT "QUERY PLAN" FROM shiftguard.explain(E'DELETE FROM t WHERE a = $1', E'{}'::pg_catalog.jsonb, """
     """pg_catalog.current_setting('search_path'), ARRAY[$1::pg_catalog.text]::pg_catalog.text[], """
     """ARRAY[pg_catalog.pg_typeof($1)]::pg_catalog.regtype[])"""),
])
def test_explain_becomes_a_call(sql, expected):
    (action,) = plan(sql).actions
    assert action.sql == expected
    assert action.tag == b"EXPLAIN"


def test_explain_analyze_stays_refused():
    for sql in ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE VERBOSE SELECT 1", "EXPLAIN (ANALYZE false) SELECT 1"):
        (action,) = plan(sql).actions
        assert action.denial is not None and "EXPLAIN ANALYZE" in action.denial.message, sql


def test_a_bug_in_a_handler_refuses_the_statement(monkeypatch):
    import proxy.policy.statements as statements

    def broken(statement, translator):
        raise ValueError("a bug")

    monkeypatch.setattr(statements, "classify_statement", broken)
    (action,) = plan("DROP TABLE t").actions
    assert action.denial.sqlstate == "XX000" and "not run" in action.denial.hint


def test_assumerole_statements():
    (action,) = plan("GRANT ASSUMEROLE ON 'arn:aws:iam::1:role/a', default TO bob, ROLE r, GROUP g, PUBLIC "
                     "FOR COPY, EXTERNAL FUNCTION").actions
    assert action.tag == b"GRANT"
    assert json.loads(re.fullmatch(r"CALL shiftguard\.grant_assumerole\(E'(.*)'::jsonb\)", action.sql).group(1)) == {
        "is_grant": True, "roles": ["arn:aws:iam::1:role/a", "default"], "grantees": ["bob", "r", "grp:g", ""],
        "for": ["COPY", "EXTERNAL FUNCTION"]}
    (action,) = plan("REVOKE ASSUMEROLE ON ALL FROM PUBLIC FOR ALL").actions
    assert action.tag == b"REVOKE" and '"roles":["ALL"]' in action.sql
    (action,) = plan("GRANT ASSUMEROLE ON 'a' TO bob FOR SELECT").actions
    assert action.denial is not None and "FOR takes ALL" in action.denial.message


def test_the_trigger_search_is_the_substring_test():
    """The one-pass search gives the same answer as a test of each literal word."""
    import proxy.policy.statements as statements
    from proxy.policy import dialect
    words = statements._TRIGGER_WORDS
    samples = [w for w in words] + [b"select " + w + b" from t" for w in words] + [
        b"select 1", b"select abalance from pgbench_accounts where aid = 1", b"u&", b"us er", b"ro.le",
        b"insert into t values ('x')", b"update t set a = 1", b"dro p", b"anal yze"]
    for sample in samples:
        assert bool(statements._TRIGGER.search(sample)) == any(w in sample for w in words), sample
    dialect_words = dialect.TRIGGER_WORDS + tuple(w.encode() for w in statements.DIALECT_CATALOGS)
    for sample in samples + [b"select getdate()", b"select sysdate", b"select * from pg_class"]:
        assert bool(statements._DIALECT_TRIGGER.search(sample)) == any(w in sample for w in dialect_words), sample


@pytest.mark.parametrize("sql, expected", [
    ("SELECT * FROM cards", 'SELECT * FROM shiftguard."mask:1" AS cards'),
    ("SELECT c.n FROM public.cards c WHERE c.n > 1", 'SELECT c.n FROM shiftguard."mask:1" AS c WHERE c.n > 1'),
    ("SELECT * FROM t JOIN cards ON true", 'SELECT * FROM t INNER JOIN shiftguard."mask:1" AS cards ON TRUE'),
    ("SELECT (SELECT max(n) FROM cards)", 'SELECT (SELECT max(n) FROM shiftguard."mask:1" AS cards)'),
    ("UPDATE t SET a = 1 FROM cards", 'UPDATE t SET a = 1 FROM shiftguard."mask:1" AS cards'),
    ("WITH cards AS (SELECT 1) SELECT * FROM cards", None),  # the WITH query, not the table
    ("SELECT * FROM other.cards", None),
    ("INSERT INTO cards VALUES (1)", None),  # writes are not reads
])
def test_masking_rewrite(sql, expected):
    from proxy.policy.masking import MaskedTables, rewrite
    assert rewrite(sql, MaskedTables(1, {("public", "cards"): "mask:1"})) == expected


def protected_translator() -> Translator:
    """A translator that knows one masked table (public.cards) and two with RLS on."""
    from proxy.policy.masking import MaskedTables
    translator = Translator(lambda role: "V")
    translator.masked = MaskedTables(1, {("public", "cards"): "mask:1"},
                                     frozenset({("public", "secret"), ("s", "hidden")}))
    return translator


@pytest.mark.parametrize("sql, table, why", [
    ("ALTER TABLE secret INHERIT parent", "secret", "row-level security on"),
    ("alter table public.secret no inherit parent", "secret", "row-level security on"),
    ("ALTER TABLE child INHERIT secret", "secret", "row-level security on"),
    ("ALTER TABLE parent ATTACH PARTITION cards FOR VALUES IN (1)", "cards", "a masking policy attached"),
    ("ALTER TABLE cards ATTACH PARTITION p1 DEFAULT", "cards", "a masking policy attached"),
    ("ALTER TABLE parent DETACH PARTITION s.hidden CONCURRENTLY", "hidden", "row-level security on"),
    ("ALTER TABLE parent DETACH PARTITION secret FINALIZE", "secret", "row-level security on"),
    ("ALTER TABLE IF EXISTS t ADD COLUMN a int, INHERIT cards", "cards", "a masking policy attached"),
    ("CREATE TABLE c () INHERITS (other, secret)", "secret", "row-level security on"),
    ("CREATE TABLE c PARTITION OF cards FOR VALUES IN (1)", "cards", "a masking policy attached"),
    ("CREATE TEMP TABLE c () INHERITS (s.hidden)", "hidden", "row-level security on"),
    ("CREATE FOREIGN TABLE f () INHERITS (secret) SERVER x", "secret", "row-level security on"),
    ("ALTER FOREIGN TABLE f INHERIT cards", "cards", "a masking policy attached"),
])
def test_protected_tables_stay_out_of_inheritance(sql, table, why):
    (action,) = classify(sql.encode(), protected_translator()).actions
    assert action.denial.sqlstate == "0A000"
    assert action.denial.message == (f'table "{table}" has {why}: it cannot take part in table inheritance or '
                                     "partitioning")


@pytest.mark.parametrize("sql", [
    "ALTER TABLE child INHERIT parent", "ALTER TABLE hidden INHERIT parent",  # public.hidden is not s.hidden
    "ALTER TABLE other.cards INHERIT parent", "ALTER TABLE secret ADD COLUMN a int",
    "ALTER TABLE parent ATTACH PARTITION p1 FOR VALUES IN (1)", "ALTER INDEX cards ATTACH PARTITION i1",
    "SELECT rank() OVER (PARTITION BY a) FROM t", "CREATE TABLE c (LIKE secret INCLUDING ALL)",
])
def test_inheritance_of_other_tables_is_not_refused(sql):
    plan = classify(sql.encode(), protected_translator())
    assert all(action.denial is None for action in plan.actions)


@pytest.mark.parametrize("sql, table, what", [
    ("CREATE INDEX ON secret ((lower(a)))", "secret", "indexes on expressions or with a WHERE clause"),
    ("CREATE UNIQUE INDEX i ON public.secret (a, (b + 1))", "secret", "indexes on expressions or with a WHERE clause"),
    ("create index on cards (id) where card like '4%'", "cards", "indexes on expressions or with a WHERE clause"),
    ("CREATE INDEX CONCURRENTLY ON s.hidden (f(a))", "hidden", "indexes on expressions or with a WHERE clause"),
    ("CREATE TRIGGER t BEFORE INSERT ON secret FOR EACH ROW EXECUTE FUNCTION f()", "secret", "triggers"),
    ("CREATE CONSTRAINT TRIGGER t AFTER UPDATE ON cards FOR EACH ROW EXECUTE FUNCTION f()", "cards", "triggers"),
    ("CREATE OR REPLACE RULE r AS ON INSERT TO secret DO ALSO NOTIFY x", "secret", "rules"),
    ("CREATE STATISTICS st ON (lower(card)), id FROM cards", "cards", "statistics on expressions"),
    ("CREATE TABLE mine (a int REFERENCES secret)", "secret", "foreign keys, to or from it"),
    ("CREATE TABLE mine (a int, FOREIGN KEY (a) REFERENCES s.hidden (id))", "hidden", "foreign keys, to or from it"),
    ("ALTER TABLE secret ADD CONSTRAINT c CHECK (f(a))", "secret", "CHECK constraints"),
    ("ALTER TABLE secret ADD CHECK (a > 0) NOT VALID", "secret", "CHECK constraints"),
    ("ALTER TABLE cards ADD COLUMN k int CHECK (k > 0)", "cards", "CHECK constraints"),
    ("ALTER TABLE secret ADD FOREIGN KEY (a) REFERENCES other (b)", "secret", "foreign keys, to or from it"),
    ("ALTER TABLE mine ADD FOREIGN KEY (a) REFERENCES cards (id)", "cards", "foreign keys, to or from it"),
    ("ALTER TABLE mine ADD COLUMN c int REFERENCES secret", "secret", "foreign keys, to or from it"),
    ("ALTER TABLE secret ADD EXCLUDE USING gist (a WITH &&)", "secret", "exclusion constraints"),
    ("ALTER TABLE secret VALIDATE CONSTRAINT c", "secret", "constraints to validate"),
    ("ALTER TABLE secret ALTER COLUMN a TYPE int USING f(a)", "secret", "a column's type changed USING an expression"),
    ("ALTER TABLE cards ADD COLUMN g text GENERATED ALWAYS AS (card) STORED", "cards", "generated columns"),
    ("ALTER TABLE secret ENABLE ALWAYS TRIGGER t", "secret", "triggers or rules enabled or disabled"),
    ("ALTER TABLE ONLY secret DISABLE TRIGGER USER", "secret", "triggers or rules enabled or disabled"),
    ("ALTER TABLE cards ENABLE REPLICA RULE r", "cards", "triggers or rules enabled or disabled"),
])
def test_code_over_protected_rows_is_refused(sql, table, what):
    (action,) = classify(sql.encode(), protected_translator()).actions
    assert action.denial.sqlstate == "0A000"
    assert action.denial.message == (f'table "{table}" has '
                                     f'{"a masking policy attached" if table == "cards" else "row-level security on"}'
                                     f": it cannot have {what}")


@pytest.mark.parametrize("sql, mark", [
    # what makes PostgreSQL evaluate nothing over rows, on protected tables too
    ("ALTER TABLE secret ADD COLUMN a int DEFAULT 0", "no-row-code"),
    ("ALTER TABLE secret ALTER COLUMN a SET NOT NULL, ADD PRIMARY KEY (a)", "no-row-code"),
    ("ALTER TABLE secret ALTER COLUMN b TYPE varchar(300)", "no-row-code"),  # a rewrite is the backend's
    ("ALTER TABLE IF EXISTS secret RENAME COLUMN a TO b", "no-row-code"),
    ("ALTER TABLE cards SET SCHEMA other", "no-row-code"),
    ("CREATE INDEX i ON cards (id) INCLUDE (card) WITH (fillfactor = 70)", "no-row-code"),
    ("CREATE UNIQUE INDEX ON secret USING btree (a DESC NULLS LAST)", "no-row-code"),
    # what does, on tables the proxy does not know as protected (the backend holds them)
    ("CREATE INDEX ON other ((lower(a)))", "row-code"),
    ("CREATE INDEX ON hidden (a) WHERE a > 0", "row-code"),  # public.hidden: s.hidden is protected
    ("ALTER TABLE other ADD CHECK (a > 0)", "row-code"),
    ("ALTER TABLE other ADD COLUMN b int REFERENCES x", "row-code"),
    ("ALTER TABLE other VALIDATE CONSTRAINT c", "row-code"),
    ("ALTER TABLE other ATTACH PARTITION p DEFAULT", "row-code"),
    ("ALTER TABLE other ADD EXCLUDE (a WITH =)", "row-code"),
])
def test_row_code_marks(sql, mark):
    (action,) = classify(sql.encode(), protected_translator()).actions
    assert action.denial is None and action.tag is None
    assert action.sql == f"/*shiftguard:{mark}*/ {sql}"


def test_no_client_writes_the_mark():
    for sql in ("/*shiftguard:no-row-code*/ CREATE INDEX ON secret ((f(a)))",
                "SELECT 1; CREATE INDEX ON secret ((f(a))) -- SHIFTGUARD:NO-ROW-CODE",
                "SELECT 'shiftguard:no-row-code'", "SELECT $x$/*shiftguard:no-row-code*/$x$"):
        (action,) = classify(sql.encode(), protected_translator()).actions
        assert (action.start, action.end) == (0, len(sql)) and action.denial.sqlstate == "0A000", sql
    # the backend looks for the mark as it is written; a constant's value is not its text
    for sql, standard in ((r"SELECT 'shiftguard\:no-row-code'", False), (r"SELECT E'shiftguard\:no-row-code'", True)):
        plan = classify(sql.encode(), protected_translator(), standard_strings=standard)
        assert not plan.actions and "shiftguard:no-row-code" not in (plan.text or sql)


def test_a_held_table_is_explained():
    from proxy.policy.errors import redshift_wording
    fields = {"S": "ERROR", "C": "55006", "M": 'cannot CREATE INDEX "cat" because it is being used by active '
                                                 "queries in this session"}
    assert "shiftguard holds it" in redshift_wording(fields)["H"]
    assert redshift_wording({**fields, "M": 'cannot DROP TABLE "cat" because it is being used by active queries '
                                            "in this session"}) is None


# --------------------------------------------------------------------------- CREATE permissions

def lent_spec(sql: str) -> tuple[dict, bytes] | None:
    """(the signed spec, command tag) of a CREATE run through shiftguard.create_lent, or None."""
    from proxy.policy import signing
    translator = Translator(lambda role: "V", sign=signing.signer(b"key", clock=lambda: 1700000000.5))
    result = classify(sql.encode(), translator)
    if result is PASS:
        return None
    (action,) = result.actions
    if action.sql.startswith("/*shiftguard:"):
        return None  # forwarded as it is, marked (test_row_code_marks)
    match = re.fullmatch(r"CALL shiftguard\.create_lent\(E'(.*)', E'(1700000000:[0-9a-f]{64})', "
                         r"pg_catalog\.current_setting\('search_path'\)\)", action.sql)
    assert match, action.sql
    spec = match.group(1).replace("''", "'").replace("\\\\", "\\")
    assert signing.signer(b"key", clock=lambda: 1700000000)("lend", spec) == match.group(2)
    assert not result.cacheable  # the signature expires (signing.LIFETIME)
    return json.loads(spec), action.tag


@pytest.mark.parametrize("sql", [
    "CREATE TABLE t (a int)",
    "CREATE RLS POLICY p WITH (a int) USING (a > 0)",
    "CREATE MASKING POLICY m WITH (a int) USING (0)",
    "ALTER DEFAULT PRIVILEGES FOR USER bob GRANT SELECT ON TABLES TO alice",
])
def test_plans_holding_a_signature_are_signed_anew_each_time(sql):
    """Signatures expire (signing.LIFETIME): the classification cache keeps no plan holding one."""
    from proxy.policy import signing
    ticks = iter(range(1700000000, 1700001000, 100))
    classifier = Classifier(Translator(lambda role: "V", sign=signing.signer(b"key", clock=lambda: next(ticks))))
    first, second = classifier(sql.encode()), classifier(sql.encode())
    assert "1700000000:" in first.actions[0].sql and "1700000100:" in second.actions[0].sql
    assert not first.cacheable


@pytest.mark.parametrize("sql, permission, schema, refusal, tag", [
    ("CREATE TABLE t (a int)", "CREATE TABLE", None, None, b"CREATE TABLE"),
    ("create table IF NOT EXISTS S.t (a int references u)", "CREATE TABLE", "s", None, b"CREATE TABLE"),
    ('CREATE TABLE "My Schema".t (LIKE u)', "CREATE TABLE", "My Schema", None, b"CREATE TABLE"),
    ("CREATE TABLE s.p1 PARTITION OF p FOR VALUES IN (1)", "CREATE TABLE", "s", "CREATE TABLE ... PARTITION OF",
     b"CREATE TABLE"),
    ("CREATE OR REPLACE VIEW s.v AS SELECT 1", "CREATE OR REPLACE VIEW", "s", None, b"CREATE VIEW"),
    ("CREATE VIEW v AS SELECT E'a\\\\b', $$c\\d$$", "CREATE OR REPLACE VIEW", None, None, b"CREATE VIEW"),
    ("CREATE FUNCTION db.s.f() RETURNS int LANGUAGE sql AS $$SELECT 1$$", "CREATE OR REPLACE FUNCTION", "s", None,
     b"CREATE FUNCTION"),
    ("CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$BEGIN END$$", "CREATE OR REPLACE PROCEDURE", None, None,
     b"CREATE PROCEDURE"),
])
def test_create_statements_run_with_create_lent(sql, permission, schema, refusal, tag):
    spec, got_tag = lent_spec(sql)
    assert (spec["permission"], spec["schema"], spec["refusal"], got_tag) == (permission, schema, refusal, tag)
    assert spec["statement"] == sql


def test_a_statement_runs_as_postgresql_reads_it_whatever_standard_conforming_strings_says():
    """pglast reads string constants with standard_conforming_strings on; Redshift sessions run
    with it off, where a backslash escapes. The SQL sent is written so that it reads the same
    either way, as the session's setting reads the client's (tokens.as_read)."""
    attack = b"SELECT 'x\\' ; DROP TABLE t; --'"
    off = classify(attack, TRANSLATOR, standard_strings=False)
    assert off.text == "SELECT E'x\\' ; DROP TABLE t; --'" and off.actions == ()  # one SELECT
    on = classify(attack, TRANSLATOR, standard_strings=True)
    assert on.text == "SELECT E'x\\\\' ; DROP TABLE t; --'"
    assert [a.index for a in on.actions] == [1]  # two statements: the DROP is the proxy's
    # a constant's value is the session's: '\x72ole' is 'role' with the setting off
    identity = b"SELECT set_config('\\x72ole', 'x', false)"
    assert classify(identity, TRANSLATOR, standard_strings=False).actions[0].denial is not None
    # where the reading cannot even end, nothing is sent
    (action,) = classify(b"SELECT 'a\\'; DROP TABLE t;", TRANSLATOR, standard_strings=False).actions
    assert action.denial.sqlstate == "42601"
    assert classify(b"SELECT 'plain'", TRANSLATOR, standard_strings=False) is PASS


@pytest.mark.parametrize("sql", [
    "CREATE TEMP TABLE t (a int)", "CREATE TABLE pg_temp.t (a int)", "CREATE TEMPORARY VIEW v AS SELECT 1",
    "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS $$SELECT 1$$",
    "CREATE TABLE t AS SELECT 1", "SELECT 1 INTO t", "CREATE MATERIALIZED VIEW m AS SELECT 1",
    "CREATE INDEX ON t (a)", "SELECT created_at FROM t",
])
def test_create_statements_left_alone(sql):
    assert lent_spec(sql) is None


def test_untrusted_languages_are_refused_before_any_lending():
    (action,) = plan("CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'").actions
    assert action.denial is not None and action.denial.sqlstate == "0A000"


@pytest.mark.parametrize("sql, call", [
    ("VACUUM", "CALL shiftguard.vacuum(NULL, NULL)"),
    ("vacuum delete only to 75 percent boost", "CALL shiftguard.vacuum(NULL, NULL)"),
    ("VACUUM FULL t", "CALL shiftguard.vacuum(pg_catalog.to_regclass(E'\"t\"')::oid, E't')"),
    ('VACUUM SORT ONLY S."T" TO 75 PERCENT BOOST', "CALL shiftguard.vacuum(pg_catalog.to_regclass(E'\"s\".\"T\"')::oid, E's.T')"),
    ("VACUUM REINDEX t", "CALL shiftguard.vacuum(pg_catalog.to_regclass(E'\"t\"')::oid, E't')"),
    ("VACUUM RECLUSTER t BOOST", "CALL shiftguard.vacuum(pg_catalog.to_regclass(E'\"t\"')::oid, E't')"),
])
def test_redshift_vacuum_becomes_a_request(sql, call):
    (action,) = plan(sql).actions
    assert (action.sql, action.tag) == (call, b"VACUUM")


@pytest.mark.parametrize("sql", ["VACUUM (VERBOSE) t", "VACUUM ANALYZE t", "VACUUM t, u", "VACUUM FREEZE"])
def test_postgresql_vacuum_forms_are_postgresql_s(sql):
    assert plan(sql) is PASS


@pytest.mark.parametrize("sql, state", [("VACUUM t TO 101 PERCENT", "22023"), ("VACUUM t junk", "42601"),
                                        ("VACUUM SORT t", "42601")])
def test_vacuum_grammar_errors(sql, state):
    (action,) = plan(sql).actions
    assert action.denial is not None and action.denial.sqlstate == state


@pytest.mark.parametrize("sql", [b"ALTER USER carol PASSWORD 'Carolnew999; SELECT 1",
                                 b"SELECT 1; ALTER USER carol PASSWORD $$Carolnew999",
                                 b"ALTER IDENTITY PROVIDER p PARAMETERS '{}'; SELECT 'x"])
def test_sql_that_cannot_be_scanned_with_a_secret_is_refused_not_forwarded(sql):
    """PostgreSQL would refuse it too, and write it to its log with the password."""
    plan = classify(sql, TRANSLATOR, False)
    (action,) = plan.actions
    assert action.denial.sqlstate == "42601" and (action.start, action.end) == (0, len(sql))
    assert classify(b"SELECT 'unterminated", TRANSLATOR) is PASS  # no secret: PostgreSQL's own error


@pytest.mark.parametrize("sql, expected", [
    ("SHOW server_version", "SELECT pg_catalog.redshift_show('server_version') AS server_version"),
    ("show SERVER_VERSION", "SELECT pg_catalog.redshift_show('server_version') AS server_version"),
    ('SHOW "server_version_num"', "SELECT pg_catalog.redshift_show('server_version_num') AS server_version_num"),
    ("SHOW search_path", None),
    ("SHOW server_version, x", None),
    ("SELECT 1; SHOW server_version", "SELECT pg_catalog.redshift_show('server_version') AS server_version"),
])
def test_show_server_version_is_rewritten_with_the_dialect(sql, expected):
    """One statement rewrite, as version()'s: the function answers as Redshift does (who may
    see it is decided there, by the caller). Without the dialect (no functions installed on the
    backend) the statement goes to PostgreSQL unchanged."""
    actions = classify(sql.encode(), Translator(lambda role: "V", dialect=True)).actions
    rewritten = [action for action in actions if action.sql is not None]
    if expected is None:
        assert rewritten == []
    else:
        assert [(action.sql, action.tag) for action in rewritten] == [(expected, b"SHOW")]
    assert classify(sql.encode(), TRANSLATOR) == PASS


DIALECT = Translator(lambda role: "V", dialect=True)


@pytest.mark.parametrize("sql, database, runs, tag", [
    ('create schema if not exists "dev"."dbt_x"', "dev", 'create schema if not exists "dbt_x"', b"CREATE SCHEMA"),
    ("DROP SCHEMA IF EXISTS dev.s CASCADE", "dev", "DROP SCHEMA IF EXISTS s CASCADE", b"DROP SCHEMA"),
    # a quoted name folds to lower case (enable_case_sensitive_identifier off, Redshift's default)
    ('/* {"app": "dbt"} */ create schema "Dev".x', "dev", '/* {"app": "dbt"} */ create schema x', b"CREATE SCHEMA"),
])
def test_a_schema_named_in_its_database_runs_in_that_database(sql, database, runs, tag):
    """dbt with datasharing: true names the database; shiftguard.in_database checks that it is
    the session's and runs the rest."""
    (action,) = classify(sql.encode(), DIALECT).actions
    judged = classify(runs.encode(), DIALECT).actions[0].sql or runs  # the statement as judged without it
    assert (action.sql, action.tag) == (
        f"CALL shiftguard.in_database({sql_literal(database)}, {sql_literal(judged)}, "
        "pg_catalog.current_setting('search_path'))", tag)
    assert not any(a.sql for a in classify(b"CREATE SCHEMA a.b.c", DIALECT).actions)  # PostgreSQL's syntax error
ROUTINE_COLUMNS = "database_name, schema_name, procedure_name, return_type, argument_list"
PARAMETER_COLUMNS = ("database_name, schema_name, function_name, parameter_name, ordinal_position, parameter_type, "
                     "data_type, character_maximum_length, numeric_precision, numeric_scale, remarks")


def shown(function: str, *arguments: str, database: str | None = None, after: str = "") -> str:
    """The SELECT a SHOW becomes: database (checked by show_database) goes first when given."""
    if database is not None:
        arguments = (f"shiftguard.show_database({database})", *arguments)
    return f"SELECT * FROM shiftguard.show_{function}({', '.join(arguments)}){after}"


@pytest.mark.parametrize("sql, standard, expected", [
    ("SHOW DATABASES;", True, shown("databases", "NULL")),
    ("show databases like 'd%' limit 3", True, shown("databases", "E'd%'", after=" LIMIT 3")),
    ("SHOW SCHEMAS FROM DATABASE $1 LIKE $2;", True, shown("schemas", "$2::text", database="$1::text")),
    # a quoted name folds to lower case (enable_case_sensitive_identifier off, Redshift's default)
    ('SHOW TABLES FROM SCHEMA Dev."My Schema"', True, shown("tables", "E'my schema'", "NULL", database="E'dev'")),
    ("SHOW TABLES FROM SCHEMA public LIKE 'a\\'", True,      # a pattern ending in a backslash
     shown("tables", "E'public'", "E'a\\\\'", database="NULL")),
    ("SHOW TABLES FROM SCHEMA public LIKE 'a\\\\'", False,   # the same, for standard_conforming_strings off
     shown("tables", "E'public'", "E'a\\\\'", database="NULL")),
    ("SHOW COLUMNS FROM TABLE d.s.\"t'x\" LIKE 'it''s'", True,
     shown("columns", "E's'", "E't''x'", "E'it''s'", database="E'd'")),
    ("SHOW CONSTRAINTS PRIMARY KEYS FROM TABLE $1.$2.$3;", True,
     shown("primary_keys", "$2::text", "$3::text", database="$1::text")),
    ("SHOW CONSTRAINTS FOREIGN KEYS FROM TABLE d.s.t", True,
     shown("foreign_keys", "E's'", "E't'", "false", database="E'd'")),
    ("SHOW GRANTS ON TABLE d.s.t", True, shown("table_grants", "E's'", "E't'", database="E'd'")),
    ("SHOW COLUMN GRANTS ON TABLE d.s.t LIKE $1", True,
     shown("column_grants", "E's'", "E't'", "$1::text", database="E'd'")),
    ("SHOW PROCEDURES FROM SCHEMA d.s", True, shown("routines", "'p'", "shiftguard.show_database(E'd')", "E's'", "NULL",
                                                    after=f" AS r ({ROUTINE_COLUMNS})")),
    ("SHOW PARAMETERS OF FUNCTION s.f(character varying, $1) LIKE 'a'", True,
     shown("parameters", "'f'", "shiftguard.show_database(NULL)", "E's'", "E'f'",
           "ARRAY[E'character varying', $1::text]::pg_catalog.text[]", "E'a'", after=f" AS r ({PARAMETER_COLUMNS})")),
    ("SHOW TABLES FROM DATABASE $1 WHERE SCHEMA_NAME LIKE $2 AND TABLE_NAME LIKE $3;", True,
     shown("tables", "NULL", "NULL", database="$1::text",
           after=" WHERE shiftguard.show_matches(schema_name, $2::text)"
                 " AND shiftguard.show_matches(table_name, $3::text)")),
    ("SHOW COLUMNS FROM DATABASE dev DRIVER_TOKEN 'x' WHERE COLUMN_NAME LIKE 'a%' LIMIT 2", True,
     shown("columns", "NULL", "NULL", "NULL", database="E'dev'",
           after=" WHERE shiftguard.show_matches(column_name, E'a%') LIMIT 2")),
    ("SHOW GRANTS ON TABLES FROM DATABASE dev WHERE TABLE_NAME LIKE 't'", True,
     shown("table_grants", "NULL", "NULL", database="E'dev'",
           after=" WHERE shiftguard.show_matches(object_name, E't')")),
    ("SHOW GRANTS ON SCHEMA s FOR ROLE \"R\"", True,
     shown("schema_grants", "E's'", database="NULL", after=" WHERE identity_type = 'role' AND identity_name = E'R'")),
    ("SHOW GRANTS ON DATABASE $1 FOR PUBLIC LIMIT 1", True,
     shown("database_grants", "$1::text", after=" WHERE identity_type = 'public' LIMIT 1")),
    ("SHOW search_path", True, None),
    ("SHOW tables", True, None),  # a setting's name: PostgreSQL's answer
])
def test_show_discovery_is_rewritten_into_calls_with_literals(sql, standard, expected):
    """Names and patterns reach the functions as literals, read as the session reads them, or as
    the client's own bind parameters; the command tag is SHOW."""
    actions = [a for a in classify(sql.encode(), DIALECT, standard).actions if a.sql is not None]
    assert [(a.sql, a.tag) for a in actions] == ([] if expected is None else [(expected, b"SHOW")])


@pytest.mark.parametrize("sql, state", [
    ("SHOW TABLES FROM dev.public", "42601"),
    ("SHOW COLUMNS FROM TABLE t", "42601"),
    ("SHOW TABLES FROM SCHEMA d.s LIKE x", "42601"),
    ("SHOW TABLES FROM SCHEMA d.s; DROP TABLE x", None),
    ("SHOW TABLES FROM SCHEMA d.s LIMIT 10001", "22023"),
    ("SHOW GRANTS FOR alice", "0A000"),
    ("SHOW PARAMETERS OF PROCEDURE d.s.p", "42601"),
    ("SHOW TABLES FROM DATABASE dev WHERE COLUMN_NAME LIKE 'x'", "42601"),  # not a column of SHOW TABLES
    ("SHOW TABLES FROM DATABASE dev WHERE TABLE_NAME = 'x'", "42601"),
    ("SHOW TABLES FROM DATABASE dev DRIVER_TOKEN x", "42601"),
])
def test_malformed_show_discovery_is_refused(sql, state):
    first = classify(sql.encode(), DIALECT).actions[0]
    if state is None:
        assert first.sql.startswith("SELECT * FROM shiftguard.show_tables(")
    else:
        assert first.denial is not None and first.denial.sqlstate == state


@pytest.mark.parametrize("sql, names", [
    (b"DROP DATABASE sales", {"sales"}),
    (b'drop database if exists "Sales Db"; ALTER DATABASE old RENAME TO new', {"Sales Db", "old"}),
    (b"DROP DATABASE a WITH (FORCE)", {"a"}),
    (b"ALTER DATABASE a SET search_path TO x", set()),          # not a rename: nothing to close
    (b"SELECT 'DROP DATABASE x'", set()),                        # a string, not a statement
    (b"DROP DATABASE", set()),                                   # not SQL: PostgreSQL refuses it
    (b"DROP DATABASE \xff", set()),
    (b"DROP TABLE database", set()),
    (b"CREATE DATABASE sales", {"template1"}),                  # copies template1: nobody may be in it
    (b"CREATE DATABASE sales WITH TEMPLATE = 'base' OWNER a", {"base"}),
    (b"CREATE DATABASE sales TEMPLATE DEFAULT", {"template1"}),
])
def test_the_databases_a_statement_needs_no_other_session_in(sql, names):
    assert databases_to_vacate(sql) == names
