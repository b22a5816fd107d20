"""DescribeClusters' pages (MaxRecords, Marker) over the sorted cluster identifiers: a table of
names, page sizes and markers -> the page and the next marker."""

from __future__ import annotations

import pytest

from proxy.iam.api import page_of

NAMES = [f"c-{n:02d}" for n in range(45)]


@pytest.mark.parametrize("names, max_records, marker, page, next_marker", [
    (["a", "b"], 100, None, ["a", "b"], None),
    (NAMES, 20, None, NAMES[:20], "c-20"),
    (NAMES, 20, "c-20", NAMES[20:40], "c-40"),
    (NAMES, 20, "c-40", NAMES[40:], None),
    (NAMES, 45, None, NAMES, None),
    # The marker's cluster deleted meanwhile: the page starts at the next one.
    ([n for n in NAMES if n != "c-20"], 20, "c-20", NAMES[21:41], "c-41"),
    (NAMES, 20, "z", [], None),
])
def test_pages(names, max_records, marker, page, next_marker):
    assert page_of(names, max_records, marker) == (page, next_marker)


def test_paging_visits_every_cluster_once():
    seen, marker = [], None
    while True:
        page, marker = page_of(NAMES, 20, marker)
        seen += page
        if marker is None:
            break
    assert seen == NAMES
