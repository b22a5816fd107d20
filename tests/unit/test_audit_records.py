"""Audit records are what their tables take (audit/records.py): built from any value, a record
holds no NUL, nothing UTF-8 cannot encode, no text over its limit and no integer outside its
column's range."""

from __future__ import annotations

import datetime

import pytest

from proxy.audit.records import (FIELD_LIMIT, ActivityRecord, ConnectionRecord, QueryEnd, audit_int, audit_text,
                                 row)

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("value, limit, text", [
    ("plain", 10, "plain"),
    ("a\0b", 10, "a\ufffdb"),
    ("\udcff", 10, "?"),                                      # a lone surrogate
    ("é\0", 10, "é\ufffd"),
    ("x" * 12, 10, "x" * 10 + "... (2 more characters not logged)"),
    (42, 10, "42"),
])
def test_audit_text(value, limit, text):
    assert audit_text(value, limit) == text
    audit_text(value, limit).encode("utf-8")  # always encodable


@pytest.mark.parametrize("value, bits, number", [
    (5, 32, 5), (2**31 - 1, 32, 2**31 - 1), (2**31, 32, 0), (-2**31, 32, -2**31), (-2**31 - 1, 32, 0),
    (2**40, 64, 2**40), (2**63, 64, 0), ("5", 32, 0), (None, 32, 0), (True, 32, 0),
])
def test_audit_int(value, bits, number):
    assert audit_int(value, bits) == number


def test_records_are_built_valid():
    connection = ConnectionRecord("authentication failure", NOW, username="a\0b", application_name="x" * 5000,
                                  protocol_version=10**20, duration=10**30, os_version="\udc80")
    assert connection.username == "a\ufffdb" and len(connection.application_name) < FIELD_LIMIT + 50
    assert (connection.protocol_version, connection.duration, connection.os_version) == (0, 0, "?")
    activity = ActivityRecord(NOW, "dev", "bob", 1, 2**33, 2**40, "SELECT 1\0", seq=2**31)
    assert (activity.sql, activity.userid, activity.xid, activity.seq) == ("SELECT 1\ufffd", 0, 2**40, 0)
    end = QueryEnd.of("s", 1, NOW, ("XX000", "bad\0message"))
    assert end.error_message == "bad\ufffdmessage"
    assert row(end)["status"] == "failed"


def test_a_connection_log_value_cannot_start_a_line_of_its_own():
    forged = "app\nauthenticated |Mon, 7 Dec 2020 20:01:55:177|10.0.0.1|\r\tx"
    record = ConnectionRecord("authenticated", NOW, application_name=forged, username="bob\u2028eve")
    assert record.application_name == forged.replace("\n", "\ufffd").replace("\r", "\ufffd").replace("\t", "\ufffd")
    assert record.username == "bob\ufffdeve"
    assert len(record.line().splitlines()) == 1
    statement = ActivityRecord(NOW, "dev", "bob", 1, 2, 3, "SELECT 1\nFROM t")
    assert statement.sql == "SELECT 1\nFROM t"  # as Redshift logs it
