"""Prometheus metrics (prometheus-client), one registry per proxy process, served at /metrics;
with workers, the parent serves every process's, each sample labelled with its process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


class Metrics:
    def __init__(self) -> None:
        # With workers (proxy/workers.py, set in the parent): each worker's exposition by index.
        self.gather: Callable[[], Awaitable[dict[int, str]]] | None = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("shiftguard_connections", "Client connections by state", ["state"], registry=r)
        self.authentications = Counter("shiftguard_authentications_total", "Logins by method and outcome",
                                       ["method", "outcome"], registry=r)
        self.refusals = Counter("shiftguard_refusals_total", "Connections refused before login, by reason",
                                ["reason"], registry=r)
        self.statements = Counter("shiftguard_statements_total", "Query and Parse messages relayed", registry=r)
        self.denials = Counter("shiftguard_denials_total", "Statements the proxy refused, by SQLSTATE",
                               ["sqlstate"], registry=r)
        self.bytes = Counter("shiftguard_bytes_total", "Bytes relayed, by direction", ["direction"], registry=r)
        self.backend_connect = Histogram("shiftguard_backend_connect_seconds", "Time to open a backend session",
                                         registry=r)
        self.backend_kept = Gauge("shiftguard_backend_sessions_kept",
                                  "Idle backend sessions kept for their role's next client", registry=r)
        self.backend_reused = Counter("shiftguard_backend_sessions_reused_total",
                                      "Client sessions given a kept backend session", registry=r)
        self.transaction_pool = Gauge("shiftguard_transaction_pool_sessions",
                                      "Transaction pooling: backend sessions open, and idle among them",
                                      ["state"], registry=r)
        self.transaction_pool_waiting = Gauge("shiftguard_transaction_pool_waiting_clients",
                                              "Transaction pooling: clients waiting for a backend session",
                                              registry=r)
        self.query_wait_timeouts = Counter("shiftguard_query_wait_timeouts_total",
                                           "Clients refused after limits.query_wait_timeout", registry=r)
        self.backend_restarts = Counter("shiftguard_backend_restarts_total",
                                        "Times the embedded PostgreSQL was started again after it died", registry=r)
        self.backend_up = Gauge("shiftguard_backend_up", "1 while the backing PostgreSQL runs (as far as the proxy "
                                "knows: the embedded server's process is up)", registry=r)
        self.classification = Counter("shiftguard_classification_total", "Statement classifications",
                                      ["result"], registry=r)
        self.classification_cache_bytes = Gauge("shiftguard_classification_cache_bytes",
                                                "Bytes the classification cache holds (SQL and plans)",
                                                registry=r)
        self.audit_written = Counter("shiftguard_audit_records_written_total", "Audit records written",
                                     ["log"], registry=r)
        self.audit_dropped = Counter("shiftguard_audit_records_dropped_total",
                                     "Audit records that could not be written", registry=r)
        self.audit_rejected = Counter("shiftguard_audit_records_rejected_total",
                                      "Audit records the backing database refused on their own (after their "
                                      "batch failed and was stored record by record); also counted as dropped",
                                      registry=r)

    async def exposition(self) -> bytes:
        """What /metrics shows: this process's metrics, or with workers every process's, one
        family per name, each sample labelled worker="parent" or worker="N"."""
        if self.gather is None:
            return generate_latest(self.registry)
        sources = [("parent", self.registry.collect())]
        sources += [(str(index), text_string_to_metric_families(text)) for index, text in (await self.gather()).items()]
        merged: dict[str, Metric] = {}
        for worker, families in sources:
            for family in families:
                # A counter's _created series (when it was made) tells nothing summed over
                # processes, and the text format reads it back as a family of its own: left out.
                if family.name.endswith("_created"):
                    continue
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                             family.unit))
                into.samples += [sample._replace(labels={**sample.labels, "worker": worker})
                                 for sample in family.samples if not sample.name.endswith("_created")]
        registry = CollectorRegistry()
        registry.register(_Families(list(merged.values())))
        return generate_latest(registry)


class _Families:
    """A collector of families already made (Metrics.exposition's merged ones)."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families
