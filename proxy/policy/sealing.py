"""Secrets the proxy must hand the private schema's procedures in SQL text (an identity
provider's client_secret), sealed: AES-256-GCM under a key derived from the backend secret, so
that the statement text (pg_stat_activity, PostgreSQL's own statement and error logs) never
shows them. What is stored is the sealed form; only a holder of the backend secret opens it.
Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..protocol import sqlstate
from .tokens import GrammarError

PREFIX = "sealed:v1:"
Sealer = Callable[[str, str], str]  # (label, value) -> sealed value


def _aead(secret: bytes) -> AESGCM:
    # No other use of the backend secret (signing.py: purpose:payload, backend passwords:
    # role:name) hashes text that starts with a NUL.
    return AESGCM(hmac.new(secret, b"\0shiftguard seal v1", hashlib.sha256).digest())


def sealer(secret: bytes) -> Sealer:
    aead = _aead(secret)

    def seal(label: str, value: str) -> str:
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, value.encode(), label.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()
    return seal


def opener(secret: bytes) -> Callable[[str, str], str]:
    """open(label, sealed) -> the value; raises ValueError for anything not sealed under this
    backend secret with this label."""
    aead = _aead(secret)

    def open_sealed(label: str, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise ValueError("not a sealed value")
        try:
            data = base64.urlsafe_b64decode(sealed[len(PREFIX):])
            return aead.decrypt(data[:12], data[12:], label.encode()).decode()
        except Exception:
            raise ValueError("not a sealed value of this backend") from None
    return open_sealed


def unsealable(label: str, value: str) -> str:
    """For translators without a backend secret (unit tests): refuses."""
    raise GrammarError(f"shiftguard cannot keep {label} without its backend secret", sqlstate.FEATURE_NOT_SUPPORTED)
