"""The process ids given to clients with workers: each carries its worker's index in its low bits
(proxy/workers.py), is a positive 32-bit integer as PostgreSQL's are, and is otherwise random;
without workers they are as before."""

from __future__ import annotations

import pytest

from proxy.config import MAX_WORKERS, ConfigError, load_config
from proxy.frontend.connection import SessionRegistry
from proxy.workers import Peers, owner


@pytest.mark.parametrize("index", [0, 1, 7, MAX_WORKERS - 1])
def test_a_workers_ids_name_it(index):
    registry = SessionRegistry(index)
    pids = {registry.new_pid() for _ in range(2000)}
    assert len(pids) > 1990  # random, not counted
    assert all(0 < pid < 2**31 and owner(pid) == index for pid in pids)
    peers = Peers(index, MAX_WORKERS, "/nowhere")
    assert all(peers.mine(pid) for pid in pids)
    assert not any(Peers((index + 1) % MAX_WORKERS, MAX_WORKERS, "/nowhere").mine(pid) for pid in pids)


def test_without_workers_ids_use_all_31_bits():
    registry = SessionRegistry()
    pids = {registry.new_pid() for _ in range(2000)}
    assert all(0 < pid < 2**31 for pid in pids)
    assert len({owner(pid) for pid in pids}) > 32  # no bits set aside


@pytest.mark.parametrize("workers", [0, MAX_WORKERS + 1])
def test_the_number_of_workers_is_bounded(workers):
    with pytest.raises(ConfigError, match=f"workers: must be between 1 and {MAX_WORKERS}"):
        load_config(env={}, overrides={"workers": workers})
