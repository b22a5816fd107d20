"""SAML 2.0 federation through STS, with real boto3 and the AWS CLI: the local IdP signs an
assertion, AssumeRoleWithSAML answers as STS does, the role's session gets temporary database
credentials for its own name only, and psycopg logs in with them. Then the attacks: unsigned,
tampered, wrongly keyed, wrapped, misaddressed, expired, replayed assertions, and roles the
provider may not assume."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace

import boto3
import botocore.exceptions
import psycopg
import pytest
import redshift_connector
from botocore.config import Config as BotoConfig
from lxml import etree

from proxy.config import Iam, IamRole, IamSamlProvider
from proxy.iam.local_idp import ENTITY_ID, LocalIdp, parse

from ..conftest import unique

ACCOUNT = "123456789012"
CLUSTER = "shiftguard"
ARN = f"arn:aws:redshift:us-east-1:{ACCOUNT}"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:saml-provider/shiftguard"
ANALYST = f"arn:aws:iam::{ACCOUNT}:role/tmp_saml_analyst"
SELF = f"arn:aws:iam::{ACCOUNT}:role/tmp_saml_self"
UNTRUSTING = f"arn:aws:iam::{ACCOUNT}:role/tmp_saml_untrusting"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS = {"saml": SAML, "samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "ds": "http://www.w3.org/2000/09/xmldsig#"}

TRUST_PROVIDER = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithSAML",
     "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml", "SAML:iss": ENTITY_ID}}}]}
# The Management Guide's pattern: a federated user gets credentials for its own name only (the
# session is named <DbUser>@example.com by the IdP's RoleSessionName attribute).
ANALYST_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:GetClusterCredentials",
     "Resource": [f"{ARN}:dbuser:{CLUSTER}/${{redshift:DbUser}}", f"{ARN}:dbname:{CLUSTER}/dev"],
     "Condition": {"StringLike": {"aws:userid": "*:${redshift:DbUser}@example.com"}}},
    {"Effect": "Allow", "Action": "redshift:CreateClusterUser", "Resource": f"{ARN}:dbuser:{CLUSTER}/*"},
    {"Effect": "Allow", "Action": "redshift:JoinGroup", "Resource": f"{ARN}:dbgroup:{CLUSTER}/tmp_saml_readers"}]}
SELF_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["redshift:GetClusterCredentials", "redshift:CreateClusterUser"],
     "Resource": f"{ARN}:dbuser:{CLUSTER}/${{saml:sub}}"}]}


@pytest.fixture
def saml_proxy(make_proxy):
    iam = Iam(local_idp=True, roles=[
        IamRole("tmp_saml_analyst", trust=TRUST_PROVIDER, policies=[ANALYST_POLICY], max_session_duration=7200),
        IamRole("tmp_saml_self", trust=TRUST_PROVIDER, policies=[SELF_POLICY]),
        IamRole("tmp_saml_untrusting", trust=[], policies=[SELF_POLICY]),
    ])
    proxy = make_proxy(iam=iam)
    yield proxy
    with proxy.connect() as admin:
        for user in ("alice", "carol"):
            admin.execute(f"DROP USER IF EXISTS {user}")


def idp(proxy) -> LocalIdp:
    return proxy.proxy.local_idp


def sts(proxy):
    return boto3.client("sts", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id="unused", aws_secret_access_key="unused",
                        config=BotoConfig(retries={"max_attempts": 1}))


def redshift(proxy, credentials):
    return boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"],
                        config=BotoConfig(retries={"max_attempts": 1}))


def assume(proxy, assertion: str, role: str = ANALYST, **extra) -> dict:
    return sts(proxy).assume_role_with_saml(RoleArn=role, PrincipalArn=PROVIDER, SAMLAssertion=assertion, **extra)


def refusal(call) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def alice(proxy, **options) -> str:
    return idp(proxy).saml_response("alice@example.com", [ANALYST], db_user="alice", **options)


def test_saml_login_then_database_credentials_for_ones_own_name(saml_proxy):
    table = unique("t")
    with saml_proxy.connect() as admin:
        admin.execute("CREATE GROUP tmp_saml_readers")
        admin.execute(f"CREATE TABLE {table} (a int)")
        admin.execute(f"INSERT INTO {table} VALUES (5)")
        admin.execute(f"GRANT SELECT ON {table} TO GROUP tmp_saml_readers")
    try:
        answer = assume(saml_proxy, alice(saml_proxy, auto_create=True, db_groups=["tmp_saml_readers"]),
                        DurationSeconds=7200)
        assert answer["Subject"] == "alice@example.com" and answer["SubjectType"] == "persistent"
        assert answer["Issuer"] == ENTITY_ID and answer["Audience"] == "https://signin.aws.amazon.com/saml"
        assert answer["NameQualifier"] == base64.b64encode(
            hashlib.sha1(f"{ENTITY_ID}{ACCOUNT}/shiftguard".encode()).digest()).decode()
        assert answer["AssumedRoleUser"]["Arn"] == \
            f"arn:aws:sts::{ACCOUNT}:assumed-role/tmp_saml_analyst/alice@example.com"
        creds = answer["Credentials"]
        assert 7190 < (creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds() <= 7205

        api = redshift(saml_proxy, creds)
        # AutoCreate and DbGroups come from the assertion when the request leaves them out.
        db = api.get_cluster_credentials(DbUser="alice", DbName="dev", ClusterIdentifier=CLUSTER)
        assert db["DbUser"] == "IAMA:alice"
        with psycopg.connect(host=saml_proxy.host, port=saml_proxy.port, user=db["DbUser"],
                             password=db["DbPassword"], dbname="dev", sslmode="require", connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("alice",)
            assert conn.execute(f"SELECT a FROM {table}").fetchone() == (5,)
        # Another name: refused by the assertion's DbUser and by the policy's ${redshift:DbUser}.
        assert refusal(lambda: api.get_cluster_credentials(DbUser="bob", DbName="dev",
                                                           ClusterIdentifier=CLUSTER))[0] == "AccessDenied"
    finally:
        with saml_proxy.connect() as admin:
            admin.execute(f"DROP TABLE {table}")
            admin.execute("DROP USER IF EXISTS alice")
            admin.execute("DROP GROUP tmp_saml_readers")


def test_policy_variable_saml_sub(saml_proxy):
    creds = assume(saml_proxy, idp(saml_proxy).saml_response("carol", [SELF]), role=SELF)["Credentials"]
    api = redshift(saml_proxy, creds)
    assert api.get_cluster_credentials(DbUser="carol", ClusterIdentifier=CLUSTER, AutoCreate=True)["DbUser"] \
        == "IAMA:carol"
    assert refusal(lambda: api.get_cluster_credentials(DbUser="alice", ClusterIdentifier=CLUSTER))[0] \
        == "AccessDenied"
    identity = boto3.client("sts", endpoint_url=f"http://127.0.0.1:{saml_proxy.api_port}", region_name="us-east-1",
                            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"]).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/tmp_saml_self/carol"


def current_user(conn) -> str:
    """current_user of a redshift_connector connection, which is then closed."""
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user")
        return cursor.fetchall()[0][0]
    finally:
        conn.close()


def test_redshift_connector_with_the_saml_sessions_keys(saml_proxy, monkeypatch):
    """The driver's IAM login (GetClusterCredentials, then the token as password) with the keys
    AssumeRoleWithSAML returned."""
    from pathlib import Path

    monkeypatch.setenv("SSL_CERT_FILE", str(Path(saml_proxy.config.data_dir) / "tls" / "server.crt"))
    creds = assume(saml_proxy, alice(saml_proxy))["Credentials"]
    assert current_user(redshift_connector.connect(
        iam=True, db_user="alice", auto_create=True, cluster_identifier=CLUSTER, region="us-east-1",
        access_key_id=creds["AccessKeyId"], secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"], endpoint_url=f"http://127.0.0.1:{saml_proxy.api_port}",
        host=saml_proxy.host, port=saml_proxy.port, database="dev", ssl=True, sslmode="verify-ca",
        iam_disable_cache=True, timeout=20)) == "alice"


def test_redshift_connector_signs_in_at_the_local_idp(saml_proxy, make_proxy, monkeypatch):
    """redshift_connector's AdfsCredentialsProvider end to end: it fills in the local IdP's
    HTTPS login form, takes the SAMLResponse, calls STS AssumeRoleWithSAML (botocore's
    AWS_ENDPOINT_URL_STS points it here), then GetClusterCredentials, then logs in. The driver
    reaches an IdP on port 443 only: this proxy's local IdP listens there."""
    from pathlib import Path

    saml_proxy = make_proxy(iam=replace(saml_proxy.config.iam, local_idp_listen="127.0.0.1:443"))
    certificate = str(Path(saml_proxy.config.data_dir) / "tls" / "server.crt")
    for name, value in {"SSL_CERT_FILE": certificate, "REQUESTS_CA_BUNDLE": certificate,
                        "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{saml_proxy.api_port}",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    idp(saml_proxy).add_user("alice@example.com", "Idp-secret-1", db_user="alice", auto_create=True)
    options = dict(credentials_provider="AdfsCredentialsProvider", idp_host="127.0.0.1", user="alice@example.com",
                   preferred_role=ANALYST, iam=True, cluster_identifier=CLUSTER, region="us-east-1",
                   endpoint_url=f"http://127.0.0.1:{saml_proxy.api_port}", host=saml_proxy.host,
                   port=saml_proxy.port, database="dev", ssl=True, sslmode="verify-ca", iam_disable_cache=True,
                   timeout=20)
    assert current_user(redshift_connector.connect(password="Idp-secret-1", **options)) == "alice"
    with pytest.raises(redshift_connector.InterfaceError):   # the IdP refuses a wrong password
        redshift_connector.connect(password="wrong", **options)


BROWSER_LOGIN = """
import sys, redshift_connector
conn = redshift_connector.connect(**eval(sys.argv[1]))
cursor = conn.cursor()
cursor.execute("SELECT current_user")
print(cursor.fetchone()[0])
"""


def test_redshift_connector_browser_saml_login(saml_proxy, tmp_path):
    """redshift_connector's BrowserSamlCredentialsProvider end to end, as a person at a browser
    does it: the driver listens on its listen_port and opens login_url (the local IdP's browser
    sign-in) with $BROWSER, here tests/integration/saml_browser.py, which signs in and posts
    the SAMLResponse to the driver's listener, as the IdP's page makes a browser do; the driver
    then calls STS AssumeRoleWithSAML, GetClusterCredentials, and logs in. A wrong password gets
    no assertion; an acs that is not on this machine gets no sign-in form."""
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request
    from pathlib import Path

    from proxy.iam.http import BROWSER_SIGN_ON

    idp(saml_proxy).add_user("alice@example.com", "Idp-secret-1", db_user="alice", auto_create=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen_port = probe.getsockname()[1]
    host, idp_port = saml_proxy.proxy.local_idp_address
    acs = f"http://127.0.0.1:{listen_port}/redshift/"
    login_url = f"https://{host}:{idp_port}{BROWSER_SIGN_ON}?" + urllib.parse.urlencode({"acs": acs})
    certificate = str(Path(saml_proxy.config.data_dir) / "tls" / "server.crt")
    options = dict(credentials_provider="BrowserSamlCredentialsProvider", login_url=login_url,
                   listen_port=listen_port, idp_response_timeout=20, preferred_role=ANALYST, iam=True,
                   cluster_identifier=CLUSTER, region="us-east-1", endpoint_url=f"http://127.0.0.1:{saml_proxy.api_port}",
                   host=saml_proxy.host, port=saml_proxy.port, database="dev", ssl=True, sslmode="verify-ca",
                   iam_disable_cache=True, timeout=20)
    browser = Path(__file__).with_name("saml_browser.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "BROWSER"))} | {
        "BROWSER": f"{sys.executable} {browser} %s", "SAML_BROWSER_CA": certificate,
        "SAML_BROWSER_USER": "alice@example.com", "SAML_BROWSER_PASSWORD": "Idp-secret-1",
        "SSL_CERT_FILE": certificate, "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{saml_proxy.api_port}",
        "AWS_DEFAULT_REGION": "us-east-1"}

    done = subprocess.run([sys.executable, "-c", BROWSER_LOGIN, repr(options)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "alice\n"), done.stderr

    # Asked by hand: a wrong password gets the form again (401), no assertion (the driver would
    # wait for its listener's POST until it is stopped: it has no timeout for that).
    import ssl
    context = ssl.create_default_context(cafile=certificate)
    form = urllib.parse.urlencode({"UserName": "alice@example.com", "Password": "wrong", "acs": acs}).encode()
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"https://{host}:{idp_port}{BROWSER_SIGN_ON}", form, context=context, timeout=20)
    assert answer.value.code == 401 and b"SAMLResponse" not in answer.value.read()
    # An acs that is not on this machine gets neither the form nor, with the password, an assertion.
    for elsewhere in ("http://example.com/redshift/", "http://127.0.0.1.example.com/", "http://127.0.0.1\\@example.com/"):
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"https://{host}:{idp_port}{BROWSER_SIGN_ON}?" + urllib.parse.urlencode(
                {"acs": elsewhere}), context=context, timeout=20)
        assert answer.value.code == 400
        form = urllib.parse.urlencode({"UserName": "alice@example.com", "Password": "Idp-secret-1",
                                       "acs": elsewhere}).encode()
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"https://{host}:{idp_port}{BROWSER_SIGN_ON}", form, context=context, timeout=20)
        assert answer.value.code == 400 and b"SAMLResponse" not in answer.value.read()


