"""pytest plugin (entry point `shiftguard`): a Redshift stand-in for a test session.

Fixtures:
- redshift_stand_in (session): a running proxy.testing.RedshiftStandIn, strict_redshift on;
  its init_sql comes from the ini option `shiftguard_init_sql` (a file of statements).
- redshift (function): a psycopg connection as the admin inside a transaction that is rolled
  back after the test, so what a test writes through it disappears. Users, groups and objects
  made on other connections outlive the test (they are cluster-wide in Redshift too).
- saml_login, oidc_token: the stand-in's local IdP (ini `shiftguard_local_idp = true`):
  saml_login("alice@example.com", db_user="alice") is a signed base64 SAMLResponse for STS
  AssumeRoleWithSAML, oidc_token("ci") an ID token for AssumeRoleWithWebIdentity.

Ini option `shiftguard_config`: a shiftguard YAML configuration the stand-in starts from (its
`iam` roles and providers, say); its listen addresses and data_dir are the stand-in's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .testing import RedshiftStandIn


def pytest_addoption(parser):
    parser.addini("shiftguard_init_sql", "a file of Redshift statements run when the stand-in starts",
                  default="")
    parser.addini("shiftguard_config", "a shiftguard YAML configuration the stand-in starts from", default="")
    parser.addini("shiftguard_local_idp", "turn on the stand-in's local IdP (saml_login, oidc_token)",
                  type="bool", default=False)


@pytest.fixture(scope="session")
def redshift_stand_in(request):
    init_file = request.config.getini("shiftguard_init_sql")
    statements = []
    if init_file:
        path = Path(request.config.rootpath, init_file)
        statements.append(path.read_text())
    config_file = request.config.getini("shiftguard_config")
    with RedshiftStandIn(init_sql=statements, local_idp=request.config.getini("shiftguard_local_idp"),
                         config_file=Path(request.config.rootpath, config_file) if config_file else None) as stand_in:
        yield stand_in


@pytest.fixture
def saml_login(redshift_stand_in):
    return redshift_stand_in.saml_login


@pytest.fixture
def oidc_token(redshift_stand_in):
    return redshift_stand_in.oidc_token


@pytest.fixture
def redshift(redshift_stand_in):
    psycopg = pytest.importorskip("psycopg", reason="the redshift fixture uses psycopg (pip install psycopg)")
    conn = psycopg.connect(redshift_stand_in.dsn)
    try:
        yield conn  # psycopg opens the transaction with the first statement
    finally:
        conn.rollback()
        conn.close()
