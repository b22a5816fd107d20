"""Cluster management through the Redshift API (real boto3 and the AWS CLI, IAM-authorised):
ModifyCluster's MasterUserPassword, parameter groups put in force by RebootCluster on every
proxy of the cluster, as new sessions of real clients meet them. Each test has a cluster (and
admin user) of its own: the suite's proxies share one backend."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import select
import subprocess
import sys
import uuid
from dataclasses import replace

import boto3
import botocore.exceptions
import psycopg
import pytest
from botocore.config import Config as BotoConfig

from proxy.config import AccessKey, Audit, Cluster, Iam, IamUser
from proxy.protocol.auth import redshift_md5

from ..conftest import ADMIN_PASSWORD, unique, wait_for
from .test_audit import lines

OPS_KEY, OPS_SECRET = "AKIAOPS0000000000001", "ops-secret-access-key-0000001"
VIEWER_KEY, VIEWER_SECRET = "AKIAVIEWER0000000001", "viewer-secret-access-key-00001"
ARN = "arn:aws:redshift:us-east-1:123456789012"
OPS_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "redshift:*", "Resource": "*"}]}
# May describe everything and change the parameter groups named viewers-... only.
VIEWER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "redshift:Describe*", "Resource": "*"},
    {"Effect": "Allow", "Action": "redshift:ModifyClusterParameterGroup", "Resource": f"{ARN}:parametergroup:viewers-*"}]}
IAM = Iam(users=[IamUser("ops", [AccessKey(OPS_KEY, OPS_SECRET)], policies=[OPS_POLICY]),
                 IamUser("viewer", [AccessKey(VIEWER_KEY, VIEWER_SECRET)], policies=[VIEWER_POLICY])])
NEW_PASSWORD = "Changed4Good"


def own_cluster(**changes) -> dict:
    name = uuid.uuid4().hex[:8]
    return {"iam": IAM, "cluster": replace(Cluster(), identifier=f"c-{name}", admin_user=f"admin_{name}"), **changes}


def client(proxy, key=OPS_KEY, secret=OPS_SECRET):
    return boto3.client("redshift", endpoint_url=f"http://127.0.0.1:{proxy.api_port}", region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=BotoConfig(retries={"max_attempts": 1}))


def connect(proxy, password=ADMIN_PASSWORD, **extra) -> psycopg.Connection:
    return proxy.connect(proxy.config.cluster.admin_user, password, **extra)


def error_code(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def show(proxy, setting: str) -> str:
    with connect(proxy) as conn:
        return conn.execute(f"SHOW {setting}").fetchone()[0]


def ended(conn: psycopg.Connection) -> bool:
    """Has the proxy ended this idle session with the reboot's FATAL error? Read without writing
    first (a write to a closed socket can lose the message); another proxy of the cluster
    notices a reboot within about a second."""
    notices = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary))
    if not select.select([conn.fileno()], [], [], 5)[0]:
        return False
    with contextlib.suppress(psycopg.OperationalError):
        conn.pgconn.consume_input()
    conn.pgconn.is_busy()  # parses what came: libpq reports an error that arrives while idle as a notice
    return notices == ["terminating connection due to administrator command"]


def aws(proxy, *args: str, key=OPS_KEY, secret=OPS_SECRET, ok=True):
    """The AWS CLI's answer (JSON), or with ok=False what it says when it fails."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_ENDPOINT_URL_REDSHIFT", None)
    result = subprocess.run([sys.executable, "-m", "awscli", "redshift", *args,
                             "--endpoint-url", f"http://127.0.0.1:{proxy.api_port}"],
                            capture_output=True, text=True, env=env, timeout=60)
    if not ok:
        assert result.returncode != 0
        return result.stderr
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_master_user_password(make_proxy, postgres, caplog):
    caplog.set_level(logging.DEBUG, logger="proxy")
    proxy = make_proxy(**own_cluster())
    admin, identifier = proxy.config.cluster.admin_user, proxy.config.cluster.identifier
    api = client(proxy)
    api.modify_cluster(ClusterIdentifier=identifier, MasterUserPassword=NEW_PASSWORD)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(proxy)
    with connect(proxy, NEW_PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (admin,)
    with postgres.connect() as direct:  # stored as ALTER USER ... PASSWORD stores it
        assert direct.execute("SELECT password_md5 FROM shiftguard_rows.users WHERE name = %s",
                              (admin,)).fetchone() == (redshift_md5(NEW_PASSWORD, admin),)
    assert not [r for r in caplog.records if r.name.startswith("proxy") and NEW_PASSWORD in r.getMessage()]

    for weak in ("short1A", "alllowercase1", "NoDigitsHere", "Has/Slash1"):
        assert error_code(lambda: api.modify_cluster(ClusterIdentifier=identifier,
                                                     MasterUserPassword=weak)) == "InvalidParameterValue"
    with pytest.raises(api.exceptions.UnsupportedOperationFault, match="NodeType"):
        api.modify_cluster(ClusterIdentifier=identifier, NodeType="dc2.large", MasterUserPassword="Other1Password")
    with pytest.raises(api.exceptions.ClusterNotFoundFault):
        api.modify_cluster(ClusterIdentifier="elsewhere", MasterUserPassword="Other1Password")
    viewer = client(proxy, VIEWER_KEY, VIEWER_SECRET)
    assert error_code(lambda: viewer.modify_cluster(ClusterIdentifier=identifier,
                                                    MasterUserPassword="Other1Password")) == "AccessDenied"
    with connect(proxy, NEW_PASSWORD):  # nothing refused changed it
        pass


def test_parameter_groups_take_effect_at_reboot_on_every_proxy(make_proxy):
    cluster = own_cluster()
    first, second = make_proxy(**cluster), make_proxy(**cluster)  # one cluster, two proxies
    identifier = first.config.cluster.identifier
    api, group = client(first), unique("g").replace("_", "-")
    created = api.create_cluster_parameter_group(ParameterGroupName=group.upper(), ParameterGroupFamily="redshift-1.0",
                                                 Description="tuned")["ClusterParameterGroup"]
    assert created == {"ParameterGroupName": group, "ParameterGroupFamily": "redshift-1.0", "Description": "tuned",
                       "Tags": []}
    names = [g["ParameterGroupName"] for g in api.describe_cluster_parameter_groups()["ParameterGroups"]]
    assert "default.redshift-1.0" in names and group in names
    defaults = {p["ParameterName"]: p for p in api.describe_cluster_parameters(ParameterGroupName=group)["Parameters"]}
    assert defaults["statement_timeout"] == {
        "ParameterName": "statement_timeout", "ParameterValue": "0", "Source": "engine-default",
        "DataType": "integer", "AllowedValues": "0,100-2147483647", "ApplyType": "static", "IsModifiable": True,
        "Description": "Aborts any statement that takes over the specified number of milliseconds."}
    assert {n: p["ParameterValue"] for n, p in defaults.items()} == {
        "datestyle": "ISO, MDY", "enable_case_sensitive_identifier": "false", "enable_user_activity_logging": "false",
        "extra_float_digits": "0", "require_ssl": "false", "search_path": "$user, public", "statement_timeout": "0"}

    modified = api.modify_cluster_parameter_group(ParameterGroupName=group, Parameters=[
        {"ParameterName": "statement_timeout", "ParameterValue": "60000"},
        {"ParameterName": "search_path", "ParameterValue": "pg_catalog,public"},
        {"ParameterName": "datestyle", "ParameterValue": "SQL, DMY"},
        {"ParameterName": "extra_float_digits", "ParameterValue": "2"}])
    assert modified["ParameterGroupStatus"].startswith("Your parameter group has been updated")
    user_set = api.describe_cluster_parameters(ParameterGroupName=group, Source="user")["Parameters"]
    assert {p["ParameterName"]: p["ParameterValue"] for p in user_set} == {
        "statement_timeout": "60000", "search_path": "pg_catalog, public", "datestyle": "SQL, DMY",
        "extra_float_digits": "2"}

    before = connect(first)
    api.modify_cluster(ClusterIdentifier=identifier, ClusterParameterGroupName=group)
    (status,) = api.describe_clusters()["Clusters"][0]["ClusterParameterGroups"]
    assert (status["ParameterGroupName"], status["ParameterApplyStatus"]) == (group, "pending-reboot")
    with connect(second) as conn:  # static: nothing changes before the reboot
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)

    on_second = connect(second)
    rebooted = api.reboot_cluster(ClusterIdentifier=identifier)["Cluster"]
    assert rebooted["ClusterStatus"] == "rebooting"
    assert rebooted["ClusterParameterGroups"][0]["ParameterApplyStatus"] == "in-sync"
    assert ended(before) and ended(on_second)  # every session of the cluster ends, on both proxies
    for proxy in (first, second):
        assert wait_for(lambda: show(proxy, "statement_timeout") == "1min")
        with connect(proxy) as conn:
            assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog, public",)
            assert conn.execute("SHOW DateStyle").fetchone() == ("SQL, DMY",)
            assert conn.execute("SHOW extra_float_digits").fetchone() == ("2",)
            assert conn.execute("SELECT DATE '2024-03-01'::text").fetchone() == ("01/03/2024",)
    with connect(first, options="-c statement_timeout=5000") as conn:  # a client's own setting wins
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)

    api.reset_cluster_parameter_group(ParameterGroupName=group, Parameters=[{"ParameterName": "datestyle"}])
    statuses = {s["ParameterName"]: s["ParameterApplyStatus"] for s in
                api.describe_clusters()["Clusters"][0]["ClusterParameterGroups"][0]["ClusterParameterStatusList"]}
    assert statuses["datestyle"] == "pending-reboot" and statuses["statement_timeout"] == "in-sync"
    api.reset_cluster_parameter_group(ParameterGroupName=group, ResetAllParameters=True)
    assert api.describe_cluster_parameters(ParameterGroupName=group, Source="user")["Parameters"] == []

    with pytest.raises(api.exceptions.InvalidClusterParameterGroupStateFault):
        api.delete_cluster_parameter_group(ParameterGroupName=group)  # in use by the cluster
    api.modify_cluster(ClusterIdentifier=identifier, ClusterParameterGroupName="default.redshift-1.0")
    api.reboot_cluster(ClusterIdentifier=identifier)
    assert wait_for(lambda: show(second, "statement_timeout") == "0")
    api.delete_cluster_parameter_group(ParameterGroupName=group)
    with pytest.raises(api.exceptions.ClusterParameterGroupNotFoundFault):
        api.describe_cluster_parameters(ParameterGroupName=group)


