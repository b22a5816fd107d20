"""The relay's zero-copy message scanner: any chunking gives the same messages and bytes."""

from __future__ import annotations

import random
import re

import pytest

from proxy.protocol import messages as m
from proxy.relay import MessageStream

STREAM = b"".join([
    m.message(ord("T"), b"\x00\x01a\x00" + b"\x00" * 18),
    *(m.message(ord("D"), b"\x00\x01\x00\x00\x00\x05hello") for _ in range(3)),
    m.message(ord("D"), b"x" * 70_000),          # a body larger than any chunk
    m.command_complete("SELECT 4"),
    m.ready_for_query(m.TX_IDLE),
])


def run(stream: bytes, chunks: list[int], wanted: set[int], replace: dict[int, bytes] | None = None):
    out: list[bytes] = []
    seen: list[tuple[int, bytes]] = []
    headers: list[int] = []

    def on_message(kind, body):
        seen.append((kind, bytes(body)))
        return (replace or {}).get(kind)

    scanner = MessageStream(lambda data: out.append(bytes(data)), wanted, on_message, headers.append, 1 << 30)
    pos = 0
    for size in chunks:
        scanner.feed(stream[pos:pos + size])
        pos += size
    scanner.feed(stream[pos:])
    return b"".join(out), seen, headers


def random_chunks(seed: int, total: int) -> list[int]:
    rng = random.Random(seed)
    sizes = []
    while total > 0:
        size = rng.choice([1, 2, 3, 4, 5, 6, 7, 100, 4096, 65536])
        sizes.append(size)
        total -= size
    return sizes


@pytest.mark.parametrize("seed", range(40))
def test_any_chunking_passes_the_same_bytes(seed):
    out, seen, headers = run(STREAM, random_chunks(seed, len(STREAM)), {ord("C"), ord("Z")})
    assert out == STREAM
    assert seen == [(ord("C"), b"SELECT 4\x00"), (ord("Z"), b"I")]
    assert headers == [ord("T"), ord("D"), ord("D"), ord("D"), ord("D")]


@pytest.mark.parametrize("seed", range(20))
def test_replacement_lands_in_place(seed):
    new_tag = m.command_complete("CREATE USER")
    out, _, _ = run(STREAM, random_chunks(seed, len(STREAM)), {ord("C"), ord("Z")}, {ord("C"): new_tag})
    assert out == STREAM.replace(m.command_complete("SELECT 4"), new_tag)


def test_whole_chunk_is_written_as_the_same_object():
    written = []
    scanner = MessageStream(written.append, {ord("Z")}, lambda k, b: None, lambda k: None, 1 << 30)
    scanner.feed(STREAM)
    assert len(written) == 1 and written[0] is STREAM


@pytest.mark.parametrize("header", [b"Q\x00\x00\x00\x03", b"Q\xff\xff\xff\xff", b"D\x00\x10\x00\x01"])
def test_bad_lengths_are_protocol_violations(header):
    scanner = MessageStream(lambda d: None, {ord("Q")}, lambda k, b: None, lambda k: None, 1 << 20)
    with pytest.raises(m.ProtocolViolation):
        scanner.feed(header + b"\x00" * 8)
    scanner = MessageStream(lambda d: None, {ord("Q")}, lambda k, b: None, lambda k: None, 1 << 20)
    with pytest.raises(m.ProtocolViolation):  # the same header split over two reads
        scanner.feed(header[:2])
        scanner.feed(header[2:])


@pytest.mark.parametrize("seed", range(20))
def test_a_hold_keeps_what_follows_until_released(seed):
    """The relay holds a ReadyForQuery (and what comes after it) while the proxy reads a change
    of masking: nothing after the held message passes or is looked at until release, then all
    of it, in order, as if it came then."""
    first = STREAM[:STREAM.index(m.command_complete("SELECT 4"))]
    stream = first + m.command_complete("SELECT 4") + m.ready_for_query(m.TX_IDLE) + STREAM
    out: list[bytes] = []
    seen: list[int] = []
    scanner: MessageStream

    def on_message(kind, body):
        seen.append(kind)
        if len(seen) == 2:  # the first ReadyForQuery: held, sent later by the relay itself
            scanner.hold()
            return b""
        return None

    scanner = MessageStream(lambda data: out.append(bytes(data)), {ord("C"), ord("Z")}, on_message,
                            lambda kind: None, 1 << 30)
    pos = 0
    for size in random_chunks(seed, len(stream)):
        scanner.feed(stream[pos:pos + size])
        pos += size
    assert b"".join(out) == first + m.command_complete("SELECT 4") and seen == [ord("C"), ord("Z")]
    scanner.release()
    assert b"".join(out) == first + m.command_complete("SELECT 4") + STREAM
    assert seen == [ord("C"), ord("Z"), ord("C"), ord("Z")]


def test_sieved_messages_are_handed_over_only_when_they_match():
    """A sieved type (RowDescription, with Redshift's types) is looked at only if its body may
    name one of them; else it is counted like any other, and the same body again costs a set
    lookup. Split across chunks, it is handed over whole, matching or not."""
    plain, marked = m.message(ord("T"), b"\x00\x01a\x00" + b"\x00" * 18), m.message(ord("T"), b"\x00\x01b\x00MARK")
    for chunks, handed in (([], [marked]), ([3], [plain, marked]), ([30], [marked])):
        out: list[bytes] = []
        seen: list[bytes] = []
        headers: list[int] = []
        scanner = MessageStream(lambda data: out.append(bytes(data)), {ord("T")},
                                lambda kind, body: seen.append(bytes(body)), headers.append, 1 << 30)
        scanner.sieved, scanner.sieve = frozenset({ord("T")}), re.compile(b"MARK")
        stream = plain + marked + plain
        pos = 0
        for size in chunks:
            scanner.feed(stream[pos:pos + size])
            pos += size
        scanner.feed(stream[pos:])
        assert b"".join(out) == stream
        assert seen == [message[5:] for message in handed]  # [3]: the first plain one arrived split
        assert len(headers) == 3 - len(handed)
