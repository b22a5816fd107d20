"""COPY and UNLOAD under IAM, through the proxy with real drivers and boto3: access keys of IAM
users and of STS sessions, IAM roles associated with the cluster, the principals' policies, and
what a user can do with a ticket the proxy signed for someone else's statement (nothing)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

import boto3
import botocore.exceptions
import psycopg
import pytest
from botocore.config import Config as BotoConfig

from proxy.config import AccessKey, Iam, IamRole, IamUser

from ..conftest import USER_PASSWORD, unique

ACCOUNT = "123456789012"
BUCKET = "team-bucket"
ALICE_KEY, ALICE_SECRET = "AKIAALICE00000000001", "alice-secret-access-key-000000000001"
BOB_KEY, BOB_SECRET = "AKIABOB0000000000001", "bob-secret-access-key-00000000000001"
NOBODY_KEY, NOBODY_SECRET = "AKIANOBODY0000000001", "nobody-secret-access-key-0000000001"
READER, WRITER, ORPHAN = (f"arn:aws:iam::{ACCOUNT}:role/{name}" for name in ("s3-reader", "s3-writer", "s3-orphan"))


def own_prefix(user: str) -> dict:
    """The usual per-user home in a shared bucket: objects under <user>/, listing only there."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::{BUCKET}/{user}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}",
         "Condition": {"StringLike": {"s3:prefix": f"{user}/*"}}},
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"}]}


READ_ALL = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"],
     "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
WRITE_ALL = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:PutObject"],
     "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
OPERATOR_KEY, OPERATOR_SECRET = "AKIAOPERATOR00000001", "operator-secret-access-key-000000001"
OPERATE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["redshift:ModifyClusterIamRoles", "redshift:DescribeClusters"], "Resource": "*"},
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/s3-*"}]}
IAM = Iam(users=[IamUser("operator", [AccessKey(OPERATOR_KEY, OPERATOR_SECRET)], policies=[OPERATE]),
                 IamUser("alice", [AccessKey(ALICE_KEY, ALICE_SECRET)], policies=[own_prefix("alice")]),
                 IamUser("bob", [AccessKey(BOB_KEY, BOB_SECRET)], policies=[own_prefix("bob")]),
                 IamUser("nobody", [AccessKey(NOBODY_KEY, NOBODY_SECRET)])],
          roles=[IamRole("s3-reader", trust=["alice"], policies=[READ_ALL]),
                 IamRole("s3-writer", trust=["alice"], policies=[WRITE_ALL]),
                 IamRole("s3-orphan", trust=["alice"], policies=[READ_ALL, WRITE_ALL])])


def keys(key: str, secret: str, token: str | None = None) -> str:
    return f"ACCESS_KEY_ID '{key}' SECRET_ACCESS_KEY '{secret}'" + (f" SESSION_TOKEN '{token}'" if token else "")


ALICE, BOB = keys(ALICE_KEY, ALICE_SECRET), keys(BOB_KEY, BOB_SECRET)


@pytest.fixture
def s3proxy(make_proxy, bucket, postgres):
    proxy = make_proxy(s3={BUCKET: str(bucket)}, iam=IAM, cluster__iam_roles=[READER, WRITER],
                       cluster__default_iam_role=READER)
    yield proxy
    with proxy.connect() as admin:
        admin.execute("GRANT ASSUMEROLE ON ALL TO PUBLIC FOR ALL")
    with postgres.connect() as direct:  # the next proxy starts from its configuration's roles
        direct.execute("DELETE FROM shiftguard_rows.settings WHERE name = 'iam_roles_config'")


@pytest.fixture
def admin(s3proxy):
    with s3proxy.connect() as conn:
        yield conn


@pytest.fixture
def proxy(s3proxy):
    """The proxy of conftest's new_user: this module's (another would seed its own IAM roles)."""
    return s3proxy


def table_with_rows(admin, grantee: str | None = None) -> str:
    t = unique("t")
    admin.execute(f"CREATE TABLE {t} (id int, v varchar(40))")
    admin.execute(f"INSERT INTO {t} VALUES (1, 'one'), (2, 'two')")
    if grantee:
        admin.execute(f"GRANT SELECT, INSERT ON {t} TO {grantee}")
    return t


