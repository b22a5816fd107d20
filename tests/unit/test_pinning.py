"""policy/pinning.py: what a statement leaves in a shared backend session (transaction pooling)."""

from __future__ import annotations

import pytest

from proxy.policy.pinning import session_effect


@pytest.mark.parametrize("sql, pins", [
    ("SELECT 1", None),
    ("UPDATE t SET a = 1", None),
    ("SELECT * FROM holdings, temperatures", None),
    ("CREATE TEMP TABLE t (a int)", "a temporary table"),
    ("create temporary table t as select 1", "a temporary table"),
    ("SELECT 1 INTO TEMP t", "a temporary table"),
    ("LISTEN channel", "LISTEN"),
    ("SELECT pg_advisory_lock(1)", "a session-level advisory lock"),
    ("SELECT pg_catalog.pg_try_advisory_lock_shared(1, 2)", "a session-level advisory lock"),
    ("SELECT pg_advisory_xact_lock(1)", None),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "a WITH HOLD cursor"),
    ("DECLARE c CURSOR FOR SELECT 1", None),
    ("PREPARE p AS SELECT 1", "PREPARE"),
    ("LOAD 'plpgsql'", "LOAD"),
    ("DO $$BEGIN PERFORM 1; END$$", "a DO block"),
    ("SELECT set_config('search_path', 'x', false)", "set_config(..., false)"),
    ("SELECT set_config('search_path', 'x', true)", None),
    ("SET SESSION AUTHORIZATION someone", "SET session_authorization"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET SESSION CHARACTERISTICS"),
    ("SET search_path FROM CURRENT", "SET search_path"),
    ("BEGIN; SET search_path TO x; COMMIT", "SET in a Query with BEGIN, COMMIT or ROLLBACK"),
    ("SET LOCAL search_path TO x", None),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
    ("SET transaction_isolation = 'serializable'", None),
    ("SET temp_buffers = '16MB'", "SET temp_buffers"),
    ("RESET temp_buffers", None),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'SELECT 1'", None),
    ("SELEC garbage temp", None),  # PostgreSQL refuses it: it runs nothing
])
def test_what_pins(sql, pins):
    assert session_effect(sql.encode()).pins == pins


@pytest.mark.parametrize("sql, settings", [
    ("SET search_path TO x", (("search_path", b"SET search_path TO x"),)),
    ("set Search_Path = x -- why\n", (("search_path", b"set Search_Path = x -- why\n"),)),
    ("SET TIME ZONE 'UTC'; RESET work_mem", (("timezone", b"SET TIME ZONE 'UTC'"), ("work_mem", None))),
    ("SET extra_float_digits TO DEFAULT", (("extra_float_digits", None),)),
    ("SET transaction_isolation = 'serializable'; SET Transaction_Read_Only TO on", ()),
    ("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;", ((None, None),)),
])
def test_settings_kept_for_the_client(sql, settings):
    effect = session_effect(sql.encode())
    assert effect.pins is None and effect.settings == settings


@pytest.mark.parametrize("sql", ["DISCARD ALL", "DISCARD PLANS", "DEALLOCATE ALL", "DEALLOCATE p"])
def test_what_drops_the_prepared_statements(sql):
    assert session_effect(sql.encode()).discards
