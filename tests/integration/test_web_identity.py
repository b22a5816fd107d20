"""STS AssumeRoleWithWebIdentity with real boto3: an OIDC token from a configured IAM OIDC provider
(or the local IdP) becomes a role session whose trust policy checks the token's sub and aud; the
session then gets database credentials. Refusals: another audience, expired, another key, an
issuer no provider has, a subject the trust policy does not name."""

from __future__ import annotations

import time

import boto3
import botocore.exceptions
import jwt
import psycopg
import pytest
from botocore.config import Config as BotoConfig

from proxy.config import Iam, IamOidcProvider, IamRole
from proxy.iam.local_idp import OIDC_ISSUER, LocalIdp

ACCOUNT = "123456789012"
CLUSTER = "shiftguard"
ARN = f"arn:aws:redshift:us-east-1:{ACCOUNT}"
LOCAL = OIDC_ISSUER.removeprefix("https://")
CI_ROLE = f"arn:aws:iam::{ACCOUNT}:role/tmp_ci"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/tmp_partner"
PARTNER = "https://token.partner.example"


def trust(provider: str, sub: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"},
         "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"StringEquals": {f"{provider}:aud": "sts.amazonaws.com"},
                       "StringLike": {f"{provider}:sub": sub}}}]}


CI_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:GetClusterCredentialsWithIAM", "Resource": f"{ARN}:dbname:{CLUSTER}/dev"}]}


@pytest.fixture
def partner(tmp_path) -> LocalIdp:
    """Another key pair, the partner's: its JWKS is configured as an IAM OIDC provider."""
    return LocalIdp(tmp_path / "partner", ACCOUNT)


@pytest.fixture
def oidc_proxy(make_proxy, partner):
    iam = Iam(local_idp=True, oidc_providers=[IamOidcProvider(PARTNER.removesuffix("/"), jwks=partner.jwks())],
              roles=[IamRole("tmp_ci", trust=trust(LOCAL, "repo:shop/*"), policies=[CI_POLICY]),
                     IamRole("tmp_partner", trust=trust(PARTNER.removeprefix("https://"), "partner-*"))])
    proxy = make_proxy(iam=iam)
    yield proxy
    with proxy.connect() as admin:
        admin.execute('DROP USER IF EXISTS "IAMR:tmp_ci"')


def sts(proxy):
    return boto3.client("sts", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id="unused", aws_secret_access_key="unused",
                        config=BotoConfig(retries={"max_attempts": 1}))


def assume(proxy, token: str, role: str = CI_ROLE) -> dict:
    return sts(proxy).assume_role_with_web_identity(RoleArn=role, RoleSessionName="build-1", WebIdentityToken=token)


def refusal(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_web_identity_then_log_in(oidc_proxy):
    token = oidc_proxy.proxy.local_idp.oidc_token("repo:shop/api")
    answer = assume(oidc_proxy, token)
    assert answer["SubjectFromWebIdentityToken"] == "repo:shop/api"
    assert (answer["Provider"], answer["Audience"]) == (LOCAL, "sts.amazonaws.com")
    assert answer["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/tmp_ci/build-1"
    creds = answer["Credentials"]
    api = boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{oidc_proxy.api_port}", region_name="us-east-1",
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["SessionToken"])
    db = api.get_cluster_credentials_with_iam(DbName="dev", ClusterIdentifier=CLUSTER)
    with psycopg.connect(host=oidc_proxy.host, port=oidc_proxy.port, user=db["DbUser"], password=db["DbPassword"],
                         dbname="dev", sslmode="require", connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("IAMR:tmp_ci",)


def test_a_configured_provider(oidc_proxy, partner):
    now = int(time.time())
    claims = {"iss": PARTNER, "sub": "partner-7", "aud": "sts.amazonaws.com", "iat": now, "exp": now + 300}
    token = jwt.encode(claims, partner.key, algorithm="RS256", headers={"kid": "local-idp"})
    assert assume(oidc_proxy, token, OTHER_ROLE)["Provider"] == "token.partner.example"
    # Its tokens do not open the local IdP's role: that role trusts another provider.
    assert refusal(lambda: assume(oidc_proxy, token, CI_ROLE)) == "AccessDenied"


def test_refusals(oidc_proxy, partner):
    local = oidc_proxy.proxy.local_idp
    assert refusal(lambda: assume(oidc_proxy, local.oidc_token("repo:other/x"))) == "AccessDenied"   # sub
    assert refusal(lambda: assume(oidc_proxy, local.oidc_token("repo:shop/api", audience="elsewhere"))) \
        == "InvalidIdentityToken"
    assert refusal(lambda: assume(oidc_proxy, local.oidc_token("repo:shop/api", lifetime=-600))) \
        == "ExpiredTokenException"
    # The partner's key signing a token that claims the local IdP's issuer.
    forged = jwt.encode({"iss": OIDC_ISSUER, "sub": "repo:shop/api", "aud": "sts.amazonaws.com",
                         "exp": int(time.time()) + 300}, partner.key, algorithm="RS256", headers={"kid": "local-idp"})
    assert refusal(lambda: assume(oidc_proxy, forged)) == "InvalidIdentityToken"
    assert refusal(lambda: assume(oidc_proxy, "not-a-token")) == "InvalidIdentityToken"
    unknown = jwt.encode({"iss": "https://nobody.example", "sub": "x", "aud": "sts.amazonaws.com",
                          "exp": int(time.time()) + 300}, partner.key, algorithm="RS256")
    assert refusal(lambda: assume(oidc_proxy, unknown)) == "InvalidIdentityToken"