def s3_error(call, code: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        call()
    message = info.value.diag.message_primary
    assert re.fullmatch(rf"S3ServiceException:.+,Status 40[03],Error {code},Rid [0-9A-F]{{16}},CanRetry 1", message), message
    return message


# --------------------------------------------------------------------------- access keys


def test_keys_reach_their_own_prefix_only(s3proxy, admin, bucket, new_user):
    """The issue's hole: with ASSUMEROLE revoked from PUBLIC, made-up keys, or one IAM user's keys,
    read or overwrite nothing of another's."""
    name, _ = new_user()
    admin.execute("REVOKE ASSUMEROLE ON ALL FROM PUBLIC FOR ALL")
    t = table_with_rows(admin, name)
    with s3proxy.connect(name, USER_PASSWORD) as conn:
        conn.execute(f"UNLOAD ('select * from {t} order by id') TO 's3://{BUCKET}/alice/{t}_' {ALICE} PARALLEL OFF")
        assert (bucket / "alice" / f"{t}_000").read_text() == "1|one\n2|two\n"
        conn.execute(f"COPY {t} FROM 's3://{BUCKET}/alice/{t}_' {ALICE}")
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (4,)
        # bob's keys neither read alice's files nor overwrite them
        s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/alice/{t}_' {BOB}"), "AccessDenied")
        s3_error(lambda: conn.execute(f"UNLOAD ('select 9, ''mine''') TO 's3://{BUCKET}/alice/{t}_' {BOB} "
                                      f"PARALLEL OFF ALLOWOVERWRITE"), "AccessDenied")
        # keys no IAM user has, a wrong secret, an IAM user whose policies allow no S3
        s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/alice/{t}_' ACCESS_KEY_ID 'x' "
                                      f"SECRET_ACCESS_KEY 'y'"), "InvalidAccessKeyId")
        message = s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/alice/{t}_' "
                                                f"{keys(ALICE_KEY, 'a-guess')}"), "SignatureDoesNotMatch")
        assert "a-guess" not in message
        s3_error(lambda: conn.execute(f"UNLOAD ('select 1') TO 's3://{BUCKET}/alice/{t}_' "
                                      f"CREDENTIALS 'aws_access_key_id={NOBODY_KEY};"
                                      f"aws_secret_access_key={NOBODY_SECRET}' ALLOWOVERWRITE"), "AccessDenied")
        # and no listing of another's prefix, so no telling whether anything is there
        s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/bob/nothing-here' {ALICE}"), "AccessDenied")
    assert (bucket / "alice" / f"{t}_000").read_text() == "1|one\n2|two\n"


def test_no_authorization_is_refused(admin, bucket):
    t = table_with_rows(admin)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="Invalid credentials"):
        admin.execute(f"UNLOAD ('select 1') TO 's3://{BUCKET}/alice/{t}_'")


# --------------------------------------------------------------------------- IAM roles


def test_iam_role_must_be_associated_assumable_and_allowed(s3proxy, admin, bucket, new_user):
    name, _ = new_user()
    t = table_with_rows(admin, name)
    with s3proxy.connect(name, USER_PASSWORD) as conn:
        conn.execute(f"UNLOAD ('select * from {t}') TO 's3://{BUCKET}/roles/{t}_' IAM_ROLE '{WRITER}'")
        conn.execute(f"COPY {t} FROM 's3://{BUCKET}/roles/{t}_' IAM_ROLE default")  # the default: the reader
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (4,)
        # the reader's policies allow no writing, the writer's no reading
        s3_error(lambda: conn.execute(f"UNLOAD ('select 1') TO 's3://{BUCKET}/roles/x_' IAM_ROLE '{READER}'"),
                 "AccessDenied")
        s3_error(lambda: conn.execute(f"UNLOAD ('select 1') TO 's3://{BUCKET}/roles/x_' IAM_ROLE default"),
                 "AccessDenied")
        s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/roles/{t}_' "
                                      f"CREDENTIALS 'aws_iam_role={WRITER}'"), "AccessDenied")
        # a role the cluster is not associated with, whatever its policies allow
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match=rf"User arn:aws:redshift:us-east-1:{ACCOUNT}:dbuser:shiftguard/{name} is not "
                                 rf"authorized to assume IAM Role {ORPHAN}"):
            conn.execute(f"COPY {t} FROM 's3://{BUCKET}/roles/{t}_' IAM_ROLE '{ORPHAN}'")
    admin.execute("REVOKE ASSUMEROLE ON ALL FROM PUBLIC FOR ALL")
    admin.execute(f"GRANT ASSUMEROLE ON '{WRITER}' TO {name} FOR UNLOAD")
    with s3proxy.connect(name, USER_PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege,
                           match=f'User {name} does not have ASSUMEROLE permission on IAM role "{READER}" for COPY'):
            conn.execute(f"COPY {t} FROM 's3://{BUCKET}/roles/{t}_' IAM_ROLE '{READER}'")
        conn.execute(f"UNLOAD ('select 1') TO 's3://{BUCKET}/roles/{t}_' IAM_ROLE '{WRITER}' ALLOWOVERWRITE")


# --------------------------------------------------------------------------- STS sessions


def sts_session(proxy, role: str) -> dict:
    sts = boto3.client("sts", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                       aws_access_key_id=ALICE_KEY, aws_secret_access_key=ALICE_SECRET,
                       config=BotoConfig(retries={"max_attempts": 1}))
    return sts.assume_role(RoleArn=role, RoleSessionName="etl-1")["Credentials"]


