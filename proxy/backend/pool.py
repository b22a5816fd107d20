"""Idle backend sessions kept for the next client of the same role.

Opening a session costs a TCP or socket connection, a PostgreSQL process and a SCRAM login (the
PBKDF2 of the role's backend password). A client that ends its session with Terminate while
idle (no transaction, no statement running, nothing unsynced; relay.Relay decides) gives its
backend session back here instead of closing it. The session is reset with DISCARD ALL, which
PostgreSQL defines as the state of a new session (SET SESSION AUTHORIZATION DEFAULT, RESET ALL,
temporary tables, prepared statements, cursors, LISTEN, advisory locks), random() gets a new
seed (RESEED: DISCARD ALL keeps its state), and the session waits, keyed by
role, database and startup parameters, for a client of that same role: a session is never
handed to another role, so PostgreSQL's privilege checks are the same as on a fresh one.

PostgreSQL refuses DROP DATABASE, ALTER DATABASE ... RENAME and CREATE DATABASE from a template
while any other session is in that database: before such a statement runs, close_database ends
the sessions kept there, and those given back in the next CLOSING_SECONDS, so that an idle
session no client can see does not refuse it (a client's live session still does, as on
Redshift).

Sessions of users with a connection limit are not kept (an idle one would hold one of the
user's connections). At most `size` sessions are kept in all (the longest-waiting goes first):
they count against PostgreSQL's max_connections. A kept session that fails its reset, breaks,
or waits longer than idle_seconds is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..protocol import messages as m
from ..protocol.framing import DEFAULT_MAX_MESSAGE
from .session import BackendSession

log = logging.getLogger(__name__)

Key = tuple  # (the role as the caller describes it, database, startup parameters as sorted pairs)
_RESET_TIMEOUT = 5.0
# How long sessions given back in a database that is being dropped are not kept: PostgreSQL's
# DROP DATABASE waits up to 5 s for the other sessions in it to end (CountOtherDBBackends).
CLOSING_SECONDS = 10.0


def pool_key(role, database: str, params: dict[str, str]) -> Key:
    return (role, database, tuple(sorted(params.items())))


class ClosingDatabases:
    """Databases where sessions given back are not kept, for CLOSING_SECONDS after a statement
    that needs no other session there was announced (close_database)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def add(self, database: str) -> None:
        now = time.monotonic()
        self._until = {name: until for name, until in self._until.items() if until > now}
        self._until[database] = now + CLOSING_SECONDS

    def __contains__(self, database: str) -> bool:
        return self._until.get(database, 0.0) > time.monotonic()


class SessionPool:
    def __init__(self, size: int, idle_seconds: float):
        self.size = size  # sessions kept in all; 0: none
        self.idle_seconds = idle_seconds
        self._idle: dict[Key, list[tuple[float, BackendSession]]] = {}
        self._closing = ClosingDatabases()

    def take(self, key: Key) -> BackendSession | None:
        """The most recently returned live session for key, or None."""
        waiting = self._idle.get(key)
        now = time.monotonic()
        while waiting:
            returned, session = waiting.pop()
            if session.endpoint.closed or now - returned > self.idle_seconds or session.endpoint.buffer:
                _end(session)  # broke, waited too long, or spoke unasked
                continue
            return session
        self._idle.pop(key, None)
        return None

    async def give(self, key: Key, session: BackendSession) -> None:
        """Reset a session a client left idle and keep it, or close it."""
        if self.size <= 0 or key[1] in self._closing or not await _reset(session) or key[1] in self._closing:
            _end(session)
            return
        self._idle.setdefault(key, []).append((time.monotonic(), session))
        while len(self) > self.size:  # the longest-waiting session goes
            oldest = min(self._idle, key=lambda k: self._idle[k][0][0])
            _end(self._idle[oldest].pop(0)[1])
            if not self._idle[oldest]:
                del self._idle[oldest]

    def forget(self, belongs) -> int:
        """End the kept sessions whose key satisfies belongs(key); how many there were."""
        ended = 0
        for key in [key for key in self._idle if belongs(key)]:
            for _, session in self._idle.pop(key):
                _end(session)
                ended += 1
        return ended

    def close_database(self, database: str) -> int:
        """Before DROP DATABASE, ALTER DATABASE ... RENAME or CREATE DATABASE ... TEMPLATE: end
        the sessions kept in database, and keep none given back there for CLOSING_SECONDS; how
        many were ended."""
        self._closing.add(database)
        return self.forget(lambda key: key[1] == database)

    def prune(self) -> None:
        """End the sessions that waited longer than idle_seconds (or broke meanwhile)."""
        deadline = time.monotonic() - self.idle_seconds
        for key, waiting in list(self._idle.items()):
            kept = []
            for returned, session in waiting:
                if returned < deadline or session.endpoint.closed:
                    _end(session)
                else:
                    kept.append((returned, session))
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]

    def close(self) -> None:
        self.forget(lambda key: True)

    def __len__(self) -> int:
        return sum(len(waiting) for waiting in self._idle.values())

    def waiting(self) -> dict[Key, int]:
        """How many sessions wait under each key."""
        return {key: len(waiting) for key, waiting in self._idle.items()}


