"""Generated client message streams, and running one against a session: for the differential
relay test (the same stream straight to PostgreSQL and through the proxy, as a user for whom
nothing is rewritten, must get the same replies).

A stream mixes simple queries, extended-protocol pipelines, COPY in and out (with good and bad
rows, Syncs and Flushes inside the data, CopyFail), errors at every step (syntax, division by
zero, duplicate keys, a deferred constraint that fails at commit), transaction blocks, portals
run a few rows at a time, and malformed messages (a NUL inside a Query). Every stream is
followed by the same terminator, which brings any state back to a known one: CopyDone (ends a
COPY in progress; ignored otherwise), Sync (ends a skip after an error) and a Query that ends
any transaction block and selects a sentinel. Replies are read up to the sentinel's
ReadyForQuery, or until the server closes the session.
"""

from __future__ import annotations

import asyncio
import re
import struct

from hypothesis import strategies as st

from proxy.endpoint import ConnectionClosed, Endpoint
from proxy.protocol import messages as m

SETUP = ("CREATE TEMP TABLE t (a int PRIMARY KEY, b text); "
         "CREATE TEMP TABLE d (a int UNIQUE DEFERRABLE INITIALLY DEFERRED); "
         "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')")
SENTINEL = "sentinel-7f3a"
TERMINATOR = (m.message(ord("c")) + m.message(ord("S"))
              + m.query(f"ROLLBACK; SELECT '{SENTINEL}'"))

# Statements the proxy passes unchanged for an ordinary user (no Redshift statement, no catalog
# view, nothing it refuses), chosen to give every kind of reply.
STATEMENTS = [
    "SELECT 1", "SELECT a, b FROM t ORDER BY a", "SELECT generate_series(1, 5) AS n", "SELECT 1/0",
    "SELECT * FROM no_such_table", "SELEC 1", "", " ; ", "SELECT 1; SELECT 2", "SELECT 1; SELECT 1/0; SELECT 3",
    "INSERT INTO t VALUES (10, 'ten')", "INSERT INTO t VALUES (1, 'dup')", "UPDATE t SET b = 'x' WHERE a = 2",
    "DELETE FROM t WHERE a = 3", "INSERT INTO d VALUES (1), (1)", "BEGIN", "COMMIT", "ROLLBACK", "END",
    "SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1", "RELEASE SAVEPOINT s1", "SET application_name = 'fuzz'",
    "SET statement_timeout = 0", "SHOW application_name", "RESET application_name",
    "COPY t FROM STDIN", "COPY t (a) FROM STDIN", "COPY t TO STDOUT", "COPY (SELECT 1) TO STDOUT",
    "DECLARE c1 CURSOR WITH HOLD FOR SELECT * FROM t", "FETCH 2 FROM c1", "CLOSE c1",
    "PREPARE q1 AS SELECT $1::int + 1", "EXECUTE q1(41)", "DEALLOCATE q1", "LISTEN fuzz", "NOTIFY fuzz, 'x'",
    "SELECT pg_notify('fuzz', 'y')", "DO $$BEGIN RAISE NOTICE 'hello'; END$$", "SELECT $1::int",
    "VALUES (1), (2)", "TABLE t",
]
NAMES = [b"", b"s1", b"s2"]
COPY_ROWS = [b"20\ttwenty\n", b"21\t\\N\n", b"abc\tbad\n", b"1\tduplicate\n", b"22\tpart", b"ial\n", b"\\.\n",
             b"23\n", b""]


def _parse(name: bytes, sql: str, types: list[int]) -> bytes:
    return m.message(ord("P"), name + b"\0" + sql.encode() + b"\0" + struct.pack(f"!h{len(types)}I", len(types), *types))


def _bind(portal: bytes, statement: bytes, params: list[bytes | None]) -> bytes:
    body = portal + b"\0" + statement + b"\0" + struct.pack("!h", 0) + struct.pack("!h", len(params))
    for value in params:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return m.message(ord("B"), body + struct.pack("!h", 0))


MESSAGE_KINDS = ["query", "query", "parse", "bind", "describe", "execute", "execute", "close", "sync", "sync",
                 "flush", "copy_data", "copy_data", "copy_done", "copy_fail", "malformed", "denied"]

# What the proxy refuses, and what PostgreSQL is sent instead on the straight path: something it
# fails in the same place (a Query, or a Parse) with the SQLSTATE of the proxy's refusal. So
# the replies must still be the same, and no refusal may come out as anything else (the name
# of the relation the proxy uses to make PostgreSQL fail, say).
# The stand-in fails where the proxy's refusal fails in PostgreSQL, at parse analysis (so no
# portal is made, as a DO block would make one), naming a type that cannot exist; its SQLSTATE
# (42704) counts as the one in the name.
_STAND_IN = "SELECT 'x'::pg_catalog.fuzz_refused_{}"
DENIALS = [
    # the fast-path FunctionCall (0A000), sent by the proxy as a Query that fails
    (m.message(ord("F"), struct.pack("!ihhh", 1, 0, 0, 0)), m.query(_STAND_IN.format("0a000"))),
    (m.query("CREATE USER fuzz_x PASSWORD 'weak'"), m.query(_STAND_IN.format("22023"))),
    (_parse(b"s2", "CREATE USER fuzz_x PASSWORD 'weak'", []), _parse(b"s2", _STAND_IN.format("22023"), [])),
]


