"""Password hashing of the authentication exchanges (pure functions, no I/O).

MD5 (auth code 5): the client sends 'md5' || md5(md5(password || user) || salt); Redshift stores
a clear-text password as 'md5' || md5(password || user), the same inner hash.
"""

from __future__ import annotations

import hashlib
import hmac


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
