"""The Redshift Data API with real boto3 and the AWS CLI against a running proxy: statements run
through the proxy's own frontend as the database user (privileges, RLS, masking, the audit
log), results compared with a driver's, parameters, batches in one transaction, paging,
cancelling, each principal seeing only its own statements, IAM policies deciding each action."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import subprocess
import sys
import time

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config as BotoConfig

from proxy.config import AccessKey, Iam, IamUser

from ..conftest import ADMIN, unique, wait_for
from .test_audit import lines

ACCOUNT = "123456789012"
CLUSTER = "shiftguard"
ARN = f"arn:aws:redshift:us-east-1:{ACCOUNT}"
ALICE_KEY, ALICE_SECRET = "AKIAALICE000000000001", "alice-secret-access-key-0001"
BOB_KEY, BOB_SECRET = "AKIABOB00000000000001", "bob-secret-access-key-00000001"
EVE_KEY, EVE_SECRET = "AKIAEVE00000000000001", "eve-secret-access-key-00000001"
NONE_KEY, NONE_SECRET = "AKIANONE0000000000001", "none-secret-access-key-0000001"
# Alice and Bob may use the Data API as any database user; Eve may only as dbuser eve_* and
# may not run batches; None's policy grants nothing.
DATA_API_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift-data:*", "Resource": "*"},
    {"Effect": "Allow", "Action": ["redshift:GetClusterCredentials", "redshift:GetClusterCredentialsWithIAM"],
     "Resource": "*"}]}
EVE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift-data:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "redshift-data:BatchExecuteStatement", "Resource": "*"},
    {"Effect": "Allow", "Action": "redshift:GetClusterCredentials", "Resource": f"{ARN}:dbuser:{CLUSTER}/eve_*"}]}
IAM = Iam(users=[IamUser("alice", [AccessKey(ALICE_KEY, ALICE_SECRET)], policies=[DATA_API_POLICY]),
                 IamUser("bob", [AccessKey(BOB_KEY, BOB_SECRET)], policies=[DATA_API_POLICY]),
                 IamUser("eve", [AccessKey(EVE_KEY, EVE_SECRET)], policies=[EVE_POLICY]),
                 IamUser("none", [AccessKey(NONE_KEY, NONE_SECRET)])])


@pytest.fixture
def data_proxy(make_proxy):
    return make_proxy(iam=IAM)


def data_client(proxy, key=ALICE_KEY, secret=ALICE_SECRET):
    return boto3.client("redshift-data", endpoint_url=f"http://127.0.0.1:{proxy.api_port}",
                        region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret,
                        config=BotoConfig(retries={"max_attempts": 1}))


def finished(api, statement_id: str, timeout: float = 30.0) -> dict:
    """DescribeStatement once the statement has ended."""
    deadline = time.monotonic() + timeout
    while True:
        described = api.describe_statement(Id=statement_id)
        if described["Status"] in ("FINISHED", "FAILED", "ABORTED") or time.monotonic() > deadline:
            return described
        time.sleep(0.05)


def run(api, sql: str, db_user: str = ADMIN, **extra) -> dict:
    started = api.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", DbUser=db_user, Sql=sql, **extra)
    return finished(api, started["Id"])


def records(api, statement_id: str) -> tuple[list, list]:
    """(column names, rows of plain values) of every page."""
    pages = list(api.get_paginator("get_statement_result").paginate(Id=statement_id))
    names = [c["name"] for c in pages[0]["ColumnMetadata"]]
    rows = [[None if f.get("isNull") else next(iter(f.values())) for f in row] for p in pages for row in p["Records"]]
    return names, rows


def error_code(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def aws(proxy, *args: str, key=ALICE_KEY, secret=ALICE_SECRET) -> dict:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-m", "awscli", "redshift-data", *args,
                             "--endpoint-url", f"http://127.0.0.1:{proxy.api_port}"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_results_match_a_driver(data_proxy):
    api = data_client(data_proxy)
    table = unique("dapi")
    sql = (f"SELECT i, i * 1.5::float8 AS f, (i * 1.25)::numeric(10,2) AS d, 'row ' || i AS s, i % 2 = 0 AS even, "
           f"CASE WHEN i = 3 THEN NULL ELSE DATE '2024-01-01' + i END AS day, "
           f"TIMESTAMP '2024-01-01 12:00:00' + i * INTERVAL '1 hour' AS ts FROM {table} ORDER BY i")
    with data_proxy.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (i int NOT NULL, label varchar(20))")
        conn.execute(f"INSERT INTO {table} (i) SELECT generate_series(1, 5)")
        expected = conn.execute(sql).fetchall()
    described = run(api, sql)
    assert described["Status"] == "FINISHED", described
    assert described["HasResultSet"] is True and described["ResultRows"] == 5
    assert described["QueryString"] == sql and described["RedshiftPid"] > 0
    result = api.get_statement_result(Id=described["Id"])
    assert result["TotalNumRows"] == 5 and "NextToken" not in result
    columns = {c["name"]: c for c in result["ColumnMetadata"]}
    assert [c["typeName"] for c in result["ColumnMetadata"]] == ["int4", "float8", "numeric", "text", "bool",
                                                                  "date", "timestamp"]
    assert (columns["d"]["precision"], columns["d"]["scale"]) == (10, 2)
    assert columns["i"]["tableName"] == table and columns["i"]["nullable"] == 0 and columns["i"]["precision"] == 10
    first = result["Records"][0]
    assert first[0] == {"longValue": 1} and first[1] == {"doubleValue": 1.5} and first[4] == {"booleanValue": False}
    assert first[2] == {"stringValue": "1.25"} and result["Records"][2][5] == {"isNull": True}
    as_driver = []
    for row in result["Records"]:
        i, f, d, s, even, day, ts = [None if v.get("isNull") else next(iter(v.values())) for v in row]
        as_driver.append((i, f, decimal.Decimal(d), s, even, day and datetime.date.fromisoformat(day),
                          datetime.datetime.fromisoformat(ts)))
    assert as_driver == expected

    # DML reports the rows it touched; DDL has no count (-1, the Data API's null).
    assert run(api, f"UPDATE {table} SET label = 'x' WHERE i > 2")["ResultRows"] == 3
    ddl = run(api, f"DROP TABLE {table}")
    assert ddl["Status"] == "FINISHED" and ddl["ResultRows"] == -1 and ddl["HasResultSet"] is False
    assert error_code(lambda: api.get_statement_result(Id=ddl["Id"])) == "ResourceNotFoundException"
