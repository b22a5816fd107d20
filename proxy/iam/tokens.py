"""Temporary database credentials: the DbPassword that GetClusterCredentials returns, a JWT
signed with an Ed25519 key (pyjwt), bound to the user and its prefix, the database if given, the
cluster, a validity window and a unique id. Pure apart from reading or making the key file.

Over TLS a login asks for the password in clear (auth code 3) and gets the token itself, which
is verified here. Without TLS it asks for MD5, which drivers compute over the prefixed user
name, so each minted token is also recorded in the backing database with md5(token || user)
(catalog/store.py). Either way the record must exist and not be revoked.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ALGORITHM = "EdDSA"
PREFIXES = ("IAM", "IAMA", "IAMR")
_PREFIXED = re.compile(r"(IAMA|IAMR|IAM):(.+)", re.DOTALL)


class TokenRefused(Exception):
    """Why a token is not accepted (kept for the log; the client sees 28P01)."""


@dataclass(frozen=True)
class Minted:
    db_user: str          # as the client logs in: IAM:alice
    password: str         # the JWT
    expiration: datetime.datetime
    token_id: str
    md5: str              # md5(password || db_user), what an MD5 login proves knowledge of


@dataclass(frozen=True)
class Claims:
    prefix: str
    user: str
    database: str | None
    groups: tuple[str, ...]
    token_id: str


def split_prefixed(login: str) -> tuple[str, str] | None:
    """'IAMA:alice' -> ('IAMA', 'alice'); None for an ordinary user name."""
    match = _PREFIXED.fullmatch(login)
    return (match.group(1), match.group(2)) if match else None


def load_or_make_key(path: Path) -> Ed25519PrivateKey:
    """The signing key from a PEM file, made (mode 0600) when the file does not exist."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: the token key must be an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


class TokenAuthority:
    """Mints and verifies the tokens of one cluster."""

    def __init__(self, key: Ed25519PrivateKey, cluster: str):
        self._key = key
        self._public = key.public_key()
        self._cluster = cluster
        self._issuer = f"shiftguard:{cluster}"

    def mint(self, prefix: str, user: str, database: str | None, groups: list[str], seconds: int,
             now: datetime.datetime | None = None) -> Minted:
        if prefix not in PREFIXES:
            raise ValueError(f"unknown prefix {prefix}")
        now = now or datetime.datetime.now(datetime.timezone.utc)
        expiration = (now + datetime.timedelta(seconds=seconds)).replace(microsecond=0)
        token_id = str(uuid.uuid4())
        claims = {"iss": self._issuer, "aud": self._cluster, "sub": user, "pfx": prefix,
                  "iat": int(now.timestamp()), "nbf": int(now.timestamp()) - 5, "exp": int(expiration.timestamp()),
                  "jti": token_id}
        if database:
            claims["db"] = database
        if groups:
            claims["grp"] = list(groups)
        password = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        db_user = f"{prefix}:{user}"
        return Minted(db_user, password, expiration, token_id,
                      md5=hashlib.md5((password + db_user).encode()).hexdigest())

    def verify(self, password: str, login: str, database: str) -> Claims:
        """A token sent as a password by `login` (IAM:alice) for `database`; raises TokenRefused."""
        prefixed = split_prefixed(login)
        if prefixed is None:
            raise TokenRefused("not a temporary-credentials user name")
        try:
            claims = jwt.decode(password, self._public, algorithms=[ALGORITHM], audience=self._cluster,
                                issuer=self._issuer, leeway=0,
                                options={"require": ["exp", "iat", "nbf", "jti", "sub", "aud", "iss"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("token not yet valid") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):  # both name the cluster
            raise TokenRefused("token for another cluster") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("invalid token: bad signature (tampered with, or signed by another key)") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(f"invalid token: {type(exc).__name__}") from None
        if (claims.get("pfx"), claims.get("sub")) != prefixed:
            raise TokenRefused("token for another user")
        if claims.get("db") is not None and claims["db"] != database:
            raise TokenRefused("token for another database")
        return Claims(prefixed[0], prefixed[1], claims.get("db"), tuple(claims.get("grp", ())), claims["jti"])
