"""pytest plugin (entry point `shiftguard`): a Redshift stand-in for a test session.

Fixtures:
- redshift_stand_in (session): a running proxy.testing.RedshiftStandIn, strict_redshift on;
  its init_sql comes from the ini option `shiftguard_init_sql` (a file of statements).
- redshift (function): a psycopg connection as the admin inside a transaction that is rolled
  back after the test, so what a test writes through it disappears. Users, groups and objects
  made on other connections outlive the test (they are cluster-wide in Redshift too).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .testing import RedshiftStandIn


def pytest_addoption(parser):
    parser.addini("shiftguard_init_sql", "a file of Redshift statements run when the stand-in starts",
                  default="")


@pytest.fixture(scope="session")
def redshift_stand_in(request):
    init_file = request.config.getini("shiftguard_init_sql")
    statements = []
    if init_file:
        path = Path(request.config.rootpath, init_file)
        statements.append(path.read_text())
    with RedshiftStandIn(init_sql=statements) as stand_in:
        yield stand_in


@pytest.fixture
def redshift(redshift_stand_in):
    psycopg = pytest.importorskip("psycopg", reason="the redshift fixture uses psycopg (pip install psycopg)")
    conn = psycopg.connect(redshift_stand_in.dsn)
    try:
        yield conn  # psycopg opens the transaction with the first statement
    finally:
        conn.rollback()
        conn.close()
