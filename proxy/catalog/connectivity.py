"""Keeps this proxy's security-group gate in step with the security groups stored in the backing
database: seeds them from the configuration, notices changes made through the API (here or by
another proxy on the same backend) by polling their version, and installs each new state. Does
no admission itself (policy/connectivity.py decides); never installs a state it could not read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..policy.connectivity import SecurityGroups
from .store import Catalog

log = logging.getLogger(__name__)

# How often other proxies' changes are looked for: a change made through another proxy's API
# reaches this one's next connection within about this many seconds.
POLL_SECONDS = 1.0


class SecurityGroupSync:
    """The stored security groups last read, and the task that keeps them current."""

    def __init__(self, catalog: Catalog, install: Callable[[SecurityGroups], None],
                 poll_seconds: float = POLL_SECONDS):
        self.catalog = catalog
        self.install = install  # called with every new state read, on the event loop
        self.poll_seconds = poll_seconds
        self.version: int | None = None
        self.state: SecurityGroups | None = None
        self._pending: SecurityGroups | None = None  # the configuration's, not yet applied
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._failing = False
        self._task: asyncio.Task | None = None

    async def start(self, configured: SecurityGroups) -> None:
        """Seed from the configuration if it changed, read the stored state, start polling.
        Raises when the stored state cannot be read: there is no good state to keep yet."""
        await self.catalog.seed_security_groups(configured)
        self.version, self.state = await self.catalog.load_security_groups()
        self.install(self.state)
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def configuration_changed(self, configured: SecurityGroups) -> None:
        """A reload: apply the configuration's security groups (when they differ from those last
        applied) as soon as the backing database takes them, then install the result."""
        self._pending = configured
        self._wake.set()

    async def refresh(self) -> bool:
        """Apply a pending configuration, then read the stored state if its version moved.
        False (and the last good state stays installed) when the database cannot be read."""
        async with self._lock:
            try:
                while True:
                    pending = self._pending
                    if pending is not None:
                        await self.catalog.seed_security_groups(pending)
                        if self._pending is pending:
                            self._pending = None
                        continue
                    if await self.catalog.security_groups_version() != self.version:
                        version, state = await self.catalog.load_security_groups()
                        if self._pending is not None:
                            continue  # a newer configuration came meanwhile: never install an older one
                        self.install(state)
                        self.version, self.state = version, state
                    break
            except Exception as exc:  # noqa: BLE001 - any failure keeps the last good state
                if not self._failing:
                    log.error("security groups: cannot read the stored state (%s: %s); the last good "
                              "rules stay in force", type(exc).__name__, exc)
                self._failing = True
                return False
            if self._failing:
                log.info("security groups: the stored state is readable again")
                self._failing = False
            return True

    async def _poll(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.refresh()