def test_modelled_faults_and_refused_values(make_proxy):
    proxy = make_proxy(**own_cluster())
    api, group = client(proxy), unique("g").replace("_", "-")
    api.create_cluster_parameter_group(ParameterGroupName=group, ParameterGroupFamily="redshift-1.0", Description="")
    with pytest.raises(api.exceptions.ClusterParameterGroupAlreadyExistsFault):
        api.create_cluster_parameter_group(ParameterGroupName=group, ParameterGroupFamily="redshift-1.0",
                                           Description="")
    for name, value in (("statement_timeout", "50"), ("statement_timeout", "soon"), ("extra_float_digits", "3"),
                        ("require_ssl", "maybe"), ("datestyle", "ISO, XYZ"), ("search_path", "public; DROP"),
                        ("wlm_json_configuration", "[]"), ("search_path", "a\x00b")):
        assert error_code(lambda: api.modify_cluster_parameter_group(ParameterGroupName=group, Parameters=[
            {"ParameterName": name, "ParameterValue": value}])) == "InvalidParameterValue", (name, value)
    assert api.describe_cluster_parameters(ParameterGroupName=group, Source="user")["Parameters"] == []
    with pytest.raises(api.exceptions.InvalidClusterParameterGroupStateFault):
        api.modify_cluster_parameter_group(ParameterGroupName="default.redshift-1.0", Parameters=[
            {"ParameterName": "require_ssl", "ParameterValue": "true"}])
    with pytest.raises(api.exceptions.InvalidClusterParameterGroupStateFault):
        api.delete_cluster_parameter_group(ParameterGroupName="default.redshift-1.0")
    for call in (lambda: api.describe_cluster_parameters(ParameterGroupName="nowhere"),
                 lambda: api.describe_cluster_parameter_groups(ParameterGroupName="nowhere"),
                 lambda: api.delete_cluster_parameter_group(ParameterGroupName="nowhere"),
                 lambda: api.modify_cluster(ClusterIdentifier=proxy.config.cluster.identifier,
                                            ClusterParameterGroupName="nowhere")):
        with pytest.raises(api.exceptions.ClusterParameterGroupNotFoundFault):
            call()
    assert error_code(lambda: api.create_cluster_parameter_group(
        ParameterGroupName="bad--name", ParameterGroupFamily="redshift-1.0", Description="")) == "InvalidParameterValue"
    assert error_code(lambda: api.create_cluster_parameter_group(
        ParameterGroupName="other", ParameterGroupFamily="postgres15", Description="")) == "InvalidParameterValue"
    with pytest.raises(api.exceptions.ClusterNotFoundFault):
        api.reboot_cluster(ClusterIdentifier="elsewhere")
    default = api.describe_default_cluster_parameters(ParameterGroupFamily="redshift-1.0")["DefaultClusterParameters"]
    assert default["ParameterGroupFamily"] == "redshift-1.0"
    assert {p["ParameterName"]: p["ApplyType"] for p in default["Parameters"]}["require_ssl"] == "static"


