"""Statement classification verdicts: SQL in, plan out."""

from __future__ import annotations

import pytest

from proxy.policy.cache import Classifier
from proxy.policy.statements import PASS, Translator, classify, password_to_md5, sql_literal
from proxy.protocol.auth import redshift_md5

TRANSLATOR = Translator(lambda role: f"VERIFIER-{role}")


def plan(sql: str):
    return classify(sql.encode(), TRANSLATOR)


@pytest.mark.parametrize("sql", [
    "SELECT 1", "select * from t where a = 'CREATE USER x PASSWORD ''y'''",
    "/* CREATE USER x PASSWORD 'Abcdefg1' */ SELECT 1", "INSERT INTO t VALUES (1)",
    "CREATE ROLE r", "CREATE GROUP g WITH USER a, b", "DROP ROLE r", "not sql at all",
    "COPY t FROM STDIN", "",
])
def test_statements_the_proxy_does_not_own_pass(sql):
    assert plan(sql) is PASS


def test_create_user_becomes_a_procedure_call_without_the_password():
    result = plan("CREATE USER Bob WITH PASSWORD 'Secret123'")
    (action,) = result.actions
    assert action.tag == b"CREATE USER"
    assert b"Secret123" not in action.sql
    assert action.sql == (f"CALL shiftguard.create_user(E'bob', E'{redshift_md5('Secret123', 'bob')}', "
                          f"false, E'VERIFIER-bob')").encode()
    assert not result.cacheable


def test_quoted_name_keeps_case_and_md5_form_is_kept():
    digest = "md5" + "a" * 32
    (action,) = plan(f"""CREATE USER "Mixed" PASSWORD '{digest}'""").actions
    assert b"E'Mixed'" in action.sql and digest.encode() in action.sql


@pytest.mark.parametrize("sql, sqlstate, fragment", [
    ("CREATE USER bob", "42601", "needs a PASSWORD"),
    ("CREATE USER bob PASSWORD 'short1A'", "22023", "8 to 64"),
    ("CREATE USER bob PASSWORD 'alllower123'", "22023", "upper-case"),
    ("CREATE USER bob PASSWORD 'ALLUPPER123'", "22023", "lower-case"),
    ("CREATE USER bob PASSWORD 'NoDigitsHere'", "22023", "digit"),
    ("CREATE USER bob PASSWORD 'Has/Slash123'", "22023", "printable ASCII"),
    ('CREATE USER "sys:x" PASSWORD \'Secret123\'', "22023", "reserved prefix"),
    ("CREATE USER bob PASSWORD 'Secret123' CREATEDB", "0A000", "CREATEDB"),
    ("ALTER USER bob RENAME TO carl", "0A000", "renaming"),
    ("ALTER USER bob CONNECTION LIMIT 3", "0A000", "CONNECTIONLIMIT"),
    # PostgreSQL role attributes would let a role log in to the backend around the proxy.
    ("ALTER ROLE bob PASSWORD 'Secret123'", "42601", "not Redshift's"),
    ("ALTER ROLE CURRENT_USER WITH LOGIN", "42601", "not Redshift's"),
    ("ALTER ROLE bob SET search_path = x", "42601", "not Redshift's"),
    ("CREATE ROLE r LOGIN PASSWORD 'Secret123'", "42601", "not Redshift's"),
    ("CREATE GROUP g LOGIN", "42601", "not Redshift's"),
])
def test_refusals_name_the_rule(sql, sqlstate, fragment):
    (action,) = plan(sql).actions
    assert action.denial.sqlstate == sqlstate
    assert fragment in action.denial.message


def test_multi_statement_spans_are_bytes():
    sql = "SELECT 'é'; DROP USER IF EXISTS a, \"B\"; SELECT 2"
    result = plan(sql)
    (action,) = result.actions
    raw = sql.encode()
    assert raw[action.start:action.end] == b'DROP USER IF EXISTS a, "B"'
    assert action.index == 1
    assert action.sql == b"CALL shiftguard.drop_users(ARRAY[E'a', E'B']::text[], true)"


def test_alter_user_password():
    (action,) = plan("ALTER USER bob PASSWORD 'Other1234'").actions
    assert action.tag == b"ALTER USER"
    assert action.sql == f"CALL shiftguard.set_password(E'bob', E'{redshift_md5('Other1234', 'bob')}')".encode()


def test_sql_literal_is_safe_whatever_standard_conforming_strings_says():
    assert sql_literal("a'b\\c") == "E'a''b\\\\c'"
    with pytest.raises(ValueError):
        sql_literal("a\0b")


def test_password_forms():
    assert password_to_md5("md5" + "0" * 32, "bob") == "md5" + "0" * 32
    assert password_to_md5("Secret123", "bob") == redshift_md5("Secret123", "bob")
    assert password_to_md5("sha256|Secret123", "bob").sqlstate == "0A000"
    scram = password_to_md5("SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5", "bob")
    assert scram.sqlstate == "0A000" and "SCRAM-SHA-256" in scram.message


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
