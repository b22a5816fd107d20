"""Password hashing of the authentication exchanges (pure functions, no I/O).

MD5 (auth code 5): the client sends 'md5' || md5(md5(password || user) || salt); Redshift stores
a clear-text password as 'md5' || md5(password || user), the same inner hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import scramp


def redshift_md5(password: str, user: str) -> str:
    """Redshift's stored form of a clear-text password: 'md5' || md5(password || user name)."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def md5_response(stored: str, salt: bytes) -> bytes:
    """What a client holding the password behind `stored` answers to an MD5 challenge."""
    return b"md5" + hashlib.md5(stored[3:].encode() + salt).hexdigest().encode()


def verify_md5_response(stored: str | None, salt: bytes, response: bytes) -> bool:
    """Constant-time check of a PasswordMessage payload (NUL stripped) against the stored hash.

    With no stored hash (unknown user, disabled password) the same work is done against a
    dummy so that the time taken does not tell whether the user exists.
    """
    expected = md5_response(stored or "md5" + "0" * 32, salt)
    return hmac.compare_digest(expected, response) and stored is not None


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier in PostgreSQL's pg_authid format: SCRAM-SHA-256$<iterations>:
    <salt>$<StoredKey>:<ServerKey>, base64. Computed here so a password never reaches a server."""
    salt, stored_key, server_key, iterations = scramp.ScramMechanism().make_auth_info(
        password, iteration_count=iterations)
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def parse_scram_verifier(verifier: str) -> tuple[bytes, bytes, bytes, int]:
    """(salt, stored key, server key, iterations) of a verifier made by scram_verifier."""
    method, rest = verifier.split("$", 1)
    if method != "SCRAM-SHA-256":
        raise ValueError("not a SCRAM-SHA-256 verifier")
    head, keys = rest.split("$", 1)
    iterations, salt = head.split(":", 1)
    stored_key, server_key = keys.split(":", 1)
    b64 = base64.b64decode
    return b64(salt), b64(stored_key), b64(server_key), int(iterations)