class Both(bytes):
    """A message sent as itself through the proxy, and as `direct` straight to PostgreSQL."""

    direct: bytes

    def __new__(cls, proxied: bytes, direct: bytes):
        value = super().__new__(cls, proxied)
        value.direct = direct
        return value


def side(stream: list[bytes], direct: bool) -> list[bytes]:
    return [message.direct if direct and isinstance(message, Both) else bytes(message) for message in stream]


@st.composite
def message(draw) -> bytes:
    kind = draw(st.sampled_from(MESSAGE_KINDS))
    if kind == "denied":
        return Both(*draw(st.sampled_from(DENIALS)))
    if kind == "query":
        return m.query(draw(st.sampled_from(STATEMENTS)))
    if kind == "parse":
        types = draw(st.sampled_from([[], [23], [25, 23]]))
        return _parse(draw(st.sampled_from(NAMES)), draw(st.sampled_from(STATEMENTS)), types)
    if kind == "bind":
        params = draw(st.sampled_from([[], [b"41"], [b"x"], [None], [b"1", b"2"]]))
        return _bind(draw(st.sampled_from([b"", b"p1"])), draw(st.sampled_from(NAMES)), params)
    if kind == "describe":
        what = draw(st.sampled_from([b"S", b"P"]))
        return m.message(ord("D"), what + draw(st.sampled_from(NAMES + [b"p1"])) + b"\0")
    if kind == "execute":
        return m.message(ord("E"), draw(st.sampled_from([b"", b"p1"])) + b"\0"
                         + struct.pack("!i", draw(st.sampled_from([0, 0, 1, 2]))))
    if kind == "close":
        return m.message(ord("C"), draw(st.sampled_from([b"S", b"P"])) + draw(st.sampled_from(NAMES + [b"p1"])) + b"\0")
    if kind == "sync":
        return m.message(ord("S"))
    if kind == "flush":
        return m.message(ord("H"))
    if kind == "copy_data":
        return m.message(ord("d"), draw(st.sampled_from(COPY_ROWS)))
    if kind == "copy_done":
        return m.message(ord("c"))
    if kind == "copy_fail":
        return m.message(ord("f"), b"stopped by the client\0")
    # Malformed as PostgreSQL reads them: a NUL inside a Query, a NUL after the one that ends it.
    return draw(st.sampled_from([
        m.message(ord("Q"), b"SELECT 1\0SELECT 2\0"),
        m.message(ord("Q"), b"SELECT 1/0\0\0"),
        m.message(ord("Q"), b"BEGIN\0x\0"),
    ]))


def streams(max_size: int = 14):
    return st.lists(message(), min_size=1, max_size=max_size)


def summary(kind: int, body: bytes) -> tuple:
    """What the comparison looks at in one reply: its type, an error's or notice's severity
    and SQLSTATE, a command tag, a parameter's name."""
    if kind in (m.B_ERROR_RESPONSE, m.B_NOTICE_RESPONSE):
        fields = m.decode_fields(body)
        code = fields.get("C")
        stand_in = re.search(r"fuzz_refused_(\w{5})", fields.get("M", ""))
        if kind == m.B_ERROR_RESPONSE and stand_in:
            code = stand_in.group(1).upper()  # the stand-in of a refusal (DENIALS)
        if "sg.deny" in str(fields) or "shiftguard." in str(fields):
            code = f"internal name shown: {fields}"
        return chr(kind), fields.get("V", fields.get("S")), code
    if kind == m.B_COMMAND_COMPLETE:
        return chr(kind), m.decode_command_tag(body).decode()
    if kind == m.B_PARAMETER_STATUS:
        return chr(kind), m.decode_parameter_status(body)[0]
    if kind == m.B_READY_FOR_QUERY:
        return chr(kind), chr(body[0])
    return (chr(kind),)


async def drain(endpoint: Endpoint) -> list[tuple]:
    """Replies up to the sentinel's ReadyForQuery (or the end of the session)."""
    replies: list[tuple] = []
    sentinel = False
    while True:
        try:
            kind, body = await endpoint.read_message(1 << 30)
        except ConnectionClosed:
            replies.append(("closed",))
            return replies
        replies.append(summary(kind, body))
        if kind == m.B_DATA_ROW and SENTINEL.encode() in body:
            sentinel = True
        elif kind == m.B_READY_FOR_QUERY and sentinel:
            return replies


async def run_stream(endpoint: Endpoint, stream: list[bytes], timeout: float = 20.0) -> list[tuple]:
    """Send the stream and the terminator at once; the replies' summaries."""
    endpoint.write(b"".join(stream) + TERMINATOR)
    async with asyncio.timeout(timeout):
        return await drain(endpoint)


async def setup(endpoint: Endpoint) -> None:
    endpoint.write(m.query(SETUP))
    while True:
        kind, body = await endpoint.read_message(1 << 30)
        if kind == m.B_ERROR_RESPONSE:
            raise AssertionError(f"setup failed: {m.decode_fields(body)}")
        if kind == m.B_READY_FOR_QUERY:
            return
