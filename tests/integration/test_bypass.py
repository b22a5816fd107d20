"""A non-superuser tries, every way we know, to read or change what it was not granted, or to
become someone else. Every attempt must fail; the summary line says how many were made."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import time

import psycopg
import pytest

from proxy.policy import signing
from proxy.policy.tokens import sql_literal
from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from ..conftest import unique

SECRET = "the crown jewels"
PASSWORD = "Secret123"


def attempts(secret: str, me: str) -> list[str]:
    """SQL a non-superuser sends, one attempt per entry (multi-statement strings included)."""
    escaped = "".join(f"\\{ord(c):04x}" for c in secret)
    return [
        # reading directly, however it is spelled
        f"SELECT * FROM {secret}",
        f'SELECT * FROM "{secret}"',
        f"SELECT * FROM public.{secret}",
        f'SELECT * FROM U&"{escaped}"',
        f"/* harmless */ SELECT * FROM {secret} -- comment",
        # a string constant that ends elsewhere with standard_conforming_strings off (Redshift's
        # sessions) than where PostgreSQL's parser, which the proxy uses, reads it with it on
        "SELECT 'x\\'' ; DISCARD ALL; --'",
        f"SELECT 1; SELECT * FROM {secret}",
        f"SELECT (SELECT v FROM {secret})",
        f"WITH x AS (SELECT * FROM {secret}) SELECT * FROM x",
        f"SELECT * FROM {secret} FOR UPDATE",
        f"SELECT count(*) FROM {secret}",
        f"PREPARE p1 AS SELECT * FROM {secret}; EXECUTE p1",
        f"COPY {secret} TO STDOUT",
        f"COPY (SELECT * FROM {secret}) TO STDOUT",
        f"CREATE TEMP VIEW v1 AS SELECT * FROM {secret}; SELECT * FROM v1",
        f"DO $$BEGIN PERFORM * FROM {secret}; END$$",
        f"DO $$BEGIN EXECUTE 'SELECT * FROM ' || '{secret}'; END$$",
        f"CREATE FUNCTION f_{me}() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER AS "
        f"'SELECT v FROM {secret}'; SELECT f_{me}()",
        # writing or destroying
        f"INSERT INTO {secret} VALUES ('x')",
        f"UPDATE {secret} SET v = 'x'",
        f"DELETE FROM {secret}",
        f"TRUNCATE {secret}",
        f"DROP TABLE {secret}",
        f"ALTER TABLE {secret} OWNER TO {me}",
        f"ALTER TABLE {secret} ADD COLUMN x int",
        f"CREATE INDEX ON {secret} (v)",
        f"COMMENT ON TABLE {secret} IS 'mine'",
        f"GRANT SELECT ON {secret} TO {me}",
        f"CREATE TRIGGER t_{me} BEFORE INSERT ON {secret} FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        f"COPY {secret} FROM STDIN",
        # becoming someone else
        "SET ROLE awsuser",
        "SET LOCAL ROLE awsuser",
        'SET "role" TO awsuser',
        "RESET ROLE",
        "SET SESSION AUTHORIZATION awsuser",
        "SELECT set_config('role', 'awsuser', false)",
        "SELECT set_config('session_authorization', 'awsuser', false)",
        "SELECT set_config(U&'r\\006fle', 'awsuser', false)",
        "SELECT U&\"set\\005fconfig\"('role', 'awsuser', false)",
        "SELECT pg_catalog.set_config(lower('ROLE'), 'awsuser', false)",
        "DO $$BEGIN EXECUTE 'SET ROLE awsuser'; END$$",
        "DO $$BEGIN PERFORM set_config('role', 'awsuser', false); END$$",
        "GRANT awsuser TO " + me,
        f"ALTER USER {me} CREATEUSER",
        f"ALTER ROLE {me} SUPERUSER",
        f"ALTER ROLE {me} PASSWORD 'Known1234'",
        f"ALTER ROLE {me} BYPASSRLS",
        "CREATE ROLE sneaky LOGIN PASSWORD 'Known1234'",
        f"CREATE USER sneaky_{me} PASSWORD 'Known1234' CREATEUSER",
        "ALTER USER awsuser PASSWORD 'Known1234'",
        "DROP USER awsuser",
        "CREATE SCHEMA s_evil AUTHORIZATION awsuser",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE awsuser GRANT SELECT ON TABLES TO {me}",
        f"REASSIGN OWNED BY awsuser TO {me}",
        "DISCARD ALL",
        # the private schema and the server
        "SELECT * FROM shiftguard_rows.settings",
        "SELECT * FROM shiftguard_rows.users",
        "SELECT rolpassword FROM pg_authid",
        "SELECT shiftguard.store_password('awsuser', '{\"md5\": \"md50123456789abcdef0123456789abcdef\"}')",
        "SELECT shiftguard.role_attributes(true, true)",
        "CALL shiftguard.create_user('evil', '{\"superuser\": true, \"password\": {}}')",
        f"CALL shiftguard.alter_user('{me}', '{{\"superuser\": true}}')",
        "CALL shiftguard.drop_users(ARRAY['awsuser'], false)",
        "SELECT * FROM svl_user_info",
        "INSERT INTO shiftguard_rows.vacuum_requests (relation, requested_by) VALUES ('pg_class'::regclass, 'awsuser')",
        f"VACUUM {secret}",
        f"VACUUM FULL {secret} TO 100 PERCENT BOOST",
        f"CALL shiftguard.vacuum('{secret}'::regclass::oid, 'x')",
        "VACUUM shiftguard_rows.users",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "SELECT lo_import('/etc/passwd')",
        f"COPY {secret} TO '/tmp/stolen'",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "CREATE TEMP TABLE t_prog (a text); COPY t_prog FROM PROGRAM 'id'",
        "ALTER SYSTEM SET log_statement = 'none'",
        "CREATE EXTENSION dblink",
        "LOAD 'plpgsql'",
        "CREATE FUNCTION f_c() RETURNS int LANGUAGE c AS '/lib/x.so', 'f'",
        "CREATE LANGUAGE plperlu",
        f"CREATE POLICY p ON {secret} USING (true)",
    ]


def lending_attempts(schema: str, sign) -> list[str]:
    """SQL a holder of the CREATE TABLE permission (only) sends to keep, or use for something
    else, the CREATE on a schema that shiftguard lends for one statement (catalog/privileges.sql
    create_lent). sign: the backend secret's signer, as if a signature had leaked (a session's
    own statements are visible to it in pg_stat_activity)."""
    def spec(statement: str, permission: str = "CREATE TABLE") -> str:
        return json.dumps({"permission": permission, "schema": schema, "refusal": None, "statement": statement},
                          separators=(",", ":"))
    evil = f"CREATE FUNCTION {schema}.evil() RETURNS int LANGUAGE sql AS $e$SELECT 1$e$"
    signed = spec(f"CREATE TABLE {schema}.lent (a int)")
    lend = f"shiftguard.lend_create({sql_literal(signed)}, {sql_literal(sign('lend', signed))}, ARRAY[]::name[])"
    forged = spec(evil, "CREATE OR REPLACE FUNCTION")
    return [
        evil,
        f"CREATE SEQUENCE {schema}.evil_seq",
        # the lending function called directly, with a valid signature, then something else
        f"SELECT {lend}; {evil}",
        f"BEGIN; SELECT {lend}; {evil}; COMMIT",
        f"DO $$BEGIN PERFORM {lend}; EXECUTE {sql_literal(evil)}; END$$",
        f"CREATE FUNCTION pg_temp.\"shiftguard.create_lent\"(text, text, text) RETURNS void LANGUAGE plpgsql AS "
        f"$f$DECLARE v oid; BEGIN v := {lend}; END$f$; SELECT pg_temp.\"shiftguard.create_lent\"('', '', ''); {evil}",
        # the procedure with a statement shiftguard did not sign, or signed for something else
        f"CALL shiftguard.create_lent({sql_literal(forged)}, '', 'public')",
        f"CALL shiftguard.create_lent({sql_literal(forged)}, {sql_literal(sign('lend', signed))}, 'public')",
        f"CALL shiftguard.create_lent({sql_literal(forged)}, {sql_literal(sign('rls', forged))}, 'public')",
        # a statement that pglast reads as one CREATE TABLE and PostgreSQL, with
        # standard_conforming_strings off, as three
        f"SET standard_conforming_strings = off; CREATE TABLE {schema}.smuggle (a text DEFAULT 'x\\', "
        f"b text DEFAULT '); {evil}; -- ')",
        # a query run while CREATE is lent, calling a function of the user's
        f"CREATE FUNCTION pg_temp.make() RETURNS int LANGUAGE plpgsql AS $f$BEGIN EXECUTE {sql_literal(evil)}; "
        f"RETURN 1; END$f$; CREATE TABLE {schema}.ctas AS SELECT pg_temp.make()",
        f"CREATE FUNCTION pg_temp.make() RETURNS int LANGUAGE plpgsql AS $f$BEGIN EXECUTE {sql_literal(evil)}; "
        f"RETURN 1; END$f$; SELECT pg_temp.make() INTO {schema}.ctas2",
        # code of the user's run by CREATE TABLE itself (a domain's CHECK, reached through a
        # composite literal in a DEFAULT) while CREATE is lent: a function, a domain planted
        *(f"CREATE FUNCTION pg_temp.hook(text) RETURNS boolean LANGUAGE plpgsql AS $f$BEGIN "
          f"EXECUTE {sql_literal(planted)}; RETURN true; END$f$; "
          "CREATE DOMAIN pg_temp.d AS text CHECK (pg_temp.hook(VALUE)); CREATE TYPE pg_temp.c AS (x pg_temp.d); "
          f"CREATE TABLE {schema}.hooked (a text DEFAULT (('(x)'::pg_temp.c).x)::text)"
          for planted in (evil, f"CREATE DOMAIN {schema}.evil_domain AS int",
                          f"CREATE OR REPLACE FUNCTION {schema}.owned() RETURNS text LANGUAGE sql "
                          "SECURITY DEFINER AS $b$SELECT 'replaced'::text$b$")),
        # what the lent CREATE is never for
        "CREATE TABLE shiftguard.evil (a int)",
        "CREATE TABLE pg_catalog.evil (a int)",
        "SET search_path = shiftguard; CREATE TABLE evil (a int)",
    ]


@pytest.fixture
def lender(proxy, postgres):
    """A user holding the CREATE TABLE permission only, a schema it has USAGE on, and a signer
    with the backend secret."""
    me, role, schema = unique("lender"), unique("r"), unique("s")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE ROLE {role}")
        admin.execute(f"GRANT CREATE TABLE TO ROLE {role}")
        admin.execute(f"GRANT ROLE {role} TO {me}")
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {me}")
        # a function of the user's in that schema (made when it held CREATE OR REPLACE FUNCTION)
        admin.execute(f"CREATE FUNCTION {schema}.owned() RETURNS text LANGUAGE sql AS $$SELECT 'original'::text$$")
        admin.execute(f"ALTER FUNCTION {schema}.owned() OWNER TO {me}")
    with postgres.connect() as direct:
        secret = direct.execute("SELECT value FROM shiftguard_rows.settings WHERE name = 'backend_secret'").fetchone()[0]
    yield me, schema, signing.signer(bytes.fromhex(secret))
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {me} CASCADE")
    with proxy.connect() as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.execute(f"DROP ROLE {role} FORCE")
        admin.execute(f"DROP USER {me}")


@pytest.fixture
def setup(proxy, postgres):
    secret = unique("secret")
    me = unique("mallory")
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {secret} (v text)")
        admin.execute(f"INSERT INTO {secret} VALUES (%s)", (SECRET,))
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
    yield secret, me
    with postgres.connect() as direct:
        direct.execute(f"DROP OWNED BY {me}")
    with proxy.connect() as admin:
        admin.execute(f"DROP TABLE {secret}")
        admin.execute(f"DROP USER {me}")


def simple(conn: psycopg.Connection, sql: str) -> list:
    """Run sql as one simple-protocol Query; every row of every result."""
    cur = conn.cursor()
    cur.execute(sql)
    rows = []
    while True:
        if cur.description is not None:
            rows.extend(cur.fetchall())
        if not cur.nextset():
            return rows


def fast_path_set_config(proxy, user: str) -> bytes:
    """set_config('role', 'awsuser', false) through the FunctionCall message (OID 2078)."""
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(m.startup_message({"user": user, "database": "dev"}))
        salt = sock.recv(1024)[9:13]
        sock.sendall(m.password_message(md5_response(redshift_md5(PASSWORD, user), salt) + b"\0"))
        data = b""
        while not data.endswith(m.ready_for_query(m.TX_IDLE)):
            data += sock.recv(65536)
        args = [b"role", b"awsuser", b"f"]
        body = struct.pack("!ihh", 2078, 0, len(args))
        body += b"".join(struct.pack("!i", len(a)) + a for a in args) + struct.pack("!h", 0)
        sock.sendall(m.message(m.F_FUNCTION_CALL, body) + m.query("SELECT current_user"))
        reply = b""
        while reply.count(b"Z\x00\x00\x00\x05") < 2:
            reply += sock.recv(65536)
        return reply


def test_every_bypass_attempt_fails(proxy, setup, lender, postgres, capsys):
    secret, me = setup
    tried = succeeded = 0
    failures = []
    lending_user, schema, sign = lender
    for sql in lending_attempts(schema, sign):
        tried += 1
        with proxy.connect(lending_user, PASSWORD) as conn:
            try:
                rows = simple(conn, sql)
            except psycopg.Error:
                continue
            succeeded += 1
            failures.append((sql, rows[:3]))
    with proxy.connect(lending_user, PASSWORD) as conn:
        assert conn.execute("SELECT has_schema_privilege(%s, 'CREATE'), has_schema_privilege('shiftguard', 'CREATE')",
                            (schema,)).fetchone() == (False, False)
        assert conn.execute(f"CREATE TABLE {schema}.allowed (a int)").statusmessage == "CREATE TABLE"
    with postgres.connect() as direct:
        assert direct.execute("SELECT count(*) FROM pg_proc WHERE proname = 'evil'").fetchone() == (0,)
        assert direct.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'evil%' OR relname LIKE 'ctas%' "
                              "OR relname IN ('smuggle', 'hooked')").fetchone() == (0,)
        assert direct.execute("SELECT count(*) FROM pg_type WHERE typname = 'evil_domain'").fetchone() == (0,)
        assert direct.execute(f"SELECT {schema}.owned()").fetchone() == ("original",)
        assert direct.execute("SELECT count(*) FROM shiftguard_rows.create_lendings").fetchone() == (0,)
    for sql in attempts(secret, me):
        tried += 1
        with proxy.connect(me, PASSWORD) as conn:
            try:
                rows = simple(conn, sql)
            except psycopg.Error:
                continue
            succeeded += 1  # every attempt must be refused, whatever it returned
            failures.append((sql, rows[:3]))
    # The same reads through the extended protocol (Parse/Bind/Execute).
    for sql in (f"SELECT * FROM {secret}", f"SELECT v FROM {secret} WHERE v = %s",
                "SELECT set_config('role', 'awsuser', false)"):
        tried += 1
        with proxy.connect(me, PASSWORD) as conn:
            try:
                conn.execute(sql, ("x",) if "%s" in sql else None, prepare=True)
                succeeded += 1
                failures.append((sql, "extended protocol"))
            except psycopg.Error:
                pass
    tried += 1
    reply = fast_path_set_config(proxy, me)
    if b"0A000" not in reply or me.encode() not in reply:
        succeeded += 1
        failures.append(("FunctionCall set_config", reply[:200]))
    # Afterwards: nobody else, nothing changed, nothing leaked into a superuser's hands.
    with proxy.connect(me, PASSWORD) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (me, me)
        assert conn.info.parameter_status("is_superuser") == "off"
    with postgres.connect() as direct:
        assert direct.execute(f"SELECT v FROM {secret}").fetchall() == [(SECRET,)]
        assert direct.execute("SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = %s",
                              (me,)).fetchone() == (False, False, False)
        assert direct.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'sneaky%' OR rolname = 'evil'"
                              ).fetchone() == (0,)
        assert direct.execute("SELECT superuser FROM shiftguard_rows.users WHERE name = %s", (me,)).fetchone() == (False,)
    with capsys.disabled():
        print(f"\nbypass attempts: {tried}, succeeded: {succeeded}")
    assert tried >= 60
    assert failures == []


@pytest.mark.parametrize("sql", [
    "COPY (SELECT usename FROM pg_user) TO PROGRAM 'id'",
    "COPY (SELECT usename FROM pg_user) TO '/tmp/shiftguard-escape'",
    "SELECT set_config('role', 'postgres', false) FROM pg_user LIMIT 1",
    "CREATE EXTENSION IF NOT EXISTS dblink",
    "ALTER SYSTEM SET log_statement = 'none'",
])
def test_escapes_are_refused_to_superusers_too(proxy, sql):
    """PostgreSQL-only features that leave the model are refused whoever asks, also when the
    statement names a Redshift catalog view that the proxy rewrites."""
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not supported"):
            admin.execute(sql)


def test_system_permissions_do_not_reach_the_private_schema_or_catalogs(proxy, postgres):
    """sys:dba holds DROP TABLE, DROP SCHEMA, TRUNCATE TABLE, ...: on users' objects, never on
    shiftguard's own schema or PostgreSQL's catalogs."""
    me = unique("dba")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {me} PASSWORD '{PASSWORD}'")
        admin.execute(f"GRANT ROLE sys:dba TO {me}")
        admin.execute(f"GRANT DROP FUNCTION, ALTER TABLE, ANALYZE TO ROLE sys:dba")
    try:
        for sql in ("DROP TABLE shiftguard_rows.users", "DROP TABLE shiftguard_rows.users CASCADE",
                    "DROP SCHEMA shiftguard CASCADE", "TRUNCATE shiftguard_rows.users", "TRUNCATE pg_catalog.pg_class",
                    "DROP FUNCTION shiftguard.caller_is_superuser()", "DROP FUNCTION pg_catalog.lower(text)",
                    "ALTER TABLE shiftguard_rows.users RENAME TO gone", "ALTER TABLE shiftguard_rows.users RENAME name TO x",
                    "DROP VIEW shiftguard.pg_user", "DROP TABLE pg_catalog.pg_class"):
            with proxy.connect(me, PASSWORD) as conn:
                with pytest.raises(psycopg.Error):
                    conn.execute(sql)
        with postgres.connect() as direct:
            assert direct.execute("SELECT count(*) > 0 FROM shiftguard_rows.users").fetchone() == (True,)
            assert direct.execute("SELECT to_regprocedure('shiftguard.caller_is_superuser()') IS NOT NULL, "
                                  "to_regclass('shiftguard.pg_user') IS NOT NULL").fetchone() == (True, True)
    finally:
        with proxy.connect() as admin:
            admin.execute("REVOKE DROP FUNCTION, ALTER TABLE, ANALYZE FROM ROLE sys:dba")
            admin.execute(f"DROP USER {me}")


def test_the_proxy_reads_strings_as_the_session_does_after_it_changes(proxy, setup):
    """A session that turns standard_conforming_strings on reads 'x\\' as a whole constant; so
    does the proxy from then on (it follows the backend's ParameterStatus)."""
    _, me = setup
    with proxy.connect(me, PASSWORD) as conn:
        conn.execute("SET standard_conforming_strings = on")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="DISCARD"):
            simple(conn, "SELECT 'x\\' ; DISCARD ALL; --'")
        conn.execute("SET standard_conforming_strings = off")
        assert simple(conn, "SELECT 'x\\' ; DISCARD ALL; --'") == [("x' ; DISCARD ALL; --",)]


