"""Redshift-level state in the private schema, reached through the management role's connection
pool in the cluster database: the bootstrap of every database (the cluster's state lives in the
cluster database, other databases reach it through foreign tables), user login records, each
role's backend password, the cluster security groups.

Nothing here decides who may do what: the procedures in schema.sql check their callers, and
policy/ decides about statements.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import asyncpg
import pglast

from ..backend.session import BackendAddress, BackendUnavailable
from ..policy import rls
from ..policy.connectivity import GroupRules, SecurityGroups, canonical_cidr
from ..policy.tokens import GrammarError, parse_tree, printed, quote_ident, sql_literal
from ..protocol.auth import redshift_md5, scram_verifier

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 150000  # PostgreSQL 15 (server_version_num)

VACUUM_CHANNEL = "shiftguard_vacuum"  # NOTIFYed by catalog/privileges.sql shiftguard.vacuum
MASKING_CHANNEL = "shiftguard_masking"  # NOTIFYed by catalog/schema.sql shiftguard.mask_bump
# NOTIFYed by catalog/materialized_views.sql shiftguard.note_write: a base table of an AUTO
# REFRESH YES materialized view was written.
MV_REFRESH_CHANNEL = "shiftguard_mv_refresh"
VACUUM_TIMEOUT = 3600.0  # seconds one queued VACUUM may take (the pool's command_timeout is 60)
VACUUM_CONCURRENCY = 4  # requesters whose VACUUMs run at once, each in a connection of its own
VACUUM_WAIT = 10.0  # seconds run_vacuums waits for what it took before it returns
# One proxy at a time bootstraps a database (_make_bootstrap_lock), under the lock of a table in
# schema shiftguard_rows, which no user may look into (rls.sql). Not an advisory lock, whose key
# any user could hold in a session of theirs and stop every proxy's start; and not a table a user
# can name, though the user may not lock it: PostgreSQL takes some locks before it checks the
# privilege (CREATE RULE's ACCESS EXCLUSIVE, refused only once granted), and such a request,
# waiting behind a lock the user keeps (a view over the table, made in a transaction left
# open), keeps every later request waiting behind it. A name in a schema the user may not use
# is refused before anything is locked.
_BOOTSTRAP_LOCK = "LOCK TABLE shiftguard_rows.bootstrap IN SHARE UPDATE EXCLUSIVE MODE"

# Every connection of the management role (a superuser on the embedded backend) resolves names
# only in the catalogs: users may create functions and operators in schema public, and
# PostgreSQL prefers a better-matching overload there to the built-in, so with public on the
# path a user's public.array_to_string would run as the management role (DESIGN principle 7).
# The private schema is always written out. pg_temp last: no temporary table stands in for a
# catalog one.
# And role none: a database's owner may ALTER DATABASE ... SET role = themselves, which every
# superuser's login there takes (the startup packet's value comes first): the management role's
# sessions there ran as the owner, session_user still the management role, so that the owner's
# code they ran (a BRIN expression of the owner's table, vacuumed as the management role's own)
# passed every check of session_user (test_attack13).
# What the backing database's failing looks like to asyncpg: refused or lost connections,
# PostgreSQL's errors, a pool closing; and InternalClientError, which asyncpg 0.29-0.32 raise
# when a connection breaks while the pool resets it on release (the server killed under it).
BACKEND_FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    asyncpg.InternalClientError)

TRUSTED_SETTINGS = {"search_path": "pg_catalog, pg_temp", "role": "none"}


class UntrustedDatabase(Exception):
    """A database whose private schema is missing or not a superuser's: the management role
    runs nothing there (its owner could have planted functions of shiftguard's names)."""


# Is the private schema there and a superuser's (the management role's on the embedded server),
# and shiftguard_rows too where it is?
_PRIVATE_SCHEMA_TRUSTED = ("SELECT coalesce((SELECT bool_and(r.rolsuper) FROM pg_namespace n JOIN pg_roles r "
                           "ON r.oid = n.nspowner WHERE n.nspname IN ('shiftguard', 'shiftguard_rows')) "
                           "AND to_regnamespace('shiftguard') IS NOT NULL, false)")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """What a login needs to know about a user."""

    name: str
    superuser: bool
    password_md5: str | None = None
    password_sha256: str | None = None
    password_salt: str | None = None
    password_scram: str | None = None
    password_expired: bool = False  # VALID UNTIL has passed
    session_timeout: int | None = None
    userid: int = 0                 # the role's OID, Redshift's usesysid
    connection_limit: int | None = None
    settings: str = ""              # the role's and database's SET defaults (for backend/pool.py)

    @property
    def password_disabled(self) -> bool:
        return self.password_md5 is None and self.password_sha256 is None


class TagLimitExceeded(Exception):
    """More tags than a resource may have."""




@dataclass(frozen=True)
class ClusterState:
    """A cluster's management state as stored (schema.sql shiftguard_rows.clusters)."""

    parameter_group: str
    applied_group: str
    applied: dict[str, str]  # the group's values in force since the last reboot
    reboots: int
    version: int
    logging: dict | None     # bucket, prefix, exports, last_delivery, last_failure...
    tags: dict[str, str]


class Conflict(Exception):
    """A change the stored state does not allow; kind says which (the API answers with a fault
    for it)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class SecurityGroupConflict(Conflict):
    """kind: 'group exists', 'no group', 'group attached', 'rule exists', 'no rule'."""


class ParameterGroupConflict(Conflict):
    """kind: 'group exists', 'no group', 'group in use'."""


_USER_COLUMNS = ("name, superuser, password_md5, password_sha256, password_salt, password_scram, "
                 "coalesce(valid_until <= now(), false) AS password_expired, session_timeout, "
                 "coalesce((SELECT oid::integer FROM pg_roles WHERE rolname = name), 0) AS userid, connection_limit, "
                 # ALTER USER ... SET (and ALTER DATABASE / ROLE ALL ... SET): what a new
                 # session starts with, so a kept backend session of other settings is not one.
                 "coalesce((SELECT string_agg(concat_ws(':', setdatabase, setrole, array_to_string(setconfig, ',')), ';' "
                 "ORDER BY setdatabase, setrole) FROM pg_db_role_setting WHERE setrole IN "
                 "(0, (SELECT oid FROM pg_roles WHERE rolname = name))), '') AS settings, "
                 # Did the role change its own SET defaults (ALTER ROLE self SET from a DO block)?
                 # (Superusers may set anything anyway.)
                 "NOT superuser AND coalesce((SELECT EXISTS (SELECT FROM pg_db_role_setting s WHERE s.setrole = r.oid "
                 "AND s.setdatabase <> 0) OR (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid "
                 "AND s.setdatabase = 0) IS DISTINCT FROM users.settings FROM pg_roles r WHERE r.rolname = name), "
                 "false) AS settings_changed")


async def _session_kept(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection given back, besides asyncpg's own rollback of an open
    transaction: nothing. asyncpg's default (RESET ALL, CLOSE ALL, UNLISTEN *, advisory unlock)
    is a round trip that every catalog read would wait for, and there is nothing to undo: the
    proxy's statements set nothing for the session (installed functions change settings only
    for their transaction, set_config(..., true)), hold no cursors or session locks, and the one
    LISTEN connection is reset in full by unlisten."""


# One row per key that names a column of a relation. A masking view (masking.sql,
# shiftguard."mask:<table OID>", which a masked table is read through) stands for its table: the
# column of the same name there. Flags as Redshift's drivers read them: NOT NULL (a domain's
# too), and autoincrement for an IDENTITY column (or a serial's nextval default, as the JDBC
# driver reads it without extended metadata). Names as the user wrote them (schema.sql long_name).
SOURCES_SQL = """
SELECT k.rel, k.num, shiftguard.long_name(n.nspname), shiftguard.long_name(c.relname),
       shiftguard.long_name(a.attname),
       a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS not_null,
       a.attidentity <> '' OR coalesce(pg_catalog.strpos(pg_catalog.pg_get_expr(d.adbin, d.adrelid), 'nextval(') > 0,
                                       false) AS identity
  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.int2[])) AS k(rel, num)
  JOIN pg_catalog.pg_class r ON r.oid = k.rel
  JOIN pg_catalog.pg_attribute v ON v.attrelid = k.rel AND v.attnum = k.num AND NOT v.attisdropped
  JOIN pg_catalog.pg_attribute a
    ON a.attrelid = CASE WHEN r.relnamespace = 'shiftguard'::pg_catalog.regnamespace
                              AND pg_catalog.starts_with(r.relname, 'mask:')
                         THEN pg_catalog.substr(r.relname, 6)::pg_catalog.oid ELSE k.rel END
   AND a.attname = v.attname AND NOT a.attisdropped
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
"""

class Catalog:
    """The management pool and the private schema."""

    def __init__(self, pool: asyncpg.Pool, secret: bytes, redshift_functions: bool = False,
                 database: str = "dev", connect: dict | None = None):
        self._pool = pool
        self.database = database  # the cluster database, where the cluster's state lives
        self._connect = connect or {}  # how to reach the other databases (user, password, host ...)
        self._secret = secret
        self._listening: dict[asyncpg.Connection, Callable] = {}  # held by listen: its termination callback
        # run_vacuums: whose VACUUMs run now, the tasks running them, and how many may run at once
        self._vacuuming: set[str] = set()
        self._vacuum_tasks: set[asyncio.Task] = set()
        self._vacuum_slots = asyncio.Semaphore(VACUUM_CONCURRENCY)
        # Databases to look at again at the next pass (refresh_stale_views): a table to track was
        # locked, or views were left for lack of time.
        self._look_again: set[str] = set()
        # (database, relation OID) -> is it in schema shiftguard? (cancel_queued_locks)
        self._private_relations: dict[tuple[str, int], bool] = {}
        # {database: {view: when its refresh last failed}} (refresh_stale_views: tried after the others)
        self._refresh_failed: dict[str, dict[int, float]] = {}
        # Are Redshift's functions installed (catalog/redshift_functions.sql)? Only where the
        # management role may write pg_catalog, i.e. is a superuser.
        self.redshift_functions = redshift_functions

    @classmethod
    async def open(cls, address: BackendAddress, user: str, password: str | None, database: str,
                   superuser_mapping: str, track_table_writes: bool = False) -> "Catalog":
        """superuser_mapping and track_table_writes: settings of the cluster (_CLUSTER_SETTINGS)."""
        # max_size: four for the proxy's statements, one held for LISTEN (VACUUM requests, changes
        # of masking and row-level security).
        # min_size 0: no connection floor to restore (asyncpg logs a traceback a second for it
        # while the backend is down); connections are opened as they are needed.
        connect = _connect_kwargs(address, user, password)
        pool = await asyncpg.create_pool(database=database, min_size=0, max_size=5, command_timeout=60,
                                         reset=_session_kept, **connect)
        try:
            settings = {"superuser_mapping": superuser_mapping, "track_table_writes": "on" if track_table_writes else "off"}
            secret, functions = await _bootstrap(pool, settings)
            if functions:
                link = ClusterLink(address, user, password, database)
                upgraded = await bootstrap_databases(pool, link)
                if upgraded:
                    log.info("private schema installed or upgraded in databases %s", ", ".join(upgraded))
        except BaseException:
            await pool.close()
            raise
        return cls(pool, secret, functions, database, connect)

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool; connections still busy after timeout seconds (a statement that does
        not end) are closed at once, so that a shutdown never waits for them. VACUUMs still
        running are stopped (their requests are not run again), waited for as long at most: a
        VACUUM's connection is its own, which closing the pool does not end."""
        tasks = list(self._vacuum_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        try:
            await asyncio.wait_for(self._pool.close(), timeout)
        except TimeoutError:
            log.warning("closing the catalog's connections: some were still busy after %.0f s; closed at once",
                        timeout)
            self._pool.terminate()

    # ---------------------------------------------------------------- VACUUM requests

    async def listen(self, channels: dict[str, Callable[[], None]], lost: Callable[[], None]) -> asyncpg.Connection:
        """One connection of the pool, held to LISTEN on each channel (its function is called at
        each NOTIFY; lost when the connection breaks); give it back with unlisten."""
        conn = await self._pool.acquire()
        try:
            for channel, woken in channels.items():
                await conn.add_listener(channel, lambda *args, woken=woken: woken())
            conn.add_termination_listener(self._listening.setdefault(conn, lambda *args: lost()))
        except BaseException:
            await self._pool.release(conn)
            raise
        return conn

    async def unlisten(self, conn: asyncpg.Connection) -> None:
        """Never raises: it runs in a finally (a cancelled VACUUM loop must stay cancelled).
        A connection that broke (the backend restarted) was released by the pool already."""
        conn.remove_termination_listener(self._listening.pop(conn))  # a pool connection outlives it
        try:
            await conn.reset()  # UNLISTEN * with the rest of the session state
        except BACKEND_FAILURES as exc:
            log.debug("the LISTEN connection could not be reset: %s", exc)
        finally:
            await self._pool.release(conn)  # nothing to do if the pool took it back already

    async def run_vacuums(self) -> int:
        """Take the queued VACUUM requests (catalog/privileges.sql shiftguard.vacuum; each once,
        whichever proxy takes it) and run them as the management role in the database each
        names, outside any transaction, as PostgreSQL's plain VACUUM. Never VACUUM FULL, whatever
        mode was asked: it takes an ACCESS EXCLUSIVE lock and rewrites the table, which
        Redshift's VACUUM FULL does not. One that fails (a lock waited for too long, its
        timeout) holds up none of the others taken with it; what is taken and not run is
        logged. Each requester's run in order, in connections of their own, apart from other
        requesters' (at most VACUUM_CONCURRENCY at once): a VACUUM runs its table's owner's code
        (a BRIN index's expression, summarized by VACUUM), and one that slept held up every
        VACUUM queued after it, anyone's, for up to VACUUM_TIMEOUT. A requester whose VACUUMs
        still run has the rest left queued, to a later pass. Waits up to VACUUM_WAIT seconds for
        those it took (the rest go on meanwhile); returns how many of them ran by then."""
        taken = await self._pool.fetch(
            "DELETE FROM shiftguard_rows.vacuum_requests WHERE id IN (SELECT id FROM shiftguard_rows.vacuum_requests "
            "WHERE requested_by <> ALL($1::name[]) ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 100) "
            "RETURNING database, relation, requested_by", list(self._vacuuming))
        requests: dict[str, list[tuple[str, int | None]]] = {}
        for row in taken:
            requests.setdefault(row["requested_by"], []).append((row["database"], row["relation"]))
        tasks = []
        for requester, theirs in requests.items():
            self._vacuuming.add(requester)
            task = asyncio.create_task(self._run_vacuums_of(requester, theirs))
            self._vacuum_tasks.add(task)
            task.add_done_callback(self._vacuum_ended)
            tasks.append(task)
        if not tasks:
            return 0
        done, _ = await asyncio.wait(tasks, timeout=VACUUM_WAIT)
        return sum(task.result() for task in done)

    def _vacuum_ended(self, task: asyncio.Task) -> None:
        self._vacuum_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("queued VACUUMs not all run: %r", task.exception())

    async def _run_vacuums_of(self, requester: str, requests: list[tuple[str, int | None]]) -> int:
        done = 0
        try:
            async with self._vacuum_slots:
                for database in dict.fromkeys(database for database, _ in requests):
                    pending = list(dict.fromkeys(relation for name, relation in requests if name == database))
                    try:
                        async with self.connection(database, own=True) as conn:
                            while pending:
                                done += await _vacuum(conn, database, pending[0], self.connection_as)
                                pending.pop(0)
                    except asyncpg.InvalidCatalogNameError:
                        continue  # the database was dropped since
                    except UntrustedDatabase as exc:
                        log.error("VACUUM requests not run: %s", exc)
                    except BACKEND_FAILURES as exc:
                        log.error("%d VACUUM requests of database %s not run: %s", len(pending), database,
                                  type(exc).__name__)
        finally:
            self._vacuuming.discard(requester)
        return done

    @contextlib.asynccontextmanager
    async def connection_as(self, database: str, role: str):
        """A connection of its own in database logged in as role, a mapped role (its backend
        password), with the management connections' pinned settings; closed after use."""
        connect = self._connect | {"user": role, "password": self.backend_password(role)}
        conn = await asyncpg.connect(database=database, command_timeout=60, **connect)
        try:
            yield conn
        finally:
            await conn.close()

    async def refresh_stale_views(self) -> int:
        """REFRESH the stale materialized views with AUTO REFRESH YES (catalog/materialized_views.sql)
        of the cluster database, and of each other database where a write asked for it since
        (refresh_requests; each once, whichever proxy takes it); how many. A database whose pass
        fails (a view of a user's that outran the command timeout) holds up no other's."""
        try:
            async with self._pool.acquire() as conn:
                await _track_requested(conn)  # (left ones: tried again at the poll)
        except (TimeoutError, asyncpg.PostgresError) as exc:
            log.warning("tables of database %s not all tracked: %s", self.database, exc)
        try:
            async with self._pool.acquire() as conn:
                done = await self._refresh_stale_views(conn, self.database)
        except (TimeoutError, asyncpg.PostgresError) as exc:
            done = 0
            log.warning("materialized views of database %s not all refreshed: %s", self.database, exc)
        taken = await self._pool.fetch("DELETE FROM shiftguard_rows.refresh_requests RETURNING database")
        # (and those to look at again: a table to track was locked, or views were left)
        for database in sorted(({row["database"] for row in taken} | self._look_again) - {self.database}):
            self._look_again.discard(database)
            try:
                async with self.connection(database) as conn:
                    if await _track_requested(conn):
                        self._look_again.add(database)
                    done += await self._refresh_stale_views(conn, database)
            except asyncpg.InvalidCatalogNameError:
                continue  # the database was dropped since
            except (UntrustedDatabase, TimeoutError, asyncpg.PostgresError) as exc:
                log.warning("materialized views of database %s not all refreshed: %s", database, exc)
        return done

    async def _refresh_stale_views(self, conn: asyncpg.Connection, database: str) -> int:
        """Refresh the stale AUTO REFRESH views of conn's database (materialized_views.sql
        refresh_stale_view), each in a transaction of its own, for REFRESH_SECONDS at most: those
        whose refresh failed last (a user's, held locked) after the others, and those left to the
        next pass. How many were refreshed."""
        deadline = asyncio.get_running_loop().time() + REFRESH_SECONDS
        failed = self._refresh_failed.setdefault(database, {})
        owners = dict(await conn.fetch(_STALE_VIEWS_OWNERS))
        views = list(owners)
        for view in set(failed) - set(views):
            del failed[view]  # refreshed, dropped, or no longer stale
        done = 0
        for view in sorted(views, key=lambda v: (failed.get(v, 0.0), v)):
            if asyncio.get_running_loop().time() > deadline:
                if database != self.database:  # (the cluster database's: at every pass anyway)
                    self._look_again.add(database)
                break
            try:
                # session_user the view's owner (materialized_views.sql refresh_stale_view); SET
                # LOCAL: undone at the transaction's end (or the pool's rollback, if it failed)
                authorization = "" if owners[view] is None else f"SET LOCAL SESSION AUTHORIZATION {owners[view]}"
                await conn.execute(f"BEGIN; {authorization}")
                refreshed = await conn.fetchval("SELECT shiftguard.refresh_stale_view($1)", view)
                await conn.execute("COMMIT")
            except TimeoutError:  # its query outran the command timeout: to the back
                log.warning("materialized view %s of database %s not refreshed: it took too long", view, database)
                failed[view] = asyncio.get_running_loop().time()
                if database != self.database:
                    self._look_again.add(database)
                # Its owner's code may catch the cancel and go on (a PL/pgSQL handler naming
                # query_canceled): the connection would wait for it for ever, and this pass too.
                await self.end_stuck(conn)
                return done
            if refreshed:
                failed.pop(view, None)
                done += 1
            else:
                failed[view] = asyncio.get_running_loop().time()
        return done

    async def end_stuck(self, conn: asyncpg.Connection) -> None:
        """A management connection whose statement outran its command timeout, which may run a
        user's code (a materialized view's query) that ignores the cancel asyncpg asked for:
        dropped, and its backend ended (a handler cannot catch that), rather than waited for."""
        pid = conn.get_server_pid()
        conn.terminate()
        try:
            await self._pool.fetchval("SELECT pg_catalog.pg_terminate_backend($1)", pid, timeout=5)
        except BACKEND_FAILURES as exc:
            log.error("could not end backend %d, whose statement outran the command timeout: %s", pid, exc)

    async def cancel_queued_locks(self) -> int:
        """Cancel the statements of users (not superusers, nor shiftguard's roles) that wait for
        an ACCESS EXCLUSIVE lock of a relation in schema shiftguard, in any database; how many.
        Its views are everyone's to read (pg_user; the masked tables' "mask:<oid>" views), and
        PostgreSQL locks the relation some statements name before it asks whether the user owns
        it (CREATE TABLE ... PARTITION OF, ALTER TABLE ... ATTACH | DETACH PARTITION, CREATE
        RULE): such a request, queued behind a lock the user keeps (a transaction of theirs left
        open that read the view), queued everyone's reads of the view behind it. No user owns
        anything there, so no such statement of a user's could succeed; but shiftguard's own
        functions make views there again in a user's session (a masked table's view, when its
        owner renames a column), and such a request may wait briefly for the view's readers (or
        for PostgreSQL to resolve a deadlock, after deadlock_timeout): only a request that has
        waited more than two seconds is cancelled. (A user cannot name shiftguard's tables at all:
        schema shiftguard_rows.) Run twice a second (server.py)."""
        waiting = await self._pool.fetch(
            "SELECT l.pid, d.datname, l.relation FROM pg_catalog.pg_locks l "
            "JOIN pg_catalog.pg_database d ON d.oid = l.database "
            "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND NOT l.granted AND l.mode = 'AccessExclusiveLock' "
            "AND l.waitstart < pg_catalog.now() - interval '2 seconds' "
            "AND NOT shiftguard.trusted_role(a.usesysid)", timeout=5)
        cancelled = 0
        for row in waiting:
            key = (row["datname"], row["relation"])
            private = self._private_relations.get(key)
            if private is None:
                try:
                    async with self.connection(row["datname"]) as conn:
                        private = await conn.fetchval(
                            "SELECT relnamespace = 'shiftguard'::regnamespace FROM pg_catalog.pg_class "
                            "WHERE oid = $1", row["relation"]) or False
                except (UntrustedDatabase, *BACKEND_FAILURES):
                    continue
                if len(self._private_relations) > 10_000:
                    self._private_relations.clear()
                self._private_relations[key] = private
            if private and await self._pool.fetchval(
                    "SELECT pg_catalog.pg_cancel_backend(l.pid) FROM pg_catalog.pg_locks l WHERE l.pid = $1 "
                    "AND l.relation = $2 AND NOT l.granted AND l.mode = 'AccessExclusiveLock' "
                    "AND l.waitstart < pg_catalog.now() - interval '2 seconds' "
                    "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = $3)",
                    row["pid"], row["relation"], row["datname"]):
                log.warning("cancelled a statement of backend %d waiting to lock a relation of schema shiftguard "
                            "in database %s", row["pid"], row["datname"])
                cancelled += 1
        return cancelled

    async def ping(self) -> bool:
        try:
            return await self._pool.fetchval("SELECT true", timeout=5)
        except BACKEND_FAILURES:
            return False  # a connection that broke under it too (the backend restarted): not ready

    async def server_setting(self, name: str) -> str:
        """A setting of the backing PostgreSQL (max_connections, say)."""
        return await self._pool.fetchval("SELECT pg_catalog.current_setting($1)", name)

    async def init_sql_pending(self) -> bool:
        """Is this a new cluster whose init_sql has not run yet?"""
        return await self._pool.fetchval(
            "SELECT true FROM shiftguard_rows.settings WHERE name = 'init_sql' AND value = 'pending'") or False

    async def init_sql_done(self) -> None:
        await self._pool.execute("UPDATE shiftguard_rows.settings SET value = 'done' WHERE name = 'init_sql'")

    # ---------------------------------------------------------------- users

    async def login_record(self, name: str) -> UserRecord | None:
        query = f"SELECT {_USER_COLUMNS} FROM shiftguard_rows.users WHERE name = $1"
        row = await self._pool.fetchrow(query, name)
        if row is not None and row["settings_changed"]:
            # Only ALTER USER ... SET sets a user's defaults; what the role set itself goes.
            await self._pool.execute("SELECT shiftguard.restore_role_settings($1)", name)
            log.warning("user %s had changed its own SET defaults outside ALTER USER; they were restored", name)
            row = await self._pool.fetchrow(query, name)
        if row is None:
            return None
        record = dict(row)
        del record["settings_changed"]
        return UserRecord(**record)

    async def ensure_admin(self, name: str, password: str) -> None:
        """The admin user exists, is a superuser, and has the configured password."""
        verifiers = {"md5": redshift_md5(password, name), "scram": scram_verifier(password)}
        async with self._pool.acquire() as conn, conn.transaction():
            exists = await conn.fetchval("SELECT true FROM shiftguard_rows.users WHERE name = $1", name)
            if not exists:
                options = {"password": verifiers, "superuser": True, "backend_verifier": self.backend_verifier(name)}
                await conn.execute("CALL shiftguard.create_user($1, $2::jsonb)", name, json.dumps(options))
                log.info("created admin user %s", name)
            else:
                await conn.execute("UPDATE shiftguard_rows.users SET superuser = true WHERE name = $1", name)
                await conn.execute("SELECT shiftguard.store_password($1, $2::jsonb)", name, json.dumps(verifiers))

    # ---------------------------------------------------------------- temporary credentials

    async def record_token(self, minted, database: str | None, groups: list[str], roles: list[str],
                           login_as: str | None = None) -> None:
        """login_as: the database user the token logs in as; None: the name after the prefix
        (GetClusterCredentials' IAM:alice is the user alice)."""
        await self._pool.execute(
            "INSERT INTO shiftguard_rows.iam_tokens (token_id, db_user, database, md5, groups, roles, expires, login_as) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", minted.token_id, minted.db_user, database, minted.md5,
            groups, roles, minted.expiration, login_as)
        await self._pool.execute("DELETE FROM shiftguard_rows.iam_tokens WHERE expires < now() - interval '1 day'")

    async def record_sts_session(self, access_key_id: str, role: str, account: str, session_name: str,
                                 caller: str, expires: datetime.datetime, federation: dict | None = None) -> None:
        await self._pool.execute(
            "INSERT INTO shiftguard_rows.sts_sessions (access_key_id, role, account, session_name, caller, expires, "
            "federation) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)", access_key_id, role, account, session_name,
            caller, expires, None if federation is None else json.dumps(federation))
        await self._pool.execute("DELETE FROM shiftguard_rows.sts_sessions WHERE expires < now() - interval '1 day'")

    async def sts_session(self, access_key_id: str) -> dict | None:
        """An STS session by its access key id, expired or not (the caller tells which)."""
        row = await self._pool.fetchrow(
            "SELECT role, account, session_name, caller, expires, federation FROM shiftguard_rows.sts_sessions "
            "WHERE access_key_id = $1", access_key_id)
        if row is None:
            return None
        session = dict(row)
        session["federation"] = json.loads(session["federation"]) if session["federation"] else None
        return session

    async def first_use_of_assertion(self, issuer: str, assertion_id: str, expires: datetime.datetime) -> bool:
        """Remember a SAML assertion until it expires; False when it was used before (a replay),
        by this proxy or any other on the backend."""
        await self._pool.execute("DELETE FROM shiftguard_rows.saml_assertions WHERE expires < now()")
        inserted = await self._pool.fetchval(
            "INSERT INTO shiftguard_rows.saml_assertions (issuer, id, expires) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true", issuer, assertion_id, expires)
        return bool(inserted)

    async def masking_versions(self) -> dict[str, int]:
        """Each database's version of its masked tables and tables with RLS on (schema.sql
        mask_bump), by name: one cheap read for every database of the cluster. The changes
        committed since are folded into the versions first, in one statement (a reader sees
        them as rows or in the sum, never both nor neither; a second folder skips what the
        first deleted)."""
        await self._pool.execute(
            "WITH gone AS (DELETE FROM shiftguard_rows.masking_changes RETURNING database) "
            "INSERT INTO shiftguard_rows.masking_versions AS v (database, version) "
            "SELECT database, count(*) FROM gone GROUP BY database "
            "ON CONFLICT (database) DO UPDATE SET version = v.version + excluded.version")
        rows = await self._pool.fetch(
            "SELECT d.datname, coalesce(v.version, 0) + (SELECT count(*) FROM shiftguard_rows.masking_changes c "
            "WHERE c.database = d.oid) AS version FROM pg_database d "
            "LEFT JOIN shiftguard_rows.masking_versions v ON v.database = d.oid WHERE d.datallowconn")
        return {row["datname"]: row["version"] for row in rows}

    async def protected_tables(self, database: str) -> tuple[dict[tuple[str, str], str], frozenset[tuple[str, str]]]:
        """A database's masked tables ((schema, table) -> view) and tables with RLS on, read in
        one snapshot there."""
        async with self.connection(database) as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            masked = await conn.fetch("SELECT schema_name, table_name, view_name FROM shiftguard.masked_tables()")
            rls = await conn.fetch("SELECT schema_name, table_name FROM shiftguard.rls_tables()")
        return ({(r["schema_name"], r["table_name"]): r["view_name"] for r in masked},
                frozenset((r["schema_name"], r["table_name"]) for r in rls))

    async def type_oids(self, database: str, names) -> dict[str, int]:
        """The OIDs of the named types of pg_catalog in database (only superusers make them)."""
        async with self.connection(database) as conn:
            rows = await conn.fetch("SELECT typname, oid FROM pg_catalog.pg_type WHERE typnamespace = "
                                    "'pg_catalog'::regnamespace AND typname = ANY($1::text[])", list(names))
        return {row["typname"]: row["oid"] for row in rows}

    async def column_sources(self, database: str, keys: list[tuple[int, int]]) -> dict:
        """Where result columns come from (catalog/sources.py): {(table OID, column number):
        (schema, table, column, NOT NULL, identity)} of those that name a relation's column."""
        async with self.connection(database) as conn:
            rows = await conn.fetch(SOURCES_SQL, [k[0] for k in keys], [k[1] for k in keys])
        return {(row["rel"], row["num"]): tuple(row)[2:] for row in rows}

    async def record_long_names(self, names: list[str]) -> None:
        """Long names into the map back (schema.sql remember_long_names), for the cluster."""
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT shiftguard.remember_long_names($1::text[])", names)

    @contextlib.asynccontextmanager
    async def connection(self, database: str, own: bool = False):
        """A management connection in database: the pool's in the cluster database (unless own:
        one that may be held long, as a VACUUM's, and keep none of the pool's); elsewhere one of
        its own, closed after use (a connection kept in a database would make PostgreSQL refuse
        DROP DATABASE there)."""
        if database == self.database and not own:
            async with self._pool.acquire() as conn:
                yield conn
            return
        conn = await asyncpg.connect(database=database, command_timeout=60, **self._connect)
        try:
            if database != self.database and not await conn.fetchval(_PRIVATE_SCHEMA_TRUSTED):
                raise UntrustedDatabase(f"database {database} has no private schema that shiftguard made")
            yield conn
        finally:
            await conn.close()

    async def live_tokens(self, db_user: str, database: str) -> list[dict]:
        """Unexpired, unrevoked tokens of a prefixed user valid for database."""
        rows = await self._pool.fetch(
            "SELECT token_id::text, md5, groups, roles, login_as FROM shiftguard_rows.iam_tokens WHERE db_user = $1 "
            "AND NOT revoked AND expires > now() AND (database IS NULL OR database = $2)", db_user, database)
        return [dict(row) for row in rows]

    async def revoke_tokens(self, db_user: str | None = None, token_id: str | None = None) -> int:
        result = await self._pool.execute(
            "UPDATE shiftguard_rows.iam_tokens SET revoked = true WHERE NOT revoked AND "
            "(db_user = $1 OR token_id::text = $2)", db_user, token_id)
        return int(result.split()[-1])

    async def prepare_iam_login(self, user: str, create: bool, groups: list[str], roles: list[str]) -> bool:
        """Before a temporary-credentials session: create the user (PASSWORD DISABLE) when asked
        and missing, add it to the DbGroups and the tag's roles that exist. False when the user
        does not exist and may not be created."""
        async with self._pool.acquire() as conn, conn.transaction():
            exists = await conn.fetchval("SELECT true FROM shiftguard_rows.users WHERE name = $1", user)
            if not exists:
                if not create:
                    return False
                options = {"password": {}, "backend_verifier": self.backend_verifier(user)}
                await conn.execute("CALL shiftguard.create_user($1, $2::jsonb)", user, json.dumps(options))
                log.info("created user %s for temporary credentials", user)
            for group in groups:
                role = await conn.fetchval("SELECT role FROM shiftguard_rows.groups WHERE name = $1", group)
                if role is None:
                    log.warning("DbGroups names group %s, which does not exist", group)
                elif not await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", user, role):
                    await conn.execute("SELECT shiftguard.add_member($1, $2)", role, user)
            for role in roles:
                if not await conn.fetchval("SELECT true FROM shiftguard_rows.roles WHERE name = $1", role):
                    continue  # unknown roles in RedshiftDbRoles are ignored (reference §1b)
                if not await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", user, role):
                    await conn.execute(f"GRANT {quote_ident(role)} TO {quote_ident(user)}")
        return True

    # ---------------------------------------------------------------- identity providers

    async def identity_providers(self) -> list[dict]:
        """Every stored identity provider (sealed secrets included: for verifying logins only)."""
        rows = await self._pool.fetch(
            "SELECT name, type, namespace, params::text AS params, enabled FROM shiftguard_rows.identity_providers")
        return [{**dict(row), "params": json.loads(row["params"])} for row in rows]

    async def seed_identity_providers(self, providers: list[dict]) -> None:
        """The configuration's providers, created or replaced at each start (by name)."""
        async with self._pool.acquire() as conn, conn.transaction():
            for spec in providers:
                exists = await conn.fetchval("SELECT true FROM shiftguard_rows.identity_providers WHERE name = $1",
                                             spec["name"])
                procedure = "alter_identity_provider" if exists else "create_identity_provider"
                await conn.execute(f"CALL shiftguard.{procedure}($1::jsonb)", json.dumps(spec))
        if providers:
            log.info("identity providers from the configuration: %s", ", ".join(p["name"] for p in providers))

    async def prepare_idp_login(self, provider: str, user: str, roles: list[str]) -> list[str]:
        """Before an IdP user's session: create the user (PASSWORD DISABLE) when missing, and make
        its roles of the provider's namespace exactly `roles` (created when the provider auto-creates
        roles). The roles it got."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT true FROM shiftguard_rows.users WHERE name = $1", user):
                options = {"password": {}, "backend_verifier": self.backend_verifier(user)}
                await conn.execute("CALL shiftguard.create_user($1, $2::jsonb)", user, json.dumps(options))
                log.info("created user %s for identity provider %s", user, provider)
            return list(await conn.fetchval("SELECT shiftguard.sync_idp_roles($1, $2, $3)", provider, user, roles))

    # ---------------------------------------------------------------- security groups
    # Every change runs in one transaction that first locks the connectivity row, so changes
    # from several proxies are serialised, and adds one to its version (which proxies poll).

    async def security_groups_version(self) -> int:
        return await self._pool.fetchval("SELECT version FROM shiftguard_rows.connectivity WHERE id = 1", timeout=5)

    async def load_security_groups(self) -> tuple[int, SecurityGroups]:
        """The stored security groups and their version, read in one snapshot. ValueError when
        a stored rule is not a CIDR block (the caller keeps what it had)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            version = await conn.fetchval("SELECT version FROM shiftguard_rows.connectivity WHERE id = 1")
            groups = await conn.fetch("SELECT name, description, attached_position FROM shiftguard_rows.security_groups")
            rules = await conn.fetch("SELECT group_name, cidr FROM shiftguard_rows.security_group_ingress ORDER BY added")
        cidrs: dict[str, list[str]] = {}
        for row in rules:
            cidrs.setdefault(row["group_name"], []).append(canonical_cidr(row["cidr"]))
        state = SecurityGroups(
            tuple(GroupRules(g["name"], g["description"], tuple(cidrs.get(g["name"], ()))) for g in groups),
            tuple(g["name"] for g in sorted((g for g in groups if g["attached_position"] is not None),
                                             key=lambda g: g["attached_position"])))
        return version, state

    async def seed_security_groups(self, groups: SecurityGroups) -> bool:
        """Replace the stored security groups by the configuration's when those differ from the
        configuration last applied (a first start, or an edited YAML); True when replaced."""
        digest = groups.digest()
        async with self._pool.acquire() as conn, conn.transaction():
            applied = await conn.fetchval(
                "SELECT config_digest FROM shiftguard_rows.connectivity WHERE id = 1 FOR UPDATE")
            if applied == digest:
                return False
            await conn.execute("DELETE FROM shiftguard_rows.security_groups")
            position = {name: n for n, name in enumerate(groups.attached)}
            await conn.executemany(
                "INSERT INTO shiftguard_rows.security_groups (name, description, attached_position) VALUES ($1, $2, $3)",
                [(g.name, g.description, position.get(g.name)) for g in groups.groups])
            await conn.executemany(
                "INSERT INTO shiftguard_rows.security_group_ingress (group_name, cidr) VALUES ($1, $2)",
                [(g.name, cidr) for g in groups.groups for cidr in g.cidrs])
            await conn.execute("UPDATE shiftguard_rows.connectivity SET version = version + 1, config_digest = $1 "
                               "WHERE id = 1", digest)
        if applied is None:
            log.info("security groups seeded from the configuration")
        else:
            log.warning("security groups replaced from the configuration: its security groups changed, and they "
                        "replace the stored ones, changes made through the API included")
        return True

    async def create_security_group(self, name: str, description: str) -> GroupRules:
        async with self._changing_security_groups() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO shiftguard_rows.security_groups (name, description) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true", name, description)
            if not inserted:
                raise SecurityGroupConflict("group exists", f"Cluster security group {name} already exists.")
            return GroupRules(name, description)

    async def delete_security_group(self, name: str) -> None:
        async with self._changing_security_groups() as conn:
            position = await conn.fetchrow(
                "SELECT attached_position FROM shiftguard_rows.security_groups WHERE name = $1", name)
            if position is None:
                raise SecurityGroupConflict("no group", f"Cluster security group {name} not found.")
            if position["attached_position"] is not None:
                raise SecurityGroupConflict(
                    "group attached", f"Cluster security group {name} is in use by cluster; detach it first "
                                      f"(ModifyCluster).")
            await conn.execute("DELETE FROM shiftguard_rows.security_groups WHERE name = $1", name)

    async def authorize_ingress(self, name: str, cidr: str) -> GroupRules:
        async with self._changing_security_groups() as conn:
            await self._group_must_exist(conn, name)
            inserted = await conn.fetchval(
                "INSERT INTO shiftguard_rows.security_group_ingress (group_name, cidr) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true", name, cidr)
            if not inserted:
                raise SecurityGroupConflict("rule exists", f"Authorization {cidr} already exists for {name}.")
            return await self._group_rules(conn, name)

    async def revoke_ingress(self, name: str, cidr: str) -> GroupRules:
        async with self._changing_security_groups() as conn:
            await self._group_must_exist(conn, name)
            deleted = await conn.fetchval(
                "DELETE FROM shiftguard_rows.security_group_ingress WHERE group_name = $1 AND cidr = $2 RETURNING true",
                name, cidr)
            if not deleted:
                raise SecurityGroupConflict("no rule", f"Authorization {cidr} not found for {name}.")
            return await self._group_rules(conn, name)

    async def attach_security_groups(self, names: list[str]) -> None:
        """The cluster's security groups become exactly names, in that order."""
        async with self._changing_security_groups() as conn:
            for name in names:
                await self._group_must_exist(conn, name)
            await conn.execute("UPDATE shiftguard_rows.security_groups SET attached_position = NULL")
            await conn.executemany("UPDATE shiftguard_rows.security_groups SET attached_position = $2 WHERE name = $1",
                                   [(name, n) for n, name in enumerate(names)])

    @contextlib.asynccontextmanager
    async def _changing_security_groups(self):
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT FROM shiftguard_rows.connectivity WHERE id = 1 FOR UPDATE")
            yield conn
            await conn.execute("UPDATE shiftguard_rows.connectivity SET version = version + 1 WHERE id = 1")

    @staticmethod
    async def _group_must_exist(conn, name: str) -> None:
        if not await conn.fetchval("SELECT true FROM shiftguard_rows.security_groups WHERE name = $1", name):
            raise SecurityGroupConflict("no group", f"Cluster security group {name} not found.")

    @staticmethod
    async def _group_rules(conn, name: str) -> GroupRules:
        description = await conn.fetchval("SELECT description FROM shiftguard_rows.security_groups WHERE name = $1", name)
        rules = await conn.fetch("SELECT cidr FROM shiftguard_rows.security_group_ingress WHERE group_name = $1 "
                                 "ORDER BY added", name)
        return GroupRules(name, description, tuple(r["cidr"] for r in rules))

    # ---------------------------------------------------------------- clusters and parameter groups

    async def ensure_cluster(self, identifier: str) -> None:
        """The cluster's row, made on its first start."""
        await self._pool.execute("INSERT INTO shiftguard_rows.clusters (identifier) VALUES ($1) ON CONFLICT DO NOTHING",
                                 identifier)

    async def rename_cluster(self, identifier: str, new: str) -> None:
        """ModifyCluster NewClusterIdentifier: the cluster's state goes with its new name; the
        temporary credentials minted for the old name are revoked (over TLS their audience
        refuses them anyway, but an MD5 login proves only the recorded digest)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE shiftguard_rows.clusters SET identifier = $2, version = version + 1 "
                               "WHERE identifier = $1", identifier, new)
            await conn.execute("UPDATE shiftguard_rows.iam_tokens SET revoked = true WHERE NOT revoked")

    async def cluster_state(self, identifier: str) -> ClusterState:
        row = await self._pool.fetchrow(
            "SELECT parameter_group, applied_group, applied, reboots, version, logging, tags FROM shiftguard_rows.clusters "
            "WHERE identifier = $1", identifier, timeout=5)
        return ClusterState(row["parameter_group"], row["applied_group"], json.loads(row["applied"]),
                            row["reboots"], row["version"], json.loads(row["logging"]) if row["logging"] else None,
                            json.loads(row["tags"]))

    async def change_tags(self, identifier: str, add: dict[str, str], remove: list[str], limit: int) -> None:
        """Set the tags of add and drop those of remove; TagLimitExceeded beyond limit tags."""
        async with self._pool.acquire() as conn, conn.transaction():
            tags = json.loads(await conn.fetchval("SELECT tags FROM shiftguard_rows.clusters WHERE identifier = $1 "
                                                  "FOR UPDATE", identifier))
            tags.update(add)
            for key in remove:
                tags.pop(key, None)
            if len(tags) > limit:
                raise TagLimitExceeded(f"A resource may have at most {limit} tags.")
            await conn.execute("UPDATE shiftguard_rows.clusters SET tags = $2::jsonb WHERE identifier = $1",
                               identifier, json.dumps(tags))

    async def parameter_groups(self) -> list[tuple[str, str, str, dict[str, str]]]:
        """(name, family, description, values set) of every stored group, by name."""
        rows = await self._pool.fetch("SELECT name, family, description, parameters FROM shiftguard_rows.parameter_groups "
                                      "ORDER BY name")
        return [(r["name"], r["family"], r["description"], json.loads(r["parameters"])) for r in rows]

    async def create_parameter_group(self, name: str, family: str, description: str) -> None:
        inserted = await self._pool.fetchval(
            "INSERT INTO shiftguard_rows.parameter_groups (name, family, description) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true", name, family, description)
        if not inserted:
            raise ParameterGroupConflict("group exists", f"Parameter group {name} already exists.")

    async def change_parameter_group(self, name: str, changes: dict[str, str | None] | None) -> None:
        """Set the values of changes (None: back to the default); changes None: reset them all."""
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval("SELECT parameters FROM shiftguard_rows.parameter_groups WHERE name = $1 "
                                         "FOR UPDATE", name)
            if stored is None:
                raise ParameterGroupConflict("no group", f"Parameter group {name} not found.")
            values = {} if changes is None else json.loads(stored)
            for key, value in (changes or {}).items():
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = value
            await conn.execute("UPDATE shiftguard_rows.parameter_groups SET parameters = $2::jsonb WHERE name = $1",
                               name, json.dumps(values))

    async def delete_parameter_group(self, name: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # Locked first: a ModifyCluster attaching it (which holds it FOR SHARE) commits before
            # the clusters are looked at.
            if not await conn.fetchval("SELECT true FROM shiftguard_rows.parameter_groups WHERE name = $1 FOR UPDATE",
                                       name):
                raise ParameterGroupConflict("no group", f"Parameter group {name} not found.")
            user = await conn.fetchval("SELECT identifier FROM shiftguard_rows.clusters WHERE $1 IN (parameter_group, "
                                       "applied_group) LIMIT 1", name)
            if user is not None:
                raise ParameterGroupConflict("group in use", f"Parameter group {name} is in use by cluster {user}; "
                                                             f"associate another with it first (ModifyCluster).")
            await conn.execute("DELETE FROM shiftguard_rows.parameter_groups WHERE name = $1", name)

    async def attach_parameter_group(self, identifier: str, name: str, default: str) -> None:
        """The cluster's parameter group becomes name (in force at the next reboot)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if name != default and not await conn.fetchval(
                    "SELECT true FROM shiftguard_rows.parameter_groups WHERE name = $1 FOR SHARE", name):
                raise ParameterGroupConflict("no group", f"Parameter group {name} not found.")
            await conn.execute("UPDATE shiftguard_rows.clusters SET parameter_group = $2 WHERE identifier = $1",
                               identifier, name)

    async def reboot_cluster(self, identifier: str) -> None:
        """The cluster's parameter group, with its values as they are now, is in force from here."""
        await self._pool.execute(
            "UPDATE shiftguard_rows.clusters c SET applied_group = c.parameter_group, reboots = reboots + 1, "
            "version = version + 1, applied = coalesce((SELECT g.parameters FROM shiftguard_rows.parameter_groups g "
            "WHERE g.name = c.parameter_group), '{}') WHERE identifier = $1", identifier)

    async def set_logging(self, identifier: str, logging: dict | None) -> None:
        await self._pool.execute("UPDATE shiftguard_rows.clusters SET logging = $2::jsonb, version = version + 1 "
                                 "WHERE identifier = $1", identifier, None if logging is None else json.dumps(logging))

    async def record_log_delivery(self, identifier: str, outcome: dict) -> None:
        """Note the last delivery (or failure) in the logging state, for DescribeLoggingStatus."""
        await self._pool.execute("UPDATE shiftguard_rows.clusters SET logging = logging || $2::jsonb "
                                 "WHERE identifier = $1 AND logging IS NOT NULL", identifier, json.dumps(outcome))

    async def set_password(self, name: str, verifiers: dict[str, str]) -> None:
        """A user's new password, as ALTER USER ... PASSWORD stores it (the same procedure)."""
        await self._pool.execute("CALL shiftguard.alter_user($1, $2::jsonb)", name, json.dumps({"password": verifiers}))

    # ---------------------------------------------------------------- audit

    _AUDIT_TABLES = {"connection": "connection_log", "activity": "query_log"}

    # ---------------------------------------------------------------- IAM roles of the cluster

    async def seed_cluster_iam_roles(self, roles: list[str], default: str | None) -> bool:
        """Replace the associated IAM roles by the configuration's when those differ from the
        configuration last applied (a first start, or an edited YAML); True when replaced."""
        applied = json.dumps({"roles": sorted(roles), "default": default})
        async with self._pool.acquire() as conn, conn.transaction():
            last = await conn.fetchval(
                "SELECT value FROM shiftguard_rows.settings WHERE name = 'iam_roles_config' FOR UPDATE")
            if last == applied:
                return False
            await conn.execute("DELETE FROM shiftguard_rows.cluster_iam_roles")
            await conn.executemany("INSERT INTO shiftguard_rows.cluster_iam_roles (role_arn, is_default) VALUES ($1, $2)",
                                   [(arn, arn == default) for arn in dict.fromkeys(roles)])
            await conn.execute("INSERT INTO shiftguard_rows.settings (name, value) VALUES ('iam_roles_config', $1) "
                               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", applied)
        if last is not None:
            log.warning("IAM roles of the cluster replaced from the configuration: cluster.iam_roles changed, and it "
                        "replaces the associations made through the API")
        return True

    async def cluster_iam_roles(self) -> list[tuple[str, bool]]:
        """(role ARN, whether it is the default) of every role associated with the cluster."""
        rows = await self._pool.fetch("SELECT role_arn, is_default FROM shiftguard_rows.cluster_iam_roles ORDER BY role_arn")
        return [(row["role_arn"], row["is_default"]) for row in rows]

    async def modify_cluster_iam_roles(self, add: list[str], remove: list[str], default: str | None) -> None:
        """ModifyClusterIamRoles: associate, dissociate, and make one the default (None: keep)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM shiftguard_rows.cluster_iam_roles WHERE role_arn = ANY($1::text[])", remove)
            await conn.executemany("INSERT INTO shiftguard_rows.cluster_iam_roles (role_arn) VALUES ($1) "
                                   "ON CONFLICT DO NOTHING", [(arn,) for arn in add])
            if default is not None:
                await conn.execute("UPDATE shiftguard_rows.cluster_iam_roles SET is_default = false WHERE is_default")
                await conn.execute("UPDATE shiftguard_rows.cluster_iam_roles SET is_default = true WHERE role_arn = $1",
                                   default)

    async def insert_audit(self, kind: str, records: list[dict]) -> None:
        table = self._AUDIT_TABLES[kind]
        columns = list(records[0])
        quoted = ", ".join(f'"{c}"' for c in columns)
        placeholders = ", ".join(f"${n + 1}" for n in range(len(columns)))
        rows = [[_naive_utc(r[c]) for c in columns] for r in records]
        await self._pool.executemany(f"INSERT INTO shiftguard_rows.{table} ({quoted}) VALUES ({placeholders})", rows)

    async def end_queries(self, ends: list[dict]) -> None:
        """Fill in the end of statements whose rows were stored while they ran."""
        await self._pool.executemany(
            "UPDATE shiftguard_rows.query_log SET endtime = $3, status = $4, error_message = $5 "
            "WHERE session_id = $1 AND seq = $2",
            [(e["session_id"], e["seq"], _naive_utc(e["endtime"]), e["status"], e["error_message"]) for e in ends])

    async def last_userlog_id(self) -> int:
        return await self._pool.fetchval("SELECT coalesce(max(id), 0) FROM shiftguard_rows.user_log")

    async def userlog_since(self, last_id: int) -> tuple[list[dict], int]:
        rows = await self._pool.fetch(
            "SELECT id, userid, username, coalesce(oldusername, '') AS oldusername, action, usecreatedb, usesuper, "
            "usecatupd, CASE WHEN valuntil IS NULL OR valuntil = 'infinity' THEN '9223372036854775807' "
            "ELSE valuntil::text END AS valuntil, pid, xid, recordtime AT TIME ZONE 'UTC' AS recordtime "
            "FROM shiftguard_rows.user_log WHERE id > $1 ORDER BY id", last_id)
        records = [{k: v for k, v in dict(row).items() if k != "id"} for row in rows]
        return records, (rows[-1]["id"] if rows else last_id)

    # ---------------------------------------------------------------- backend passwords

    def ticket_key(self) -> bytes:
        """The key signing the S3 tickets that catalog/s3.sql verifies (the backend secret)."""
        return self._secret

    def backend_password(self, role: str) -> str:
        """Each mapped role's password on the backend: an HMAC of its name under a secret that
        lives in the private schema, so every proxy on the same backend derives the same one."""
        digest = hmac.new(self._secret, b"role:" + role.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sts_secret(self, access_key_id: str) -> tuple[str, str]:
        """An STS session's secret access key and session token, derived like the backend
        passwords so that they are never stored and every proxy on this backend agrees."""
        def derive(label: bytes, length: int) -> str:
            digest = hmac.new(self._secret, label + access_key_id.encode(), hashlib.sha512).digest()
            return base64.b64encode(digest).decode()[:length]
        return derive(b"sts-secret:", 40), derive(b"sts-token:", 64) + derive(b"sts-token2:", 64)

    def backend_verifier(self, role: str) -> str:
        return scram_verifier(self.backend_password(role))


def _naive_utc(value):
    """timestamp columns hold UTC without a zone."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


# The private schema's tables that hold the cluster's state rather than one database's: users,
# groups, roles and what they may do, temporary credentials, security groups, identity providers
# and the audit logs. They live in the cluster database; every other database reaches them
# through foreign tables of the same names (postgres_fdw, docs/architecture.md "Every database
# of the cluster"), so the procedures and views read and write one state wherever they run.
CLUSTER_TABLES = ("users", "groups", "roles", "system_privileges", "iam_tokens", "sts_sessions", "connection_log",
                  "user_log", "query_log", "connectivity", "security_groups", "security_group_ingress",
                  "identity_providers", "assumerole_grants", "masking_versions", "masking_changes", "vacuum_requests",
                  "long_names", "refresh_requests")
# The cluster database's settings that every database's procedures read (copied at each start).
_CLUSTER_SETTINGS = ("backend_secret", "superuser_mapping", "assumerole_seeded", "track_table_writes")
_CLUSTER_SERVER = "shiftguard_cluster"  # the foreign server standing for the cluster database
_PEERS_SERVER = "shiftguard_peers"  # how SHOW reaches the other databases (catalog/show.sql show_remote)
_INSTALLED = ("rls.sql", "privileges.sql", "idp.sql", "masking.sql", "materialized_views.sql", "row_code.sql",
              "users_code.sql", "explain.sql", "show.sql")
# Only where the management role may write pg_catalog: Redshift's functions, and COPY/UNLOAD's
# procedures (they use the server's COPY to and from files).
_SUPERUSER_INSTALLED = ("redshift_functions.sql", "s3.sql")
# The PostGIS the backing PostgreSQL offers (its version; NULL: none), for GEOMETRY and GEOGRAPHY.
_POSTGIS_AVAILABLE = "SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'"
# Where the database's PostGIS is (NULL: none).
_POSTGIS_SCHEMA = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'postgis'"
# Deny by default: of PostGIS's ~750 functions, everyone may execute only Redshift's spatial
# functions that PostGIS has, every overload of each name (docs.aws.amazon.com/redshift/latest/
# dg/geospatial-functions.html; ST_AsHexWKB and the text forms of ST_GeomFromWKB, ST_GeomFromEWKB
# and ST_GeogFromWKB are spatial.sql's, which call PostGIS's of the same names as the caller).
# The rest are for superusers: PostGIS's table management (AddGeometryColumn, Find_SRID,
# Populate_Geometry_Columns, UpdateGeometrySRID: PL/pgSQL that reads and alters tables by
# name), its long transactions (LockRow, CheckAuth, whose SQL names functions without a
# schema), the readers of a table's planner statistics or index by its name, which do not ask
# whether the caller may read the table (ST_EstimatedExtent even runs as PostGIS's owner:
# the extent and histogram of a column's values, rows hidden by row-level security and masked
# values included), PROJ's entry points (below), the versions of the libraries under it, and
# the output formats Redshift lacks.
_SPATIAL_FUNCTIONS = (
    "geometrytype", "st_addpoint", "st_angle", "st_area", "st_asbinary", "st_asewkb", "st_asewkt", "st_asgeojson",
    "st_ashexewkb", "st_astext", "st_azimuth", "st_boundary", "st_buffer", "st_centroid", "st_collect", "st_contains",
    "st_containsproperly", "st_convexhull", "st_coveredby", "st_covers", "st_crosses", "st_dimension", "st_disjoint",
    "st_distance", "st_distancesphere", "st_dwithin", "st_endpoint", "st_envelope", "st_equals", "st_exteriorring",
    "st_force2d", "st_force3d", "st_force3dm", "st_force3dz", "st_force4d", "st_geohash", "st_geogfromtext",
    "st_geogfromwkb", "st_geometryn", "st_geometrytype", "st_geomfromewkb", "st_geomfromewkt", "st_geomfromgeohash",
    "st_geomfromgeojson", "st_geomfromtext", "st_geomfromwkb", "st_interiorringn", "st_intersection", "st_intersects",
    "st_isclosed", "st_iscollection", "st_isempty", "st_ispolygonccw", "st_ispolygoncw", "st_isring", "st_issimple",
    "st_isvalid", "st_length", "st_length2d", "st_linefrommultipoint", "st_lineinterpolatepoint", "st_m",
    "st_makeenvelope", "st_makeline", "st_makepoint", "st_makepolygon", "st_memsize", "st_multi", "st_ndims",
    "st_npoints", "st_nrings", "st_numgeometries", "st_numinteriorrings", "st_numpoints", "st_perimeter",
    "st_perimeter2d", "st_point", "st_pointn", "st_points", "st_polygon", "st_removepoint", "st_reverse",
    "st_setpoint", "st_setsrid", "st_simplify", "st_srid", "st_startpoint", "st_touches", "st_transform", "st_union",
    "st_within", "st_x", "st_xmax", "st_xmin", "st_y", "st_ymax", "st_ymin", "st_z", "st_zmax", "st_zmin",
    # What PostGIS's SQL functions of those names call (as the caller): the casts' functions,
    # the UTM zone ST_Buffer and ST_Intersection of a GEOGRAPHY work in, ST_GeomFromGeoHash's box,
    # ST_IsValid's reason.
    "geography", "geometry", "text", "_st_bestsrid", "st_box2dfromgeohash", "st_isvaliddetail")
# Who may execute what of PostGIS: the functions above, except ST_Transform to a projection given
# as text (Redshift has ST_Transform(geom, srid) only; PROJ reads what the text names: grid files
# at any path the server may read, its database, the network where it is enabled), and the
# functions behind PostGIS's casts and operators (PostgreSQL asks for EXECUTE on them as on any
# call). Type input and output, index support, selectivity estimators and aggregates' state
# functions are called without that question (an aggregate's by its owner's right).
_SPATIAL_WHO_MAY = """
    (p.proname = ANY($1::text[]) AND NOT (p.proname = 'st_transform' AND 'text'::regtype = ANY(p.proargtypes))
     OR EXISTS (SELECT FROM pg_cast c WHERE c.castfunc = p.oid)
     OR EXISTS (SELECT FROM pg_operator o WHERE o.oprcode::oid = p.oid))"""
_POSTGIS_FUNCTIONS = """
    FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
     WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'postgis')"""
_SPATIAL_GRANTED = f"SELECT p.oid::regprocedure::text AS name {_POSTGIS_FUNCTIONS} AND {_SPATIAL_WHO_MAY}"
# Is it so now: everyone may execute exactly those, and may not read PostGIS's catalog views
# ($2: its schema)? One pass over PostGIS's functions, nothing printed.
_SPATIAL_IN_FORCE = f"""
    SELECT NOT has_table_privilege('public', format('%I.geometry_columns', $2::text), 'SELECT')
       AND NOT has_table_privilege('public', format('%I.geography_columns', $2::text), 'SELECT')
       AND NOT EXISTS (SELECT {_POSTGIS_FUNCTIONS}
                          AND has_function_privilege('public', p.oid, 'EXECUTE') <> {_SPATIAL_WHO_MAY})"""


@dataclass(frozen=True, slots=True)
class ClusterLink:
    """How another database's foreign tables reach the cluster database: as the management role."""

    address: BackendAddress
    user: str
    password: str | None
    database: str

    def server_options(self) -> dict[str, str]:
        options = {"dbname": self.database, "port": str(self.address.port),
                   "host": str(self.address.socket_dir or self.address.host),
                   # A connection per transaction that reads the cluster's state, not one held by
                   # every backend session for its lifetime (they count against max_connections).
                   "keep_connections": "off"}
        if self.address.socket_dir is None:
            options["sslmode"] = self.address.sslmode
            if self.address.sslrootcert:
                options["sslrootcert"] = self.address.sslrootcert
        return options

    def mapping_options(self) -> dict[str, str]:
        return {"user": self.user} | ({"password": self.password} if self.password is not None else {})


async def _vacuum(conn: asyncpg.Connection, database: str, relation: int | None,
                  log_in_as: Callable[[str, str], contextlib.AbstractAsyncContextManager[asyncpg.Connection]]) -> bool:
    """One queued VACUUM (relation None: the whole database); whether it ran. A table another
    transaction holds locked is skipped (SKIP_LOCKED), as autovacuum skips it: its owner may
    hold it locked for as long as they like, and every request queued after theirs, anyone's,
    would wait for them. One skipped or failing is logged by the relation's name and the
    error's kind (its message may quote a user's data).

    A VACUUM runs its tables' owners' code (a BRIN index's expression) as them, but session_user
    stays the session's: as the management role, every check of session_user would pass for it
    (another's late-binding view read). So each owner's tables are vacuumed with session_user the
    owner: SET SESSION AUTHORIZATION where the management role is a superuser (a RESET that fails
    raises: the connection goes, not to the next VACUUM as someone else), else in a connection
    logged in as the owner (log_in_as); an owner that cannot log in (a role shiftguard did not
    make) has its tables left unvacuumed rather than vacuumed as the management role."""
    what = "the whole database" if relation is None else f"relation {relation}"  # for the log
    skipped = []  # PostgreSQL's warning for a named table it skipped, before the command's end

    def note(_conn, message) -> None:
        if message.sqlstate == "55P03":  # lock_not_available
            skipped.append(message)

    conn.add_log_listener(note)
    failed = False
    try:
        groups = await conn.fetch(_VACUUMED_BY_OWNER, relation)
        if relation is not None:
            if not groups:
                return False  # dropped since
            what = groups[0]["tables"][0]
        for group in groups:
            statement = f"VACUUM (SKIP_LOCKED) {', '.join(group['tables'])}"
            owner = group["owner"]
            try:
                if owner is None:
                    await conn.execute(statement, timeout=VACUUM_TIMEOUT)
                elif group["superuser"]:
                    await conn.execute(f"SET SESSION AUTHORIZATION {quote_ident(owner)}")
                    try:
                        await conn.execute(statement, timeout=VACUUM_TIMEOUT)
                    finally:
                        await conn.execute("RESET SESSION AUTHORIZATION")
                else:
                    async with log_in_as(database, owner) as theirs:
                        theirs.add_log_listener(note)
                        await theirs.execute(statement, timeout=VACUUM_TIMEOUT)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("VACUUM of %s in database %s failed (%s); the other requests go on", what, database,
                            type(exc).__name__)
                failed = True
    finally:
        conn.remove_log_listener(note)
    if failed:
        return False
    if skipped and relation is not None:  # (the whole database's: as PostgreSQL's, the others vacuumed)
        log.warning("VACUUM of %s in database %s skipped: another transaction holds it locked", what, database)
    return not (skipped and relation is not None)


# AUTO REFRESH views refreshed as the management role (_STALE_VIEWS_OWNERS): a superuser's and
# shiftguard_views', and every one where the management role is no superuser (which cannot SET
# SESSION AUTHORIZATION; nor is AUTO REFRESH, Redshift's SQL, translated there).
_AS_MANAGEMENT_ROLE = "(r.rolsuper OR r.rolname = 'shiftguard_views' OR NOT pg_catalog.current_setting('is_superuser')::bool)"
# The tables a queued VACUUM names ($1; NULL: the whole database's, but others' temporary ones),
# by owner (NULL: vacuumed as the management role: a superuser's tables, shiftguard_views' and
# the management role's own), and whether the management role is a superuser: _vacuum.
# A table is vacuumed by its name, read before: a schema's owner may drop a table there that is
# not theirs and make one of theirs of that name meanwhile (while their own table's VACUUM
# sleeps in its BRIN expression), which the management role then vacuumed, running the schema
# owner's code with session_user the management role. So a trusted role's table in a schema of
# a role that is not is vacuumed as the schema's owner: theirs, if they put one there (as
# themselves); the other one is then skipped (not theirs), and stays unvacuumed. (A schema of
# pg_database_owner, public, is the database owner's: a user's in a database they made.)
_VACUUMED_BY_OWNER = """
SELECT CASE WHEN NOT (r.rolsuper OR r.rolname IN ('shiftguard_views', current_user)) THEN r.rolname
            WHEN NOT (s.rolsuper OR s.rolname IN ('shiftguard_views', current_user)) THEN s.rolname END AS owner,
       pg_catalog.current_setting('is_superuser')::bool AS superuser,
       pg_catalog.array_agg(c.oid::pg_catalog.regclass::pg_catalog.text ORDER BY c.oid) AS tables
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_roles s ON s.oid = CASE WHEN n.nspowner = 'pg_database_owner'::pg_catalog.regrole
       THEN (SELECT d.datdba FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
       ELSE n.nspowner END
 WHERE CASE WHEN $1::pg_catalog.oid IS NULL THEN c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
            ELSE c.oid = $1 END
 GROUP BY 1, 2"""


# How long a pass of refresh_stale_views spends making the triggers asked for in one database
# (each table waits at most 100 ms for its lock: a user's thousands of tables held locked would
# otherwise keep the pass, and every view's refresh after it, waiting).
TRACK_SECONDS = 1.0
# The stale AUTO REFRESH views, each with the role it is refreshed as (quoted; NULL: a
# superuser's or shiftguard_views', refreshed as the management role; so is every view where the
# management role is no superuser, which cannot SET SESSION AUTHORIZATION).
_STALE_VIEWS_OWNERS = f"""
SELECT v.v, CASE WHEN NOT {_AS_MANAGEMENT_ROLE} THEN pg_catalog.quote_ident(r.rolname) END
  FROM shiftguard.stale_autorefresh_views() AS v(v) JOIN pg_catalog.pg_class c ON c.oid = v.v
  JOIN pg_catalog.pg_roles r ON r.oid = c.relowner ORDER BY v.v"""
# How long a pass spends refreshing one database's stale AUTO REFRESH views (each waits at most a
# second for its lock, and its query as long as the command timeout): the rest wait for the next.
REFRESH_SECONDS = 10.0


async def _track_requested(conn: asyncpg.Connection) -> bool:
    """Make the write triggers asked for in conn's database (catalog/materialized_views.sql
    track_requests), each table in a transaction of its own, for TRACK_SECONDS at most. Are some
    left (a table locked, or no time)?"""
    deadline = asyncio.get_running_loop().time() + TRACK_SECONDS
    left = False
    for table in await conn.fetchval("SELECT array(SELECT shiftguard.track_requests_pending())"):
        if asyncio.get_running_loop().time() > deadline:
            return True
        if not await conn.fetchval("SELECT shiftguard.track_requested($1)", table):
            left = True
    return left


async def _make_bootstrap_lock(conn: asyncpg.Connection, superusers_only: bool = False) -> bool:
    """The table _BOOTSTRAP_LOCK locks, and the schemas, made where missing before any proxy can
    hold the lock (another proxy making them at the same moment: looked at again). False, and
    no table made, when superusers_only and a schema there is not a superuser's."""
    attempts = 4  # the schemas' races, the table's, then none
    while True:
        try:
            async with conn.transaction():
                await conn.execute("CREATE SCHEMA IF NOT EXISTS shiftguard")
                await conn.execute("CREATE SCHEMA IF NOT EXISTS shiftguard_rows")
                if superusers_only and not await conn.fetchval(_PRIVATE_SCHEMA_TRUSTED):
                    return False
                if await conn.fetchval("SELECT to_regclass('shiftguard_rows.bootstrap') IS NULL"):
                    await conn.execute("REVOKE ALL ON SCHEMA shiftguard_rows FROM PUBLIC")
                    await conn.execute("CREATE TABLE shiftguard_rows.bootstrap ()")
                    await conn.execute("REVOKE ALL ON shiftguard_rows.bootstrap FROM PUBLIC")
            return True
        except asyncpg.UniqueViolationError:
            attempts -= 1
            if not attempts:
                raise


async def _move_private_tables(conn: asyncpg.Connection) -> None:
    """Shiftguard's tables (and, outside the cluster database, the foreign tables over them) into
    schema shiftguard_rows, where a database installed before 2026-12 had them in schema
    shiftguard. Every user may look into schema shiftguard (its catalog views and procedures), so
    every user could name those tables, and PostgreSQL takes some locks before it checks the
    privilege (see _BOOTSTRAP_LOCK): a CREATE RULE on shiftguard.users queued behind a user's
    open transaction held up every login. Indexes, sequences, triggers and the views over the
    tables go with them; the functions naming them are made again by the install that follows,
    and shiftguard's event triggers, whose functions still name them where they were, are off
    until then (schema.sql ensure_event_trigger makes a disabled one again). In the install's
    transaction, under _BOOTSTRAP_LOCK."""
    moved = await conn.fetch("SELECT c.relname, c.relkind::text FROM pg_class c WHERE c.relnamespace = "
                             "'shiftguard'::regnamespace AND c.relkind IN ('r', 'p', 'f') AND NOT EXISTS (SELECT FROM "
                             "pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
                             "AND to_regclass(format('shiftguard_rows.%I', c.relname)) IS NULL")
    if moved:
        for name in await conn.fetchval(
                "SELECT coalesce(array_agg(e.evtname), '{}') FROM pg_event_trigger e JOIN pg_proc p ON "
                "p.oid = e.evtfoid WHERE p.pronamespace = 'shiftguard'::regnamespace AND e.evtenabled <> 'D'"):
            await conn.execute(f"ALTER EVENT TRIGGER {quote_ident(name)} DISABLE")
    for row in moved:
        kind = "FOREIGN TABLE" if row["relkind"] == "f" else "TABLE"
        await conn.execute(f"ALTER {kind} shiftguard.{quote_ident(row['relname'])} SET SCHEMA shiftguard_rows")
        if row["relkind"] == "f":
            await conn.execute(f"ALTER FOREIGN TABLE shiftguard_rows.{quote_ident(row['relname'])} "
                               "OPTIONS (SET schema_name 'shiftguard_rows')")
    if moved:
        log.warning("database %s: shiftguard's %d tables moved to schema shiftguard_rows",
                    await conn.fetchval("SELECT current_database()"), len(moved))


async def _store_settings(conn: asyncpg.Connection, settings: dict[str, str]) -> None:
    await conn.executemany("INSERT INTO shiftguard_rows.settings VALUES ($1, $2) "
                           "ON CONFLICT (name) DO UPDATE SET value = excluded.value", list(settings.items()))


async def _bootstrap(pool: asyncpg.Pool, settings: dict[str, str]) -> tuple[bytes, bool]:
    """The private schema in the cluster database. Returns the backend secret and whether the
    management role is a superuser (then Redshift's functions are installed too). The catalog's
    SQL runs only when what it is made of differs from what was installed last (a new version
    of shiftguard, another PostGIS); the warnings about what shiftguard refuses, and PostGIS's
    privileges, are seen to at every start."""
    async with pool.acquire() as conn:
        version = await conn.fetchval("SELECT pg_catalog.current_setting('server_version_num')::integer")
        if version < MIN_SERVER_VERSION:
            raise BackendUnavailable(f"the backing PostgreSQL is version {version // 10000}: shiftguard needs 15 or newer "
                                     "(pg_stat_force_next_flush, SQL-standard function bodies)")
        await _make_bootstrap_lock(conn)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_BOOTSTRAP_LOCK)
        await _move_private_tables(conn)
        superuser = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if await _cluster_installed(conn, superuser):
            await _warn_refused(conn)
            if superuser:
                await _spatial_privileges(conn)  # what a superuser granted or upgraded since
            secret = await conn.fetchval("SELECT value FROM shiftguard_rows.settings WHERE name = 'backend_secret'")
            await _store_settings(conn, settings)
            return bytes.fromhex(secret), bool(superuser)
        await conn.execute(_sql("schema.sql"))
        await _store_settings(conn, settings)
        # A private schema made just now is a new cluster: its init_sql is still to run.
        await conn.execute("INSERT INTO shiftguard_rows.settings SELECT 'init_sql', 'pending' "
                           "WHERE NOT EXISTS (SELECT FROM shiftguard_rows.settings WHERE name = 'backend_secret')")
        await conn.execute(
            "INSERT INTO shiftguard_rows.settings VALUES ('backend_secret', $1) ON CONFLICT DO NOTHING",
            secrets.token_hex(32))
        secret = await conn.fetchval("SELECT value FROM shiftguard_rows.settings WHERE name = 'backend_secret'")
        if await _install(conn, superuser):
            await conn.execute("INSERT INTO shiftguard_rows.settings VALUES ('cluster_installed', $1) "
                               "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                               await _cluster_digest(conn, superuser, bytes.fromhex(secret)))
    return bytes.fromhex(secret), bool(superuser)


async def _cluster_digest(conn: asyncpg.Connection, superuser: bool, secret: bytes) -> str:
    """What the cluster database's install is made of: the SQL, this module that runs it,
    whether the management role is a superuser, the PostGIS there is to install and the one
    installed (its schema and version). Keyed with the backend secret, as the other databases'."""
    postgis = await conn.fetchrow(
        f"SELECT ({_POSTGIS_AVAILABLE}) AS available, (SELECT format('%s %s', extnamespace::regnamespace, extversion) "
        "FROM pg_extension WHERE extname = 'postgis') AS installed")
    made_of = json.dumps([[_sql(name) for name in ("schema.sql", *_INSTALLED, *_SUPERUSER_INSTALLED, "spatial.sql",
                                                    "store.py")], bool(superuser), list(postgis.values())])
    return hmac.new(secret, made_of.encode(), hashlib.sha256).hexdigest()


async def _cluster_installed(conn: asyncpg.Connection, superuser: bool) -> bool:
    """Is the cluster database's install what this proxy would install?"""
    if not await conn.fetchval("SELECT to_regclass('shiftguard_rows.settings') IS NOT NULL"):
        return False
    stored = dict(await conn.fetch("SELECT name, value FROM shiftguard_rows.settings "
                                   "WHERE name IN ('backend_secret', 'cluster_installed')"))
    if len(stored) < 2:
        return False
    digest = await _cluster_digest(conn, superuser, bytes.fromhex(stored["backend_secret"]))
    return hmac.compare_digest(digest, stored["cluster_installed"])


async def bootstrap_databases(pool: asyncpg.Pool, link: ClusterLink) -> list[str]:
    """The private schema in every other database that takes connections (template1 included, so
    that CREATE DATABASE copies it), each under its own advisory lock, linked to the cluster
    database's state. Only for a superuser management role (postgres_fdw is not a trusted
    extension). The databases installed or upgraded (not those that were up to date)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_BOOTSTRAP_LOCK)
        await _link_peers(conn, link)
    async with pool.acquire() as conn:
        columns = await conn.fetch(
            "SELECT c.relname AS table, a.attname AS column, format('%I %s%s', a.attname, "
            "       format_type(a.atttypid, a.atttypmod), CASE WHEN pg_get_expr(d.adbin, d.adrelid) NOT LIKE "
            "       'nextval(%' THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) END) AS definition "
            "  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
            " WHERE c.relnamespace = 'shiftguard_rows'::regnamespace AND c.relname = ANY($1::text[]) "
            " ORDER BY c.relname, a.attnum", list(CLUSTER_TABLES))
        settings = await conn.fetch("SELECT name, value FROM shiftguard_rows.settings WHERE name = ANY($1::text[])",
                                    list(_CLUSTER_SETTINGS))
        databases = await conn.fetch("SELECT datname FROM pg_database WHERE datallowconn AND datname <> $1 "
                                     "ORDER BY datname", link.database)
        postgis = await conn.fetchval(_POSTGIS_AVAILABLE)
    settings = [(row["name"], row["value"]) for row in settings]
    # What a database's install is made of (the SQL, this module that runs it, the cluster's
    # columns, the link, the PostGIS there is to install): when it is what was installed there
    # last, the database is left as it is (a start would otherwise redo every database's, and
    # the warnings about it were given then). Keyed with the backend secret: the mapping's
    # password is in it.
    made_of = json.dumps([[_sql(name) for name in ("schema.sql", *_INSTALLED, *_SUPERUSER_INSTALLED, "spatial.sql",
                                                    "store.py")],
                          [list(row.values()) for row in columns], settings, link.server_options(),
                          link.mapping_options(), postgis])
    secret = bytes.fromhex(dict(settings)["backend_secret"])
    digest = hmac.new(secret, made_of.encode(), hashlib.sha256).hexdigest()
    connect = _connect_kwargs(link.address, link.user, link.password)
    done = []
    for row in databases:
        database = row["datname"]
        try:
            conn = await asyncpg.connect(database=database, **connect)
        except BACKEND_FAILURES as exc:  # dropped meanwhile, or closed to new connections
            log.warning("database %s left as it is: %s", database, exc)
            continue
        try:
            if not await _make_bootstrap_lock(conn, superusers_only=True):
                log.error("database %s left as it is: its schema shiftguard was made by a user (drop it, and "
                          "shiftguard installs itself there at the next start)", database)
                continue
            async with conn.transaction():
                await conn.execute(_BOOTSTRAP_LOCK)
                await _move_private_tables(conn)
                if await conn.fetchval("SELECT to_regclass('shiftguard_rows.settings') IS NOT NULL") and \
                        await conn.fetchval("SELECT value FROM shiftguard_rows.settings WHERE name = 'installed'") == digest:
                    await _spatial_privileges(conn)  # what a superuser granted or upgraded since
                    continue
                await _link_cluster(conn, link, columns)
                await _link_peers(conn, link)
                await conn.execute(_sql("schema.sql"))
                await conn.executemany("INSERT INTO shiftguard_rows.settings VALUES ($1, $2) "
                                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                                       [*settings, ("installed", digest)])
                await _install(conn, True)
        except asyncpg.PostgresError as exc:  # its owner's settings, say: the other databases go on
            log.error("database %s left as it is: installing shiftguard there failed: %s", database, exc)
            continue
        finally:
            await conn.close()
        done.append(database)
    return done


async def _link_cluster(conn: asyncpg.Connection, link: ClusterLink, columns: list) -> None:
    """The foreign server, the management role's user mapping and the foreign tables for the
    cluster's state. Kept up to date at each start (the backend's socket and port, the cluster's
    tables' new columns), never dropped: users' views may depend on the catalog views over them.
    Foreign tables take the cluster's column defaults but not its sequences: a row inserted from
    here arrives with a NULL id, which the cluster's table fills in (schema.sql fill_log_id)."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw WITH SCHEMA shiftguard")
    schema = await conn.fetchval("SELECT extnamespace::regnamespace::text FROM pg_extension "
                                 "WHERE extname = 'postgres_fdw'")  # a superuser may have made it elsewhere
    await conn.execute(f"REVOKE ALL ON FUNCTION {schema}.postgres_fdw_get_connections(), "
                       f"{schema}.postgres_fdw_disconnect(text), {schema}.postgres_fdw_disconnect_all() FROM PUBLIC")
    server = await conn.fetchval("SELECT coalesce(srvoptions, '{}') FROM pg_foreign_server WHERE srvname = $1",
                                 _CLUSTER_SERVER)
    if server is None:
        await conn.execute(f"CREATE SERVER {_CLUSTER_SERVER} FOREIGN DATA WRAPPER postgres_fdw")
        server = []
    await _set_options(conn, f"SERVER {_CLUSTER_SERVER}", server, link.server_options())
    mapping = await conn.fetchval("SELECT coalesce(umoptions, '{}') FROM pg_user_mappings "
                                  "WHERE srvname = $1 AND usename = current_user", _CLUSTER_SERVER)
    if mapping is None:
        await conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER {_CLUSTER_SERVER}")
        mapping = []
    await _set_options(conn, f"USER MAPPING FOR CURRENT_USER SERVER {_CLUSTER_SERVER}", mapping,
                       link.mapping_options())
    for table in CLUSTER_TABLES:
        name = f"shiftguard_rows.{quote_ident(table)}"
        kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE oid = to_regclass($1)", name)
        if kind == "r":  # a copy of the cluster database's (a database copied from it): its rows are stale
            log.warning("database %s: %s was a copy; it now reads the cluster database's",
                        await conn.fetchval("SELECT current_database()"), name)
            await conn.execute(f"DROP TABLE {name} CASCADE")
            kind = None
        if kind is None:
            await conn.execute(f"CREATE FOREIGN TABLE {name} () SERVER {_CLUSTER_SERVER} "
                               f"OPTIONS (schema_name 'shiftguard_rows', table_name {sql_literal(table)})")
        have = {r["attname"] for r in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped", name)}
        for column in columns:
            if column["table"] == table and column["column"] not in have:
                await conn.execute(f"ALTER FOREIGN TABLE {name} ADD COLUMN {column['definition']}")


async def _link_peers(conn: asyncpg.Connection, link: ClusterLink) -> None:
    """dblink and the server shiftguard_peers with the management role's user mapping, through
    which SHOW reads another database of the cluster (catalog/show.sql show_remote). No one
    else may execute dblink's functions."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA shiftguard")
    await _revoke_functions(conn, "dblink")
    server = await conn.fetchval("SELECT coalesce(srvoptions, '{}') FROM pg_foreign_server WHERE srvname = $1",
                                 _PEERS_SERVER)
    if server is None:
        await conn.execute(f"CREATE SERVER {_PEERS_SERVER} FOREIGN DATA WRAPPER dblink_fdw")
        server = []
    options = {k: v for k, v in link.server_options().items() if k not in ("dbname", "keep_connections")}
    await _set_options(conn, f"SERVER {_PEERS_SERVER}", server, options)
    mapping = await conn.fetchval("SELECT coalesce(umoptions, '{}') FROM pg_user_mappings "
                                  "WHERE srvname = $1 AND usename = current_user", _PEERS_SERVER)
    if mapping is None:
        await conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER {_PEERS_SERVER}")
        mapping = []
    await _set_options(conn, f"USER MAPPING FOR CURRENT_USER SERVER {_PEERS_SERVER}", mapping, link.mapping_options())


async def _revoke_functions(conn: asyncpg.Connection, extension: str) -> None:
    """No one but superusers may execute the extension's functions."""
    functions = await conn.fetch(
        "SELECT p.oid::regprocedure::text AS name FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid "
        " WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e' "
        "   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = $1)", extension)
    if functions:
        await conn.execute(f"REVOKE ALL ON FUNCTION {', '.join(row['name'] for row in functions)} FROM PUBLIC")


async def _set_options(conn: asyncpg.Connection, what: str, current: list[str], wanted: dict[str, str]) -> None:
    """ALTER what OPTIONS so that its options are exactly wanted."""
    have = dict(option.split("=", 1) for option in current)
    changes = [f"DROP {quote_ident(k)}" for k in have if k not in wanted]
    changes += [f"{'SET' if k in have else 'ADD'} {quote_ident(k)} {sql_literal(v)}"
                for k, v in wanted.items() if have.get(k) != v]
    if changes:
        await conn.execute(f"ALTER {what} OPTIONS ({', '.join(changes)})")


async def _install(conn: asyncpg.Connection, superuser: bool) -> bool:
    """Everything after schema.sql, in the database conn is in: the other catalog files, and with
    a superuser management role Redshift's functions and COPY/UNLOAD's procedures; warnings about
    what shiftguard refuses there. False when PostGIS, which the server has, failed to install
    (the next start tries again)."""
    for extra in _INSTALLED:
        await conn.execute(_sql(extra))
    await _upgrade_rls_policies(conn)
    await _upgrade_masking_functions(conn)
    await _warn_refused(conn)
    if superuser:
        for name in _SUPERUSER_INSTALLED:
            await conn.execute(_sql(name))
        return await _install_postgis(conn, await conn.fetchval("SELECT current_database()"))
    return True


async def _upgrade_rls_policies(conn: asyncpg.Connection) -> None:
    """The RLS policies of the database conn is in whose functions an older version made
    another way (rls.sql rls_stale_policies) made again from their stored predicates, parsed as
    CREATE RLS POLICY parses them; one that cannot be is refused until ALTER RLS POLICY."""
    for row in await conn.fetch("SELECT name, alias, columns, predicate FROM shiftguard.rls_stale_policies()"):
        try:
            predicate = rls.parse_predicate(row["predicate"])
            policy = {"name": row["name"], "alias": row["alias"], "columns": json.loads(row["columns"]),
                      "predicate": row["predicate"], "expression": predicate.expression,
                      "lookups": predicate.lookups, "inline": predicate.inline}
            async with conn.transaction():
                await conn.execute("SELECT shiftguard.rls_redefine($1::jsonb)", json.dumps(policy))
        except (GrammarError, asyncpg.PostgresError) as exc:
            await conn.execute("SELECT shiftguard.rls_lost($1)", row["name"])
            log.warning("database %s: RLS policy %s could not be carried over from an older version (%s): reading "
                        "the tables it is attached to fails until a superuser gives its predicate again with ALTER "
                        "RLS POLICY", await conn.fetchval("SELECT current_database()"), row["name"], exc)


async def _upgrade_masking_functions(conn: asyncpg.Connection) -> None:
    """The masking functions an older version wrote with session_user for the querying user
    (masking.sql mask_stale_functions), their expressions printed again with current_user."""
    for row in await conn.fetch("SELECT function::oid AS oid, body FROM shiftguard.mask_stale_functions()"):
        rewritten = None
        if row["body"].startswith("RETURN "):
            try:
                expression = parse_tree(f"SELECT ({row['body'][len('RETURN '):]}\n)")[0].stmt.targetList[0].val
            except pglast.parser.ParseError:
                pass
            else:
                rls.reader_as_current_user(expression)
                rewritten = printed(expression)
        await conn.execute("SELECT shiftguard.mask_reread($1::oid::regprocedure, $2)", row["oid"], rewritten)


async def _warn_refused(conn: asyncpg.Connection) -> None:
    """Log the objects of the database conn is in that shiftguard refuses now but were made
    before it did (or around it)."""
    database = await conn.fetchval("SELECT current_database()")
    untrusted = await conn.fetch("SELECT shiftguard.untrusted_definitions() AS what LIMIT 21")
    if untrusted:
        log.warning("database %s: objects that only superusers may define, defined by others (shiftguard refuses "
                    "them now; drop them unless you trust their owners): %s%s", database,
                    "; ".join(row["what"] for row in untrusted[:20]), " ..." if len(untrusted) > 20 else "")
    users_code = await conn.fetch("SELECT shiftguard.users_code_made_before() AS what LIMIT 21")
    if users_code:
        log.warning("database %s: code of users' that runs with the rights of whoever uses it (shiftguard refuses "
                    "it now; drop it unless you trust its owners): %s%s", database,
                    "; ".join(row["what"] for row in users_code[:20]), " ..." if len(users_code) > 20 else "")
    row_code = await conn.fetch("SELECT shiftguard.protected_row_code() AS what LIMIT 21")
    if row_code:
        log.warning("database %s: tables with row-level security on or masking attached that have code over their "
                    "rows (shiftguard refuses them now; drop them, or the code sees what RLS and masking hide): %s%s",
                    database, "; ".join(row["what"] for row in row_code[:20]), " ..." if len(row_code) > 20 else "")


async def _install_postgis(conn: asyncpg.Connection, database: str) -> bool:
    """PostGIS in pg_catalog, where the backing PostgreSQL has it, and Redshift's spellings of
    its functions (spatial.sql): GEOMETRY, GEOGRAPHY and the ST_ functions then resolve in
    every session whatever its search_path, as Redshift's built-ins do. Not in public: there
    every user may create functions, which CREATE EXTENSION's script (run as the management
    role, with the extension's schema as its search_path) and PostGIS's SQL functions would
    prefer where they match better; and not in a schema of its own, which a session that sets
    its search_path (or a parameter group's) would lose. In pg_catalog, which only superusers
    write, shiftguard's pinned search_path finds nothing a user made. (Tables there need
    allow_system_table_mods, for PostGIS's spatial_ref_sys: set for this statement only.)
    A PostGIS a superuser installed elsewhere stays where it is, without Redshift's OIDs on
    the wire or these functions (docs/differences-from-redshift.md). False when it failed."""
    if await conn.fetchval(_POSTGIS_AVAILABLE) is None:
        return True
    schema = await conn.fetchval(_POSTGIS_SCHEMA)
    if schema is None:
        try:
            async with conn.transaction():  # a savepoint: a PostGIS that fails to install leaves the rest installed
                await conn.execute("SET LOCAL allow_system_table_mods = on")
                await conn.execute("CREATE EXTENSION postgis SCHEMA pg_catalog")
                await conn.execute("SET LOCAL allow_system_table_mods = off")
        except asyncpg.PostgresError as exc:
            log.error("database %s: installing PostGIS failed, GEOMETRY and GEOGRAPHY are refused there: %s",
                      database, exc)
            return False
        schema = "pg_catalog"
    await _spatial_privileges(conn)
    if schema != "pg_catalog":
        log.warning("database %s: PostGIS is installed in schema %s, not pg_catalog: GEOMETRY and GEOGRAPHY work "
                    "there only where that schema is on the search_path, and Redshift's drivers see PostGIS's type "
                    "OIDs", database, schema)
        return True
    await conn.execute(_sql("spatial.sql"))
    return True


async def _spatial_privileges(conn: asyncpg.Connection) -> None:
    """Everyone may execute what Redshift users need of the database's PostGIS (_SPATIAL_GRANTED),
    and only that; its catalog views geometry_columns and geography_columns, not Redshift's, are
    for superusers (spatial_ref_sys stays readable: ST_Transform reads it as the caller). At
    every start, so that what a superuser granted or a PostGIS upgrade added since is denied."""
    schema = await conn.fetchval(_POSTGIS_SCHEMA)
    if schema is None:
        return
    if await conn.fetchval(_SPATIAL_IN_FORCE, list(_SPATIAL_FUNCTIONS), schema):
        return  # as it was left (most starts: rewriting ~750 functions' privileges costs ~40 ms a database)
    granted = sorted(row["name"] for row in await conn.fetch(_SPATIAL_GRANTED, list(_SPATIAL_FUNCTIONS)))
    await _revoke_functions(conn, "postgis")
    await conn.execute(f"GRANT EXECUTE ON FUNCTION {', '.join(granted)} TO PUBLIC")
    await conn.execute(f"REVOKE ALL ON TABLE {schema}.geometry_columns, {schema}.geography_columns FROM PUBLIC")


def _sql(name: str) -> str:
    return resources.files("proxy.catalog").joinpath(name).read_text()


def _connect_kwargs(address: BackendAddress, user: str, password: str | None) -> dict:
    kwargs = dict(user=user, password=password, timeout=address.connect_timeout, server_settings=TRUSTED_SETTINGS)
    if address.socket_dir is not None:
        return kwargs | dict(host=str(address.socket_dir), port=address.port)
    ssl = {"disable": False, "allow": False, "prefer": "prefer"}.get(address.sslmode, "require")
    return kwargs | dict(host=address.host, port=address.port, ssl=ssl)
