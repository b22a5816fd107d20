"""Redshift's user model through the proxy: every CREATE/ALTER/DROP USER option, who may do
what, the catalog views, and what each option does to logging in."""

from __future__ import annotations

import hashlib
import socket
import struct
import time

import psycopg
import pytest
import redshift_connector

from proxy.protocol import messages as m
from proxy.protocol.auth import md5_response, redshift_md5

from ..conftest import ADMIN, ADMIN_PASSWORD, unique

PASSWORD = "Secret123"


@pytest.fixture
def users(proxy, postgres):
    """users(options) -> name: CREATE USER <fresh name> <options> as the admin; dropped after."""
    made = []

    def create(options: str = f"PASSWORD '{PASSWORD}'", name: str | None = None) -> str:
        name = name or unique("u")
        with proxy.connect() as admin:
            admin.execute(f'CREATE USER "{name}" {options}')
        made.append(name)
        return name

    yield create
    with postgres.connect() as direct:
        for name in made:
            if direct.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                direct.execute(f'DROP OWNED BY "{name}"')
    with proxy.connect() as admin:
        for name in made:
            admin.execute(f'DROP USER IF EXISTS "{name}"')


def login_fails(proxy, user: str, password: str, **extra) -> str:
    """psycopg's message for a refused login (libpq does not expose its SQLSTATE)."""
    with pytest.raises(psycopg.OperationalError) as info:
        proxy.connect(user, password, **extra)
    return str(info.value)


def login_sqlstate(proxy, user: str, password: str, source: str = "127.0.0.1") -> str | None:
    """The SQLSTATE of a refused MD5 login over the raw protocol; None when it succeeded."""
    reply = raw_login(proxy, user, password, source)
    if reply[:1] != b"E":
        return None
    (length,) = struct.unpack_from("!i", reply, 1)
    return m.decode_fields(reply[5:1 + length])["C"]


def info_row(proxy, name: str) -> dict:
    with proxy.connect() as admin:
        cur = admin.execute("SELECT * FROM svl_user_info WHERE usename = %s", (name,))
        return dict(zip([c.name for c in cur.description], cur.fetchone()))


# --------------------------------------------------------------------------- options


def test_documentation_example_createdb_and_connection_limit(proxy, users, postgres):
    name = users("with password 'abcD1234' createdb connection limit 30")
    with proxy.connect() as admin:
        row = admin.execute("SELECT usecreatedb, usesuper, passwd, useconnlimit FROM pg_user_info "
                            "WHERE usename = %s", (name,)).fetchone()
    assert row == (True, False, "********", "30")
    with postgres.connect() as direct:  # PostgreSQL holds what it can enforce itself
        assert direct.execute("SELECT rolcreatedb, rolsuper, rolconnlimit FROM pg_roles WHERE rolname = %s",
                              (name,)).fetchone() == (True, False, 30)
    with proxy.connect(name, "abcD1234") as conn:
        conn.execute(f"CREATE DATABASE {name}_db")
        conn.execute(f"DROP DATABASE {name}_db")


def test_createuser_makes_a_superuser(proxy, users):
    name = users(f"PASSWORD '{PASSWORD}' CREATEUSER")
    with proxy.connect(name, PASSWORD) as conn:
        assert conn.info.parameter_status("is_superuser") == "on"
        other = unique("u")
        conn.execute(f"CREATE USER {other} PASSWORD '{PASSWORD}'")
        conn.execute(f"DROP USER {other}")
    assert info_row(proxy, name)["usesuper"] is True


