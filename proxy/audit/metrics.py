"""Prometheus metrics (prometheus-client), one registry per proxy, served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
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
