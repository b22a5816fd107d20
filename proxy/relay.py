"""The steady-state pump between one authenticated client and its backend session.

Bytes pass through untouched: each direction is cut at message boundaries by reading only the
five-byte headers, and a chunk whose messages all pass is written on as the same object. Only
Query and Parse (classified, maybe rewritten), ErrorResponse (reworded as Redshift words it),
ReadyForQuery, ParameterStatus (rare: PostgreSQL sends one when a reported setting such as
application_name or standard_conforming_strings changes), and, while a rewrite is pending or
the statement log is on, Bind, Execute, Close and CommandComplete are looked at, and Terminate
where the backend session may outlive the client (backend/pool.py: kept only when it comes
while idle, nothing unsynced); the other messages are only counted from their headers.
DataRow and CopyData bodies never are looked at.

Reply bookkeeping. PostgreSQL does not answer every message (it skips to Sync after an
extended-protocol error, a COPY reads Syncs as nothing): protocol/pipeline.py follows its
reading, and tells which message each reply answers. A rewritten statement's command tag is
restored on the CommandComplete that completes it (the k-th of a Query, or its Execute's); a
denied one is sent as a statement that fails in PostgreSQL with a unique relation name, and
that ErrorResponse is replaced by the denial wherever it comes. So PostgreSQL itself aborts
the transaction and skips what it skips, and both sides stay in step.

The same replies time the statements for the user activity log: a Query is reported when it is
sent (before it runs, as Redshift's useractivitylog is written) and ends at its ReadyForQuery,
failed if an ErrorResponse came before it; each execution of a prepared statement is reported
when its Execute is sent and ends with the Execute's reply (a Parse itself is reported only if
it fails).

Redshift's extended result metadata (a client granted server protocol 1 or 2; sources given):
every RowDescription is looked at and gets each column's schema, table, column and catalog
names (protocol/result_metadata.py), from what catalog/sources.py knows; when it does not know
them all, what the backend sends after that RowDescription is held while they are read on the
management role's connection (never in the client's session), as a ReadyForQuery is held for a
change of masking. A RowDescription the session was sent before is answered from a cache. DDL
that any client sends makes them read again (on_alter).

Transaction pooling (backend.pool_mode: transaction; a Lender is given): the relay is the
client's, the backend session only lent. It is given back at the ReadyForQuery that leaves the
client idle with nothing unanswered, unsynced or half sent, and taken again (Lender.lend, at
once when one is idle) at the client's next bytes, which wait meanwhile. What the proxy keeps
per client is what PostgreSQL would keep per session: its named prepared statements (prepared
in the session held under the proxy's name for their SQL, by a Parse the proxy adds before a
Bind or Describe, whose reply the client does not see), its unnamed statement, its SET
settings (restored by the lender), its pipeline and transaction state; what it cannot keep pins
the session to the client (policy/pinning.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

from .backend.session import BackendSession
from .backend.txpool import RestoreFailed, restore_ahead
from .endpoint import Endpoint
from .policy import encoding
from .policy.errors import redshift_wording
from .policy.pinning import session_effect
from .policy.identifiers import SHORT_NAME_MARKER, IdentifierCase, short_name
from .policy.statements import PRIVATE_SCHEMA, PROTECTION_TAGS, Action, Denial, Plan, databases_to_vacate
from .protocol import messages as m
from .protocol import redshift_types as rt
from .protocol import result_metadata
from .protocol.pipeline import BARE, CLOSE, DESCRIBE, EXECUTE, OPENERS, PARSE, QUERY, Entry, Pipeline, entry
from .protocol.sqlstate import (CONNECTION_FAILURE, DUPLICATE_PREPARED_STATEMENT, FEATURE_NOT_SUPPORTED,
                                INTERNAL_ERROR, PROTOCOL_VIOLATION)

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!i")
_EXTENDED = frozenset((m.F_PARSE, m.F_BIND, m.F_DESCRIBE, m.F_EXECUTE, m.F_CLOSE))
_NAMED = frozenset((m.F_BIND, m.F_EXECUTE, m.F_CLOSE))
_COUNTED_REQUESTS = _EXTENDED | {m.F_SYNC, m.F_COPY_DATA, m.F_COPY_DONE, m.F_COPY_FAIL}
_DESCRIPTIONS = frozenset((m.B_ROW_DESCRIPTION, m.B_PARAMETER_DESCRIPTION))
# Descriptions a relay remembers as naming none of Redshift's types, at most, and how long each.
_MAX_UNMATCHED, _MAX_UNMATCHED_SIZE = 64, 512
_COUNTED_REPLIES = frozenset(range(256)) - {m.B_DATA_ROW, m.B_NOTICE_RESPONSE, m.B_NOTIFICATION_RESPONSE,
                                            ord("d"), ord("c"), ord("H")}
# Transaction pooling: the replies to the Parse and Close messages the proxy adds (_hide).
_HIDDEN_REPLIES = frozenset((m.B_PARSE_COMPLETE, m.B_CLOSE_COMPLETE))
_TERMINATE = m.terminate()
_FLUSH = m.message(m.F_FLUSH, b"")
# The holder a session sent again a client's messages is given before its reset (Relay._again):
# none, so that it is reset as one another client used.
_AGAIN = object()
_MAX_SENT_AHEAD = 1 << 20  # client bytes kept to send again, at most
_HELD_LIMIT = 1 << 16  # client bytes held while it waits for a backend session, before reading pauses
# Statements the proxy keeps prepared in one backend session for its role's clients, at most (the
# oldest is closed to make room; a client that binds it again gets it prepared again). As
# PgBouncer's max_prepared_statements, so that clients preparing ever new SQL do not grow a
# shared session's memory without end.
_MAX_PREPARED = 1000
# The parameters of logins in transaction pooling, one dict for all the clients told the same.
_TOLD: dict[frozenset, dict[str, str]] = {}


def _shared_parameters(parameters: dict[str, str]) -> dict[str, str]:
    """A copy of parameters that the relays told the same share (never changed in place)."""
    key = frozenset(parameters.items())
    shared = _TOLD.get(key)
    if shared is None:
        if len(_TOLD) > 1000:
            _TOLD.clear()
        shared = _TOLD[key] = dict(parameters)
    return shared


class MessageStream:
    """One direction of a relayed connection, cut into messages without copying.

    Messages whose type is in `wanted` are handed whole to on_message, which returns None to
    pass them on unchanged or the bytes to send instead. Other messages are only counted
    (on_header, for the types in `counted`; None: all) and their bodies streamed through as
    they arrive, however large. A wanted message whose type is in `sieved` and that arrived
    whole is handed over only if its body matches `sieve`; else it is only counted (a cheap
    look for what is rare: the bodies seen not to match are remembered, and the same one again,
    a prepared statement's RowDescription say, costs a set lookup).
    """

    __slots__ = ("write", "wanted", "on_message", "on_header", "max_size", "counted", "sieved", "sieve",
                 "_unmatched", "_pending", "_pending_need", "_skip", "_held")

    def __init__(self, write: Callable[[bytes], None], wanted: set[int],
                 on_message: Callable[[int, bytes], bytes | None], on_header: Callable[[int], None],
                 max_size: int, counted: frozenset[int] | None = None):
        self.write = write
        self.wanted = wanted
        self.on_message = on_message
        self.on_header = on_header
        self.max_size = max_size
        self.counted = counted if counted is not None else frozenset(range(256))
        self.sieved: frozenset[int] = frozenset()
        self.sieve: re.Pattern | None = None
        self._unmatched: set[bytes] = set()
        self._pending = bytearray()  # a partial header, or a partial wanted message
        self._pending_need = 0       # total size of the pending wanted message, once known
        self._skip = 0               # body bytes of an unwanted message still to pass through
        self._held: bytearray | None = None  # what came after a hold(), until release()

    def hold(self) -> None:
        """Called from on_message: what comes after this message is kept, not passed on or
        looked at, until release()."""
        self._held = bytearray()

    def release(self) -> None:
        """Pass on what was held, as if it came now."""
        held, self._held = self._held, None
        if held:
            self.feed(bytes(held))

    def feed(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data
            return
        n = len(data)
        pos = 0
        if self._pending:
            pos = self._continue_pending(data)
            if pos < 0:
                return
            if self._held is not None:
                self._held += data[pos:]
                return
        start = pos  # data[start:pos] passes through unchanged
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            if n - pos < 5:
                self._flush(data, start, pos)
                self._pending += data[pos:]
                return
            kind = data[pos]
            (length,) = _LENGTH.unpack_from(data, pos + 1)
            if length < 4 or length > self.max_size:
                raise m.ProtocolViolation(f"invalid message length {length} for message type {chr(kind)!r}")
            end = pos + 1 + length
            if kind in self.wanted and not (kind in self.sieved and end <= n and (
                    (body := data[pos + 5:end]) in self._unmatched or self._sifted_out(body))):
                if end > n:
                    self._flush(data, start, pos)
                    self._pending += data[pos:]
                    self._pending_need = 1 + length
                    return
                replacement = self.on_message(kind, data[pos + 5:end])
                if replacement is not None:
                    self._flush(data, start, pos)
                    self.write(replacement)
                    start = end
                pos = end
                if self._held is not None:
                    self._flush(data, start, pos)
                    self._held += data[pos:]
                    return
            else:
                if kind in self.counted:
                    self.on_header(kind)
                if end > n:
                    self._skip = end - n
                    pos = n
                else:
                    pos = end
        if start == 0 and pos == n:
            self.write(data)  # the whole chunk passes unchanged: the hot path
        else:
            self._flush(data, start, pos)

    def _sifted_out(self, body: bytes) -> bool:
        if self.sieve.search(body) is not None:
            return False
        if len(body) <= _MAX_UNMATCHED_SIZE:
            if len(self._unmatched) >= _MAX_UNMATCHED:
                self._unmatched.clear()
            self._unmatched.add(body)
        return True

    @property
    def mid_message(self) -> bool:
        """Part of a message has passed (or is held): what follows must be the rest of it."""
        return bool(self._pending) or self._skip > 0

    def _flush(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.write(data if start == 0 and end == len(data) else memoryview(data)[start:end])

    def _continue_pending(self, data: bytes) -> int:
        """Complete the pending header or message from data; the position after what was used,
        or -1 when data was used up and the message is still incomplete."""
        pos = 0
        if len(self._pending) < 5:
            pos = min(5 - len(self._pending), len(data))
            self._pending += data[:pos]
            if len(self._pending) < 5:
                return -1
            kind = self._pending[0]
            (length,) = _LENGTH.unpack_from(self._pending, 1)
            if length < 4 or length > self.max_size:
                raise m.ProtocolViolation(f"invalid message length {length} for message type {chr(kind)!r}")
            if kind not in self.wanted:
                if kind in self.counted:
                    self.on_header(kind)
                self.write(bytes(self._pending))
                self._pending.clear()
                self._skip = length - 4
                return pos
            self._pending_need = 1 + length
        step = min(self._pending_need - len(self._pending), len(data) - pos)
        self._pending += data[pos:pos + step]
        pos += step
        if len(self._pending) < self._pending_need:
            return -1
        whole = bytes(self._pending)
        self._pending.clear()
        replacement = self.on_message(whole[0], whole[5:])
        self.write(whole if replacement is None else replacement)
        return pos


def _drop(data: bytes) -> None:
    """Where the client's bytes go once it is closed."""


class StatementLog(Protocol):
    """Where the relay reports statements (the user activity log and stl_query)."""

    def started(self, sql: bytes, in_transaction: bool, standard_strings: bool) -> int:
        """A statement is being run: a Query is being sent, or an Execute of a prepared
        statement (sql is what its Parse said), or a Parse failed (inside a transaction block,
        as far as the last ReadyForQuery said; read with standard_conforming_strings =
        standard_strings); returns a handle for ended()."""

    def ended(self, handles: list[int], error: tuple[str, str] | None) -> None:
        """They ended; error is (SQLSTATE, message) of the error that ended them, if one did."""


class _Work:
    """What the relay must do with the replies to one message it sent (pipeline.Entry.data)."""

    __slots__ = ("tags", "handles", "markers", "sql", "replaced", "waiting", "prepared", "hidden", "portal",
                 "statement", "described")

    def __init__(self, tags: dict[int, bytes] | None = None, handles: list[int] | None = None,
                 markers: list[str] | None = None, sql: bytes | None = None):
        self.tags = tags        # completion ordinal (1 for an Execute) -> command tag to restore
        self.handles = handles  # statement log handles ended with this message's answer
        self.markers = markers  # denial markers in the SQL sent (see _apply)
        self.sql = sql          # a Parse's SQL, logged if the Parse fails
        self.replaced = None    # a Parse's (name, the SQL that name had before), for when it fails
        self.waiting = None     # a Parse's Executes waiting for its answer to be logged (_execute)
        self.portal = None      # an Execute's portal (Redshift's types: which DataRows to convert)
        self.statement = None   # and the statement its Bind named
        self.described = None   # a Describe's (b'S' or b'P', name)
        # Transaction pooling: a Parse's (client's name or None, the name in the backend
        # session, that session), undone if it fails; whether the proxy added the message
        # (its reply is not the client's).
        self.prepared = None
        self.hidden = False


class Lender(Protocol):
    """Where a client in transaction pooling gets a backend session for each transaction
    (frontend/connection.py over backend/txpool.py)."""

    def lend(self, settings: dict[str, bytes], give: Callable[[BackendSession | NoBackend], None],
             fresh: bool = False) -> None:
        """give(a session of the client's pool key, with the client's settings, name -> its SET
        statement, in force), at once when one is to be had without I/O, else later; or
        give(NoBackend) when none can be had. fresh: one opened for it (nobody's leftovers)."""

    def stop(self) -> None:
        """The client went while it waited for lend."""

    def release(self, session: BackendSession, reusable: bool) -> None:
        """The client is done with it (reusable: idle, nothing of the client left in it)."""


class ResultSources(Protocol):
    """Where the columns of a session's results come from (catalog/sources.py DatabaseSources)."""

    database: str  # the catalog name of a table's column
    version: int   # changes when what is known is forgotten (DDL)

    def known(self, keys: list[tuple[int, int]]) -> dict | None:
        """Each (table OID, column number)'s source if all are known without I/O, else None."""

    async def lookup(self, keys: list[tuple[int, int]]) -> dict:
        """Each one's source, read where not known."""


class NoBackend(Exception):
    """No backend session for the client's next transaction: the FATAL ErrorResponse it gets."""

    def __init__(self, reply: bytes):
        super().__init__("no backend session")
        self.reply = reply


# Long names a session's results are named by, at most (then forgotten: their short names show).
_MAX_RESULT_NAMES = 1024
# Denials the proxy is still waiting to see fail, at most (a Query PostgreSQL skips never shows
# its marker; see _apply).
_MAX_DENIALS = 1024
_MARKER = re.compile(r"sg\.deny\.[0-9a-f]{12}")
# Prepared statements' SQL kept for the statement log, at most (PostgreSQL keeps them too).
_MAX_STATEMENTS = 10_000
_PARAMETER = re.compile(rb"\$([0-9]+)")
_UNTYPED = (0, 705)  # a parameter type left to the server, and unknown


def typed_unused(parse: m.Parse) -> m.Parse:
    """A Parse that declares more parameters than its SQL uses, the unused ones untyped (as
    redshift_connector sends a str's characters when given one as the parameter list):
    Redshift runs it, PostgreSQL cannot type an unused parameter ("could not determine data
    type of parameter $2"). The ones past the highest $n the text holds are declared text. Any
    $n counts, in a literal or comment too: a parameter the SQL uses is never retyped."""
    count = struct.unpack_from("!H", parse.param_types)[0]
    if not count:
        return parse
    used = max((int(n) for n in _PARAMETER.findall(parse.sql)), default=0)
    if used >= count:
        return parse
    types = list(struct.unpack_from(f"!{count}I", parse.param_types, 2))
    if not any(t in _UNTYPED for t in types[used:]):
        return parse
    types[used:] = [25 if t in _UNTYPED else t for t in types[used:]]
    return m.Parse(parse.name, parse.sql, struct.pack(f"!H{count}I", count, *types))
# The command tags of DDL that may make a pending late-binding view's query compile (catalog/
# late_binding.py), and of those that may make such a view (shiftguard's procedures: CALL). DDL
# run by CREATE TABLE AS (tagged SELECT), or inside functions, binds at the next DDL or poll.
_DDL_TAGS = (b"CREATE ", b"ALTER ", b"CALL", b"IMPORT FOREIGN", b"DO")
_MAKING_VIEWS = (b"CREATE VIEW", b"CALL", b"DO")
# How long a ReadyForQuery waits for the proxy to read a change of masking or row-level security,
# and a RowDescription for its columns' sources.
PROTECTION_READ_SECONDS = 5.0
# The few sets of client messages relays always look at, shared (memory per idle client).
_WANTED_SETS: dict[frozenset, frozenset] = {}
# How long a statement reading the audit tables waits for the records queued before it, and one
# naming long names for the map back to have them (policy/identifiers.py).
AUDIT_WAIT_SECONDS = 5.0
# The audit tables as the catalog-view rewrite names them (policy/statements.py).
_AUDIT_VIEWS = tuple(f"{PRIVATE_SCHEMA}.{name}" for name in (
    "stl_connection_log", "sys_connection_log", "stl_query", "sys_query_history"))


class Relay:
    """Pumps bytes both ways between client and backend and keeps both sides' states."""

    # Slots, not a __dict__: a relay lives as long as its client, idle or not (memory per client).
    __slots__ = ("_after_parse", "_altered", "_extended", "_extended_version", "_on_alter", "_sieved", "_sources",
                 "_ahead", "_always_wanted", "_audit_caught_up", "_audit_wait", "_baseline", "_denials", "_long_names",
                 "_remember_names", "_result_names",
                 "_discards", "_done", "_error", "_failing", "_fatal_seen", "_from_backend", "_from_client",
                 "_held", "_hiding", "_holding", "_ddl_ended", "_late_bound", "_lender", "_loop", "_lost_reported",
                 "_on_client_gone",
                 "_retry", "_sent_ahead",
                 "_cancel_again", "_cancelled_in_reset", "_flushed", "_recancel", "_started",
                 "_on_parameter", "_on_vacate_database", "_owed", "_parses", "_pipeline", "_portal_columns",
                 "_portal_sql", "_portal_statements", "_portal_tags", "_prepared", "_protecting",
                 "_protection_moved", "_reads_audit", "_release_due", "_result_columns", "_set_bound",
                 "_set_statement", "_settings", "_settings_pending", "_statement_columns",
                 "_statement_intervals", "_statement_log", "_statement_sql", "_statement_tags", "_tagged", "_told",
                 "_types", "_unnamed", "_unsynced", "_waiting", "backend", "backend_kept", "backend_session",
                 "bytes_in", "bytes_out", "cancelling", "classify", "client", "denials", "identifier_case",
                 "last_activity", "pinned", "standard_strings", "statements", "tx_status")

    def __init__(self, client: Endpoint, backend: BackendSession, classify: Callable[[bytes], Plan],
                 max_message_size: int, on_client_gone: Callable[[BackendSession], None] | None = None,
                 statement_log: StatementLog | None = None,
                 on_parameter: Callable[[str, str], None] | None = None,
                 keep_backend: bool = False, standard_strings: bool = True,
                 protection_moved: Callable[[], Awaitable[None]] | None = None,
                 on_vacate_database: Callable[[str], None] | None = None, lender: Lender | None = None,
                 identifier_case: IdentifierCase = IdentifierCase(), redshift_types: rt.RedshiftTypes | None = None,
                 audit_caught_up: Callable[[], Awaitable[None]] | None = None,
                 sources: ResultSources | None = None, on_alter: Callable[[], None] | None = None,
                 remember_names: Callable[[frozenset[str]], Awaitable[None] | None] | None = None,
                 recancel: Callable[[], None] = lambda: None,
                 late_bound: Callable[[bool], Awaitable[None]] | None = None):
        self.client = client
        # The session's enable_case_sensitive_identifier (policy/identifiers.py): the proxy
        # keeps it, PostgreSQL has no such setting; a plan says when a statement changes it.
        self.identifier_case = identifier_case
        # Called before SQL that needs no other session in a database is sent (DROP DATABASE, ...:
        # statements.databases_to_vacate).
        self._on_vacate_database = on_vacate_database
        # Redshift's extended result metadata, for a client granted protocol 1 or 2; DDL sent
        # (Plan.alters) is reported to on_alter, and again at the end of its transaction (before
        # that, another session reading the sources still sees the old ones).
        self._sources = sources
        self._on_alter = on_alter
        self._altered = False
        # RowDescriptions seen (a prepared statement's, again and again) -> the message sent for
        # each, while the sources' version is the same.
        self._extended: dict[bytes, bytes] = {}
        self._extended_version = sources.version if sources is not None else 0
        self._statement_log = statement_log  # the user activity log and stl_query, when enabled
        self._on_parameter = on_parameter    # ParameterStatus from the backend (the connection log)
        self.statements = 0
        self.bytes_in = self.bytes_out = 0
        self.denials: list[str] = []  # SQLSTATEs of the proxy's refusals, for the metrics
        self.backend_session: BackendSession | None = backend  # None: none held (transaction pooling)
        self.backend: Endpoint | None = backend.endpoint
        self.classify = classify
        # The session's standard_conforming_strings (from ParameterStatus), which decides how
        # PostgreSQL reads the client's string constants, and so how the proxy must.
        self.standard_strings = standard_strings
        self.tx_status = m.TX_IDLE
        self._on_client_gone = on_client_gone
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self.last_activity = self._loop.time()  # for idle-session timeouts
        # Which message each reply answers (protocol/pipeline.py), and what to do with it.
        self._pipeline = Pipeline(self._answered, self._discarded)
        self._tagged = 0                           # queued messages with command tags to restore
        self._denials: dict[str, bytes] = {}       # marker -> the ErrorResponse the client gets
        self._error: tuple[str, str] | None = None  # the first error since the last ReadyForQuery
        self._failing: tuple[str, str] | None = None  # the error being handled, while it is
        self._lost_reported = False
        self._fatal_seen = False  # the backend said why it ends the session
        # A statement changing masking or row-level security completed: when its transaction
        # ends, the ReadyForQuery waits until the proxy has read the change (_ready_held).
        self._protection_moved = protection_moved
        self._protecting = False
        self._holding: asyncio.Task | None = None
        # DDL completed (_DDL_TAGS; _MAKING_VIEWS: 2): when its transaction ends, the ReadyForQuery
        # waits, briefly, while the proxy binds the late-binding views it may have made readable
        # (catalog/late_binding.py; late_bound(whether views may have been made)).
        self._late_bound = late_bound
        self._ddl_ended = 0
        # A statement reading the audit tables waits until the proxy has written what it queued
        # before it (AuditWriter.caught_up); the client's messages wait with it.
        self._audit_caught_up = audit_caught_up
        self._reads_audit = False
        self._audit_wait: asyncio.Task | None = None
        # A statement naming long names waits until the map back holds them (remember_names:
        # None when it does already), so that what it makes is listed by their names at once.
        self._remember_names = remember_names
        self._long_names: Awaitable[None] | None = None
        # The short names of the long ones this session wrote -> the long ones (UTF-8): its
        # results' columns named so are named as it wrote them (every RowDescription is looked
        # at once there is one). None until then (memory per idle client).
        self._result_names: dict[bytes, bytes] | None = None
        self._statement_tags: dict[bytes, bytes] = {}
        self._portal_tags: dict[bytes, bytes] = {}
        # For the statement log: prepared statements' SQL, and the portals bound to them (with
        # whether an Execute ran them yet: an Execute that continues a suspended portal is the
        # same statement).
        self._statement_sql: dict[bytes, bytes] = {}
        self._portal_sql: dict[bytes, list] = {}  # portal -> [SQL, executed, the Parse it waits for]
        self._parses: dict[bytes, _Work] = {}     # name -> its latest Parse, while unanswered
        # Redshift's types in the database (protocol/redshift_types.py): the OIDs clients see are
        # Redshift's, and VARBYTE, TIME and TIMETZ columns' values are rewritten. Which columns of
        # a statement or portal those are is known from RowDescription (a Describe's answer);
        # the rows of a Query or of an Execute of a portal not seen bound take the last
        # RowDescription's.
        self._types = redshift_types
        self._statement_columns: dict[bytes, rt.Columns] = {}
        self._portal_columns: dict[bytes, rt.Columns] = {}     # from a Describe of the portal
        self._portal_statements: dict[bytes, bytes] = {}       # from its Bind
        self._statement_intervals: dict[bytes, dict[int, int]] = {}  # Bind values to convert
        self._result_columns: rt.Columns | None = None
        # Describe, Bind and Execute are looked at from each Parse to the next Sync (which
        # statement or portal they name), and always while some statement or portal has
        # columns to convert: a statement described only in a later Sync than its Parse's, and
        # before any had columns, is not known (its rows are not converted).
        self._after_parse = False
        # Extended-protocol messages sent since the last Sync: the backend may be inside an
        # implicit transaction that no ReadyForQuery has reported.
        self._unsynced = False
        # Whether the backend session outlives the client (backend/pool.py): a Terminate sent
        # while idle keeps it, instead of ending it.
        self.backend_kept = False
        # Transaction pooling (backend/txpool.py): the client holds a backend session only
        # from its first message to the end of its transaction. Named prepared statements are
        # the client's, prepared in whichever session it holds under the proxy's name for
        # their SQL (client's name -> that name, the Parse that prepares it).
        self._lender = lender
        self._prepared: dict[bytes, tuple[bytes, bytes]] = {}
        self._unnamed: bytes | None = None  # the Parse of the client's unnamed statement, while it has one
        self._held = bytearray()  # client bytes that wait for a backend session
        self._waiting = False     # for a session (Lender.lend)
        self._owed = None         # replies to the restore of the session lent (txpool.OwedReplies)
        self._started: asyncio.Future | None = None  # for a cancel waiting for a session (started)
        # A cancel of the client's sent while the replies to the reset of its session were to come
        # may have stopped the reset rather than the client's statement, or have come too late to
        # a session whose reset failed: the statement then runs in another session (_again), where
        # the cancel is sent again once that session's reset is over (recancel).
        self._recancel = recancel
        self._cancelled_in_reset = False
        self._cancel_again = False
        self._flushed = False  # the replies to the reset come at once (Flush), ahead of the statement's
        self._ahead: list | None = None  # while they come: where the client's messages are (_up_to_sync)
        # And what went to PostgreSQL after a reset (of a session another client used): should the
        # reset fail, PostgreSQL ran none of it, and it is sent again in another session, once
        # (_retry: what that takes, while that session is asked for).
        self._sent_ahead: bytearray | None = None
        self._retry: tuple | None = None
        self._baseline: dict[str, str] | None = None  # and its parameters until reported (_unreported)
        self._release_due = False
        self._hiding = 0          # added messages not yet answered
        self.pinned: str | None = None  # what ties the backend session to this client, if anything
        self._discards = False    # not shared again: its prepared statements were dropped, or a cancel may come late
        self.cancelling = 0       # cancel requests on their way to the held session
        # The client's session-level settings (name -> its SET statement), restored in each
        # session it lands on; those sent and not yet settled by a ReadyForQuery; the unnamed
        # statement's, while it is one, and whether a Bind of it is to be executed.
        self._settings: dict[str, bytes] = {}
        # The parameters PostgreSQL reported to the client (at login, then by ParameterStatus):
        # a session restored for it (txpool.restore_ahead) reports those it set back again.
        self._told = _shared_parameters(backend.parameters) if lender is not None else None
        self._settings_pending: list[tuple[str | None, bytes | None]] = []
        self._set_statement: tuple | None = None
        self._set_bound = False
        client_wanted = {m.F_QUERY, m.F_PARSE, m.F_FUNCTION_CALL}
        if keep_backend or lender is not None:
            client_wanted.add(m.F_TERMINATE)
        if lender is not None:
            client_wanted.update((m.F_BIND, m.F_DESCRIBE, m.F_CLOSE, m.F_EXECUTE))
        if statement_log is not None:
            client_wanted.update(_NAMED)  # Bind, Execute and Close: each execution is a statement
        wanted = frozenset(client_wanted)
        self._always_wanted = _WANTED_SETS.setdefault(wanted, wanted)  # one of a few: shared
        self._from_client = MessageStream(
            self.backend.write, client_wanted, self._client_message, self._client_header, max_message_size,
            counted=_COUNTED_REQUESTS)
        backend_wanted = {m.B_READY_FOR_QUERY, m.B_ERROR_RESPONSE, m.B_PARAMETER_STATUS}
        if redshift_types is not None:
            backend_wanted.update(_DESCRIPTIONS)
        if sources is not None:
            backend_wanted.add(m.B_ROW_DESCRIPTION)
        # Descriptions looked at only if they may name one of Redshift's types while nothing is
        # noted (_track_names); every RowDescription, with extended result metadata.
        self._sieved = _DESCRIPTIONS - {m.B_ROW_DESCRIPTION} if sources is not None else _DESCRIPTIONS
        # Every reply's type goes to the pipeline, but for rows, COPY data and what comes
        # unasked (nothing of them changes what PostgreSQL answers).
        self._from_backend = MessageStream(
            client.write, backend_wanted, self._backend_message, self._pipeline.received, 1 << 30,
            counted=_COUNTED_REPLIES)
        if redshift_types is not None:
            self._from_backend.sieved, self._from_backend.sieve = self._sieved, redshift_types.markers

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.client.peer, self.backend.peer = self.backend, self.client
        self.backend.relay_to(self._backend_data, self._backend_closed)
        if self._lender is not None and self._may_release():
            # In transaction pooling the login's session goes back before the client's first
            # bytes are read (a client may send its first Query with its password): they run
            # in a session lent to it and restored for it (txpool.restore_ahead), never in the
            # one that greeted it, which is still as its last client left it.
            self._release()
        self.client.relay_to(self._client_data, self._client_closed)

    async def finished(self) -> None:
        await self._done

    @property
    def busy(self) -> bool:
        """A query is running or a pipeline is unanswered (or its ReadyForQuery is held)."""
        return self._pipeline.busy or self._holding is not None

    @property
    def idle(self) -> bool:
        return not self.busy and self.tx_status == m.TX_IDLE

    def close(self, client_message: bytes | None = None, reusable: bool = False) -> None:
        """End the client's connection (with client_message, if given); its backend session
        ends too, unless kept (backend/pool.py) or, in transaction pooling, given back
        (reusable: the client left it idle with nothing of its own in it)."""
        if self._waiting:
            self._waiting = False
            self._lender.stop()
        if self._statement_log is not None:
            error = self._error or ("08006", "the session ended before the statement completed")
            for pending in self._pipeline.pending():
                if pending.data is not None and pending.data.handles:
                    self._statement_log.ended(pending.data.handles, error)
                    pending.data.handles = None
        if client_message is not None:
            self.client.write(client_message)
        self.client.close()
        if self._lender is not None:
            if self.backend is not None:
                self._release(reusable)
        elif not self.backend_kept:
            self.backend.close()
        self._from_client.write = _drop  # what remains of the client's packet goes nowhere
        for task in (self._holding, self._audit_wait):
            if task is not None:
                task.cancel()
        if not self._done.done():
            self._done.set_result(None)

    def _keep_backend(self) -> None:
        """The client said goodbye while idle: the backend session outlives it (backend/pool.py).
        Nothing of this client may reach the session from now on: no more bytes (the rest of
        the packet is dropped), no cancel when it goes, no flow control."""
        self.backend_kept = True
        self._from_client.write = lambda data: None
        self._on_client_gone = None
        self.client.peer = None
        self.backend.detach()
        self.close()

    def _client_closed(self) -> None:
        if self.busy and self._on_client_gone is not None and self.backend_session is not None:
            self._on_client_gone(self.backend_session)  # cancel the running query so the backend ends promptly
        self.close(reusable=self._lender is not None and self._may_release())

    # ---------------------------------------------------------------- transaction pooling

    def _may_release(self) -> bool:
        """The held backend session may serve another client now: the client's transaction
        ended (ReadyForQuery idle), nothing it sent is unanswered or unsynced, no message of
        it is half through, no cancel of it is on its way, the replies to the session's restore
        came, and nothing pins the session."""
        return (self.backend is not None and self.pinned is None and self.tx_status == m.TX_IDLE
                and not self.busy and not self._unsynced and not self._pipeline.lost
                and not self._from_client.mid_message and not self.cancelling and self._owed is None)

    def _release(self, reusable: bool = True) -> None:
        session, self.backend_session, self.backend = self.backend_session, None, None
        session.endpoint.detach()
        self.client.peer = None
        self._from_client.write = _drop  # _client_data holds what comes until a session is held
        self._lender.release(session, reusable and not self._discards)
        self._discards = False

    def _wait_for_backend(self, data: bytes) -> None:
        """Client bytes while it holds no backend session: kept, and one is asked for (a
        Terminate alone ends the client without one)."""
        if not self._held and data[:5] == _TERMINATE:
            self.close()
            return
        self._hold(data)
        if not self._waiting:
            self._waiting = True
            self._lender.lend(self._settings, self._given)

    def _given(self, given: BackendSession | NoBackend) -> None:
        """Lender.lend's answer: a session to run the held bytes in, or why there is none."""
        self._waiting = False
        cancelled = self._started is not None  # a cancel of the client's waited for the session
        self._start()
        if isinstance(given, NoBackend):
            self.close(given.reply)
            return
        if self._done.done():
            self._lender.release(given, reusable=True)
            return
        self._attach(given)
        retry, self._retry = self._retry, None
        if retry is not None:
            given.holder = _AGAIN  # reset whatever it held: the bytes sent again assume it was
        full = given.holder not in (None, self._lender)
        backend = given.endpoint
        backend.cork()  # the restore and the client's messages in one write
        try:
            self._owed = restore_ahead(given, self._settings, self._lender)
            if self._owed is not None:  # what PostgreSQL last reported there, to another client
                self._baseline = dict(given.reported)
                self._ahead = [b"", 0]
                if retry is not None or cancelled:
                    # The reset's replies at once (not with the statement's): a cancel of the
                    # client's waits for them (started), then goes to its statement, not to the
                    # reset, nor to a session that has not read the statement yet (PostgreSQL drops
                    # a cancel that comes while it waits for a command).
                    backend.write(_FLUSH)
                    self._flushed = True
            if retry is not None:
                sent, given.prepared, given.unnamed_owner, self._ahead, self._discards = retry
                backend.write(sent)
            elif full and self._audit_wait is None:
                self._sent_ahead = bytearray()
                self._from_client.write = self._write_ahead
            self._feed_client(self._take_held())
        finally:
            backend.uncork()

    def _write_ahead(self, data: bytes) -> None:
        """Client bytes to the session while the replies to its reset are to come, kept (up to
        _MAX_SENT_AHEAD: past it, as a COPY's data may go, they are not sent again)."""
        if len(self._sent_ahead) + len(data) > _MAX_SENT_AHEAD:
            self._sent_ahead, self._from_client.write = None, self.backend.write
        else:
            self._sent_ahead += data
        self.backend.write(data)

    def _again(self) -> bool:
        """The reset of the session held failed (the last client's leftovers: a lock it holds
        elsewhere, say), so PostgreSQL ran nothing the client sent since: it is sent again in
        a session opened for it, reset too (what it prepares and binds is as in this one after
        its reset). Not in an idle one: the same user may have left leftovers in two sessions,
        and this client would get a FATAL error for them. Once; False when it cannot be (sent
        already, or a statement waits for the audit log or the long names' map, and would be
        sent to no session meanwhile)."""
        if self._sent_ahead is None or self._audit_wait is not None:
            return False
        session, sent, self._sent_ahead = self.backend_session, bytes(self._sent_ahead), None
        retry = (sent, session.prepared, session.unnamed_owner, self._ahead, self._discards)
        self._owed = self._ahead = self._baseline = None
        self._release(reusable=False)
        self._retry = retry
        self._waiting = True
        self._lender.lend(self._settings, self._given, fresh=True)
        return True

    def _hold(self, data: bytes) -> None:
        """Client bytes that wait (for a session, or for the replies to its restore)."""
        self._held += data
        if len(self._held) > _HELD_LIMIT and self.client.transport is not None:
            self.client.transport.pause_reading()

    def _take_held(self) -> bytes:
        held, self._held = bytes(self._held), bytearray()
        if len(held) > _HELD_LIMIT and self.client.transport is not None and not self.client.closed:
            self.client.transport.resume_reading()
        return held

    def _attach(self, session: BackendSession) -> None:
        self.backend_session, self.backend = session, session.endpoint
        self._from_client.write = session.endpoint.write
        self.client.peer, self.backend.peer = self.backend, self.client
        self.backend.relay_to(self._backend_data, self._backend_closed)

    async def started(self, timeout: float) -> None:
        """Wait, up to timeout seconds, while the client waits for a session (a cancel sent
        meanwhile would cancel nothing, and its statement would run later), or while the replies
        to a reset flushed ahead of its statement are to come (the cancel would stop the reset)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while ((self._waiting or self._flushed and self._owed is not None) and not self._done.done()
               and loop.time() < deadline):
            if self._started is None:
                self._started = loop.create_future()
            await asyncio.wait((self._started, self._done), timeout=deadline - loop.time(),
                               return_when=asyncio.FIRST_COMPLETED)

    def _start(self) -> None:
        if self._started is not None:
            started, self._started = self._started, None
            started.set_result(None)

    def cancel_target(self) -> BackendSession | None:
        """The backend session a cancel request of this client must reach now (None: it holds
        none, so nothing runs). The session stays the client's until cancel_done: a cancel
        reaching it after another client took it would cancel that client's query."""
        if self.backend_session is not None:
            self.cancelling += 1
            self._cancelled_in_reset |= self._owed is not None
        return self.backend_session

    def cancel_done(self, read: bool = True) -> None:
        """A cancel sent to the session held has been read by PostgreSQL, or not (read False:
        it may still come, to whatever the session runs then; so the session is not given to
        another client, it ends when this one gives it back)."""
        self.cancelling -= 1
        if not read:
            self._discards = True
        if self._lender is not None and not self._done.done() and self._may_release():
            self._release()

    def _hide(self, kind: int, message: bytes, prepared: tuple | None = None) -> bytes:
        """A Parse or Close the proxy adds before the client's message: its reply is not
        passed on."""
        work = _Work()
        work.hidden, work.prepared = True, prepared
        self._hiding += 1
        self._from_backend.wanted.update(_HIDDEN_REPLIES)
        self._pipeline.sent(Entry(kind, work))
        return message

    def _unhide(self) -> None:
        self._hiding -= 1
        if not self._hiding:
            self._from_backend.wanted.difference_update(_HIDDEN_REPLIES)

    def _note_effect(self, sql: bytes, statement: bytes | None = None) -> None:
        """What the SQL of a Query (statement None) or of a Parse of that statement leaves in
        the session beyond its transaction (policy/pinning.py)."""
        effect = session_effect(sql)
        if effect.pins is not None and self.pinned is None:
            self.pin(effect.pins)
        if effect.discards:
            self._discards = True
            self.backend_session.prepared.clear()
        if statement == b"":
            # Run by the Executes of its Binds (_setting_run), until the next unnamed Parse.
            self._set_statement, self._set_bound = effect.settings or None, False
        elif statement is not None and effect.settings:
            self.pin("SET in a named prepared statement")
        elif effect.settings:
            self._setting_run(effect.settings)

    def _setting_run(self, settings: tuple) -> None:
        """Settings sent to run: kept if the ReadyForQuery after them says they did, outside a
        transaction block (_settle). With replies to earlier messages still to come, which
        ReadyForQuery that is is not certain: the session is pinned instead."""
        if self.busy:
            self.pin("SET sent while other statements run")
        else:
            self._settings_pending.extend(settings)

    def _settle(self, failed: bool) -> None:
        """The ReadyForQuery after settings were sent: an error rolled them back; inside a
        transaction block, the block's end decides (pinned); else they hold."""
        pending, self._settings_pending = self._settings_pending, []
        if failed or self.pinned is not None:
            return
        if self.tx_status != m.TX_IDLE:
            self.pin("SET inside a transaction block")
            return
        for name, statement in pending:
            if name is None:
                self._settings.clear()
            elif statement is None:
                self._settings.pop(name, None)
            else:
                self._settings.pop(name, None)  # the latest last: restored in the order they ran
                self._settings[name] = statement
        self.backend_session.settings = dict(self._settings)

    def pin(self, reason: str) -> None:
        self.pinned = reason
        log.debug("backend session pinned to its client for its lifetime: %s", reason)

    def _pooled_parse(self, parse: m.Parse, sql: bytes | None, work: _Work | None) -> bytes | None:
        """A Parse in transaction pooling (sql: the SQL to send, None: the client's own). A
        named statement is prepared under the proxy's name for its SQL (a session that served
        another client has none: txpool.restore_ahead): a session that has it already gets it
        again (Close first)."""
        sent = parse.sql if sql is None else sql
        self._note_effect(sent, parse.name)
        if not parse.name:
            self._unnamed = m.Parse(b"", sent, parse.param_types).encode()
            self.backend_session.unnamed_owner = self
            self._send(entry(PARSE, work))
            return None if sql is None else self._unnamed
        work = work or _Work()
        if parse.name in self._prepared:
            # PostgreSQL's own answer to a name the client took already.
            name = parse.name.decode("utf-8", "replace")
            refused = self._apply(Plan((Action(0, 0, 0, denial=Denial(
                DUPLICATE_PREPARED_STATEMENT, f'prepared statement "{name}" already exists')),)), b"", work)
            self._send(entry(PARSE, work))
            return m.Parse(parse.name, refused, b"\0\0").encode()
        server_name = b"sg_" + hashlib.blake2b(sent + b"\0" + parse.param_types, digest_size=12).hexdigest().encode()
        message = m.Parse(server_name, sent, parse.param_types).encode()
        self._prepared[parse.name] = (server_name, message)
        session = self.backend_session
        if server_name in session.prepared:
            del session.prepared[server_name]
            added = self._hide(CLOSE, m.close_statement(server_name))
        else:
            added = self._make_room(session)
        session.prepared[server_name] = None
        work.prepared = (parse.name, server_name, session)
        self._send(entry(PARSE, work))
        return added + message

    def _pooled_name(self, kind: int, body: bytes, at: int, name: bytes) -> bytes | None:
        """A Bind, Describe or Close naming the client's prepared statement `name` (at offset
        `at` of body), as sent: naming the proxy's statement, prepared first in the session
        held now if it is not there."""
        known = self._prepared.get(name)
        if known is None:
            return None  # PostgreSQL's answer: it does not exist (Close: nothing to close)
        server_name, message = known
        session = self.backend_session
        added = b""
        if kind == m.F_CLOSE:
            del self._prepared[name]
            session.prepared.pop(server_name, None)
        elif server_name not in session.prepared:
            added = self._make_room(session)
            session.prepared[server_name] = None
            added += self._hide(PARSE, message, (None, server_name, session))
        return added + m.message(kind, body[:at] + server_name + body[at + len(name):])

    def _with_unnamed(self, kind: int, body: bytes) -> bytes | None:
        """A Bind or Describe of the unnamed statement, as sent: after the client's own, parsed
        again if the session held now has another client's (or, when the client has none, after
        a Close of it: PostgreSQL then answers as it would, that there is none); None: as it
        came. Parse and Sync usually come in one batch, but a client may bind it after a Sync
        (asyncpg without its statement cache)."""
        session = self.backend_session
        if session.unnamed_owner is self:
            return None
        session.unnamed_owner = self
        if self._unnamed is None:
            added = self._hide(CLOSE, m.close_statement(b""))
        else:
            added = self._hide(PARSE, self._unnamed)
        return added + m.message(kind, body)

    def _make_room(self, session: BackendSession) -> bytes:
        """Before a statement more is prepared in session: the oldest closed, at _MAX_PREPARED."""
        if len(session.prepared) < _MAX_PREPARED:
            return b""
        oldest = next(iter(session.prepared))
        del session.prepared[oldest]
        return self._hide(CLOSE, m.close_statement(oldest))

    def _unprepare(self, work: _Work) -> None:
        """A Parse of the proxy's name failed or was skipped: that session lacks it."""
        name, server_name, session = work.prepared
        session.prepared.pop(server_name, None)
        if name is not None and self._prepared.get(name, (None,))[0] == server_name:
            del self._prepared[name]

    def _backend_closed(self) -> None:
        # PostgreSQL ended the session. When it said why (a FATAL ErrorResponse, passed on as
        # it came) the client knows; when it did not (the server was killed, the connection
        # broke), the client is told here, if the bytes sent so far end at a message boundary.
        if self._done.done():
            return  # closed by this side
        message = None
        if not self._from_backend.mid_message and not self.client.closed and not self._fatal_seen:
            message = m.error_response(
                "FATAL", CONNECTION_FAILURE, "the connection to the cluster's database was lost",
                detail="The backing PostgreSQL closed the session without a reason (it may have "
                       "stopped or restarted).",
                hint="Reconnect; the transaction in progress, if any, was rolled back.")
        self.close(message)

    # ---------------------------------------------------------------- client -> backend

    def _client_data(self, data: bytes) -> None:
        self.last_activity = self._loop.time()
        self.bytes_in += len(data)
        if self.backend is None:
            self._wait_for_backend(data)
            return
        self._feed_client(data)

    def _feed_client(self, data: bytes) -> None:
        if self._ahead is not None:
            data = self._up_to_sync(data)
        self._guarded(self._from_client.feed, data)

    def _up_to_sync(self, data: bytes) -> bytes:
        """While the replies to the session's restore are to come: what of data may go to
        PostgreSQL now. Should the restore fail, PostgreSQL skips the client's messages only up
        to its first Sync, and would run those after it in a session not restored: they wait
        in _held until the restore is answered (_owed_replies)."""
        head, left = self._ahead  # the current message's header as far as seen, its bytes still to come
        if head is None:  # past the Sync
            self._hold(data)
            return b""
        pos = 0
        while pos < len(data):
            if len(head) < 5:
                take = min(5 - len(head), len(data) - pos)
                head, pos = head + data[pos:pos + take], pos + take
                if len(head) < 5:
                    break
                left = max(int.from_bytes(head[1:5], "big") - 4, 0)  # (a bad length: the parser's to refuse)
            step = min(left, len(data) - pos)
            pos, left = pos + step, left - step
            if not left:
                if head[0] == m.F_SYNC:
                    self._ahead = [None, 0]
                    self._hold(data[pos:])
                    return data[:pos]
                head = b""
        self._ahead = [head, left]
        return data

    def _guarded(self, feed: Callable, *data: bytes) -> None:
        """Client bytes to the message stream; a malformed message ends the connection."""
        try:
            feed(*data)
        except m.ProtocolViolation as exc:
            self.close(m.error_response("FATAL", PROTOCOL_VIOLATION, str(exc)))

    def _client_header(self, kind: int) -> None:
        # Seen from the header alone: no body is looked at on the hot path. (After the
        # Terminate that kept the backend session this no longer matters: nothing reads it,
        # and _client_message stops everything else.)
        if kind == m.F_SYNC:
            self._unsynced = False
            if self._after_parse:
                self._after_parse = False
                self._track_names()
        elif kind in _EXTENDED:
            self._unsynced = True
        elif kind == m.F_COPY_DATA:
            self._pipeline.copy_data()
            return
        self._pipeline.sent(BARE[kind])  # CopyDone and CopyFail too

    def _client_message(self, kind: int, body: bytes) -> bytes | None:
        if self.backend_kept:
            return b""  # after the Terminate that kept the backend session: nothing runs or counts
        if kind == m.F_TERMINATE:  # wanted only when the backend session may be kept or given back
            if self._lender is not None:
                self.close(reusable=self._may_release())
                return b""
            if self.idle and not self._unsynced and not self._pipeline.lost:
                self._keep_backend()
                return b""
            return None
        if kind == m.F_QUERY:
            if self._lender is not None:  # a Query ends the unnamed statement (exec_simple_query)
                self._unnamed, self.backend_session.unnamed_owner = None, self
            if self._portal_columns:
                self._forget_cursors()
            return self._after_audit(kind, body, self._query(body))
        if kind == m.F_FUNCTION_CALL:
            return self._function_call()
        self._unsynced = True
        if kind == m.F_PARSE:
            return self._after_audit(kind, body, self._parse(body))
        # Bind, Execute, Close: wanted while some prepared statement has a rewritten tag or
        # columns to convert, or for the statement log. Describe: in transaction pooling, and
        # with Redshift's types (see _track_names). A malformed one goes on as it is:
        # PostgreSQL refuses it.
        work = sent = None
        try:
            if kind == m.F_EXECUTE:
                portal = m.decode_execute_portal(body)
                if self._portal_columns:
                    self._forget_cursors(portal)
                if self._set_bound and portal == b"":
                    self._set_bound = False
                    self._setting_run(self._set_statement)
                work = self._execute(portal)
            elif kind == m.F_BIND:
                portal, statement = m.decode_bind_names(body)
                # The client's statement name: the types' tables and the pooled name go by it.
                converted = self._bind(portal, statement, body)
                if converted is not None:
                    body = converted
                if self._lender is not None:
                    self._set_bound = not statement and not portal and self._set_statement is not None
                    if statement:
                        sent = self._pooled_name(kind, body, len(portal) + 1, statement)
                    else:
                        sent = self._with_unnamed(kind, body)
                if sent is None and converted is not None:
                    sent = m.message(kind, converted)
            else:
                what, name = m.decode_close(body)  # Describe's body reads the same
                if kind == m.F_CLOSE and what == ord("S"):
                    self._statement_tags.pop(name, None)
                    self._statement_sql.pop(name, None)
                    self._statement_columns.pop(name, None)
                    self._statement_intervals.pop(name, None)
                elif kind == m.F_CLOSE:
                    self._portal_tags.pop(name, None)
                    self._portal_sql.pop(name, None)
                    self._portal_columns.pop(name, None)
                    self._portal_statements.pop(name, None)
                elif self._types is not None and self._types_watched() and body.find(b"\0") == len(body) - 1:
                    work = _Work()  # which statement or portal the RowDescription answering it describes
                    work.described = (what, name)
                if self._lender is not None and what == ord("S") and name:
                    sent = self._pooled_name(kind, body, 1, name)
                elif self._lender is not None and what == ord("S") and kind == m.F_CLOSE:
                    self._unnamed, self.backend_session.unnamed_owner = None, self
                elif self._lender is not None and what == ord("S"):
                    sent = self._with_unnamed(kind, body)
        except m.ProtocolViolation:
            work = None
        self._send(entry(kind, work))
        self._track_names()
        return sent

    def _after_audit(self, kind: int, body: bytes, sent: bytes | None) -> bytes | None:
        """sent (None: the message as it came), or, for SQL reading the audit tables or naming
        long names the map back lacks, nothing now: it goes when the audit records queued
        before it are written and the names recorded, and what the client sends after it waits
        until then."""
        if not self._reads_audit and self._long_names is None:
            return sent
        reads_audit, long_names = self._reads_audit, self._long_names
        self._reads_audit, self._long_names = False, None
        self._from_client.hold()
        self._audit_wait = self._loop.create_task(
            self._send_after_audit(sent if sent is not None else m.message(kind, body), reads_audit, long_names))
        return b""

    async def _send_after_audit(self, message: bytes, reads_audit: bool, long_names: Awaitable[None] | None) -> None:
        try:
            if reads_audit:
                await asyncio.wait_for(self._audit_caught_up(), AUDIT_WAIT_SECONDS)
            if long_names is not None:
                await asyncio.wait_for(long_names, AUDIT_WAIT_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the backing database away: the statement runs as it is
            log.warning("could not write the audit records or long names before a statement: %s", exc)
        self._audit_wait = None
        if self._done.done():
            return
        self._from_client.write(message)
        self._guarded(self._from_client.release)

    def _send(self, sent: Entry) -> None:
        if sent.data is not None and sent.data.tags:
            self._tagged += 1
            self._from_backend.wanted.add(m.B_COMMAND_COMPLETE)
        self._pipeline.sent(sent)

    def _bind(self, portal: bytes, statement: bytes, body: bytes) -> bytes | None:
        """Note what the portal runs; the Bind's body to send instead, if its values must change."""
        tag = self._statement_tags.get(statement)
        changed = None
        if tag is not None:
            self._portal_tags[portal] = tag
            if tag == b"SHOW" and (unmatchable := rt.bind_unmatchable(body)) != body:
                changed = body = unmatchable  # a name or pattern holding a NUL
        else:
            self._portal_tags.pop(portal, None)
        if self._statement_log is not None:
            sql = self._statement_sql.get(statement)
            if sql is not None:
                self._portal_sql[portal] = [sql, False, self._parses.get(statement)]
            else:
                self._portal_sql.pop(portal, None)
        if self._types is None or not self._types_watched():
            return changed
        self._portal_statements[portal] = statement
        self._portal_columns.pop(portal, None)
        columns = self._statement_columns.get(statement)
        texts = rt.bind_text_results(body, columns) if columns and self._types.binary else None
        intervals = self._statement_intervals.get(statement)
        return rt.bind_intervals(texts or body, intervals) if intervals else texts or changed

    def _execute(self, portal: bytes) -> _Work | None:
        tag = self._portal_tags.get(portal)
        work = _Work(tags={1: tag}) if tag is not None else None
        bound = self._portal_sql.get(portal) if self._statement_log is not None else None
        # Each execution of a prepared statement is a statement of the log, as on Redshift; an
        # Execute that continues a suspended portal is not a new one. (A portal the proxy did
        # not see bound is a cursor of DECLARE, logged when it was declared.)
        if bound is not None and not bound[1]:
            bound[1] = True
            work = work or _Work()
            parse = bound[2]
            if parse is not None and parse.waiting is not None:
                # Which SQL runs depends on whether that Parse succeeds (a name already taken
                # keeps its statement): logged when PostgreSQL has answered it (_parse_answered).
                parse.waiting.append((work, bound))
            else:
                work.handles = [self._statement_log.started(bound[0], self.tx_status != m.TX_IDLE,
                                                            self.standard_strings)]
        if self._types is not None and self._types_watched():
            work = work or _Work()
            work.portal, work.statement = portal, self._portal_statements.get(portal)
        return work

    def _forget_cursors(self, running: bytes | None = None) -> None:
        """What a statement runs may close SQL cursors and declare others under their names
        (CLOSE and DECLARE, the end of a transaction, a function's cursors): the columns noted
        from a Describe of a portal no Bind of the client's made go, but those of the one about to
        be read (running)."""
        for name in [n for n in self._portal_columns if n != running and n not in self._portal_statements]:
            del self._portal_columns[name]

    def _query(self, body: bytes) -> bytes | None:
        try:
            sql = m.decode_query(body)
        except m.ProtocolViolation:
            # Not one string (a NUL inside, or none at the end): PostgreSQL refuses the
            # message itself (08P01, invalid message format) before reading any SQL in it. The
            # user activity log still records what the client sent (audit/records.py makes
            # its NULs U+FFFD).
            work = None
            if self._statement_log is not None:
                raw = body[:-1] if body.endswith(b"\0") else body
                work = _Work(handles=[self._statement_log.started(raw, self.tx_status != m.TX_IDLE,
                                                                 self.standard_strings)])
            self._send(entry(QUERY, work))
            return None
        self.statements += 1
        handles = None
        if self._statement_log is not None:
            handles = [self._statement_log.started(sql, self.tx_status != m.TX_IDLE, self.standard_strings)]
        self._vacating(sql)
        plan = self._plan(sql)
        if not plan.actions and plan.text is None and sql.isascii():
            if self._lender is not None:
                self._note_effect(sql)
            self._send(entry(QUERY, _Work(handles=handles) if handles else None))
            return None
        work = _Work(handles=handles)
        sent = self._apply(plan, sql, work)
        if self._lender is not None:
            self._note_effect(sent)
        self._send(entry(QUERY, work))
        return m.query(sent)

    def _plan(self, sql: bytes) -> Plan:
        plan = self.classify(sql, self.standard_strings, identifier_case=self.identifier_case)
        if plan.identifier_case is not None:
            self.identifier_case = plan.identifier_case
        if plan.alters and self._on_alter is not None:
            self._altered = True
            self._on_alter()
        return plan

    def _vacating(self, sql: bytes) -> None:
        if self._on_vacate_database is not None:
            for database in databases_to_vacate(sql):
                self._on_vacate_database(database)

    def _function_call(self) -> bytes:
        """The fast-path FunctionCall calls any function by OID, out of the proxy's sight
        (set_config('role', ...) among them); Redshift has none. It becomes a Query that fails:
        both answer with an ErrorResponse and one ReadyForQuery, and PostgreSQL aborts the
        transaction as for any error."""
        denial = Plan((Action(0, 0, 0, denial=Denial(
            FEATURE_NOT_SUPPORTED, "the fast-path function call interface is not supported",
            hint="call the function in a SELECT")),))
        work = _Work()
        sent = self._apply(denial, b"", work)
        self._send(entry(QUERY, work))
        return m.query(sent)

    def _parse(self, body: bytes) -> bytes | None:
        try:
            parse = m.decode_parse(body)
        except m.ProtocolViolation:
            # Malformed as PostgreSQL reads Parse too: it refuses it without parsing the SQL.
            self._send(entry(PARSE))
            return None
        self.statements += 1
        declared = parse
        if self._types is not None:
            parse = self._parse_types(parse)
        # After the types' OIDs became the backend's (neither is one typed_unused changes).
        parse = typed_unused(parse)
        work = None
        if self._statement_log is not None:
            if parse.name not in self._statement_sql and len(self._statement_sql) >= _MAX_STATEMENTS:
                del self._statement_sql[next(iter(self._statement_sql))]
            # Taken as the name's SQL now (the Bind and Execute after it in the pipeline run it);
            # if PostgreSQL refuses the Parse (the name is taken, say), the name keeps its own.
            work = _Work(sql=parse.sql)
            work.replaced = (parse.name, self._statement_sql.get(parse.name))
            work.waiting = []
            self._statement_sql[parse.name] = parse.sql
            self._parses[parse.name] = work
        self._vacating(parse.sql)
        plan = self._plan(parse.sql)
        if not plan.actions and plan.text is None and parse.sql.isascii():
            if self._statement_tags.pop(parse.name, None) is not None:
                self._track_names()
            sql = None
        else:
            work = work or _Work()
            sql = self._apply(plan, parse.sql, work)
            work.tags = None  # a Parse's tags go by the statement, then the portal (_execute)
            tag = plan.actions[0].tag if len(plan.actions) == 1 else None
            if tag is not None:
                self._statement_tags[parse.name] = tag
            else:
                self._statement_tags.pop(parse.name, None)
            self._track_names()
        if sql is None and parse is not declared:
            sql = parse.sql  # sent as it came, with its parameters' types changed
        if self._lender is not None:
            return self._pooled_parse(parse, sql, work)
        self._send(entry(PARSE, work))
        return None if sql is None else m.Parse(parse.name, sql, parse.param_types).encode()

    def _parse_types(self, parse: m.Parse) -> m.Parse:
        """A new statement of that name: its columns to convert are not known yet. Its parameters of
        Redshift's types get the backend's OIDs (the Parse to send then, else parse itself), and
        the interval ones are noted for their Binds."""
        had = (self._statement_columns.pop(parse.name, None),
               self._statement_intervals.pop(parse.name, None)) != (None, None)
        retyped = rt.parse_types(parse.param_types, self._types)
        if retyped is not None and retyped[1]:
            self._statement_intervals[parse.name] = retyped[1]
        if had or (retyped is not None and retyped[1]) or not self._after_parse:
            self._after_parse = True
            self._track_names()
        return m.Parse(parse.name, parse.sql, retyped[0]) if retyped is not None else parse

    def _apply(self, plan: Plan, sql: bytes, work: _Work) -> bytes:
        """The SQL to send for a plan; the command tags to restore go to work.tags by the
        statement's ordinal, the denials' markers to work.markers.

        A denied statement is sent as one that fails in PostgreSQL, naming a relation that
        cannot exist (a random marker); that ErrorResponse is replaced by the denial wherever
        it comes (_error_reply). So PostgreSQL itself aborts the transaction and skips what
        it skips after an error, and both sides stay in step.

        Only ASCII is sent (DESIGN principle 8: it reads the same in every client encoding the
        session may have by the time PostgreSQL reads it); the classifier writes the client's
        SQL so (tokens.as_ascii). Anything else left here is a bug of ours: the message is
        refused, never sent."""
        text = plan.text if plan.text is not None else sql.decode("utf-8", "replace")
        pieces = []
        cursor = 0
        denials, tags = {}, {}
        for action in plan.actions:
            pieces.append(text[cursor:action.start])
            if action.denial is not None:
                marker = "sg.deny." + secrets.token_hex(6)
                denials[marker] = action.denial
                pieces.append(f'SELECT FROM pg_catalog."{marker}"')
            else:
                pieces.append(action.sql)
                if self._audit_caught_up is not None and any(view in action.sql for view in _AUDIT_VIEWS):
                    self._reads_audit = True
                if action.tag is not None:
                    tags[action.index + 1] = action.tag
            cursor = action.end
        pieces.append(text[cursor:])
        if plan.long_names:
            self._name_results(plan.long_names)
            if self._remember_names is not None:
                self._long_names = self._remember_names(plan.long_names)
        sent = "".join(pieces)
        # Only ASCII without NULs is sent (a NUL cannot be inside a protocol string); the
        # client's own SQL holds no NUL (decode_query, decode_parse): either is a bug of ours.
        fault = "in ASCII" if not sent.isascii() else "without a NUL" if "\0" in sent else None
        if fault is not None:
            log.error("refused to send a statement that could not be written %s (a bug in shiftguard)", fault)
            marker = "sg.deny." + secrets.token_hex(6)
            denials, tags = {marker: Denial(
                INTERNAL_ERROR, f"shiftguard could not write this statement {fault}",
                hint="This is a bug in shiftguard; the statement was not run.")}, {}
            sent = f'SELECT FROM pg_catalog."{marker}"'
        result = sent.encode()
        for marker, denial in denials.items():
            self.denials.append(denial.sqlstate)
            if len(self._denials) >= _MAX_DENIALS:
                del self._denials[next(iter(self._denials))]
            self._denials[marker] = m.error_response(
                "ERROR", denial.sqlstate, denial.message, detail=denial.detail, hint=denial.hint)
        work.markers = list(denials) or None
        work.tags = tags or None
        return result

    def _name_results(self, long_names: frozenset[str]) -> None:
        if self._result_names is None:
            self._result_names = {}
            self._from_backend.wanted.add(m.B_ROW_DESCRIPTION)
            self._sieved -= {m.B_ROW_DESCRIPTION}
            self._from_backend.sieved -= {m.B_ROW_DESCRIPTION}
        elif len(self._result_names) > _MAX_RESULT_NAMES:
            self._result_names.clear()
        for name in long_names:
            self._result_names[short_name(name).encode()] = name.encode()

    def _types_watched(self) -> bool:
        """Do Describes, Binds and Executes now note what they name, for Redshift's types? While
        some statement or portal has columns or parameters to convert, and from each Parse to
        its Sync (as _track_names looks at them); one seen at other times only because
        transaction pooling or the statement log looks at each is not noted either, so that
        it costs nothing more and reads as in session pooling."""
        return bool(self._after_parse or self._statement_columns or self._portal_columns or self._statement_intervals)

    def _track_names(self) -> None:
        """Look at Bind, Execute and Close only while some prepared statement has a rewritten
        tag or Redshift's types to convert (or always, for the statement log); at DataRows only
        while some may have columns to convert."""
        typed = self._types is not None and (self._statement_columns or self._portal_columns
                                             or self._statement_intervals)
        if self._statement_tags or self._portal_tags or typed or self._after_parse:
            self._from_client.wanted.update(_NAMED)
        else:
            self._from_client.wanted.difference_update(_NAMED - self._always_wanted)
        if self._types is None:
            return
        if typed or self._result_columns:
            self._from_backend.wanted.add(m.B_DATA_ROW)
            self._from_backend.sieved = frozenset()  # each RowDescription may end what was noted
        else:
            self._from_backend.wanted.discard(m.B_DATA_ROW)
            self._from_backend.sieved = self._sieved
        if typed or self._after_parse:
            self._from_client.wanted.add(m.F_DESCRIBE)
            return
        if m.F_DESCRIBE not in self._always_wanted:  # transaction pooling looks at each
            self._from_client.wanted.discard(m.F_DESCRIBE)
        if self._portal_statements:
            self._portal_statements.clear()  # Binds are not noted now (_types_watched): these would go stale

    # ---------------------------------------------------------------- replies

    def _answered(self, entry: Entry) -> None:
        """pipeline: the last reply to entry came (self._failing: the error it ended with)."""
        work = entry.data
        if work is None:
            return
        if work.prepared is not None and self._failing is not None:
            self._unprepare(work)
        if work.hidden:
            self._unhide()
            return
        if work.tags:
            self._untag()
        if work.markers:
            for marker in work.markers:
                self._denials.pop(marker, None)
        if work.handles:
            # A Query ends with its ReadyForQuery, failed if any of its statements failed; an
            # Execute with its own reply.
            error = self._error if entry.kind in OPENERS else self._failing
            self._statement_log.ended(work.handles, error)
        elif entry.kind == PARSE and work.sql is not None and self._failing is not None:
            # A Parse that failed runs nothing, but it was tried: logged, with its error.
            handle = self._statement_log.started(work.sql, self.tx_status != m.TX_IDLE, self.standard_strings)
            self._statement_log.ended([handle], self._failing)
        if entry.kind == PARSE and work.replaced is not None:
            self._parse_answered(work, succeeded=self._failing is None)

    def _parse_answered(self, work: _Work, succeeded: bool) -> None:
        """A Parse succeeded, failed or was skipped: the name's SQL from now on (a failed one
        keeps what it had, unless parsed again since), and the Executes that waited for it."""
        name, previous = work.replaced
        if not succeeded and self._statement_sql.get(name) is work.sql:
            if previous is None:
                del self._statement_sql[name]
            else:
                self._statement_sql[name] = previous
        if self._parses.get(name) is work:
            del self._parses[name]
        sql = work.sql if succeeded else previous
        waiting, work.waiting = work.waiting, None
        for execute, bound in waiting or ():
            bound[0], bound[2] = sql, None
            if sql is not None:  # else the Bind fails, and nothing runs
                execute.handles = [self._statement_log.started(sql, self.tx_status != m.TX_IDLE,
                                                               self.standard_strings)]

    def _discarded(self, entry: Entry) -> None:
        """pipeline: PostgreSQL will not answer entry (skipped after an error, or read by a
        COPY). Its denial markers stay known: after an uncertain COPY it may run after all."""
        work = entry.data
        if work is None:
            return
        if work.prepared is not None:
            self._unprepare(work)
        if work.hidden:
            self._unhide()
            return
        if work.tags:
            self._untag()
        if work.handles:
            self._statement_log.ended(work.handles, self._error or ("08P01", "not run"))
        if work.replaced is not None:
            self._parse_answered(work, succeeded=False)

    def _untag(self) -> None:
        self._tagged -= 1
        if not self._tagged:
            self._from_backend.wanted.discard(m.B_COMMAND_COMPLETE)

    # ---------------------------------------------------------------- backend -> client

    def _backend_data(self, data: bytes) -> None:
        self.last_activity = self._loop.time()
        if self._owed is not None:
            data = self._owed_replies(data)
            if not data:
                return
        self.bytes_out += len(data)
        self._pass_backend(self._from_backend.feed, data)

    def _owed_replies(self, data: bytes) -> bytes | None:
        """What data holds after the replies to the session's restore (txpool.restore_ahead),
        which the client never sees; the session ends when the restore failed."""
        try:
            rest = self._owed.feed(data)
        except (RestoreFailed, m.ProtocolViolation) as exc:
            log.info("backend session not reused: restoring it failed: %s", exc)
            self._cancel_again, self._cancelled_in_reset = self._cancelled_in_reset, False
            if isinstance(exc, RestoreFailed) and self._again():
                return None
            self._owed = None
            self.close(m.error_response("FATAL", CONNECTION_FAILURE, "could not restore this session's settings "
                                        "in a backend session"))
            return None
        if rest is not None:
            self._owed, self._ahead, self._cancelled_in_reset, self._flushed = None, None, False, False
            self._start()
            if self._cancel_again:
                self._cancel_again = False
                self._recancel()
            if self._sent_ahead is not None:
                self._sent_ahead, self._from_client.write = None, self.backend.write
            if self._held:  # what came after the client's first Sync
                self._feed_client(self._take_held())
        return rest

    def _pass_backend(self, feed: Callable, *data: bytes) -> None:
        try:
            feed(*data)
        except m.ProtocolViolation as exc:
            log.error("backend protocol violation: %s", exc)
            self.close(m.error_response("FATAL", PROTOCOL_VIOLATION, "the backend broke the protocol"))
            return
        if self._release_due:
            self._release_due = False
            if not self._done.done() and self._may_release():
                self._release()
        if self._pipeline.lost and not self._lost_reported:
            self._lost_reported = True
            log.warning("a session's replies no longer match its messages (a Sync inside the data "
                        "of a COPY that failed); tracking stops for that session")

    def _backend_message(self, kind: int, body: bytes) -> bytes | None:
        if kind == m.B_ROW_DESCRIPTION:  # wanted only with Redshift's types, extended metadata or long names
            answered = self._pipeline.received(kind)
            sent = self._row_description(body, answered) if self._types is not None else body
            if self._result_names:
                sent = result_metadata.with_names(sent, self._result_names)
            if self._sources is not None:
                return self._with_sources(sent)
            return m.message(kind, sent) if sent is not body else None
        if kind == m.B_READY_FOR_QUERY:
            if len(body) != 1:
                raise m.ProtocolViolation("malformed ReadyForQuery")
            told = self._unreported() if self._baseline is not None else b""
            self.tx_status = body[0]
            self._pipeline.received(kind)
            if self._altered and self.tx_status == m.TX_IDLE:
                self._altered = False
                self._on_alter()  # the DDL committed (or rolled back): others may now read it
            if self._settings_pending:
                self._settle(failed=self._error is not None)
            self._error = None
            self._release_due = self._lender is not None and self.tx_status == m.TX_IDLE
            if self._result_columns is not None:
                self._result_columns = None
                self._track_names()
            if self.tx_status == m.TX_IDLE and self._portal_sql:
                self._portal_sql.clear()  # portals end with their transaction
            if self.tx_status == m.TX_IDLE and (self._ddl_ended or self._protecting
                                                and self._protection_moved is not None):
                self._from_backend.hold()
                self._holding = self._loop.create_task(self._ready_held())
                return told  # the ReadyForQuery is sent by _ready_held
            return told + m.message(kind, body) if told else None
        if kind == m.B_PARAMETER_STATUS:
            return self._parameter_status(*m.decode_parameter_status(body))
        if kind in _HIDDEN_REPLIES:  # wanted only while a message the proxy added is unanswered
            answered = self._pipeline.received(kind)
            return b"" if answered is not None and answered.data is not None and answered.data.hidden else None
        if kind == m.B_COMMAND_COMPLETE:
            if self._late_bound is not None and body.startswith(_DDL_TAGS):
                self._ddl_ended = max(self._ddl_ended, 2 if body.startswith(_MAKING_VIEWS) else 1)
            completed = self._pipeline.received(kind)
            work = completed.data if completed is not None else None
            if work is None or not work.tags:
                return None
            tag = work.tags.get(self._pipeline.completions if completed.kind == QUERY else 1)
            if tag in PROTECTION_TAGS:
                self._protecting = True
            return m.command_complete(tag.decode()) if tag is not None else None
        if kind == m.B_ERROR_RESPONSE:
            fields = m.decode_fields(body)
            reply = self._error_reply(fields)
            seen = fields if reply is None else m.decode_fields(reply[5:])
            if fields.get("V", fields.get("S")) in ("FATAL", "PANIC"):
                self._fatal_seen = True
            self._failing = (seen.get("C", ""), seen.get("M", ""))
            if self._error is None:
                self._error = self._failing
            try:
                self._pipeline.received(kind, fields)
            finally:
                self._failing = None
            return reply
        if kind == m.B_DATA_ROW:  # wanted only while columns to convert may come
            return self._data_row(body)
        answered = self._pipeline.received(kind)
        if kind == m.B_PARAMETER_DESCRIPTION:  # wanted only with Redshift's types
            shown = rt.parameter_description(body, self._types) \
                if self._types.shown and self._types.mentioned(body) else None
            return m.message(kind, shown) if shown is not None else None
        return None

    def _parameter_status(self, name: str, value: str) -> bytes | None:
        """A parameter PostgreSQL reports in force now: None to pass its ParameterStatus on, or
        what to send instead."""
        if self._told is not None:
            self.backend_session.reported[name] = value
            if self._baseline is not None:
                self._baseline.pop(name, None)
            if self._told.get(name) == value:
                # Nothing new to the client: a value its session's restore put back, which
                # PostgreSQL reports at the ReadyForQuery that ends the client's transaction.
                return b""
            self._told = {**self._told, name: value}
            if self.pinned is None and not self._settings_pending:
                # A setting changed (by SET LOCAL, or set_config in a function, which the
                # proxy does not see): the session is no longer like its key's others.
                self.pin(f"{name} changed")
        if name == "standard_conforming_strings":
            self.standard_strings = value == "on"
        elif name == "client_encoding" and not encoding.is_utf8(value):
            # Changed where the proxy could not see it (set_config in a function body). The
            # SQL the proxy sends is ASCII and reads the same anyway (_apply); the session
            # ends so that the client learns why rather than reading text it cannot decode.
            log.warning("backend session's client_encoding changed to %r: ending the session", value)
            self._from_backend.write = lambda data: None  # nothing after the FATAL
            self.close(m.error_response(
                "FATAL", FEATURE_NOT_SUPPORTED, encoding.refusal(value),
                detail="The session's client_encoding was changed (by set_config or a function's "
                       "SET clause); shiftguard ends such sessions.",
                hint=encoding.HINT))
            return b""
        if self._on_parameter is not None:
            self._on_parameter(name, value)
        return None

    def _unreported(self) -> bytes:
        """At the first ReadyForQuery after a restore ahead (txpool.restore_ahead): PostgreSQL
        reports a parameter only where its value differs from the one it last reported in that
        session, to the client before; so a value that a statement of this client set back to
        that one (set_config in a function) goes unreported, though the restore had changed it.
        Such values are in force: handled as reported (what to send before the ReadyForQuery)."""
        baseline, self._baseline = self._baseline, None
        sent = []
        for name, value in baseline.items():
            if self._told.get(name) != value:
                reply = self._parameter_status(name, value)
                sent.append(m.parameter_status(name, value) if reply is None else reply)
        return b"".join(sent)

    def _row_description(self, body: bytes, answered: Entry | None) -> bytes:
        """The body to send, with Redshift's OIDs for its types' columns (body itself if none
        changes); the columns whose values are converted are noted for the rows of the
        statement, portal or Query result it describes."""
        rewritten = rt.row_description(body, self._types) if self._types.mentioned(body) else None
        if rewritten is None and not (self._statement_columns or self._portal_columns or self._result_columns):
            return body  # the hot path: none of the columns, and nothing noted to forget
        columns = rewritten[1] if rewritten is not None else ()
        if answered is not None and answered.kind == DESCRIBE and answered.data is not None:
            what, name = answered.data.described
            known = self._statement_columns if what == ord("S") else self._portal_columns
            if columns:
                known[name] = columns
            else:
                known.pop(name, None)
        if answered is not None and (answered.kind == QUERY or answered.data is None
                                     or answered.data.described[0] == ord("P")):
            self._result_columns = columns or None
        if columns or m.B_DATA_ROW in self._from_backend.wanted:
            self._track_names()
        return rewritten[0] if rewritten is not None else body

    def _with_sources(self, body: bytes) -> bytes:
        """A RowDescription with Redshift's extended result metadata: at once when its columns'
        sources are known, else (b"" now) once they are read (_sources_read)."""
        if self._sources.version != self._extended_version:
            self._extended.clear()
            self._extended_version = self._sources.version
        sent = self._extended.get(body)
        if sent is not None:
            return sent
        keys = result_metadata.column_keys(body)
        known = self._sources.known(keys)
        if known is not None:
            sent = m.message(m.B_ROW_DESCRIPTION, result_metadata.with_sources(body, known, self._sources.database))
            if len(body) <= _MAX_UNMATCHED_SIZE:
                if len(self._extended) >= _MAX_UNMATCHED:
                    self._extended.clear()
                self._extended[body] = sent
            return sent
        self._from_backend.hold()
        self._holding = self._loop.create_task(self._sources_read(body, keys))
        return b""

    async def _sources_read(self, body: bytes, keys: list[tuple[int, int]]) -> None:
        """The sources of a RowDescription's columns are read (on the management role's
        connection) while what the backend sends after it waits; if that fails or takes too
        long, its columns go as expressions' (no names), and the session goes on."""
        try:
            sources = await asyncio.wait_for(self._sources.lookup(keys), PROTECTION_READ_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not read where a result's columns come from: %s", exc)
            sources = dict.fromkeys(keys, result_metadata.EXPRESSION)
        self._holding = None
        self.client.write(m.message(m.B_ROW_DESCRIPTION,
                                    result_metadata.with_sources(body, sources, self._sources.database)))
        self._pass_backend(self._from_backend.release)

    def _data_row(self, body: bytes) -> bytes | None:
        answering = self._pipeline.answering()
        if answering is None:
            return None
        work = answering.data
        if answering.kind == EXECUTE and work is not None and work.portal is not None:
            columns = self._portal_columns.get(work.portal)
            if columns is None and work.statement is not None:
                columns = self._statement_columns.get(work.statement)
        else:  # a Query's rows, or an Execute's of a portal whose Describe was not looked at
            columns = self._result_columns
        converted = rt.data_row(body, columns) if columns else None
        return m.message(m.B_DATA_ROW, converted) if converted is not None else None

    async def _ready_held(self) -> None:
        """A transaction ended that changed masking or row-level security: this proxy reads
        the change before the client learns it is done, so that no statement it sends next, on
        any session, is judged by the old state (server.py _protection_moved). If the read fails
        or takes too long the client is told all the same (the backend's guards still refuse what
        the old state would let through: 42501, never a leak). One that ran DDL: the proxy binds
        the late-binding views it made readable (for a moment at most). Meanwhile the backend's
        replies are held."""
        if self._protecting and self._protection_moved is not None:
            self._protecting = False
            try:
                await asyncio.wait_for(self._protection_moved(), PROTECTION_READ_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not read the masked and row-level security tables again: %s", exc)
        if self._ddl_ended:
            made_views, self._ddl_ended = self._ddl_ended == 2, 0
            try:
                await self._late_bound(made_views)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not bind late-binding views: %s", exc)
        self._holding = None
        self.client.write(m.ready_for_query(self.tx_status))
        self._pass_backend(self._from_backend.release)
        if self._lender is not None and self._may_release():
            self._release()  # the ReadyForQuery that was held gives the session back

    def _error_reply(self, fields: dict[str, str]) -> bytes | None:
        """The ErrorResponse the client gets instead of the backend's, or None to pass it on."""
        message = fields.get("M", "")
        if "sg.deny." in message:
            for marker in _MARKER.findall(message):
                error = self._denials.pop(marker, None)
                if error is not None:
                    return error
        reworded = redshift_wording(fields, spatial=self._types is not None and self._types.spatial)
        changed = reworded is not None
        fields = reworded or fields
        if "shiftguard." in fields.get("W", ""):
            # An error raised inside a private-schema procedure that a statement was
            # rewritten to: the client sees the error, not our PL/pgSQL call stack.
            fields = {k: v for k, v in fields.items() if k != "W"}
            changed = True
        if self._result_names:
            named = self._long_names_in(fields)
            if named is not None:
                fields, changed = named, True
        return m.encode_error_fields(fields) if changed else None

    def _long_names_in(self, fields: dict[str, str]) -> dict[str, str] | None:
        """fields with the short names of the long names this session wrote (policy/identifiers.py)
        written whole again, as in its results (None: none named). Only its own: a name another
        session made stays as PostgreSQL knows it."""
        named = {}
        for key, value in fields.items():
            if SHORT_NAME_MARKER in value:
                for short, long in self._result_names.items():
                    value = value.replace(short.decode(), long.decode())
                named[key] = value
        return {**fields, **named} if named and named.items() - fields.items() else None
