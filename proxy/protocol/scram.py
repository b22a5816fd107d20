"""The server side of SCRAM-SHA-256 as PostgreSQL speaks it (RFC 5802/7677, no channel binding).

Written here rather than taken from scramp because PostgreSQL clients send an empty user name
in the client-first message (the name is in the startup packet) and scramp's server refuses an
empty name; scramp still makes the verifiers and logs the proxy in to PostgreSQL. Pure: text
in, text out, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


class ScramFailure(Exception):
    """The client's messages are malformed or its proof is wrong."""


def _attributes(message: str) -> dict[str, str]:
    pairs = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramFailure(f"malformed SCRAM attribute {part[:10]!r}")
        pairs.setdefault(part[0], part[2:])
    return pairs


class ScramServer:
    """One exchange against a stored verifier (salt, StoredKey, ServerKey, iterations)."""

    def __init__(self, salt: bytes, stored_key: bytes, server_key: bytes, iterations: int):
        self._salt, self._stored_key, self._server_key = salt, stored_key, server_key
        self._iterations = iterations
        self._client_first_bare = self._server_first = ""
        self._nonce = ""
        self._auth_message = b""

    def server_first(self, client_first: str) -> str:
        """client-first-message -> server-first-message."""
        gs2, _, bare = client_first.partition(",")
        if gs2 not in ("n", "y"):  # 'p': channel binding, which we do not offer
            raise ScramFailure("channel binding is not supported")
        authzid, _, bare = bare.partition(",")
        if authzid:
            raise ScramFailure("authorization identities are not supported")
        attrs = _attributes(bare)
        client_nonce = attrs.get("r", "")
        if not client_nonce or "n" not in attrs:
            raise ScramFailure("client-first message lacks n= or r=")
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        self._server_first = f"r={self._nonce},s={base64.b64encode(self._salt).decode()},i={self._iterations}"
        return self._server_first

    def verify_final(self, client_final: str) -> bool:
        """client-final-message -> whether the proof holds (constant time)."""
        without_proof, sep, proof_text = client_final.rpartition(",p=")
        if not sep:
            raise ScramFailure("client-final message lacks a proof")
        attrs = _attributes(without_proof)
        if attrs.get("r") != self._nonce or attrs.get("c") not in ("biws", "eSws"):  # 'n,,' / 'y,,'
            raise ScramFailure("client-final message does not match the exchange")
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except ValueError:
            raise ScramFailure("the proof is not base64") from None
        self._auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.new(self._stored_key, self._auth_message, hashlib.sha256).digest()
        if len(proof) != len(signature):
            return False
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        return hmac.compare_digest(hashlib.sha256(client_key).digest(), self._stored_key)

    def server_final(self) -> str:
        signature = hmac.new(self._server_key, self._auth_message, hashlib.sha256).digest()
        return f"v={base64.b64encode(signature).decode()}"