def test_a_captured_signature_is_refused_once_it_is_old(proxy, lender, postgres):
    """A signed CALL seen once (pg_stat_activity, a log) runs again only within signing.LIFETIME
    of its signing: with an older (or later) time in its signature it is refused, and so is a
    signature whose time was changed, or one in the format without a time."""
    me, schema, _ = lender
    with postgres.connect() as direct:
        secret = bytes.fromhex(direct.execute(
            "SELECT value FROM shiftguard_rows.settings WHERE name = 'backend_secret'").fetchone()[0])

    def call(table: str, offset: float) -> str:
        spec = json.dumps({"permission": "CREATE TABLE", "schema": schema, "refusal": None,
                           "statement": f"CREATE TABLE {schema}.{table} (a int)"}, separators=(",", ":"))
        signature = signing.signer(secret, clock=lambda: time.time() + offset)("lend", spec)
        return (f"CALL shiftguard.create_lent({sql_literal(spec)}, {sql_literal(signature)}, "
                "pg_catalog.current_setting('search_path'))")

    with proxy.connect(me, PASSWORD) as conn:
        conn.execute(call("within_lifetime", -60))  # replayed a minute later: still runs
        for offset in (-signing.LIFETIME - 30, -30 * 86400, signing.LIFETIME + 30):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="signature on this statement is"):
                conn.execute(call("too_late", offset))
    with postgres.connect() as direct:
        assert direct.execute("SELECT array_agg(relname::text ORDER BY relname) FROM pg_class "
                              "WHERE relnamespace = %s::regnamespace", (schema,)).fetchone() == (["within_lifetime"],)
        fresh = signing.signer(secret)("rls", "payload")
        issued, mac = fresh.split(":")
        for purpose, payload, signature, valid in [
                ("rls", "payload", fresh, True),
                ("rls", "other", fresh, False),
                ("masking", "payload", fresh, False),
                ("rls", "payload", f"{int(issued) + 1}:{mac}", False),   # the time changed
                ("rls", "payload", mac, False),                          # no time
                ("rls", "payload", hmac.new(secret, b"rls:payload", hashlib.sha256).hexdigest(), False),
                ("rls", "payload", None, False)]:
            assert direct.execute("SELECT shiftguard.signed(%s, %s, %s)",
                                  (purpose, payload, signature)).fetchone() == (valid,)
