"""Redshift's names (policy/identifiers.py), pure: which quoted names fold, which keep their case,
the SET/RESET/SHOW of enable_case_sensitive_identifier, names too long for PostgreSQL (written as
their short names) or for Redshift (refused)."""

from __future__ import annotations

import pytest

import hashlib

from proxy.policy.identifiers import IdentifierCase, as_redshift_reads, may_rewrite, setting, short_name
from proxy.policy.statements import Translator, classify
from proxy.policy.tokens import GrammarError, quote_ident

OFF, ON = IdentifierCase(), IdentifierCase(True, False)
DIALECT = Translator(lambda role: "V", dialect=True)


@pytest.mark.parametrize("sql, folded", [
    ('SELECT "MyCol" AS "Foo" FROM "S"."T"', 'SELECT "mycol" AS "foo" FROM "s"."t"'),
    ("SELECT '\"Keep\"', $$\"Keep\"$$, E'\"K\\'eep\"' -- \"Keep\"", None),      # strings and comments never
    ('SELECT "lower", plain, "a""B"', 'SELECT "lower", plain, "a""b"'),
    ('SELECT U&"\\0041\\00c9"', 'SELECT U&"a\\00c9"'),                       # ASCII letters only fold
    ("SELECT U&\"!0041\" UESCAPE '!'", None),                                # its own escape: as written
    ('CREATE USER "Bob" PASSWORD \'Abc12345\' IN GROUP "G"', None),          # users, groups, roles keep case
    ('ALTER GROUP "G" ADD USER "Bob", "Ann"', None),
    ('GRANT SELECT ON "T" TO "Bob", GROUP "G", ROLE "R" WITH GRANT OPTION',
     'GRANT SELECT ON "t" TO "Bob", GROUP "G", ROLE "R" WITH GRANT OPTION'),
    ('REVOKE SELECT ("C") ON "T" FROM "Bob"', 'REVOKE SELECT ("c") ON "t" FROM "Bob"'),
    ('ALTER DEFAULT PRIVILEGES FOR USER "A", "B" IN SCHEMA "S" GRANT SELECT ON TABLES TO "C"',
     'ALTER DEFAULT PRIVILEGES FOR USER "A", "B" IN SCHEMA "s" GRANT SELECT ON TABLES TO "C"'),
    ('ALTER TABLE "T" OWNER TO "Bob"', 'ALTER TABLE "t" OWNER TO "Bob"'),
    ('ALTER TABLE "T" RENAME COLUMN owner TO "New"', 'ALTER TABLE "t" RENAME COLUMN owner TO "new"'),
    ('CREATE SCHEMA "S" AUTHORIZATION "Bob"', 'CREATE SCHEMA "s" AUTHORIZATION "Bob"'),
    ('SET SESSION AUTHORIZATION "Bob"', None),
    ('ATTACH MASKING POLICY "P" ON "T" ("C") TO ROLE "R"', 'ATTACH MASKING POLICY "p" ON "t" ("c") TO ROLE "R"'),
    ('SHOW GRANTS ON TABLE d."S"."T" FOR "Bob"', 'SHOW GRANTS ON TABLE d."s"."t" FOR "Bob"'),
    ('SELECT user, "A" FROM "T"', 'SELECT user, "a" FROM "t"'),
])
def test_quoted_names_fold_but_user_names_and_strings_stay(sql, folded):
    assert as_redshift_reads(sql, OFF) == folded


def test_with_the_setting_on_only_long_names_matter():
    assert as_redshift_reads('SELECT "MyCol" FROM "T"', ON) is None
    seen = set()
    assert as_redshift_reads(f'SELECT "{"X" * 64}"', ON, seen) == f'SELECT "{short_name("X" * 64)}"'
    assert seen == {"X" * 64}


def test_a_short_name_is_a_prefix_and_the_hash_of_the_whole_name():
    name = "təst_nam好e$123" + "x" * 60
    short = short_name(name)
    assert short == "təst_nam好e$123" + "x" * 21 + "#" + hashlib.sha256(name.encode()).hexdigest()[:24]
    assert len(short.encode()) <= 63
    assert short_name("é" * 40).startswith("é" * 19 + "#")  # never half a character
    assert short_name(name + " parent") != short_name(name + " child")
    assert short_name("a" * 63) == "a" * 63


@pytest.mark.parametrize("name, long", [
    ("a" * 64, "a" * 64), ("A" * 127, "a" * 127), ('"' + "B" * 64 + '"', "b" * 64), ('"' + "é" * 32 + '"', "é" * 32),
    ("U&\"" + "\\00e9" * 32 + '"', "é" * 32), ("U&\"" + "\\00C9" * 63 + '"', "É" * 63)])
def test_names_of_64_to_127_bytes_are_sent_as_their_short_names(name, long):
    seen = set()
    assert as_redshift_reads(f"CREATE TABLE {name} (a int)", OFF, seen) == \
        f"CREATE TABLE {quote_ident(short_name(long))} (a int)"
    assert seen == {long}
    assert as_redshift_reads("CREATE TABLE " + "a" * 63 + " (a int)", OFF) is None


