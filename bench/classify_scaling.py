#!/usr/bin/env python3
"""How classification's time grows with a statement's size: the hunt for super-linear inputs
(issue 16: one 14 KB query froze the event loop for 9.7 s).

For each family of statements (many constants, many names, many statements, long lists, deep
nesting, ...) and each translator (plain, Redshift dialect, strict_redshift, masked tables),
the statement is built at doubling sizes and classified; the script prints the time per size
and the growth exponent between the two largest sizes (1 is linear, 2 quadratic). A family
whose exponent is over --threshold (1.5 by default) is reported, and the exit status is 1. With --calls the work is counted (function calls) instead of timed:
exact whatever else the machine runs, blind to the work inside one C call.

    python3 bench/classify_scaling.py                 # every family, sizes up to 32,000 items
    python3 bench/classify_scaling.py --calls --max 8000
    python3 bench/classify_scaling.py --max 128000    # longer
    python3 bench/classify_scaling.py --family in_list --translator dialect

Timing is what this script is for; the test suite counts work instead (tests/unit).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.policy import masking  # noqa: E402
from proxy.policy.statements import Translator, classify  # noqa: E402


def _items(n: int, item) -> str:
    return ", ".join(item(i) for i in range(n))


_BS = chr(92)  # a backslash
_BACKSLASH = "'a" + _BS + "b'"

# name -> n -> SQL (n items; a family's size in bytes grows linearly with n)
FAMILIES = {
    "backslash_constants": lambda n: "SELECT " + _items(n, lambda i: _BACKSLASH) + " FROM pg_user",
    "escape_constants": lambda n: "SELECT " + _items(n, lambda i: "E" + _BACKSLASH),
    "non_ascii_constants": lambda n: f"SELECT {_items(n, lambda i: repr('é' + str(i)))}",
    "non_ascii_names": lambda n: "SELECT " + _items(n, lambda i: f'1 AS "né{i}"'),
    "unicode_names": lambda n: "SELECT " + _items(n, lambda i: '1 AS U&"d' + _BS + f'0061t{i}"'),
    "dollar_quotes": lambda n: f"SELECT {_items(n, lambda i: f'$q{i}$ user $q{i}$')}",
    "comments": lambda n: "SELECT 1 " + " ".join(f"/* user {i} /* nested */ */" for i in range(n)),
    "line_comments": lambda n: "SELECT 1\n" + "".join(f"-- user {i}\n" for i in range(n)),
    "in_list": lambda n: f"SELECT * FROM pg_user WHERE usename IN ({_items(n, lambda i: repr(f'u{i}'))})",
    "statements": lambda n: "".join(f"SELECT {i} FROM pg_user;" for i in range(n)),
    "grant_statements": lambda n: "".join(f"GRANT SELECT ON t{i} TO u{i};" for i in range(n)),
    "grant_grantees": lambda n: f"GRANT SELECT ON t TO {_items(n, lambda i: f'u{i}')}",
    "grant_groups": lambda n: f"GRANT SELECT ON t TO {_items(n, lambda i: f'GROUP g{i}')}",
    "grant_tables": lambda n: f"GRANT SELECT ON {_items(n, lambda i: f's.t{i}')} TO GROUP g",
    "revoke_roles": lambda n: f"GRANT ROLE r TO {_items(n, lambda i: f'u{i}')}",
    "default_privileges": lambda n: f"ALTER DEFAULT PRIVILEGES FOR USER {_items(n, lambda i: f'u{i}')} "
                                    "GRANT SELECT ON TABLES TO GROUP g",
    "create_user_groups": lambda n: f"CREATE USER bob PASSWORD 'Abcdefg1' IN GROUP {_items(n, lambda i: f'g{i}')}",
    "alter_group_users": lambda n: f"ALTER GROUP g ADD USER {_items(n, lambda i: f'u{i}')}",
    "drop_users": lambda n: f"DROP USER {_items(n, lambda i: f'u{i}')}",
    "catalog_views": lambda n: " UNION ALL ".join(f"SELECT usename FROM pg_user" for _ in range(n)),
    "catalog_joins": lambda n: "SELECT 1 FROM " + _items(n, lambda i: f"pg_user u{i}"),
    "ctes": lambda n: "WITH " + _items(n, lambda i: f"c{i} AS (SELECT * FROM pg_user)") + " SELECT 1 FROM c0",
    "subselects": lambda n: "SELECT 1 FROM pg_user WHERE " + " AND ".join(
        f"usesysid IN (SELECT usesysid FROM pg_user WHERE usename = 'u{i}')" for i in range(n)),
    "case_whens": lambda n: "SELECT CASE " + " ".join(f"WHEN usename = 'u{i}' THEN {i}" for i in range(n))
                            + " END FROM pg_user",
    "create_table_columns": lambda n: f"CREATE TABLE t ({_items(n, lambda i: f'c{i} int ENCODE zstd')}) "
                                      "DISTKEY(c0) SORTKEY(c1)",
    "create_table_plain": lambda n: f"CREATE TABLE t ({_items(n, lambda i: f'c{i} int')})",
    "dialect_functions": lambda n: f"SELECT {_items(n, lambda i: f'dateadd(day, {i}, sysdate)')}",
    "decode": lambda n: f"SELECT decode(x, {_items(n, lambda i: f'{i}, {i + 1}')}, 0) FROM t",
    "listagg": lambda n: "SELECT " + _items(n, lambda i: "listagg(a, ',') WITHIN GROUP (ORDER BY a)") + " FROM t",
    "explain": lambda n: "EXPLAIN SELECT 1 FROM " + _items(n, lambda i: f"t t{i}"),
    "set_config": lambda n: "SELECT " + _items(n, lambda i: f"set_config('a.b{i}', 'x', false)"),
    "unload": lambda n: "UNLOAD ('SELECT " + _items(n, lambda i: f"c{i}") + " FROM t') TO 's3://b/p' "
                        "IAM_ROLE 'arn:aws:iam::123456789012:role/r'",
    "copy_columns": lambda n: f"COPY t ({_items(n, lambda i: f'c{i}')}) FROM 's3://b/p' "
                              "IAM_ROLE 'arn:aws:iam::123456789012:role/r'",
    "rls_policy": lambda n: "CREATE RLS POLICY p WITH (a int) USING (" + " OR ".join(
        f"a = {i}" for i in range(n)) + ")",
    "masking_policy": lambda n: "CREATE MASKING POLICY p WITH (a int) USING (CASE " + " ".join(
        f"WHEN a = {i} THEN {i}" for i in range(n)) + " END)",
    "masked_reads": lambda n: "SELECT 1 FROM " + _items(n, lambda i: f"secret s{i}"),
    "masked_union": lambda n: " UNION ALL ".join("SELECT a FROM secret" for _ in range(n)),
    "values_rows": lambda n: f"INSERT INTO users VALUES {_items(n, lambda i: f'({i}, {repr(str(i))})')}",
    "long_constant": lambda n: f"SELECT '{'x' * (n * 10)}' FROM pg_user",
    "long_name": lambda n: f'SELECT 1 AS "{"x" * (n * 10)}" FROM pg_user',
    "parens": lambda n: "SELECT " + "(" * min(n, 900) + "1" + ")" * min(n, 900) + " FROM pg_user"
                        + ", 1" * n,
}

# The statement families no translator needs more than these: n items.
SIZES = (1000, 2000, 4000, 8000, 16000, 32000)


def translators() -> dict[str, Translator]:
    masked = Translator(lambda role: "V")
    masked.masked = masking.MaskedTables(1, {("public", "secret"): "secret_masked"})
    return {"plain": Translator(lambda role: "V"), "dialect": Translator(lambda role: "V", dialect=True),
            "strict": Translator(lambda role: "V", strict=True), "masked": masked}


class _Crashes(logging.Handler):
    """Counts the classifier's 'could not classify' reports (a crash, reported as XX000) instead
    of printing their tracebacks."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        kind = type(record.exc_info[1]).__name__ if record.exc_info else record.getMessage()
        self.seen[kind] = self.seen.get(kind, 0) + 1


