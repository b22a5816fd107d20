"""The stand-in for application tests: proxy.testing, the pytest plugin used from a separate
project, SQLAlchemy with sqlalchemy-redshift."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from proxy.testing import RedshiftStandIn

EXAMPLE = Path(__file__).resolve().parents[1] / "example_project"


def test_example_project_runs_with_the_plugin():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=EXAMPLE,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_stand_in_starts_quickly_and_cleans_up():
    started = time.monotonic()
    with RedshiftStandIn(init_sql=["CREATE USER app PASSWORD 'App12345'"]) as redshift:
        seconds = time.monotonic() - started
        data_dir = redshift._data_dir
        with psycopg.connect(redshift.dsn_for("app", "App12345")) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("app",)
        creds = redshift.credentials("tmp_app", db_groups=[])
        with psycopg.connect(redshift.dsn_for(creds["DbUser"], creds["DbPassword"])) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("tmp_app",)
    print(f"\nstand-in startup: {seconds:.2f} s")
    assert not data_dir.exists()


def test_sqlalchemy_redshift_create_all_and_query():
    with RedshiftStandIn() as redshift:
        engine = sa.create_engine(redshift.url, connect_args={"ssl": False})
        metadata = sa.MetaData()
        events = sa.Table("events", metadata, sa.Column("id", sa.Integer, primary_key=True),
                          sa.Column("kind", sa.String(20)), sa.Column("at", sa.DateTime),
                          redshift_distkey="kind", redshift_sortkey=("at", "id"), redshift_diststyle="KEY")
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(events.insert(), [{"id": 1, "kind": "a"}, {"id": 2, "kind": "b"}])
            assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 2
            info = conn.execute(sa.text('SELECT diststyle, sortkey1, sortkey_num FROM svv_table_info '
                                        'WHERE "table" = \'events\'')).one()
            assert tuple(info) == ("KEY(kind)", "at", 2)
            assert sa.inspect(conn).has_table("events")
        reflected = sa.Table("events", sa.MetaData(), autoload_with=engine)  # sqlalchemy-redshift's reflection
        assert [c.name for c in reflected.columns] == ["id", "kind", "at"]
        options = reflected.dialect_options["redshift"]
        assert (options["distkey"], options["sortkey"], options["diststyle"]) == ("kind", ("at", "id"), "KEY")
        engine.dispose()


def test_stand_in_with_a_local_bucket():
    """RedshiftStandIn(s3=...): an application's COPY and UNLOAD with redshift_connector."""
    import os
    import pwd
    import shutil
    import tempfile

    import redshift_connector

    # Under /tmp, owned by the server's OS user (postgres, when the suite runs as root).
    bucket = Path(tempfile.mkdtemp(prefix="shiftguard-bucket-", dir="/tmp"))
    bucket.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(bucket, entry.pw_uid, entry.pw_gid)
    (bucket / "in").mkdir()
    (bucket / "in" / "orders.csv").write_text("id,total\n1,9.50\n2,\n")
    bucket.joinpath("in").chmod(0o755)
    with RedshiftStandIn(s3={"app-bucket": bucket}) as redshift:
        conn = redshift_connector.connect(host=redshift.host, port=redshift.port, database="dev", user=redshift.user,
                                          password=redshift.password, ssl=False, timeout=20)
        try:
            cursor = conn.cursor()
            cursor.execute("CREATE TABLE orders (id int, total decimal(8,2))")
            cursor.execute("COPY orders FROM 's3://app-bucket/in/orders' IAM_ROLE default CSV IGNOREHEADER 1")
            cursor.execute("UNLOAD ('select id, nvl(total, 0.00) from orders order by id') "
                           "TO 's3://app-bucket/out/orders_' IAM_ROLE default PARALLEL OFF")
            conn.commit()
        finally:
            conn.close()
        assert (bucket / "out" / "orders_000").read_text() == "1|9.50\n2|0.00\n"
    shutil.rmtree(bucket)


def test_stand_in_local_idp_web_identity():
    import boto3

    from proxy.config import Iam, IamRole

    trust = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {
        "Federated": "arn:aws:iam::123456789012:oidc-provider/local-idp.shiftguard.invalid"}}]}
    with RedshiftStandIn(local_idp=True, iam=Iam(roles=[IamRole("ci", trust=trust)])) as redshift:
        sts = boto3.client("sts", endpoint_url=redshift.api_endpoint_url, region_name="us-east-1",
                           aws_access_key_id="-", aws_secret_access_key="-")
        answer = sts.assume_role_with_web_identity(RoleArn="arn:aws:iam::123456789012:role/ci",
                                                   RoleSessionName="job-1", WebIdentityToken=redshift.oidc_token("ci"))
        assert answer["SubjectFromWebIdentityToken"] == "ci"
    with RedshiftStandIn() as redshift, pytest.raises(RuntimeError, match="local_idp=True"):
        redshift.saml_login("alice")
