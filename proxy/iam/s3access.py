"""Whose credentials a COPY or UNLOAD names, and whether that principal's IAM policies allow the
S3 requests it makes: an IAM user's access key (iam.users), an STS session's (proxy/iam/sts.py),
or an IAM role of the cluster (IAM_ROLE, CREDENTIALS 'aws_iam_role=...'). Pure: no I/O.

What only the backing database knows is left to catalog/s3.sql, which reads it when the
statement runs: whether an STS session is live and whose role it is, which roles are associated
with the cluster and which is its default, who holds ASSUMEROLE. For those this module decides
which roles' policies allow every request and puts that list in the signed ticket; the private
schema then only looks up the role and compares, so the decision is made here, where the
statement is judged, and none of it is SQL a user could influence.

Secrets are compared in constant time and never put in a ticket, a message or a log.
"""

from __future__ import annotations

import datetime
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ..policy.tokens import GrammarError
from ..protocol import sqlstate
from .policy import evaluate
from .principals import Principal, Principals, Role
from .sts import caller_context, utcnow

# The session name Redshift gives the role sessions it opens for COPY and UNLOAD (as CloudTrail
# shows them); conditions on aws:userid of a role see it. UNVERIFIED for STS sessions, whose own
# name is in the backing database: policies of roles are judged with this one.
SESSION_NAME = "RedshiftIamRoleSession"


@dataclass(frozen=True)
class Credentials:
    """What the statement's authorization names (never logged: it holds secrets)."""

    iam_role: str | None = None          # an ARN, or "default"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(iam_role={self.iam_role!r}, access_key_id={self.access_key_id!r})"


@dataclass(frozen=True)
class Request:
    """One S3 request COPY or UNLOAD makes: the action and the resource's ARN, and s3:prefix for
    s3:ListBucket."""

    action: str
    resource: str
    prefix: str | None = None


def s3_error(message: str, code: str, status: int = 403) -> GrammarError:
    """S3's error as Redshift reports it: "S3ServiceException:<message>,Status <status>,Error
    <code>,Rid <request id>,CanRetry 1" (the shape of Redshift's documented load errors; the
    exact fields UNVERIFIED). SQLSTATE 42501: the request was refused, as a privilege is."""
    rid = secrets.token_hex(8).upper()
    return GrammarError(f"S3ServiceException:{message},Status {status},Error {code},Rid {rid},CanRetry 1",
                        sqlstate.INSUFFICIENT_PRIVILEGE)


def access_denied() -> GrammarError:
    return s3_error("Access Denied", "AccessDenied")


def invalid_credentials() -> GrammarError:
    # Redshift's wording for authorization it cannot read (UNVERIFIED for a missing one).
    return GrammarError("Invalid credentials. Must be of the format: credentials 'aws_iam_role=...' or "
                        "'aws_access_key_id=...;aws_secret_access_key=...[;token=...]'",
                        sqlstate.INVALID_PARAMETER_VALUE)


class S3Access:
    """principals: the configured IAM users and roles; dbuser_arn: the cluster's database users'
    ARN prefix (Redshift names the user in its refusals); sts_secret(access key id) -> (secret
    key, session token) of an STS session (Catalog.sts_secret), or None where there are none."""

    def __init__(self, principals: Principals, dbuser_arn: str,
                 sts_secret: Callable[[str], tuple[str, str]] | None = None,
                 clock: Callable[[], datetime.datetime] = utcnow):
        self.principals = principals
        self.dbuser_arn = dbuser_arn  # arn:aws:redshift:<region>:<account>:dbuser:<cluster>, for messages
        self.sts_secret = sts_secret
        self.clock = clock

    def grant(self, credentials: Credentials, requests: list[Request]) -> dict:
        """The ticket's authorization fields, or GrammarError with S3's error. {} for an IAM
        user's keys (decided here); {"iam_role": arn or "default", "roles": [...]} and
        {"sts": key id, "roles": [...]} for catalog/s3.sql to finish (see the module's doc)."""
        if credentials.iam_role is not None:
            if credentials.access_key_id or credentials.secret_access_key or credentials.session_token:
                raise invalid_credentials()
            arn = credentials.iam_role
            roles = self.principals.roles()
            candidates = roles if arn == "default" else [role for role in roles if role.arn == arn]
            return {"iam_role": arn, "roles": self._allowed_roles(candidates, requests), "dbuser": self.dbuser_arn}
        key, secret = credentials.access_key_id, credentials.secret_access_key
        if not key or secret is None:
            raise invalid_credentials()
        if key.startswith("ASIA") and self.sts_secret is not None:
            expected_secret, expected_token = self.sts_secret(key)
            if not hmac.compare_digest(secret.encode(), expected_secret.encode()):
                raise signature_mismatch()
            if not hmac.compare_digest((credentials.session_token or "").encode(), expected_token.encode()):
                raise s3_error("The provided token is malformed or otherwise invalid.", "InvalidToken", 400)
            return {"sts": key, "roles": self._allowed_roles(self.principals.roles(), requests)}
        found = self.principals.secret(key)
        if found is None:
            raise s3_error("The AWS Access Key Id you provided does not exist in our records.", "InvalidAccessKeyId")
        if not hmac.compare_digest(secret.encode(), found.secret_key.encode()):
            raise signature_mismatch()
        if credentials.session_token:
            # A long-term key takes no session token (S3 refuses the request).
            raise s3_error("The provided token is malformed or otherwise invalid.", "InvalidToken", 400)
        if not self._allows(self.principals.principal(key), requests):
            raise access_denied()
        return {}

    def _allowed_roles(self, roles: list[Role], requests: list[Request]) -> list[str]:
        """The roles whose policies allow every request; none: denied whichever role it is."""
        allowed = [role.arn for role in roles if self._allows(Principals.session(role, SESSION_NAME), requests)]
        if not allowed:
            raise access_denied()
        return allowed

    def _allows(self, principal: Principal, requests: list[Request]) -> bool:
        # The cluster makes the requests: no source address or transport of the client's.
        context = {key: value for key, value in caller_context(principal, "", self.clock()).items()
                   if key not in ("aws:SourceIp", "aws:SecureTransport")}
        for request in requests:
            extra = {"s3:prefix": request.prefix} if request.prefix is not None else {}
            if not evaluate(principal.policies, request.action, request.resource, context | extra).allowed:
                return False
        return True


def signature_mismatch() -> GrammarError:
    return s3_error("The request signature we calculated does not match the signature you provided. "
                    "Check your key and signing method.", "SignatureDoesNotMatch")
