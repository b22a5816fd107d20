#!/usr/bin/env python3
"""The suite's two fuzz tests in their long, random mode (the suite runs a bounded, derandomised
count of each; see the test modules):

    python bench/fuzz.py classifier [--examples 200000]   # tests/unit/test_classifier_fuzz.py
    python bench/fuzz.py relay [--streams 20000]          # tests/integration/test_relay_differential.py

classifier: generated and mutated statements must get a plan or a refusal with a real SQLSTATE,
never an internal error. relay: the same generated message streams straight to PostgreSQL and
through the proxy must get the same replies (the relay test starts the suite's own PostgreSQL,
on a Unix socket, and a proxy on 127.0.0.1). Each new example is random (hypothesis; a failure
is shrunk to a short one and printed). Needs the test extras (pip install -e '.[test]').
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = {
    "classifier": ("tests/unit/test_classifier_fuzz.py::test_classification_never_fails_inside_the_proxy",
                   "SHIFTGUARD_FUZZ_EXAMPLES", 200_000),
    "relay": ("tests/integration/test_relay_differential.py", "SHIFTGUARD_FUZZ_STREAMS", 20_000),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=sorted(TESTS))
    parser.add_argument("--examples", "--streams", type=int, dest="count",
                        help="how many examples (statements, or message streams) to try")
    args = parser.parse_args()
    test, variable, default = TESTS[args.target]
    env = {**os.environ, variable: str(args.count or default), "SHIFTGUARD_FUZZ_RANDOM": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test]
    print(f"{' '.join(command)}  ({variable}={env[variable]})", flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
