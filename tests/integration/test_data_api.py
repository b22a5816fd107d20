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
from dataclasses import replace

import boto3
import botocore.exceptions
import psycopg
import pytest
from botocore.config import Config as BotoConfig

from proxy.config import AccessKey, Audit, Cluster, Iam, IamRole, IamUser, IngressRule, SecurityGroup
from proxy.iam import data_api
from proxy.iam.data_sessions import DataSession, StatementFailed

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
    {"Effect": "Allow", "Action": "redshift:GetClusterCredentials",
     "Resource": [f"{ARN}:dbuser:{CLUSTER}/eve_*", f"{ARN}:dbname:{CLUSTER}/dev"]}]}
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


def test_named_parameters(data_proxy):
    api = data_client(data_proxy)
    sql = ("SELECT :n + 1 AS next, :s AS s, ':s' AS literal, 'x'::text || :s AS joined, "
           "CAST(:day AS date) + 1 AS tomorrow /* :ignored */")
    hostile = "it's \\ :n -- not code'; DROP TABLE x; --"
    described = run(api, sql, Parameters=[{"name": "n", "value": "41"}, {"name": "s", "value": hostile},
                                          {"name": "day", "value": "2024-02-28"}])
    assert described["Status"] == "FINISHED", described
    assert described["QueryParameters"][0] == {"name": "n", "value": "41"}
    assert records(api, described["Id"])[1] == [[42, hostile, ":s", "x" + hostile, "2024-02-29"]]
    # A parameter the SQL does not use, or one it uses and is not given: the statement fails.
    unused = run(api, "SELECT 1", Parameters=[{"name": "n", "value": "1"}])
    assert unused["Status"] == "FAILED" and "n" in unused["Error"]
    missing = run(api, "SELECT :a, :b", Parameters=[{"name": "a", "value": "1"}])
    assert missing["Status"] == "FAILED" and "b" in missing["Error"]
    with pytest.raises(api.exceptions.ValidationException, match="n-1"):
        run(api, "SELECT :n", Parameters=[{"name": "n-1", "value": "1"}])


def test_batch_is_one_transaction(data_proxy):
    api = data_client(data_proxy)
    table = unique("batch")
    assert run(api, f"CREATE TABLE {table} (i int PRIMARY KEY)")["Status"] == "FINISHED"
    good = api.batch_execute_statement(ClusterIdentifier=CLUSTER, Database="dev", DbUser=ADMIN, StatementName="ok",
                                       Sqls=[f"INSERT INTO {table} VALUES (:one)", f"INSERT INTO {table} VALUES (:two)",
                                             f"SELECT i FROM {table} ORDER BY i"],
                                       Parameters=[{"name": "one", "value": "1"}, {"name": "two", "value": "2"}])
    described = finished(api, good["Id"])
    assert described["Status"] == "FINISHED"
    subs = described["SubStatements"]
    assert [s["Id"] for s in subs] == [f"{good['Id']}:{n}" for n in (1, 2, 3)]
    assert [(s["Status"], s["ResultRows"], s["HasResultSet"]) for s in subs] == [
        ("FINISHED", 1, False), ("FINISHED", 1, False), ("FINISHED", 2, True)]
    assert records(api, f"{good['Id']}:3")[1] == [[1], [2]]
    assert error_code(lambda: api.get_statement_result(Id=good["Id"])) == "ValidationException"

    bad = api.batch_execute_statement(ClusterIdentifier=CLUSTER, Database="dev", DbUser=ADMIN,
                                      Sqls=[f"INSERT INTO {table} VALUES (3)", f"INSERT INTO {table} VALUES (1)",
                                            f"INSERT INTO {table} VALUES (4)"])
    failed = finished(api, bad["Id"])
    assert failed["Status"] == "FAILED" and "duplicate key value" in failed["Error"]
    assert [s["Status"] for s in failed["SubStatements"]] == ["FINISHED", "FAILED", "ABORTED"]
    assert "duplicate key" in failed["SubStatements"][1]["Error"]
    with data_proxy.connect() as conn:  # the first insert was rolled back with the batch
        assert conn.execute(f"SELECT i FROM {table} ORDER BY i").fetchall() == [(1,), (2,)]
        conn.execute(f"DROP TABLE {table}")


