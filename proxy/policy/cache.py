"""Classification cache: the same SQL text always gets the same plan, so it is parsed once; and the
size limits that bound the work one statement can make on the event loop.

Bounded in entries and in bytes (the SQL and the plan's text); a statement whose entry would
take more than a sixteenth of the byte budget is never kept, and neither are plans that hold
secrets (passwords, fresh salts).

Classification runs on the event loop and is linear in the statement, but not cheap: up to
tens of function calls a byte where statements are rewritten through pglast's parse tree (the
catalog views, RLS and masking policies, GRANT; see bench/classify_scaling.py), a few where
they are only read. So, with SQLSTATE 54000: any SQL above limits.max_statement_size
(Redshift's 16 MB); SQL the proxy must read (statements.may_need_plan) above
limits.max_checked_statement_size, before it is read (SQL that only Redshift's names or
strict_redshift would have the proxy read, statements.may_need_reading, is sent as written
instead: a bulk INSERT of 32,767 parameters runs, as on Redshift); and a message
whose statements would take more than limits.max_rewritten_statement_size characters of parse
trees (tokens.tree_budget), as a whole, once that is spent (nothing of it is sent: a statement
left as written after it could hold a password PostgreSQL would log with the error).
"""

from __future__ import annotations

from ..protocol import sqlstate
from .identifiers import IdentifierCase
from .masking import MaskedTables
from .statements import PASS, Action, Denial, Plan, Translator, classify, may_need_plan, may_need_reading
from .tokens import tree_budget

# What a cache entry costs beyond its texts (dict slot, key tuple, plan objects), roughly.
_ENTRY_OVERHEAD = 400


class Classifier:
    def __init__(self, translator: Translator, size: int = 10_000, metrics=None, *, max_bytes: int = 64 << 20,
                 max_statement_size: int = 16 << 20, max_checked_size: int = 256 << 10,
                 max_rewritten_size: int = 128 << 10):
        self._translator = translator
        self._metrics = metrics
        self._size = size
        self.max_bytes = max_bytes                    # limits.classification_cache_bytes
        self.max_statement_size = max_statement_size  # limits.max_statement_size
        self.max_checked_size = max_checked_size      # limits.max_checked_statement_size
        self.max_rewritten_size = max_rewritten_size  # limits.max_rewritten_statement_size
        # -> (plan, its cost in bytes), by SQL, standard_conforming_strings, database and
        # enable_case_sensitive_identifier
        self._plans: dict[tuple[bytes, bool, str | None, IdentifierCase], tuple[Plan, int]] = {}
        self.bytes = 0  # what the kept entries cost, by entry_cost
        self._masked_version = translator.masked.version
        # Each database's translator: the same but for its masked tables and tables with RLS on.
        self._databases: dict[str, Translator] = {}

    def set_masked(self, database: str, masked: MaskedTables | None) -> None:
        """database's masked tables and tables with RLS on from now on (None: not known, as
        after DROP DATABASE); its plans made before name them directly, and go."""
        if masked is None:
            self._databases.pop(database, None)
        else:
            self._databases[database] = self._translator.in_database(masked)
        for key in [key for key in self._plans if key[2] == database]:
            self.bytes -= self._plans.pop(key)[1]

    @property
    def databases(self) -> list[str]:
        """The databases whose masked tables are known."""
        return list(self._databases)

    def masked(self, database: str) -> MaskedTables | None:
        translator = self._databases.get(database)
        return translator.masked if translator is not None else None

    def __call__(self, sql: bytes, standard_strings: bool = True, user: str | None = None,
                 database: str | None = None, identifier_case: IdentifierCase = IdentifierCase()) -> Plan:
        """The plan for sql in a session of `user` (only plans that are never kept depend on it).
        database: the session's; one whose masked tables are not known is classified as
        having none (a statement reading a masked table directly then fails in PostgreSQL,
        which took the column privileges away: closed, not leaking)."""
        if len(sql) > self.max_statement_size:
            # Redshift's own limit, and its wording.
            return _refused(f"Statement is too large. Statement Size: {len(sql)} bytes. "
                            f"Maximum Allowed: {self.max_statement_size} bytes")
        translator = self._databases.get(database, self._translator).with_identifier_case(identifier_case)
        if not may_need_plan(sql, translator) and (len(sql) > self.max_checked_size
                                                   or not may_need_reading(sql, translator)):
            return PASS  # cheaper than a cache lookup, and keeps the cache for parsed SQL
        if self._translator.masked.version != self._masked_version:
            self._plans.clear()  # plans made before the masked tables changed name them directly
            self.bytes = 0
            self._masked_version = self._translator.masked.version
        # the session's standard_conforming_strings reads it, its enable_case_sensitive_identifier folds it
        key = (sql, standard_strings, database, identifier_case)
        kept = self._plans.get(key)
        if kept is not None:
            if self._metrics is not None:
                self._metrics.classification.labels(result="cached").inc()
            return kept[0]
        if len(sql) > self.max_checked_size:
            if self._metrics is not None:
                self._metrics.classification.labels(result="too large").inc()
            return _refused(f"statement too large for shiftguard to check: {len(sql)} bytes "
                            f"(at most {self.max_checked_size})",
                            hint="shiftguard reads statements like this one before they run; split it into "
                                 "smaller statements, or raise limits.max_checked_statement_size.")
        with tree_budget(self.max_rewritten_size) as budget:
            plan = classify(sql, translator, standard_strings, user)
        if budget[0] < 0:  # some statement was refused for it: the whole message is
            if self._metrics is not None:
                self._metrics.classification.labels(result="too large").inc()
            return _refused("statement too large for shiftguard to rewrite",
                            hint="shiftguard rewrites statements like this one before they run; send fewer or "
                                 "smaller ones at a time, or raise limits.max_rewritten_statement_size.")
        if self._metrics is not None:
            self._metrics.classification.labels(result="parsed").inc()
        if plan.cacheable:
            self._keep(key, plan)
        return plan

    def _keep(self, key: tuple[bytes, bool, str | None], plan: Plan) -> None:
        cost = entry_cost(key[0], plan)
        if cost > self.max_bytes // 16:
            return  # a huge statement would push out many others, for a rare second use
        while self._plans and (len(self._plans) >= self._size or self.bytes + cost > self.max_bytes):
            # Drop the oldest entry (dicts keep insertion order).
            oldest = next(iter(self._plans))
            self.bytes -= self._plans.pop(oldest)[1]
        self._plans[key] = (plan, cost)
        self.bytes += cost


def entry_cost(sql: bytes, plan: Plan) -> int:
    """Bytes a cache entry takes, near enough: the SQL, the plan's texts, a fixed overhead."""
    texts = len(plan.text or "") + sum(len(action.sql or "") for action in plan.actions)
    return len(sql) + texts + _ENTRY_OVERHEAD * (1 + len(plan.actions))


def _refused(message: str, hint: str | None = None) -> Plan:
    """The whole message refused with 54000 (program_limit_exceeded); none of it is sent."""
    return Plan((Action(0, 0, 0, denial=Denial(sqlstate.PROGRAM_LIMIT_EXCEEDED, message, hint=hint)),),
                cacheable=False, text="")
