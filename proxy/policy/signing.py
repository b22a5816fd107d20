"""Signatures on what the proxy writes for the private schema's procedures to turn into SQL
(catalog/schema.sql `shiftguard.signed`): issued || ':' || HMAC-SHA-256 under the backend secret
of purpose || ':' || issued || ':' || payload, issued being the Unix time of signing. A user
calling a procedure directly cannot hand it text of their own, and a signature seen once (in
pg_stat_activity, a log) cannot be used again later: shiftguard.signed refuses one issued more
than LIFETIME seconds away from the start of the statement that carries it. The proxy signs
right before sending, so a plan holding a signature is never cached (statements.classify)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

Signer = Callable[[str, str], str]

# Seconds, either way (clocks of proxy and backend may differ); the same in shiftguard.signed.
LIFETIME = 600


def signer(secret: bytes, clock: Callable[[], float] = time.time) -> Signer:
    def sign(purpose: str, payload: str) -> str:
        issued = int(clock())
        return f"{issued}:" + hmac.new(secret, f"{purpose}:{issued}:{payload}".encode(), hashlib.sha256).hexdigest()
    return sign


def unsigned(purpose: str, payload: str) -> str:
    """For translators without a secret (unit tests): the procedures refuse it."""
    return ""