def test_policies_decide_each_action(data_proxy):
    nobody = data_client(data_proxy, NONE_KEY, NONE_SECRET)
    assert error_code(lambda: nobody.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", DbUser=ADMIN,
                                                       Sql="SELECT 1")) == "AccessDeniedException"
    assert error_code(lambda: nobody.list_statements()) == "AccessDeniedException"
    eve = data_client(data_proxy, EVE_KEY, EVE_SECRET)
    # The Data API's own action is allowed, GetClusterCredentials on this dbuser is not.
    with pytest.raises(botocore.exceptions.ClientError, match="redshift:GetClusterCredentials") as info:
        eve.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", DbUser=ADMIN, Sql="SELECT 1")
    assert info.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError, match="explicit deny"):
        eve.batch_execute_statement(ClusterIdentifier=CLUSTER, Database="dev", DbUser="eve_x", Sqls=["SELECT 1"])
    # Allowed as eve_x, a user that does not exist: the login fails as the statement's error.
    failed = run(eve, "SELECT 1", db_user="eve_x")
    assert failed["Status"] == "FAILED" and failed["Error"] == 'FATAL: password authentication failed for user "IAM:eve_x"'
    alice = data_client(data_proxy)
    with pytest.raises(alice.exceptions.ValidationException, match="SecretArn"):
        alice.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", Sql="SELECT 1",
                                SecretArn="arn:aws:secretsmanager:us-east-1:123456789012:secret:x")
    with pytest.raises(alice.exceptions.ValidationException, match="WorkgroupName"):
        alice.execute_statement(WorkgroupName="wg1", Database="dev", Sql="SELECT 1")
    with pytest.raises(alice.exceptions.ValidationException, match="not found"):
        alice.execute_statement(ClusterIdentifier="elsewhere", Database="dev", DbUser=ADMIN, Sql="SELECT 1")
    wrong = boto3.client("redshift-data", endpoint_url=f"http://127.0.0.1:{data_proxy.api_port}",
                         region_name="us-east-1", aws_access_key_id=ALICE_KEY, aws_secret_access_key="wrong",
                         config=BotoConfig(retries={"max_attempts": 1}))
    assert error_code(lambda: wrong.list_statements()) == "InvalidSignatureException"


def test_statements_are_the_callers_own(data_proxy):
    alice, bob = data_client(data_proxy), data_client(data_proxy, BOB_KEY, BOB_SECRET)
    mine = run(alice, "SELECT 'secret of alice'", StatementName="alice-report")
    for call in (lambda: bob.describe_statement(Id=mine["Id"]), lambda: bob.get_statement_result(Id=mine["Id"]),
                 lambda: bob.cancel_statement(Id=mine["Id"])):
        with pytest.raises(bob.exceptions.ResourceNotFoundException):
            call()
    assert mine["Id"] not in [s["Id"] for s in bob.list_statements()["Statements"]]
    listed = alice.list_statements(StatementName="alice-")["Statements"]
    assert [(s["Id"], s["Status"], s["QueryString"]) for s in listed] == [
        (mine["Id"], "FINISHED", "SELECT 'secret of alice'")]
    assert records(alice, mine["Id"])[1] == [["secret of alice"]]
    assert alice.list_statements(StatementName="alice-", Status="FAILED")["Statements"] == []
    assert error_code(lambda: alice.list_statements(Status="DONE")) == "ValidationException"
    unknown = "00000000-0000-0000-0000-000000000000"
    assert error_code(lambda: alice.describe_statement(Id=unknown)) == "ResourceNotFoundException"


def test_iam_identity_without_db_user(data_proxy):
    api = data_client(data_proxy)
    with data_proxy.connect() as admin:
        admin.execute('CREATE USER "IAM:alice" PASSWORD DISABLE')
    try:
        started = api.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", Sql="SELECT current_user")
        assert started["DbUser"] == "IAM:alice"
        assert finished(api, started["Id"])["Status"] == "FINISHED"
        assert records(api, started["Id"])[1] == [["IAM:alice"]]
    finally:
        with data_proxy.connect() as admin:
            admin.execute('DROP USER "IAM:alice"')


