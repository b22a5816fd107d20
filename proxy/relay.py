"""The steady-state pump between one authenticated client and its backend session.

Bytes pass through untouched: each direction is cut at message boundaries by reading only the
five-byte headers, and a chunk whose messages all pass is written on as the same object. Only
Query and Parse (classified, maybe rewritten), ErrorResponse (reworded as Redshift words it),
ReadyForQuery, ParameterStatus (rare: PostgreSQL sends one when a reported setting such as
application_name or standard_conforming_strings changes), and, while a rewrite is pending, Bind, Execute, Close and
CommandComplete are looked at, and Terminate where the backend session may outlive the client
(backend/pool.py: kept only when it comes while idle, nothing unsynced); Execute and Sync are
otherwise only counted from their headers. DataRow and CopyData bodies never are.

Response bookkeeping. Every Query, Sync and FunctionCall yields exactly one ReadyForQuery, so
the responses come in numbered intervals (the n-th interval ends with the n-th ReadyForQuery);
inside one, the k-th completion (CommandComplete, EmptyQueryResponse or PortalSuspended)
answers the k-th statement of a Query or the k-th Execute. A rewritten statement registers the
command tag to restore at (interval, k); a denied one is sent as a statement that fails in
PostgreSQL with a unique relation name, and that ErrorResponse is replaced by the denial. So
PostgreSQL itself aborts the transaction and skips to Sync, and both sides stay in step.

The same intervals time the statements for the user activity log: a Query or Parse is reported
when it is sent (before it runs, as Redshift's useractivitylog is written) and ends at its
interval's ReadyForQuery, failed if an ErrorResponse came in the interval. So no completion
message is looked at for this; a pipeline of several statements before one Sync ends as one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .endpoint import Endpoint
from .policy import encoding
from .policy.errors import redshift_wording
from .policy.statements import Action, Denial, Plan
from .protocol import messages as m
from .protocol.sqlstate import FEATURE_NOT_SUPPORTED, INTERNAL_ERROR, PROTOCOL_VIOLATION

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!i")
_COMPLETIONS = frozenset((m.B_COMMAND_COMPLETE, m.B_EMPTY_QUERY_RESPONSE, m.B_PORTAL_SUSPENDED))
_EXTENDED = frozenset((m.F_PARSE, m.F_BIND, m.F_DESCRIBE, m.F_EXECUTE, m.F_CLOSE))


class MessageStream:
    """One direction of a relayed connection, cut into messages without copying.

    Messages whose type is in `wanted` are handed whole to on_message, which returns None to
    pass them on unchanged or the bytes to send instead. Other messages are only counted
    (on_header) and their bodies streamed through as they arrive, however large.
    """

    __slots__ = ("write", "wanted", "on_message", "on_header", "max_size",
                 "_pending", "_pending_need", "_skip")

    def __init__(self, write: Callable[[bytes], None], wanted: set[int],
                 on_message: Callable[[int, bytes], bytes | None], on_header: Callable[[int], None],
                 max_size: int):
        self.write = write
        self.wanted = wanted
        self.on_message = on_message
        self.on_header = on_header
        self.max_size = max_size
        self._pending = bytearray()  # a partial header, or a partial wanted message
        self._pending_need = 0       # total size of the pending wanted message, once known
        self._skip = 0               # body bytes of an unwanted message still to pass through

    def feed(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        if self._pending:
            pos = self._continue_pending(data)
            if pos < 0:
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
            else:
                self.on_header(kind)
                if end > n:
                    self._skip = end - n
                    pos = n
                else:
                    pos = end
        self._flush(data, start, pos)

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
        """A Query or Parse is being sent (inside a transaction block, as far as the last
        ReadyForQuery said; read with standard_conforming_strings = standard_strings); returns
        a handle for ended()."""

    def ended(self, handles: list[int], error: tuple[str, str] | None) -> None:
        """Their interval ended; error is (SQLSTATE, message) of its first ErrorResponse."""


@dataclass
class _Expected:
    """What to change in the responses of one interval."""

    tags: dict[int, bytes] = field(default_factory=dict)       # completion ordinal -> tag
    denials: dict[str, bytes] = field(default_factory=dict)    # marker -> ErrorResponse


class Relay:
    """Pumps bytes both ways between client and backend and keeps both sides' states."""

    def __init__(self, client: Endpoint, backend: Endpoint, classify: Callable[[bytes], Plan],
                 max_message_size: int, on_client_gone: Callable[[], None] | None = None,
                 statement_log: StatementLog | None = None,
                 on_parameter: Callable[[str, str], None] | None = None,
                 keep_backend: bool = False, standard_strings: bool = True):
        self.client = client
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
        # Client side: intervals opened and Executes in the current one.
        self._sent_intervals = 0
        self._executes = 0
        # Backend side: ReadyForQuery messages seen and completions in the current interval.
        self._received_intervals = 0
        self._completions = 0
        self._expected: dict[int, _Expected] = {}
        # Statements reported to statement_log, by interval, and the interval's first error.
        self._running: dict[int, list[int]] = {}
        self._error: tuple[str, str] | None = None
        self._statement_tags: dict[bytes, bytes] = {}
        self._portal_tags: dict[bytes, bytes] = {}
        # Extended-protocol messages sent since the last Sync: the backend may be inside an
        # implicit transaction that no ReadyForQuery has reported.
        self._unsynced = False
        # Whether the backend session outlives the client (backend/pool.py): a Terminate sent
        # while idle keeps it, instead of ending it.
        self.backend_kept = False
        client_wanted = {m.F_QUERY, m.F_PARSE, m.F_FUNCTION_CALL}
        if keep_backend:
            client_wanted.add(m.F_TERMINATE)
        self._from_client = MessageStream(
            self._to_backend, client_wanted, self._client_message, self._client_header, max_message_size)
        backend_wanted = {m.B_READY_FOR_QUERY, m.B_ERROR_RESPONSE, m.B_PARAMETER_STATUS}
        self._from_backend = MessageStream(
            self._to_client, backend_wanted, self._backend_message, self._backend_header, 1 << 30)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.client.peer, self.backend.peer = self.backend, self.client
        self.client.relay_to(self._client_data, self._client_closed)
        self.backend.relay_to(self._backend_data, self._backend_closed)

    async def finished(self) -> None:
        await self._done

    @property
    def busy(self) -> bool:
        """A query is running or a pipeline is unanswered."""
        return self._sent_intervals != self._received_intervals

    @property
    def idle(self) -> bool:
        return not self.busy and self.tx_status == m.TX_IDLE

    def close(self, client_message: bytes | None = None) -> None:
        if self._running:
            error = self._error or ("08006", "the session ended before the statement completed")
            for handles in self._running.values():
                self._statement_log.ended(handles, error)
            self._running.clear()
        if client_message is not None:
            self.client.write(client_message)
        self.client.close()
        if not self.backend_kept:
            self.backend.close()
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
        self.close()

    # ---------------------------------------------------------------- client -> backend

    def _to_backend(self, data) -> None:
        self.backend.write(data)

    def _to_client(self, data) -> None:
        self.client.write(data)

    def _client_data(self, data: bytes) -> None:
        self.last_activity = self._loop.time()
        self.bytes_in += len(data)
        try:
            self._from_client.feed(data)
        except m.ProtocolViolation as exc:
            self.close(m.error_response("FATAL", PROTOCOL_VIOLATION, str(exc)))

    def _client_header(self, kind: int) -> None:
        # Counted from the header alone: no body is looked at on the hot path. (After the
        # Terminate that kept the backend session these counts no longer matter: nothing reads
        # them, and _client_message stops everything else.)
        if kind == m.F_EXECUTE:
            self._executes += 1
            self._unsynced = True
        elif kind == m.F_SYNC:
            self._sent_intervals += 1
            self._executes = 0
            self._unsynced = False
        elif kind in _EXTENDED:
            self._unsynced = True

    def _client_message(self, kind: int, body: bytes) -> bytes | None:
        if self.backend_kept:
            return b""  # after the Terminate that kept the backend session: nothing runs or counts
        if kind == m.F_TERMINATE:  # wanted only when the backend session may be kept
            if self.idle and not self._unsynced:
                self._keep_backend()
                return b""
            return None
        if kind in _EXTENDED:
            self._unsynced = True
        if kind == m.F_EXECUTE:  # wanted only while some portal has a rewritten tag
            self._executes += 1
            tag = self._portal_tags.get(m.decode_execute_portal(body))
            if tag is not None:
                self._expect(self._sent_intervals).tags[self._executes] = tag
            return None
        if kind == m.F_QUERY:
            return self._query(body)
        if kind == m.F_FUNCTION_CALL:
            return self._function_call()
        if kind == m.F_PARSE:
            return self._parse(body)
        if kind == m.F_BIND:
            portal, statement = m.decode_bind_names(body)
            tag = self._statement_tags.get(statement)
            if tag is not None:
                self._portal_tags[portal] = tag
            else:
                self._portal_tags.pop(portal, None)
        elif kind == m.F_CLOSE:
            what, name = m.decode_close(body)
            (self._statement_tags if what == ord("S") else self._portal_tags).pop(name, None)
        self._track_names()
        return None

    def _query(self, body: bytes) -> bytes | None:
        sql = m.decode_query(body)
        self.statements += 1
        interval, base = self._sent_intervals, self._executes
        if self._statement_log is not None:
            self._running.setdefault(interval, []).append(self._statement_log.started(
                sql, self.tx_status != m.TX_IDLE, self.standard_strings))
        self._sent_intervals += 1
        self._executes = 0
        plan = self.classify(sql, self.standard_strings)
        if not plan.actions and plan.text is None and sql.isascii():
            return None
        return m.query(self._apply(plan, sql, interval, base))

    def _function_call(self) -> bytes:
        """The fast-path FunctionCall calls any function by OID, out of the proxy's sight
        (set_config('role', ...) among them); Redshift has none. It becomes a Query that fails:
        both answer with an ErrorResponse and one ReadyForQuery, and PostgreSQL aborts the
        transaction as for any error."""
        interval = self._sent_intervals
        self._sent_intervals += 1
        self._executes = 0
        denial = Plan((Action(0, 0, 0, denial=Denial(
            FEATURE_NOT_SUPPORTED, "the fast-path function call interface is not supported",
            hint="call the function in a SELECT")),))
        return m.query(self._apply(denial, b"", interval, 0))

    def _parse(self, body: bytes) -> bytes | None:
        parse = m.decode_parse(body)
        self.statements += 1
        if self._statement_log is not None:
            self._running.setdefault(self._sent_intervals, []).append(self._statement_log.started(
                parse.sql, self.tx_status != m.TX_IDLE, self.standard_strings))
        plan = self.classify(parse.sql, self.standard_strings)
        if not plan.actions and plan.text is None and parse.sql.isascii():
            if self._statement_tags.pop(parse.name, None) is not None:
                self._track_names()
            return None
        sql = self._apply(plan, parse.sql, self._sent_intervals, None)
        tag = plan.actions[0].tag if len(plan.actions) == 1 else None
        if tag is not None:
            self._statement_tags[parse.name] = tag
        else:
            self._statement_tags.pop(parse.name, None)
        self._track_names()
        return m.Parse(parse.name, sql, parse.param_types).encode()

    def _apply(self, plan: Plan, sql: bytes, interval: int, base: int | None) -> bytes:
        """The SQL to send for a plan; registers the tags to restore (base is the completion
        count before this Query's statements; None for Parse, whose tags go by portal).

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
                if action.tag is not None and base is not None:
                    tags[base + action.index + 1] = action.tag
            cursor = action.end
        pieces.append(text[cursor:])
        try:
            result = "".join(pieces).encode("ascii")
        except UnicodeEncodeError:
            log.error("refused to send a statement that is not ASCII (a bug in shiftguard)")
            marker = "sg.deny." + secrets.token_hex(6)
            denials, tags = {marker: Denial(
                INTERNAL_ERROR, "shiftguard could not write this statement in ASCII",
                hint="This is a bug in shiftguard; the statement was not run.")}, {}
            result = f'SELECT FROM pg_catalog."{marker}"'.encode()
        for marker, denial in denials.items():
            self.denials.append(denial.sqlstate)
            self._expect(interval).denials[marker] = m.error_response(
                "ERROR", denial.sqlstate, denial.message, detail=denial.detail, hint=denial.hint)
        for ordinal, tag in tags.items():
            self._expect(interval).tags[ordinal] = tag
        return result

    def _expect(self, interval: int) -> _Expected:
        expected = self._expected.get(interval)
        if expected is None:
            expected = self._expected[interval] = _Expected()
            self._from_backend.wanted.add(m.B_COMMAND_COMPLETE)
        return expected

    def _track_names(self) -> None:
        """Look at Bind, Execute and Close only while some prepared statement has a rewritten tag."""
        if self._statement_tags or self._portal_tags:
            self._from_client.wanted.update((m.F_BIND, m.F_EXECUTE, m.F_CLOSE))
        else:
            self._from_client.wanted.difference_update((m.F_BIND, m.F_EXECUTE, m.F_CLOSE))

    # ---------------------------------------------------------------- backend -> client

    def _backend_data(self, data: bytes) -> None:
        self.last_activity = self._loop.time()
        self.bytes_out += len(data)
        try:
            self._from_backend.feed(data)
        except m.ProtocolViolation as exc:
            log.error("backend protocol violation: %s", exc)
            self.close(m.error_response("FATAL", PROTOCOL_VIOLATION, "the backend broke the protocol"))

    def _backend_header(self, kind: int) -> None:
        if kind in _COMPLETIONS:
            self._completions += 1

    def _backend_message(self, kind: int, body: bytes) -> bytes | None:
        if kind == m.B_READY_FOR_QUERY:
            self.tx_status = body[0]
            if self._expected:
                self._expected.pop(self._received_intervals, None)
                if not self._expected:
                    self._from_backend.wanted.discard(m.B_COMMAND_COMPLETE)
            if self._running:
                handles = self._running.pop(self._received_intervals, None)
                if handles:
                    self._statement_log.ended(handles, self._error)
                self._error = None
            self._received_intervals += 1
            self._completions = 0
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
        expected = self._expected.get(self._received_intervals)
        if kind == m.B_COMMAND_COMPLETE:
            self._completions += 1
            tag = expected.tags.get(self._completions) if expected else None
            return m.command_complete(tag.decode()) if tag is not None else None
        if kind == m.B_ERROR_RESPONSE:
            fields = m.decode_fields(body)
            reply = self._error_reply(fields, expected)
            if self._running and self._error is None:
                seen = fields if reply is None else m.decode_fields(reply[5:])
                self._error = (seen.get("C", ""), seen.get("M", ""))
            return reply
        return None

    def _error_reply(self, fields: dict[str, str], expected: _Expected | None) -> bytes | None:
        """The ErrorResponse the client gets instead of the backend's, or None to pass it on."""
        if expected:
            for marker, error in expected.denials.items():
                if marker in fields.get("M", ""):
                    return error
        reworded = redshift_wording(fields)
        changed = reworded is not None
        fields = reworded or fields
        if expected and "shiftguard." in fields.get("W", ""):
            # An error raised inside a private-schema procedure that a statement was
            # rewritten to: the client sees the error, not our PL/pgSQL call stack.
            fields = {k: v for k, v in fields.items() if k != "W"}
            changed = True
        return m.encode_error_fields(fields) if changed else None
