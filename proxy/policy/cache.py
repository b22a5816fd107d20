"""Classification cache: the same SQL text always gets the same plan, so it is parsed once.

Bounded; plans that hold secrets (passwords, fresh salts) are never kept.
"""

from __future__ import annotations

from .statements import PASS, Plan, Translator, classify, may_need_plan


class Classifier:
    def __init__(self, translator: Translator, size: int = 10_000, metrics=None):
        self._translator = translator
        self._metrics = metrics
        self._size = size
        self._plans: dict[tuple[bytes, bool], Plan] = {}
        self._masked_version = translator.masked.version

    def __call__(self, sql: bytes, standard_strings: bool = True) -> Plan:
        if not may_need_plan(sql, self._translator):
            return PASS  # cheaper than a cache lookup, and keeps the cache for parsed SQL
        if self._translator.masked.version != self._masked_version:
            self._plans.clear()  # plans made before the masked tables changed name them directly
            self._masked_version = self._translator.masked.version
        key = (sql, standard_strings)  # the session's standard_conforming_strings reads it
        plan = self._plans.get(key)
        if plan is not None:
            if self._metrics is not None:
                self._metrics.classification.labels(result="cached").inc()
            return plan
        plan = classify(sql, self._translator, standard_strings)
        if self._metrics is not None:
            self._metrics.classification.labels(result="parsed").inc()
        if plan.cacheable:
            if len(self._plans) >= self._size:
                # Drop the oldest entry (dicts keep insertion order).
                del self._plans[next(iter(self._plans))]
            self._plans[key] = plan
        return plan
