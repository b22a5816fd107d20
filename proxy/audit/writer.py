"""The audit writer: records are queued by the relay and connections without waiting, and a
background task writes them to the log files (Redshift's formats, rotated by size and at the end
of each clock-aligned period, hourly by default, as Redshift delivers its logs; each rotated
file goes to the logging bucket when EnableLogging turned delivery on, audit/delivery.py), optionally
as JSON lines to stdout, and in batches to the backing database. A failure to write (a full
disk, a read-only directory, the database away) is reported and counted, never raised into
the relay; what could not be written is counted as dropped.

With workers (proxy/workers.py) every process writes the same files, the parent and each
worker (shared): the rotation check, the appends and the JSON lines of one batch are done under
an exclusive flock of LOCK_FILE in the audit directory, so one process's lines are never cut by
another's, and only one process renames a full or stale file (and delivers it). The same files,
not one per process: a reader (and the delivery to the logging bucket) sees the cluster's log,
as on Redshift. The user log comes from the backing database, so only the parent writes it
(user_log), once.

Records are built valid for their tables (audit/records.py), so no client's input can fail a
batch. A batch the database refuses anyway is stored again record by record: only the record
it refuses is lost from the table (it stays in the files), counted as rejected and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path

import asyncpg

from .delivery import LogDelivery
from .metrics import Metrics
from .records import ActivityRecord, ConnectionRecord, QueryEnd, UserRecord, row

log = logging.getLogger(__name__)

_MAX_PENDING = 100_000
# Statement characters waiting at most (statements are cut to audit.max_statement_length, but
# many long ones at once must not take the proxy's memory either).
_MAX_PENDING_CHARS = 128 << 20
_FLUSH_SECONDS = 0.25
LOCK_FILE = ".lock"  # in the audit directory: the processes of one proxy write in turn


def _unreachable(exc: BaseException) -> bool:
    """The backing database is away or refusing work (no point trying record by record), as
    opposed to refusing these records."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                        asyncpg.InternalClientError)):  # a connection broken during the pool's reset
        return True
    if isinstance(exc, asyncpg.InterfaceError):  # the pool closing, a lost connection; its
        return not isinstance(exc, ValueError)   # DataError (a value it cannot send) is the record's
    code = getattr(exc, "sqlstate", None) or ""
    return code[:2] in ("08", "53", "57", "58")


