"""At the cluster's connection limit (the backing PostgreSQL's max_connections), clients get
Redshift's refusal, one wording for both of PostgreSQL's; the admin (Redshift's bootstrap user)
still gets in; idle backend sessions kept for other clients give way."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import USER_PASSWORD, unique, wait_for

LIMIT = 12


def _fill(proxy, user: str) -> tuple[list[psycopg.Connection], psycopg.OperationalError]:
    """Sessions of user until a login is refused: (the sessions, the refusal)."""
    sessions = []
    while len(sessions) < LIMIT + 1:
        try:
            sessions.append(proxy.connect(user, USER_PASSWORD))
        except psycopg.OperationalError as exc:
            return sessions, exc
    raise AssertionError(f"{len(sessions)} sessions of a limit of {LIMIT}")


def _close(sessions) -> None:
    for conn in sessions:
        conn.close()


def test_the_cluster_limit_refuses_as_redshift_does(own_server_proxy):
    proxy = own_server_proxy(embedded__max_connections=LIMIT, backend__pool_size=0)
    user = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
    sessions, refusal = _fill(proxy, user)
    try:
        assert sessions
        assert str(refusal).strip().endswith(f'FATAL:  connection limit "{LIMIT}" exceeded for non-bootstrap users')
        with pytest.raises(psycopg.OperationalError) as again:
            proxy.connect(user, USER_PASSWORD)
        assert str(again.value) == str(refusal)  # the same words each time
        with proxy.connect() as admin:  # the bootstrap user is not refused
            assert admin.execute("SELECT 1").fetchone() == (1,)
    finally:
        _close(sessions)
    with proxy.connect(user, USER_PASSWORD) as conn:  # a slot came free
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_kept_idle_sessions_give_way_at_the_limit(own_server_proxy):
    proxy = own_server_proxy(embedded__max_connections=LIMIT, backend__pool_size=8)
    kept_user, user = unique("u"), unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {kept_user} PASSWORD '{USER_PASSWORD}'")
        admin.execute(f"CREATE USER {user} PASSWORD '{USER_PASSWORD}'")
    sessions, _ = _fill(proxy, user)
    capacity = len(sessions)
    _close(sessions)
    # Another user's sessions, left idle: kept for that user's next client.
    _close([proxy.connect(kept_user, USER_PASSWORD) for _ in range(4)])
    assert wait_for(lambda: proxy.call(_kept(proxy)) == 4)
    sessions, refusal = _fill(proxy, user)
    try:
        assert len(sessions) == capacity  # they gave their slots up
        assert f'connection limit "{LIMIT}" exceeded' in str(refusal)
        assert proxy.call(_kept(proxy)) == 0
    finally:
        _close(sessions)


async def _kept(proxy) -> int:
    return len(proxy.proxy.context.pool)
