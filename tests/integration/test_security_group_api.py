"""Cluster security groups changed through the Redshift API (real boto3 and the AWS CLI), as the
next connection meets them: on this proxy at once, on another proxy on the same backend, and
after a restart; and how the YAML and the API's changes combine. Loopback addresses play other
hosts (127.0.0.2, 127.0.0.3, ...)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import boto3
import botocore.exceptions
import psycopg
import pytest
from botocore.config import Config as BotoConfig

from proxy.config import AccessKey, Cluster, Iam, IamUser, IngressRule, SecurityGroup

from ..conftest import ADMIN, ADMIN_PASSWORD, RunningProxy, unique
from .test_connectivity import attempt

ACCOUNT = "123456789012"
CLUSTER = "shiftguard"
ARN = f"arn:aws:redshift:us-east-1:{ACCOUNT}"
OPS_KEY, OPS_SECRET = "AKIAOPS0000000000001", "ops-secret-access-key-0000001"
VIEWER_KEY, VIEWER_SECRET = "AKIAVIEWER0000000001", "viewer-secret-access-key-00001"
NOBODY_KEY, NOBODY_SECRET = "AKIANOBODY0000000001", "nobody-secret-access-key-00001"

OPS_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "redshift:*", "Resource": "*"}]}
# May look at every group, and change the ingress rules of the group named office only.
VIEWER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["redshift:DescribeClusterSecurityGroups", "redshift:DescribeClusters"],
     "Resource": "*"},
    {"Effect": "Allow", "Action": "redshift:AuthorizeClusterSecurityGroupIngress",
     "Resource": f"{ARN}:securitygroup:office"}]}


def yaml_groups(*cidrs: str, tag: str | None = None) -> dict:
    """Configuration changes: one group 'app' with cidrs, attached. Each call's description is
    new unless tag is given: every proxy in the suite shares one backend, and a YAML that differs
    from the one last applied replaces the stored security groups (docs/connectivity.md), so each
    test starts from its own YAML rather than from an earlier test's API changes."""
    return {"security_groups": [SecurityGroup("app", tag or unique("yaml"), [IngressRule(c) for c in cidrs])],
            "cluster": replace(Cluster(), security_groups=["app"])}


IAM = Iam(users=[IamUser("ops", [AccessKey(OPS_KEY, OPS_SECRET)], policies=[OPS_POLICY]),
                 IamUser("viewer", [AccessKey(VIEWER_KEY, VIEWER_SECRET)], policies=[VIEWER_POLICY]),
                 IamUser("nobody", [AccessKey(NOBODY_KEY, NOBODY_SECRET)])])


def client(proxy, key=OPS_KEY, secret=OPS_SECRET):
    return boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=BotoConfig(retries={"max_attempts": 1}))


class SourceBound:
    """A loopback forwarder whose connections to the proxy come from `source`. libpq cannot bind
    a source address, so psycopg connects here and the proxy sees the client as `source`; when
    the proxy closes without a reply, so does the forwarder."""

    def __init__(self, source: str, target: tuple[str, int]):
        self.source, self.target = source, target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def connect(self, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=password, dbname="dev",
                               sslmode="disable", connect_timeout=10, autocommit=True)

    def close(self) -> None:
        _shutdown(self.listener)
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(downstream,), daemon=True).start()

    def _forward(self, downstream: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10, source_address=(self.source, 0))
        except OSError:
            downstream.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, downstream), daemon=True)
        back.start()
        _pump(downstream, upstream)
        back.join(10)
        upstream.close()
        downstream.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:  # either side gone: end both directions (shutdown wakes the other pump's recv)
        _shutdown(source)
        _shutdown(sink)


@pytest.fixture
def from_127_0_0_2(request):
    made = []

    def make(proxy) -> SourceBound:
        made.append(SourceBound("127.0.0.2", (proxy.host, proxy.port)))
        return made[-1]

    yield make
    for forwarder in made:
        forwarder.close()