def test_allow_db_user_override(saml_proxy):
    """With AllowDbUserOverride the session may ask for another name; the policy still decides."""
    response = idp(saml_proxy).saml_response(
        "carol", [SELF], db_user="someone", attributes={
            "https://redshift.amazon.com/SAML/Attributes/AllowDbUserOverride": ["true"]})
    api = redshift(saml_proxy, assume(saml_proxy, response, role=SELF)["Credentials"])
    assert api.get_cluster_credentials(DbUser="carol", ClusterIdentifier=CLUSTER)["DbUser"] == "IAM:carol"
    assert refusal(lambda: api.get_cluster_credentials(DbUser="bob", ClusterIdentifier=CLUSTER))[0] \
        == "AccessDenied"


def test_aws_cli_assume_role_with_saml_then_psql(saml_proxy):
    """The AWS CLI end to end: assume-role-with-saml, get-cluster-credentials with its keys, and
    psql with the temporary password."""
    endpoint = f"http://127.0.0.1:{saml_proxy.api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))} | {
        "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-m", "awscli", "sts", "assume-role-with-saml", "--endpoint-url",
                             endpoint, "--role-arn", ANALYST, "--principal-arn", PROVIDER,
                             "--saml-assertion", alice(saml_proxy, auto_create=True)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["Credentials"]["AccessKeyId"].startswith("ASIA") and answer["Subject"] == "alice@example.com"
    creds = answer["Credentials"]
    env |= {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"]}
    result = subprocess.run([sys.executable, "-m", "awscli", "redshift", "get-cluster-credentials", "--endpoint-url",
                             endpoint, "--cluster-identifier", CLUSTER, "--db-user", "alice", "--db-name", "dev"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)
    result = subprocess.run(
        ["psql", "-X", "-At", "-c", "SELECT current_user",
         f"host={saml_proxy.host} port={saml_proxy.port} dbname=dev user={db['DbUser']} sslmode=require"],
        capture_output=True, text=True, env=env | {"PGPASSWORD": db["DbPassword"]}, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "alice"), result.stderr


# --------------------------------------------------------------------------- refusals

def signed_response(proxy, mutate=None, signer: LocalIdp | None = None, **options) -> str:
    """A response whose assertion was changed by mutate before it was signed."""
    assertion = idp(proxy).assertion("alice@example.com", [ANALYST], db_user="alice", **options)
    if mutate is not None:
        mutate(assertion)
    return LocalIdp.encode(LocalIdp.response((signer or idp(proxy)).sign(assertion)))


def set_attribute(path: str, name: str, value: str):
    def mutate(assertion):
        assertion.find(path, NS).set(name, value)
    return mutate


def set_text(path: str, value: str):
    def mutate(assertion):
        assertion.find(path, NS).text = value
    return mutate


def after_signing(proxy, change) -> str:
    response = parse(alice(proxy))
    change(response)
    return LocalIdp.encode(response)


def test_a_good_assertion_is_accepted_once(saml_proxy):
    assertion = alice(saml_proxy)
    assert assume(saml_proxy, assertion)["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert refusal(lambda: assume(saml_proxy, assertion))[0] == "InvalidIdentityToken"


def test_a_replay_is_refused_by_another_proxy_on_the_backend(saml_proxy, make_proxy):
    assertion = alice(saml_proxy)
    assume(saml_proxy, assertion)
    same_idp = IamSamlProvider("shiftguard", metadata=idp(saml_proxy).metadata())
    other = make_proxy(iam=replace(saml_proxy.config.iam, local_idp=False, saml_providers=[same_idp]))
    assert refusal(lambda: assume(other, assertion))[0] == "InvalidIdentityToken"


def remove_signature(response):
    signature = response.find(".//ds:Signature", NS)
    signature.getparent().remove(signature)


def change_subject(response):
    response.find(".//saml:NameID", NS).text = "admin@example.com"


@pytest.mark.parametrize("change", [remove_signature, change_subject], ids=["unsigned", "tampered"])
def test_unsigned_or_tampered(saml_proxy, change):
    code, message = refusal(lambda: assume(saml_proxy, after_signing(saml_proxy, change)))
    assert code == "InvalidIdentityToken" and "signature" not in message.lower()  # the reason is in the log only


def test_a_key_that_is_not_the_providers(saml_proxy, tmp_path):
    """Signed by another key, whose certificate travels in the signature's KeyInfo: only the
    configured metadata's certificate counts."""
    stranger = LocalIdp(tmp_path / "stranger", ACCOUNT)
    assert refusal(lambda: assume(saml_proxy, signed_response(saml_proxy, signer=stranger)))[0] \
        == "InvalidIdentityToken"


def test_signature_wrapping_a_second_unsigned_assertion(saml_proxy):
    """The signed assertion is bob's; a forged one for alice sits beside it (before it, where a
    naive reader looks first)."""
    genuine = idp(saml_proxy).sign(idp(saml_proxy).assertion("bob@example.com", [ANALYST], db_user="bob"))
    forged = copy.deepcopy(genuine)
    forged.set("ID", "_forged")
    forged.remove(forged.find("ds:Signature", NS))  # the wrapper is unsigned
    forged.find("saml:Subject/saml:NameID", NS).text = "alice@example.com"
    assert refusal(lambda: assume(saml_proxy, LocalIdp.encode(LocalIdp.response(forged, genuine))))[0] \
        == "InvalidIdentityToken"
    # The genuine assertion wrapped inside the forged one (in its Advice) fares no better.
    advice = etree.SubElement(forged, f"{{{SAML}}}Advice")
    advice.append(genuine)
    assert refusal(lambda: assume(saml_proxy, LocalIdp.encode(LocalIdp.response(forged))))[0] \
        == "InvalidIdentityToken"


def test_signature_wrapping_an_injected_assertion_in_a_signed_response(saml_proxy):
    local = idp(saml_proxy)
    signed = local.sign(local.response(local.assertion("bob@example.com", [ANALYST])))
    assert assume(saml_proxy, LocalIdp.encode(signed))["Subject"] == "bob@example.com"  # a signed Response works
    signed = local.sign(local.response(local.assertion("bob@example.com", [ANALYST])))
    signed.insert(2, local.assertion("alice@example.com", [ANALYST], db_user="alice"))
    assert refusal(lambda: assume(saml_proxy, LocalIdp.encode(signed)))[0] == "InvalidIdentityToken"


@pytest.mark.parametrize("mutate", [
    set_text("saml:Conditions/saml:AudienceRestriction/saml:Audience", "urn:amazon:elsewhere"),
    set_attribute("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "Recipient",
                  "https://evil.example.com/saml"),
    set_text("saml:Issuer", "urn:another:idp"),
    set_attribute("saml:Conditions", "NotBefore", "2099-01-01T00:00:00Z"),
], ids=["audience", "recipient", "issuer", "not-yet-valid"])
def test_misaddressed_assertions(saml_proxy, mutate):
    assert refusal(lambda: assume(saml_proxy, signed_response(saml_proxy, mutate)))[0] == "InvalidIdentityToken"


def test_an_expired_assertion(saml_proxy):
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    assert refusal(lambda: assume(saml_proxy, signed_response(saml_proxy, now=past)))[0] == "ExpiredTokenException"


def test_roles_the_provider_may_not_assume(saml_proxy):
    # The Role attribute names the analyst role only.
    assert refusal(lambda: assume(saml_proxy, alice(saml_proxy), role=SELF)) == \
        ("AccessDenied", "Not authorized to perform sts:AssumeRoleWithSAML")
    # Named in the attribute, but the role's trust policy does not name the provider.
    response = idp(saml_proxy).saml_response("alice@example.com", [UNTRUSTING])
    assert refusal(lambda: assume(saml_proxy, response, role=UNTRUSTING))[0] == "AccessDenied"
    # A provider that does not exist.
    assert refusal(lambda: sts(saml_proxy).assume_role_with_saml(
        RoleArn=ANALYST, PrincipalArn=f"arn:aws:iam::{ACCOUNT}:saml-provider/nope",
        SAMLAssertion=alice(saml_proxy)))[0] == "InvalidIdentityToken"


def test_a_comment_inside_the_name_id(saml_proxy):
    """The IdP signed alice@example.com.evil; a comment put in after signing leaves the signature
    valid (canonicalisation drops comments) and must not shorten the name to alice@example.com."""
    def split(response):
        name_id = response.find(".//saml:NameID", NS)
        name_id.text = "alice@example.com"
        comment = etree.Comment("")
        comment.tail = ".evil"
        name_id.append(comment)

    response = parse(idp(saml_proxy).saml_response("alice@example.com.evil", [ANALYST]))
    split(response)
    assert assume(saml_proxy, LocalIdp.encode(response))["Subject"] == "alice@example.com.evil"


def test_a_dtd_is_refused(saml_proxy):
    document = etree.tostring(parse(alice(saml_proxy))).decode()
    bomb = '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    assert refusal(lambda: assume(saml_proxy, base64.b64encode((bomb + document).encode()).decode()))[0] \
        == "InvalidIdentityToken"
    # The proxy serves on.
    assert assume(saml_proxy, alice(saml_proxy))["Subject"] == "alice@example.com"


def test_session_length(saml_proxy):
    assert refusal(lambda: assume(saml_proxy, alice(saml_proxy), DurationSeconds=7201))[0] == "ValidationError"
    capped = assume(saml_proxy, alice(saml_proxy, attributes={
        "https://aws.amazon.com/SAML/Attributes/SessionDuration": ["1000"]}), DurationSeconds=3600)
    remaining = (capped["Credentials"]["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 990 < remaining <= 1005


def test_metadata_is_published(saml_proxy):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{saml_proxy.api_port}/local-idp/saml/metadata") as reply:
        assert reply.read().decode() == idp(saml_proxy).metadata()
