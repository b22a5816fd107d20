"""The relay's own CPU per transaction, without sockets: pgbench -S's messages (simple Query,
and Bind/Execute/Sync of a prepared statement) fed through a real proxy.relay.Relay whose two
ends write into memory, the backend's replies as PostgreSQL sends them fed back.

What bench/run.py measures includes the kernel's share (four socket calls per transaction on
loopback, more than half of the proxy's CPU) and the machine's noise; this is the Python part
alone, the part the code decides, and it is steady enough to compare two commits on a busy
machine:

    PYTHONPATH=/path/to/tree python3 bench/relay_cpu.py [--transactions N] [--reps R]
        [--pool-mode transaction] [--redshift-types] [--protocol 1|2]

Prints the median µs per transaction of R repetitions for each workload. With --pool-mode
transaction the relay holds its one backend session only for each transaction, as in
backend.pool_mode: transaction: the session goes back to a real backend/txpool.py pool at each
ReadyForQuery and is taken again at the next message (no other client waits for it).
--redshift-types: the relay knows the database's Redshift types, as every session on a backend
where shiftguard installed them does (the rows here have none of those columns).
--protocol: the client was granted Redshift's server protocol 1 or 2 (redshift_connector's), so
each RowDescription gets its column's names, known already (catalog/sources.py), and at 2 the
relay looks for Redshift's binary types too (the rows here have none of them).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import time
from dataclasses import replace
from types import SimpleNamespace

from proxy.backend.session import BackendSession
from proxy.backend.txpool import TransactionPool
from proxy.catalog.sources import ColumnSources, DatabaseSources
from proxy.endpoint import Endpoint
from proxy.frontend.connection import PoolLender
from proxy.policy.cache import Classifier
from proxy.policy.statements import Translator
from proxy.protocol import messages as m
from proxy.protocol.redshift_types import REDSHIFT_OIDS, RedshiftTypes
from proxy.relay import Relay

SQL = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
SIMPLE_SQL = b"SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"


class MemorySink(asyncio.Transport):
    """A transport that sends nothing: the relay's writes are counted (and kept, with keep=True;
    tests/unit/test_relay_types.py reads them)."""

    def __init__(self, keep: bool = False):
        super().__init__()
        self.written = 0
        self.data = bytearray() if keep else None

    def write(self, data) -> None:
        self.written += len(data)
        if self.data is not None:
            self.data += data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default


def _msg(kind: bytes, body: bytes) -> bytes:
    return m.message(kind[0], body)


def _client_simple() -> bytes:
    return _msg(b"Q", SIMPLE_SQL + b"\0")


def _client_parse() -> bytes:
    parse = _msg(b"P", b"P0_1\0" + SQL + b"\0" + struct.pack("!hI", 1, 23))
    return parse + _client_prepared()


def _client_prepared() -> bytes:
    bind = _msg(b"B", b"\0P0_1\0" + struct.pack("!h", 0) + struct.pack("!hi", 1, 4) + b"4711"
                + struct.pack("!h", 0))
    return bind + _msg(b"D", b"P\0") + _msg(b"E", b"\0" + struct.pack("!i", 0)) + _msg(b"S", b"")


def _backend_rows() -> bytes:
    row_description = _msg(b"T", struct.pack("!h", 1) + b"abalance\0" + struct.pack("!ihihih", 16398, 3, 23, 4, -1, 0))
    data_row = _msg(b"D", struct.pack("!hi", 1, 4) + b"-123")
    return row_description + data_row + _msg(b"C", b"SELECT 1\0")


def _ready() -> bytes:
    return _msg(b"Z", b"I")


async def _known_sources(protocol: int) -> DatabaseSources | None:
    """The sources of the benchmark's one column, read already (as in steady state)."""
    if not protocol:
        return None
    async def read(database, keys):
        return {key: ("public", "pgbench_accounts", "abalance", False, False) for key in keys}
    sources = DatabaseSources(ColumnSources(read), "dev")
    await sources.lookup([(16398, 3)])
    return sources


async def _measure(workload: str, transactions: int, pool_mode: str, types: RedshiftTypes | None,
                   protocol: int = 0) -> float:
    translator = Translator(lambda role: "V")
    client, backend = Endpoint(), Endpoint()
    client.connection_made(MemorySink())
    backend.connection_made(MemorySink())
    session, lender = BackendSession(backend, {}, 0, 0), None
    if pool_mode == "transaction":
        async def opened() -> BackendSession:
            return session
        key = (("bench", 1, False, ()), "dev", ())
        connection = SimpleNamespace(config=SimpleNamespace(limits=SimpleNamespace(query_wait_timeout=120.0)))
        lender = PoolLender(connection, TransactionPool(1, 3600.0), key, opened)
        await lender.take()
    if protocol == 2:
        types = replace(types or RedshiftTypes({}), binary=True)
    relay = Relay(client, session, Classifier(translator), 1 << 20, lender=lender, redshift_types=types,
                  sources=await _known_sources(protocol))
    relay.start()
    if workload == "simple":
        request, reply = _client_simple(), _backend_rows() + _ready()
    else:
        # The first transaction prepares the statement, as pgbench -M prepared does.
        client.data_received(_client_parse())
        backend.data_received(_msg(b"1", b"") + _msg(b"2", b"") + _backend_rows() + _ready())
        request, reply = _client_prepared(), _msg(b"2", b"") + _backend_rows() + _ready()
    for _ in range(100):  # warm the classification cache and the interpreter
        client.data_received(request)
        backend.data_received(reply)
    started = time.process_time()
    for _ in range(transactions):
        client.data_received(request)
        backend.data_received(reply)
    elapsed = time.process_time() - started
    assert relay.idle, "the relay lost step with the replies"
    return elapsed * 1e6 / transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--pool-mode", choices=("session", "transaction"), default="session")
    parser.add_argument("--redshift-types", action="store_true")
    parser.add_argument("--protocol", type=int, choices=(0, 1, 2), default=0)
    args = parser.parse_args()
    types = RedshiftTypes.from_names({name: 16501 + i for i, name in enumerate(REDSHIFT_OIDS)}) \
        if args.redshift_types else None
    for workload in ("simple", "prepared"):
        runs = [asyncio.run(_measure(workload, args.transactions, args.pool_mode, types, args.protocol))
                for _ in range(args.reps)]
        print(f"{workload:9} {statistics.median(runs):6.2f} µs/transaction  (min {min(runs):.2f}, "
              f"max {max(runs):.2f}, {args.reps} runs of {args.transactions})")


if __name__ == "__main__":
    main()
