#!/usr/bin/env python3
"""The cost of row-level security and masking: the same queries, as the same ordinary user,
through the same shiftguard, on a table with an RLS policy (or a masking policy) and on a plain
table holding only the rows the policy lets that user see (so both return the same rows).

Starts a RedshiftStandIn (embedded PostgreSQL), loads both tables, runs each workload on each
table in alternation, and prints median seconds and the ratio rls/plain. Workloads:
  point    SELECT by primary key, prepared, one row (the policy's per-row function call)
  scan     SELECT count(*) over the table (the policy evaluated for every row)
  lookup   as scan, with a policy reading a lookup table keyed by current_user
  lookup role  the same, the policy attached to a role the user holds rather than to PUBLIC
  masked   point and scan on a table whose amount column is masked for the user (masking view)

    python3 bench/rls.py [--rows 100000] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proxy.testing import RedshiftStandIn  # noqa: E402

USER, PASSWORD = "reader", "Reader123"


def setup(admin: psycopg.Connection, rows: int) -> None:
    statements = [
        f"CREATE USER {USER} PASSWORD '{PASSWORD}'",
        "CREATE TABLE facts (id int PRIMARY KEY, region varchar(10), amount int)",
        f"INSERT INTO facts SELECT g, CASE WHEN g % 2 = 0 THEN 'east' ELSE 'west' END, g % 100 "
        f"FROM generate_series(1, {rows}) g",
        "CREATE TABLE facts_plain AS SELECT * FROM facts WHERE region = 'east'",
        "ALTER TABLE facts_plain ADD PRIMARY KEY (id)",
        "CREATE TABLE facts_lookup AS SELECT * FROM facts",
        "ALTER TABLE facts_lookup ADD PRIMARY KEY (id)",
        "CREATE TABLE entitlements (username varchar(64), region varchar(10))",
        f"INSERT INTO entitlements VALUES ('{USER}', 'east')",
        f"GRANT SELECT ON facts, facts_plain, facts_lookup TO {USER}",
        "CREATE RLS POLICY east WITH (region varchar(10)) USING (region = 'east')",
        "ATTACH RLS POLICY east ON facts TO PUBLIC",
        "ALTER TABLE facts ROW LEVEL SECURITY ON",
        "CREATE RLS POLICY entitled WITH (region varchar(10)) USING (region IN "
        "(SELECT e.region FROM entitlements e WHERE e.username = current_user))",
        "ATTACH RLS POLICY entitled ON facts_lookup TO PUBLIC",
        "ALTER TABLE facts_lookup ROW LEVEL SECURITY ON",
        "CREATE TABLE facts_lookup_role AS SELECT * FROM facts",
        "ALTER TABLE facts_lookup_role ADD PRIMARY KEY (id)",
        f"GRANT SELECT ON facts_lookup_role TO {USER}",
        "CREATE ROLE readers",
        f"GRANT ROLE readers TO {USER}",
        "ATTACH RLS POLICY entitled ON facts_lookup_role TO ROLE readers",
        "ALTER TABLE facts_lookup_role ROW LEVEL SECURITY ON",
        "CREATE TABLE facts_masked AS SELECT * FROM facts_plain",
        "ALTER TABLE facts_masked ADD PRIMARY KEY (id)",
        f"GRANT SELECT ON facts_masked TO {USER}",
        "CREATE MASKING POLICY hide_amount WITH (amount int) USING (amount / 10 * 10)",
        f"ATTACH MASKING POLICY hide_amount ON facts_masked(amount) TO {USER}",
        "ANALYZE facts", "ANALYZE facts_plain", "ANALYZE facts_lookup", "ANALYZE facts_lookup_role",
        "ANALYZE facts_masked",
    ]
    for statement in statements:
        admin.execute(statement)


def point(conn: psycopg.Connection, table: str, n: int = 2000) -> float:
    started = time.perf_counter()
    for i in range(n):
        conn.execute(f"SELECT amount FROM {table} WHERE id = %s", (2 * (i % 1000) + 2,), prepare=True).fetchone()
    return time.perf_counter() - started


def scan(conn: psycopg.Connection, table: str, n: int = 10) -> float:
    started = time.perf_counter()
    for _ in range(n):
        conn.execute(f"SELECT count(*), sum(amount) FROM {table}").fetchone()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with RedshiftStandIn(strict_redshift=False) as redshift:
        with psycopg.connect(redshift.dsn, autocommit=True) as admin:
            setup(admin, args.rows)
        with psycopg.connect(redshift.dsn_for(USER, PASSWORD), autocommit=True) as conn:
            expected = conn.execute("SELECT count(*) FROM facts_plain").fetchone()
            assert conn.execute("SELECT count(*) FROM facts").fetchone() == expected
            assert conn.execute("SELECT count(*) FROM facts_lookup").fetchone() == expected
            assert conn.execute("SELECT count(*) FROM facts_lookup_role").fetchone() == expected
            deadline = time.monotonic() + 5  # the proxy reads the masked tables within ~0.2 s
            while time.monotonic() < deadline:
                try:
                    conn.execute("SELECT count(*) FROM facts_masked")
                    break
                except psycopg.errors.InsufficientPrivilege:
                    time.sleep(0.1)
            workloads = [("point", point, "facts"), ("scan", scan, "facts"), ("lookup", scan, "facts_lookup"),
                         ("lookup role", scan, "facts_lookup_role"),
                         ("masked point", point, "facts_masked"), ("masked scan", scan, "facts_masked")]
            times: dict[tuple[str, str], list[float]] = {}
            for rep in range(args.reps + 1):  # the first repetition warms up and is not counted
                for name, run, table in workloads:
                    pair = [(table, "rls"), ("facts_plain", "plain")]
                    for target, kind in (pair if rep % 2 else pair[::-1]):
                        seconds = run(conn, target)
                        if rep:
                            times.setdefault((name, kind), []).append(seconds)
    print(f"rows {args.rows}, {args.reps} reps, medians; point = 2000 prepared lookups, scan/lookup = 10 scans")
    print(f"{'workload':14} {'plain s':>10} {'policy s':>10} {'ratio':>8}")
    for name, _, _ in workloads:
        plain = statistics.median(times[(name, "plain")])
        rls = statistics.median(times[(name, "rls")])
        print(f"{name:14} {plain:10.3f} {rls:10.3f} {rls / plain:8.2f}")


if __name__ == "__main__":
    main()
