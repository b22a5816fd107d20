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

from dataclasses import replace

from proxy.config import AccessKey, Iam, IamRole, IamUser, load_config
from proxy.iam.principals import Principals
from proxy.iam.s3access import S3Access
from proxy.policy import dialect
from proxy.policy.s3 import parse_copy, parse_unload, single_select
from proxy.policy.cache import Classifier
from proxy.policy.statements import Translator, classify
from proxy.policy.tokens import GrammarError, scan
from proxy.s3 import LocalS3

SECRET = b"k" * 32
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/loader"
ALICE_KEY, ALICE_SECRET = "AKIAALICE00000000001", "alice-secret"
BOB_KEY, BOB_SECRET = "AKIABOB0000000000001", "bob-secret"


def policy(*statements) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ANY_S3 = policy({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::*"})
# alice may read and write under data/ only; bob may do nothing in S3.
ALICE_S3 = policy({"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::bkt/data/*"},
                  {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bkt",
                   "Condition": {"StringLike": {"s3:prefix": "data/*"}}})
CONFIG = replace(load_config(None, env={}), iam=Iam(
    users=[IamUser("alice", [AccessKey(ALICE_KEY, ALICE_SECRET)], policies=[ALICE_S3]),
           IamUser("bob", [AccessKey(BOB_KEY, BOB_SECRET)])],
    roles=[IamRole("loader", policies=[ANY_S3]), IamRole("nothing")]))


def sts_secret(key: str) -> tuple[str, str]:
    return "secret-of-" + key, "token-of-" + key


@pytest.fixture
def bucket(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a_00").write_text("1|x\n")
    (tmp_path / "data" / "a_01").write_text("2|y\n")
    (tmp_path / "data" / "b_00").write_text("3|z\n")
    return tmp_path


def translator(bucket, dialect_on: bool = True) -> Translator:
    return Translator(lambda role: "V", dialect=dialect_on, s3=LocalS3({"bkt": str(bucket)}, SECRET),
                      s3_access=S3Access(Principals(CONFIG), f"arn:aws:redshift:us-east-1:{ACCOUNT}:dbuser:c",
                                         sts_secret))


def only_action(sql: str, translator: Translator):
    plan = classify(sql.encode(), translator, user="u1")
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
    action = only_action(f"copy public.t (a, \"B\") from 's3://bkt/data/a_' iam_role '{ROLE}' "
                         "delimiter ',' null as 'NA' gzip ignoreheader 2", translator(bucket))
    assert action.tag == b"COPY"
    # "B" is b: Redshift folds quoted names too while enable_case_sensitive_identifier is off
    assert action.sql.startswith("CALL shiftguard.s3_copy(E'\"public\".\"t\"', ARRAY[E'a', E'b']::pg_catalog.text[]")
    ticket = ticket_of(action.sql)
    assert ticket["files"] == [os.path.realpath(bucket / "data" / "a_00"), os.path.realpath(bucket / "data" / "a_01")]
    assert (ticket["op"], ticket["delimiter"], ticket["null"], ticket["gzip"], ticket["ignoreheader"]) == (
        "read", ",", "NA", True, 2)
    # for this user's session, and the role only if its policies allow the reads
    assert (ticket["user"], ticket["iam_role"], ticket["roles"]) == ("u1", ROLE, [ROLE])


def test_unload_names_redshifts_files_and_makes_no_directory(bucket):
    action = only_action("UNLOAD ('select * from t') TO 's3://bkt/out/v_' IAM_ROLE default", translator(bucket))
    assert action.tag == b"UNLOAD"
    ticket = ticket_of(action.sql)
    assert ticket["file"] == os.path.realpath(bucket) + "/out/v_0000_part_00"
    assert ticket["directory"] == os.path.realpath(bucket) + "/out"
    assert not (bucket / "out").exists()  # made when the statement runs (catalog/s3.sql), not when it is planned
    # bound to the exact query that runs, as printed
    assert ticket["query"] == hashlib.sha256(b"SELECT * FROM t").hexdigest()
    # IAM_ROLE DEFAULT: every role whose policies allow it; the database says which is the default
    assert (ticket["iam_role"], ticket["roles"]) == ("default", [ROLE])
    action = only_action("UNLOAD ('select 1') TO 's3://bkt/out/v_' IAM_ROLE default PARALLEL OFF GZIP CSV HEADER",
                         translator(bucket))
    ticket = ticket_of(action.sql)
    assert (ticket["file"].rsplit("/", 1)[1], ticket["format"], ticket["delimiter"], ticket["header"]) == (
        "v_000.gz", "csv", ",", True)


@pytest.mark.parametrize("sql, sqlstate", [
    ("COPY t FROM 's3://bkt/../x' IAM_ROLE default", "0A000"),
    ("COPY t FROM 's3://bkt//etc/passwd' IAM_ROLE default", "0A000"),
    ("COPY t FROM 's3://other/x' IAM_ROLE default", "58P01"),
    ("COPY t FROM 's3://bkt/nothing' IAM_ROLE default", "58P01"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE default FORMAT AS JSON 'auto'", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE default AVRO 'auto'", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE default MANIFEST", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE default DELIMITER 'ab'", "0A000"),
    ("COPY t FROM 's3://bkt/data/' IAM_ROLE default IGNOREHEADER x", "42601"),
    ("UNLOAD ('select 1; select 2') TO 's3://bkt/x' IAM_ROLE default", "0A000"),
    ("UNLOAD ('select 1 into t2') TO 's3://bkt/x' IAM_ROLE default", "0A000"),
    ("UNLOAD ('update t set a = 1') TO 's3://bkt/x' IAM_ROLE default", "0A000"),
    ("UNLOAD ('select 1') TO 's3://bkt/x' IAM_ROLE default PARQUET", "0A000"),
    ("UNLOAD ('select set_config(''role'', ''x'', false)') TO 's3://bkt/x' IAM_ROLE default", "0A000"),
    ("UNLOAD ('select 1') TO '/tmp/x' IAM_ROLE default", "0A000"),
    # authorization: none, unreadable, or two kinds at once
    ("COPY t FROM 's3://bkt/data/'", "22023"),
    ("UNLOAD ('select 1') TO 's3://bkt/x_'", "22023"),
    ("COPY t FROM 's3://bkt/data/' CREDENTIALS 'aws_access_key_id=x'", "22023"),
    ("COPY t FROM 's3://bkt/data/' CREDENTIALS 'aws_role=x'", "22023"),
    (f"COPY t FROM 's3://bkt/data/' IAM_ROLE '{ROLE}' CREDENTIALS 'aws_iam_role={ROLE}'", "22023"),
    (f"COPY t FROM 's3://bkt/data/' IAM_ROLE '{ROLE}' ACCESS_KEY_ID '{ALICE_KEY}' SECRET_ACCESS_KEY 's'", "22023"),
])
def test_refusals(bucket, sql, sqlstate):
    action = classify(sql.encode(), translator(bucket)).actions[0]
    assert action.denial is not None and action.denial.sqlstate == sqlstate, action


def test_without_the_servers_file_functions_it_is_refused(bucket):
    for sql in ("COPY t FROM 's3://bkt/data/' IAM_ROLE default", "UNLOAD ('select 1') TO 's3://bkt/x_' IAM_ROLE default"):
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
        local.target_key("bkt", "up/x_", True, False)


def test_unload_query_keeps_redshift_quoting():
    query, unload = parse_unload(r"UNLOAD ('select * from t where a = \'x\' and b = ''y''') TO 's3://b/p/' "
                                 r"IAM_ROLE 'r' PARALLEL FALSE ALLOWOVERWRITE",
                                 scan(r"UNLOAD ('select * from t where a = \'x\' and b = ''y''') TO 's3://b/p/' "
                                      r"IAM_ROLE 'r' PARALLEL FALSE ALLOWOVERWRITE"))
    assert query == "select * from t where a = 'x' and b = 'y'"
    assert single_select(query) == "SELECT * FROM t WHERE a = 'x' AND b = 'y'"
    assert (unload.target.bucket, unload.target.prefix, unload.options.parallel, unload.options.allowoverwrite) == (
        "b", "p/", False, True)


def s3_refusal(sql: str, bucket) -> str:
    denial = classify(sql.encode(), translator(bucket), user="u1").actions[0].denial
    assert denial is not None and denial.sqlstate == "42501", denial
    return denial.message


@pytest.mark.parametrize("authorization, error", [
    ("ACCESS_KEY_ID 'AKIANOBODY0000000001' SECRET_ACCESS_KEY 'x'", "InvalidAccessKeyId"),
    (f"ACCESS_KEY_ID '{ALICE_KEY}' SECRET_ACCESS_KEY 'not-alices'", "SignatureDoesNotMatch"),
    (f"ACCESS_KEY_ID '{ALICE_KEY}' SECRET_ACCESS_KEY '{ALICE_SECRET}' SESSION_TOKEN 't'", "InvalidToken"),
    (f"CREDENTIALS 'aws_access_key_id={BOB_KEY};aws_secret_access_key={BOB_SECRET}'", "AccessDenied"),
    (f"ACCESS_KEY_ID '{ALICE_KEY}' SECRET_ACCESS_KEY '{ALICE_SECRET}' -- outside data/", "AccessDenied"),
    ("ACCESS_KEY_ID 'ASIAEXAMPLE000000001' SECRET_ACCESS_KEY 'secret-of-ASIAEXAMPLE000000001' "
     "SESSION_TOKEN 'token-of-someone-else'", "InvalidToken"),
    (f"IAM_ROLE 'arn:aws:iam::{ACCOUNT}:role/nothing'", "AccessDenied"),   # its policies allow nothing
    (f"IAM_ROLE 'arn:aws:iam::{ACCOUNT}:role/unknown'", "AccessDenied"),
])
def test_credentials_refused_with_s3s_error(bucket, authorization, error):
    (bucket / "other").mkdir()
    (bucket / "other" / "f").write_text("1|x\n")
    key = "other/" if "outside" in authorization else "data/"
    for sql in (f"COPY t FROM 's3://bkt/{key}' {authorization}",
                f"UNLOAD ('select 1') TO 's3://bkt/{key}x_' {authorization}"):
        message = s3_refusal(sql.replace(" -- outside data/", ""), bucket)
        assert re.fullmatch(rf"S3ServiceException:.*,Status 40[03],Error {error},Rid [0-9A-F]{{16}},CanRetry 1", message)
        assert "secret" not in message and "token-of" not in message  # no secret echoed
    assert not (bucket / "data" / "x_0000_part_00").exists()


def test_keys_of_an_iam_user_whose_policy_allows(bucket):
    for authorization in (f"ACCESS_KEY_ID '{ALICE_KEY}' SECRET_ACCESS_KEY '{ALICE_SECRET}'",
                          f"CREDENTIALS 'aws_access_key_id={ALICE_KEY};aws_secret_access_key={ALICE_SECRET}'"):
        action = only_action(f"COPY t FROM 's3://bkt/data/a_' {authorization}", translator(bucket))
        ticket = ticket_of(action.sql)
        assert "roles" not in ticket and "sts" not in ticket and ticket["user"] == "u1"
        assert ALICE_SECRET not in action.sql  # the secret goes nowhere
    # s3:prefix is the statement's prefix: alice lists data/ only
    assert "AccessDenied" in s3_refusal(f"COPY t FROM 's3://bkt/d' ACCESS_KEY_ID '{ALICE_KEY}' "
                                        f"SECRET_ACCESS_KEY '{ALICE_SECRET}'", bucket)


def test_keys_of_an_sts_session(bucket):
    key = "ASIAEXAMPLE000000001"
    action = only_action(f"UNLOAD ('select 1') TO 's3://bkt/data/s_' CREDENTIALS 'aws_access_key_id={key};"
                         f"aws_secret_access_key=secret-of-{key};token=token-of-{key}'", translator(bucket))
    ticket = ticket_of(action.sql)
    # the database says whether the session is live and whose role it is
    assert (ticket["sts"], ticket["roles"]) == (key, [ROLE])
    assert "secret-of" not in action.sql and "token-of" not in action.sql


def test_copy_grammar_defaults():
    copy = parse_copy(scan("COPY s.\"T\" FROM 's3://b/k' CREDENTIALS AS 'aws_access_key_id=x;aws_secret_access_key=y'"))
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


def test_a_refusal_is_not_kept(bucket):
    """What a COPY is refused for changes (the files under a prefix, say): the classifier's cache
    does not keep the refusal."""
    classifier = Classifier(translator(bucket))
    sql = f"COPY t FROM 's3://bkt/later/' IAM_ROLE '{ROLE}'".encode()
    assert classifier(sql, user="u1").actions[0].denial.sqlstate == "58P01"
    (bucket / "later").mkdir()
    (bucket / "later" / "f").write_text("1|x\n")
    assert classifier(sql, user="u1").actions[0].denial is None


def test_an_unreadable_statement_holding_credentials_is_refused_here(bucket):
    """PostgreSQL would log it with its syntax error: refused by the proxy, it reaches no log."""
    plan = classify(b"COPY t FROM 's3://bkt/data/' ACCESS_KEY_ID 'k' SECRET_ACCESS_KEY 'unterminated",
                    translator(bucket), user="u1")
    (action,) = plan.actions
    assert action.denial is not None and action.denial.sqlstate == "42601"