def test_iam_decides_who_may_change_parameters(make_proxy):
    proxy = make_proxy(**own_cluster())
    api, viewer = client(proxy), client(proxy, VIEWER_KEY, VIEWER_SECRET)
    identifier = proxy.config.cluster.identifier
    viewers, others = (unique(prefix).replace("_", "-") for prefix in ("viewers", "others"))
    for name in (viewers, others):
        api.create_cluster_parameter_group(ParameterGroupName=name, ParameterGroupFamily="redshift-1.0",
                                           Description="")
    change = [{"ParameterName": "statement_timeout", "ParameterValue": "1000"}]
    for call in (lambda: viewer.create_cluster_parameter_group(ParameterGroupName="mine", Description="",
                                                               ParameterGroupFamily="redshift-1.0"),
                 lambda: viewer.modify_cluster_parameter_group(ParameterGroupName=others, Parameters=change),
                 lambda: viewer.reboot_cluster(ClusterIdentifier=identifier),
                 lambda: viewer.delete_cluster_parameter_group(ParameterGroupName=viewers),
                 lambda: viewer.modify_cluster(ClusterIdentifier=identifier, ClusterParameterGroupName=viewers)):
        assert error_code(call) == "AccessDenied"
    viewer.modify_cluster_parameter_group(ParameterGroupName=viewers, Parameters=change)
    user_set = viewer.describe_cluster_parameters(ParameterGroupName=viewers, Source="user")["Parameters"]
    assert [(p["ParameterName"], p["ParameterValue"]) for p in user_set] == [("statement_timeout", "1000")]
    assert api.describe_cluster_parameters(ParameterGroupName=others, Source="user")["Parameters"] == []
    assert viewer.describe_default_cluster_parameters(ParameterGroupFamily="redshift-1.0")


