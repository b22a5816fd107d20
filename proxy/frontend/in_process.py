"""Client connections that start inside the proxy (the Data API's sessions): one end of a socket
pair is served by the same Connection code as an accepted client, the other is returned to
the caller. Owns only that hand-over; everything after it is frontend/connection.py's.

Such a connection does not pass the security-group gate: as on AWS, the Data API does not
traverse the cluster's VPC security groups; its callers are authorised by IAM instead
(iam/data_api.py). Nothing outside this process can reach the pair, and the connection still
logs in with a credential and meets every limit of an address, here "local"."""

from __future__ import annotations

import asyncio
import socket

from ..endpoint import Endpoint
from .connection import Connection, Context


class InProcessClient(Endpoint):
    def __init__(self, context: Context):
        super().__init__()
        self._context = context

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._context.spawn(Connection(self, self._context).run())


async def in_process_socket(context: Context) -> socket.socket:
    """A socket connected to the proxy's frontend, as a client's would be after its accept."""
    ours, theirs = socket.socketpair()
    try:
        await asyncio.get_running_loop().connect_accepted_socket(lambda: InProcessClient(context), ours)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    return theirs
