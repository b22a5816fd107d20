"""pgjdbc (the PostgreSQL JDBC driver) through the proxy: tests/integration/java/JdbcCheck.java is
compiled with javac and run with java once per scenario; it prints key=value lines that are
checked here. Covers metadata (the Redshift version), PreparedStatement, commit/rollback,
CopyManager COPY IN/OUT, errors with their SQLSTATEs, TLS, wrong passwords and a fresh user's
privileges."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import ADMIN, ADMIN_PASSWORD, unique

SOURCE = Path(__file__).parent / "java" / "JdbcCheck.java"
INSTALL = "apt-get install default-jdk-headless libpostgresql-jdbc-java"


def find_jar() -> str:
    candidates = sorted(glob.glob(os.path.expanduser(
        "~/.m2/repository/org/postgresql/postgresql/*/postgresql-*.jar")), reverse=True)
    candidates.append("/usr/share/java/postgresql.jar")
    for jar in candidates:
        if Path(jar).is_file() and not jar.endswith(("-sources.jar", "-javadoc.jar")):
            return jar
    pytest.fail("the PostgreSQL JDBC driver jar was not found (looked in ~/.m2/repository/org/"
                f"postgresql/postgresql/*/ and /usr/share/java/postgresql.jar); install it: {INSTALL}")


@pytest.fixture(scope="module")
def classpath(tmp_path_factory) -> str:
    javac, java = shutil.which("javac"), shutil.which("java")
    if not javac or not java:
        pytest.fail(f"javac/java not found on PATH; install a JDK: {INSTALL}")
    jar = find_jar()
    out = tmp_path_factory.mktemp("jdbc-classes")
    compiled = subprocess.run([javac, "-cp", jar, "-d", str(out), str(SOURCE)],
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, f"javac failed:\n{compiled.stdout}{compiled.stderr}"
    return f"{out}{os.pathsep}{jar}"


class Run:
    def __init__(self, process: subprocess.CompletedProcess):
        self.returncode = process.returncode
        self.stderr = process.stderr
        self.values: dict[str, str] = {}
        for line in process.stdout.splitlines():
            key, sep, value = line.partition("=")
            assert sep, f"unexpected output line from JdbcCheck: {line!r}"
            self.values[key] = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e[1], e[1]), value)

    def __getitem__(self, key: str) -> str:
        assert key in self.values, f"JdbcCheck printed no {key}: {self.values}\n{self.stderr}"
        return self.values[key]

    def completed(self) -> "Run":
        assert self.returncode == 0 and self.values.get("done") == "true", (
            f"JdbcCheck exited {self.returncode}: {self.values}\n{self.stderr}")
        return self


def jdbc(classpath: str, proxy, url_options: str, user: str = ADMIN,
         password: str = ADMIN_PASSWORD, table: str = "-", mode: str = "login") -> Run:
    url = f"jdbc:postgresql://{proxy.host}:{proxy.port}/dev?connectTimeout=10&{url_options}"
    process = subprocess.run(
        ["java", "-cp", classpath, "JdbcCheck", url, user, password, table, mode],
        capture_output=True, text=True, timeout=60)
    return Run(process)


URL_TLS = {"disable": "sslmode=disable", "require": "ssl=true&sslmode=require"}


@pytest.fixture(params=list(URL_TLS))
def url_options(request) -> str:
    return URL_TLS[request.param]


def test_admin_prepared_transactions_copy_and_errors(classpath, proxy, url_options):
    table = unique()
    try:
        run = jdbc(classpath, proxy, url_options, table=table, mode="admin")
    finally:  # JdbcCheck drops both itself; this is for when it stopped half-way
        with proxy.connect() as admin:
            admin.execute(f"DROP USER IF EXISTS {table}_user")
            admin.execute(f"DROP TABLE IF EXISTS {table}")
    run.completed()

    assert run["product_name"] == "PostgreSQL"
    assert run["product_version"] == "8.0.2"
    assert (run["major_version"], run["minor_version"]) == ("8", "0")
    assert run["current_user"] == ADMIN
    assert run["metadata_columns"] == "id:int4,name:varchar"  # the TEXT column is Redshift's VARCHAR(256)

    # setString binds as varchar (pgjdbc's stringtype default)
    assert run["prepared_row"] == "it's|42|character varying"

    assert run["in_transaction_rows"] == "1:committed,2:rolled back"
    assert run["after_rollback_rows"] == "1:committed"
    assert run["in_transaction_error_sqlstate"] == "23505"
    assert run["in_transaction_error_then"] == "alive"

    assert run["copy_in_count"] == "3"
    assert run["copy_out_count"] == "4"
    assert run["copy_out"] == "1\tcommitted\n10\tten\n11\twith, comma\n12\t\\N\n"
    assert run["copy_in_error_sqlstate"] == "22P02"
    assert run["copy_in_error_then"] == "4"  # the failed COPY left nothing behind

    assert run["division_error_sqlstate"] == "22012"
    assert "division by zero" in run["division_error_message"]
    assert run["division_error_then"] == "alive"
    assert run["syntax_error_sqlstate"] == "42601"
    assert run["syntax_error_then"] == "alive"
    assert run["missing_table_error_sqlstate"] == "42P01"
    assert run["missing_table_error_then"] == "alive"

    assert run["fetch_size_rows"] == "10/55"

    assert run["timeout_sqlstate"] == "57014"  # canceling statement due to user request
    assert int(run["timeout_seconds"]) < 10, "the query was not cancelled"
    assert run["timeout_then"] == "alive"

    assert run["create_user_count"] == "0"
    assert run["created_user_login"] == f"{table}_user"
    assert run["drop_user_count"] == "0"

    assert run["dropped_user_login_sqlstate"] == "28P01"


def test_new_user_is_itself_and_refused_ungranted_table(classpath, proxy, new_user, url_options):
    table = unique()
    with proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (a int)")
    try:
        name, password = new_user()
        run = jdbc(classpath, proxy, url_options, name, password, table, "user").completed()
        assert run["current_user"] == name
        assert run["session_user"] == name
        assert run["ungranted_sqlstate"] == "42501"
        assert run["ungranted_message"].startswith(
            f"ERROR: permission denied for relation {table}")
        assert run["ungranted_then"] == "alive"
        assert run["ungranted_prepared_sqlstate"] == "42501"
        assert run["ungranted_prepared_then"] == "alive"
    finally:
        with proxy.connect() as admin:
            admin.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("user", ["x", ADMIN])
def test_wrong_password_is_refused(classpath, proxy, user):
    run = jdbc(classpath, proxy, "sslmode=disable", user, "wrong-password")
    assert run.returncode == 2, (run.values, run.stderr)
    assert run["connect_sqlstate"] == "28P01"
    assert f'password authentication failed for user "{user}"' in run["connect_message"]


def test_tls_required_and_verified(classpath, make_proxy):
    proxy = make_proxy(tls__require_ssl=True)
    refused = jdbc(classpath, proxy, "sslmode=disable")
    assert refused.returncode == 2, (refused.values, refused.stderr)
    assert refused["connect_sqlstate"] == "28000"
    assert "requires SSL" in refused["connect_message"]

    assert jdbc(classpath, proxy, URL_TLS["require"]).completed()["current_user"] == ADMIN

    cert = Path(proxy.config.data_dir) / "tls" / "server.crt"
    verified = jdbc(classpath, proxy, f"sslmode=verify-full&sslrootcert={cert}").completed()
    assert verified["current_user"] == ADMIN
    # and without the proxy's certificate as root, verification fails
    untrusted = jdbc(classpath, proxy, "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt")
    assert untrusted.returncode == 2
    assert untrusted["connect_sqlstate"] == "08006"