CRASHES = _Crashes()


def measure(sql: str, translator: Translator, standard_strings: bool, repeat: int = 2) -> float:
    """CPU seconds of the quickest of `repeat` classifications (CPU time: the machine may be
    shared)."""
    data = sql.encode()
    best = math.inf
    for _ in range(repeat):
        started = time.process_time()
        classify(data, translator, standard_strings)
        best = min(best, time.process_time() - started)
    return best


def count_calls(sql: str, translator: Translator, standard_strings: bool) -> float:
    """Python and C function calls one classification makes: a measure of work that does not
    depend on the machine or its load (the work inside one C call, a regex or pglast's
    parser, is not seen)."""
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1
    sys.setprofile(profile)
    try:
        classify(sql.encode(), translator, standard_strings)
    finally:
        sys.setprofile(None)
    return float(calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", action="append", help="only these families (repeatable)")
    parser.add_argument("--translator", action="append", help="only these translators (repeatable)")
    parser.add_argument("--max", type=int, default=32000, help="largest number of items (default 32000)")
    parser.add_argument("--threshold", type=float, default=1.5, help="growth exponent reported (default 1.5)")
    parser.add_argument("--budget", type=float, default=5.0,
                        help="stop growing a family once one classification takes this many seconds")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs per size (default 2)")
    parser.add_argument("--calls", action="store_true",
                        help="count function calls instead of timing (exact, whatever the machine's load)")
    args = parser.parse_args()
    logging.getLogger("proxy").addHandler(CRASHES)
    logging.getLogger("proxy").propagate = False
    sizes = [n for n in SIZES if n <= args.max] or [args.max]
    while sizes[-1] * 2 <= args.max:
        sizes.append(sizes[-1] * 2)
    worst = []
    for tname, translator in translators().items():
        if args.translator and tname not in args.translator:
            continue
        for fname, family in FAMILIES.items():
            if args.family and fname not in args.family:
                continue
            for standard_strings in (True, False):
                times, bytes_ = [], []
                for n in sizes:
                    sql = family(n)
                    CRASHES.seen.clear()
                    if args.calls:
                        seconds = count_calls(sql, translator, standard_strings) / 1e6  # shown as "ms" = kcalls
                    else:
                        seconds = measure(sql, translator, standard_strings, args.repeat)
                    times.append(seconds)
                    bytes_.append(len(sql))
                    if seconds > args.budget:
                        break
                if len(times) >= 2 and times[-2] > (0 if args.calls else 0.002):
                    exponent = math.log(times[-1] / times[-2]) / math.log(bytes_[-1] / bytes_[-2])
                else:
                    exponent = float("nan")
                flag = " <-- super-linear" if exponent > args.threshold else ""
                crashed = f"  (classifier crashed: {CRASHES.seen})" if CRASHES.seen else ""
                unit = "kcalls" if args.calls else "ms"
                print(f"{tname:8} {fname:22} scs={'on ' if standard_strings else 'off'} "
                      + " ".join(f"{b // 1000}K:{t * 1000:.0f}{unit}" for b, t in zip(bytes_, times))
                      + f"  exp={exponent:.2f}{flag}{crashed}", flush=True)
                if flag:
                    worst.append((tname, fname, standard_strings, exponent, bytes_[-1], times[-1]))
    if worst:
        print("\nSuper-linear:")
        for tname, fname, scs, exponent, size, seconds in worst:
            print(f"  {tname} {fname} scs={'on' if scs else 'off'}: exponent {exponent:.2f}, "
                  f"{size} bytes in {seconds:.2f} s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
