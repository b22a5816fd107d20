"""Temporary credentials: what the token authority accepts and refuses."""

from __future__ import annotations

import datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.iam.tokens import TokenAuthority, TokenRefused, load_or_make_key, split_prefixed

KEY = Ed25519PrivateKey.generate()
AUTHORITY = TokenAuthority(KEY, "shiftguard")
def now() -> datetime.datetime:
    """The time when a token is made (each test's own: a module-wide one grows stale in a long run)."""
    return datetime.datetime.now(datetime.timezone.utc)


def test_round_trip_and_binding():
    minted = AUTHORITY.mint("IAMA", "alice", "dev", ["readers"], 900)
    assert minted.db_user == "IAMA:alice"
    claims = AUTHORITY.verify(minted.password, "IAMA:alice", "dev")
    assert (claims.user, claims.groups, claims.token_id) == ("alice", ("readers",), minted.token_id)


@pytest.mark.parametrize("make, login, database, reason", [
    (lambda: AUTHORITY.mint("IAM", "alice", None, [], 900, now=now() - datetime.timedelta(seconds=1000)).password,
     "IAM:alice", "dev", "expired"),
    (lambda: AUTHORITY.mint("IAM", "alice", None, [], 900, now=now() + datetime.timedelta(seconds=600)).password,
     "IAM:alice", "dev", "not yet valid"),
    (lambda: TokenAuthority(KEY, "other").mint("IAM", "alice", None, [], 900).password, "IAM:alice", "dev",
     "another cluster"),
    (lambda: TokenAuthority(Ed25519PrivateKey.generate(), "shiftguard").mint("IAM", "alice", None, [], 900).password,
     "IAM:alice", "dev", "invalid token"),
    (lambda: AUTHORITY.mint("IAM", "alice", "dev", [], 900).password, "IAM:alice", "prod", "another database"),
    (lambda: AUTHORITY.mint("IAM", "alice", None, [], 900).password, "IAM:bob", "dev", "another user"),
    (lambda: AUTHORITY.mint("IAM", "alice", None, [], 900).password, "IAMA:alice", "dev", "another user"),
    (lambda: AUTHORITY.mint("IAM", "alice", None, [], 900).password, "alice", "dev", "not a temporary"),
    # algorithm confusion: HS256 with the public key as the HMAC secret
    (lambda: jwt.encode({"iss": "shiftguard:shiftguard", "aud": "shiftguard", "sub": "alice", "pfx": "IAM",
                         "iat": int(now().timestamp()), "nbf": int(now().timestamp()), "exp": int(now().timestamp()) + 900,
                         "jti": "x"},
                        KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
                        algorithm="HS256"), "IAM:alice", "dev", "invalid token"),
    (lambda: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "IAM:alice", "dev", "invalid token"),
])
def test_refusals(make, login, database, reason):
    with pytest.raises(TokenRefused, match=reason):
        AUTHORITY.verify(make(), login, database)


def test_prefixes_and_key_file(tmp_path):
    assert split_prefixed("IAMR:role") == ("IAMR", "role") and split_prefixed("IAMX:a") is None
    key = load_or_make_key(tmp_path / "k" / "signing.pem")
    assert oct((tmp_path / "k" / "signing.pem").stat().st_mode & 0o777) == "0o600"
    assert load_or_make_key(tmp_path / "k" / "signing.pem").private_bytes_raw() == key.private_bytes_raw()
