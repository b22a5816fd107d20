"""The AWS principals that may call the API, from the configuration: IAM users with access keys,
inline policies, IAM groups' policies and tags."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..config import Config
from .sigv4 import Secret


@dataclass(frozen=True)
class Principal:
    name: str
    arn: str
    userid: str
    policies: tuple[dict, ...]
    tags: dict[str, str] = field(default_factory=dict)


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

    def secret(self, access_key: str) -> Secret | None:
        found = self._by_key.get(access_key)
        return Secret(found[1]) if found else None

    def principal(self, access_key: str) -> Principal | None:
        found = self._by_key.get(access_key)
        return found[0] if found else None
