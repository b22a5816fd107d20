"""Password logins: which method to offer, the exchanges, and the throttle for repeated failures.

Methods (reference/redshift-iam.md §4): MD5 (code 5) over the name the client logged in with;
Redshift's SHA-256 digest (code 13) for users stored in that form, to Redshift drivers;
SCRAM-SHA-256 (protocol/scram.py) to PostgreSQL-native clients when configured and the user has a SCRAM
verifier, never to a Redshift driver (the Redshift JDBC driver does not implement it);
cleartext (code 3) only over TLS, for a SHA-256 user whose client cannot do code 13.
Every failure, whatever its cause, gets the same answer and about the same work.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
import time
from collections import deque
from dataclasses import dataclass

from ..catalog.store import UserRecord
from ..endpoint import Endpoint
from ..protocol import messages as m
from ..protocol.auth import parse_scram_verifier, redshift_md5, scram_verifier, verify_md5_response
from ..protocol.scram import ScramFailure, ScramServer

AUTH_DIGEST = 13
F_DIGEST_RESPONSE = ord("d")
_AUTH_MESSAGE_LIMIT = 10_000
# Answers for users that do not exist or have no usable password: the exchange runs against
# these and fails, so that it looks and costs the same as a wrong password.
_DUMMY_SHA256 = "0" * 64
_DUMMY_SALT = os.urandom(32).hex()
_DUMMY_SCRAM = scram_verifier(os.urandom(16).hex())


class Method(enum.Enum):
    MD5 = "md5"
    DIGEST = "sha256 digest"
    SCRAM = "SCRAM-SHA-256"
    CLEARTEXT = "cleartext"


def choose_method(record: UserRecord | None, *, redshift_driver: bool, tls: bool, scram: bool) -> Method:
    """The method to ask for. An unknown user is treated as the common case (a password set in
    clear text: MD5 and SCRAM verifiers), so the method does not tell whether a user exists."""
    has_md5 = record is None or record.password_md5 is not None
    has_sha256 = record is not None and record.password_sha256 is not None
    has_scram = record is None or record.password_scram is not None
    if redshift_driver:
        return Method.DIGEST if has_sha256 else Method.MD5
    if scram and has_scram:
        return Method.SCRAM
    if has_md5:
        return Method.MD5
    if has_sha256 and tls:
        return Method.CLEARTEXT
    return Method.MD5  # nothing usable: the exchange fails like a wrong password


async def _read(client: Endpoint, expected: int) -> bytes:
    """The next authentication message, skipping the Flush redshift_connector sends after one."""
    while True:
        kind, body = await client.read_message(_AUTH_MESSAGE_LIMIT)
        if kind == m.F_FLUSH:
            continue
        if kind != expected:
            raise m.ProtocolViolation(f"expected password response, got message type {chr(kind)!r}")
        return body


async def read_password(client: Endpoint) -> bytes:
    """A PasswordMessage's payload without its terminating NUL."""
    body = await _read(client, m.F_PASSWORD)
    if not body.endswith(b"\0"):
        raise m.ProtocolViolation("invalid password message")
    return body[:-1]


async def verify_password(client: Endpoint, user: str, record: UserRecord | None, method: Method) -> bool:
    """Run the exchange for method; True when the client proved the password."""
    if method is Method.MD5:
        salt = os.urandom(4)
        client.write(m.auth_md5(salt))
        stored = record.password_md5 if record is not None else None
        return verify_md5_response(stored, salt, await read_password(client))
    if method is Method.DIGEST:
        return await _digest(client, record)
    if method is Method.SCRAM:
        return await _scram(client, record)
    client.write(m.auth_cleartext())
    return verify_cleartext(user, record, await read_password(client))


