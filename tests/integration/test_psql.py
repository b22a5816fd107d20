"""psql 15 (as a subprocess) through the proxy: login over plain TCP and TLS, server-side
parameters, transactions, errors and their SQLSTATEs, \\copy in and out, wrong passwords, a
fresh user's privileges, CREATE/ALTER/DROP USER, and the everyday meta-commands \\d and
\\password."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ..conftest import ADMIN, ADMIN_PASSWORD, unique

PSQL = shutil.which("psql")


def psql(proxy, *args: str, user: str = ADMIN, password: str = ADMIN_PASSWORD,
         sslmode: str = "disable", stdin: str | None = None, cwd: Path | None = None,
         quiet: bool = True, **conn_extra: str) -> subprocess.CompletedProcess:
    """Run psql once against the proxy, unaligned and tuples-only output (command tags too
    unless quiet), stopping on the first error; returns the finished process (stdout/stderr
    as text)."""
    assert PSQL, "psql is not installed: apt-get install postgresql-client-15"
    conninfo = " ".join(f"{k}='{v}'" for k, v in {
        "host": proxy.host, "port": proxy.port, "user": user, "dbname": "dev",
        "sslmode": sslmode, "connect_timeout": 10, **conn_extra}.items())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGAPPNAME="psql-test", PGCONNECT_TIMEOUT="10")
    # A new session has no controlling terminal, so psql prompts (\\password) read stdin.
    return subprocess.run(
        [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
         "-qAt" if quiet else "-At", "-F", "|", "-d", conninfo, *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
        start_new_session=True)


def ok(result: subprocess.CompletedProcess) -> list[str]:
    """Lines of a psql run that must have succeeded."""
    assert result.returncode == 0, f"psql exited {result.returncode}: {result.stderr}"
    return result.stdout.splitlines()


@pytest.fixture(params=["disable", "require"])
def sslmode(request) -> str:
    return request.param


def test_login_reports_tls_state_and_redshift_version(proxy, sslmode):
    lines = ok(psql(proxy, "-c", "SELECT current_user, current_database()",
                    "-c", r"\echo server_version=:SERVER_VERSION_NAME", "-c", r"\conninfo",
                    sslmode=sslmode))
    assert lines[0] == f"{ADMIN}|dev"
    # psql takes SERVER_VERSION_NAME from the server_version ParameterStatus.
    assert "server_version=8.0.2" in lines
    conninfo = "\n".join(lines)
    assert f'as user "{ADMIN}"' in conninfo
    assert ("SSL connection" in conninfo) == (sslmode == "require")


def test_tls_verify_full_trusts_the_proxy_certificate(proxy):
    cert = Path(proxy.config.data_dir) / "tls" / "server.crt"
    assert cert.exists(), f"the proxy made no certificate at {cert}"
    lines = ok(psql(proxy, "-c", "SELECT 'verified'", "-c", r"\conninfo",
                    sslmode="verify-full", sslrootcert=str(cert)))
    assert lines[0] == "verified"
    assert any("SSL connection" in line for line in lines)


def test_parameterised_query(proxy, sslmode):
    # psql 15 has no \bind, so the server-side parameters go through PREPARE/EXECUTE, with the
    # values passed in as psql variables (quoted client-side by :'name').
    lines = ok(psql(proxy, "-v", "n=41", "-v", "word=it's",
                    sslmode=sslmode, stdin="""
PREPARE q(int, text) AS SELECT $1 + 1, upper($2), pg_typeof($1);
EXECUTE q(:n, :'word');
EXECUTE q(1, 'two');
DEALLOCATE q;
"""))
    assert lines == ["42|IT'S|integer", "2|TWO|integer"]


def test_transaction_commit_and_rollback(proxy, sslmode):
    table = unique()
    lines = ok(psql(proxy, sslmode=sslmode, stdin=f"""