def test_ordinary_user_is_refused_user_management_with_42501(proxy, users):
    name = users()
    victim = users()
    with proxy.connect(name, PASSWORD) as conn:
        assert conn.info.parameter_status("is_superuser") == "off"
        for statement in (f"CREATE USER x{name} PASSWORD '{PASSWORD}'", f"DROP USER {victim}",
                          f"ALTER USER {victim} PASSWORD 'Other1234'", f"ALTER USER {name} CREATEUSER",
                          f"ALTER USER {name} CONNECTION LIMIT 5"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_syslog_access_session_timeout_and_external_id_are_recorded(proxy, users):
    name = users(f"PASSWORD '{PASSWORD}' SYSLOG ACCESS UNRESTRICTED SESSION TIMEOUT 120")
    row = info_row(proxy, name)
    assert (row["syslogaccess"], row["sessiontimeout"], row["useconnlimit"]) == ("UNRESTRICTED", 120, "UNLIMITED")
    idp = users('EXTERNALID "ABC123" PASSWORD DISABLE', name=f'{unique("myco_aad")}:bob')
    assert info_row(proxy, idp)["external_id"] == "ABC123"
    login_fails(proxy, idp, "anything")


def test_in_group_needs_an_existing_group(proxy):
    with proxy.connect() as admin, pytest.raises(psycopg.errors.UndefinedObject, match='group "nogroup" does not exist'):
        admin.execute(f"CREATE USER {unique('u')} PASSWORD '{PASSWORD}' IN GROUP nogroup")


def test_valid_until(proxy, users):
    expired = users(f"PASSWORD '{PASSWORD}' VALID UNTIL '2017-06-10'")
    assert f'password authentication failed for user "{expired}"' in login_fails(proxy, expired, PASSWORD)
    assert login_sqlstate(proxy, expired, PASSWORD) == "28P01"
    future = users(f"PASSWORD '{PASSWORD}' VALID UNTIL '2999-01-01'")
    forever = users(f"PASSWORD '{PASSWORD}' VALID UNTIL 'infinity'")
    for name in (future, forever):
        with proxy.connect(name, PASSWORD) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (name,)
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {expired} VALID UNTIL 'infinity'")
    with proxy.connect(expired, PASSWORD):
        pass


def test_connection_limit_is_enforced_except_for_superusers(proxy, users):
    name = users(f"PASSWORD '{PASSWORD}' CONNECTION LIMIT 1")
    with proxy.connect(name, PASSWORD):
        assert "too many connections" in login_fails(proxy, name, PASSWORD)
        assert login_sqlstate(proxy, name, PASSWORD) == "53300"
    boss = users(f"PASSWORD '{PASSWORD}' CREATEUSER CONNECTION LIMIT 1")
    with proxy.connect(boss, PASSWORD), proxy.connect(boss, PASSWORD):
        pass  # not enforced for superusers, as in Redshift (and PostgreSQL)


# --------------------------------------------------------------------------- passwords


def test_md5_form_from_the_documentation_logs_in(proxy):
    # md5('ez' || 'user1'): Redshift checks only the form, so the weak password 'ez' works.
    with proxy.connect() as admin:
        admin.execute("DROP USER IF EXISTS user1")
        admin.execute("CREATE USER user1 PASSWORD 'md5153c434b4b77c89e6b94f12c5393af5b'")
    try:
        with proxy.connect("user1", "ez") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("user1",)
    finally:
        with proxy.connect() as admin:
            admin.execute("DROP USER user1")


def redshift_connect(proxy, user: str, password: str):
    return redshift_connector.connect(host=proxy.host, port=proxy.port, database="dev", user=user,
                                      password=password, ssl=False, timeout=20)


def test_sha256_forms_log_in_with_the_digest_exchange(proxy, users):
    generated = users("PASSWORD 'sha256|Mypassword1'")
    salt = bytes(range(32))
    digest = hashlib.sha256(b"Given1234" + salt).hexdigest()
    given = users(f"PASSWORD 'sha256|{digest}|{salt.hex()}'")
    for name, password in ((generated, "Mypassword1"), (given, "Given1234")):
        with redshift_connect(proxy, name, password) as conn:  # auth code 13
            cursor = conn.cursor()
            cursor.execute("SELECT current_user")
            assert cursor.fetchall()[0][0] == name
        with pytest.raises(redshift_connector.error.ProgrammingError, match="28P01"):
            redshift_connect(proxy, name, password + "x")


def test_sha256_user_uses_cleartext_only_over_tls(proxy, users):
    name = users("PASSWORD 'sha256|Mypassword1'")
    with proxy.connect(name, "Mypassword1", sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
    # Without TLS there is no method psql can do for a SHA-256-only user: it fails like a
    # wrong password.
    assert "password authentication failed" in login_fails(proxy, name, "Mypassword1")


def test_sha256_password_past_ascii(proxy, users):
    """As AWS's driver suite does on a cluster (test_connection.py, test_auth_req_digest): a
    'sha256|...' password holding a letter past ASCII is taken, and its user logs in with it
    through redshift_connector's digest exchange and psycopg over TLS; in clear text the same
    password is refused by Redshift's documented ASCII rule, and ALTER USER takes the sha256
    form too."""
    password = "My_sha256_PaSsWoRd\u017d"
    name = unique("u")
    with redshift_connect(proxy, ADMIN, ADMIN_PASSWORD) as admin:
        cursor = admin.cursor()
        with pytest.raises(redshift_connector.error.ProgrammingError, match="printable ASCII") as refused:
            cursor.execute(f"CREATE USER {name} WITH PASSWORD '{password}'")
        assert refused.value.args[0]["C"] == "22023"
        admin.rollback()
    name = users(f"PASSWORD 'sha256|{password}'", name)
    with redshift_connect(proxy, name, password) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user")
        assert cursor.fetchall()[0][0] == name
    with pytest.raises(redshift_connector.error.ProgrammingError, match="28P01"):
        redshift_connect(proxy, name, password[:-1] + "Z")
    with proxy.connect(name, password, sslmode="require") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {name} PASSWORD 'sha256|Ünïcödé_Pass1'")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="printable characters"):
            admin.execute(f"ALTER USER {name} PASSWORD 'sha256|Tab\tInside1x'")
    with redshift_connect(proxy, name, "Ünïcödé_Pass1") as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        assert cursor.fetchall()[0][0] == 1


def test_alter_user_rename_clears_the_password(proxy, users):
    name = users()
    new = unique("u")
    with proxy.connect() as admin:
        cur = admin.execute(f"ALTER USER {name} RENAME TO {new}")
        assert cur.statusmessage == "ALTER USER"
    try:
        login_fails(proxy, new, PASSWORD)
        with proxy.connect() as admin:
            admin.execute(f"ALTER USER {new} PASSWORD 'Renamed123'")
        with proxy.connect(new, "Renamed123") as conn:
            assert conn.execute("SELECT current_user").fetchone() == (new,)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {new}")


def test_users_change_their_own_password_unless_disabled(proxy, users):
    name = users()
    with proxy.connect(name, PASSWORD) as conn:
        conn.execute(f"ALTER USER {name} PASSWORD 'Changed123'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only a superuser can disable"):
            conn.execute(f"ALTER USER {name} PASSWORD DISABLE")
    login_fails(proxy, name, PASSWORD)
    with proxy.connect(name, "Changed123"):
        pass
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {name} PASSWORD DISABLE")
    login_fails(proxy, name, "Changed123")
    boss = users(f"PASSWORD '{PASSWORD}' CREATEUSER")
    with proxy.connect() as admin, pytest.raises(psycopg.errors.InsufficientPrivilege, match="superuser"):
        admin.execute(f"ALTER USER {boss} PASSWORD DISABLE")


def test_set_and_reset_parameters_apply_to_new_sessions(proxy, users):
    name = users()
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {name} SET statement_timeout TO 4321")
    with proxy.connect(name, PASSWORD) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
        assert conn.execute("SELECT useconfig FROM pg_user WHERE usename = %s", (name,)).fetchone() == (
            ["statement_timeout=4321"],)
    with proxy.connect() as admin:
        admin.execute(f"ALTER USER {name} RESET statement_timeout")
        admin.execute(f"ALTER USER {name} SESSION TIMEOUT 600")
        assert info_row(proxy, name)["sessiontimeout"] == 600
        admin.execute(f"ALTER USER {name} RESET SESSION TIMEOUT")
    assert info_row(proxy, name)["sessiontimeout"] == 0
    with proxy.connect(name, PASSWORD) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


# --------------------------------------------------------------------------- DROP USER


def test_drop_user_refuses_owners_and_privilege_holders_with_redshift_wording(proxy, users, postgres):
    owner = users()
    holder = users()
    table = unique()
    with proxy.connect(owner, PASSWORD) as conn:
        conn.execute(f"CREATE TABLE {table} (a int)")
        conn.execute(f"GRANT SELECT ON {table} TO {holder}")
    with proxy.connect() as admin:
        with pytest.raises(psycopg.errors.ObjectInUse,
                           match=f'user "{owner}" can\'t be dropped because the user owns some object'):
            admin.execute(f"DROP USER {owner}")
        with pytest.raises(psycopg.errors.ObjectInUse,
                           match=f'user "{holder}" can\'t be dropped because the user has a privilege on some object'):
            admin.execute(f"DROP USER {holder}")
        admin.execute(f"DROP TABLE {table}")
        admin.execute(f"DROP USER {owner}, {holder}")
        admin.execute(f"DROP USER IF EXISTS {owner}")
        with pytest.raises(psycopg.errors.UndefinedObject):
            admin.execute(f"DROP USER {owner}")


# --------------------------------------------------------------------------- catalog views


def test_catalog_views_and_their_visibility(proxy, users):
    name = users(f"PASSWORD '{PASSWORD}' CONNECTION LIMIT 7")
    with proxy.connect(name, PASSWORD) as conn:
        rows = conn.execute("SELECT usename, usesuper, passwd FROM pg_user ORDER BY usename").fetchall()
        assert (name, False, "********") in rows and ("awsuser", True, "********") in rows
        assert conn.execute("SELECT user_name, connection_limit FROM svv_user_info").fetchall() == [(name, "7")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for relation svl_user_info"):
            conn.execute("SELECT * FROM svl_user_info")
    with proxy.connect() as admin:
        cur = admin.execute("SELECT * FROM pg_catalog.svl_user_info")
        assert [c.name for c in cur.description] == [
            "usename", "usesysid", "usecreatedb", "usesuper", "usecatupd", "useconnlimit", "syslogaccess",
            "last_ddl_ts", "sessiontimeout", "external_id"]
        cur = admin.execute("SELECT * FROM pg_user LIMIT 1")
        assert [c.name for c in cur.description] == [
            "usename", "usesysid", "usecreatedb", "usesuper", "usecatupd", "passwd", "valuntil", "useconfig"]
        assert len(admin.execute("SELECT * FROM svv_user_info").fetchall()) >= 2


# --------------------------------------------------------------------------- logging in


def first_auth_request(proxy, user: str, extra: dict | None = None, source: str = "127.0.0.1") -> int:
    with socket.create_connection((proxy.host, proxy.port), source_address=(source, 0)) as sock:
        sock.sendall(m.startup_message({"user": user, "database": "dev", **(extra or {})}))
        data = sock.recv(1024)
    assert data[:1] == b"R", data
    return struct.unpack_from("!i", data, 5)[0]


REDSHIFT_DRIVER = {"client_protocol_version": "2", "driver_version": "2.2.0"}


@pytest.mark.parametrize("scram", [False, True])
def test_method_offered_per_client_and_verifier(make_proxy, scram):
    proxy = make_proxy(auth__scram=scram)
    with proxy.connect() as admin:
        clear, sha = unique("u"), unique("u")
        admin.execute(f"CREATE USER {clear} PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE USER {sha} PASSWORD 'sha256|Mypassword1'")
    try:
        expected_native = m.AUTH_SASL if scram else m.AUTH_MD5
        assert first_auth_request(proxy, clear) == expected_native
        assert first_auth_request(proxy, "nobody_at_all") == expected_native  # looks like anyone else
        assert first_auth_request(proxy, clear, REDSHIFT_DRIVER) == m.AUTH_MD5  # never SCRAM to a Redshift driver
        assert first_auth_request(proxy, sha, REDSHIFT_DRIVER) == 13
        if scram:
            with proxy.connect(clear, PASSWORD) as conn:  # psycopg/libpq through SCRAM-SHA-256
                assert conn.execute("SELECT current_user").fetchone() == (clear,)
            assert "password authentication failed" in login_fails(proxy, clear, "Wrong1234")
            assert "password authentication failed" in login_fails(proxy, "nobody_at_all", PASSWORD)
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {clear}, {sha}")


def raw_login(proxy, user: str, password: str, source: str) -> bytes:
    """An MD5 login from a chosen source address; the first message after the password."""
    with socket.create_connection((proxy.host, proxy.port), source_address=(source, 0), timeout=10) as sock:
        sock.sendall(m.startup_message({"user": user, "database": "dev"}))
        data = sock.recv(1024)
        sock.sendall(m.password_message(md5_response(redshift_md5(password, user), data[9:13]) + b"\0"))
        return sock.recv(1024)


def test_repeated_failures_cool_down_that_user_from_that_address(make_proxy):
    proxy = make_proxy(auth__lockout_failures=3, auth__lockout_seconds=2.0)
    name = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} PASSWORD '{PASSWORD}'")
    try:
        for _ in range(3):
            assert raw_login(proxy, name, "Wrong1234", "127.0.0.2")[:1] == b"E"
        refused = raw_login(proxy, name, PASSWORD, "127.0.0.2")  # right password, cooling down
        assert refused[:1] == b"E" and b"28P01" in refused and b"password authentication failed" in refused
        assert raw_login(proxy, name, PASSWORD, "127.0.0.3")[:1] == b"R"  # another address is not affected
        time.sleep(2.2)
        assert raw_login(proxy, name, PASSWORD, "127.0.0.2")[:1] == b"R"
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {name}")


def test_idle_session_timeout(make_proxy):
    from .test_bad_input import login, read_all

    proxy = make_proxy(cluster=_cluster(session_timeout=2))
    name = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} PASSWORD '{PASSWORD}' SESSION TIMEOUT 60")
    try:
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as idle:
            login(idle)
            patient = proxy.connect(name, PASSWORD)  # the user's own timeout wins over the cluster's
            busy = proxy.connect()
            started = time.monotonic()
            busy.execute("SELECT pg_sleep(3.5)")  # running a query is not idle
            closing = read_all(idle, timeout=10)  # the idle admin session is closed meanwhile
            assert b"57P05" in closing and b"terminating connection due to idle-session timeout" in closing
            assert 1.5 < time.monotonic() - started < 6
        assert patient.execute("SELECT 1").fetchone() == (1,)
        assert busy.execute("SELECT 1").fetchone() == (1,)
        patient.close()
        busy.close()
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {name}")


def _cluster(**changes):
    from dataclasses import replace

    from proxy.config import Cluster

    return replace(Cluster(), **changes)


def test_redshift_connector_logs_in_as_a_created_user(proxy, users):
    name = users()
    with redshift_connect(proxy, name, PASSWORD) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user, session_user, %s", ("x",))
        assert cursor.fetchall()[0] == [name, name, "x"]


def test_login_failures_look_the_same(proxy, users):
    disabled = users("PASSWORD DISABLE")
    expired = users(f"PASSWORD '{PASSWORD}' VALID UNTIL '2001-01-01'")
    right = users()
    messages = set()
    for user, password in ((disabled, PASSWORD), (expired, PASSWORD), (right, "Wrong1234"), ("nobody_x", PASSWORD)):
        assert login_sqlstate(proxy, user, password) == "28P01"
        messages.add(login_fails(proxy, user, password).replace(user, "USER").split("failed:", 1)[1])
    assert len(messages) == 1


def psql_login(proxy, user: str, password: str, sslmode: str = "disable"):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    return subprocess.run(["psql", "-X", "-At", "-c", "SELECT current_user",
                           f"host={proxy.host} port={proxy.port} user={user} dbname=dev sslmode={sslmode}"],
                          capture_output=True, text=True, env=env, timeout=30)


# (CREATE USER options, password tried, client, TLS) -> logs in?
LOGIN_TABLE = [
    (f"PASSWORD '{PASSWORD}'", PASSWORD, "psql", False, True),
    (f"PASSWORD '{PASSWORD}'", "Wrong1234", "psql", False, False),
    (f"PASSWORD '{PASSWORD}'", PASSWORD, "psql-scram", False, True),
    (f"PASSWORD '{PASSWORD}'", PASSWORD, "redshift_connector", False, True),
    (f"PASSWORD '{PASSWORD}'", PASSWORD, "psycopg", True, True),
    ("PASSWORD 'md5153c434b4b77c89e6b94f12c5393af5b'", "ez", "psql", False, False),  # hash salted with user1
    ("PASSWORD 'sha256|Mypassword1'", "Mypassword1", "redshift_connector", False, True),
    ("PASSWORD 'sha256|Mypassword1'", "Mypassword1", "psycopg", True, True),
    ("PASSWORD 'sha256|Mypassword1'", "Mypassword1", "psycopg", False, False),
    ("PASSWORD 'sha256|Mypassword1'", "Mypassword2", "redshift_connector", False, False),
    ("PASSWORD DISABLE", "", "psql", False, False),
    ("PASSWORD DISABLE", "", "redshift_connector", False, False),
    (f"PASSWORD '{PASSWORD}' VALID UNTIL '2000-01-01'", PASSWORD, "psql", False, False),
    (f"PASSWORD '{PASSWORD}' VALID UNTIL '2000-01-01'", PASSWORD, "redshift_connector", False, False),
    (f"PASSWORD '{PASSWORD}' VALID UNTIL '2999-01-01'", PASSWORD, "psycopg", True, True),
    (f"PASSWORD '{PASSWORD}' CONNECTION LIMIT 0", PASSWORD, "psycopg", False, False),
    (f"PASSWORD '{PASSWORD}' CREATEUSER CONNECTION LIMIT 0", PASSWORD, "psycopg", False, True),
]


@pytest.mark.parametrize("options, password, client, tls, logs_in", LOGIN_TABLE)
def test_login_table(make_proxy, options, password, client, tls, logs_in):
    proxy = make_proxy(auth__scram=client == "psql-scram")
    name = unique("u")
    with proxy.connect() as admin:
        admin.execute(f"CREATE USER {name} {options}")
    try:
        if client.startswith("psql"):
            result = psql_login(proxy, name, password, "require" if tls else "disable")
            assert (result.returncode == 0 and result.stdout.strip() == name) is logs_in, result.stderr
        elif client == "redshift_connector":
            try:
                with redshift_connect(proxy, name, password) as conn:
                    cursor = conn.cursor()
                    cursor.execute("SELECT current_user")
                    assert cursor.fetchall()[0][0] == name
                    ok = True
            except redshift_connector.error.ProgrammingError as exc:
                assert exc.args[0]["C"] in ("28P01", "53300")
                ok = False
            assert ok is logs_in
        else:
            try:
                with proxy.connect(name, password, sslmode="require" if tls else "disable") as conn:
                    assert conn.execute("SELECT current_user").fetchone() == (name,)
                    ok = True
            except psycopg.OperationalError:
                ok = False
            assert ok is logs_in
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP USER {name}")
