"""The relay with Redshift's types, fed bytes on both sides (no sockets): which rows it converts
when the client pipelines Parse, Describe, Bind and Execute before any reply, and that nothing
else changes."""

from __future__ import annotations

import asyncio
import struct

from bench.relay_cpu import MemorySink
from proxy.backend.session import BackendSession
from proxy.endpoint import Endpoint
from proxy.policy.cache import Classifier
from proxy.policy.statements import Translator
from proxy.protocol import messages as m
from proxy.protocol.redshift_types import RedshiftTypes
from proxy.relay import Relay

VARBYTE = 16501
TYPES = RedshiftTypes.from_names({"varbyte": VARBYTE})


def msg(kind: str, body: bytes = b"") -> bytes:
    return m.message(ord(kind), body)


def description(oid: int) -> bytes:
    return msg("T", struct.pack("!h", 1) + b"v\0" + struct.pack("!ihIhih", 0, 0, oid, -1, -1, 0))


def data_row(value: bytes) -> bytes:
    return msg("D", struct.pack("!hi", 1, len(value)) + value)


def run(client_messages: list[bytes], replies: list[bytes], types=TYPES, *more) -> tuple[bytes, bytes]:
    """What the backend and the client receive (more: further client messages and replies)."""
    async def go():
        client, backend = Endpoint(), Endpoint()
        to_client, to_backend = MemorySink(keep=True), MemorySink(keep=True)
        client.connection_made(to_client)
        backend.connection_made(to_backend)
        relay = Relay(client, BackendSession(backend, {}, 0, 0), Classifier(Translator(lambda role: "V")), 1 << 20,
                      redshift_types=types)
        relay.start()
        steps = [client_messages, replies, *more]
        for sent, answered in zip(steps[::2], steps[1::2]):
            client.data_received(b"".join(sent))
            backend.data_received(b"".join(answered))
        assert relay.idle
        return bytes(to_backend.data), bytes(to_client.data)
    return asyncio.run(go())


def extended(statement: bytes, describe: bytes) -> list[bytes]:
    """Parse, Describe, Bind, Execute, Sync (a portal's Describe after its Bind, as libpq sends it)."""
    parse = msg("P", statement + b"\0SELECT v FROM t\0" + struct.pack("!h", 0))
    bind = msg("B", b"\0" + statement + b"\0" + struct.pack("!hhh", 0, 0, 0))
    middle = [msg("D", describe + b"\0"), bind] if describe[:1] == b"S" else [bind, msg("D", describe + b"\0")]
    return [parse, *middle, msg("E", b"\0" + struct.pack("!i", 0)), msg("S")]


def test_pipelined_statement_describe_converts_the_executes_rows():
    sent = extended(b"s1", b"Ss1")
    replies = [msg("1"), msg("t", struct.pack("!h", 0)), description(VARBYTE), msg("2"), data_row(b"\\x6162"),
               msg("C", b"SELECT 1\0"), msg("Z", b"I")]
    again = extended(b"s1", b"Ss1")[2:]  # the statement run again later: Bind, Execute, Sync
    rows = [msg("2"), data_row(b"\\x63"), msg("C", b"SELECT 1\0"), msg("Z", b"I")]
    to_backend, to_client = run(sent, replies, TYPES, again, rows)
    assert to_backend == b"".join(sent + again)
    assert to_client == b"".join([*replies[:2], description(6551), replies[3], data_row(b"6162"), *replies[5:],
                                  rows[0], data_row(b"63"), *rows[2:]])


def test_portal_describe_and_other_clients():
    sent = extended(b"", b"P")
    replies = [msg("1"), msg("2"), description(VARBYTE), data_row(b"\\x00"), msg("C", b"SELECT 1\0"), msg("Z", b"I")]
    _, to_client = run(sent, replies, RedshiftTypes(TYPES.to_client, shown=False))
    assert to_client == b"".join([*replies[:2], description(VARBYTE), data_row(b"00"), *replies[4:]])


def test_rows_of_other_columns_pass_untouched():
    sent = [msg("Q", b"SELECT '\\x6162'::text\0")]
    replies = [description(25), data_row(b"\\x6162"), msg("C", b"SELECT 1\0"), msg("Z", b"I")]
    assert run(sent, replies)[1] == b"".join(replies)
