"""Keeps this proxy in step with its cluster's management state in the backing database (the
parameter group in force, audit log delivery): reads it at start, notices changes made through
the API (here or by another proxy on the same backend) by polling its version, and hands each
new state to the proxy, saying whether the cluster was rebooted since. Decides nothing itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .connectivity import POLL_SECONDS
from .store import Catalog, ClusterState

log = logging.getLogger(__name__)


class ClusterSync:
    def __init__(self, catalog: Catalog, identifier: str, install: Callable[[ClusterState, bool], None],
                 poll_seconds: float = POLL_SECONDS):
        self.catalog = catalog
        self.identifier = identifier
        self.install = install  # (state, rebooted since the last one), on the event loop
        self.poll_seconds = poll_seconds
        self.state: ClusterState | None = None
        self._lock = asyncio.Lock()
        self._failing = False
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Read the stored state (raises when it cannot be read) and start polling."""
        await self.catalog.ensure_cluster(self.identifier)
        self.state = await self.catalog.cluster_state(self.identifier)
        self.install(self.state, False)
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self) -> None:
        """Install the stored state if its version moved; the last one stays when it cannot be read."""
        async with self._lock:
            try:
                state = await self.catalog.cluster_state(self.identifier)
            except Exception as exc:  # noqa: BLE001 - the backend away: keep what is in force
                if not self._failing:
                    log.error("cluster %s: cannot read its stored state (%s: %s); the settings in force stay",
                              self.identifier, type(exc).__name__, exc)
                self._failing = True
                return
            self._failing = False
            if state.version != self.state.version:
                rebooted = state.reboots != self.state.reboots
                self.state = state
                self.install(state, rebooted)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self.refresh()
