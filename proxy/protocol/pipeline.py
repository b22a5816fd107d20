"""Which client message each backend message answers: PostgreSQL's reading of a session's
message stream, followed from the backend's replies. Pure: message type bytes in, events out.

The relay needs this to stay in step with PostgreSQL (which ReadyForQuery ends which Query or
Sync, which CommandComplete completes which Execute), and PostgreSQL does not answer every
message it is sent (postgres.c PostgresMain and SocketBackend, copyfromparse.c CopyGetData):

- after an error in an extended-protocol message (Parse, Bind, Describe, Execute, Close) it
  skips every message up to the next Sync: a Query or FunctionCall in between is never
  answered, and neither are Parse/Bind/... ("ignore_till_sync");
- in COPY FROM STDIN it reads CopyData and ignores Sync and Flush until CopyDone or CopyFail;
  any other message ends the COPY with an error ("unexpected message type ... during COPY
  from stdin", 08P01) and is used up by it; CopyData, CopyDone and CopyFail outside a COPY
  are ignored;
- a Sync is always answered by exactly one ReadyForQuery (outside COPY), a Query by one after
  any number of replies, each extended message by exactly one of its replies (ParseComplete,
  BindComplete, CloseComplete, RowDescription or NoData after an optional
  ParameterDescription, CommandComplete/EmptyQueryResponse/PortalSuspended) or an
  ErrorResponse.

So every client message that can be answered is queued here as an Entry in the order sent, and
each backend message is matched to the entry at the head. Messages that PostgreSQL will never
answer are taken off the queue as soon as that is certain (on_discarded).

One case is not certain from the replies alone: a Sync sent between CopyData messages of a COPY
that then fails on a row. PostgreSQL ignored the Sync if it read it before the failing row and
answers it if not, and where its reading stood is not visible on the wire. Such Syncs are taken
as ignored; for a COPY run by a Query, a ReadyForQuery that answers nothing queued is then one
of them (`maybe_syncs`); for a COPY run by Execute the tracker gives up (`lost`): the relay then
passes everything on and keeps only what needs no tracking.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

# Client message types that are queued (what the proxy sends; a FunctionCall goes as a Query).
PARSE, BIND, DESCRIBE, EXECUTE, CLOSE = (ord(c) for c in "PBDEC")
QUERY, SYNC = ord("Q"), ord("S")
COPY_DATA, COPY_DONE, COPY_FAIL = ord("d"), ord("c"), ord("f")
EXTENDED = frozenset((PARSE, BIND, DESCRIBE, EXECUTE, CLOSE))
OPENERS = frozenset((QUERY, SYNC))  # the messages answered by a ReadyForQuery
_COPY_INPUT = frozenset((COPY_DATA, COPY_DONE, COPY_FAIL))

# Backend message types.
_READY = ord("Z")
_ERROR = ord("E")
_DATA_ROW = ord("D")
_ROW_DESCRIPTION = ord("T")
_QUERY_PLAIN = frozenset(map(ord, "TCI"))
_ASYNC = frozenset(map(ord, "NAS"))  # NoticeResponse, NotificationResponse, ParameterStatus
_COPY_IN_RESPONSES = frozenset(map(ord, "GW"))
_COMPLETIONS = frozenset(map(ord, "CIs"))
_TERMINAL = {PARSE: frozenset(b"1"), BIND: frozenset(b"2"), CLOSE: frozenset(b"3"),
             DESCRIBE: frozenset(b"Tn"), EXECUTE: _COMPLETIONS}

# Where PostgreSQL is in the client's stream.
NORMAL, SKIP, COPY_IN = "normal", "skip to Sync", "copy in"


class Entry:
    """A client message PostgreSQL may answer. `data` belongs to the caller (the relay keeps
    what it must do with the reply there); only entries with data are reported."""

    __slots__ = ("kind", "data")

    def __init__(self, kind: int, data=None):
        self.kind = kind
        self.data = data


def entry(kind: int, data=None) -> Entry:
    """An entry; one shared object for each kind when there is no data (the hot path: Bind,
    Execute and Sync of a prepared statement need no allocation)."""
    return Entry(kind, data) if data is not None else BARE[kind]


BARE = {kind: Entry(kind) for kind in (*EXTENDED, *OPENERS, COPY_DATA, COPY_DONE, COPY_FAIL)}


class Pipeline:
    def __init__(self, on_answered: Callable[[Entry], None], on_discarded: Callable[[Entry], None]):
        """on_answered(entry): its last reply arrived (ReadyForQuery for a Query or Sync; the
        terminal reply or ErrorResponse for the others). on_discarded(entry): PostgreSQL will
        never answer it."""
        self._on_answered = on_answered
        self._on_discarded = on_discarded
        self._queue: deque[Entry] = deque()
        self.current: Entry | None = None  # the entry the backend's replies belong to now
        self.completions = 0   # CommandCompletes of the current Query so far
        self._replied = False  # some reply to the current entry came (a Query's first one, say)
        self.mode = NORMAL
        self.pending_openers = 0   # Queries and Syncs sent and not yet answered or discarded
        self.maybe_syncs = 0       # Syncs taken as ignored by a failed COPY that may be answered
        self.lost = False
        self._copy_data = False    # CopyData seen in the running COPY (a Sync after it is uncertain)
        self._copy_syncs = 0       # Syncs the running COPY took after CopyData
        self._copy_over = False    # the client's CopyDone or CopyFail was read: the COPY's input ended
        self._after_ready = True   # lost mode: nothing but a ReadyForQuery since the client last sent

    # ---------------------------------------------------------------- client -> backend

    def sent(self, entry: Entry) -> None:
        """A message was sent to the backend, after every one queued before."""
        if self.lost:
            # Only what the caller must hear of again: taken as answered by the next
            # ReadyForQuery (_received_lost).
            self._after_ready = False
            if entry.kind in OPENERS or entry.data is not None:
                self._queue.append(entry)
            return
        if entry.kind in OPENERS:
            self.pending_openers += 1
        self._queue.append(entry)
        if self.mode is not NORMAL:
            self._consume()

    def copy_data(self) -> None:
        """CopyData was sent: only its position among the others matters (a marker, collapsed)."""
        if self.lost:
            return
        if self.mode is COPY_IN and not self._queue:
            self._copy_data = True
        elif not self._queue or self._queue[-1].kind != COPY_DATA:
            self._queue.append(BARE[COPY_DATA])

    def pending(self) -> list[Entry]:
        """Every entry not yet answered or discarded, in order."""
        return ([self.current] if self.current is not None else []) + list(self._queue)

    def answering(self) -> Entry | None:
        """The entry a DataRow arriving now belongs to: the current one, or (an Execute's first
        rows come before anything that makes it current) the next one PostgreSQL answers."""
        if self.current is not None or self.lost or self.mode is not NORMAL:
            return self.current
        return next((queued for queued in self._queue if queued.kind not in _COPY_INPUT), None)

    @property
    def busy(self) -> bool:
        """Something sent is not yet answered (a query runs, or a pipeline waits for replies)."""
        if self.lost:
            return bool(self._queue) or not self._after_ready
        return self.pending_openers > 0

    def _consume(self) -> None:
        """What PostgreSQL reads without answering, taken off the queue now: everything up to
        the next Sync after an extended-protocol error; the COPY's input while one runs."""
        queue = self._queue
        while queue:
            entry = queue[0]
            if self.mode is SKIP:
                if entry.kind == SYNC:
                    self.mode = NORMAL
                    return
                queue.popleft()
                self._discard(entry)
            elif self.mode is COPY_IN and not self._copy_over:
                if entry.kind == COPY_DATA:
                    self._copy_data = True
                elif entry.kind == SYNC:
                    if self._copy_data:
                        self._copy_syncs += 1
                elif entry.kind in (COPY_DONE, COPY_FAIL):
                    self._copy_over = True
                else:
                    return  # it ends the COPY with an error if the COPY gets this far (see _copy_failed)
                queue.popleft()
                if entry.kind == SYNC:
                    self._discard(entry)
            else:
                return

    def _discard(self, entry: Entry) -> None:
        if entry.kind in OPENERS:
            self.pending_openers -= 1
        if entry.data is not None:
            self._on_discarded(entry)

    # ---------------------------------------------------------------- backend -> client

    def received(self, kind: int, error: dict[str, str] | None = None) -> Entry | None:
        """A backend message of this type (error: an ErrorResponse's fields); the entry it
        answers or belongs to, if any."""
        current = self.current
        if current is not None and current.kind == QUERY and kind in _QUERY_PLAIN and self.mode is NORMAL:
            # The hot path: a Query's row description or completion (never in lost mode,
            # where there is no current entry).
            self._replied = True
            if kind != _ROW_DESCRIPTION:
                self.completions += 1
            return current
        if kind == _DATA_ROW:
            return current
        if kind in _ASYNC:
            return None
        if self.lost:
            return self._received_lost(kind)
        if kind == _ERROR and error is not None and error.get("V", error.get("S")) in ("FATAL", "PANIC"):
            return None  # the session ends (terminated, shut down): nothing more is answered
        if current is None:
            queue = self._queue
            if queue and queue[0].kind not in _COPY_INPUT:
                current = self.current = queue.popleft()
                self.completions = 0
                self._replied = False
            else:
                current = self._next()
        if current is None:
            if kind == _READY and self.maybe_syncs:
                self.maybe_syncs -= 1  # a Sync a failed COPY was taken to have ignored
                return None
            return self._lose(kind)
        if kind == _READY:
            return self._ready(current)
        self._replied = True
        if kind == _ERROR:
            return self._error(current, error or {})
        if self.mode is COPY_IN and kind in _COMPLETIONS:
            self.mode = NORMAL  # the COPY completed (its input ended with CopyDone)
        if current.kind == QUERY:
            if kind in _COMPLETIONS:
                self.completions += 1
            elif kind in _COPY_IN_RESPONSES:
                self._start_copy()
            return current
        terminal = _TERMINAL.get(current.kind)
        if terminal is None:
            return self._lose(kind)  # a Sync answered by something else than ReadyForQuery
        if kind in terminal:
            self._answered(current)
            return current
        if current.kind == EXECUTE:
            if kind in _COPY_IN_RESPONSES:
                self._start_copy()
            return current  # rows, or a COPY's
        if current.kind == DESCRIBE and kind == ord("t"):
            return current  # ParameterDescription, before the RowDescription or NoData
        return self._lose(kind)

    def _next(self) -> Entry | None:
        """The next queued entry PostgreSQL answers (in normal reading, what a COPY input
        message is outside a COPY: ignored)."""
        queue = self._queue
        while queue:
            entry = queue.popleft()
            if entry.kind in _COPY_INPUT:
                continue
            self.current = entry
            self.completions = 0
            self._replied = False
            return entry
        return None

    def _answered(self, entry: Entry) -> None:
        self.current = None
        if entry.kind in OPENERS:
            self.pending_openers -= 1
        if entry.data is not None:
            self._on_answered(entry)

    def _ready(self, current: Entry) -> Entry | None:
        if self.maybe_syncs and not self._replied and current.kind != SYNC:
            # Nothing answered it yet, and a Query always has a reply before its
            # ReadyForQuery: this one answers a Sync a failed COPY was taken to have ignored.
            self.maybe_syncs -= 1
            return None
        if current.kind not in OPENERS:
            return self._lose(_READY)
        self.mode = NORMAL
        self._answered(current)
        return current

    def _error(self, current: Entry, error: dict[str, str]) -> Entry | None:
        if self.mode is COPY_IN:
            self._copy_failed(error)
            if self.lost:
                return None
        if current.kind == QUERY or current.kind == SYNC:
            return current  # the rest of the Query is skipped; its ReadyForQuery follows
        # An extended-protocol message failed: PostgreSQL skips to the next Sync.
        self._answered(current)
        self.mode = SKIP
        self._consume()
        return current

    def _start_copy(self) -> None:
        self.mode = COPY_IN
        self._copy_data = self._copy_over = False
        self._copy_syncs = 0
        self._consume()

    def _copy_failed(self, error: dict[str, str]) -> None:
        """The COPY the current entry runs ended with this error. Its input went up to where
        PostgreSQL read: a message that is no COPY input if that is what the error is about
        (08P01 raised by CopyGetData), CopyFail if that (57014 from CopyGetData), else somewhere
        in the CopyData, where a Sync may or may not have been read."""
        self.mode = NORMAL
        by_reader = error.get("R") == "CopyGetData" or error.get("M", "").startswith(
            ("unexpected message type", "COPY from stdin failed"))
        if by_reader and error.get("C") == "08P01" and not self._copy_over:
            if self._queue:
                self._discard(self._queue.popleft())  # the message that ended the COPY, used up
            return
        if by_reader and error.get("C") == "57014":
            return
        if self._copy_syncs:
            if self.current is not None and self.current.kind == QUERY:
                self.maybe_syncs += self._copy_syncs
            else:
                self._lose(_ERROR)

    def _lose(self, kind: int) -> None:
        """The replies no longer match what was sent (only after the uncertain case in the
        module docstring, or a bug): stop tracking. Every entry is given up."""
        if not self.lost:
            self.lost = True
            entries = ([self.current] if self.current is not None else []) + list(self._queue)
            self.current = None
            self._queue.clear()
            self.pending_openers = 0
            for entry in entries:
                if entry.data is not None:
                    self._on_discarded(entry)
        self._after_ready = kind == _READY
        return None

    def _received_lost(self, kind: int) -> Entry | None:
        if kind == _READY:
            self._after_ready = True
            entries = list(self._queue)
            self._queue.clear()
            self.pending_openers = 0
            for entry in entries:
                if entry.data is not None:
                    self._on_answered(entry)
        else:
            self._after_ready = False
        return None
