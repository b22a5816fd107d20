"""Cluster parameter values: what a parameter group may hold (a value PostgreSQL would refuse at
login never is), and what a group in force means for new sessions."""

from __future__ import annotations

import pytest

from proxy.policy.parameter_groups import ClusterSettings, ParameterRefused, checked_value


@pytest.mark.parametrize("name, value, stored", [
    ("require_ssl", "TRUE", "true"),
    ("enable_user_activity_logging", " false ", "false"),
    ("statement_timeout", "0", "0"),
    ("statement_timeout", "100", "100"),
    ("statement_timeout", "2147483647", "2147483647"),
    ("extra_float_digits", "-15", "-15"),
    ("extra_float_digits", "2", "2"),
    ("datestyle", "ISO, MDY", "ISO, MDY"),
    ("datestyle", "German", "German"),
    ("search_path", "$user,public", "$user, public"),
    ("search_path", '"My Schema", pg_catalog', '"My Schema", pg_catalog'),
])
def test_accepted(name, value, stored):
    assert checked_value(name, value) == stored


@pytest.mark.parametrize("name, value", [
    ("require_ssl", "yes"),
    ("statement_timeout", "99"),
    ("statement_timeout", "-1"),
    ("statement_timeout", "2147483648"),
    ("statement_timeout", "1min"),
    ("extra_float_digits", "3"),
    ("extra_float_digits", "-16"),
    ("datestyle", "ISO, SQL"),
    ("datestyle", "ISO, MDY, DMY"),
    ("datestyle", "whenever"),
    ("search_path", "public; DROP TABLE t"),
    ("search_path", "public,"),
    ("search_path", "a\x00b"),
    ("search_path", '"unterminated'),
    ("wlm_json_configuration", "[]"),
    ("max_connections", "10"),
])
def test_refused(name, value):
    with pytest.raises(ParameterRefused):
        checked_value(name, value)


def test_settings_in_force():
    assert (ClusterSettings().require_ssl, ClusterSettings().user_activity) == (False, False)
    assert ClusterSettings().session_settings() == {}  # the defaults: sessions start as PostgreSQL's
    group = ClusterSettings({"require_ssl": "true", "enable_user_activity_logging": "true",
                             "statement_timeout": "1000", "enable_case_sensitive_identifier": "true"})
    assert (group.require_ssl, group.user_activity) == (True, True)
    assert group.session_settings() == {"statement_timeout": "1000"}
