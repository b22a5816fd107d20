"""AWS Signature Version 4 verification of an incoming request, by recomputing the signature
with botocore's own signer (botocore.auth.SigV4Auth) over the headers the client signed, and
comparing in constant time. No canonicalisation is written here.
"""

from __future__ import annotations

import datetime
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_SKEW = datetime.timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")


class SignatureError(Exception):
    """The request's signature cannot be accepted; code is the AWS error code to answer with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Secret:
    """What the verifier needs to know about an access key."""

    secret_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class Verified:
    access_key: str
    region: str
    service: str


def credential_scope(headers: dict[str, str]) -> tuple[str, str] | None:
    """(access key id, service) from an Authorization header's Credential, without verifying
    anything: to route a request and to find the key's secret before verification."""
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    match = _AUTHORIZATION.match(authorization)
    if not match:
        return None
    parts = match.group("credential").split("/")
    return (parts[0], parts[3]) if len(parts) == 5 else None


def verify_sigv4(method: str, url: str, headers: dict[str, str], body: bytes, *,
                 lookup: Callable[[str], Secret | None], service: str, region: str,
                 now: datetime.datetime | None = None) -> Verified:
    """Check an AWS4-HMAC-SHA256 Authorization header; raises SignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower.get("authorization")
    if not authorization:
        raise SignatureError("MissingAuthenticationToken", "Request is missing Authentication Token")
    match = _AUTHORIZATION.match(authorization)
    if not match:
        raise SignatureError("IncompleteSignature", "Authorization header requires Credential, "
                                                    "SignedHeaders and Signature parameters")
    parts = match.group("credential").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError("IncompleteSignature", "Credential must have the form "
                                                    "<key>/<date>/<region>/<service>/aws4_request")
    access_key, scope_date, scope_region, scope_service, _ = parts
    signed = match.group("signed").split(";")
    if "host" not in signed or any(name not in lower for name in signed):
        raise SignatureError("IncompleteSignature", "SignedHeaders must include host and name only headers sent")
    timestamp = lower.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignature", "X-Amz-Date is missing or malformed") from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if abs(now - when) > MAX_SKEW:
        raise SignatureError("RequestExpired", f"Request has expired or is not yet valid: timestamp {timestamp}")
    if scope_date != timestamp[:8]:
        raise SignatureError("SignatureDoesNotMatch", "Credential date does not match X-Amz-Date")
    if scope_service != service:
        raise SignatureError("SignatureDoesNotMatch", f"Credential should be scoped to correct service: '{service}'")
    if scope_region != region:
        raise SignatureError("SignatureDoesNotMatch",
                             f"Credential should be scoped to a valid region, not '{scope_region}'")
    secret = lookup(access_key)
    if secret is None:
        raise SignatureError("InvalidClientTokenId", "The security token included in the request is invalid")
    if secret.session_token is not None and not hmac.compare_digest(
            lower.get("x-amz-security-token", ""), secret.session_token):
        raise SignatureError("InvalidClientTokenId", "The security token included in the request is invalid")

    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: lower[name] for name in signed})
    request.context["timestamp"] = timestamp
    signer = SigV4Auth(Credentials(access_key, secret.secret_key, secret.session_token), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match.group("signature")):
        raise SignatureError("SignatureDoesNotMatch", "The request signature we calculated does not match "
                                                      "the signature you provided")
    return Verified(access_key, scope_region, scope_service)