def _end(session: BackendSession) -> None:
    """Terminate, then close: the backend process exits at once, its connection slot freed."""
    session.endpoint.write(m.terminate())
    session.endpoint.close()


# A seed for random() that no client knows, from PostgreSQL's strong random source (64 bits of a
# random UUID's hash, in [-1, 1)). Neither DISCARD ALL nor RESET ALL touches random()'s state,
# which a client chose (setseed) or can work out from random()'s results: left so, the next
# client's random() values would be known to the last one. The same statement every time (the
# seed is made in PostgreSQL), every name and operator in pg_catalog. A kept session's reset
# also sends on the table statistics the last client's statements left pending in the backend
# (PostgreSQL does at most once a second), at the end of that statement, before the next login:
# pg_stat_xact_user_tables would show them to it as its own transaction's (PostgreSQL 15:
# pg_stat_force_next_flush). Not in transaction pooling's reset, where it would force a flush
# at every hand-over and could not help (txpool.RESET_SESSION runs with the client's statement).
SEED = (b"pg_catalog.setseed(pg_catalog.uuid_hash_extended(pg_catalog.gen_random_uuid(), 0) "
        b"OPERATOR(pg_catalog./) '9223372036854775808'::pg_catalog.float8)")
RESEED = b"SELECT " + SEED + b", pg_catalog.pg_stat_force_next_flush()"


async def _reset(session: BackendSession) -> bool:
    """DISCARD ALL (a statement of its own: it cannot run in a transaction block), then a new
    seed for random(); the parameters they report (reset to the session's startup values) are
    kept for the next client's greeting."""
    if session.endpoint.closed or session.endpoint.buffer:
        return False
    return (await run_quietly(session, b"DISCARD ALL", _RESET_TIMEOUT)
            and await run_quietly(session, RESEED, _RESET_TIMEOUT))


async def run_quietly(session: BackendSession, sql: bytes, timeout: float) -> bool:
    """Run sql in a session no client is relayed to; whether it was answered without error and
    ended idle. The parameters PostgreSQL reports on the way are kept in session.parameters."""
    endpoint = session.endpoint
    endpoint.write(m.query(sql))
    ok = True
    try:
        async with asyncio.timeout(timeout):
            while True:
                kind, body = await endpoint.read_message(DEFAULT_MAX_MESSAGE)
                if kind == m.B_ERROR_RESPONSE:
                    ok = False
                    log.info("backend session not reused: %s", m.decode_fields(body).get("M", ""))
                elif kind == m.B_PARAMETER_STATUS:
                    name, value = m.decode_parameter_status(body)
                    session.parameters[name] = value
                elif kind == m.B_READY_FOR_QUERY:
                    return ok and body[:1] == bytes((m.TX_IDLE,)) and not endpoint.buffer
    except Exception as exc:  # broken, timed out, or not the protocol: not reused
        log.debug("backend session not reused: %s", exc)
        return False
