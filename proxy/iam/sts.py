"""STS on the API port (AWS Query protocol, version 2011-06-15): AssumeRole, GetCallerIdentity,
and the unsigned federation actions AssumeRoleWithSAML (iam/saml.py verifies the assertion) and
AssumeRoleWithWebIdentity (iam/oidc.py verifies the token); and who signed a request, for both
APIs (Callers): an IAM user's access key from the configuration, or an STS session's (ASIA...)
from the backing database, with a federated session's claims.

A session's secret key and token are HMACs of its access key id under the backend secret
(Catalog.sts_secret): nothing that signs is stored or logged, and every proxy on the same
backend accepts the sessions any of them issued. Requests signed with session credentials must
carry the session token (sigv4.py compares it in constant time); an expired session is
answered ExpiredToken, after the signature is verified, so only its holder learns that.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import secrets
import urllib.parse
import uuid
from collections.abc import Callable
from xml.sax.saxutils import escape

import jwt

from ..catalog.store import BACKEND_FAILURES
from .oidc import OidcExpired, OidcRefused, verified_claims
from .policy import Decision, evaluate
from .principals import Principal, Principals, Role
from .saml import (REDSHIFT_ATTRIBUTES, SESSION_DURATION_ATTRIBUTE, SESSION_NAME_ATTRIBUTE, SamlProvider,
                   SamlRefused, name_qualifier, verify_response)
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
_SAML_PARAMS = {"Action", "Version", "RoleArn", "PrincipalArn", "SAMLAssertion", "DurationSeconds"}
_WEB_IDENTITY_PARAMS = {"Action", "Version", "RoleArn", "RoleSessionName", "WebIdentityToken", "DurationSeconds"}
_CHAINED_MAX = 3600  # a role session assuming a role: one hour at most (IAM User Guide, role chaining)
# STS's words for a refused federation request; why it was refused goes to the log only.
_REFUSALS = {
    "InvalidIdentityToken": "The identity token or SAML assertion is not valid; the proxy's log says why.",
    "ExpiredTokenException": "The web identity token that was passed is expired or is not valid. Get a new "
                             "identity token from the identity provider and then retry the request.",
}


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
            return self.principals.session(role, session["session_name"], session["federation"])
        return self.principals.principal(verified.access_key)


def trust_decision(role: Role, action: str, kind: str, names: set[str], context: dict) -> Decision:
    """The role's trust policy for action: its statements whose Principal names one of names
    under kind ("AWS": the caller's ARN, its role's ARN, its account; "Federated": the identity
    provider's ARN), or is "*", evaluated by the policy engine with their Action and Condition."""
    applicable = []
    for statement in role.trust:
        principal = statement.get("Principal")
        if principal == "*":
            listed = ["*"]
        elif isinstance(principal, dict):
            listed = principal.get(kind, [])
            listed = [listed] if isinstance(listed, str) else list(listed)
        else:
            listed = []
        if any(str(p) in names | {"*"} for p in listed):
            applicable.append({k: v for k, v in statement.items() if k != "Principal"} | {"Resource": "*"})
    return evaluate([{"Statement": applicable}], action, role.arn, context)


def caller_names(caller: Principal) -> set[str]:
    """How a trust policy's Principal {"AWS": ...} may name the caller."""
    names = {caller.arn, caller.account, f"arn:aws:iam::{caller.account}:root"}
    if caller.principal_arn:
        names.add(caller.principal_arn)
    return names


def _required(params: dict[str, str], *keys: str) -> list[str]:
    """The values of required parameters, in STS's words when one is missing."""
    for key in keys:
        if params.get(key) is None:
            member = key[0].lower() + key[1:]
            raise StsError("ValidationError", f"1 validation error detected: Value null at '{member}' failed to "
                                              "satisfy constraint: Member must not be null")
    return [params[key] for key in keys]


def _only(params: dict[str, str], known: set[str], action: str) -> None:
    unknown = sorted({k.split(".", 1)[0] for k in params} - known)
    if unknown:
        raise StsError("ValidationError", f"{action} here does not support {', '.join(unknown)} "
                                          "(session policies and session tags are not implemented)")


def _session_name(session_name: str) -> str:
    if not _SESSION_NAME.fullmatch(session_name):
        raise StsError("ValidationError", f"1 validation error detected: Value '{session_name}' at "
                                          "'roleSessionName' failed to satisfy constraint: Member must have "
                                          "length between 2 and 64 and match [\\w+=,.@-]*")
    return session_name


def _requested_seconds(params: dict[str, str]) -> int:
    text = params.get("DurationSeconds")
    try:
        seconds = 3600 if text in (None, "") else int(text)
    except ValueError:
        raise StsError("ValidationError", "DurationSeconds must be a number") from None
    if seconds < 900:
        raise StsError("ValidationError", f"1 validation error detected: Value '{seconds}' at "
                                          "'durationSeconds' failed to satisfy constraint: Member must have "
                                          "value greater than or equal to 900")
    return seconds


def _within_role_limit(role: Role, seconds: int) -> int:
    if seconds > role.max_session_duration:
        raise StsError("ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set "
                                          "for this role.")
    return seconds


def _refused(code: str) -> StsError:
    return StsError(code, _REFUSALS[code])


class StsApi:
    def __init__(self, callers: Callers, region: str, saml_providers: list[SamlProvider] = (),
                 oidc_providers: list[dict] = ()):
        """oidc_providers: each {"arn", "key" (the condition keys' prefix: the url without
        https://), "params" (issuer, audience, keys, as iam/oidc.py takes them)}."""
        self.callers = callers
        self.principals = callers.principals
        self.region = region
        self.saml_providers = {p.arn: p for p in saml_providers}
        self.oidc_providers = {p["params"]["issuer"]: p for p in oidc_providers}

    async def handle(self, method: str, url: str, headers: dict[str, str], body: bytes, source_ip: str):
        from .api import Reply  # the HTTP reply type both APIs share

        try:
            text = body.decode("utf-8", "replace") if method == "POST" else urllib.parse.urlsplit(url).query
            params = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
            action = params.get("Action", "")
            # The federation actions are unsigned in AWS (botocore sends them so): the assertion
            # or token is the credential.
            caller = None if action in ("AssumeRoleWithSAML", "AssumeRoleWithWebIdentity") else \
                await self.callers.authenticate(method, url, headers, body, service="sts", region=self.region)
            handler = {"AssumeRole": self._assume_role, "GetCallerIdentity": self._get_caller_identity,
                       "AssumeRoleWithSAML": self._assume_role_with_saml,
                       "AssumeRoleWithWebIdentity": self._assume_role_with_web_identity}.get(action)
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
        _only(params, _ASSUME_ROLE_PARAMS, "AssumeRole")
        role_arn, session_name = _required(params, "RoleArn", "RoleSessionName")
        _session_name(session_name)
        if not _ROLE_ARN.fullmatch(role_arn):
            raise StsError("ValidationError", f"{role_arn} is invalid")
        seconds = _requested_seconds(params)

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
        if not trust_decision(role, "sts:AssumeRole", "AWS", caller_names(caller), context).allowed:
            raise denied
        if caller.role is not None and seconds > _CHAINED_MAX:
            raise StsError("ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for "
                                              "roles assuming roles.")
        _within_role_limit(role, seconds)
        expiration = self.callers.clock() + datetime.timedelta(seconds=seconds)
        return await self._issue("AssumeRole", role, session_name, caller.arn, expiration, None, source_ip)

    async def _issue(self, action: str, role: Role, session_name: str, caller_arn: str,
                     expiration: datetime.datetime, federation: dict | None, source_ip: str) -> str:
        """A new session of role: recorded in the backing database; its Credentials and
        AssumedRoleUser as STS answers them."""
        access_key = "ASIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        expiration = expiration.replace(microsecond=0)
        await self.callers.catalog.record_sts_session(access_key, role.name, role.account, session_name,
                                                      caller_arn, expiration, federation)
        secret_key, token = self.callers.catalog.sts_secret(access_key)
        session = self.principals.session(role, session_name)
        log.info("STS %s of %s by %s from %s: session %s, access key %s, until %s",
                 action, role.arn, caller_arn, source_ip, session_name, access_key, iso8601(expiration))
        return (f"<Credentials><AccessKeyId>{access_key}</AccessKeyId>"
                f"<SecretAccessKey>{escape(secret_key)}</SecretAccessKey>"
                f"<SessionToken>{escape(token)}</SessionToken><Expiration>{iso8601(expiration)}</Expiration>"
                f"</Credentials><AssumedRoleUser><AssumedRoleId>{escape(session.userid)}</AssumedRoleId>"
                f"<Arn>{escape(session.arn)}</Arn></AssumedRoleUser>")

    def _federated_role(self, role_arn: str, action: str, provider_arn: str, context: dict, source_ip: str,
                        why: str | None = None) -> Role:
        """The role, when its trust policy lets the provider's users assume it with action; why:
        a reason to refuse found before (logged, then refused the same way)."""
        role = self.principals.role(role_arn) if _ROLE_ARN.fullmatch(role_arn) else None
        if why is None and role is None:
            why = "no such role"  # told apart only in the log: AWS does not say which roles exist
        if why is None and not trust_decision(role, action, "Federated", {provider_arn}, context).allowed:
            why = "the role's trust policy does not allow it"
        if why is not None:
            log.info("%s of %s through %s from %s refused: %s", action, role_arn, provider_arn, source_ip, why)
            raise StsError("AccessDenied", f"Not authorized to perform {action}", 403)
        return role

    async def _assume_role_with_saml(self, params: dict[str, str], caller: None, source_ip: str) -> str:
        _only(params, _SAML_PARAMS, "AssumeRoleWithSAML")
        role_arn, provider_arn, encoded = _required(params, "RoleArn", "PrincipalArn", "SAMLAssertion")
        seconds = _requested_seconds(params)
        now = self.callers.clock()
        provider = self.saml_providers.get(provider_arn)
        try:
            if provider is None:
                raise SamlRefused("InvalidIdentityToken", "no such SAML provider")
            # Up to ~10 ms of parsing and canonicalisation for the largest assertion: off the
            # event loop that also relays the database sessions.
            assertion = await asyncio.to_thread(verify_response, encoded, provider, now)
            session_name = assertion.single(SESSION_NAME_ATTRIBUTE)
            if session_name is None or not _SESSION_NAME.fullmatch(session_name):
                raise SamlRefused("InvalidIdentityToken", f"RoleSessionName attribute missing or invalid: "
                                                          f"{session_name!r}")
            if not await self.callers.catalog.first_use_of_assertion(assertion.issuer, assertion.id,
                                                                     assertion.expires):
                raise SamlRefused("InvalidIdentityToken", f"assertion {assertion.id} was used before (a replay)")
        except SamlRefused as exc:
            log.info("STS AssumeRoleWithSAML of %s through %s from %s refused: %s", role_arn, provider_arn,
                     source_ip, exc)
            raise _refused(exc.code) from None

        account = provider.arn.split(":")[4]
        keys = {"saml:sub": assertion.subject, "saml:sub_type": assertion.subject_type, "saml:iss": assertion.issuer,
                "saml:aud": assertion.recipient, "saml:doc": f"{account}/{provider.name}",
                "saml:namequalifier": name_qualifier(assertion.issuer, account, provider.name)}
        context = caller_context(None, source_ip, now) | keys
        pairs = assertion.role_pairs()
        role = self._federated_role(role_arn, "sts:AssumeRoleWithSAML", provider.arn, context, source_ip,
                                    None if (role_arn, provider_arn) in pairs else
                                    f"the assertion's Role attribute names only {sorted(pairs)}")
        expiration = now + datetime.timedelta(seconds=_within_role_limit(role, seconds))
        # The session ends at the assertion's SessionNotOnOrAfter if that is sooner (STS API
        # reference), and, shiftguard's reading, at the SessionDuration attribute's limit too:
        # AWS documents that attribute for console sessions; an IdP that set it means no longer.
        if assertion.session_not_on_or_after is not None:
            expiration = min(expiration, assertion.session_not_on_or_after)
        limit = assertion.single(SESSION_DURATION_ATTRIBUTE)
        if limit is not None and limit.isdigit():
            expiration = min(expiration, now + datetime.timedelta(seconds=int(limit)))
        redshift = {name: assertion.attributes[REDSHIFT_ATTRIBUTES + name]
                    for name in ("DbUser", "AutoCreate", "DbGroups", "AllowDbUserOverride")
                    if REDSHIFT_ATTRIBUTES + name in assertion.attributes}
        inner = await self._issue("AssumeRoleWithSAML", role, session_name, f"{provider.arn}:{assertion.subject}",
                                  expiration, {"keys": keys, "redshift": redshift}, source_ip)
        return (inner + f"<Subject>{escape(assertion.subject)}</Subject>"
                f"<SubjectType>{escape(assertion.subject_type)}</SubjectType>"
                f"<Issuer>{escape(assertion.issuer)}</Issuer><Audience>{escape(assertion.recipient)}</Audience>"
                f"<NameQualifier>{escape(keys['saml:namequalifier'])}</NameQualifier>")

    async def _assume_role_with_web_identity(self, params: dict[str, str], caller: None, source_ip: str) -> str:
        _only(params, _WEB_IDENTITY_PARAMS, "AssumeRoleWithWebIdentity")
        role_arn, session_name, token = _required(params, "RoleArn", "RoleSessionName", "WebIdentityToken")
        _session_name(session_name)
        seconds = _requested_seconds(params)
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            issuer = None
        provider = self.oidc_providers.get(issuer) if isinstance(issuer, str) else None
        try:
            if provider is None:
                raise OidcRefused(f"no OpenID Connect provider for issuer {issuer!r}")
            claims = verified_claims(token, provider["params"])
            subject = claims.get("sub")
            if not isinstance(subject, str) or not subject or not subject.isprintable():
                raise OidcRefused("the token has no usable sub")
        except OidcExpired as exc:
            log.info("STS AssumeRoleWithWebIdentity of %s from %s refused: %s", role_arn, source_ip, exc)
            raise _refused("ExpiredTokenException") from None
        except OidcRefused as exc:
            log.info("STS AssumeRoleWithWebIdentity of %s from %s refused: %s", role_arn, source_ip, exc)
            raise _refused("InvalidIdentityToken") from None

        audience = claims["aud"] if isinstance(claims["aud"], str) else \
            next(a for a in claims["aud"] if a in provider["params"]["audience"])
        keys = {f"{provider['key']}:sub": subject, f"{provider['key']}:aud": audience}
        if isinstance(claims.get("amr"), (str, list)):
            keys[f"{provider['key']}:amr"] = claims["amr"]
        context = caller_context(None, source_ip, self.callers.clock()) | keys
        role = self._federated_role(role_arn, "sts:AssumeRoleWithWebIdentity", provider["arn"], context, source_ip)
        expiration = self.callers.clock() + datetime.timedelta(seconds=_within_role_limit(role, seconds))
        inner = await self._issue("AssumeRoleWithWebIdentity", role, session_name, f"{provider['arn']}:{subject}",
                                  expiration, {"keys": keys, "redshift": {}}, source_ip)
        return (f"<SubjectFromWebIdentityToken>{escape(subject)}</SubjectFromWebIdentityToken>" + inner
                + f"<Provider>{escape(provider['key'])}</Provider><Audience>{escape(audience)}</Audience>")


def caller_context(principal: Principal | None, source_ip: str, now: datetime.datetime) -> dict:
    """The global condition keys of a request by principal, or of an unsigned one (IAM User Guide,
    "AWS global condition context keys"); aws:username exists for IAM users only; a federated
    session adds its provider's keys (saml:sub, ...)."""
    context = {"aws:SourceIp": source_ip, "aws:SecureTransport": False, "aws:CurrentTime": iso8601(now)}
    if principal is None:
        return context
    context.update({"aws:userid": principal.userid, "aws:PrincipalArn": principal.principal_arn or principal.arn,
                    "aws:PrincipalAccount": principal.account,
                    "aws:PrincipalType": "AssumedRole" if principal.role else "User"})
    if principal.role is None:
        context["aws:username"] = principal.name
    context.update({f"aws:PrincipalTag/{k}": v for k, v in principal.tags.items()})
    context.update(principal.federation.get("keys", {}))
    return context