def test_require_ssl_and_user_activity_logging_after_reboot(make_proxy, tmp_path):
    directory = tmp_path / "audit"
    proxy = make_proxy(**own_cluster(audit=Audit(dir=str(directory))))
    identifier = proxy.config.cluster.identifier
    api, group = client(proxy), unique("g").replace("_", "-")
    api.create_cluster_parameter_group(ParameterGroupName=group, ParameterGroupFamily="redshift-1.0", Description="")
    api.modify_cluster_parameter_group(ParameterGroupName=group, Parameters=[
        {"ParameterName": "require_ssl", "ParameterValue": "true"},
        {"ParameterName": "enable_user_activity_logging", "ParameterValue": "true"},
        {"ParameterName": "statement_timeout", "ParameterValue": "100"}])
    api.modify_cluster(ClusterIdentifier=identifier, ClusterParameterGroupName=group)
    with connect(proxy) as conn:  # pending: none is in force yet
        conn.execute("SELECT 'before the reboot', pg_sleep(0.3)")
    api.reboot_cluster(ClusterIdentifier=identifier)
    with pytest.raises(psycopg.OperationalError, match="requires SSL"):
        connect(proxy)
    with connect(proxy, sslmode="require") as conn:
        conn.execute("SELECT 'after the reboot'")
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(0.3)")
    activity = wait_for(lambda: [line for line in lines(directory / "useractivitylog") if "after the reboot" in line])
    assert activity and "LOG: SELECT 'after the reboot'" in activity[0]
    assert not [line for line in lines(directory / "useractivitylog") if "before the reboot" in line]

    api.modify_cluster(ClusterIdentifier=identifier, ClusterParameterGroupName="default.redshift-1.0")
    api.reboot_cluster(ClusterIdentifier=identifier)
    with connect(proxy) as conn:  # back to the defaults: plain connections again
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_aws_cli(make_proxy):
    proxy = make_proxy(**own_cluster())
    identifier, group = proxy.config.cluster.identifier, unique("cli").replace("_", "-")
    aws(proxy, "create-cluster-parameter-group", "--parameter-group-name", group,
        "--parameter-group-family", "redshift-1.0", "--description", "from the CLI")
    modified = aws(proxy, "modify-cluster-parameter-group", "--parameter-group-name", group, "--parameters",
                   json.dumps([{"ParameterName": "statement_timeout", "ParameterValue": "30000"}]))
    assert modified["ParameterGroupName"] == group
    aws(proxy, "modify-cluster", "--cluster-identifier", identifier, "--cluster-parameter-group-name", group,
        "--master-user-password", NEW_PASSWORD)
    assert aws(proxy, "reboot-cluster", "--cluster-identifier", identifier)["Cluster"]["ClusterStatus"] == "rebooting"
    with connect(proxy, NEW_PASSWORD) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
    parameters = aws(proxy, "describe-cluster-parameters", "--parameter-group-name", group, "--source", "user")
    assert [(p["ParameterName"], p["ParameterValue"]) for p in parameters["Parameters"]] == [
        ("statement_timeout", "30000")]
    (cluster,) = aws(proxy, "describe-clusters", "--cluster-identifier", identifier)["Clusters"]
    assert cluster["ClusterParameterGroups"][0]["ParameterApplyStatus"] == "in-sync"


