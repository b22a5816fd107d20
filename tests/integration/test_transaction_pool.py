"""Transaction pooling (backend.pool_mode: transaction, backend/txpool.py): a client holds one
of its role's backend sessions only for a transaction; sessions are never shared across roles,
prepared statements follow a client from session to session, what leaves state in a session
pins it, cancels reach the right query, and clients wait for a session rather than fail."""

from __future__ import annotations

import psycopg
import pytest

from ..conftest import unique, wait_for

CAP = 5


@pytest.fixture
def proxy(make_proxy):
    return make_proxy(backend__pool_mode="transaction", backend__max_sessions_per_pool=CAP)


def pool_counts(proxy, user: str) -> tuple[int, int, int]:
    """(open, idle, waiting) summed over the user's pool keys."""
    counts = [c for key, c in proxy.proxy.context.transactions.counts().items() if key[0][0] == user]
    return tuple(sum(c[i] for c in counts) for i in range(3))


def test_clients_of_a_role_share_its_sessions_between_transactions(proxy, new_user):
    name, password = new_user()
    with proxy.connect(name, password) as first, proxy.connect(name, password) as second:
        pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert second.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert wait_for(lambda: pool_counts(proxy, name) == (1, 1, 0))
        with first.transaction():
            first.execute("SELECT 1")
            other = second.execute("SELECT pg_backend_pid()").fetchone()[0]
            assert other != pid  # the first holds its session until its transaction ends
        assert second.execute("SELECT session_user, current_user").fetchone() == (name, name)
