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
        self._plans: dict[bytes, Plan] = {}
        self._masked_version = translator.masked.version

    def __call__(self, sql: bytes) -> Plan:
        if not may_need_plan(sql, self._translator):
            return PASS  # cheaper than a cache lookup, and keeps the cache for parsed SQL
        if self._translator.masked.version != self._masked_version:
            self._plans.clear()  # plans made before the masked tables changed name them directly
            self._masked_version = self._translator.masked.version
        plan = self._plans.get(sql)
        if plan is not None:
            if self._metrics is not None:
                self._metrics.classification.labels(result="cached").inc()
            return plan
        plan = classify(sql, self._translator)
        if self._metrics is not None:
            self._metrics.classification.labels(result="parsed").inc()
        if plan.cacheable:
            if len(self._plans) >= self._size:
                # Drop the oldest entry (dicts keep insertion order).
                del self._plans[next(iter(self._plans))]
            self._plans[sql] = plan
        return plan
