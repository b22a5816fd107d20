"""The AWS principals that may call the API, from the configuration: IAM users with access keys,
inline policies, IAM groups' policies and tags; IAM roles with their trust, policies and tags,
and the principal a session of a role acts as. Pure: no I/O (sessions are looked up by sts.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..config import Config
from .sigv4 import Secret


@dataclass(frozen=True)
class Principal:
    name: str                   # the user's name, or the role's for a role session
    arn: str                    # ...:user/alice, or arn:aws:sts::<account>:assumed-role/<role>/<session>
    userid: str                 # AIDA..., or AROA...:<session name> (aws:userid)
    policies: tuple[dict, ...]
    tags: dict[str, str] = field(default_factory=dict)
    role: str | None = None     # set for a role session: the role's name
    principal_arn: str | None = None  # aws:PrincipalArn: the role's ARN for a role session
    # A federated session's (sts_sessions.federation): "keys", its condition keys (saml:sub,
    # <oidc provider>:sub, ...), and "redshift", the assertion's Redshift SAML attributes.
    federation: dict = field(default_factory=dict)

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class Role:
    name: str
    account: str
    arn: str
    roleid: str                 # AROA + 17 characters
    trust: tuple[dict, ...]     # trust policy statements
    policies: tuple[dict, ...]
    tags: dict[str, str]
    max_session_duration: int


def _trust_statements(trust, account: str) -> tuple[dict, ...]:
    if isinstance(trust, list):  # IAM user names: one Allow naming their ARNs
        if not trust:
            return ()
        return ({"Effect": "Allow", "Action": "sts:AssumeRole",
                 "Principal": {"AWS": [f"arn:aws:iam::{account}:user/{name}" for name in trust]}},)
    statements = trust.get("Statement", [])
    return tuple([statements] if isinstance(statements, dict) else statements)


class Principals:
    def __init__(self, config: Config):
        account = config.cluster.account_id
        group_policies = {g.name: g.policies for g in config.iam.groups}
        self._by_key: dict[str, tuple[Principal, str]] = {}
        for user in config.iam.users:
            policies = list(user.policies)
            for group in user.groups:
                policies.extend(group_policies[group])
            # A stable unique id in AWS's form (AIDA + 17 characters).
            userid = "AIDA" + hashlib.sha256(f"{account}:{user.name}".encode()).hexdigest()[:17].upper()
            principal = Principal(user.name, f"arn:aws:iam::{account}:user/{user.name}", userid,
                                  tuple(policies), dict(user.tags))
            for key in user.access_keys:
                self._by_key[key.id] = (principal, key.secret)
        self._roles: dict[str, Role] = {}
        for role in config.iam.roles:
            role_account = role.account or account
            # Trust lists name users of the cluster's account, where the users live.
            self._roles[f"arn:aws:iam::{role_account}:role/{role.name}"] = Role(
                role.name, role_account, f"arn:aws:iam::{role_account}:role/{role.name}",
                "AROA" + hashlib.sha256(f"{role_account}:role:{role.name}".encode()).hexdigest()[:17].upper(),
                _trust_statements(role.trust, account), tuple(role.policies), dict(role.tags),
                role.max_session_duration)

    def secret(self, access_key: str) -> Secret | None:
        found = self._by_key.get(access_key)
        return Secret(found[1]) if found else None

    def principal(self, access_key: str) -> Principal | None:
        found = self._by_key.get(access_key)
        return found[0] if found else None

    def role(self, arn: str) -> Role | None:
        return self._roles.get(arn)

    def roles(self) -> list[Role]:
        return list(self._roles.values())

    @staticmethod
    def session(role: Role, session_name: str, federation: dict | None = None) -> Principal:
        """What a request signed with a session of `role` acts as."""
        return Principal(role.name, f"arn:aws:sts::{role.account}:assumed-role/{role.name}/{session_name}",
                         f"{role.roleid}:{session_name}", role.policies, dict(role.tags), role=role.name,
                         principal_arn=role.arn, federation=federation or {})
