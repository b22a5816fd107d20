"""One socket, client or backend, as an asyncio Protocol: awaitable message reads while a
connection starts up, then a plain byte sink while it is relayed.

It owns the socket's read buffer and its flow control (a peer whose writes back up pauses our
reading, so a large result never piles up in memory). It knows framing, not message meaning.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from .protocol.framing import split_message, split_startup

# While starting up, stop reading from a peer that sends far more than it should.
_STARTUP_BUFFER_LIMIT = 1 << 20


class ConnectionClosed(Exception):
    """The peer closed the connection (or it broke) before a whole message arrived."""


class Endpoint(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer: Endpoint | None = None
        self.closed = False
        self.tls = False
        self._sink: Callable[[bytes], None] | None = None
        self._waiter: asyncio.Future | None = None
        self._lost = asyncio.get_running_loop().create_future()
        self._paused_self = False
        self._corked: list[bytes] | None = None  # writes held by cork, and cork's depth
        self._cork_depth = 0

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink(data)
            return
        self.buffer += data
        if len(self.buffer) > _STARTUP_BUFFER_LIMIT and not self._paused_self:
            self._paused_self = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._mark_closed()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_closed()
        if not self._lost.done():
            self._lost.set_result(exc)

    def pause_writing(self) -> None:
        # Our socket's send buffer is full: stop reading what would be written to it.
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()

    # ---------------------------------------------------------------- startup-phase reads

    async def read_startup(self, max_size: int) -> bytes:
        while (packet := split_startup(self.buffer, max_size)) is None:
            await self.fill()
        return packet

    async def read_message(self, max_size: int) -> tuple[int, bytes]:
        while (msg := split_message(self.buffer, max_size)) is None:
            await self.fill()
        return msg

    async def fill(self) -> None:
        if self.closed:
            raise ConnectionClosed()
        if self._paused_self:
            self._paused_self = False
            self.transport.resume_reading()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.closed and not self.buffer:
            raise ConnectionClosed()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _mark_closed(self) -> None:
        self.closed = True
        self._wake()
        if self._sink is not None and self._on_close is not None:
            self._on_close()

    # ---------------------------------------------------------------- writing, TLS, relay

    def write(self, data: bytes) -> None:
        if not self.closed:
            if self._corked is not None:
                self._corked.append(data)
                return
            self.transport.write(data)

    def cork(self) -> None:
        """Hold writes until the matching uncork, to send them in one system call (a write on
        a socket costs about as much as the bytes it carries, on loopback more). Nests."""
        self._cork_depth += 1
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        self._cork_depth -= 1
        if self._cork_depth:
            return
        held, self._corked = self._corked, None
        if held:
            self.write(b"".join(held))

    async def start_tls(self, context: ssl.SSLContext, *, server_side: bool,
                        server_hostname: str | None = None, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        self.transport = await loop.start_tls(self.transport, self, context, server_side=server_side,
                                              server_hostname=server_hostname,
                                              ssl_handshake_timeout=timeout)
        self.tls = True

    def relay_to(self, sink: Callable[[bytes], None], on_close: Callable[[], None]) -> None:
        """From now on every byte read goes to sink; on_close runs once when the socket closes."""
        self._sink, self._on_close = sink, on_close
        if self._paused_self:
            self._paused_self = False
            self.transport.resume_reading()
        pending, self.buffer = bytes(self.buffer), bytearray()
        if pending:
            sink(pending)
        if self.closed:
            on_close()

    _on_close: Callable[[], None] | None = None

    def detach(self) -> None:
        """Stop relaying: what is read from now on is buffered for read_message again (a
        backend session going back to the pool)."""
        self._sink = self._on_close = None
        self.peer = None
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()  # the peer's flow control may have paused it

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    def peer_address(self) -> tuple[str, int]:
        info = self.transport.get_extra_info("peername") if self.transport else None
        if isinstance(info, tuple) and len(info) >= 2:
            return str(info[0]), int(info[1])
        return ("local", 0)