def test_privileges_rls_and_masking_apply(data_proxy, new_user):
    api = data_client(data_proxy)
    user, _ = new_user()
    table, secret, mask, rls = unique("cards"), unique("hidden"), unique("mask"), unique("rls")
    with data_proxy.connect() as admin:
        admin.execute(f"CREATE TABLE {table} (customer_id int, card varchar(20))")
        admin.execute(f"INSERT INTO {table} VALUES (100, '4532993817514842'), (102, '5243112427642649')")
        admin.execute(f"CREATE TABLE {secret} (x int)")
        admin.execute(f"GRANT SELECT ON {table} TO {user}")
        admin.execute(f"CREATE MASKING POLICY {mask} WITH (card VARCHAR(20)) USING ('XXXX'::TEXT)")
        admin.execute(f"ATTACH MASKING POLICY {mask} ON {table}(card) TO {user}")
        admin.execute(f"CREATE RLS POLICY {rls} WITH (customer_id int) USING (customer_id >= 102)")
        admin.execute(f"ATTACH RLS POLICY {rls} ON {table} TO {user}")
        admin.execute(f"ALTER TABLE {table} ROW LEVEL SECURITY ON")
    try:
        sql = f"SELECT customer_id, card FROM {table} ORDER BY 1"
        with data_proxy.connect(user, "Secret123") as conn:
            as_driver = wait_for(lambda: (rows := conn.execute(sql).fetchall()) == [(102, "XXXX")] and rows)
        described = run(api, sql, db_user=user)
        assert described["Status"] == "FINISHED", described
        assert [tuple(r) for r in records(api, described["Id"])[1]] == as_driver
        # Read through its masking view, the table is still the one the metadata names.
        assert {(c["schemaName"], c["tableName"]) for c in api.get_statement_result(Id=described["Id"])[
            "ColumnMetadata"]} == {("public", table)}
        denied = run(api, f"SELECT * FROM {secret}", db_user=user)
        assert denied["Status"] == "FAILED" and "permission denied" in denied["Error"]
        assert run(api, f"SELECT count(*) FROM {table}")["Status"] == "FINISHED"  # the admin: no RLS policy
    finally:
        with data_proxy.connect() as admin:
            admin.execute(f"ALTER TABLE {table} ROW LEVEL SECURITY OFF")
            admin.execute(f"DROP RLS POLICY {rls} CASCADE")
            admin.execute(f"DETACH MASKING POLICY {mask} ON {table}(card) FROM {user}")
            admin.execute(f"DROP MASKING POLICY {mask}")
            admin.execute(f"DROP TABLE {table}, {secret}")


def test_paging(data_proxy):
    api = data_client(data_proxy)
    described = run(api, "SELECT i, repeat('x', 200) AS filler FROM generate_series(1, 12000) AS i")
    first = api.get_statement_result(Id=described["Id"])
    assert first["TotalNumRows"] == 12000 and "NextToken" in first and len(first["Records"]) < 12000
    second = api.get_statement_result(Id=described["Id"], NextToken=first["NextToken"])
    assert second["Records"][0][0] == {"longValue": len(first["Records"]) + 1}
    assert [row[0] for row in records(api, described["Id"])[1]] == list(range(1, 12001))
    assert error_code(lambda: api.get_statement_result(Id=described["Id"], NextToken="bogus")) == \
        "ValidationException"


def test_cancel_a_long_statement(data_proxy):
    api = data_client(data_proxy)
    started = api.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", DbUser=ADMIN,
                                    Sql="SELECT pg_sleep(60)")
    wait_for(lambda: api.describe_statement(Id=started["Id"])["Status"] == "STARTED")
    began = time.monotonic()
    assert api.cancel_statement(Id=started["Id"])["Status"] is True
    described = finished(api, started["Id"])
    assert described["Status"] == "ABORTED" and time.monotonic() - began < 30
    with pytest.raises(api.exceptions.ValidationException, match="ABORTED"):
        api.cancel_statement(Id=started["Id"])
    # The session is gone: nothing of it is still running in the database.
    with data_proxy.connect() as admin:
        assert wait_for(lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE query = "
                                                  "'SELECT pg_sleep(60)'").fetchall())


