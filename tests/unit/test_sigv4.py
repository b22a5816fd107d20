"""SigV4 verification against requests signed by botocore itself."""

from __future__ import annotations

import datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.iam.sigv4 import Secret, SignatureError, verify_sigv4

KEYS = {"AKIDEXAMPLE": Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        "ASIATEMP": Secret("tempsecret", session_token="the-session-token")}
BODY = b"Action=GetClusterCredentials&Version=2012-12-01&DbUser=alice&ClusterIdentifier=c1"


def signed(access_key="AKIDEXAMPLE", secret=None, region="us-east-1", service="redshift", body=BODY, token=None):
    secret = secret or KEYS.get(access_key, Secret("x")).secret_key
    request = AWSRequest(method="POST", url="http://127.0.0.1:5440/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                                  "User-Agent": "test"})
    SigV4Auth(Credentials(access_key, secret, token), service, region).add_auth(request)
    return dict(request.headers.items())


def verify(headers, body=BODY, now=None):
    return verify_sigv4("POST", "http://127.0.0.1:5440/", {**headers, "Host": "127.0.0.1:5440"}, body,
                        lookup=KEYS.get, service="redshift", region="us-east-1", now=now)


def test_botocore_signature_verifies():
    assert verify(signed()).access_key == "AKIDEXAMPLE"
    assert verify(signed("ASIATEMP", token="the-session-token")).access_key == "ASIATEMP"


@pytest.mark.parametrize("headers, body, code", [
    (lambda: signed(), BODY + b"&x=1", "SignatureDoesNotMatch"),                 # body changed
    (lambda: signed(secret="wrong"), BODY, "SignatureDoesNotMatch"),
    (lambda: signed("AKIDUNKNOWN"), BODY, "InvalidClientTokenId"),
    (lambda: signed(region="eu-west-1"), BODY, "SignatureDoesNotMatch"),
    (lambda: signed(service="s3"), BODY, "SignatureDoesNotMatch"),
    (lambda: signed("ASIATEMP", token="forged"), BODY, "InvalidClientTokenId"),
    (lambda: {k: v for k, v in signed().items() if k != "Authorization"}, BODY, "MissingAuthenticationToken"),
    (lambda: {**signed(), "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE"}, BODY, "IncompleteSignature"),
    (lambda: {**signed(), "X-Amz-Date": "garbage"}, BODY, "IncompleteSignature"),
])
def test_refusals(headers, body, code):
    with pytest.raises(SignatureError) as info:
        verify(headers(), body)
    assert info.value.code == code


def test_clock_skew_of_15_minutes():
    headers = signed()
    when = datetime.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    assert verify(headers, now=when + datetime.timedelta(minutes=14))
    with pytest.raises(SignatureError) as info:
        verify(headers, now=when + datetime.timedelta(minutes=16))
    assert info.value.code == "RequestExpired"
