"""STS on the API port (AWS Query protocol, version 2011-06-15): AssumeRole and
GetCallerIdentity; and who signed a request, for both APIs (Callers): an IAM user's access key
from the configuration, or an STS session's (ASIA...) from the backing database.

A session's secret key and token are HMACs of its access key id under the backend secret
(Catalog.sts_secret): nothing that signs is stored or logged, and every proxy on the same
backend accepts the sessions any of them issued. Requests signed with session credentials must
carry the session token (sigv4.py compares it in constant time); an expired session is
answered ExpiredToken, after the signature is verified, so only its holder learns that.
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
import urllib.parse
import uuid
from collections.abc import Callable
from xml.sax.saxutils import escape

from ..catalog.store import BACKEND_FAILURES
from .policy import Decision, evaluate
from .principals import Principal, Principals, Role
from .sigv4 import Secret, SignatureError, credential_scope, verify_sigv4
from . import wire
from .wire import iso8601

log = logging.getLogger(__name__)

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
VERSION = "2011-06-15"
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_ROLE_ARN = re.compile(r"arn:aws:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")
# AssumeRole parameters shiftguard honours; the others (Policy, PolicyArns, Tags, ...) would
# narrow or tag the session, so a request with them is refused rather than half-obeyed.
_ASSUME_ROLE_PARAMS = {"Action", "Version", "RoleArn", "RoleSessionName", "DurationSeconds", "ExternalId"}
_CHAINED_MAX = 3600  # a role session assuming a role: one hour at most (IAM User Guide, role chaining)


Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class StsError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.status = status


def error_xml(code: str, message: str) -> str:
    return wire.error_xml(NAMESPACE, code, message)


def is_sts_request(headers: dict[str, str], body: bytes, url: str) -> bool:
    """STS and the Redshift API share the port: the signature's credential scope names the
    service; an unsigned request goes by its Version (so that its error is in the right shape)."""
    scope = credential_scope(headers)
    if scope is not None:
        return scope[1] == "sts"
    text = body.decode("utf-8", "replace") or urllib.parse.urlsplit(url).query
    return dict(urllib.parse.parse_qsl(text)).get("Version") == VERSION


def session_status(code: str) -> int:
    return 400 if code in ("IncompleteSignature", "RequestExpired") else 403


class Callers:
    """Who signed a request: verify the signature and say which principal it acts as."""

    def __init__(self, principals: Principals, catalog, clock: Clock = utcnow):
        self.principals = principals
        self.catalog = catalog
        self.clock = clock

    async def authenticate(self, method: str, url: str, headers: dict[str, str], body: bytes, *,
                           service: str, region: str) -> Principal:
        """Raises SignatureError (InvalidClientTokenId, ExpiredToken, SignatureDoesNotMatch, ...)."""
        scope = credential_scope(headers)
        session = role = None
        if scope is not None and scope[0].startswith("ASIA"):
            session = await self.catalog.sts_session(scope[0])
            if session is not None:
                role = self.principals.role(f"arn:aws:iam::{session['account']}:role/{session['role']}")

        def lookup(access_key: str) -> Secret | None:
            if session is not None and role is not None and access_key == scope[0]:
                return Secret(*self.catalog.sts_secret(access_key))
            return self.principals.secret(access_key)

        now = self.clock()
        verified = verify_sigv4(method, url, headers, body, lookup=lookup, service=service, region=region,
                                now=now)
        if session is not None and role is not None and verified.access_key == scope[0]:
            if session["expires"] <= now:
                raise SignatureError("ExpiredToken", "The security token included in the request is expired")
            return self.principals.session(role, session["session_name"])
        return self.principals.principal(verified.access_key)


def trust_decision(role: Role, caller: Principal, context: dict) -> Decision:
    """The role's trust policy for sts:AssumeRole by caller: its statements whose Principal names
    the caller (its ARN, its role's ARN for a role session, its account, or "*"), evaluated by
    the policy engine with their Action and Condition."""
    names = {caller.arn, caller.account, f"arn:aws:iam::{caller.account}:root", "*"}
    if caller.principal_arn:
        names.add(caller.principal_arn)
    applicable = []
    for statement in role.trust:
        principal = statement.get("Principal")
        if principal == "*":
            listed = ["*"]
        elif isinstance(principal, dict):
            listed = principal.get("AWS", [])
            listed = [listed] if isinstance(listed, str) else list(listed)
        else:
            listed = []
        if any(str(p) in names for p in listed):
            applicable.append({k: v for k, v in statement.items() if k != "Principal"} | {"Resource": "*"})
    return evaluate([{"Statement": applicable}], "sts:AssumeRole", role.arn, context)


class StsApi:
    def __init__(self, callers: Callers, region: str):
        self.callers = callers
        self.principals = callers.principals
        self.region = region

    async def handle(self, method: str, url: str, headers: dict[str, str], body: bytes, source_ip: str):
        from .api import Reply  # the HTTP reply type both APIs share

        try:
            text = body.decode("utf-8", "replace") if method == "POST" else urllib.parse.urlsplit(url).query
            params = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
            caller = await self.callers.authenticate(method, url, headers, body, service="sts", region=self.region)
            action = params.get("Action", "")
            handler = {"AssumeRole": self._assume_role, "GetCallerIdentity": self._get_caller_identity}.get(action)
            if handler is None:
                raise StsError("InvalidAction", f"Could not find operation {action or '(none)'} for version "
                                                f"{params.get('Version', '(none)')}")
            if params.get("Version") != VERSION:
                raise StsError("InvalidAction", f"Could not find operation {action} for version "
                                                f"{params.get('Version', '(none)')}")
            inner = await handler(params, caller, source_ip)
            return Reply(200, f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{inner}</{action}Result>'
                              f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                              f"</{action}Response>")
        except SignatureError as exc:
            log.info("STS request from %s refused: %s", source_ip, exc.code)
            return Reply(session_status(exc.code), error_xml(exc.code, str(exc)))
        except StsError as exc:
            log.info("STS request from %s failed: %s %s", source_ip, exc.code, exc)
            return Reply(exc.status, error_xml(exc.code, str(exc)))
        except BACKEND_FAILURES as exc:
            log.error("STS request from %s: the backing database failed: %s: %s", source_ip, type(exc).__name__, exc)
            return Reply(503, error_xml("ServiceUnavailable", "The backing database is unavailable; try again."))
        except Exception:  # noqa: BLE001 - a bug: AWS-shaped, logged
            log.exception("STS request from %s failed", source_ip)
            return Reply(500, error_xml("InternalFailure", "The request failed; the proxy's log says why."))

    async def _get_caller_identity(self, params: dict[str, str], caller: Principal, source_ip: str) -> str:
        # Needs no permission, as in AWS.
        return (f"<Arn>{escape(caller.arn)}</Arn><UserId>{escape(caller.userid)}</UserId>"
                f"<Account>{escape(caller.account)}</Account>")

    async def _assume_role(self, params: dict[str, str], caller: Principal, source_ip: str) -> str:
        unknown = sorted({k.split(".", 1)[0] for k in params} - _ASSUME_ROLE_PARAMS)
        if unknown:
            raise StsError("ValidationError", f"AssumeRole here does not support {', '.join(unknown)} "
                                              "(session policies and session tags are not implemented)")
        role_arn, session_name = params.get("RoleArn"), params.get("RoleSessionName")
        for key, value in (("roleArn", role_arn), ("roleSessionName", session_name)):
            if value is None:
                raise StsError("ValidationError", f"1 validation error detected: Value null at '{key}' "
                                                  "failed to satisfy constraint: Member must not be null")
        if not _SESSION_NAME.fullmatch(session_name):
            raise StsError("ValidationError", f"1 validation error detected: Value '{session_name}' at "
                                              "'roleSessionName' failed to satisfy constraint: Member must have "
                                              "length between 2 and 64 and match [\\w+=,.@-]*")
        if not _ROLE_ARN.fullmatch(role_arn):
            raise StsError("ValidationError", f"{role_arn} is invalid")
        text = params.get("DurationSeconds")
        try:
            seconds = 3600 if text in (None, "") else int(text)
        except ValueError:
            raise StsError("ValidationError", "DurationSeconds must be a number") from None
        if seconds < 900:
            raise StsError("ValidationError", f"1 validation error detected: Value '{seconds}' at "
                                              "'durationSeconds' failed to satisfy constraint: Member must have "
                                              "value greater than or equal to 900")

        context = caller_context(caller, source_ip, self.callers.clock())
        context.update({"sts:RoleSessionName": session_name, "sts:ExternalId": params.get("ExternalId")})
        context = {k: v for k, v in context.items() if v is not None}
        role = self.principals.role(role_arn)
        denied = StsError("AccessDenied", f"User: {caller.arn} is not authorized to perform: sts:AssumeRole "
                                          f"on resource: {role_arn}", 403)
        # An unknown role is refused like a role that does not trust the caller: AWS does not
        # tell callers which roles exist.
        if role is None:
            raise denied
        if not evaluate(caller.policies, "sts:AssumeRole", role.arn, context).allowed:
            raise denied
        if not trust_decision(role, caller, context).allowed:
            raise denied
        limit = _CHAINED_MAX if caller.role is not None else role.max_session_duration
        if seconds > limit:
            raise StsError("ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for "
                                              "roles assuming roles." if caller.role is not None else
                                              "The requested DurationSeconds exceeds the MaxSessionDuration set "
                                              "for this role.")

        access_key = "ASIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        expiration = (self.callers.clock() + datetime.timedelta(seconds=seconds)).replace(microsecond=0)
        await self.callers.catalog.record_sts_session(access_key, role.name, role.account, session_name,
                                                      caller.arn, expiration)
        secret_key, token = self.callers.catalog.sts_secret(access_key)
        session = self.principals.session(role, session_name)
        log.info("STS AssumeRole of %s by %s from %s: session %s, access key %s, until %s",
                 role.arn, caller.arn, source_ip, session_name, access_key, iso8601(expiration))
        return (f"<Credentials><AccessKeyId>{access_key}</AccessKeyId>"
                f"<SecretAccessKey>{escape(secret_key)}</SecretAccessKey>"
                f"<SessionToken>{escape(token)}</SessionToken><Expiration>{iso8601(expiration)}</Expiration>"
                f"</Credentials><AssumedRoleUser><AssumedRoleId>{escape(session.userid)}</AssumedRoleId>"
                f"<Arn>{escape(session.arn)}</Arn></AssumedRoleUser>")


def caller_context(principal: Principal, source_ip: str, now: datetime.datetime) -> dict:
    """The global condition keys of a request by principal (IAM User Guide, "AWS global
    condition context keys"); aws:username exists for IAM users only."""
    context = {"aws:userid": principal.userid, "aws:PrincipalArn": principal.principal_arn or principal.arn,
               "aws:PrincipalAccount": principal.account, "aws:SourceIp": source_ip, "aws:SecureTransport": False,
               "aws:CurrentTime": iso8601(now), "aws:PrincipalType": "AssumedRole" if principal.role else "User"}
    if principal.role is None:
        context["aws:username"] = principal.name
    context.update({f"aws:PrincipalTag/{k}": v for k, v in principal.tags.items()})
    return context
