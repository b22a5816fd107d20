"""Redshift's native identity-provider statements: pure grammar and the check of their PARAMETERS
JSON. The private schema's procedures (catalog/idp.sql) check who may run them and store the
providers; proxy/iam/oidc.py verifies the tokens at login.

    CREATE IDENTITY PROVIDER name TYPE azure NAMESPACE 'ns' [PARAMETERS 'json']
        [APPLICATION_ARN 'arn'] [IAM_ROLE 'arn']
        [AUTO_CREATE_ROLES [TRUE [{INCLUDE | EXCLUDE} GROUPS LIKE 'pattern'] | FALSE]]
        [ENABLE | DISABLE]                                  (shiftguard's addition)
    ALTER IDENTITY PROVIDER name [PARAMETERS 'json'] [NAMESPACE 'ns'] [IAM_ROLE 'arn']
        [AUTO_CREATE_ROLES ...] [DISABLE | ENABLE]
    DROP IDENTITY PROVIDER name [CASCADE]

(Redshift Database Developer Guide, r_CREATE_IDENTITY_PROVIDER, r_ALTER_IDENTITY_PROVIDER,
r_DROP_IDENTITY_PROVIDER.) ALTER's PARAMETERS replace the old ones entirely, as Redshift does.

PARAMETERS: Redshift's issuer, client_id, client_secret and audience (a list), and, since the
proxy never fetches the issuer's keys over the network, one of shiftguard's key sources: `jwks`
(an inline JWKS object), `jwks_file` (an absolute path, read at each login) or `public_key` (PEM).
Optional: `user_claim` (default upn, preferred_username, email, sub: the first present) and
`group_claim` (default groups).
"""

from __future__ import annotations

import json

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..protocol import sqlstate
from .tokens import Cursor, GrammarError

PROVIDER_TYPES = ("azure",)
# Never shown back (svv_identity_providers) and never logged (audit/records.py).
SECRET_PARAMETERS = ("client_secret", "client_pk_base64", "client_pk_password")
KEY_SOURCES = ("jwks", "jwks_file", "public_key")
# Namespaces that would read as another kind of name: system roles, groups, IAM users.
_RESERVED_NAMESPACES = ("sys", "ds", "grp", "iam", "iama", "iamr", "pg")
_STRING_PARAMETERS = ("issuer", "client_id", "client_secret", "client_x5t", "client_pk_base64",
                      "client_pk_password", "jwks_file", "public_key", "user_claim", "group_claim")


def _bad(message: str) -> GrammarError:
    return GrammarError(message, sqlstate.INVALID_PARAMETER_VALUE)


def check_parameters(text: str) -> dict:
    """The PARAMETERS JSON, checked: what a login needs is present and usable. audience may be
    given as one string; it is stored as a list."""
    try:
        params = json.loads(text)
    except ValueError:
        raise _bad("identity provider PARAMETERS must be a JSON object") from None
    if not isinstance(params, dict):
        raise _bad("identity provider PARAMETERS must be a JSON object")
    for key in _STRING_PARAMETERS:
        if key in params and not (isinstance(params[key], str) and params[key]):
            raise _bad(f'identity provider parameter "{key}" must be a non-empty string')
    if "issuer" not in params:
        raise _bad('identity provider PARAMETERS need "issuer"')
    audience = params.get("audience")
    if isinstance(audience, str):
        audience = [audience]
    if not isinstance(audience, list) or not audience or not all(isinstance(a, str) and a for a in audience):
        raise _bad('identity provider PARAMETERS need "audience", a list of strings')
    params["audience"] = audience
    sources = [key for key in KEY_SOURCES if key in params]
    if len(sources) != 1:
        raise _bad("identity provider PARAMETERS need exactly one of jwks, jwks_file or public_key: "
                   "shiftguard does not fetch the issuer's keys over the network")
    if "jwks" in params:
        public_keys_of_jwks(params["jwks"])
    elif "public_key" in params:
        public_key_of_pem(params["public_key"])
    elif not params["jwks_file"].startswith("/"):
        raise _bad('identity provider parameter "jwks_file" must be an absolute path')
    return params


