"""Role trust, pure: (role's trust, caller, context) -> may the caller assume the role."""

from __future__ import annotations

import pytest

from proxy.config import AccessKey, Config, Iam, IamRole, IamUser
from proxy.iam.principals import Principals
from proxy.iam.sts import caller_context, caller_names, trust_decision

ACCOUNT = "123456789012"


def principals(trust) -> Principals:
    return Principals(Config(iam=Iam(users=[IamUser("alice", [AccessKey("AKIAALICE000000000001", "x" * 20)]),
                                            IamUser("bob", [AccessKey("AKIABOB00000000000001", "y" * 20)])],
                                     roles=[IamRole("r", trust=trust), IamRole("other", trust=["alice"])])))


def document(principal, condition=None, effect="Allow", action="sts:AssumeRole"):
    statement = {"Effect": effect, "Principal": principal, "Action": action}
    if condition:
        statement["Condition"] = condition
    return {"Statement": [statement]}


ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"


@pytest.mark.parametrize("trust, caller, extra, allowed", [
    (["alice"], "alice", {}, True),
    (["alice"], "bob", {}, False),
    ([], "alice", {}, False),
    (document({"AWS": ALICE}), "alice", {}, True),
    (document({"AWS": [ALICE]}), "bob", {}, False),
    (document({"AWS": ACCOUNT}), "bob", {}, True),                        # the account: anyone in it
    (document({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}), "bob", {}, True),
    (document({"AWS": "arn:aws:iam::999999999999:root"}), "bob", {}, False),
    (document("*"), "bob", {}, True),
    (document({"Service": "ec2.amazonaws.com"}), "alice", {}, False),
    (document({"AWS": ALICE}, action="sts:TagSession"), "alice", {}, False),
    (document({"AWS": ALICE}, action="sts:*"), "alice", {}, True),
    (document({"AWS": ALICE}, {"StringEquals": {"sts:ExternalId": "e1"}}), "alice", {}, False),
    (document({"AWS": ALICE}, {"StringEquals": {"sts:ExternalId": "e1"}}), "alice", {"sts:ExternalId": "e1"}, True),
    ({"Statement": [document("*")["Statement"][0], document({"AWS": ALICE}, effect="Deny")["Statement"][0]]},
     "alice", {}, False),                                                 # an explicit deny wins
    ("role session", "r-session", {}, True),                              # the role's ARN names its sessions
])
def test_trust(trust, caller, extra, allowed):
    import datetime

    role_arn = f"arn:aws:iam::{ACCOUNT}:role/r"
    if trust == "role session":
        trust = document({"AWS": f"arn:aws:iam::{ACCOUNT}:role/other"})
    found = principals(trust)
    key = {"alice": "AKIAALICE000000000001", "bob": "AKIABOB00000000000001"}.get(caller)
    who = found.principal(key) if key else found.session(found.role(f"arn:aws:iam::{ACCOUNT}:role/other"), "s")
    context = caller_context(who, "127.0.0.1", datetime.datetime.now(datetime.timezone.utc)) | extra
    assert trust_decision(found.role(role_arn), "sts:AssumeRole", "AWS", caller_names(who), context).allowed \
        is allowed


PROVIDER = f"arn:aws:iam::{ACCOUNT}:saml-provider/okta"
SAML_AUD = {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}


@pytest.mark.parametrize("trust, action, kind, names, context, allowed", [
    (document({"Federated": PROVIDER}, SAML_AUD, action="sts:AssumeRoleWithSAML"), "sts:AssumeRoleWithSAML",
     "Federated", {PROVIDER}, {"saml:aud": "https://signin.aws.amazon.com/saml"}, True),
    (document({"Federated": PROVIDER}, SAML_AUD, action="sts:AssumeRoleWithSAML"), "sts:AssumeRoleWithSAML",
     "Federated", {PROVIDER}, {"saml:aud": "https://elsewhere.example/saml"}, False),
    (document({"Federated": PROVIDER}, action="sts:AssumeRoleWithSAML"), "sts:AssumeRoleWithSAML",
     "Federated", {f"arn:aws:iam::{ACCOUNT}:saml-provider/other"}, {}, False),        # another provider
    (document({"Federated": PROVIDER}, action="sts:AssumeRoleWithSAML"), "sts:AssumeRoleWithWebIdentity",
     "Federated", {PROVIDER}, {}, False),                                            # another action
    (document({"AWS": PROVIDER}, action="sts:AssumeRoleWithSAML"), "sts:AssumeRoleWithSAML",
     "Federated", {PROVIDER}, {}, False),                                            # named as another kind
    (document({"Federated": PROVIDER}, action="sts:AssumeRole"), "sts:AssumeRole", "AWS", {PROVIDER}, {}, False),
])
def test_federated_trust(trust, action, kind, names, context, allowed):
    role = principals(trust).role(f"arn:aws:iam::{ACCOUNT}:role/r")
    assert trust_decision(role, action, kind, names, context).allowed is allowed


def test_a_role_session_is_its_own_principal():
    found = principals(["alice"])
    session = found.session(found.role(f"arn:aws:iam::{ACCOUNT}:role/r"), "build-1")
    assert session.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/r/build-1"
    assert session.userid.startswith("AROA") and session.userid.endswith(":build-1")
    context = caller_context(session, "127.0.0.1", __import__("datetime").datetime.now())
    assert context["aws:PrincipalArn"] == f"arn:aws:iam::{ACCOUNT}:role/r" and "aws:username" not in context