def test_sts_session_keys_act_as_the_role(s3proxy, admin, bucket, postgres, new_user):
    name, _ = new_user()
    t = table_with_rows(admin, name)
    (bucket / "sts").mkdir(exist_ok=True)
    (bucket / "sts" / f"{t}.txt").write_text("3|three\n")
    reader = sts_session(s3proxy, READER)
    session = keys(reader["AccessKeyId"], reader["SecretAccessKey"], reader["SessionToken"])
    with s3proxy.connect(name, USER_PASSWORD) as conn:
        conn.execute(f"COPY {t} FROM 's3://{BUCKET}/sts/{t}.txt' {session}")
        conn.execute(f"COPY {t} FROM 's3://{BUCKET}/sts/{t}.txt' CREDENTIALS 'aws_access_key_id="
                     f"{reader['AccessKeyId']};aws_secret_access_key={reader['SecretAccessKey']};"
                     f"token={reader['SessionToken']}'")
        assert conn.execute(f"SELECT count(*) FROM {t} WHERE id = 3").fetchone() == (2,)
        # the reader role's policies allow no writing
        s3_error(lambda: conn.execute(f"UNLOAD ('select 1') TO 's3://{BUCKET}/sts/{t}_' {session}"), "AccessDenied")
        # the session's keys without its token, or with another's
        s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/sts/{t}.txt' "
                                      f"{keys(reader['AccessKeyId'], reader['SecretAccessKey'])}"), "InvalidToken")
        writer = sts_session(s3proxy, WRITER)
        s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/sts/{t}.txt' "
                                      f"{keys(reader['AccessKeyId'], reader['SecretAccessKey'], writer['SessionToken'])}"),
                 "InvalidToken")
        # an expired session
        with postgres.connect() as direct:
            direct.execute("UPDATE shiftguard_rows.sts_sessions SET expires = now() - interval '1 second' "
                           "WHERE access_key_id = %s", (reader["AccessKeyId"],))
        s3_error(lambda: conn.execute(f"COPY {t} FROM 's3://{BUCKET}/sts/{t}.txt' {session}"), "ExpiredToken")


# --------------------------------------------------------------------------- tickets


def test_a_ticket_is_good_for_its_own_statement_only(s3proxy, admin, bucket, new_user, postgres):
    """UNLOAD ('select current_query()') writes the statement that ran, ticket and signature
    included: the user has a ticket in hand. With other SQL, by the file functions directly, or
    by another user, it does nothing."""
    (name, _), (other, _) = new_user(), new_user()
    secret = unique("secret")
    admin.execute(f"CREATE TABLE {secret} (v varchar(40))")
    admin.execute(f"INSERT INTO {secret} VALUES ('launch codes')")
    admin.execute(f"GRANT SELECT ON {secret} TO {name}")
    prefix = f"tickets/{name}_"
    with s3proxy.connect(name, USER_PASSWORD) as conn:
        conn.execute(f"UNLOAD ('select pg_catalog.current_query()') TO 's3://{BUCKET}/{prefix}' IAM_ROLE '{WRITER}' "
                     f"PARALLEL OFF ALLOWOVERWRITE CSV")
    (call,) = next(csv.reader(io.StringIO((bucket / f"{prefix}000").read_text())))
    # the CALL's E'...' constants: the query, the ticket, its signature
    ticket, signature = (re.sub(r"\\(.)", r"\1", text).replace("''", "'")
                         for text in re.findall(r"E'((?:[^'\\]|''|\\.)*)'", call)[1:3])
    assert json.loads(ticket)["user"] == name and re.fullmatch(r"\d+:[0-9a-f]{64}", signature)
    with s3proxy.connect(name, USER_PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CALL shiftguard.s3_unload(%s, %s, %s, 'public')", (f"SELECT v FROM {secret}", ticket, signature))
    # The same on the backend itself, as the user's role (what the proxy would not pass is still refused).
    with postgres.connect() as direct:
        direct.execute(f"SET SESSION AUTHORIZATION {name}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not a valid S3 ticket for this query"):
            direct.execute("CALL shiftguard.s3_unload(%s, %s, %s, 'public')",
                           (f"SELECT v FROM {secret}", ticket, signature))
        direct.execute(f"CREATE TEMP TABLE mine AS SELECT v FROM {secret}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="for shiftguard's own use"):
            direct.execute("SELECT shiftguard.s3_write('pg_temp.mine'::regclass, %s, %s, %s)",
                           ("SELECT pg_catalog.current_query()", ticket, signature))
        direct.execute("RESET SESSION AUTHORIZATION")
        direct.execute(f"SET SESSION AUTHORIZATION {other}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not a valid S3 ticket"):
            direct.execute("CALL shiftguard.s3_unload(%s, %s, %s, 'public')",
                           ("SELECT pg_catalog.current_query()", ticket, signature))
    assert "launch codes" not in (bucket / f"{prefix}000").read_text()


def test_planning_makes_no_directories(s3proxy, admin, bucket, new_user):
    """An UNLOAD that fails (here: the user may not read the table) leaves the bucket as it was."""
    name, _ = new_user()
    t = table_with_rows(admin)
    with s3proxy.connect(name, USER_PASSWORD) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"UNLOAD ('select * from {t}') TO 's3://{BUCKET}/fresh/{t}/deep/x_' IAM_ROLE '{WRITER}'")
    assert not (bucket / "fresh").exists()
    admin.execute(f"UNLOAD ('select * from {t}') TO 's3://{BUCKET}/fresh/{t}/deep/x_' IAM_ROLE '{WRITER}'")
    assert (bucket / "fresh" / t / "deep" / "x_0000_part_00").read_text() == "1|one\n2|two\n"


# --------------------------------------------------------------------------- ModifyClusterIamRoles


def redshift_api(proxy, key: str, secret: str):
    return boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=BotoConfig(retries={"max_attempts": 1}))