class AuditWriter:
    def __init__(self, directory: Path | None, catalog, metrics: Metrics, *, max_bytes: int = 100 << 20,
                 rotate_seconds: int = 3600, json_stdout: bool = False, shared: bool = False,
                 user_log: bool = True):
        self.directory = directory
        self.catalog = catalog
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.rotate_seconds = rotate_seconds
        self.json_stdout = json_stdout
        self.shared = shared
        self.user_log = user_log
        self._lock: int | None = None  # shared: the open LOCK_FILE
        self._connections: list[ConnectionRecord] = []
        self._activity: list[ActivityRecord] = []
        self._ended: list[QueryEnd] = []
        self._pending_chars = 0  # of the statements in _activity
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_userlog_id = 0
        self._last_complaint = 0.0
        self.delivery: LogDelivery | None = None  # set from the cluster's stored state
        self._delivered: dict | None = None  # the last delivery's outcome, not yet recorded
        # For caught_up: records queued so far, how many of them a finished write has handled,
        # and the future the next finished write resolves.
        self._queued = 0
        self._handled = 0
        self._written: asyncio.Future | None = None

    # ---------------------------------------------------------------- producers (never block)

    def connection(self, record: ConnectionRecord) -> None:
        self._enqueue(self._connections, record)

    def activity(self, record: ActivityRecord) -> None:
        if self._pending_chars + len(record.sql) > _MAX_PENDING_CHARS:
            self.metrics.audit_dropped.inc()
            return
        self._pending_chars += len(record.sql)
        self._enqueue(self._activity, record)

    def query_ended(self, end: QueryEnd) -> None:
        self._enqueue(self._ended, end)

    def _enqueue(self, queue: list, record) -> None:
        if len(self._connections) + len(self._activity) + len(self._ended) >= _MAX_PENDING:
            self.metrics.audit_dropped.inc()
            return
        queue.append(record)
        self._queued += 1
        if len(queue) >= 500:
            self._wake.set()

    async def caught_up(self) -> None:
        """Returns once every record queued before the call is written (or given up on): a
        statement reading stl_connection_log or stl_query sees the login and the statements
        before it, as on Redshift, not only what the last batch held."""
        target = self._queued
        while self._handled < target and self._task is not None and not self._task.done():
            if self._written is None:
                self._written = asyncio.get_running_loop().create_future()
            written = self._written
            self._wake.set()
            await asyncio.shield(written)

    # ---------------------------------------------------------------- the background task

    async def start(self) -> None:
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                self._complain(f"cannot create the audit directory {self.directory}: {exc}")
            if self.shared:
                try:
                    self._lock = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError as exc:
                    self._complain(f"cannot open the audit lock file in {self.directory}: {exc}")
        if self.user_log:
            self._last_userlog_id = await self.catalog.last_userlog_id()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write everything still pending (nothing is lost on a clean shutdown), then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._flush()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), _FLUSH_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        queued, written, self._written = self._queued, self._written, None
        try:
            await self._write()
        finally:
            self._handled = queued
            if written is not None and not written.done():
                written.set_result(None)

    async def _write(self) -> None:
        connections, self._connections = self._connections, []
        activity, self._activity = self._activity, []
        self._pending_chars = 0
        late = self._merge_ends(activity)
        userlog = []
        if self.user_log:
            try:
                userlog, self._last_userlog_id = await self.catalog.userlog_since(self._last_userlog_id)
            except Exception as exc:  # the database may be away; the file copy waits for it
                self._complain(f"cannot read the user log from the backing database: {exc}")
        if connections or activity or userlog:
            with self._exclusive():
                self._write_files("connectionlog", [r.line() for r in connections])
                self._write_files("useractivitylog", [r.line() for r in activity])
                self._write_files("userlog", [UserRecord(**row).line() for row in userlog])
                if self.json_stdout:
                    self._stdout([("connectionlog", r) for r in connections]
                                 + [("useractivitylog", r) for r in activity])
        for table, records in (("connection", connections), ("activity", activity)):
            if records:
                stored = await self._store(lambda rows, table=table: self.catalog.insert_audit(table, rows),
                                           [row(r) for r in records], "audit records")
                self.metrics.audit_written.labels(log="table").inc(stored)
        if late:
            await self._store(self.catalog.end_queries, [row(end) for end in late], "ends of statements")
        outcome, self._delivered = self._delivered, None
        if outcome is not None and self.delivery is not None:
            try:
                await self.catalog.record_log_delivery(self.delivery.cluster, outcome)
            except Exception as exc:  # only DescribeLoggingStatus misses it
                self._complain(f"cannot record the last log delivery in the backing database: {exc}")

    async def _store(self, write, rows: list[dict], what: str) -> int:
        """write(rows) to the backing database; how many were stored. When it refuses the batch
        while it is reachable, each row is written alone: one bad row loses only itself."""
        try:
            await write(rows)
            return len(rows)
        except Exception as exc:
            if _unreachable(exc) or len(rows) == 1:
                self._lost(len(rows), not _unreachable(exc))
                self._complain(f"cannot store {len(rows)} {what} in the backing database: {exc}")
                return 0
        stored = 0
        for n, one in enumerate(rows):
            try:
                await write([one])
                stored += 1
            except Exception as exc:
                if _unreachable(exc):
                    self._lost(len(rows) - n, False)
                    self._complain(f"cannot store {len(rows) - n} {what} in the backing database: {exc}")
                    break
                self._lost(1, True)
                self._complain(f"the backing database refused one of the {what}: {exc}")
        return stored

    def _lost(self, count: int, rejected: bool) -> None:
        self.metrics.audit_dropped.inc(count)
        if rejected:
            self.metrics.audit_rejected.inc(count)

    def _merge_ends(self, activity: list[ActivityRecord]) -> list[QueryEnd]:
        """Ends of statements in this batch go into their rows before the insert; the rest
        (statements that ran longer than a batch) are returned, to update rows already stored."""
        ended, self._ended = self._ended, []
        if not ended:
            return []
        batch = {(record.session_id, record.seq): record for record in activity}
        late = []
        for end in ended:
            record = batch.get((end.session_id, end.seq))
            if record is not None:
                end.apply(record)
            else:
                late.append(end)
        return late

    @contextlib.contextmanager
    def _exclusive(self):
        """Shared: the other processes' writes wait until these are done (and these for theirs).
        Held for a batch's appends only, a few milliseconds."""
        if self._lock is None:
            yield
            return
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _write_files(self, name: str, lines: list[str]) -> None:
        if self.directory is None or not lines:
            return
        path = self.directory / name
        try:
            self._rotate_if_due(path)
            with path.open("a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
            self.metrics.audit_written.labels(log="file").inc(len(lines))
        except OSError as exc:
            self.metrics.audit_dropped.inc(len(lines))
            self._complain(f"cannot write the audit file {path}: {exc}")

    def _rotate_if_due(self, path: Path) -> None:
        """Rename the file to name_<UTC time> when it is full, or when it was last written in an
        earlier period than now (periods are aligned on the epoch, so hourly means on the hour
        and a restart does not move them)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        now = time.time()
        period = self.rotate_seconds
        full = stat.st_size >= self.max_bytes
        stale = period > 0 and stat.st_mtime // period != now // period
        if not stat.st_size or not (full or stale):
            return
        stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        target, n = path.with_name(f"{path.name}_{stamp}"), 1
        while target.exists():  # two rotations in one second: keep both
            target, n = path.with_name(f"{path.name}_{stamp}.{n}"), n + 1
        path.rename(target)
        if self.delivery is not None:
            self._deliver(path.name, target)

    def _deliver(self, log_name: str, rotated: Path) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            self.delivery.deliver(log_name, rotated, now)
            self._delivered = {"last_delivery": now.isoformat()}
        except OSError as exc:
            self._delivered = {"last_failure": now.isoformat(), "last_failure_message": f"cannot deliver {log_name}"}
            self._complain(f"cannot deliver {rotated} to the logging bucket: {exc}")

    def _stdout(self, records: list) -> None:
        try:
            for kind, record in records:
                data = {k: (v.isoformat() if isinstance(v, datetime.datetime) else v)
                        for k, v in row(record).items()}
                sys.stdout.write(json.dumps({"log": kind, **data}) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            self.metrics.audit_dropped.inc(len(records))

    def _complain(self, message: str) -> None:
        """Loudly, but at most every ten seconds."""
        now = time.monotonic()
        if now - self._last_complaint >= 10:
            self._last_complaint = now
            log.error("audit: %s (records are being dropped and counted)", message)
