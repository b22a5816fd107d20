"""The first five minutes, as a new user meets them: the project installed without its test
extras into a fresh virtualenv, from exactly the files the Dockerfile copies; then the README's
quick start and first session run as written (only the ports changed), and the image's command
line started as its CMD starts it, with its HEALTHCHECK asked.

There is no Docker engine on this machine, so the image's steps are followed here: its COPY
lines are read from the Dockerfile and those paths copied (minus what .dockerignore leaves out)
into a directory that plays /app, its `pip install .` runs in a virtualenv there, its ENV is the
environment, and its CMD and HEALTHCHECK run with their 0.0.0.0 addresses on 127.0.0.1 free ports.
What is not followed: the base image (this machine's Python, not python:3.11-slim) and the
unprivileged USER (the suite runs as whoever runs it).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
ADMIN_PASSWORD = "Image-admin-1"  # the image must be given one (SHIFTGUARD_ADMIN_PASSWORD)
IMAGE_ADMIN = "imageadmin"


# --------------------------------------------------------------------------- the Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def dockerignored(relative: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()]
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(part, bare) for part in parts):
            return True
    return False


def copy_as_the_image_does(app: Path) -> list[str]:
    """Follow WORKDIR and COPY into app (the image's WORKDIR); return the RUN commands."""
    runs = []
    for word, rest in dockerfile_instructions():
        if word == "WORKDIR":
            assert rest == "/app", "the test plays the image's WORKDIR /app: change it here too"
        elif word == "COPY":
            assert not rest.startswith("--"), f"COPY flags are not followed here: {rest}"
            *sources, destination = shlex.split(rest)
            target = app / destination
            for source in sources:
                path = ROOT / source
                if path.is_dir():  # Docker copies a directory's contents, not the directory
                    shutil.copytree(path, target, dirs_exist_ok=True, ignore=lambda d, names: [
                        n for n in names if dockerignored(str((Path(d) / n).relative_to(ROOT)))])
                elif destination.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / path.name)
                else:
                    shutil.copy2(path, target)
        elif word == "RUN":
            runs.append(rest)
    return runs


def image_env() -> dict[str, str]:
    env = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def image_cmd() -> list[str]:
    (cmd,) = [rest for word, rest in dockerfile_instructions() if word == "CMD"]
    return json.loads(cmd)


def image_healthcheck() -> str:
    (check,) = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    return check.split(" CMD ", 1)[1]


# --------------------------------------------------------------------------- the fresh install


