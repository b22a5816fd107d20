"""Endpoint.cork: writes held until the outermost uncork go out once, in order, over a real socket."""

from __future__ import annotations

import asyncio
import socket

from proxy.endpoint import Endpoint


async def _pair() -> tuple[Endpoint, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    _, endpoint = await asyncio.get_running_loop().create_connection(Endpoint, sock=ours)
    return endpoint, theirs


async def _received(sock: socket.socket) -> bytes:
    await asyncio.sleep(0.05)
    try:
        return sock.recv(1 << 16)
    except BlockingIOError:
        return b""


async def test_corked_writes_go_out_together_in_order_at_the_outermost_uncork():
    endpoint, peer = await _pair()
    try:
        endpoint.cork()
        endpoint.write(b"reset;")
        endpoint.cork()  # a nested cork (a session lent again while the first is held)
        endpoint.write(b"query;")
        endpoint.uncork()
        assert await _received(peer) == b""
        endpoint.write(b"more;")
        endpoint.uncork()
        assert await _received(peer) == b"reset;query;more;"
        endpoint.write(b"after;")  # uncorked: written at once again
        assert await _received(peer) == b"after;"
    finally:
        endpoint.transport.close()
        peer.close()


async def test_writes_held_by_a_cork_are_dropped_when_the_socket_closed_meanwhile():
    endpoint, peer = await _pair()
    try:
        endpoint.cork()
        endpoint.write(b"held;")
        peer.close()
        endpoint.connection_lost(None)  # as the loop reports it
        endpoint.uncork()  # nothing written to a closed transport, no error
        assert endpoint.closed
    finally:
        endpoint.transport.close()