CREATE TABLE {table} (id int, name text);
BEGIN;
INSERT INTO {table} VALUES (1, 'one'), (2, 'two');
COMMIT;
BEGIN;
INSERT INTO {table} VALUES (3, 'three');
SELECT count(*) FROM {table};
ROLLBACK;
SELECT id, name FROM {table} ORDER BY id;
"""))
    # inside the open transaction the third row is visible; after ROLLBACK it is gone
    assert lines == ["3", "1|one", "2|two"]
    # a new session (a new proxy connection) sees only what was committed
    assert ok(psql(proxy, "-c", f"SELECT string_agg(name, ',' ORDER BY id) FROM {table}",
                   sslmode=sslmode)) == ["one,two"]
    ok(psql(proxy, "-c", f"DROP TABLE {table}"))


@pytest.fixture
def copy_table(proxy, tmp_path):
    table = unique()
    ok(psql(proxy, "-c", f"CREATE TABLE {table} (id int, name text)"))
    yield table
    ok(psql(proxy, "-c", f"DROP TABLE {table}"))


def test_copy_in_from_file_and_stdin_then_out(proxy, sslmode, tmp_path, copy_table):
    table = copy_table
    (tmp_path / "in.csv").write_text('1,alpha\n2,"with, comma"\n3,\n')
    # \copy ... FROM pstdin reads psql's own standard input, so the rows come from the pipe
    script = tmp_path / "script.sql"
    script.write_text(f"\\copy {table} FROM 'in.csv' WITH (FORMAT csv)\n"
                      f"\\copy {table} FROM pstdin\n"
                      f"SELECT count(*), count(name) FROM {table};\n"
                      f"\\copy (SELECT id, name FROM {table} ORDER BY id) TO 'out.csv' WITH (FORMAT csv)\n"
                      f"\\copy (SELECT id FROM {table} WHERE name IS NULL) TO pstdout\n")
    result = psql(proxy, "-f", str(script), sslmode=sslmode, cwd=tmp_path,
                  stdin="4\tfour\n5\t\\N\n")
    lines = ok(result)
    assert lines == ["5|3", "3", "5"]
    assert (tmp_path / "out.csv").read_text() == (
        '1,alpha\n2,"with, comma"\n3,\n4,four\n5,\n')


def test_copy_in_bad_data_reports_sqlstate_and_keeps_nothing(proxy, sslmode, tmp_path, copy_table):
    table = copy_table
    (tmp_path / "bad.csv").write_text("1,one\nnot-a-number,two\n")
    result = psql(proxy, "-c", f"\\copy {table} FROM 'bad.csv' WITH (FORMAT csv)",
                  sslmode=sslmode, cwd=tmp_path)
    assert result.returncode == 1, result
    assert "ERROR:  22P02: invalid input syntax for type integer" in result.stderr
    assert ok(psql(proxy, "-c", f"SELECT count(*) FROM {table}", sslmode=sslmode)) == ["0"]


def test_error_stops_script_with_sqlstate(proxy, sslmode):
    result = psql(proxy, sslmode=sslmode, stdin="SELECT 'before';\nSELECT 1/0;\nSELECT 'after';\n")
    # 3: an error in a script with ON_ERROR_STOP set
    assert result.returncode == 3, result
    assert result.stdout.splitlines() == ["before"]
    assert "ERROR:  22012: division by zero" in result.stderr


def test_session_survives_errors(proxy, sslmode):
    table = unique()
    lines = ok(psql(proxy, sslmode=sslmode, stdin=f"""
