"""Backend sessions shared between transactions (backend.pool_mode: transaction), per pool key.

A pool key is (the role as the caller describes it, database, startup parameters): a session
logged in as role R serves only clients of R with the same key, so PostgreSQL's privilege checks
are those of the client's own role (DESIGN principle 1). A client holds a session from its
first message until the ReadyForQuery that ends its transaction (relay.Relay decides when), then
gives it back here. What a client leaves in it that the proxy sees pins it (policy/pinning.py);
what it cannot see (a function body's set_config, say) is reset before another client of the
key takes it, ahead of its first statement there (restore_ahead); the same client takes it
back as it left it.

At most `cap` sessions are open per key (PgBouncer's default_pool_size). A client that finds
them all taken waits in a FIFO queue, up to query_wait_timeout seconds, then gets PgBouncer's
error (QueryWaitTimeout). A session given back broken or not reusable is closed and its place
goes to the first waiter. Idle sessions are closed after idle_seconds (prune).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ..protocol import messages as m
from .pool import SEED, ClosingDatabases, Key, _end
from .session import BackendSession

log = logging.getLogger(__name__)

# The longest reply a reset statement may get (a notice, an error: PostgreSQL's are far shorter).
_MAX_OWED_REPLY = 1 << 20


# What a client may leave in a session out of the proxy's sight (a function body's set_config(...,
# false), SET ROLE, advisory lock, temporary table, LISTEN, WITH HOLD cursor, nextval, and the
# prepared statements: a function may DEALLOCATE the proxy's sg_ statement and PREPARE its own
# under that name, which the next client's Bind would run): what DISCARD ALL drops, and random()'s
# state, which it keeps (pool.RESEED). SET SESSION AUTHORIZATION DEFAULT and RESET ROLE come
# first (RESET ALL leaves both as they are); RESET ROLE goes back to the role's ALTER ROLE ... SET
# value, if any, as at login. Before them all,
# statement_timeout goes: each statement runs under the settings the last client left, and one
# it made slow (CLOSE ALL of thousands of WITH HOLD cursors, RESET ALL of thousands of
# placeholder settings) under its 1 ms timeout would fail. (That SET itself is timed too, but
# takes microseconds whatever the session holds.) DISCARD TEMP waits for no lock unless the last
# client made a permanent object depend on a temporary one (a column of its row type, say) that
# another session holds locked: it fails after a second rather than wait for as long as that
# session likes; the lock_timeout is the reset's transaction's only. A reset that fails anyway
# costs the next client nothing but the time: the relay sends its messages again in another
# session (relay.Relay._again). One SELECT: each statement PostgreSQL plans costs it a plan and
# an executor (about 2.5 µs in a loop, where SET costs 1-2; the reset runs before most pooled
# transactions).
RESET_SESSION = (b"SET statement_timeout = 0", b"CLOSE ALL", b"SET SESSION AUTHORIZATION DEFAULT", b"RESET ROLE",
                 b"RESET ALL", b"SET LOCAL lock_timeout = '1s'", b"UNLISTEN *",
                 b"SELECT pg_catalog.pg_advisory_unlock_all(), " + SEED, b"DISCARD TEMP", b"DISCARD SEQUENCES",
                 b"DEALLOCATE ALL")


def _restoring(session: BackendSession, settings: dict[str, bytes], served_another: bool) -> tuple[bytes, ...]:
    """The statements that make a session holder's, with its settings: a session that served
    another client is reset (RESET_SESSION: back to the key's startup values and the role's and
    database's defaults, as every session of the key began), and RESET ALL runs where another
    client's settings are in force; then the holder's own SET statements, as they ran for it
    before. None are needed when the holder left it so."""
    if not served_another and session.settings == settings:
        return ()
    reset = RESET_SESSION if served_another else (b"RESET ALL",)
    return (*reset, *settings.values())


class RestoreFailed(Exception):
    """A statement restore_ahead sent failed: PostgreSQL skips the client's messages after it
    (up to a Sync), so the session must end (the relay sends them again in another)."""


# Extended-protocol messages that run one statement in the unnamed statement and portal.
_BIND_UNNAMED = m.message(m.F_BIND, b"\0\0" + b"\0\0" * 3)
_EXECUTE_UNNAMED = m.message(m.F_EXECUTE, b"\0" + b"\0\0\0\0")


def restore_ahead(session: BackendSession, settings: dict[str, bytes], holder: object) -> "OwedReplies | None":
    """Make a session holder's, with its settings (_restoring), without a round trip of its own:
    the statements written now, to run before the client's messages that follow, and the
    replies the relay must take out of what the session answers (None: no statement was needed).

    They go as Parse/Bind/Execute without a Sync, between BEGIN and COMMIT: they run in one
    transaction that COMMIT ends, so that the client's first statement starts its own (one that
    fails does not undo the reset; a VACUUM may come first). (Without the BEGIN, the COMMIT that
    ends the implicit transaction warns "there is no transaction in progress", a notice
    PostgreSQL sends at once, in a packet of its own.) Should one of them fail, PostgreSQL skips
    every message up to the next Sync, the client's too: the relay ends the session
    (RestoreFailed) and sends them again in another."""
    served_another = session.holder not in (None, holder)
    statements = _restoring(session, settings, served_another)
    if not statements:
        session.holder = holder
        return None
    session.endpoint.write(_USUAL.get(statements) or _messages(statements))
    if served_another:  # its prepared statements are gone (DEALLOCATE ALL): prepared again when bound
        session.prepared.clear()
    # The unnamed statement they leave is nobody's.
    session.settings, session.holder, session.unnamed_owner = dict(settings), holder, None
    return OwedReplies(statements)


# The reset's transaction is read committed whatever defaults for new transactions the last
# client left: under its SERIALIZABLE, READ ONLY, DEFERRABLE, the reset's first query would wait
# for a safe snapshot (no timeout reaches that wait) for as long as any serializable transaction
# that writes stays open. (Read only, it still does all it must; READ WRITE is refused on a
# standby.)
_BEGIN = b"BEGIN ISOLATION LEVEL READ COMMITTED"


def _messages(statements: tuple[bytes, ...]) -> bytes:
    return b"".join(m.Parse(b"", sql, b"\0\0").encode() + _BIND_UNNAMED + _EXECUTE_UNNAMED
                    for sql in (_BEGIN, *statements, b"COMMIT"))


# The restores of clients that SET nothing (nearly every restore), made once. Only these are
# kept, here and in _ANSWERED: a client's SET statements may be large, and they are its own.
_USUAL = {statements: _messages(statements) for statements in (RESET_SESSION, (b"RESET ALL",))}
# What PostgreSQL answered to each of _USUAL's when all its statements succeeded (ParseComplete,
# BindComplete, DataRow and CommandComplete only): the same bytes again are the same answer,
# taken off at once.
_ANSWERED: dict[tuple[bytes, ...], bytes] = {}
_ANSWER_KINDS = frozenset((m.B_PARSE_COMPLETE, m.B_BIND_COMPLETE, m.B_DATA_ROW, m.B_COMMAND_COMPLETE))


class OwedReplies:
    """The replies owed to restore_ahead's statements, read off the front of what the session
    sends, and dropped. (The parameters they change PostgreSQL reports only at the ReadyForQuery
    that ends the client's transaction: the relay tells the client those that are new to it.)"""

    __slots__ = ("_statements", "_left", "_partial", "_first")

    def __init__(self, statements: tuple[bytes, ...]):
        self._statements = statements
        self._left = len(statements) + 2  # CommandCompletes still to come (BEGIN's, COMMIT's)
        self._partial = b""
        self._first = True  # nothing read yet

    def feed(self, data: bytes) -> bytes | None:
        """What follows the last owed reply in data (None: more is owed). RestoreFailed for an
        ErrorResponse, ProtocolViolation for what is not the protocol."""
        whole, self._first = self._first, False  # the answer in one piece: kept if a full one
        if whole:
            answer = _ANSWERED.get(self._statements)
            if answer is not None and data.startswith(answer):
                self._left = 0
                return data[len(answer):]
        elif self._partial:
            data = self._partial + data
        pos, end = 0, len(data)
        while self._left and end - pos >= 5:
            kind = data[pos]
            length = int.from_bytes(data[pos + 1:pos + 5], "big")
            if length < 4 or length > _MAX_OWED_REPLY:
                raise m.ProtocolViolation(f"reply of {length} bytes to a reset statement")
            after = pos + 1 + length
            if after > end:
                break
            if kind == m.B_COMMAND_COMPLETE:
                self._left -= 1
            elif kind == m.B_ERROR_RESPONSE:
                raise RestoreFailed(m.decode_fields(data[pos + 5:after]).get("M", ""))
            elif kind not in _ANSWER_KINDS:
                whole = False  # a notice, say: not kept as the answer
            pos = after
        if self._left:
            self._partial = data[pos:]
            return None
        if whole and self._statements in _USUAL:
            _ANSWERED[self._statements] = data[:pos]
        return data[pos:]


class QueryWaitTimeout(Exception):
    """No session of the key came free within query_wait_timeout."""


class Waiter:
    """A client waiting for a session of its key: given one (or None: a place to open one of
    its own) by a direct call, in the order the clients came, with no turn of the event loop
    in between."""

    __slots__ = ("give", "timer")

    def __init__(self, give: Callable[[BackendSession | None], None]):
        self.give = give
        self.timer: asyncio.TimerHandle | None = None


class _Sessions:
    """One key's sessions: the idle ones (with when each came back), how many are open (idle,
    held, or being opened), and the clients waiting for one."""

    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: list[tuple[float, BackendSession]] = []
        self.open = 0
        self.waiters: deque[Waiter] = deque()


class TransactionPool:
    def __init__(self, cap: int, idle_seconds: float):
        self.cap = cap
        self.idle_seconds = idle_seconds
        self._keys: dict[Key, _Sessions] = {}
        self._closing = ClosingDatabases()

    def wait(self, key: Key, give: Callable[[BackendSession | None], None], timeout: float,
             expired: Callable[[], None], holder: object = None) -> Waiter | None:
        """give(an idle session of key: the one holder left, if any) now, or give(None) now
        while fewer than cap are open (the caller opens one), or later, when one comes free, in
        turn; or expired() after timeout seconds. The Waiter, while it waits (for stop_waiting)."""
        sessions = self._keys.setdefault(key, _Sessions())
        if not sessions.waiters:
            session = self._idle(sessions, holder)
            if session is not None or sessions.open < self.cap:
                if session is None:
                    sessions.open += 1
                give(session)
                return None
        waiter = Waiter(give)
        waiter.timer = asyncio.get_running_loop().call_later(timeout, self._expire, sessions, waiter, expired)
        sessions.waiters.append(waiter)
        return waiter

    def replace(self, session: BackendSession) -> None:
        """A session wait gave is ended, and the caller opens a new one in its place (open)."""
        _end(session)

    def _expire(self, sessions: _Sessions, waiter: Waiter, expired: Callable[[], None]) -> None:
        sessions.waiters.remove(waiter)
        expired()

    def stop_waiting(self, key: Key, waiter: Waiter) -> None:
        sessions = self._keys.get(key)
        if sessions is not None and waiter in sessions.waiters:
            sessions.waiters.remove(waiter)
            waiter.timer.cancel()

    async def acquire(self, key: Key, open_session: Callable[[], Awaitable[BackendSession]],
                      timeout: float) -> BackendSession:
        """A session for key: an idle one, a new one (open_session) while fewer than cap are
        open, or the first to come free within timeout seconds (QueryWaitTimeout)."""
        given = asyncio.get_running_loop().create_future()

        def give(session: BackendSession | None) -> None:
            if not given.done():
                given.set_result(session)
            elif session is None:  # the caller went meanwhile: the place goes on
                self.open_failed(key)
            else:
                self.release(key, session, reusable=True)

        def expired() -> None:
            if not given.done():
                given.set_exception(QueryWaitTimeout())

        waiter = self.wait(key, give, timeout, expired)
        try:
            session = await given
        except asyncio.CancelledError:
            if waiter is not None:
                self.stop_waiting(key, waiter)
            raise
        if session is not None:
            return session
        return await self.open(key, open_session)

    async def open(self, key: Key, open_session: Callable[[], Awaitable[BackendSession]]) -> BackendSession:
        """open_session() in the place wait gave (None); the place is given up if that fails."""
        try:
            return await open_session()
        except BaseException:
            self.open_failed(key)
            raise

    def release(self, key: Key, session: BackendSession, reusable: bool) -> None:
        """A client is done with session: to the first waiter, or kept idle; closed when it
        is not reusable (a transaction may be open in it, it is pinned, it broke)."""
        sessions = self._keys.get(key)
        if sessions is None:  # the pool was closed meanwhile
            _end(session)
            return
        if (not reusable or session.endpoint.closed or session.endpoint.buffer or self.cap <= 0
                or key[1] in self._closing):
            _end(session)
            self._closed(key, sessions)
            return
        if sessions.waiters:
            waiter = sessions.waiters.popleft()
            waiter.timer.cancel()
            waiter.give(session)
            return
        sessions.idle.append((time.monotonic(), session))

    def _idle(self, sessions: _Sessions, holder: object) -> BackendSession | None:
        """The idle session holder left last (it needs no reset: restore_ahead), else the
        one given back last."""
        idle = sessions.idle
        while idle:
            at = next((i for i in range(len(idle) - 1, -1, -1) if idle[i][1].holder is holder), -1)
            _, session = idle.pop(at)
            if session.endpoint.closed or session.endpoint.buffer:
                _end(session)  # broke, or spoke unasked
                sessions.open -= 1
                continue
            return session
        return None

    def open_failed(self, key: Key) -> None:
        """The session that was to be opened in a place wait gave was not."""
        sessions = self._keys.get(key)
        if sessions is not None:
            self._closed(key, sessions)

    def _closed(self, key: Key, sessions: _Sessions) -> None:
        """A session of key is gone: its place goes to the first waiter, who opens one."""
        sessions.open -= 1
        if sessions.waiters and sessions.open < self.cap:  # (not after close: no new sessions)
            waiter = sessions.waiters.popleft()
            waiter.timer.cancel()
            sessions.open += 1
            waiter.give(None)
        elif not sessions.open and not sessions.idle:
            self._keys.pop(key, None)

    def prune(self, idle_seconds: float | None = None, belongs: Callable[[Key], bool] | None = None) -> int:
        """Close the idle sessions that waited longer than idle_seconds (default: the pool's;
        0: all of them) or broke meanwhile, of the keys that satisfy belongs (default: all);
        how many."""
        limit = self.idle_seconds if idle_seconds is None else idle_seconds
        deadline = time.monotonic() - limit
        ended = 0
        for key, sessions in list(self._keys.items()):
            if belongs is not None and not belongs(key):
                continue
            kept = []
            for returned, session in sessions.idle:
                if returned <= deadline or session.endpoint.closed:
                    _end(session)
                    ended += 1
                    sessions.open -= 1
                else:
                    kept.append((returned, session))
            sessions.idle = kept
            if not sessions.open and not sessions.waiters:
                del self._keys[key]
        return ended

    def close_database(self, database: str) -> int:
        """Before DROP DATABASE, ALTER DATABASE ... RENAME or CREATE DATABASE ... TEMPLATE
        (pool.SessionPool.close_database): close the idle sessions in database, and those given
        back there for CLOSING_SECONDS; how many were closed."""
        self._closing.add(database)
        return self.prune(0, lambda key: key[1] == database)

    def close(self) -> None:
        """Shutdown: the idle sessions close now, the held ones when given back."""
        self.cap = 0
        self.prune(0)

    def counts(self) -> dict[Key, tuple[int, int, int]]:
        """(open, idle, waiting clients) per key."""
        return {key: (s.open, len(s.idle), len(s.waiters)) for key, s in self._keys.items()}
