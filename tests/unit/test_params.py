"""Which startup parameters reach PostgreSQL."""

from __future__ import annotations

import pytest

from proxy.frontend.connection import client_parameters
from proxy.frontend.params import StartupRefused, sort_startup_params, split_options


def test_redshift_driver_keys_are_kept_but_not_forwarded():
    params = sort_startup_params({
        "user": "bob", "database": "dev", "application_name": "app", "client_protocol_version": "2",
        "driver_version": "2.2.0", "os_version": "Linux", "driver_discovery_version": "1",
        "plugin_name": "x", "idp_type": "AzureAD", "provider_name": "p", "DateStyle": "ISO",
        "_pq_.compression": "on"})
    assert params.forwarded == {"application_name": "app", "DateStyle": "ISO"}
    assert params.redshift["driver_version"] == "2.2.0"
    assert params.protocol_options == ["_pq_.compression"]
    assert (params.user, params.database) == ("bob", "dev")


def test_database_defaults_to_user():
    assert sort_startup_params({"user": "bob"}).database == "bob"


@pytest.mark.parametrize("params, fragment", [
    ({}, "no PostgreSQL user name"),
    ({"user": "a", "replication": "database"}, "replication"),
    ({"user": "a", "role": "awsuser"}, '"role"'),
    ({"user": "a", "session_authorization": "awsuser"}, "session_authorization"),
    ({"user": "a", "options": "-c role=awsuser"}, '"role"'),
    ({"user": "a", "options": "-B 10"}, '"-B"'),
])
def test_refused(params, fragment):
    with pytest.raises(StartupRefused, match=fragment):
        sort_startup_params(params)


def test_options_parsing():
    assert split_options(r"-c search_path=a\ b --statement-timeout=5 -cgeqo=off") == [
        ("search_path", "a b"), ("statement_timeout", "5"), ("geqo", "off")]
    params = sort_startup_params({"user": "a", "options": "-c search_path=x"})
    assert params.forwarded["options"] == "-c search_path=x"


@pytest.mark.parametrize("startup, uses_idp", [
    ({"plugin_name": "BasicJwtCredentialsProvider", "idp_type": "AzureAD"}, True),     # redshift_connector
    ({"plugin_name": "com.amazon.redshift.plugin.BasicJwtCredentialsProvider"}, True),  # JDBC
    ({"idp_type": "AwsIdc", "token_type": "ACCESS_TOKEN"}, True),
    ({"plugin_name": "OktaCredentialsProvider"}, False),  # SAML plugins log in as IAM users
    ({}, False),
])
def test_identity_provider_logins_need_no_user(startup, uses_idp):
    if uses_idp:
        params = sort_startup_params({"database": "dev", "user": "", **startup})
        assert params.uses_identity_provider and params.user == ""
    else:
        with pytest.raises(StartupRefused, match="no PostgreSQL user name"):
            sort_startup_params({"database": "dev", **startup})


@pytest.mark.parametrize("params", [
    {"user": "a", "client_encoding": "SJIS"},
    {"user": "a", "CLIENT_ENCODING": "BIG5"},
    {"user": "a", "client_encoding": "auto"},
    {"user": "a", "options": "-c client_encoding=GBK"},
    {"user": "a", "options": "--client-encoding=GB18030"},
    {"user": "a", "options": "-c client_encoding=UTF8 -cclient_encoding=SQL_ASCII"},
])
def test_client_encoding_other_than_utf8_is_refused(params):
    with pytest.raises(StartupRefused, match="client_encoding must be UTF8") as refused:
        sort_startup_params(params)
    assert "UTF-8" in refused.value.hint


@pytest.mark.parametrize("value", ["UTF8", "utf-8", "Unicode", "UTF_8"])
def test_client_encoding_utf8_is_accepted_and_left_to_the_proxy(value):
    """asyncpg sends 'utf-8', JDBC and redshift_connector 'UTF8'; the backend session always gets
    client_encoding=UTF8 from the proxy itself (frontend/connection.py)."""
    params = sort_startup_params({"user": "a", "client_encoding": value})
    assert "client_encoding" not in params.forwarded


@pytest.mark.parametrize("value, recorded", [
    ("2", 2), ("0", 0), ("2147483647", 2147483647),
    ("2147483648", 0), ("99999999999999999999", 0), ("1" * 5000, 0),  # beyond PostgreSQL's integer
    ("\u00b2", 0), ("\u0662", 0), ("-1", 0), (" 2", 0), ("", 0), ("2.0", 0),  # not ASCII digits
])
def test_client_protocol_version_for_the_connection_log(value, recorded):
    params = sort_startup_params({"user": "bob", "client_protocol_version": value})
    assert params.protocol_version == recorded


def test_redshift_sessions_announce_show_discovery():
    """redshift_connector's metadata API uses Redshift's SHOW commands only when told the
    server has them (policy/show.py); a backend-mode session is PostgreSQL's and has none."""
    backend = {"server_version": "15.4", "server_version_num": "150004"}
    assert client_parameters(backend, "redshift", False, "s1")["show_discovery"] == "5"
    assert "show_discovery" not in client_parameters(backend, "backend", False, "s1")
    assert "server_protocol_version" not in client_parameters(backend, "redshift", False, "s1")


@pytest.mark.parametrize("value, granted", [
    ("0", 0), ("1", 1), ("2", 2), ("3", 2), ("2147483647", 2), ("-1", 0), ("two", 0), ("", 0), (None, None),
])
def test_the_server_protocol_version_granted(value, granted):
    """What the client asked for, up to Redshift's BINARY (2); none asked for, none granted."""
    startup = {"user": "bob"} if value is None else {"user": "bob", "client_protocol_version": value}
    assert sort_startup_params(startup).granted_protocol == granted