def public_keys_of_jwks(jwks) -> list[jwt.PyJWK]:
    """The keys of a JWKS object; symmetric keys (kty oct) are refused: a token verified with a
    key stored here must have been signed by the IdP's private key."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise _bad('identity provider parameter "jwks" must be a JWKS object: {"keys": [...]}')
    keys = []
    for entry in jwks["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            raise _bad("identity provider JWKS keys must be public RSA, EC or OKP keys")
        try:
            keys.append(jwt.PyJWK(entry))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise _bad(f"identity provider JWKS key is not usable: {exc}") from None
        if not hasattr(keys[-1].key, "public_numbers") and not hasattr(keys[-1].key, "public_bytes"):
            raise _bad("identity provider JWKS keys must be public keys")
        if hasattr(keys[-1].key, "private_bytes"):
            raise _bad("identity provider JWKS holds a private key; give the public key only")
    return keys


def public_key_of_pem(pem: str):
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise _bad('identity provider parameter "public_key" must be a PEM public key') from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey,
                            ed448.Ed448PublicKey)):
        raise _bad('identity provider parameter "public_key" must be an RSA, EC or Ed25519 key')
    return key


def _namespace(cursor: Cursor) -> str:
    token = cursor.peek()
    namespace = cursor.string("namespace") if token is not None and token.name == "SCONST" else cursor.name("namespace")
    check_namespace(namespace)
    return namespace


def check_namespace(namespace: str) -> None:
    if not namespace or any(c in namespace for c in ":/\n\"") or len(namespace.encode()) > 40:
        raise _bad(f'namespace "{namespace}" must be 1-40 bytes without ":", "/", quotes or newlines')
    if namespace.lower() in _RESERVED_NAMESPACES:
        raise _bad(f'namespace "{namespace}" is reserved')


def _auto_create_roles(cursor: Cursor) -> dict:
    """AUTO_CREATE_ROLES [TRUE [{INCLUDE | EXCLUDE} GROUPS LIKE 'pattern'] | FALSE]; a bare
    AUTO_CREATE_ROLES is TRUE (Redshift)."""
    if cursor.accept("FALSE"):
        return {"auto_create_roles": False, "groups_filter": None}
    cursor.accept("TRUE")
    result: dict = {"auto_create_roles": True, "groups_filter": None}
    for kind in ("INCLUDE", "EXCLUDE"):
        if cursor.accept(kind):
            cursor.expect("GROUPS", "LIKE")
            result["groups_filter"] = {"mode": kind.lower(), "pattern": cursor.string("pattern")}
    return result


def _clauses(cursor: Cursor, allowed: tuple[str, ...]) -> dict:
    spec: dict = {}
    seen: set[str] = set()
    while not cursor.at_end():
        token = cursor.peek()
        word = token.word if token.word in allowed or token.word in ("ENABLE", "DISABLE") else None
        if word is None:
            raise GrammarError(f'syntax error at or near "{token.text}"')
        clause = "ENABLE" if word == "DISABLE" else word
        if clause in seen:
            raise GrammarError(f"{word} given twice")
        seen.add(clause)
        cursor.next()
        if word == "PARAMETERS":
            spec["params"] = check_parameters(cursor.string("JSON object"))
        elif word == "NAMESPACE":
            spec["namespace"] = _namespace(cursor)
        elif word == "APPLICATION_ARN":
            spec["application_arn"] = cursor.string("ARN")
        elif word == "IAM_ROLE":
            spec["iam_role"] = cursor.string("ARN")
        elif word == "AUTO_CREATE_ROLES":
            spec.update(_auto_create_roles(cursor))
        else:
            spec["enabled"] = word == "ENABLE"
    return spec


def parse_create(cursor: Cursor) -> dict:
    """CREATE IDENTITY PROVIDER consumed."""
    name = cursor.name("identity provider name")
    cursor.expect("TYPE")
    kind = cursor.name("identity provider type").lower()
    if kind not in PROVIDER_TYPES:
        raise GrammarError(f'identity provider type "{kind}" is not supported by shiftguard (azure: any OIDC '
                           f'issuer whose tokens carry the user and groups)', sqlstate.FEATURE_NOT_SUPPORTED)
    cursor.expect("NAMESPACE")
    spec = {"name": name, "type": kind, "namespace": _namespace(cursor)}
    spec.update(_clauses(cursor, ("PARAMETERS", "APPLICATION_ARN", "IAM_ROLE", "AUTO_CREATE_ROLES")))
    if "params" not in spec:
        raise _bad("CREATE IDENTITY PROVIDER needs PARAMETERS with issuer, audience and the key material")
    return spec


def parse_alter(cursor: Cursor) -> dict:
    """ALTER IDENTITY PROVIDER consumed."""
    name = cursor.name("identity provider name")
    spec = _clauses(cursor, ("PARAMETERS", "NAMESPACE", "IAM_ROLE", "AUTO_CREATE_ROLES"))
    if not spec:
        raise GrammarError("ALTER IDENTITY PROVIDER takes PARAMETERS, NAMESPACE, IAM_ROLE, AUTO_CREATE_ROLES, "
                           "ENABLE or DISABLE")
    return {"name": name, **spec}


def parse_drop(cursor: Cursor) -> tuple[str, bool]:
    """DROP IDENTITY PROVIDER consumed: (name, cascade)."""
    name = cursor.name("identity provider name")
    cascade = cursor.accept("CASCADE")
    cursor.end()
    return name, cascade


def seal_secrets(spec: dict, seal) -> dict:
    """spec (from parse_create / parse_alter, or the configuration's) with the secrets of its
    parameters sealed (policy/sealing.py), as they are stored: no statement text holds them."""
    params = spec.get("params") or {}
    for key in SECRET_PARAMETERS:
        if key in params:
            params[key] = seal(key, params[key])
    return spec


def as_json(spec: dict) -> str:
    return json.dumps(spec, separators=(",", ":"))
