"""The map back from short names to the long names users wrote (policy/identifiers.py,
catalog/schema.sql long_names): the proxy records each long name a statement holds before the
statement runs, once per proxy. Owns the set of names known to be recorded; decides nothing
(what a row may say is fixed by schema.sql short_name, whoever asks to record it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

# Names remembered as recorded, at most; past it they are forgotten and recorded again (a no-op).
MAX_KNOWN = 100_000


class LongNames:
    def __init__(self, record: Callable[[list[str]], Awaitable[None]]):
        self._record = record
        self._known: set[str] = set()

    def remember(self, names: frozenset[str]) -> Awaitable[None] | None:
        """What to await before a statement naming names runs; None when all are recorded."""
        new = names - self._known
        return self._recorded(sorted(new)) if new else None

    async def _recorded(self, names: list[str]) -> None:
        await self._record(names)
        if len(self._known) + len(names) > MAX_KNOWN:
            self._known.clear()
        self._known.update(names)
