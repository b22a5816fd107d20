"""Where result columns come from, for Redshift's extended result metadata (server protocol 1
and 2: relay.py adds each column's schema, table, column and catalog name to RowDescription):
read from pg_catalog by the management role, kept per database until DDL that the proxy
relays may have changed them. Owns the cache and its one query; decides nothing.

What is read is only ever the (table OID, column number) pairs of a RowDescription that the
user's own backend session sent, that is of columns of a query the user ran: their names are
the user's already (PostgreSQL checked the SELECT). No client-chosen OID is looked up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from ..policy.statements import CATALOG_VIEWS, DIALECT_CATALOGS, PRIVATE_SCHEMA
from ..protocol.result_metadata import EXPRESSION, Source
from .store import UntrustedDatabase

# (table OID, column number) of a RowDescription field; (0, 0) for an expression's (and a column
# number 0, a whole row's, names no column either).
Key = tuple[int, int]

# Entries kept per database, at most; past it the database's are dropped and read again.
MAX_SOURCES = 50_000

# Redshift's catalog views are in pg_catalog; shiftguard's stand-ins for them live in its private
# schema, and are named as Redshift's.
_CATALOG_NAMES = frozenset((*CATALOG_VIEWS, *DIALECT_CATALOGS))


def source(schema: str, table: str, column: str, not_null: bool, identity: bool) -> Source:
    """A looked-up column as shown: one of the private schema's catalog views as pg_catalog's;
    another of its relations (none a user's query reads, but for a view of a user's over one)
    as an expression, naming nothing of the private schema."""
    if schema == PRIVATE_SCHEMA:
        if table not in _CATALOG_NAMES:
            return EXPRESSION
        schema = "pg_catalog"
    return Source(schema, table, column, not_null, identity)


class ColumnSources:
    """The sources of every database's result columns that a session needed, shared by all of
    them: a RowDescription whose columns are all known costs no round trip."""

    def __init__(self, read: Callable[[str, list[Key]], Awaitable[dict[Key, tuple]]]):
        self._read = read  # (database, keys) -> of those found, (schema, table, column, not null, identity)
        self._known: dict[str, dict[Key, Source]] = {}
        self._forgotten: dict[str, int] = {}  # how many times each database's were forgotten
        # Databases without a private schema that shiftguard made, where the management role
        # runs nothing (store.UntrustedDatabase): their columns go unnamed, as expressions'.
        self._unreadable: set[str] = set()

    def known(self, database: str, keys: Iterable[Key]) -> dict[Key, Source] | None:
        """The sources of keys if every one is known (an expression's always is), else None."""
        if database in self._unreadable:
            return dict.fromkeys(keys, EXPRESSION)
        known = self._known.get(database, {})
        found = {}
        for key in keys:
            if not all(key):
                found[key] = EXPRESSION
            elif (hit := known.get(key)) is not None:
                found[key] = hit
            else:
                return None
        return found

    async def lookup(self, database: str, keys: Iterable[Key]) -> dict[Key, Source]:
        """The sources of keys, those not known read (one query); a key whose relation or column
        is gone by then is an expression's, and not kept."""
        keys = set(keys)
        known = self._known.setdefault(database, {})
        missing = [key for key in keys if all(key) and key not in known]
        if missing:
            try:
                read = await self._read(database, missing)
            except UntrustedDatabase:
                self._unreadable.add(database)
                return dict.fromkeys(keys, EXPRESSION)
            if len(known) + len(read) > MAX_SOURCES:
                known.clear()
            known.update((key, source(*row)) for key, row in read.items())
        return {key: known.get(key, EXPRESSION) for key in keys}

    def forget(self, database: str) -> None:
        """DDL was sent there (or its transaction ended): names, NOT NULL or identity may have
        changed, a relation gone and its OID taken again."""
        self._known.pop(database, None)
        self._forgotten[database] = self._forgotten.get(database, 0) + 1

    def version(self, database: str) -> int:
        """Changes when the database's sources are forgotten: what was made of them is stale."""
        return self._forgotten.get(database, 0)


class DatabaseSources:
    """A session's view of ColumnSources: its database's (relay.ResultSources)."""

    def __init__(self, sources: ColumnSources, database: str):
        self._sources = sources
        self.database = database

    @property
    def version(self) -> int:
        return self._sources.version(self.database)

    def known(self, keys: list[Key]) -> dict[Key, Source] | None:
        return self._sources.known(self.database, keys)

    async def lookup(self, keys: list[Key]) -> dict[Key, Source]:
        return await self._sources.lookup(self.database, keys)