def test_audit_logs_are_delivered_to_the_logging_bucket(make_proxy, tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    proxy = make_proxy(**own_cluster(s3={"audit-logs": str(bucket)},
                                     audit=Audit(dir=str(tmp_path / "audit"), max_file_bytes=1024)))
    identifier, admin = proxy.config.cluster.identifier, proxy.config.cluster.admin_user
    api, viewer = client(proxy), client(proxy, VIEWER_KEY, VIEWER_SECRET)
    assert aws(proxy, "describe-logging-status", "--cluster-identifier", identifier) == {"LoggingEnabled": False}
    with pytest.raises(api.exceptions.UnsupportedOperationFault):
        api.enable_logging(ClusterIdentifier=identifier, LogDestinationType="cloudwatch",
                           LogExports=["connectionlog"])
    with pytest.raises(api.exceptions.BucketNotFoundFault):
        api.enable_logging(ClusterIdentifier=identifier, BucketName="elsewhere")
    with pytest.raises(api.exceptions.InvalidS3BucketNameFault):
        api.enable_logging(ClusterIdentifier=identifier, BucketName="Not_A_Bucket")
    for prefix in ("../out/", "/abs", "a b/"):
        with pytest.raises(api.exceptions.InvalidS3KeyPrefixFault):
            api.enable_logging(ClusterIdentifier=identifier, BucketName="audit-logs", S3KeyPrefix=prefix)
    assert error_code(lambda: viewer.enable_logging(ClusterIdentifier=identifier,
                                                    BucketName="audit-logs")) == "AccessDenied"

    enabled = aws(proxy, "enable-logging", "--cluster-identifier", identifier, "--bucket-name", "audit-logs",
                  "--s3-key-prefix", "logs/")
    assert (enabled["LoggingEnabled"], enabled["BucketName"], enabled["S3KeyPrefix"]) == (True, "audit-logs", "logs/")

    def delivered() -> list:
        connect(proxy).close()  # three connection log records: the 1024-byte file rotates soon
        return sorted(bucket.rglob("*connectionlog*.gz"))

    (first, *_) = wait_for(delivered, timeout=30)
    key = first.relative_to(bucket).as_posix()
    assert re.fullmatch(rf"logs/AWSLogs/123456789012/redshift/us-east-1/\d{{4}}/\d{{2}}/\d{{2}}/123456789012_redshift_"
                        rf"us-east-1_{identifier}_connectionlog_\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}\.gz", key), key
    text = gzip.decompress(first.read_bytes()).decode()
    assert "authenticated" in text and admin in text
    status = wait_for(lambda: viewer.describe_logging_status(ClusterIdentifier=identifier).get(
        "LastSuccessfulDeliveryTime") and viewer.describe_logging_status(ClusterIdentifier=identifier))
    assert status["LogDestinationType"] == "s3" and status["LogExports"] == ["connectionlog", "userlog",
                                                                            "useractivitylog"]

    assert api.disable_logging(ClusterIdentifier=identifier)["LoggingEnabled"] is False
    def rotated() -> int:
        return len(list((tmp_path / "audit").glob("connectionlog_*")))

    before, delivered_bytes = rotated(), {p: p.read_bytes() for p in bucket.rglob("*.gz")}
    assert wait_for(lambda: connect(proxy).close() or rotated() > before + 1, timeout=30)
    assert {p: p.read_bytes() for p in bucket.rglob("*.gz")} == delivered_bytes  # rotated, not delivered


def test_tags_and_resource_tag_conditions(make_proxy):
    tagger_key, tagger_secret = "AKIATAGGER0000000001", "tagger-secret-access-key-00001"
    # May reboot only a cluster tagged env=dev, and tag it only with env.
    tagger = IamUser("tagger", [AccessKey(tagger_key, tagger_secret)], policies=[{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "redshift:RebootCluster", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/env": "dev"}}},
        {"Effect": "Allow", "Action": ["redshift:CreateTags", "redshift:DeleteTags"], "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}},
        {"Effect": "Allow", "Action": "redshift:DescribeTags", "Resource": "*"}]}])
    proxy = make_proxy(**own_cluster(iam=replace(IAM, users=[*IAM.users, tagger])))
    identifier = proxy.config.cluster.identifier
    arn = f"{ARN}:cluster:{identifier}"
    api, other = client(proxy), client(proxy, tagger_key, tagger_secret)
    assert error_code(lambda: other.reboot_cluster(ClusterIdentifier=identifier)) == "AccessDenied"

    other.create_tags(ResourceName=arn, Tags=[{"Key": "env", "Value": "dev"}])
    assert error_code(lambda: other.create_tags(ResourceName=arn, Tags=[{"Key": "owner", "Value": "me"}])) == \
        "AccessDenied"
    aws(proxy, "create-tags", "--resource-name", arn, "--tags", "Key=owner,Value=data team")
    tagged = other.describe_tags(ResourceName=arn)["TaggedResources"]
    assert [(t["Tag"]["Key"], t["Tag"]["Value"], t["ResourceType"]) for t in tagged] == [
        ("env", "dev", "cluster"), ("owner", "data team", "cluster")]
    assert [t["Tag"]["Key"] for t in api.describe_tags(TagValues=["dev"])["TaggedResources"]] == ["env"]
    assert api.describe_clusters()["Clusters"][0]["Tags"] == [{"Key": "env", "Value": "dev"},
                                                              {"Key": "owner", "Value": "data team"}]
    other.reboot_cluster(ClusterIdentifier=identifier)  # tagged env=dev now

    other.delete_tags(ResourceName=arn, TagKeys=["env"])
    assert error_code(lambda: other.reboot_cluster(ClusterIdentifier=identifier)) == "AccessDenied"
    with pytest.raises(api.exceptions.ResourceNotFoundFault):
        api.create_tags(ResourceName=f"{ARN}:cluster:elsewhere", Tags=[{"Key": "a", "Value": "b"}])
    with pytest.raises(api.exceptions.InvalidTagFault):
        api.create_tags(ResourceName=arn, Tags=[{"Key": "aws:reserved", "Value": "b"}])
    with pytest.raises(api.exceptions.TagLimitExceededFault):
        api.create_tags(ResourceName=arn, Tags=[{"Key": f"k{n}", "Value": ""} for n in range(50)])
    assert [t["Tag"]["Key"] for t in api.describe_tags(ResourceName=arn)["TaggedResources"]] == ["owner"]
