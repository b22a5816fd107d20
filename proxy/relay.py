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
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

from .endpoint import Endpoint
from .policy import encoding
from .policy.errors import redshift_wording
from .policy.identifiers import IdentifierCase
from .policy.statements import PROTECTION_TAGS, Action, Denial, Plan, databases_to_vacate
from .protocol import messages as m
from .protocol.pipeline import BARE, OPENERS, PARSE, QUERY, Entry, Pipeline, entry
from .protocol.sqlstate import CONNECTION_FAILURE, FEATURE_NOT_SUPPORTED, INTERNAL_ERROR, PROTOCOL_VIOLATION

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!i")
_EXTENDED = frozenset((m.F_PARSE, m.F_BIND, m.F_DESCRIBE, m.F_EXECUTE, m.F_CLOSE))
_NAMED = frozenset((m.F_BIND, m.F_EXECUTE, m.F_CLOSE))
_COUNTED_REQUESTS = _EXTENDED | {m.F_SYNC, m.F_COPY_DATA, m.F_COPY_DONE, m.F_COPY_FAIL}
_COUNTED_REPLIES = frozenset(range(256)) - {m.B_DATA_ROW, m.B_NOTICE_RESPONSE, m.B_NOTIFICATION_RESPONSE,
                                            ord("d"), ord("c"), ord("H")}


class MessageStream:
    """One direction of a relayed connection, cut into messages without copying.

    Messages whose type is in `wanted` are handed whole to on_message, which returns None to
    pass them on unchanged or the bytes to send instead. Other messages are only counted
    (on_header, for the types in `counted`; None: all) and their bodies streamed through as
    they arrive, however large.
    """

    __slots__ = ("write", "wanted", "on_message", "on_header", "max_size", "counted",
                 "_pending", "_pending_need", "_skip", "_held")

    def __init__(self, write: Callable[[bytes], None], wanted: set[int],
                 on_message: Callable[[int, bytes], bytes | None], on_header: Callable[[int], None],
                 max_size: int, counted: frozenset[int] | None = None):
        self.write = write
        self.wanted = wanted
        self.on_message = on_message
        self.on_header = on_header
        self.max_size = max_size
        self.counted = counted if counted is not None else frozenset(range(256))
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
            if kind in self.wanted:
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

    __slots__ = ("tags", "handles", "markers", "sql", "replaced", "waiting")

    def __init__(self, tags: dict[int, bytes] | None = None, handles: list[int] | None = None,
                 markers: list[str] | None = None, sql: bytes | None = None):
        self.tags = tags        # completion ordinal (1 for an Execute) -> command tag to restore
        self.handles = handles  # statement log handles ended with this message's answer
        self.markers = markers  # denial markers in the SQL sent (see _apply)
        self.sql = sql          # a Parse's SQL, logged if the Parse fails
        self.replaced = None    # a Parse's (name, the SQL that name had before), for when it fails
        self.waiting = None     # a Parse's Executes waiting for its answer to be logged (_execute)


# Denials the proxy is still waiting to see fail, at most (a Query PostgreSQL skips never shows
# its marker; see _apply).
_MAX_DENIALS = 1024
_MARKER = re.compile(r"sg\.deny\.[0-9a-f]{12}")
# Prepared statements' SQL kept for the statement log, at most (PostgreSQL keeps them too).
_MAX_STATEMENTS = 10_000
# How long a ReadyForQuery waits for the proxy to read a change of masking or row-level security.
PROTECTION_READ_SECONDS = 5.0