@pytest.fixture(scope="module")
def installed():
    """The image's /app (the Dockerfile's COPY sources) and a virtualenv where its RUN lines
    installed the project: no test extras, so a runtime import that only they bring fails here.
    pip's cache is reused (the image turns it off to stay small) to keep this quick."""
    app = Path(tempfile.mkdtemp(prefix="shiftguard-app-", dir="/tmp"))
    app.chmod(0o755)  # the embedded PostgreSQL's OS user (root runs it as postgres) reads ./.shiftguard
    environment = Path(tempfile.mkdtemp(prefix="shiftguard-venv-", dir="/tmp"))
    venv.create(environment, with_pip=True)
    env = clean_env(environment)
    for run in copy_as_the_image_does(app):
        for step in (part.strip() for part in run.split("&&")):
            if step.startswith("useradd ") or step == "rm -rf /root/.cache":
                continue  # the unprivileged user is not followed; this machine keeps pip's cache
            assert step.startswith("pip install"), f"a RUN step this test does not follow: {step}"
            result = subprocess.run(shlex.split(step) + ["-q"], cwd=app, env=env, capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr
    yield app, environment
    shutil.rmtree(app, ignore_errors=True)
    shutil.rmtree(environment, ignore_errors=True)


def clean_env(environment: Path, **extra: str) -> dict[str, str]:
    """What a user's shell has: nothing of this test session's (PYTHONPATH pointing at the
    checkout, SHIFTGUARD_*, PG*), the virtualenv first on PATH."""
    env = {name: value for name, value in os.environ.items()
           if name in ("HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                       "PIP_TRUSTED_HOST", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
                       "https_proxy", "no_proxy")}
    env["PATH"] = f"{environment / 'bin'}:{os.environ['PATH']}"
    env["VIRTUAL_ENV"] = str(environment)
    env.update(extra)
    return env


def free_ports() -> tuple[int, int]:
    """Two ports free on 127.0.0.1 now (as .ci/run picks them)."""
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        return one.getsockname()[1], two.getsockname()[1]


class Serving:
    """A `shiftguard serve` started from a command line, waited for until it listens."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]):
        self.log = tempfile.TemporaryFile("w+")  # its log lines, which nobody reads while it runs
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines = []
        deadline = time.monotonic() + 120
        while not any(line.startswith("api listening on ") for line in self.lines):
            line = self.process.stdout.readline()
            if not line:
                self.log.seek(0)
                raise AssertionError(f"shiftguard serve exited with {self.process.wait()}: {self.log.read()}")
            self.lines.append(line)
            assert time.monotonic() < deadline, "shiftguard serve did not start listening"

    def stop(self, signum: int) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(60)
        self.process.stdout.close()
        self.log.close()
        return code


# --------------------------------------------------------------------------- the README


def section(title: str) -> str:
    """The README's text under a heading, up to the next heading of the same or a higher level
    (lines in fenced blocks are never headings)."""
    lines, fenced, found, level = [], False, None, 0
    for line in README.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#+) (.*)\n", line)
        if heading and found is not None and len(heading.group(1)) <= level:
            break
        if found is not None:
            lines.append(line)
        elif heading and heading.group(2) == title:
            found, level = True, len(heading.group(1))
    assert found, f"the README has no section {title!r}"
    return "".join(lines)


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.S | re.M)


def with_ports(code: str, port: int, api_port: int) -> str:
    """The only change made to the README's code: its ports become free ones."""
    return code.replace("5439", str(port)).replace("5440", str(api_port))


def printed(code: str) -> list[str]:
    """What a Python block says it prints: the comment after each print(...)."""
    return [line.split("#", 1)[1].strip() for line in code.splitlines()
            if line.startswith("print(") and "  # " in line]


def run_python(code: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == printed(code)


def run_shell(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_readme_quick_start_and_first_session_run_as_written(installed, tmp_path):
    app, environment = installed
    quick_start = blocks(section("Quick start"))
    assert quick_start == [("sh", "pip install . && shiftguard serve\n"), ("sh", "scripts/test\n")]
    assert os.access(ROOT / "scripts" / "test", os.X_OK)
    # The installed command knows its version: the package's, as pip installed it.
    version = subprocess.run(["shiftguard", "--version"], env=clean_env(environment), capture_output=True,
                             text=True, timeout=60)
    installed_version = subprocess.run(
        ["python", "-c", "import importlib.metadata as m; print(m.version('shiftguard'))"],
        env=clean_env(environment), capture_output=True, text=True, timeout=60).stdout.strip()
    assert version.stdout == f"shiftguard {installed_version}\n", version.stderr
    # `pip install .` ran in the fixture, from these files; `shiftguard serve` runs as written
    # from the virtualenv, in the "checkout" (so it reads config/shiftguard.yaml), its ports
    # moved to free ones through the environment.
    port, api_port = free_ports()
    env = clean_env(environment, SHIFTGUARD_LISTEN=f"127.0.0.1:{port}", SHIFTGUARD_API_LISTEN=f"127.0.0.1:{api_port}")
    served = Serving(shlex.split(quick_start[0][1].split("&&")[1]), app, env)
    try:
        assert f"listening on 127.0.0.1:{port}\n" in served.lines

        # psql: the admin sets up, alice reads and may not delete.
        (_, setup), (_, as_alice), (output, shown) = blocks(section("psql"))
        done = run_shell(with_ports(setup, port, api_port), app, env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["CREATE TABLE", "INSERT 0 2", "CREATE USER", "GRANT"], done.stderr
        assert output == "text"
        alice = run_shell(with_ports(as_alice, port, api_port), app, env)
        said = [line.rstrip() for line in (alice.stdout + alice.stderr).splitlines()]
        assert [line for line in shown.splitlines() if line and line not in said] == []

        # redshift_connector, from this session's Python (the README installs it separately).
        ((language, code),) = blocks(section("redshift_connector"))
        assert language == "python"
        run_python(with_ports(code, port, api_port), app)

        # The pytest fixture: the three files of an application's project, and its tests pass.
        project = tmp_path / "project"
        project.mkdir()
        files = blocks(section("The pytest fixture"))
        for language, code in files:
            name = re.fullmatch(r"(?:--|#) (\S+?):?(?: .*)?", code.splitlines()[0]).group(1)
            (project / name).write_text(code)
        assert sorted(p.name for p in project.iterdir()) == ["pytest.ini", "setup.sql", "test_orders.py"]
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                               capture_output=True, text=True, timeout=300)
        assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout + tests.stderr

        # The API with boto3: a configuration with an IAM user, the proxy started again with it.
        (yaml_language, configuration), (sh, restart), (python, api_code) = blocks(section("The API with boto3"))
        assert (yaml_language, sh, python) == ("yaml", "sh", "python")
        (app / configuration.splitlines()[0].removeprefix("# ")).write_text(configuration)
        assert served.stop(signal.SIGINT) == 0  # Ctrl-C
        served = Serving(shlex.split(restart), app, env)
        run_python(with_ports(api_code, port, api_port), app)
    finally:
        assert served.stop(signal.SIGINT) == 0


# --------------------------------------------------------------------------- the image


def test_the_image_command_line_serves_an_external_postgresql(installed, postgres, tmp_path):
    app, environment = installed
    port, api_port = free_ports()
    data_dir = tmp_path / "data"
    env = {**image_env(), "SHIFTGUARD_DATA_DIR": str(data_dir)}
    assert image_env()["SHIFTGUARD_DATA_DIR"] == "/var/lib/shiftguard"  # what is replaced
    # Its own admin name, as test_serve's external backend has: the suite's other proxies treat
    # this PostgreSQL as their own, with the default password for awsuser.
    env = clean_env(environment, **env, SHIFTGUARD_BACKEND_DSN=postgres.dsn,
                    SHIFTGUARD_ADMIN_PASSWORD=ADMIN_PASSWORD, SHIFTGUARD_CLUSTER_ADMIN_USER=IMAGE_ADMIN)
    cmd = image_cmd()
    script = cmd[-1]
    assert "0.0.0.0:5439" in script and "0.0.0.0:5440" in script
    cmd[-1] = script.replace("0.0.0.0:5439", f"127.0.0.1:{port}").replace("0.0.0.0:5440", f"127.0.0.1:{api_port}")
    served = Serving(cmd, app, env)
    try:
        assert f"listening on 127.0.0.1:{port}\n" in served.lines
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/readyz", timeout=5) as ready:
            assert ready.status == 200
        check = image_healthcheck().replace("5440", str(api_port))
        health = subprocess.run(["sh", "-c", check], cwd=app, env=env, capture_output=True, text=True, timeout=30)
        assert health.returncode == 0, health.stderr
        login = subprocess.run(
            ["psql", "-X", "-At", "-c", "SELECT current_user",
             f"host=127.0.0.1 port={port} user={IMAGE_ADMIN} dbname=dev sslmode=require"],
            env={**env, "PGPASSWORD": ADMIN_PASSWORD}, capture_output=True, text=True, timeout=30)
        assert (login.returncode, login.stdout) == (0, f"{IMAGE_ADMIN}\n"), login.stderr
        assert (data_dir / "tls" / "server.crt").exists()  # the certificate made on first start
    finally:
        assert served.stop(signal.SIGTERM) == 0  # docker stop
