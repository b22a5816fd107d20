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
from collections import OrderedDict

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


class LoginThrottle:
    """After `failures` failed logins for one user from one address within `window` seconds of
    the first of them, refuse that user from that address for `cooldown` seconds (beyond
    Redshift; with workers, workers.SharedThrottle counts in all of them).

    Bounded and O(1) per call (issue 16: a flood of failures over 100,000 user names grew it by
    a kilobyte each and then rebuilt its table on every failure). A pair is kept under a keyed
    16-byte digest of it (a user name may be kilobytes long), in one of two tables of at most
    `entries` pairs each, ordered by last change: pairs counting failures, and locked pairs.
    Past the bound the least recently changed pair of that table is forgotten, so forgetting a
    lock takes `entries` newer locks, `failures` failed logins each; spent entries at the front
    are dropped as new ones come."""

    def __init__(self, failures: int = 10, window: float = 300.0, cooldown: float = 300.0,
                 entries: int = 100_000):
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.entries = entries
        self._key = os.urandom(16)
        self._counting: OrderedDict[bytes, tuple[float, int]] = OrderedDict()  # first failure, failures
        self._locked: OrderedDict[bytes, float] = OrderedDict()  # until
        self.work = 0  # entries looked at or dropped, for tests: a constant few per call

    def __len__(self) -> int:
        return len(self._counting) + len(self._locked)

    def _pair(self, user: str, address: str) -> bytes:
        return hashlib.blake2b(user.encode("utf-8", "surrogatepass") + b"\0" + address.encode(),
                               key=self._key, digest_size=16).digest()

    def locked(self, user: str, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.work += 1
        until = self._locked.get(self._pair(user, address))
        return until is not None and now < until

    def failed(self, user: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        pair = self._pair(user, address)
        first, count = self._counting.pop(pair, (now, 0))
        self.work += 1
        if now - first >= self.window:
            first, count = now, 0
        if count + 1 >= self.failures:
            self._locked.pop(pair, None)
            self._locked[pair] = now + self.cooldown
        else:
            self._counting[pair] = (first, count + 1)
        self._forget(now)

    def counting(self, user: str, address: str) -> bool:
        """Whether failed logins of user from address are being counted."""
        return self._pair(user, address) in self._counting

    def succeeded(self, user: str, address: str) -> None:
        self.work += 1
        self._counting.pop(self._pair(user, address), None)

    def _forget(self, now: float) -> None:
        """Spent entries at the front of each table (a couple per call, which keeps up with the
        one each call adds), then the oldest beyond the bound."""
        for _ in range(2):
            if self._counting:
                pair, (first, _count) = next(iter(self._counting.items()))
                self.work += 1
                if now - first >= self.window:
                    del self._counting[pair]
            if self._locked:
                pair, until = next(iter(self._locked.items()))
                self.work += 1
                if until <= now:
                    del self._locked[pair]
        for table in (self._counting, self._locked):
            while len(table) > self.entries:
                table.popitem(last=False)
                self.work += 1
