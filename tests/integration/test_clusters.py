"""CreateCluster, DescribeClusters and DeleteCluster with real boto3 and the AWS CLI: a second
cluster is an embedded PostgreSQL and a listener of its own, found and reached by
redshift_connector's iam=True through DescribeClusters, with users and temporary credentials
of its own; it survives a restart and leaves no server behind. Each test makes one cluster."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import boto3
import psycopg
import pytest
import redshift_connector

from proxy.backend.embedded import server_directory
from proxy.config import AccessKey, Cluster, Iam, IamRole, IamUser

from ..conftest import ADMIN, ADMIN_PASSWORD, RunningProxy, unique, wait_for
from .test_cluster_api import OPS_KEY, OPS_POLICY, OPS_SECRET, VIEWER_KEY, VIEWER_SECRET, aws, client, error_code
from .test_data_api import data_client, finished, records

# ops (test_cluster_api's) may do anything; viewer may describe and get credentials, no more;
# maker may also create clusters tagged team=data.
VIEWER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["redshift:Describe*", "redshift:GetClusterCredentials",
                                   "redshift:CreateClusterUser", "redshift-data:*"], "Resource": "*"}]}
MAKER_KEY, MAKER_SECRET = "AKIAMAKER00000000001", "maker-secret-access-key-000001"
MAKER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:CreateCluster", "Resource": "*",
     "Condition": {"StringEquals": {"aws:RequestTag/team": "data"}}}]}
# team may describe the clusters tagged team=data only.
TEAM_KEY, TEAM_SECRET = "AKIATEAM000000000001", "team-secret-access-key-0000001"
TEAM_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:DescribeClusters", "Resource": "*",
     "Condition": {"StringEquals": {"aws:ResourceTag/team": "data"}}}]}
# ops may assume the role loader, whose sessions may log in to any cluster as themselves.
MAY_ASSUME = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::123456789012:role/*"}]}
LOADER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:GetClusterCredentialsWithIAM", "Resource": "*"}]}
IAM = Iam(users=[IamUser("team", [AccessKey(TEAM_KEY, TEAM_SECRET)], policies=[TEAM_POLICY]),
                 IamUser("ops", [AccessKey(OPS_KEY, OPS_SECRET)], policies=[OPS_POLICY, MAY_ASSUME]),
                 IamUser("viewer", [AccessKey(VIEWER_KEY, VIEWER_SECRET)], policies=[VIEWER_POLICY]),
                 IamUser("maker", [AccessKey(MAKER_KEY, MAKER_SECRET)], policies=[VIEWER_POLICY, MAKER_POLICY])],
          roles=[IamRole("loader", trust=["ops"], policies=[LOADER_POLICY])])
BOSS_PASSWORD = "Boss1Password"
FAST = {"Delay": 1, "MaxAttempts": 120}  # the waiters' 60 s between looks is for real clusters


def configured(make_proxy, **changes):
    name = uuid.uuid4().hex[:8]
    return make_proxy(iam=IAM, cluster=replace(Cluster(), identifier=f"c-{name}"), **changes)


def endpoint(api, identifier: str) -> tuple[str, int]:
    address = api.describe_clusters(ClusterIdentifier=identifier)["Clusters"][0]["Endpoint"]
    return address["Address"], address["Port"]


def login(address: tuple[str, int], user: str, password: str, sslmode: str = "disable") -> psycopg.Connection:
    return psycopg.connect(host=address[0], port=address[1], user=user, password=password, dbname="dev",
                           sslmode=sslmode, connect_timeout=10, autocommit=True)


def servers_of(directory: Path) -> list[str]:
    """The postgres processes running on a cluster's data directory."""
    pgdata = str(server_directory(directory) / "pgdata")
    found = subprocess.run(["pgrep", "-a", "postgres"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if pgdata in line]


@pytest.fixture
def leftovers():
    """Cluster directories whose server's files are removed after the test even if it fails
    (when the suite runs as root they are outside the test's temporary directory)."""
    directories: list[Path] = []
    yield directories
    for directory in directories:
        shutil.rmtree(server_directory(directory), ignore_errors=True)


def test_second_cluster_reached_by_iam_login_with_users_and_credentials_of_its_own(make_proxy, monkeypatch,
                                                                                   leftovers):
    proxy = configured(make_proxy)
    first = proxy.config.cluster.identifier
    api, viewer = client(proxy), client(proxy, VIEWER_KEY, VIEWER_SECRET)
    new = unique("second").replace("_", "-")
    leftovers.append(Path(proxy.config.data_dir) / "clusters" / new)
    maker = client(proxy, MAKER_KEY, MAKER_SECRET)
    for caller, tags in ((viewer, [{"Key": "team", "Value": "data"}]), (maker, []),
                         (maker, [{"Key": "team", "Value": "web"}])):
        assert error_code(lambda: caller.create_cluster(
            ClusterIdentifier=new, NodeType="dc2.large", MasterUsername="boss", MasterUserPassword=BOSS_PASSWORD,
            Tags=tags)) == "AccessDenied"
    assert error_code(lambda: api.create_cluster(
        ClusterIdentifier=new, NodeType="dc2.large", MasterUsername="boss", MasterUserPassword="weak")) \
        == "InvalidParameterValue"
    assert error_code(lambda: api.create_cluster(
        ClusterIdentifier="bad--name", NodeType="dc2.large", MasterUsername="boss",
        MasterUserPassword=BOSS_PASSWORD)) == "InvalidParameterValue"
    with pytest.raises(api.exceptions.UnsupportedOperationFault, match="KmsKeyId"):
        api.create_cluster(ClusterIdentifier=new, NodeType="dc2.large", MasterUsername="boss",
                           MasterUserPassword=BOSS_PASSWORD, KmsKeyId="key")
    with pytest.raises(api.exceptions.ClusterAlreadyExistsFault):
        api.create_cluster(ClusterIdentifier=first, NodeType="dc2.large", MasterUsername="boss",
                           MasterUserPassword=BOSS_PASSWORD)

    made = maker.create_cluster(ClusterIdentifier=new, NodeType="dc2.large", MasterUsername="boss",
                                MasterUserPassword=BOSS_PASSWORD, Tags=[{"Key": "team", "Value": "data"}])["Cluster"]
    assert (made["ClusterIdentifier"], made["ClusterStatus"], made["MasterUsername"]) == (new, "creating", "boss")
    with pytest.raises(api.exceptions.ClusterAlreadyExistsFault):
        api.create_cluster(ClusterIdentifier=new, NodeType="dc2.large", MasterUsername="other",
                           MasterUserPassword=BOSS_PASSWORD)
    # Starting a PostgreSQL takes a while (initdb first): meanwhile it cannot be deleted.
    assert error_code(lambda: api.delete_cluster(ClusterIdentifier=new, SkipFinalClusterSnapshot=True)) \
        == "InvalidClusterState"
    api.get_waiter("cluster_available").wait(ClusterIdentifier=new, WaiterConfig=FAST)

    listed = api.describe_clusters()["Clusters"]
    assert [(c["ClusterIdentifier"], c["ClusterStatus"], c["Tags"]) for c in listed] == sorted(
        [(first, "available", []), (new, "available", [{"Key": "team", "Value": "data"}])])
    team = client(proxy, TEAM_KEY, TEAM_SECRET)
    assert [c["ClusterIdentifier"] for c in team.describe_clusters()["Clusters"]] == [new]
    assert error_code(lambda: team.describe_clusters(ClusterIdentifier=first)) == "AccessDenied"
    pages = api.get_paginator("describe_clusters").paginate(PaginationConfig={"PageSize": 20})
    assert [c["ClusterIdentifier"] for page in pages for c in page["Clusters"]] == sorted([first, new])
    assert error_code(lambda: api.describe_clusters(MaxRecords=5)) == "InvalidParameterValue"
    second = endpoint(api, new)
    assert second != (proxy.host, proxy.port)
    with pytest.raises(api.exceptions.ClusterNotFoundFault):
        api.describe_clusters(ClusterIdentifier="no-such-cluster")

    # Its admin is CreateCluster's; the first cluster's users do not exist there.
    with login(second, "boss", BOSS_PASSWORD) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("boss", "dev")
        assert conn.execute("SELECT count(*) FROM pg_user WHERE usename = %s", (ADMIN,)).fetchone() == (0,)
        conn.execute("CREATE USER only_here PASSWORD 'Only1Here'")
    with proxy.connect() as conn:
        conn.execute("CREATE USER only_first PASSWORD 'Only1First'")
    try:
        for user, password in ((ADMIN, ADMIN_PASSWORD), ("only_first", "Only1First")):
            with pytest.raises(psycopg.OperationalError, match="authentication failed"):
                login(second, user, password)
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            login((proxy.host, proxy.port), "only_here", "Only1Here")
    finally:
        with proxy.connect() as conn:
            conn.execute("DROP USER only_first")

    # redshift_connector finds the cluster through DescribeClusters (no host or port given) and
    # logs in with GetClusterCredentials over TLS, verifying the cluster's own certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(proxy.config.data_dir) / "clusters" / new / "tls" / "server.crt"))
    conn = redshift_connector.connect(
        iam=True, db_user="tmp_alice", auto_create=True, cluster_identifier=new, region="us-east-1",
        access_key_id=VIEWER_KEY, secret_access_key=VIEWER_SECRET, endpoint_url=f"http://127.0.0.1:{proxy.api_port}",
        database="dev", ssl=True, sslmode="verify-ca", iam_disable_cache=True, timeout=20)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT current_user, inet_server_port() IS NOT NULL")
        assert cursor.fetchall()[0][0] == "tmp_alice"
    finally:
        conn.close()

    # The Data API runs a statement in the cluster it names, as that cluster's user.
    data = data_client(proxy, VIEWER_KEY, VIEWER_SECRET)
    started = data.execute_statement(ClusterIdentifier=new, Database="dev", DbUser="boss",
                                     Sql="SELECT current_user, (SELECT count(*) FROM pg_user WHERE usename = 'only_here')")
    assert finished(data, started["Id"])["Status"] == "FINISHED"
    assert records(data, started["Id"])[1] == [["boss", 1]]
    started = data.execute_statement(ClusterIdentifier=first, Database="dev", DbUser="boss", Sql="SELECT 1")
    assert finished(data, started["Id"])["Status"] == "FAILED"  # no user boss in the first cluster

    # A cluster's temporary credentials log in to that cluster only.
    mine = viewer.get_cluster_credentials(DbUser="tmp_bob", ClusterIdentifier=new, AutoCreate=True, DbName="dev")
    theirs = viewer.get_cluster_credentials(DbUser="tmp_bob", ClusterIdentifier=first, AutoCreate=True, DbName="dev")
    with login(second, mine["DbUser"], mine["DbPassword"], "require") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("tmp_bob",)
    for address, creds in ((second, theirs), ((proxy.host, proxy.port), mine)):
        for sslmode in ("require", "disable"):  # the token itself, and MD5 over it
            with pytest.raises(psycopg.OperationalError, match="authentication failed"):
                login(address, creds["DbUser"], creds["DbPassword"], sslmode)
    with proxy.connect() as conn:
        conn.execute("DROP USER IF EXISTS tmp_bob")
    # An STS session (kept in the first cluster's database) calls the API for the second too.
    session = boto3.client("sts", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                           aws_access_key_id=OPS_KEY, aws_secret_access_key=OPS_SECRET).assume_role(
        RoleArn="arn:aws:iam::123456789012:role/loader", RoleSessionName="load")["Credentials"]
    as_role = boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                           aws_access_key_id=session["AccessKeyId"], aws_secret_access_key=session["SecretAccessKey"],
                           aws_session_token=session["SessionToken"])
    creds = as_role.get_cluster_credentials_with_iam(ClusterIdentifier=new, DbName="dev")
    with login(second, creds["DbUser"], creds["DbPassword"], "require") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("IAMR:loader",)

    # Deleting: allowed by policy, and only without a final snapshot.
    directory = Path(proxy.config.data_dir) / "clusters" / new
    assert servers_of(directory)
    assert error_code(lambda: viewer.delete_cluster(ClusterIdentifier=new, SkipFinalClusterSnapshot=True)) \
        == "AccessDenied"
    assert error_code(lambda: api.delete_cluster(ClusterIdentifier=new)) == "InvalidParameterCombination"
    with pytest.raises(api.exceptions.UnsupportedOperationFault, match="Snapshots"):
        api.delete_cluster(ClusterIdentifier=new, FinalClusterSnapshotIdentifier="final")
    with pytest.raises(api.exceptions.UnsupportedOperationFault, match="configured"):
        api.delete_cluster(ClusterIdentifier=first, SkipFinalClusterSnapshot=True)
    with login(second, "boss", BOSS_PASSWORD) as session:
        deleted = api.delete_cluster(ClusterIdentifier=new, SkipFinalClusterSnapshot=True)["Cluster"]
        assert (deleted["ClusterIdentifier"], deleted["ClusterStatus"]) == (new, "deleting")
        api.get_waiter("cluster_deleted").wait(ClusterIdentifier=new, WaiterConfig=FAST)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    with pytest.raises(api.exceptions.ClusterNotFoundFault):
        api.delete_cluster(ClusterIdentifier=new, SkipFinalClusterSnapshot=True)
    assert [c["ClusterIdentifier"] for c in api.describe_clusters()["Clusters"]] == [first]
    assert not directory.exists() and not server_directory(directory).exists()
    assert not servers_of(directory)
    with pytest.raises(psycopg.OperationalError):
        login(second, "boss", BOSS_PASSWORD)


