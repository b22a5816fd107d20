"""The classification cache's byte budget and the statement size limits (policy/cache.py):
counted in bytes and entries, never timed."""

from __future__ import annotations

import sys

from proxy.policy import masking
from proxy.policy.cache import Classifier, entry_cost
from proxy.policy.statements import PASS, Translator


def classifier(**limits) -> Classifier:
    return Classifier(Translator(lambda role: "V"), **limits)


def test_the_cache_keeps_to_its_byte_budget():
    cache = classifier(max_bytes=100_000)
    for n in range(200):
        cache(f"SELECT {n}, '{'é' * 500}'".encode())  # non-ASCII: read, rewritten, cacheable
        assert cache.bytes <= 100_000
        assert cache.bytes == sum(cost for _, cost in cache._plans.values())
    assert 0 < len(cache._plans) < 200
    last = f"SELECT 199, '{'é' * 500}'".encode()
    assert cache(last) is cache(last)  # still a cache


def test_a_statement_over_a_sixteenth_of_the_budget_is_never_kept():
    cache = classifier(max_bytes=160_000)
    small = "SELECT 'é'".encode()
    cache(small)
    before = cache.bytes
    for n in range(12):
        huge = f"SELECT {n}, '{'é' * 5000}'".encode()
        plan = cache(huge)
        assert entry_cost(huge, plan) > 160_000 // 16 and plan.text is not None
    assert cache.bytes == before and len(cache._plans) == 1


def test_a_change_of_the_masked_tables_empties_the_cache_and_its_count():
    translator = Translator(lambda role: "V")
    cache = Classifier(translator)
    cache("SELECT 'é'".encode())
    assert cache.bytes > 0
    translator.masked = masking.MaskedTables(2, {("public", "t"): "t_masked"})
    cache("SELECT 'ü'".encode())
    assert len(cache._plans) == 1 and cache.bytes == sum(cost for _, cost in cache._plans.values())


def test_sql_over_the_statement_size_is_refused_as_redshift_does():
    cache = classifier(max_statement_size=2048, max_checked_size=1024)
    plan = cache(b"SELECT '" + b"x" * 3000 + b"'")  # needs no reading, still too large
    (action,) = plan.actions
    assert action.denial.sqlstate == "54000" and plan.text == "" and not plan.cacheable
    assert action.denial.message == "Statement is too large. Statement Size: 3009 bytes. Maximum Allowed: 2048 bytes"


def test_sql_the_proxy_must_read_is_refused_over_the_checked_size_and_nothing_else():
    cache = classifier(max_statement_size=1 << 20, max_checked_size=1024)
    assert cache(b"SELECT '" + b"x" * 5000 + b"'") is PASS  # not read: PostgreSQL takes it
    plan = cache(b"SELECT usename, '" + b"x" * 5000 + b"' FROM pg_user")
    (action,) = plan.actions
    assert action.denial.sqlstate == "54000" and plan.text == ""
    assert "too large for shiftguard to check: 5031 bytes (at most 1024)" in action.denial.message
    assert "limits.max_checked_statement_size" in action.denial.hint
    assert cache.bytes == 0


def test_policy_expressions_are_read_up_to_their_own_limit():
    """A policy's expressions are the dearest reading (their parse tree is walked and printed):
    over rls.POLICY_BODY_LIMIT they are refused with 54000 before they are parsed."""
    from proxy.policy.rls import POLICY_BODY_LIMIT
    from proxy.policy.statements import classify

    translator = Translator(lambda role: "V")

    def rls(terms: int) -> bytes:
        return ("CREATE RLS POLICY p WITH (a int) USING (" + " OR ".join(f"a = {i}" for i in range(terms))
                + ")").encode()

    def masking(whens: int) -> bytes:
        return ("CREATE MASKING POLICY p WITH (a int) USING (CASE "
                + " ".join(f"WHEN a = {i} THEN {i}" for i in range(whens)) + " END)").encode()

    for make, what in ((rls, "RLS policy predicate"), (masking, "masking expressions")):
        (accepted,) = classify(make(100), translator).actions
        assert accepted.denial is None and accepted.sql.startswith("CALL shiftguard.")
        (refused,) = classify(make(POLICY_BODY_LIMIT // 8), translator).actions
        assert refused.denial.sqlstate == "54000" and refused.denial.message.startswith(f"{what} too long")


def test_the_parse_trees_of_one_message_have_a_budget():
    """Rewriting through parse trees is the dearest work (tens of calls a byte): one message may
    spend limits.max_rewritten_statement_size characters of it. 8,000 statements naming pg_user
    (199 kB) against a budget of 20,000: the message is refused with 54000, and costs less than 3
    times what 500 of them (12 kB) cost, for 17 times the text."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "classify_scaling", Path(__file__).resolve().parents[2] / "bench" / "classify_scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    cache = classifier(max_rewritten_size=20_000)
    few, many = scaling.FAMILIES["statements"](500), scaling.FAMILIES["statements"](8000)
    assert not any(action.denial for action in cache(few.encode()).actions)
    plan = cache(many.encode())
    (refused,) = plan.actions  # the whole message, none of it sent
    assert (refused.denial.sqlstate, refused.denial.message) == ("54000", "statement too large for shiftguard to rewrite")
    assert "limits.max_rewritten_statement_size" in refused.denial.hint and plan.text == ""
    work = []
    for sql in (few, many):
        fresh = classifier(max_rewritten_size=20_000)  # nothing cached
        calls = [0]

        def count(frame, event, arg):
            if event in ("call", "c_call"):
                calls[0] += 1
        sys.setprofile(count)
        try:
            fresh(sql.encode())
        finally:
            sys.setprofile(None)
        work.append(calls[0])
    assert work[1] < 3 * work[0]


def test_a_large_statement_only_names_would_have_read_is_sent_as_written():
    """Quoted capitals and long runs are common inside string constants (JSON, hex): above
    max_checked_size such SQL passes as written rather than being refused (its names are then
    PostgreSQL's own reading); below it they are folded."""
    classifier = Classifier(Translator(lambda role: "V", dialect=True), max_checked_size=1000)
    payload = '{"Name": "' + "ab" * 600 + '"}'
    assert classifier(f"INSERT INTO t VALUES ('{payload}')".encode()) == PASS
    assert classifier(b'SELECT 1 AS "Foo"').actions[0].sql == 'SELECT 1 AS "foo"'


def test_a_large_statement_only_strict_redshift_would_have_read_is_sent_as_written():
    """strict_redshift reads every statement, up to max_checked_size; above it, SQL nothing else
    would have the proxy read passes as written (a bulk INSERT of many parameters), while SQL
    the proxy must read is refused as before."""
    classifier = Classifier(Translator(lambda role: "V", dialect=True, strict=True), max_checked_size=1000)
    many = "INSERT INTO t (c) VALUES " + ", ".join(f"(${n})" for n in range(1, 300))
    assert classifier(many.encode()) == PASS
    assert classifier(b"CREATE TABLE t (a bytea)").actions[0].denial.sqlstate == "0A000"
    (action,) = classifier(f"INSERT INTO t VALUES ('{'é' * 600}')".encode()).actions
    assert action.denial.sqlstate == "54000"