\\set ON_ERROR_STOP off
SELECT 1/0;
\\echo sqlstate=:LAST_ERROR_SQLSTATE
SELECT * FROM no_such_table_{table};
\\echo sqlstate=:LAST_ERROR_SQLSTATE
CREATE TABLE {table} (id int PRIMARY KEY);
BEGIN;
INSERT INTO {table} VALUES (1);
INSERT INTO {table} VALUES (1);
\\echo sqlstate=:LAST_ERROR_SQLSTATE
SELECT 'in failed transaction';
\\echo sqlstate=:LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT 'alive', count(*) FROM {table};
DROP TABLE {table};
"""))
    assert lines == ["sqlstate=22012", "sqlstate=42P01", "sqlstate=23505", "sqlstate=25P02",
                     "alive|0"]


@pytest.mark.parametrize("user, password", [("x", "wrong"), (ADMIN, "wrong-password")])
def test_wrong_password_is_refused(proxy, user, password):
    result = psql(proxy, "-c", "SELECT 1", user=user, password=password)
    assert result.returncode == 2, result
    assert f'password authentication failed for user "{user}"' in result.stderr
    assert result.stdout == ""


def test_new_user_is_itself_and_refused_ungranted_table(proxy, new_user, sslmode):
    table = unique()
    ok(psql(proxy, "-c", f"CREATE TABLE {table} (a int)", "-c", f"INSERT INTO {table} VALUES (7)"))
    name, password = new_user()
    assert ok(psql(proxy, "-c", "SELECT current_user, session_user",
                   user=name, password=password, sslmode=sslmode)) == [f"{name}|{name}"]
    result = psql(proxy, "-c", f"SELECT * FROM {table}", user=name, password=password,
                  sslmode=sslmode)
    assert result.returncode == 1, result
    assert f"ERROR:  42501: permission denied for relation {table}" in result.stderr
    ok(psql(proxy, "-c", f"GRANT SELECT ON {table} TO {name}"))
    assert ok(psql(proxy, "-c", f"SELECT a FROM {table}", user=name, password=password,
                   sslmode=sslmode)) == ["7"]
    ok(psql(proxy, "-c", f"DROP TABLE {table}"))


def test_require_ssl_proxy_refuses_plain_psql(make_proxy):
    proxy = make_proxy(tls__require_ssl=True)
    result = psql(proxy, "-c", "SELECT 1", sslmode="disable")
    assert result.returncode == 2, result
    assert "requires SSL" in result.stderr
    assert ok(psql(proxy, "-c", "SELECT 'over tls'", sslmode="require")) == ["over tls"]


def test_create_user_with_psql_then_log_in(proxy, sslmode):
    name = f"u_{uuid.uuid4().hex[:10]}"
    try:
        # without -q psql prints each command tag: the proxy must restore Redshift's
        assert ok(psql(proxy, "-c", f"CREATE USER {name} PASSWORD 'Secret123'", "-c",
                       f"ALTER USER {name} PASSWORD 'Secret456'", sslmode=sslmode,
                       quiet=False)) == ["CREATE USER", "ALTER USER"]
        lines = ok(psql(proxy, "-c", "SELECT current_user", user=name, password="Secret456",
                        sslmode=sslmode))
        assert lines == [name]
        weak = psql(proxy, "-c", f"ALTER USER {name} PASSWORD 'weak'", sslmode=sslmode)
        assert weak.returncode == 1
        assert "ERROR:  22023: password must be 8 to 64 characters long" in weak.stderr
        assert ok(psql(proxy, "-c", f"DROP USER {name}", quiet=False)) == ["DROP USER"]
        gone = psql(proxy, "-c", "SELECT 1", user=name, password="Secret456")
        assert gone.returncode == 2
        assert f'password authentication failed for user "{name}"' in gone.stderr
    finally:
        ok(psql(proxy, "-c", f"DROP USER IF EXISTS {name}"))


def test_large_copy_round_trip(proxy, sslmode, tmp_path, copy_table):
    # several megabytes each way, so COPY data crosses many reads and TLS records
    table = copy_table
    rows = [f"{i}\t{'x' * 90}{i}" for i in range(60_000)]
    (tmp_path / "big.txt").write_text("\n".join(rows) + "\n")
    lines = ok(psql(proxy, "-c", f"\\copy {table} FROM 'big.txt'",
                    "-c", f"SELECT count(*), sum(id), sum(length(name)) FROM {table}",
                    "-c", f"\\copy (SELECT * FROM {table} ORDER BY id) TO 'back.txt'",
                    sslmode=sslmode, cwd=tmp_path))
    assert lines == [f"60000|{sum(range(60_000))}|{sum(90 + len(str(i)) for i in range(60_000))}"]
    assert (tmp_path / "back.txt").read_text() == (tmp_path / "big.txt").read_text()


@pytest.mark.parametrize("mode", ["redshift", "backend"])
def test_describe_table(make_proxy, mode):
    # psql picks its catalog queries by the server's version: with Redshift's 8.0.2 it uses
    # old-server queries (c.relhasoids, c.reltriggers), which the proxy answers from a pg_class
    # view with those columns, as Redshift's catalog has them.
    proxy = make_proxy(server_version_mode=mode)
    table = unique()
    ok(psql(proxy, "-c", f"CREATE TABLE {table} (id int PRIMARY KEY, name varchar(10))"))
    try:
        result = psql(proxy, "-c", rf"\d {table}")
        assert result.returncode == 0, result.stderr
        described = result.stdout.replace(" ", "")
        assert "id|integer||notnull|" in described
        assert "name|charactervarying(10)|||" in described
    finally:
        ok(psql(proxy, "-c", f"DROP TABLE {table}"))


def test_password_command_changes_a_users_password(proxy, new_user):
    # psql's \\password hashes the new password on the client, with the algorithm named by
    # SHOW password_encryption, and sends ALTER USER name PASSWORD '<hash>'. An 'md5...' hash
    # is one the proxy accepts.
    name, old_password = new_user()
    changed = psql(proxy, "-c", rf"\password {name}", stdin="Changed123\nChanged123\n")
    assert changed.returncode == 0, changed.stderr
    assert ok(psql(proxy, "-c", "SELECT current_user", user=name,
                   password="Changed123")) == [name]
    old = psql(proxy, "-c", "SELECT 1", user=name, password=old_password)
    assert old.returncode == 2
    assert f'password authentication failed for user "{name}"' in old.stderr


def test_show_discovery_commands(proxy):
    """Redshift's SHOW TABLES / SHOW COLUMNS answer psql with Redshift's rows."""
    table = unique("shown")
    ok(psql(proxy, "-c", f"CREATE TABLE public.{table} (id int, note varchar(10))"))
    try:
        lines = ok(psql(proxy, "-c", f"SHOW TABLES FROM SCHEMA dev.public LIKE '{table}'",
                        "-c", f"SHOW COLUMNS FROM TABLE dev.public.{table} LIKE 'n%'"))
        assert lines[0].split("|")[:4] == ["dev", "public", table, "TABLE"]
        assert lines[1].split("|")[:11] == ["dev", "public", table, "note", "2", "", "YES", "character varying",
                                            "10", "", ""]
    finally:
        ok(psql(proxy, "-c", f"DROP TABLE public.{table}"))