class Relay:
    """Pumps bytes both ways between client and backend and keeps both sides' states."""

    def __init__(self, client: Endpoint, backend: Endpoint, classify: Callable[[bytes], Plan],
                 max_message_size: int, on_client_gone: Callable[[], None] | None = None,
                 statement_log: StatementLog | None = None,
                 on_parameter: Callable[[str, str], None] | None = None,
                 keep_backend: bool = False, standard_strings: bool = True,
                 protection_moved: Callable[[], Awaitable[None]] | None = None,
                 on_vacate_database: Callable[[str], None] | None = None,
                 identifier_case: IdentifierCase = IdentifierCase()):
        self.client = client
        # The session's enable_case_sensitive_identifier (policy/identifiers.py): the proxy
        # keeps it, PostgreSQL has no such setting; a plan says when a statement changes it.
        self.identifier_case = identifier_case
        # Called before SQL that needs no other session in a database is sent (DROP DATABASE, ...:
        # statements.databases_to_vacate).
        self._on_vacate_database = on_vacate_database
        self._statement_log = statement_log  # the user activity log and stl_query, when enabled
        self._on_parameter = on_parameter    # ParameterStatus from the backend (the connection log)
        self.statements = 0
        self.bytes_in = self.bytes_out = 0
        self.denials: list[str] = []  # SQLSTATEs of the proxy's refusals, for the metrics
        self.backend = backend
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
        # ends, the ReadyForQuery waits until the proxy has read the change (_protection_read).
        self._protection_moved = protection_moved
        self._protecting = False
        self._holding: asyncio.Task | None = None
        self._statement_tags: dict[bytes, bytes] = {}
        self._portal_tags: dict[bytes, bytes] = {}
        # For the statement log: prepared statements' SQL, and the portals bound to them (with
        # whether an Execute ran them yet: an Execute that continues a suspended portal is the
        # same statement).
        self._statement_sql: dict[bytes, bytes] = {}
        self._portal_sql: dict[bytes, list] = {}  # portal -> [SQL, executed, the Parse it waits for]
        self._parses: dict[bytes, _Work] = {}     # name -> its latest Parse, while unanswered
        # Extended-protocol messages sent since the last Sync: the backend may be inside an
        # implicit transaction that no ReadyForQuery has reported.
        self._unsynced = False
        # Whether the backend session outlives the client (backend/pool.py): a Terminate sent
        # while idle keeps it, instead of ending it.
        self.backend_kept = False
        client_wanted = {m.F_QUERY, m.F_PARSE, m.F_FUNCTION_CALL}
        if keep_backend:
            client_wanted.add(m.F_TERMINATE)
        if statement_log is not None:
            client_wanted.update(_NAMED)  # Bind, Execute and Close: each execution is a statement
        self._always_wanted = frozenset(client_wanted)
        self._from_client = MessageStream(
            backend.write, client_wanted, self._client_message, self._client_header, max_message_size,
            counted=_COUNTED_REQUESTS)
        backend_wanted = {m.B_READY_FOR_QUERY, m.B_ERROR_RESPONSE, m.B_PARAMETER_STATUS}
        # Every reply's type goes to the pipeline, but for rows, COPY data and what comes
        # unasked (nothing of them changes what PostgreSQL answers).
        self._from_backend = MessageStream(
            client.write, backend_wanted, self._backend_message, self._pipeline.received, 1 << 30,
            counted=_COUNTED_REPLIES)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.client.peer, self.backend.peer = self.backend, self.client
        self.client.relay_to(self._client_data, self._client_closed)
        self.backend.relay_to(self._backend_data, self._backend_closed)

    async def finished(self) -> None:
        await self._done

    @property
    def busy(self) -> bool:
        """A query is running or a pipeline is unanswered (or its ReadyForQuery is held)."""
        return self._pipeline.busy or self._holding is not None

    @property
    def idle(self) -> bool:
        return not self.busy and self.tx_status == m.TX_IDLE

    def close(self, client_message: bytes | None = None) -> None:
        if self._statement_log is not None:
            error = self._error or ("08006", "the session ended before the statement completed")
            for pending in self._pipeline.pending():
                if pending.data is not None and pending.data.handles:
                    self._statement_log.ended(pending.data.handles, error)
                    pending.data.handles = None
        if client_message is not None:
            self.client.write(client_message)
        self.client.close()
        if not self.backend_kept:
            self.backend.close()
        if self._holding is not None:
            self._holding.cancel()
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
        if self.busy and self._on_client_gone is not None:
            self._on_client_gone()  # cancel the running query so the backend ends promptly
        self.close()

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
        try:
            self._from_client.feed(data)
        except m.ProtocolViolation as exc:
            self.close(m.error_response("FATAL", PROTOCOL_VIOLATION, str(exc)))

    def _client_header(self, kind: int) -> None:
        # Seen from the header alone: no body is looked at on the hot path. (After the
        # Terminate that kept the backend session this no longer matters: nothing reads it,
        # and _client_message stops everything else.)
        if kind == m.F_SYNC:
            self._unsynced = False
        elif kind in _EXTENDED:
            self._unsynced = True
        elif kind == m.F_COPY_DATA:
            self._pipeline.copy_data()
            return
        self._pipeline.sent(BARE[kind])  # CopyDone and CopyFail too

    def _client_message(self, kind: int, body: bytes) -> bytes | None:
        if self.backend_kept:
            return b""  # after the Terminate that kept the backend session: nothing runs or counts
        if kind == m.F_TERMINATE:  # wanted only when the backend session may be kept
            if self.idle and not self._unsynced and not self._pipeline.lost:
                self._keep_backend()
                return b""
            return None
        if kind == m.F_QUERY:
            return self._query(body)
        if kind == m.F_FUNCTION_CALL:
            return self._function_call()
        self._unsynced = True
        if kind == m.F_PARSE:
            return self._parse(body)
        # Bind, Execute, Close: wanted while some prepared statement has a rewritten tag, or
        # for the statement log. A malformed one goes on as it is: PostgreSQL refuses it.
        work = None
        try:
            if kind == m.F_EXECUTE:
                work = self._execute(m.decode_execute_portal(body))
            elif kind == m.F_BIND:
                self._bind(*m.decode_bind_names(body))
            elif kind == m.F_CLOSE:
                what, name = m.decode_close(body)
                if what == ord("S"):
                    self._statement_tags.pop(name, None)
                    self._statement_sql.pop(name, None)
                else:
                    self._portal_tags.pop(name, None)
                    self._portal_sql.pop(name, None)
        except m.ProtocolViolation:
            work = None
        self._send(entry(kind, work))
        self._track_names()
        return None

    def _send(self, sent: Entry) -> None:
        if sent.data is not None and sent.data.tags:
            self._tagged += 1
            self._from_backend.wanted.add(m.B_COMMAND_COMPLETE)
        self._pipeline.sent(sent)

    def _bind(self, portal: bytes, statement: bytes) -> None:
        tag = self._statement_tags.get(statement)
        if tag is not None:
            self._portal_tags[portal] = tag
        else:
            self._portal_tags.pop(portal, None)
        if self._statement_log is not None:
            sql = self._statement_sql.get(statement)
            if sql is not None:
                self._portal_sql[portal] = [sql, False, self._parses.get(statement)]
            else:
                self._portal_sql.pop(portal, None)

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
        return work

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
            self._send(entry(QUERY, _Work(handles=handles) if handles else None))
            return None
        work = _Work(handles=handles)
        sent = self._apply(plan, sql, work)
        self._send(entry(QUERY, work))
        return m.query(sent)

    def _plan(self, sql: bytes) -> Plan:
        plan = self.classify(sql, self.standard_strings, identifier_case=self.identifier_case)
        if plan.identifier_case is not None:
            self.identifier_case = plan.identifier_case
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
            self._send(entry(PARSE, work))
            return None
        work = work or _Work()
        sql = self._apply(plan, parse.sql, work)
        work.tags = None  # a Parse's tags go by the statement, then the portal (_execute)
        tag = plan.actions[0].tag if len(plan.actions) == 1 else None
        if tag is not None:
            self._statement_tags[parse.name] = tag
        else:
            self._statement_tags.pop(parse.name, None)
        self._track_names()
        self._send(entry(PARSE, work))
        return m.Parse(parse.name, sql, parse.param_types).encode()

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
                if action.tag is not None:
                    tags[action.index + 1] = action.tag
            cursor = action.end
        pieces.append(text[cursor:])
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

    def _track_names(self) -> None:
        """Look at Bind, Execute and Close only while some prepared statement has a rewritten
        tag (or always, for the statement log)."""
        if self._statement_tags or self._portal_tags:
            self._from_client.wanted.update(_NAMED)
        else:
            self._from_client.wanted.difference_update(_NAMED - self._always_wanted)

    # ---------------------------------------------------------------- replies

    def _answered(self, entry: Entry) -> None:
        """pipeline: the last reply to entry came (self._failing: the error it ended with)."""
        work = entry.data
        if work is None:
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
        self.bytes_out += len(data)
        self._pass_backend(self._from_backend.feed, data)

    def _pass_backend(self, feed: Callable, *data: bytes) -> None:
        try:
            feed(*data)
        except m.ProtocolViolation as exc:
            log.error("backend protocol violation: %s", exc)
            self.close(m.error_response("FATAL", PROTOCOL_VIOLATION, "the backend broke the protocol"))
            return
        if self._pipeline.lost and not self._lost_reported:
            self._lost_reported = True
            log.warning("a session's replies no longer match its messages (a Sync inside the data "
                        "of a COPY that failed); tracking stops for that session")

    def _backend_message(self, kind: int, body: bytes) -> bytes | None:
        if kind == m.B_READY_FOR_QUERY:
            if len(body) != 1:
                raise m.ProtocolViolation("malformed ReadyForQuery")
            self.tx_status = body[0]
            self._pipeline.received(kind)
            self._error = None
            if self.tx_status == m.TX_IDLE and self._portal_sql:
                self._portal_sql.clear()  # portals end with their transaction
            if self.tx_status == m.TX_IDLE and self._protecting and self._protection_moved is not None:
                self._protecting = False
                self._from_backend.hold()
                self._holding = self._loop.create_task(self._protection_read())
                return b""  # sent by _protection_read
            return None
        if kind == m.B_PARAMETER_STATUS:
            name, value = m.decode_parameter_status(body)
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
        if kind == m.B_COMMAND_COMPLETE:
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
        self._pipeline.received(kind)
        return None

    async def _protection_read(self) -> None:
        """The transaction that changed masking or row-level security ended: this proxy reads
        the change before the client learns it is done, so that no statement it sends next, on
        any session, is judged by the old state (server.py _protection_moved). Meanwhile the
        backend's replies are held; if the read fails or takes too long they go on anyway (the
        backend's guards still refuse what the old state would let through: 42501, never a leak)."""
        try:
            await asyncio.wait_for(self._protection_moved(), PROTECTION_READ_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not read the masked and row-level security tables again: %s", exc)
        self._holding = None
        self.client.write(m.ready_for_query(self.tx_status))
        self._pass_backend(self._from_backend.release)

    def _error_reply(self, fields: dict[str, str]) -> bytes | None:
        """The ErrorResponse the client gets instead of the backend's, or None to pass it on."""
        message = fields.get("M", "")
        if "sg.deny." in message:
            for marker in _MARKER.findall(message):
                error = self._denials.pop(marker, None)
                if error is not None:
                    return error
        reworded = redshift_wording(fields)
        changed = reworded is not None
        fields = reworded or fields
        if "shiftguard." in fields.get("W", ""):
            # An error raised inside a private-schema procedure that a statement was
            # rewritten to: the client sees the error, not our PL/pgSQL call stack.
            fields = {k: v for k, v in fields.items() if k != "W"}
            changed = True
        return m.encode_error_fields(fields) if changed else None