def test_catalog_actions_honour_privileges(data_proxy, new_user):
    api = data_client(data_proxy)
    user, _ = new_user()
    schema, table = unique("s"), unique("t")
    with data_proxy.connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.{table} (id int NOT NULL, name varchar(30) DEFAULT 'n', "
                      f"amount numeric(12, 3))")
        admin.execute(f"CREATE VIEW {schema}.{table}_v AS SELECT id FROM {schema}.{table}")
    common = {"ClusterIdentifier": CLUSTER, "Database": "dev", "DbUser": user}
    try:
        assert "dev" in api.list_databases(**common)["Databases"]
        assert schema not in api.list_schemas(**common)["Schemas"]  # no USAGE
        assert api.list_tables(**common, SchemaPattern=schema)["Tables"] == []
        assert api.describe_table(**common, Schema=schema, Table=table)["ColumnList"] == []
        with data_proxy.connect() as admin:
            admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {user}")
            admin.execute(f"GRANT SELECT ON {schema}.{table} TO {user}")
        assert api.list_schemas(**common, SchemaPattern=f"{schema[:-2]}%")["Schemas"] == [schema]
        assert api.list_tables(**common, SchemaPattern=schema)["Tables"] == [
            {"name": table, "schema": schema, "type": "TABLE"}]
        admin_view = api.list_tables(**{**common, "DbUser": ADMIN}, SchemaPattern=schema, TablePattern="%_v")
        assert admin_view["Tables"] == [{"name": f"{table}_v", "schema": schema, "type": "VIEW"}]
        described = api.describe_table(**common, Schema=schema, Table=table)
        assert described["TableName"] == table
        columns = {c["name"]: c for c in described["ColumnList"]}
        assert list(columns) == ["id", "name", "amount"]
        assert (columns["id"]["typeName"], columns["id"]["nullable"]) == ("int4", 0)
        assert (columns["name"]["precision"], columns["name"]["columnDefault"]) == (30, "'n'::character varying")
        assert (columns["amount"]["precision"], columns["amount"]["scale"]) == (12, 3)
        paged = api.list_tables(**{**common, "DbUser": ADMIN}, SchemaPattern=schema, MaxResults=1)
        assert len(paged["Tables"]) == 1 and "NextToken" in paged
        assert api.list_tables(**{**common, "DbUser": ADMIN}, SchemaPattern=schema, MaxResults=1,
                               NextToken=paged["NextToken"])["Tables"][0]["name"] == f"{table}_v"
    finally:
        with data_proxy.connect() as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_aws_cli_and_the_audit_log(make_proxy, tmp_path):
    proxy = make_proxy(iam=IAM, audit=Audit(dir=str(tmp_path / "audit"), user_activity=True))
    marker = unique("cli")
    started = aws(proxy, "execute-statement", "--cluster-identifier", CLUSTER, "--database", "dev",
                  "--db-user", ADMIN, "--sql", f"SELECT '{marker}' AS m")
    deadline = time.monotonic() + 30
    while (described := aws(proxy, "describe-statement", "--id", started["Id"]))["Status"] != "FINISHED":
        assert described["Status"] not in ("FAILED", "ABORTED") and time.monotonic() < deadline, described
        time.sleep(0.1)
    result = aws(proxy, "get-statement-result", "--id", started["Id"])
    assert result["Records"] == [[{"stringValue": marker}]] and result["ColumnMetadata"][0]["typeName"] == "text"
    assert started["Id"] in [s["Id"] for s in aws(proxy, "list-statements")["Statements"]]
    with proxy.connect() as admin:
        logged = wait_for(lambda: admin.execute(
            "SELECT DISTINCT username, application_name, authmethod FROM stl_connection_log "
            "WHERE application_name = %s AND event = 'authenticated'", (f"Redshift Data API {started['Id']}",)
        ).fetchall())
    assert [tuple(v.strip() for v in row) for row in logged] == [
        (f"IAM:{ADMIN}", f"Redshift Data API {started['Id']}", "IAM AssumeUser")]
    activity = wait_for(lambda: [l for l in lines(tmp_path / "audit" / "useractivitylog") if marker in l])
    assert f"user={ADMIN}" in activity[0]


def test_security_groups_and_require_ssl(make_proxy):
    """As on AWS the Data API does not pass the cluster's security groups (IAM decides), and its
    sessions are encrypted, so require_ssl lets them in."""
    cluster = replace(Cluster(), identifier="dapi-gated", security_groups=["app"])
    proxy = make_proxy(iam=IAM, cluster=cluster, tls__require_ssl=True,
                       security_groups=[SecurityGroup("app", "far away", [IngressRule("10.0.0.0/8")])])
    with pytest.raises(psycopg.OperationalError):
        proxy.connect(sslmode="require")  # from 127.0.0.1: dropped by the security group
    api = data_client(proxy)
    started = api.execute_statement(ClusterIdentifier="dapi-gated", Database="dev", DbUser=ADMIN,
                                    Sql="SELECT current_user")
    assert finished(api, started["Id"])["Status"] == "FINISHED"  # over TLS: require_ssl admits nothing else
    assert records(api, started["Id"])[1] == [[ADMIN]]