def test_user_names_keep_their_case_when_long():
    seen = set()
    as_redshift_reads(f'CREATE USER "{"U" * 70}" PASSWORD DISABLE', OFF, seen)
    assert seen == {"U" * 70}


@pytest.mark.parametrize("name", ["a" * 128, '"' + "B" * 128 + '"', '"' + "é" * 64 + '"', "U&\"" + "\\00e9" * 64 + '"'])
def test_names_over_127_bytes_are_refused(name):
    with pytest.raises(GrammarError, match="bytes long, more than the 127 bytes Amazon Redshift allows") as info:
        as_redshift_reads(f"CREATE TABLE {name} (a int)", OFF)
    assert info.value.sqlstate == "42622"


@pytest.mark.parametrize("sql, after, tag", [
    ("SET enable_case_sensitive_identifier TO true", IdentifierCase(True, True), b"SET"),
    ("set Enable_Case_Sensitive_Identifier = 'on'", IdentifierCase(True, True), b"SET"),
    ("SET SESSION enable_case_sensitive_identifier TO 1", IdentifierCase(True, True), b"SET"),
    ("SET enable_case_sensitive_identifier TO off", IdentifierCase(False, True), b"SET"),
    ("SET enable_case_sensitive_identifier TO DEFAULT", IdentifierCase(True, True), b"SET"),
    ("RESET enable_case_sensitive_identifier", IdentifierCase(True, True), b"RESET"),
    ("RESET ALL", IdentifierCase(True, True), None),
    ("SHOW enable_case_sensitive_identifier", IdentifierCase(False, True), b"SHOW"),
])
def test_the_setting_is_the_sessions(sql, after, tag):
    session = IdentifierCase(False, True)  # off now; the cluster's parameter group says on
    new, _, sent_tag = setting(sql, session)
    assert (new, sent_tag) == (after, tag)


def test_bad_values_and_set_local_are_refused():
    for sql, code in (("SET enable_case_sensitive_identifier TO maybe", "22023"),
                      ("SET LOCAL enable_case_sensitive_identifier TO on", "0A000")):
        with pytest.raises(GrammarError) as info:
            setting(sql, OFF)
        assert info.value.sqlstate == code
    assert setting("SET search_path TO public", OFF) is None
    assert setting("SELECT 'enable_case_sensitive_identifier'", OFF) is None


def test_statements_after_the_set_in_one_message_read_by_it():
    plan = classify(b'SELECT 1 AS "A"; SET enable_case_sensitive_identifier TO on; SELECT 1 AS "B"', DIALECT)
    assert [a.sql for a in plan.actions] == ['SELECT 1 AS "a"', "SET redshift.enable_case_sensitive_identifier TO 'on'"]
    assert plan.identifier_case == ON
    assert plan.actions[1].tag == b"SET"


def test_long_names_in_sql_and_plpgsql_bodies_are_the_same_short_names():
    name = "p" * 70
    seen = set()
    sent = as_redshift_reads(f'CREATE PROCEDURE x("{name}" OUT int) AS $$ BEGIN "{name}" := 1; END; $$ '
                             f"LANGUAGE plpgsql", OFF, seen)
    assert sent == f'CREATE PROCEDURE x("{short_name(name)}" OUT int) AS E\' BEGIN "{short_name(name)}" := 1; END; \' ' \
                   "LANGUAGE plpgsql"
    assert seen == {name}
    assert as_redshift_reads(f"DO $$ BEGIN PERFORM {name}; END $$", OFF) == \
        f"DO E' BEGIN PERFORM \"{short_name(name)}\"; END '"
    # other languages' bodies and bodies without long names are left as written
    assert as_redshift_reads(f"CREATE FUNCTION f() RETURNS int AS $$ {name} $$ LANGUAGE plpythonu", OFF) is None
    assert as_redshift_reads('CREATE FUNCTION f() RETURNS int AS $$ SELECT "A" $$ LANGUAGE sql', OFF) is None


def test_a_long_quoted_name_holding_a_quote_is_seen():
    name = "a" * 30 + '"' + "b" * 40
    sql = "SELECT " + quote_ident(name)
    assert may_rewrite(sql.encode(), sql.lower().encode(), OFF)
    assert as_redshift_reads(sql, OFF) == "SELECT " + quote_ident(short_name(name))


@pytest.mark.parametrize("name", ['"' + "b" * 63, "a" * 31 + '"' + "b" * 32, "a" * 62 + '"', '"' * 64])
def test_a_long_quoted_name_holding_quotes_anywhere_is_seen(name):
    sql = "SELECT " + quote_ident(name)
    assert may_rewrite(sql.encode(), sql.lower().encode(), OFF)


def test_a_name_over_127_bytes_in_a_body_is_refused():
    with pytest.raises(GrammarError) as info:
        as_redshift_reads(f"DO $$ BEGIN PERFORM {'a' * 128}; END $$", OFF)
    assert info.value.sqlstate == "42622"