def api_error(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_modify_cluster_iam_roles_with_boto3_and_the_aws_cli(s3proxy, admin, bucket):
    api = redshift_api(s3proxy, OPERATOR_KEY, OPERATOR_SECRET)
    (cluster,) = api.describe_clusters()["Clusters"]
    assert [(r["IamRoleArn"], r["ApplyStatus"]) for r in cluster["IamRoles"]] == [(READER, "in-sync"), (WRITER, "in-sync")]
    assert cluster["DefaultIamRoleArn"] == READER
    t = table_with_rows(admin)
    copy = f"COPY {t} FROM 's3://{BUCKET}/assoc/{t}_' IAM_ROLE '{ORPHAN}'"
    admin.execute(f"UNLOAD ('select * from {t}') TO 's3://{BUCKET}/assoc/{t}_' IAM_ROLE '{WRITER}'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is not authorized to assume IAM Role"):
        admin.execute(copy)
    cluster = api.modify_cluster_iam_roles(ClusterIdentifier="shiftguard", AddIamRoles=[ORPHAN],
                                           DefaultIamRoleArn=WRITER)["Cluster"]
    assert {r["IamRoleArn"] for r in cluster["IamRoles"]} == {READER, WRITER, ORPHAN}
    assert cluster["DefaultIamRoleArn"] == WRITER
    admin.execute(copy)  # associated now, at once
    admin.execute(f"UNLOAD ('select 1') TO 's3://{BUCKET}/assoc/{t}_' IAM_ROLE default ALLOWOVERWRITE")  # the writer
    # the AWS CLI, as the documentation shows it
    env = {**os.environ, "AWS_ACCESS_KEY_ID": OPERATOR_KEY, "AWS_SECRET_ACCESS_KEY": OPERATOR_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_SESSION_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "awscli", "redshift", "modify-cluster-iam-roles",
                             "--endpoint-url", f"http://127.0.0.1:{s3proxy.api_port}", "--cluster-identifier",
                             "shiftguard", "--remove-iam-roles", ORPHAN],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert {r["IamRoleArn"] for r in json.loads(result.stdout)["Cluster"]["IamRoles"]} == {READER, WRITER}
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is not authorized to assume IAM Role"):
        admin.execute(copy)
    # who may not: no redshift:ModifyClusterIamRoles; no iam:PassRole on the role; a role IAM has not
    alice = redshift_api(s3proxy, ALICE_KEY, ALICE_SECRET)
    assert api_error(lambda: alice.modify_cluster_iam_roles(ClusterIdentifier="shiftguard",
                                                            AddIamRoles=[ORPHAN])) == "AccessDenied"
    assert api_error(lambda: api.modify_cluster_iam_roles(
        ClusterIdentifier="shiftguard", AddIamRoles=[f"arn:aws:iam::{ACCOUNT}:role/admin"])) == "AccessDenied"
    assert api_error(lambda: api.modify_cluster_iam_roles(
        ClusterIdentifier="shiftguard", AddIamRoles=[f"arn:aws:iam::{ACCOUNT}:role/s3-ghost"])) == "InvalidParameterValue"
    assert api_error(lambda: api.modify_cluster_iam_roles(ClusterIdentifier="other",
                                                          AddIamRoles=[ORPHAN])) == "ClusterNotFound"
    assert api_error(lambda: api.modify_cluster_iam_roles(ClusterIdentifier="shiftguard",
                                                          DefaultIamRoleArn=ORPHAN)) == "InvalidParameterValue"
    (cluster,) = api.describe_clusters()["Clusters"]
    assert {r["IamRoleArn"] for r in cluster["IamRoles"]} == {READER, WRITER}