def test_a_result_over_the_limit_is_cancelled(data_proxy):
    """A result larger than the limit fails its statement and is not read to its end: the
    statement is cancelled in the database (the limit is 100 MB; here a session's run is given
    a smaller one)."""
    proxy = data_proxy.proxy

    async def too_big():
        minted = proxy.context.tokens.mint("IAM", ADMIN, "dev", [], 900)
        await proxy.catalog.record_token(minted, "dev", [], [])
        session = await DataSession.open(proxy.context, minted.db_user, minted.password, "dev", "limit test")
        try:
            # the series in the select list: rows stream from the first (in FROM, PostgreSQL would
            # store all 10^8 before sending one)
            await session.run("SELECT repeat('x', 1000), generate_series(1, 100000000)", 100_000)
        except StatementFailed as exc:
            return str(exc), (await session.run("SELECT 'still usable'", 1000)).rows
        finally:
            session.close()

    assert data_proxy.call(too_big(), timeout=60) == (
        "ERROR: The query result exceeds the Data API's limit of 100000 bytes", [[b"still usable"]])


def test_a_roles_sessions_share_its_statements(make_proxy):
    """Statements of a role session are visible to the role's other sessions (ListStatements'
    RoleLevel, true by default, says whether they are listed), and to no one else; without
    DbUser a role session runs as IAMR:<role>, created on first use."""
    role = unique("tmp_dapi_role")
    may_assume = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"}]}
    iam = Iam(users=[IamUser("alice", [AccessKey(ALICE_KEY, ALICE_SECRET)], policies=[may_assume, DATA_API_POLICY])],
              roles=[IamRole(role, trust=["alice"], policies=[DATA_API_POLICY])])
    proxy = make_proxy(iam=iam)
    sts = boto3.client("sts", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                       aws_access_key_id=ALICE_KEY, aws_secret_access_key=ALICE_SECRET)

    def session(name: str):
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName=name)["Credentials"]
        return boto3.client("redshift-data", endpoint_url=f"http://127.0.0.1:{proxy.api_port}",
                            region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])

    first, second = session("first"), session("second")
    try:
        started = first.execute_statement(ClusterIdentifier=CLUSTER, Database="dev", Sql="SELECT current_user")
        assert started["DbUser"] == f"IAMR:{role}"
        assert finished(second, started["Id"])["Status"] == "FINISHED"
        assert records(second, started["Id"])[1] == [[f"IAMR:{role}"]]
        assert started["Id"] in [s["Id"] for s in second.list_statements()["Statements"]]
        assert started["Id"] not in [s["Id"] for s in second.list_statements(RoleLevel=False)["Statements"]]
        assert started["Id"] in [s["Id"] for s in first.list_statements(RoleLevel=False)["Statements"]]
        alice = data_client(proxy)
        with pytest.raises(alice.exceptions.ResourceNotFoundException):
            alice.describe_statement(Id=started["Id"])
    finally:
        with proxy.connect() as admin:
            admin.execute(f'DROP USER IF EXISTS "IAMR:{role}"')


def test_client_token_and_the_active_statement_limit(data_proxy, monkeypatch):
    api = data_client(data_proxy)
    request = {"ClusterIdentifier": CLUSTER, "Database": "dev", "DbUser": ADMIN, "Sql": "SELECT pg_sleep(60)"}
    first = api.execute_statement(**request, ClientToken="retry-me")
    assert api.execute_statement(**request, ClientToken="retry-me")["Id"] == first["Id"]  # a retry: the same
    monkeypatch.setattr(data_api, "ACTIVE_LIMIT", 1)  # 200 in earnest
    with pytest.raises(api.exceptions.ActiveStatementsExceededException):
        api.execute_statement(**request)
    api.cancel_statement(Id=first["Id"])
    assert finished(api, first["Id"])["Status"] == "ABORTED"
    assert finished(api, api.execute_statement(**{**request, "Sql": "SELECT 1"})["Id"])["Status"] == "FINISHED"
