"""Classification is linear in a statement's size, family by family (issue 16: a quadratic
reading froze every session for seconds). Work is counted, never timed: the function calls one
classification makes (bench/classify_scaling.py, which also times larger sizes), at n and 2n
items of each family of statements; linear work doubles, give or take the fixed part."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "classify_scaling", Path(__file__).resolve().parents[2] / "bench" / "classify_scaling.py")
scaling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scaling)

TRANSLATORS = scaling.translators()
N = 60


@pytest.mark.parametrize("family", sorted(scaling.FAMILIES))
@pytest.mark.parametrize("translator", ["plain", "dialect", "masked"])
def test_classification_work_grows_linearly(family, translator, caplog):
    caplog.set_level(logging.CRITICAL, logger="proxy")  # crashes are another test's business
    make = scaling.FAMILIES[family]
    small, large = make(N), make(2 * N)
    work = [scaling.count_calls(sql, TRANSLATORS[translator], standard)
            for sql in (small, large) for standard in (True, False)]
    growth = max(work[2] / max(work[0], 1), work[3] / max(work[1], 1))
    size = len(large) / len(small)
    assert growth <= 1.25 * size, f"{family}: {work[0]:.0f} -> {work[2]:.0f} calls for {size:.2f}x the text"
