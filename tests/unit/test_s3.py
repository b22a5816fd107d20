"""COPY/UNLOAD with S3 locations and DECODE: grammar and plan verdicts, the local bucket's file
naming and escape checks (on a temporary directory)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time

import pytest

from proxy.policy import dialect
from proxy.policy.s3 import parse_copy, parse_unload, single_select
from proxy.policy.statements import Translator, classify
from proxy.policy.tokens import GrammarError, scan
from proxy.s3 import LocalS3

SECRET = b"k" * 32


@pytest.fixture
def bucket(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a_00").write_text("1|x\n")
    (tmp_path / "data" / "a_01").write_text("2|y\n")
    (tmp_path / "data" / "b_00").write_text("3|z\n")
    return tmp_path


def translator(bucket, dialect_on: bool = True) -> Translator:
    return Translator(lambda role: "V", dialect=dialect_on, s3=LocalS3({"bkt": str(bucket)}, SECRET))


def only_action(sql: str, translator: Translator):
    plan = classify(sql.encode(), translator)
    assert len(plan.actions) == 1 and not plan.cacheable
    return plan.actions[0]


def ticket_of(sql: str) -> dict:
    literals = re.findall(r"E'((?:[^']|'')*)'", sql)
    ticket, signature = literals[-2].replace("''", "'").replace("\\\\", "\\"), literals[-1]
    issued, mac = signature.split(":")
    assert abs(int(issued) - time.time()) < 60  # signed just now (signing.LIFETIME)
    assert hmac.new(SECRET, f"s3:{issued}:{ticket}".encode(), hashlib.sha256).hexdigest() == mac
    return json.loads(ticket)


def test_copy_names_every_file_under_the_prefix_signed(bucket):
    action = only_action("copy public.t (a, \"B\") from 's3://bkt/data/a_' iam_role 'arn:aws:iam::1:role/r' "
                         "delimiter ',' null as 'NA' gzip ignoreheader 2", translator(bucket))
    assert action.tag == b"COPY"
    assert action.sql.startswith("CALL shiftguard.s3_copy(E'\"public\".\"t\"', ARRAY[E'a', E'B']::pg_catalog.text[]")
    ticket = ticket_of(action.sql)
    assert ticket["files"] == [os.path.realpath(bucket / "data" / "a_00"), os.path.realpath(bucket / "data" / "a_01")]
    assert (ticket["op"], ticket["delimiter"], ticket["null"], ticket["gzip"], ticket["ignoreheader"]) == (
        "read", ",", "NA", True, 2)


def test_unload_names_redshifts_files(bucket):
    action = only_action("UNLOAD ('select * from t') TO 's3://bkt/out/v_' IAM_ROLE default", translator(bucket))
    assert action.tag == b"UNLOAD"
    assert ticket_of(action.sql)["file"] == os.path.realpath(bucket) + "/out/v_0000_part_00"
    assert (bucket / "out").is_dir()
    action = only_action("UNLOAD ('select 1') TO 's3://bkt/out/v_' IAM_ROLE default PARALLEL OFF GZIP CSV HEADER",
                         translator(bucket))
    ticket = ticket_of(action.sql)
    assert (ticket["file"].rsplit("/", 1)[1], ticket["format"], ticket["delimiter"], ticket["header"]) == (
        "v_000.gz", "csv", ",", True)


@pytest.mark.parametrize("sql, sqlstate", [
    ("COPY t FROM 's3://bkt/../x' IAM_ROLE 'r'", "0A000"),
    ("COPY t FROM 's3://bkt//etc/passwd' IAM_ROLE 'r'", "0A000"),
    ("COPY t FROM 's3://other/x' IAM_ROLE 'r'", "58P01"),
    ("COPY t FROM 's3://bkt/nothing' IAM_ROLE 'r'", "58P01"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE 'r' FORMAT AS JSON 'auto'", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE 'r' AVRO 'auto'", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE 'r' MANIFEST", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE 'r' DELIMITER 'ab'", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE 'r' IGNOREHEADER x", "42601"),
    ("UNLOAD ('select 1; select 2') TO 's3://bkt/x' IAM_ROLE 'r'", "0A000"),
    ("UNLOAD ('select 1 into t2') TO 's3://bkt/x' IAM_ROLE 'r'", "0A000"),
    ("UNLOAD ('update t set a = 1') TO 's3://bkt/x' IAM_ROLE 'r'", "0A000"),
    ("UNLOAD ('select 1') TO 's3://bkt/x' IAM_ROLE 'r' PARQUET", "0A000"),
    ("UNLOAD ('select set_config(''role'', ''x'', false)') TO 's3://bkt/x' IAM_ROLE 'r'", "0A000"),
    ("UNLOAD ('select 1') TO '/tmp/x' IAM_ROLE 'r'", "0A000"),
])
def test_refusals(bucket, sql, sqlstate):
    action = classify(sql.encode(), translator(bucket)).actions[0]
    assert action.denial is not None and action.denial.sqlstate == sqlstate, action


def test_without_the_servers_file_functions_it_is_refused(bucket):
    for sql in ("COPY t FROM 's3://bkt/data/' IAM_ROLE 'r'", "UNLOAD ('select 1') TO 's3://bkt/x_' IAM_ROLE 'r'"):
        denial = classify(sql.encode(), translator(bucket, dialect_on=False)).actions[0].denial
        assert denial.sqlstate == "0A000" and "not supported by shiftguard on this backend" in denial.message


def test_other_server_file_copies_stay_refused(bucket):
    for sql in ("COPY t FROM '/etc/passwd'", "COPY t TO 's3://bkt/x'", "COPY t FROM PROGRAM 'id'"):
        assert classify(sql.encode(), translator(bucket)).actions[0].denial.sqlstate == "0A000"


def test_symlinks_out_of_the_bucket_are_refused(bucket):
    (bucket / "data" / "evil").symlink_to("/etc/hostname")
    (bucket / "up").symlink_to("/etc")
    local = LocalS3({"bkt": str(bucket)}, SECRET)
    for prefix in ("data/", "up/host"):
        with pytest.raises(GrammarError, match="leaves its bucket"):
            local.source_files("bkt", prefix)
    with pytest.raises(GrammarError, match="leaves its bucket"):
        local.target_file("bkt", "up/x_", True, False, False)


def test_unload_query_keeps_redshift_quoting():
    query, unload = parse_unload(r"UNLOAD ('select * from t where a = \'x\' and b = ''y''') TO 's3://b/p/' "
                                 r"IAM_ROLE 'r' PARALLEL FALSE ALLOWOVERWRITE",
                                 scan(r"UNLOAD ('select * from t where a = \'x\' and b = ''y''') TO 's3://b/p/' "
                                      r"IAM_ROLE 'r' PARALLEL FALSE ALLOWOVERWRITE"))
    assert query == "select * from t where a = 'x' and b = 'y'"
    assert single_select(query) == "SELECT * FROM t WHERE a = 'x' AND b = 'y'"
    assert (unload.target.bucket, unload.target.prefix, unload.options.parallel, unload.options.allowoverwrite) == (
        "b", "p/", False, True)


def test_copy_grammar_defaults():
    copy = parse_copy(scan("COPY s.\"T\" FROM 's3://b/k' CREDENTIALS AS 'aws_access_key_id=x'"))
    assert (copy.table, copy.columns, copy.options.copy_format(False)["delimiter"],
            copy.options.copy_format(False)["null"]) == ('"s"."T"', [], "|", "\\N")


@pytest.mark.parametrize("sql, expected", [
    ("select decode(a, 1, 'x')", "select CASE WHEN (a) IS NOT DISTINCT FROM (1) THEN ('x') END"),
    ("select decode(a, 1, 'x', f(b, c))", "select CASE WHEN (a) IS NOT DISTINCT FROM (1) THEN ('x') ELSE (f(b, c)) END"),
    ("select decode(a, 'b64')", None),
    ("select s.decode(a, 1, 2)", None),
    ("select 'decode(a, 1, 2)'", None),
])
def test_decode(sql, expected):
    rewritten = dialect.rewrite(sql)
    assert (rewritten.sql if rewritten else None) == expected
