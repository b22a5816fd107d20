"""Classification never fails on SQL it is given: generated and mutated statements (tests/fuzz/sql.py)
get a plan or a refusal with a real SQLSTATE, never an internal error (XX000) or an exception.

Bounded by a count of examples (SHIFTGUARD_FUZZ_EXAMPLES, default 1,500, derandomised so the
normal suite always tries the same ones); `python bench/fuzz.py classifier` runs a long,
random mode."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.policy.masking import MaskedTables
from proxy.policy.statements import Translator, classify
from proxy.protocol.sqlstate import INTERNAL_ERROR
from proxy.s3 import LocalS3

from ..fuzz.sql import CORPUS, statements, tokens

EXAMPLES = int(os.environ.get("SHIFTGUARD_FUZZ_EXAMPLES", "1500"))
LONG = os.environ.get("SHIFTGUARD_FUZZ_RANDOM") == "1"


def translators() -> list[Translator]:
    masked = MaskedTables(1, {("public", "cards"): "mask:1", ("public", "t1"): "mask:2"},
                          frozenset({("public", "t2")}))
    plain = Translator(lambda role: "SCRAM-SHA-256$4096:x$y:z")
    redshift = Translator(lambda role: "SCRAM-SHA-256$4096:x$y:z", dialect=True,
                          s3=LocalS3({"bucket": "/tmp"}, b"k" * 32))
    redshift.masked = masked
    strict = Translator(lambda role: "SCRAM-SHA-256$4096:x$y:z", dialect=True, strict=True)
    strict.masked = masked
    return [plain, redshift, strict]


TRANSLATORS = translators()


@settings(max_examples=EXAMPLES, derandomize=not LONG, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(sql=statements(), translator=st.sampled_from(TRANSLATORS), standard_strings=st.booleans())
def test_classification_never_fails_inside_the_proxy(sql, translator, standard_strings):
    plan = classify(sql.encode(), translator, standard_strings)
    internal = [a.denial for a in plan.actions if a.denial is not None and a.denial.sqlstate == INTERNAL_ERROR]
    assert not internal, (sql, internal)


@pytest.mark.parametrize("sql", [
    "CREATE TABLE",                                   # dialect: a CREATE TABLE without a name
    "CREATE TABLE IF NOT EXISTS",
    "SELECT " + " || ".join(["'a'"] * 1000) + " FROM pg_user",   # printed back: deep recursion
    "SELECT " + " || ".join(["c.card"] * 600) + " FROM cards c",  # the masking rewrite
    "ALTER TABLE t1 ALTER DISTSTYLE ( ALL",           # an ALTER of no attribute after all
    "GRANT INSERT ON public.t1 TO GROUP PUBLIC",      # GROUP before what names no group
])
def test_statements_the_fuzzer_found(sql):
    for translator in TRANSLATORS:
        plan = classify(sql.encode(), translator, True)
        assert not [a for a in plan.actions if a.denial is not None and a.denial.sqlstate == INTERNAL_ERROR]


def test_every_prefix_and_every_one_token_deletion_of_the_corpus():
    """Statements cut short or missing a word, exhaustively (about 14,000): what a parser's
    walkers trip on ("ALTER TABLE t ALTER COMPOUND SORTKEY" read past the end)."""
    translator = TRANSLATORS[1]
    for statement in CORPUS:
        pieces = tokens(statement)
        for cut in range(len(pieces) + 1):
            for sql in ("".join(pieces[:cut]), "".join(pieces[:cut] + pieces[cut + 1:])):
                plan = classify(sql.encode(), translator, True)
                assert not [a for a in plan.actions if a.denial is not None and a.denial.sqlstate == INTERNAL_ERROR], sql


def test_what_is_too_deep_to_read_is_refused_not_forwarded():
    """A statement the proxy must read but its parser cannot (bison's stack: 'memory exhausted')
    is refused with 54001, never passed on unread; one the proxy need not read goes on."""
    from proxy.policy.statements import PASS, Translator, classify
    nested = "(" * 20_000 + "1" + ")" * 20_000
    (action,) = classify(f"SELECT {nested} FROM pg_user".encode(), Translator(lambda role: "V")).actions
    assert action.denial is not None and action.denial.sqlstate == "54001"
    assert classify(f"SELECT {nested}".encode(), Translator(lambda role: "V")) is PASS
