"""STS AssumeRole on the API port with real boto3 and the AWS CLI: the role's credentials call the
Redshift API as the role, and its GetClusterCredentialsWithIAM password logs in as IAMR:<role>."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3
import botocore.exceptions
import psycopg
import pytest
from botocore.config import Config as BotoConfig

from proxy.config import AccessKey, Iam, IamRole, IamUser

from ..conftest import ADMIN, unique

ACCOUNT = "123456789012"
CLUSTER = "shiftguard"
ARN = f"arn:aws:redshift:us-east-1:{ACCOUNT}"
ALICE_KEY, ALICE_SECRET = "AKIAALICE000000000001", "alice-secret-access-key-0001"
BOB_KEY, BOB_SECRET = "AKIABOB00000000000001", "bob-secret-access-key-00000001"
ROLE = "tmp_analyst"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
OTHER_ARN = f"arn:aws:iam::{ACCOUNT}:role/tmp_auditor"

MAY_ASSUME = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"}]}
ROLE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:GetClusterCredentialsWithIAM", "Resource": f"{ARN}:dbname:{CLUSTER}/dev"},
    # ${aws:userid} of a role session is AROA...:<session name>: only sessions named ci-* may.
    {"Effect": "Allow", "Action": "redshift:DescribeClusters", "Resource": "*",
     "Condition": {"StringLike": {"aws:userid": "*:ci-*"}}},
]}
# A trust policy document: only alice, and only with the external id.
AUDITOR_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/alice"}, "Action": "sts:AssumeRole",
     "Condition": {"StringEquals": {"sts:ExternalId": "ext-42"}}}]}


@pytest.fixture
def sts_proxy(make_proxy):
    iam = Iam(users=[
        IamUser("alice", [AccessKey(ALICE_KEY, ALICE_SECRET)], policies=[MAY_ASSUME]),
        IamUser("bob", [AccessKey(BOB_KEY, BOB_SECRET)], policies=[MAY_ASSUME]),   # not trusted by the role
    ], roles=[
        IamRole(ROLE, trust=["alice"], policies=[ROLE_POLICY], tags={"RedshiftDbRoles": "tmp_sts_reader"},
                max_session_duration=7200),
        IamRole("tmp_auditor", trust=AUDITOR_TRUST, policies=[]),
        IamRole(ADMIN, trust=["alice"], policies=[ROLE_POLICY]),   # named like the superuser
    ])
    proxy = make_proxy(iam=iam)
    yield proxy
    with proxy.connect() as admin:
        admin.execute(f"DROP USER IF EXISTS {ROLE}")


def sts(proxy, key=ALICE_KEY, secret=ALICE_SECRET, token=None, validate=True):
    return boto3.client("sts", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
                        config=BotoConfig(retries={"max_attempts": 1}, parameter_validation=validate))


def redshift(proxy, credentials, token: str | None = "same"):
    return boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"] if token == "same" else token,
                        config=BotoConfig(retries={"max_attempts": 1}))


def error_code(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_assume_role_then_log_in_as_the_role(sts_proxy):
    table = unique("t")
    with sts_proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (a int)")
        admin.execute(f"INSERT INTO {table} VALUES (7)")
        admin.execute("CREATE ROLE tmp_sts_reader")
        admin.execute(f"GRANT SELECT ON {table} TO ROLE tmp_sts_reader")
    try:
        assumed = sts(sts_proxy).assume_role(RoleArn=ROLE_ARN, RoleSessionName="ci-build-7", DurationSeconds=1800)
        creds = assumed["Credentials"]
        assert creds["AccessKeyId"].startswith("ASIA") and len(creds["AccessKeyId"]) == 20
        assert 1790 < creds["Expiration"].timestamp() - time.time() <= 1805
        user = assumed["AssumedRoleUser"]
        assert user["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/ci-build-7"
        assert user["AssumedRoleId"].startswith("AROA") and user["AssumedRoleId"].endswith(":ci-build-7")
        identity = sts(sts_proxy, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]) \
            .get_caller_identity()
        assert (identity["Arn"], identity["UserId"], identity["Account"]) == (user["Arn"], user["AssumedRoleId"],
                                                                               ACCOUNT)

        api = redshift(sts_proxy, creds)
        assert api.describe_clusters()["Clusters"][0]["ClusterIdentifier"] == CLUSTER  # ${aws:userid} matched
        db = api.get_cluster_credentials_with_iam(DbName="dev", ClusterIdentifier=CLUSTER)
        assert db["DbUser"] == f"IAMR:{ROLE}"
        for sslmode in ("require", "disable"):  # the token over TLS; MD5 over the prefixed name without
            with psycopg.connect(host=sts_proxy.host, port=sts_proxy.port, user=db["DbUser"],
                                 password=db["DbPassword"], dbname="dev", sslmode=sslmode,
                                 connect_timeout=10, autocommit=True) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (f"IAMR:{ROLE}",)
                assert conn.execute(f"SELECT a FROM {table}").fetchone() == (7,)  # the RedshiftDbRoles tag
        # The role's policies, not alice's: it may not mint credentials for an arbitrary DbUser.
        assert error_code(lambda: api.get_cluster_credentials(DbUser="admin", ClusterIdentifier=CLUSTER)) \
            == "AccessDenied"
    finally:
        with sts_proxy.connect() as admin:
            admin.execute(f"DROP TABLE {table}")
            admin.execute(f'DROP USER IF EXISTS "IAMR:{ROLE}"')
            admin.execute("DROP ROLE tmp_sts_reader FORCE")


def test_role_session_policy_variables(sts_proxy):
    creds = sts(sts_proxy).assume_role(RoleArn=ROLE_ARN, RoleSessionName="manual")["Credentials"]
    with pytest.raises(botocore.exceptions.ClientError) as info:  # the session name is not ci-*
        redshift(sts_proxy, creds).describe_clusters()
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    assert f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/manual is not authorized" in \
        info.value.response["Error"]["Message"]


def test_who_may_assume(sts_proxy):
    bob = sts(sts_proxy, BOB_KEY, BOB_SECRET)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bob.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    assert info.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: sts:AssumeRole on resource: {ROLE_ARN}")
    alice = sts(sts_proxy)
    # A role that does not exist reads the same as one that does not trust the caller.
    assert error_code(lambda: alice.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/nope",
                                                RoleSessionName="s1")) == "AccessDenied"
    # A trust policy document with a condition on the external id.
    assert error_code(lambda: alice.assume_role(RoleArn=OTHER_ARN, RoleSessionName="s1")) == "AccessDenied"
    assert error_code(lambda: alice.assume_role(RoleArn=OTHER_ARN, RoleSessionName="s1",
                                                ExternalId="wrong")) == "AccessDenied"
    assert alice.assume_role(RoleArn=OTHER_ARN, RoleSessionName="s1", ExternalId="ext-42")[
        "AssumedRoleUser"]["Arn"].endswith(":assumed-role/tmp_auditor/s1")
    # Users without an sts:AssumeRole permission may not, even when trusted: alice's role has none.
    creds = alice.assume_role(RoleArn=ROLE_ARN, RoleSessionName="s1")["Credentials"]
    chained = sts(sts_proxy, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert error_code(lambda: chained.assume_role(RoleArn=OTHER_ARN, RoleSessionName="s2")) == "AccessDenied"


@pytest.mark.parametrize("kwargs, message", [
    ({"DurationSeconds": 600}, "greater than or equal to 900"),
    ({"DurationSeconds": 7201}, "exceeds the MaxSessionDuration"),
    ({"RoleSessionName": "bad name"}, "roleSessionName"),
    ({"RoleArn": "arn:aws:iam::123:role/x"}, "is invalid"),
    ({"Policy": json.dumps(MAY_ASSUME)}, "does not support Policy"),
])
def test_assume_role_validation(sts_proxy, kwargs, message):
    params = {"RoleArn": ROLE_ARN, "RoleSessionName": "s1", **kwargs}
    with pytest.raises(botocore.exceptions.ClientError) as info:
        sts(sts_proxy, validate=False).assume_role(**params)  # what botocore would refuse, too
    assert info.value.response["Error"]["Code"] == "ValidationError"
    assert message in info.value.response["Error"]["Message"]


def test_session_token_must_match(sts_proxy):
    creds = sts(sts_proxy).assume_role(RoleArn=ROLE_ARN, RoleSessionName="ci-1")["Credentials"]
    for token in (None, creds["SessionToken"][:-4] + "AAAA"):
        assert error_code(lambda: redshift(sts_proxy, creds, token).describe_clusters()) == "InvalidClientTokenId"
        assert error_code(lambda: sts(sts_proxy, creds["AccessKeyId"], creds["SecretAccessKey"], token)
                          .get_caller_identity()) == "InvalidClientTokenId"
    wrong_secret = {**creds, "SecretAccessKey": creds["SecretAccessKey"][:-4] + "AAAA"}
    assert error_code(lambda: redshift(sts_proxy, wrong_secret).describe_clusters()) == "SignatureDoesNotMatch"
    assert redshift(sts_proxy, creds).describe_clusters()["Clusters"]


def test_expired_session(sts_proxy, postgres):
    creds = sts(sts_proxy).assume_role(RoleArn=ROLE_ARN, RoleSessionName="ci-1", DurationSeconds=900)["Credentials"]
    api = redshift(sts_proxy, creds)
    assert api.describe_clusters()["Clusters"]
    with postgres.connect() as direct:  # fifteen minutes later
        direct.execute("UPDATE shiftguard_rows.sts_sessions SET expires = now() - interval '1 second' "
                       "WHERE access_key_id = %s", (creds["AccessKeyId"],))
    with pytest.raises(botocore.exceptions.ClientError) as info:
        api.describe_clusters()
    assert info.value.response["Error"]["Code"] == "ExpiredToken"
    assert info.value.response["Error"]["Message"] == "The security token included in the request is expired"
    assert error_code(lambda: sts(sts_proxy, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
                      .get_caller_identity()) == "ExpiredToken"


def test_sessions_are_shared_by_proxies_on_one_backend(sts_proxy, make_proxy):
    creds = sts(sts_proxy).assume_role(RoleArn=ROLE_ARN, RoleSessionName="ci-1")["Credentials"]
    other = make_proxy(iam=sts_proxy.config.iam)
    assert redshift(other, creds).describe_clusters()["Clusters"]


def test_aws_cli_assume_role(sts_proxy):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ALICE_KEY, "AWS_SECRET_ACCESS_KEY": ALICE_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_SESSION_TOKEN", None)
    endpoint = f"http://127.0.0.1:{sts_proxy.api_port}"
    result = subprocess.run([sys.executable, "-m", "awscli", "sts", "assume-role", "--endpoint-url", endpoint,
                             "--role-arn", ROLE_ARN, "--role-session-name", "ci-cli"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    creds = json.loads(result.stdout)["Credentials"]
    env.update({"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                "AWS_SESSION_TOKEN": creds["SessionToken"]})
    result = subprocess.run([sys.executable, "-m", "awscli", "redshift", "get-cluster-credentials-with-iam",
                             "--endpoint-url", endpoint, "--cluster-identifier", CLUSTER, "--db-name", "dev"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["DbUser"] == f"IAMR:{ROLE}"
    denied = subprocess.run([sys.executable, "-m", "awscli", "sts", "assume-role", "--endpoint-url", endpoint,
                             "--role-arn", ROLE_ARN, "--role-session-name", "x2"],
                            capture_output=True, text=True, env={**env, "AWS_ACCESS_KEY_ID": BOB_KEY,
                                                                 "AWS_SECRET_ACCESS_KEY": BOB_SECRET,
                                                                 "AWS_SESSION_TOKEN": ""}, timeout=60)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr


def test_a_role_named_like_a_superuser_is_its_own_user(sts_proxy):
    """IAMR:<role> is a database user of that very name (Redshift's), never the user <role>."""
    creds = sts(sts_proxy).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{ADMIN}",
                                       RoleSessionName="ci-1")["Credentials"]
    db = redshift(sts_proxy, creds).get_cluster_credentials_with_iam(DbName="dev", ClusterIdentifier=CLUSTER)
    assert db["DbUser"] == f"IAMR:{ADMIN}"
    try:
        with psycopg.connect(host=sts_proxy.host, port=sts_proxy.port, user=db["DbUser"], password=db["DbPassword"],
                             dbname="dev", sslmode="require", connect_timeout=10, autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (f"IAMR:{ADMIN}",)
            assert conn.execute("SELECT usesuper FROM pg_user WHERE usename = current_user").fetchone() == (False,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE USER not_allowed PASSWORD 'Secret123'")
        # A token recorded before tokens said whom they log in as (an upgrade) is the same.
        with sts_proxy.connect() as admin:
            admin.execute("UPDATE shiftguard_rows.iam_tokens SET login_as = NULL WHERE db_user = %s", (db["DbUser"],))
        with psycopg.connect(host=sts_proxy.host, port=sts_proxy.port, user=db["DbUser"], password=db["DbPassword"],
                             dbname="dev", sslmode="require", connect_timeout=10, autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (f"IAMR:{ADMIN}",)
    finally:
        with sts_proxy.connect() as admin:
            admin.execute(f'DROP USER IF EXISTS "IAMR:{ADMIN}"')