def eventually(check, timeout: float = 10.0) -> bool:
    """Poll check() until it is true or timeout passes; its last answer."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return check()
        time.sleep(0.05)
    return True


def refused(forwarder: SourceBound) -> bool:
    try:
        forwarder.connect().close()
    except psycopg.OperationalError:
        return True
    return False


def test_authorize_attach_connect_revoke(make_proxy, from_127_0_0_2):
    proxy = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32"))
    api = client(proxy)
    office = from_127_0_0_2(proxy)
    assert attempt(proxy, "127.0.0.2") == "dropped"

    created = api.create_cluster_security_group(ClusterSecurityGroupName="office", Description="the office")
    assert created["ClusterSecurityGroup"] == {"ClusterSecurityGroupName": "office", "Description": "the office",
                                               "EC2SecurityGroups": [], "IPRanges": [], "Tags": []}
    authorized = api.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="office",
                                                              CIDRIP="127.0.0.2/32")
    assert authorized["ClusterSecurityGroup"]["IPRanges"] == [
        {"CIDRIP": "127.0.0.2/32", "Status": "authorized", "Tags": []}]
    assert attempt(proxy, "127.0.0.2") == "dropped"  # a rule of a group not attached admits no one

    modified = api.modify_cluster(ClusterIdentifier=CLUSTER, ClusterSecurityGroups=["app", "office"])
    assert modified["Cluster"]["ClusterSecurityGroups"] == [
        {"ClusterSecurityGroupName": "app", "Status": "active"},
        {"ClusterSecurityGroupName": "office", "Status": "active"}]
    established = office.connect()  # the very next connection, no waiting
    assert established.execute("SELECT current_user").fetchone() == (ADMIN,)

    api.revoke_cluster_security_group_ingress(ClusterSecurityGroupName="office", CIDRIP="127.0.0.2/32")
    assert attempt(proxy, "127.0.0.2") == "dropped"  # closed without a reply
    assert refused(office)
    assert established.execute("SELECT 1").fetchone() == (1,)  # a session already open is kept
    established.close()

    (group,) = api.describe_cluster_security_groups(ClusterSecurityGroupName="office")["ClusterSecurityGroups"]
    assert (group["Description"], group["IPRanges"], group["EC2SecurityGroups"]) == ("the office", [], [])
    everything = api.describe_cluster_security_groups()["ClusterSecurityGroups"]
    assert [(g["ClusterSecurityGroupName"], [r["CIDRIP"] for r in g["IPRanges"]]) for g in everything] == [
        ("app", ["127.0.0.1/32"]), ("office", [])]
    (cluster,) = api.describe_clusters(ClusterIdentifier=CLUSTER)["Clusters"]
    assert [g["ClusterSecurityGroupName"] for g in cluster["ClusterSecurityGroups"]] == ["app", "office"]

    api.modify_cluster(ClusterIdentifier=CLUSTER, ClusterSecurityGroups=["app"])
    api.delete_cluster_security_group(ClusterSecurityGroupName="office")  # detached: may go
    with pytest.raises(api.exceptions.ClusterSecurityGroupNotFoundFault):
        api.describe_cluster_security_groups(ClusterSecurityGroupName="office")
    with proxy.connect() as conn:  # 127.0.0.1 was admitted by app all along
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_modelled_exceptions(make_proxy):
    proxy = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32"))
    api = client(proxy)
    api.create_cluster_security_group(ClusterSecurityGroupName="office", Description="")
    with pytest.raises(api.exceptions.ClusterSecurityGroupAlreadyExistsFault):
        api.create_cluster_security_group(ClusterSecurityGroupName="office", Description="again")
    with pytest.raises(api.exceptions.ClusterSecurityGroupAlreadyExistsFault):  # the YAML's group too
        api.create_cluster_security_group(ClusterSecurityGroupName="app", Description="")
    with pytest.raises(api.exceptions.ClusterSecurityGroupNotFoundFault):
        api.delete_cluster_security_group(ClusterSecurityGroupName="nowhere")
    with pytest.raises(api.exceptions.ClusterSecurityGroupNotFoundFault):
        api.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="nowhere", CIDRIP="10.0.0.0/8")
    with pytest.raises(api.exceptions.InvalidClusterSecurityGroupStateFault):
        api.delete_cluster_security_group(ClusterSecurityGroupName="app")  # attached
    with pytest.raises(api.exceptions.ClusterSecurityGroupNotFoundFault):
        api.modify_cluster(ClusterIdentifier=CLUSTER, ClusterSecurityGroups=["app", "nowhere"])
    with pytest.raises(api.exceptions.ClusterNotFoundFault):
        api.modify_cluster(ClusterIdentifier="other", ClusterSecurityGroups=["app"])

    api.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="office", CIDRIP="2001:DB8:0::/32")
    api.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="office", CIDRIP="10.1.2.3/16")
    with pytest.raises(api.exceptions.AuthorizationAlreadyExistsFault):
        api.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="office", CIDRIP="2001:db8::/32")
    with pytest.raises(api.exceptions.AuthorizationNotFoundFault):
        api.revoke_cluster_security_group_ingress(ClusterSecurityGroupName="office", CIDRIP="192.0.2.0/24")
    for bad in ("127.0.0.300/32", "10.0.0.0", "10.0.0.0/33", "2001:db8::/129", "2001:db8::g/64", "any"):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            api.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="office", CIDRIP=bad)
        assert info.value.response["Error"]["Code"] == "InvalidParameterValue", bad
    (group,) = api.describe_cluster_security_groups(ClusterSecurityGroupName="office")["ClusterSecurityGroups"]
    assert [r["CIDRIP"] for r in group["IPRanges"]] == ["2001:db8::/32", "10.1.0.0/16"]  # stored canonical
    with pytest.raises(api.exceptions.UnsupportedOperationFault):
        api.modify_cluster(ClusterIdentifier=CLUSTER, NodeType="dc2.large")


def test_iam_decides_who_may_change_security_groups(make_proxy):
    proxy = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32"))
    client(proxy).create_cluster_security_group(ClusterSecurityGroupName="office", Description="")
    nobody, viewer = client(proxy, NOBODY_KEY, NOBODY_SECRET), client(proxy, VIEWER_KEY, VIEWER_SECRET)
    for call in (lambda c: c.create_cluster_security_group(ClusterSecurityGroupName="lab", Description=""),
                 lambda c: c.delete_cluster_security_group(ClusterSecurityGroupName="office"),
                 lambda c: c.revoke_cluster_security_group_ingress(ClusterSecurityGroupName="app",
                                                                   CIDRIP="127.0.0.1/32"),
                 lambda c: c.modify_cluster(ClusterIdentifier=CLUSTER, ClusterSecurityGroups=[])):
        for who in (nobody, viewer):
            with pytest.raises(botocore.exceptions.ClientError) as info:
                call(who)
            assert info.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        nobody.describe_cluster_security_groups()
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    viewer.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="office", CIDRIP="127.0.0.5/32")
    with pytest.raises(botocore.exceptions.ClientError) as info:  # the policy names office only
        viewer.authorize_cluster_security_group_ingress(ClusterSecurityGroupName="app", CIDRIP="127.0.0.5/32")
    assert info.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/viewer is not authorized to perform: "
        f"redshift:AuthorizeClusterSecurityGroupIngress on resource: {ARN}:securitygroup:app")
    groups = viewer.describe_cluster_security_groups()["ClusterSecurityGroups"]
    assert {g["ClusterSecurityGroupName"]: [r["CIDRIP"] for r in g["IPRanges"]] for g in groups} == {
        "app": ["127.0.0.1/32"], "office": ["127.0.0.5/32"]}
    assert attempt(proxy, "127.0.0.5") == "dropped"  # the denied calls changed nothing: office is not attached


def test_another_proxy_and_a_restart_see_the_change(make_proxy, postgres, from_127_0_0_2):
    tag = unique("yaml")
    first = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32", tag=tag))
    second = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32", tag=tag))  # same YAML, same backend
    via_second = from_127_0_0_2(second)
    assert refused(via_second)
    client(first).authorize_cluster_security_group_ingress(ClusterSecurityGroupName="app", CIDRIP="127.0.0.2/32")
    assert eventually(lambda: attempt(second, "127.0.0.2") == "admitted")  # polled within about a second
    with via_second.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    first.stop()  # restarted with the same configuration and data directory: the change is kept
    restarted = RunningProxy(first.config, postgres.target).start()
    try:
        assert attempt(restarted, "127.0.0.2") == "admitted"
        (group,) = client(restarted).describe_cluster_security_groups(ClusterSecurityGroupName="app")[
            "ClusterSecurityGroups"]
        assert [r["CIDRIP"] for r in group["IPRanges"]] == ["127.0.0.1/32", "127.0.0.2/32"]

        client(second).revoke_cluster_security_group_ingress(ClusterSecurityGroupName="app", CIDRIP="127.0.0.2/32")
        assert eventually(lambda: attempt(restarted, "127.0.0.2") == "dropped")
    finally:
        restarted.stop()


def test_an_edited_yaml_replaces_the_api_changes(make_proxy):
    tag = unique("yaml")
    proxy = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32", tag=tag))
    client(proxy).authorize_cluster_security_group_ingress(ClusterSecurityGroupName="app", CIDRIP="127.0.0.2/32")

    async def reload(config):
        proxy.proxy.reload(config)

    same = replace(proxy.config, log_level="debug")  # reloaded, security groups unchanged: kept
    proxy.call(reload(same))
    edited = replace(proxy.config, **yaml_groups("127.0.0.1/32", "127.0.0.3/32", tag=tag))
    assert attempt(proxy, "127.0.0.2") == "admitted"
    proxy.call(reload(edited))  # the YAML's groups changed: they replace the stored ones
    assert eventually(lambda: attempt(proxy, "127.0.0.3") == "admitted")
    assert attempt(proxy, "127.0.0.2") == "dropped"
    (cluster,) = client(proxy).describe_clusters()["Clusters"]
    assert [g["ClusterSecurityGroupName"] for g in cluster["ClusterSecurityGroups"]] == ["app"]


def test_aws_cli(make_proxy):
    proxy = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32"))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": OPS_KEY, "AWS_SECRET_ACCESS_KEY": OPS_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_ENDPOINT_URL_REDSHIFT", None)
    result = subprocess.run([sys.executable, "-m", "awscli", "redshift", "authorize-cluster-security-group-ingress",
                             "--endpoint-url", f"http://127.0.0.1:{proxy.api_port}",
                             "--cluster-security-group-name", "app", "--cidrip", "127.0.0.3/32"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    group = json.loads(result.stdout)["ClusterSecurityGroup"]
    assert [r["CIDRIP"] for r in group["IPRanges"]] == ["127.0.0.1/32", "127.0.0.3/32"]
    assert attempt(proxy, "127.0.0.3") == "admitted"


def test_unreadable_stored_state_keeps_the_last_good_rules(make_proxy, postgres, caplog):
    caplog.set_level(logging.INFO, logger="proxy.catalog.connectivity")
    proxy = make_proxy(iam=IAM, **yaml_groups("127.0.0.1/32"))
    with postgres.connect() as direct:  # a broken rule arrives together with a good one
        with direct.transaction():
            direct.execute("INSERT INTO shiftguard_rows.security_group_ingress (group_name, cidr) "
                           "VALUES ('app', '127.0.0.2/32'), ('app', 'garbage')")
            direct.execute("UPDATE shiftguard_rows.connectivity SET version = version + 1")
        assert eventually(lambda: "cannot read the stored state" in caplog.text)
        assert attempt(proxy, "127.0.0.2") == "dropped"  # nothing of the broken state is in force
        with proxy.connect() as conn:                       # and the last good state still is
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(botocore.exceptions.ClientError) as info:
            client(proxy).describe_cluster_security_groups()
        assert info.value.response["Error"]["Code"] == "InternalFailure"
        with direct.transaction():
            direct.execute("DELETE FROM shiftguard_rows.security_group_ingress WHERE cidr = 'garbage'")
            direct.execute("UPDATE shiftguard_rows.connectivity SET version = version + 1")
    assert eventually(lambda: attempt(proxy, "127.0.0.2") == "admitted")
    assert "the stored state is readable again" in caplog.text
