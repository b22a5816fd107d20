"""Binding the late-binding views made before their tables (catalog/schema.sql
bind_late_binding_view), in sessions of the proxy's own.

A view's owner binds their own pending views in their own DDL (the event trigger). Anyone else's
DDL does not compile them: compiling a view's query can take seconds (a thousand `t.*` of a wide
table), and PostgreSQL has no timer a running statement can arm, so one user's view would hold
up everyone's DDL. Instead, when a client's transaction that ran DDL has ended, its relay waits
briefly (BIND_WAIT_SECONDS) while the proxy binds the database's pending views here, so that a
client's next statement finds a view its CREATE TABLE made readable already bound. Each compile
is limited to BIND_VIEW_SECONDS and runs under its owner's session authorization: compiling may
run the owner's code (a domain's CHECK reading a literal), and in a session whose session_user
was anyone else, shiftguard's checks of session_user would take that code for the other's. A
view whose compile was slow is left out of the passes for a while (backing off up to
SLOW_VIEW_MAX_SECONDS). The cluster database is also looked at every POLL_SECONDS (DDL run
inside functions or DO blocks, or through another proxy).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random

import asyncpg

from .store import BACKEND_FAILURES, Catalog, UntrustedDatabase

log = logging.getLogger(__name__)

BIND_WAIT_SECONDS = 0.2  # how long a client's ReadyForQuery waits for a pass
BIND_VIEW_SECONDS = 1.0  # one view's compile, at most
PASS_SECONDS = 2.0  # one pass, at most (the rest: the next pass)
SLOW_VIEW = 0.1  # seconds: a view whose attempt took longer is left out for a while...
SLOW_VIEW_FIRST_SECONDS = 10.0  # ... this long at first, twice as long each time after ...
SLOW_VIEW_MAX_SECONDS = 600.0  # ... up to this
NONE_PENDING_SECONDS = 10.0  # a database found with no pending view is not looked at again for this long
POLL_SECONDS = 10.0


class LateBinding:
    def __init__(self, catalog: Catalog):
        self._catalog = catalog
        self._passes: dict[str, asyncio.Task] = {}  # database -> its pass running
        self._again: set[str] = set()  # databases whose running pass must look again once done
        self._none_pending: dict[str, float] = {}  # database -> when a pass found no pending view there
        self._slow: dict[tuple[str, int], tuple[float, float]] = {}  # (database, view) -> (left out until, for how long)

    async def after_ddl(self, database: str, made_views: bool) -> None:
        """A client's transaction that ran DDL in database ended (made_views: it may have made
        late-binding views): its pending views are bound, waited for BIND_WAIT_SECONDS at most
        (the pass goes on after that)."""
        if made_views:
            self._none_pending.pop(database, None)
        task = self._start(database)
        if task is not None:
            await asyncio.wait([task], timeout=BIND_WAIT_SECONDS)

    async def poll(self) -> None:
        """The cluster database's pending views (at POLL_SECONDS), waited for."""
        self._none_pending.pop(self._catalog.database, None)
        task = self._start(self._catalog.database)
        if task is not None:
            await asyncio.wait([task])

    async def close(self) -> None:
        for task in self._passes.values():
            task.cancel()
        await asyncio.gather(*self._passes.values(), return_exceptions=True)

    def _start(self, database: str) -> asyncio.Task | None:
        loop = asyncio.get_running_loop()
        found_none = self._none_pending.get(database)
        if found_none is not None and loop.time() - found_none < NONE_PENDING_SECONDS:
            return None
        task = self._passes.get(database)
        if task is not None and not task.done():
            self._again.add(database)  # what this DDL made bindable may come after its list
            return task
        task = self._passes[database] = asyncio.create_task(self._passes_of(database))
        task.add_done_callback(lambda done: self._ended(database, done))
        return task

    def _ended(self, database: str, task: asyncio.Task) -> None:
        if self._passes.get(database) is task:
            del self._passes[database]
        if not task.cancelled() and task.exception() is not None:
            log.warning("late-binding views of database %s not bound: %s", database, task.exception())

    async def _passes_of(self, database: str) -> None:
        while True:
            self._again.discard(database)
            try:
                await self._pass(database)
            except asyncpg.InvalidCatalogNameError:
                return  # the database was dropped since
            except (*BACKEND_FAILURES, UntrustedDatabase) as exc:
                log.warning("late-binding views of database %s not bound: %s", database, exc)
                return
            if database not in self._again:
                return

    async def _pass(self, database: str) -> None:
        """Bind what compiles now of database's pending views, the owners in turn (in random
        order, a user's hundreds of views that each fail just under SLOW_VIEW filled every pass),
        for PASS_SECONDS at most; one view's error fails that view only. In a connection of its
        own, closed after: what an owner's code may leave in a session beyond its transaction (a
        session-level advisory lock) stays in none of the pool's."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PASS_SECONDS
        if database == self._catalog.database:
            async with self._catalog.connection(database) as conn:
                views = dict(await conn.fetch("SELECT view_id, owner FROM shiftguard.pending_late_binding_views()"))
            if not self._pending_now(database, views):
                return
        async with self._catalog.connection(database, own=True) as conn:
            if database != self._catalog.database:
                views = dict(await conn.fetch("SELECT view_id, owner FROM shiftguard.pending_late_binding_views()"))
                if not self._pending_now(database, views):
                    return
            for view in _owners_in_turn(views):
                now = loop.time()
                if now > deadline:
                    return  # the rest: at the next DDL or poll
                left_out = self._slow.get((database, view))
                if left_out is not None and now < left_out[0]:
                    continue
                try:
                    # (owner: quoted by quote_ident; SET SESSION AUTHORIZATION takes no parameter)
                    await conn.execute(f"SET SESSION AUTHORIZATION {views[view]}")
                    await conn.fetchval("SELECT shiftguard.bind_late_binding_view($1::pg_catalog.oid::pg_catalog.regclass)",
                                        view, timeout=BIND_VIEW_SECONDS)
                    await conn.execute("RESET SESSION AUTHORIZATION")
                except TimeoutError:
                    self._left_out(database, view, left_out)
                    # the cancel reaches a compile at its next check; the connection goes, not waits
                    await self._catalog.end_stuck(conn)
                    self._again.add(database)
                    return
                except asyncpg.UndefinedObjectError:  # its owner was dropped since
                    await conn.execute("RESET SESSION AUTHORIZATION")
                    continue
                except asyncpg.PostgresError as exc:  # the view's, not the pass's: the others go on
                    await conn.execute("RESET SESSION AUTHORIZATION")
                    log.info("late-binding view %d of database %s not bound: %s", view, database, exc)
                    self._left_out(database, view, left_out)
                    continue
                if loop.time() - now > SLOW_VIEW:
                    self._left_out(database, view, left_out)

    def _pending_now(self, database: str, views: dict[int, str]) -> bool:
        """Note what database's pending views are (views); are there any?"""
        for key in [key for key in self._slow if key[0] == database and key[1] not in views]:
            del self._slow[key]  # bound or dropped
        if not views:
            self._none_pending[database] = asyncio.get_running_loop().time()
            return False
        self._none_pending.pop(database, None)
        return True

    def _left_out(self, database: str, view: int, before: tuple[float, float] | None) -> None:
        span = SLOW_VIEW_FIRST_SECONDS if before is None else min(before[1] * 2, SLOW_VIEW_MAX_SECONDS)
        self._slow[(database, view)] = (asyncio.get_running_loop().time() + span, span)
        log.info("late-binding view %d of database %s took long to compile: left out for %d s", view, database, span)


def _owners_in_turn(views: dict[int, str]) -> list[int]:
    """The views (view -> owner): one of each owner's in turn, the owners and each owner's views
    in random order."""
    owners: dict[str, list[int]] = {}
    for view, owner in views.items():
        owners.setdefault(owner, []).append(view)
    queues = list(owners.values())
    random.shuffle(queues)
    for queue in queues:
        random.shuffle(queue)
    return [view for turn in itertools.zip_longest(*queues) for view in turn if view is not None]
