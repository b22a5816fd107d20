"""OIDC tokens as logins (native identity-provider federation, auth code 14): which stored
provider a token is for, whether it is genuinely one of that provider's (verified_claims, which
STS AssumeRoleWithWebIdentity uses too), and the Redshift user and roles it stands for. No
network: keys come from the provider's PARAMETERS (jwks, jwks_file, public_key; policy/idp.py).
Reading a jwks_file is the only I/O here.

A refusal raises OidcRefused with the reason for the proxy's log; the client is never told it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..policy.identifiers import MAX_REDSHIFT_NAME_BYTES, spelled_short
from ..policy.idp import public_key_of_pem, public_keys_of_jwks
from ..policy.tokens import GrammarError

# Seconds of clock difference tolerated on exp and nbf.
LEEWAY = 60
# Azure's user claims in order of preference when the provider names none (reference §5).
USER_CLAIMS = ("upn", "preferred_username", "email", "sub")
# A user's name may be Redshift's longest (its role has a short name: policy/identifiers.py); a
# role made of a group keeps PostgreSQL's limit (the namespace:group form must stay whole for
# the roles of a namespace to be told apart).
MAX_USER_BYTES = MAX_REDSHIFT_NAME_BYTES
MAX_ROLE_BYTES = 63


class OidcRefused(Exception):
    """The token is not a login; the message is the reason, for the proxy's log only."""


class OidcExpired(OidcRefused):
    """The token was genuine but its exp has passed."""


@dataclass(frozen=True)
class IdpIdentity:
    provider: str
    user: str          # namespace:name
    roles: list[str]   # namespace:group, one per group in the token


def choose_provider(token: str, providers: list[dict], provider_name: str | None) -> dict:
    """By the startup packet's provider_name when given, else by the token's (unverified) issuer.
    Nothing here is trusted yet: verify() checks the token against the provider chosen."""
    if provider_name:
        for provider in providers:
            if provider["name"] == provider_name.lower():
                return provider
        raise OidcRefused(f"no identity provider named {provider_name!r}")
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError as exc:
        raise OidcRefused(f"not a JWT: {exc}") from None
    matching = [p for p in providers if p["params"].get("issuer") == issuer]
    if len(matching) != 1:
        raise OidcRefused(f"{'no' if not matching else 'more than one'} identity provider has issuer {issuer!r}")
    return matching[0]


def _algorithms(key) -> list[str]:
    """The algorithms a key of this type signs with; never 'none', never HMAC (HS*): a public
    key must not be usable as a shared secret (algorithm confusion)."""
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": ["ES256"], "secp384r1": ["ES384"], "secp521r1": ["ES512"],
                "secp256k1": ["ES256K"]}.get(key.curve.name, [])
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return ["EdDSA"]
    return []


def _keys(params: dict, kid: str | None) -> list:
    """The provider's public keys that may have signed a token with this kid."""
    try:
        if "public_key" in params:
            return [public_key_of_pem(params["public_key"])]
        if "jwks" in params:
            jwks = params["jwks"]
        else:
            with open(params["jwks_file"], encoding="utf-8") as file:
                jwks = json.load(file)
        keys = public_keys_of_jwks(jwks)
    except (OSError, ValueError, KeyError) as exc:
        raise OidcRefused(f"the provider's keys are unusable: {exc}") from None
    except GrammarError as exc:
        raise OidcRefused(f"the provider's keys are unusable: {exc}") from None
    return [k.key for k in keys if kid is None or k.key_id is None or k.key_id == kid]


def verify(token: str, provider: dict) -> IdpIdentity:
    """The identity a token proves for provider: signature by one of its keys with an algorithm
    of that key's type, issuer equal, an audience in its list, exp (required) and nbf within
    LEEWAY; then the user and group claims."""
    if not provider["enabled"]:
        raise OidcRefused(f"identity provider {provider['name']} is disabled")
    params = provider["params"]
    claims = verified_claims(token, params)
    namespace = provider["namespace"]
    user = _user_name(claims, params.get("user_claim"))
    name = f"{namespace}:{user}"
    if len(name.encode()) > MAX_USER_BYTES:
        raise OidcRefused(f"user name {name!r} is longer than {MAX_USER_BYTES} bytes")
    # A name spelled as a long name's short one (prefix#hash, identifiers.py; a UPN may hold '#')
    # would be the role of that long name, another user's.
    if spelled_short(name):
        raise OidcRefused(f"user name {name!r} ends as the short name of a longer one")
    roles = []
    for group in _groups(claims, params.get("group_claim") or "groups"):
        role = f"{namespace}:{group.lower()}"
        if len(role.encode()) <= MAX_ROLE_BYTES and role not in roles:
            roles.append(role)
    return IdpIdentity(provider["name"], name, roles)


def verified_claims(token: str, params: dict) -> dict:
    """The claims of a token signed by one of the keys in params (with an algorithm of that key's
    type), whose issuer is params' issuer and audience one of its audience list, with exp (required)
    and nbf within LEEWAY. Raises OidcExpired or OidcRefused."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise OidcRefused(f"not a JWT: {exc}") from None
    algorithm = header.get("alg")
    claims = None
    reason = f"no key of the provider takes algorithm {algorithm!r}"
    for key in _keys(params, header.get("kid")):
        if algorithm not in _algorithms(key):
            continue
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm], audience=params["audience"],
                                issuer=params["issuer"], leeway=LEEWAY,
                                options={"require": ["exp", "iss", "aud"]})
            break
        except jwt.InvalidSignatureError:
            reason = "bad signature"
        except jwt.ExpiredSignatureError as exc:
            raise OidcExpired(f"token refused: {exc}") from None
        except jwt.PyJWTError as exc:
            raise OidcRefused(f"token refused: {type(exc).__name__}: {exc}") from None
    if claims is None:
        raise OidcRefused(reason)
    return claims


def _clean(value) -> str | None:
    if isinstance(value, str) and value and value.isprintable():
        return value
    return None


def _user_name(claims: dict, claim: str | None) -> str:
    """The user's name from its claim, lower-cased: Redshift folds unquoted user names to lower
    case, and Azure's UPNs and e-mail addresses are case-insensitive."""
    for name in ([claim] if claim else USER_CLAIMS):
        value = _clean(claims.get(name))
        if value is not None:
            return value.lower()
    raise OidcRefused(f"the token has no user claim ({claim or ', '.join(USER_CLAIMS)})")


def _groups(claims: dict, claim: str) -> list[str]:
    value = claims.get(claim, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise OidcRefused(f"the token's {claim} claim is not a list")
    return [g for g in (_clean(v) for v in value) if g is not None]
