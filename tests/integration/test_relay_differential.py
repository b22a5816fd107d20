"""The relay stays in step with PostgreSQL: the same generated message streams (tests/fuzz/wire.py)
sent straight to PostgreSQL and through the proxy, as a user for whom no statement is rewritten,
get the same replies (the proxy's refusals among them are sent to PostgreSQL as statements that
fail the same way) (message types, SQLSTATEs, command tags), and the proxy's session is idle
again afterwards (so idle timeouts and the backend pool see it as PostgreSQL does).

Bounded by a count of streams (SHIFTGUARD_FUZZ_STREAMS, default 150, derandomised so the normal
suite always tries the same ones); `python bench/fuzz.py relay` runs a long, random mode.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings

from proxy.backend.session import BackendAddress, open_session
from proxy.frontend.connection import REDSHIFT_SESSION_SETTINGS
from proxy.protocol import messages as m

from ..conftest import USER_PASSWORD
from ..fuzz import wire

STREAMS = int(os.environ.get("SHIFTGUARD_FUZZ_STREAMS", "150"))
RANDOM = os.environ.get("SHIFTGUARD_FUZZ_RANDOM") == "1"


@pytest.fixture(scope="module")
def differential(postgres, tmp_path_factory):
    """A proxy, a user of it, and how to reach PostgreSQL directly as that user's role."""
    from ..conftest import RunningProxy, proxy_config

    proxy = RunningProxy(proxy_config(tmp_path_factory.mktemp("differential")), postgres.target).start()
    name = f"fuzz_{uuid.uuid4().hex[:8]}"
    try:
        with proxy.connect() as admin:
            admin.execute(f"CREATE USER {name} PASSWORD '{USER_PASSWORD}'")
        direct = BackendAddress(socket_dir=postgres.target.socket_dir, port=postgres.target.port)
        through = BackendAddress(host=proxy.host, port=proxy.port)
        yield proxy, name, direct, through, proxy.proxy.catalog.backend_password(name)
        with postgres.connect() as superuser:
            superuser.execute(f"DROP OWNED BY {name}")
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {name}")
    finally:
        proxy.stop()


def _busy_sessions(proxy, user: str) -> list[bool]:
    async def busy():
        return [s.relay.busy for s in proxy.proxy.context.sessions if s.user == user]
    return proxy.call(busy())


async def _replies(address: BackendAddress, user: str, password: str, startup: dict, stream, after=None):
    session = await open_session(address, user, password, "dev", startup)
    try:
        await wire.setup(session.endpoint)
        replies = await wire.run_stream(session.endpoint, stream)
        if after is not None:
            replies.append(("busy after the stream", after()))
        return replies
    finally:
        session.endpoint.write(m.terminate())
        session.endpoint.close()


@settings(max_examples=STREAMS, derandomize=not RANDOM, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(stream=wire.streams())
def test_same_replies_straight_and_through_the_proxy(differential, stream):
    proxy, name, direct, through, backend_password = differential
    expected = asyncio.run(_replies(direct, name, backend_password, dict(REDSHIFT_SESSION_SETTINGS),
                                    wire.side(stream, direct=True), after=lambda: []))
    got = asyncio.run(_replies(through, name, USER_PASSWORD, {}, wire.side(stream, direct=False),
                               after=lambda: [b for b in _busy_sessions(proxy, name) if b]))
    assert got == expected, "\n".join(f"{i:3} {e!s:45} {g!s}" for i, (e, g) in enumerate(
        zip(expected + [None] * len(got), got + [None] * len(expected))) if e is not None or g is not None)