def test_aws_cli_cluster_survives_a_restart_and_stops_with_shiftguard(make_proxy, postgres, leftovers):
    proxy = configured(make_proxy)
    api = client(proxy)
    new = f"kept-{uuid.uuid4().hex[:8]}"
    leftovers.append(Path(proxy.config.data_dir) / "clusters" / new)
    made = aws(proxy, "create-cluster", "--cluster-identifier", new, "--node-type", "dc2.large",
               "--master-username", "Boss", "--master-user-password", BOSS_PASSWORD, "--db-name", "sales",
               "--tags", "Key=team,Value=data")
    assert made["Cluster"]["ClusterStatus"] == "creating" and made["Cluster"]["DBName"] == "sales"
    api.get_waiter("cluster_available").wait(ClusterIdentifier=new, WaiterConfig=FAST)
    described = aws(proxy, "describe-clusters", "--cluster-identifier", new)["Clusters"][0]
    assert described["MasterUsername"] == "boss" and described["ClusterStatus"] == "available"
    address = (described["Endpoint"]["Address"], described["Endpoint"]["Port"])
    with psycopg.connect(host=address[0], port=address[1], user="boss", password=BOSS_PASSWORD, dbname="sales",
                         sslmode="disable", autocommit=True) as conn:
        conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    denied = aws(proxy, "delete-cluster", "--cluster-identifier", new, "--skip-final-cluster-snapshot",
                 key=VIEWER_KEY, secret=VIEWER_SECRET, ok=False)
    assert "AccessDenied" in denied

    directory = Path(proxy.config.data_dir) / "clusters" / new
    proxy.stop(grace=1.0)
    assert not servers_of(directory)  # shiftguard's stop stops every cluster's server

    again = RunningProxy(proxy.config, postgres.target).start()
    try:
        api = client(again)
        api.get_waiter("cluster_available").wait(ClusterIdentifier=new, WaiterConfig=FAST)
        assert endpoint(api, new) == address  # its port again, as it is free
        with psycopg.connect(host=address[0], port=address[1], user="boss", password=BOSS_PASSWORD, dbname="sales",
                             sslmode="disable", autocommit=True) as conn:
            assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)

        # Renamed: the same cluster under its new name; credentials minted for the old name
        # no longer log in, the new name's do.
        before = api.get_cluster_credentials(DbUser="boss", ClusterIdentifier=new, DbName="sales")
        renamed = f"renamed-{uuid.uuid4().hex[:8]}"
        leftovers.append(Path(proxy.config.data_dir) / "clusters" / renamed)
        assert error_code(lambda: api.modify_cluster(ClusterIdentifier=new, NewClusterIdentifier=renamed,
                                                     MasterUserPassword="Other1Password")) == "UnsupportedOperation"
        assert error_code(lambda: api.modify_cluster(ClusterIdentifier=new,
                                                     NewClusterIdentifier=again.config.cluster.identifier)) \
            == "ClusterAlreadyExists"
        assert error_code(lambda: api.modify_cluster(ClusterIdentifier=again.config.cluster.identifier,
                                                     NewClusterIdentifier=renamed)) == "UnsupportedOperation"
        answer = aws(again, "modify-cluster", "--cluster-identifier", new, "--new-cluster-identifier", renamed)
        assert (answer["Cluster"]["ClusterIdentifier"], answer["Cluster"]["ClusterStatus"]) == (renamed, "renaming")
        api.get_waiter("cluster_available").wait(ClusterIdentifier=renamed, WaiterConfig=FAST)
        with pytest.raises(api.exceptions.ClusterNotFoundFault):
            api.describe_clusters(ClusterIdentifier=new)
        assert endpoint(api, renamed) == address
        assert api.describe_clusters(ClusterIdentifier=renamed)["Clusters"][0]["Tags"] == [
            {"Key": "team", "Value": "data"}]  # its stored state went with it
        after = api.get_cluster_credentials(DbUser="boss", ClusterIdentifier=renamed, DbName="sales")
        for sslmode in ("require", "disable"):
            with pytest.raises(psycopg.OperationalError, match="authentication failed"):
                psycopg.connect(host=address[0], port=address[1], user=before["DbUser"],
                                password=before["DbPassword"], dbname="sales", sslmode=sslmode)
        with psycopg.connect(host=address[0], port=address[1], user=after["DbUser"], password=after["DbPassword"],
                             dbname="sales", sslmode="disable", autocommit=True) as conn:
            assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
        new, directory = renamed, Path(proxy.config.data_dir) / "clusters" / renamed
    finally:
        again.stop()

    # A cluster whose server cannot start (its data directory damaged) is shown failed, is
    # refused what needs it running, and can be deleted.
    (server_directory(directory) / "pgdata" / "PG_VERSION").unlink()
    again = RunningProxy(proxy.config, postgres.target).start()
    try:
        api = client(again)
        assert wait_for(lambda: api.describe_clusters(ClusterIdentifier=new)["Clusters"][0]["ClusterStatus"]
                        == "hardware-failure", timeout=120)
        assert api.describe_clusters(ClusterIdentifier=new)["Clusters"][0]["ClusterAvailabilityStatus"] == "Failed"
        assert error_code(lambda: api.get_cluster_credentials(DbUser="boss", ClusterIdentifier=new)) \
            == "InvalidClusterState"
        assert aws(again, "delete-cluster", "--cluster-identifier", new,
                   "--skip-final-cluster-snapshot")["Cluster"]["ClusterStatus"] == "deleting"
        api.get_waiter("cluster_deleted").wait(ClusterIdentifier=new, WaiterConfig=FAST)
    finally:
        again.stop()
    assert not directory.exists() and not server_directory(directory).exists()
    assert not servers_of(directory)


def test_create_cluster_needs_the_embedded_backend(make_proxy):
    proxy = configured(make_proxy, external=True)
    with pytest.raises(client(proxy).exceptions.UnsupportedOperationFault, match="embedded backend"):
        client(proxy).create_cluster(ClusterIdentifier="another", NodeType="dc2.large", MasterUsername="boss",
                                     MasterUserPassword=BOSS_PASSWORD)
