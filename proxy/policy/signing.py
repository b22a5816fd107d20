"""Signatures on what the proxy writes for the private schema's procedures to turn into SQL
(catalog/schema.sql `shiftguard.signed`): HMAC-SHA-256 under the backend secret of
purpose || ':' || payload, so a user calling a procedure directly cannot hand it text of their own."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

Signer = Callable[[str, str], str]


def signer(secret: bytes) -> Signer:
    def sign(purpose: str, payload: str) -> str:
        return hmac.new(secret, f"{purpose}:{payload}".encode(), hashlib.sha256).hexdigest()
    return sign


def unsigned(purpose: str, payload: str) -> str:
    """For translators without a secret (unit tests): the procedures refuse it."""
    return ""
