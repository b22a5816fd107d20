"""The Redshift API with real boto3, the AWS CLI and redshift_connector's IAM login; temporary
credentials as passwords through the proxy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import boto3
import botocore.exceptions
import psycopg
import pytest
import redshift_connector
from botocore.config import Config as BotoConfig

from proxy.config import AccessKey, Iam, IamGroup, IamUser
from proxy.policy.identifiers import short_name

from ..conftest import unique, wait_for

ACCOUNT = "123456789012"
CLUSTER = "shiftguard"
ARN = f"arn:aws:redshift:us-east-1:{ACCOUNT}"
ALICE_KEY, ALICE_SECRET = "AKIAALICE000000000001", "alice-secret-access-key-0001"
BOB_KEY, BOB_SECRET = "AKIABOB00000000000001", "bob-secret-access-key-00000001"
CAROL_KEY, CAROL_SECRET = "AKIACAROL000000000001", "carol-secret-access-key-000001"

ALICE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["redshift:GetClusterCredentials", "redshift:CreateClusterUser"],
     "Resource": [f"{ARN}:dbuser:{CLUSTER}/tmp_*", f"{ARN}:dbname:{CLUSTER}/dev"]},
    {"Effect": "Allow", "Action": "redshift:JoinGroup", "Resource": f"{ARN}:dbgroup:{CLUSTER}/readers"},
    {"Effect": "Allow", "Action": ["redshift:DescribeClusters", "redshift:GetClusterCredentialsWithIAM"],
     "Resource": "*"},
    {"Effect": "Deny", "Action": "redshift:GetClusterCredentials", "Resource": f"{ARN}:dbuser:{CLUSTER}/tmp_forbidden"},
]}
LOOPBACK_ONLY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:*", "Resource": "*",
     "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}


@pytest.fixture
def iam_proxy(make_proxy):
    iam = Iam(users=[
        IamUser("alice", [AccessKey(ALICE_KEY, ALICE_SECRET)], groups=["api-users"], tags={"RedshiftDbRoles": "tmp_reader_role"}),
        IamUser("bob", [AccessKey(BOB_KEY, BOB_SECRET)]),            # no policy: everything denied
        IamUser("carol", [AccessKey(CAROL_KEY, CAROL_SECRET)], policies=[LOOPBACK_ONLY]),
    ], groups=[IamGroup("api-users", [ALICE_POLICY])])
    return make_proxy(iam=iam)


def client(proxy, key=ALICE_KEY, secret=ALICE_SECRET):
    return boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=BotoConfig(retries={"max_attempts": 1}))


@pytest.fixture
def world(iam_proxy):
    table = unique("t")
    with iam_proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (a int)")
        admin.execute(f"INSERT INTO {table} VALUES (7)")
        admin.execute("CREATE GROUP readers")
        admin.execute(f"GRANT SELECT ON {table} TO GROUP readers")
    yield table
    with iam_proxy.connect() as admin:
        admin.execute(f"DROP TABLE {table}")
        for (name,) in admin.execute("SELECT usename FROM pg_user WHERE usename LIKE 'tmp\\_%' OR usename = 'alice'"):
            admin.execute(f'DROP USER "{name}"')
        admin.execute("DROP GROUP readers")


def login(proxy, user: str, password: str, sslmode: str = "require") -> psycopg.Connection:
    return psycopg.connect(host=proxy.host, port=proxy.port, user=user, password=password, dbname="dev",
                           sslmode=sslmode, connect_timeout=10, autocommit=True)


def test_get_cluster_credentials_auto_create_and_groups(iam_proxy, world):
    name = unique("tmp")
    creds = client(iam_proxy).get_cluster_credentials(DbUser=name, DbName="dev", ClusterIdentifier=CLUSTER,
                                                      AutoCreate=True, DbGroups=["readers"], DurationSeconds=900)
    assert creds["DbUser"] == f"IAMA:{name}"
    assert creds["Expiration"].tzinfo is not None
    remaining = creds["Expiration"].timestamp() - time.time()
    assert 880 < remaining <= 905
    for sslmode in ("require", "disable"):  # cleartext token over TLS; MD5 without
        with login(iam_proxy, creds["DbUser"], creds["DbPassword"], sslmode) as conn:
            assert conn.execute("SELECT current_user, session_user").fetchone() == (name, name)
            assert conn.execute(f"SELECT a FROM {world}").fetchone() == (7,)  # joined readers
    with iam_proxy.connect() as admin:  # created with PASSWORD DISABLE
        assert admin.execute("SELECT passwd FROM pg_user WHERE usename = %s", (name,)).fetchone() == ("********",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(iam_proxy, name, creds["DbPassword"])  # not a password of the user itself


def test_missing_user_without_auto_create_fails_at_login(iam_proxy, world):
    creds = client(iam_proxy).get_cluster_credentials(DbUser=unique("tmp"), ClusterIdentifier=CLUSTER)
    assert creds["DbUser"].startswith("IAM:")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(iam_proxy, creds["DbUser"], creds["DbPassword"])


def test_refused_tokens(iam_proxy, world):
    api = client(iam_proxy)
    name = unique("tmp")
    creds = api.get_cluster_credentials(DbUser=name, DbName="dev", ClusterIdentifier=CLUSTER, AutoCreate=True)
    token = creds["DbPassword"]
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    import base64

    none_alg = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=") + f".{payload}."
    other = api.get_cluster_credentials(DbUser=unique("tmp"), DbName="dev", ClusterIdentifier=CLUSTER, AutoCreate=True)
    for user, password in ((creds["DbUser"], tampered), (creds["DbUser"], none_alg),
                           (creds["DbUser"], other["DbPassword"]),          # another user's token
                           (f"IAM:{name}", token)):                         # another prefix
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            login(iam_proxy, user, password)
    with pytest.raises(psycopg.OperationalError):  # a token for dev, used for another database
        psycopg.connect(host=iam_proxy.host, port=iam_proxy.port, user=creds["DbUser"], password=token,
                        dbname="postgres", sslmode="require", connect_timeout=10)
    with login(iam_proxy, creds["DbUser"], token):
        pass
    assert iam_proxy.call(iam_proxy.proxy.catalog.revoke_tokens(db_user=creds["DbUser"])) == 1
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(iam_proxy, creds["DbUser"], token)


@pytest.mark.parametrize("call, code", [
    (lambda c: c.get_cluster_credentials(DbUser="tmp_x", ClusterIdentifier="nope"), "ClusterNotFound"),
    (lambda c: c.get_cluster_credentials(DbUser="tmp_x", ClusterIdentifier=CLUSTER, DurationSeconds=60),
     "InvalidParameterValue"),
    (lambda c: c.get_cluster_credentials(DbUser="9bad", ClusterIdentifier=CLUSTER), "InvalidParameterValue"),
    (lambda c: c.get_cluster_credentials(DbUser="admin", ClusterIdentifier=CLUSTER), "AccessDenied"),
    (lambda c: c.get_cluster_credentials(DbUser="tmp_forbidden", ClusterIdentifier=CLUSTER), "AccessDenied"),
    (lambda c: c.get_cluster_credentials(DbUser="tmp_x", ClusterIdentifier=CLUSTER, DbGroups=["admins"]), "AccessDenied"),
    (lambda c: c.get_cluster_credentials(DbUser="tmp_x", DbName="prod", ClusterIdentifier=CLUSTER), "AccessDenied"),
    (lambda c: c.describe_clusters(ClusterIdentifier="nope"), "ClusterNotFound"),
    (lambda c: c.describe_custom_domain_associations(CustomDomainName="localhost"), "CustomDomainAssociationNotFoundFault"),
])
def test_api_errors_are_aws_shaped(iam_proxy, call, code):
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(client(iam_proxy))
    assert info.value.response["Error"]["Code"] == code


def test_modelled_exception_and_explicit_deny_message(iam_proxy):
    api = client(iam_proxy)
    with pytest.raises(api.exceptions.ClusterNotFoundFault):
        api.get_cluster_credentials(DbUser="tmp_x", ClusterIdentifier="nope")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        api.get_cluster_credentials(DbUser="tmp_forbidden", ClusterIdentifier=CLUSTER)
    assert info.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: redshift:GetClusterCredentials "
        f"on resource: {ARN}:dbuser:{CLUSTER}/tmp_forbidden with an explicit deny")


@pytest.mark.parametrize("key, secret, code", [
    (BOB_KEY, BOB_SECRET, "AccessDenied"),                       # no policy: denied by default
    (CAROL_KEY, CAROL_SECRET, "AccessDenied"),                   # aws:SourceIp is 127.0.0.1, not 10/8
    ("AKIAUNKNOWN000000001", "whatever-secret-000000", "InvalidClientTokenId"),
    (ALICE_KEY, "not-alices-secret-000000000", "SignatureDoesNotMatch"),
])
def test_who_may_call(iam_proxy, key, secret, code):
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client(iam_proxy, key, secret).describe_clusters()
    assert info.value.response["Error"]["Code"] == code


def test_describe_clusters_points_at_the_proxy(iam_proxy):
    (cluster,) = client(iam_proxy).describe_clusters()["Clusters"]
    assert cluster["ClusterIdentifier"] == CLUSTER
    assert (cluster["Endpoint"]["Address"], cluster["Endpoint"]["Port"]) == (iam_proxy.host, iam_proxy.port)


def test_stale_signature_is_refused(iam_proxy):
    import datetime
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://127.0.0.1:{iam_proxy.api_port}/"
    stamp = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    request = AWSRequest(method="POST", url=url, data=b"Action=DescribeClusters&Version=2012-12-01",
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                                  "X-Amz-Date": stamp, "Host": f"127.0.0.1:{iam_proxy.api_port}"})
    request.context["timestamp"] = stamp  # signed correctly, twenty minutes ago
    signer = SigV4Auth(Credentials(ALICE_KEY, ALICE_SECRET), "redshift", "us-east-1")
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    request.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={ALICE_KEY}/{stamp[:8]}/us-east-1/redshift/"
                                        f"aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(url, data=request.body, headers=dict(request.headers)), timeout=5)
    assert info.value.code == 400 and b"<Code>RequestExpired</Code>" in info.value.read()


def test_aws_cli(iam_proxy, world):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ALICE_KEY, "AWS_SECRET_ACCESS_KEY": ALICE_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_REDSHIFT": f"http://127.0.0.1:{iam_proxy.api_port}"}
    name = unique("tmp")
    result = subprocess.run([sys.executable, "-m", "awscli", "redshift", "get-cluster-credentials", "--db-user", name,
                             "--cluster-identifier", CLUSTER, "--auto-create", "--db-name", "dev"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    creds = json.loads(result.stdout)
    assert creds["DbUser"] == f"IAMA:{name}" and creds["Expiration"].endswith("Z")
    with login(iam_proxy, creds["DbUser"], creds["DbPassword"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
    denied = subprocess.run([sys.executable, "-m", "awscli", "redshift", "get-cluster-credentials", "--db-user",
                             "admin", "--cluster-identifier", CLUSTER], capture_output=True, text=True, env=env,
                            timeout=60)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr


def test_redshift_connector_iam_login(iam_proxy, world, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("SSL_CERT_FILE", str(Path(iam_proxy.config.data_dir) / "tls" / "server.crt"))
    name = unique("tmp")
    conn = redshift_connector.connect(
        iam=True, db_user=name, db_groups=["readers"], auto_create=True, cluster_identifier=CLUSTER,
        region="us-east-1", access_key_id=ALICE_KEY, secret_access_key=ALICE_SECRET,
        endpoint_url=f"http://127.0.0.1:{iam_proxy.api_port}", host=iam_proxy.host, port=iam_proxy.port,
        database="dev", ssl=True, sslmode="verify-ca", iam_disable_cache=True, timeout=20)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user")
        assert cursor.fetchall()[0][0] == name
        cursor.execute(f"SELECT a FROM {world}")  # the DB user's own privileges (through readers)
        assert cursor.fetchall()[0][0] == 7
    finally:
        conn.close()


def test_get_cluster_credentials_with_iam_maps_the_caller(iam_proxy, world):
    with iam_proxy.connect() as admin:
        admin.execute("CREATE ROLE tmp_reader_role")
        admin.execute(f"GRANT SELECT ON {world} TO ROLE tmp_reader_role")
    try:
        creds = client(iam_proxy).get_cluster_credentials_with_iam(DbName="dev", ClusterIdentifier=CLUSTER)
        assert creds["DbUser"] == "IAM:alice"
        with iam_proxy.connect() as admin:
            admin.execute("CREATE USER alice PASSWORD 'Secret123'")  # another user: not the IAM user's
        with pytest.raises(psycopg.OperationalError):  # no auto-create: the user "IAM:alice" must exist
            login(iam_proxy, creds["DbUser"], creds["DbPassword"])
        with iam_proxy.connect() as admin:
            admin.execute('CREATE USER "IAM:alice" PASSWORD DISABLE')
        with login(iam_proxy, creds["DbUser"], creds["DbPassword"]) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("IAM:alice",)
            assert conn.execute(f"SELECT a FROM {world}").fetchone() == (7,)  # the RedshiftDbRoles tag
    finally:
        with iam_proxy.connect() as admin:
            admin.execute('DROP USER IF EXISTS alice, "IAM:alice"')
            admin.execute("DROP ROLE tmp_reader_role FORCE")


def test_a_db_user_of_64_bytes_is_one_user_with_a_short_role_name(iam_proxy, postgres):
    """DbUser takes 64 characters, one more than PostgreSQL keeps: the user's role has the short
    name (policy/identifiers.py), and every login with new credentials is that same user."""
    name = unique("tmp") + "x" * 64
    name = name[:64]
    role = short_name(name)
    assert role != name
    for _ in range(2):
        creds = client(iam_proxy).get_cluster_credentials(DbUser=name, DbName="dev", ClusterIdentifier=CLUSTER,
                                                          AutoCreate=True)
        with login(iam_proxy, creds["DbUser"], creds["DbPassword"]) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    with postgres.connect() as direct:
        assert direct.execute("SELECT count(*) FROM shiftguard_rows.users WHERE name = %s", (role,)).fetchone() == (1,)
    with iam_proxy.connect() as admin:
        admin.execute(f'DROP USER "{name}"')  # the long name names it


def test_token_login_through_raw_md5_uses_the_prefixed_name(iam_proxy, world):
    from proxy.protocol import messages as m
    from proxy.protocol.auth import md5_response, redshift_md5

    creds = client(iam_proxy).get_cluster_credentials(DbUser=unique("tmp"), ClusterIdentifier=CLUSTER, AutoCreate=True)
    with socket.create_connection((iam_proxy.host, iam_proxy.port), timeout=10) as sock:
        sock.sendall(m.startup_message({"user": creds["DbUser"], "database": "dev"}))
        salt = sock.recv(100)[9:13]
        sock.sendall(m.password_message(md5_response(redshift_md5(creds["DbPassword"], creds["DbUser"]), salt) + b"\0"))
        assert sock.recv(100)[:9] == m.auth_ok()


def test_token_refusal_reasons_reach_the_connection_log(iam_proxy, world):
    """Why each token was refused is in the connection log's authentication failure records
    (stl_connection_log.reason), while the client gets the same 28P01 and no record holds the
    token."""
    import datetime
    from pathlib import Path

    from proxy.iam.tokens import TokenAuthority, load_or_make_key

    api = client(iam_proxy)
    name = unique("tmp")
    creds = api.get_cluster_credentials(DbUser=name, DbName="dev", ClusterIdentifier=CLUSTER, AutoCreate=True)
    user, token = creds["DbUser"], creds["DbPassword"]
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    authority = iam_proxy.proxy.context.tokens
    expired = authority.mint("IAMA", name, "dev", [], 900,
                             now=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)).password
    key = load_or_make_key(Path(iam_proxy.config.data_dir) / "tokens" / "signing.pem")
    other_cluster = TokenAuthority(key, "another-cluster").mint("IAMA", name, "dev", [], 900).password
    other_user = api.get_cluster_credentials(DbUser=unique("tmp"), DbName="dev", ClusterIdentifier=CLUSTER,
                                             AutoCreate=True)["DbPassword"]
    refused = [tampered, expired, other_cluster, other_user]
    for password in refused:
        with pytest.raises(psycopg.OperationalError, match=f'password authentication failed for user "{user}"$'):
            login(iam_proxy, user, password)
    assert iam_proxy.call(iam_proxy.proxy.catalog.revoke_tokens(db_user=user)) == 1
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(iam_proxy, user, token)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(iam_proxy, user, "not-a-token", sslmode="disable")  # MD5: no token matches

    expected = ["invalid token: bad signature (tampered with, or signed by another key)", "token expired", "token for another cluster",
                "token for another user", "token revoked or unknown", "no live token matches"]
    with iam_proxy.connect() as admin:
        def failures():
            rows = admin.execute("SELECT authmethod, reason FROM stl_connection_log WHERE username = %s "
                                 "AND event = 'authentication failure' ORDER BY recordtime", (user,)).fetchall()
            return rows if len(rows) == len(expected) else None
        rows = wait_for(failures)
        assert [(method.strip(), reason) for method, reason in rows] == [("IAM AssumeUser", r) for r in expected]
        stored = admin.execute("SELECT string_agg(s::text, '') FROM stl_connection_log s WHERE username = %s",
                               (user,)).fetchone()[0]
    audit_files = "".join(p.read_text() for p in (Path(iam_proxy.config.data_dir) / "audit").glob("*"))
    for secret in refused + [token]:
        assert secret not in stored and secret not in audit_files
        assert signature_of(secret) not in stored and signature_of(secret) not in audit_files


def signature_of(token: str) -> str:
    return token.rsplit(".", 1)[-1]