def verify_cleartext(user: str, record: UserRecord | None, password: bytes) -> bool:
    text = password.decode("utf-8", "replace")
    if record is not None and record.password_md5 is not None:
        return hmac.compare_digest(redshift_md5(text, user), record.password_md5)
    usable = record is not None and record.password_sha256 is not None
    stored = record.password_sha256 if usable else _DUMMY_SHA256
    salt = record.password_salt if usable else _DUMMY_SALT
    computed = hashlib.sha256(password + bytes.fromhex(salt)).hexdigest()
    return hmac.compare_digest(computed, stored) and usable


async def _digest(client: Endpoint, record: UserRecord | None) -> bool:
    """Redshift's AUTH_REQ_DIGEST: algorithm 0 (SHA-256), salt, server nonce; the client answers
    'd' with SHA256(SHA256(password || salt) || server nonce || client nonce) and its nonce."""
    usable = record is not None and record.password_sha256 is not None
    stored = record.password_sha256 if usable else _DUMMY_SHA256
    salt = bytes.fromhex(record.password_salt if usable else _DUMMY_SALT)
    server_nonce = os.urandom(32)
    client.write(m.authentication(AUTH_DIGEST, struct.pack("!ii", 0, len(salt)) + salt
                                  + struct.pack("!i", len(server_nonce)) + server_nonce))
    body = await _read(client, F_DIGEST_RESPONSE)
    try:
        (digest_len,) = struct.unpack_from("!i", body)
        digest = body[4:4 + digest_len]
        (nonce_len,) = struct.unpack_from("!i", body, 4 + digest_len)
        client_nonce = body[8 + digest_len:8 + digest_len + nonce_len]
    except struct.error:
        raise m.ProtocolViolation("malformed digest response") from None
    if len(digest) != digest_len or len(client_nonce) != nonce_len or not 0 < nonce_len <= 256:
        raise m.ProtocolViolation("malformed digest response")
    expected = hashlib.sha256(bytes.fromhex(stored) + server_nonce + client_nonce).digest()
    return hmac.compare_digest(expected, digest) and usable


async def _scram(client: Endpoint, record: UserRecord | None) -> bool:
    usable = record is not None and record.password_scram is not None
    server = ScramServer(*parse_scram_verifier(record.password_scram if usable else _DUMMY_SCRAM))
    client.write(m.authentication(m.AUTH_SASL, b"SCRAM-SHA-256\0\0"))
    body = await _read(client, m.F_PASSWORD)
    mechanism, pos = m.read_cstring(body, 0)
    if mechanism != b"SCRAM-SHA-256" or len(body) < pos + 4:
        raise m.ProtocolViolation("SASL authentication needs mechanism SCRAM-SHA-256")
    (length,) = struct.unpack_from("!i", body, pos)
    try:
        client.write(m.authentication(m.AUTH_SASL_CONTINUE,
                                      server.server_first(body[pos + 4:pos + 4 + length].decode()).encode()))
        proved = server.verify_final((await _read(client, m.F_PASSWORD)).decode())
    except (ScramFailure, UnicodeDecodeError):
        return False
    if not (proved and usable):
        return False
    client.write(m.authentication(m.AUTH_SASL_FINAL, server.server_final().encode()))
    return True


@dataclass
class LoginThrottle:
    """After `failures` failed logins for one user from one address within `window` seconds,
    refuse that user from that address for `cooldown` seconds (beyond Redshift; per process)."""

    failures: int = 10
    window: float = 300.0
    cooldown: float = 300.0

    def __post_init__(self) -> None:
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}

    def locked(self, user: str, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        until = self._locked_until.get((user, address))
        if until is None:
            return False
        if now >= until:
            del self._locked_until[(user, address)]
            return False
        return True

    def failed(self, user: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        key = (user, address)
        recent = self._recent.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.failures:
            self._locked_until[key] = now + self.cooldown
            recent.clear()
        if len(self._recent) > 100_000:  # forget quiet keys so memory stays bounded
            self._recent = {k: v for k, v in self._recent.items() if v and v[-1] > now - self.window}

    def succeeded(self, user: str, address: str) -> None:
        self._recent.pop((user, address), None)
