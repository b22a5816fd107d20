"""The IAM policy engine against tables of (policy, action, resource, context) -> decision."""

from __future__ import annotations

import pytest

from proxy.iam.policy import evaluate

ARN = "arn:aws:redshift:us-east-1:123456789012"
GCC = "redshift:GetClusterCredentials"


def allow(action, resource, condition=None, effect="Allow"):
    statement = {"Effect": effect, "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


# The reference's documented example: the DB user bound to the session name.
DOC_EXAMPLE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": GCC, "Resource": [
        f"{ARN}:dbuser:examplecluster/${{redshift:DbUser}}", f"{ARN}:dbname:examplecluster/testdb",
        f"{ARN}:dbgroup:examplecluster/common_group"],
     "Condition": {"StringEquals": {"aws:userid": "AIDIODR4TAW7CSEXAMPLE:${redshift:DbUser}@yourdomain.com"}}},
    {"Effect": "Allow", "Action": "redshift:CreateClusterUser",
     "Resource": f"{ARN}:dbuser:examplecluster/${{redshift:DbUser}}",
     "Condition": {"StringEquals": {"aws:userid": "AIDIODR4TAW7CSEXAMPLE:${redshift:DbUser}@yourdomain.com"}}},
    {"Effect": "Allow", "Action": "redshift:JoinGroup", "Resource": f"{ARN}:dbgroup:examplecluster/common_group"}]}

SESSION = {"aws:userid": "AIDIODR4TAW7CSEXAMPLE:alice@yourdomain.com", "redshift:DbUser": "alice"}

CASES = [
    # (policies, action, resource, context, allowed, deciding effect or None)
    ([DOC_EXAMPLE], GCC, f"{ARN}:dbuser:examplecluster/alice", SESSION, True, "Allow"),
    ([DOC_EXAMPLE], GCC, f"{ARN}:dbuser:examplecluster/bob", SESSION, False, None),
    ([DOC_EXAMPLE], GCC, f"{ARN}:dbuser:examplecluster/alice", {**SESSION, "aws:userid": "X:alice@yourdomain.com"}, False, None),
    ([DOC_EXAMPLE], "redshift:JoinGroup", f"{ARN}:dbgroup:examplecluster/common_group", {}, True, "Allow"),
    ([DOC_EXAMPLE], "redshift:JoinGroup", f"{ARN}:dbgroup:examplecluster/admins", {}, False, None),
    ([allow(GCC, f"{ARN}:dbuser:*/temp_*")], GCC, f"{ARN}:dbuser:c1/temp_x", {}, True, "Allow"),
    ([allow(GCC, f"{ARN}:dbuser:*/temp_*")], GCC, f"{ARN}:dbuser:c1/perm_x", {}, False, None),
    ([allow("redshift:*", "*")], "REDSHIFT:getclustercredentials", f"{ARN}:dbuser:c1/a", {}, True, "Allow"),
    ([allow("redshift:Get*", "*"), allow(GCC, "*", effect="Deny")], GCC, f"{ARN}:dbuser:c1/a", {}, False, "Deny"),
    ([allow("*", "*", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})], GCC, "x", {"aws:SourceIp": "10.1.2.3"}, True, "Allow"),
    ([allow("*", "*", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})], GCC, "x", {"aws:SourceIp": "127.0.0.1"}, False, None),
    ([allow("*", "*", {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}})], GCC, "x",
     {"aws:SourceIp": "127.0.0.1"}, True, "Allow"),
    ([allow("*", "*", {"NumericLessThanEquals": {"redshift:DurationSeconds": "1800"}})], GCC, "x",
     {"redshift:DurationSeconds": 3600}, False, None),
    ([allow("*", "*", {"StringLike": {"redshift:DbUser": "temp_*"}})], GCC, "x", {"redshift:DbUser": "temp_1"}, True, "Allow"),
    ([allow("*", "*", {"StringNotEquals": {"redshift:DbName": "prod"}})], GCC, "x", {}, True, "Allow"),  # key missing
    ([allow("*", "*", {"StringEquals": {"redshift:DbName": "dev"}})], GCC, "x", {}, False, None),   # key missing
    ([allow("*", "*", {"StringEqualsIfExists": {"redshift:DbName": "dev"}})], GCC, "x", {}, True, "Allow"),
    ([allow("*", "*", {"Null": {"redshift:DbName": "true"}})], GCC, "x", {}, True, "Allow"),
    ([allow("*", "*", {"Null": {"redshift:DbName": "true"}})], GCC, "x", {"redshift:DbName": "dev"}, False, None),
    ([allow("*", "*", {"Bool": {"aws:SecureTransport": "true"}})], GCC, "x", {"aws:SecureTransport": True}, True, "Allow"),
    ([allow("*", "*", {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}})], GCC, "x",
     {"aws:CurrentTime": "2026-11-29T00:00:00Z"}, True, "Allow"),
    ([allow("*", "*", {"ForAllValues:StringEquals": {"redshift:DbGroups": ["a", "b"]}})], GCC, "x",
     {"redshift:DbGroups": ["a"]}, True, "Allow"),
    ([allow("*", "*", {"ForAllValues:StringEquals": {"redshift:DbGroups": ["a", "b"]}})], GCC, "x",
     {"redshift:DbGroups": ["a", "c"]}, False, None),
    ([allow("*", "*", {"ForAnyValue:StringEquals": {"redshift:DbGroups": ["a"]}})], GCC, "x",
     {"redshift:DbGroups": ["c", "a"]}, True, "Allow"),
    ([allow("*", "*", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/dev-*"}})], GCC, "x",
     {"aws:PrincipalArn": "arn:aws:iam::123456789012:user/dev-ann"}, True, "Allow"),
    ([allow("*", "arn:aws:redshift:*:*:dbuser:*/${aws:username}")], GCC, f"{ARN}:dbuser:c1/ann", {"aws:username": "ann"}, True, "Allow"),
    ([allow("*", "arn:aws:redshift:*:*:dbuser:*/${aws:username}")], GCC, f"{ARN}:dbuser:c1/ann", {}, False, None),
    ([{"Statement": {"Effect": "Allow", "NotAction": "redshift:Create*", "Resource": "*"}}], GCC, "x", {}, True, "Allow"),
    ([{"Statement": {"Effect": "Allow", "NotAction": "redshift:Create*", "Resource": "*"}}],
     "redshift:CreateClusterUser", "x", {}, False, None),
    ([{"Statement": {"Effect": "Allow", "Action": "*", "NotResource": f"{ARN}:dbuser:c1/admin"}}], GCC,
     f"{ARN}:dbuser:c1/admin", {}, False, None),
    ([allow("*", "*", {"StringEqualsBogus": {"k": "v"}})], GCC, "x", {"k": "v"}, False, None),  # unknown operator
    ([], GCC, "x", {}, False, None),
]


@pytest.mark.parametrize("policies, action, resource, context, allowed, effect", CASES)
def test_policy_table(policies, action, resource, context, allowed, effect):
    decision = evaluate(policies, action, resource, context)
    assert decision.allowed is allowed
    assert (decision.statement or {}).get("Effect") == effect
