"""Cluster connectivity decisions: which addresses the security groups admit, which peers are
trusted load balancers. Pure: the security groups come in as data (from the configuration, or
as stored in the backing database by catalog/store.py); no I/O here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import netaddr

from ..config import Config


def client_ip(address: str) -> netaddr.IPAddress | None:
    """An address as the gate compares it: IPv4-mapped IPv6 (::ffff:1.2.3.4) as IPv4; None for
    what is not an IP address (a Unix socket)."""
    try:
        ip = netaddr.IPAddress(address.split("%", 1)[0])
    except (netaddr.AddrFormatError, ValueError):
        return None
    if ip.version == 6 and ip.is_ipv4_mapped():
        return ip.ipv4()
    return ip


def canonical_cidr(text: str) -> str:
    """A CIDR block as stored and compared: the network address with its prefix, IPv6
    compressed (10.1.2.3/8 -> 10.0.0.0/8). ValueError when text is not an IPv4 or IPv6 CIDR
    block with an explicit prefix."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValueError(f"not a CIDR block: {text!r}")
    try:
        return str(netaddr.IPNetwork(text.strip()).cidr)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"not a CIDR block: {text!r}") from None


@dataclass(frozen=True)
class GroupRules:
    """One cluster security group: its CIDR ingress rules, canonical, in the order added."""

    name: str
    description: str = ""
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecurityGroups:
    """Every security group and which are attached to the cluster (in order)."""

    groups: tuple[GroupRules, ...] = ()
    attached: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> "SecurityGroups":
        groups = []
        for group in config.security_groups:
            cidrs = dict.fromkeys(canonical_cidr(rule.cidr) for rule in group.ingress)
            groups.append(GroupRules(group.name, group.description, tuple(cidrs)))
        return cls(tuple(groups), tuple(dict.fromkeys(config.cluster.security_groups)))

    def group(self, name: str) -> GroupRules | None:
        return next((g for g in self.groups if g.name == name), None)

    def admitted_cidrs(self) -> Iterable[str]:
        attached = set(self.attached)
        return (cidr for group in self.groups if group.name in attached for cidr in group.cidrs)

    def digest(self) -> str:
        """Identifies this content: the stored state remembers the digest of the YAML it was last
        seeded from, so an unchanged YAML does not undo changes made through the API."""
        data = {"groups": [[g.name, g.description, sorted(g.cidrs)] for g in sorted(self.groups, key=lambda g: g.name)],
                "attached": list(self.attached)}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class SecurityGroupGate:
    """Admits an address when any ingress rule of any attached security group contains it."""

    admitted: netaddr.IPSet
    trusted: netaddr.IPSet
    # Answers by address (a gate never changes: a new one is built when the groups do); netaddr's
    # parse and set lookup were a twentieth of the proxy's time per connection.
    _answers: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> "SecurityGroupGate":
        return cls.build(SecurityGroups.from_config(config), config.trusted_proxies)

    @classmethod
    def build(cls, groups: SecurityGroups, trusted_proxies: Iterable[str]) -> "SecurityGroupGate":
        return cls(netaddr.IPSet(groups.admitted_cidrs()), netaddr.IPSet(trusted_proxies))

    def admits(self, address: str) -> bool:
        return self._answer(address)[0]

    def is_trusted_proxy(self, address: str) -> bool:
        return self._answer(address)[1]

    def _answer(self, address: str) -> tuple[bool, bool]:
        answer = self._answers.get(address)
        if answer is None:
            ip = client_ip(address)
            answer = (ip is not None and ip in self.admitted, ip is not None and ip in self.trusted)
            if len(self._answers) >= _MEMO_SIZE:
                self._answers.clear()
            self._answers[address] = answer
        return answer


_MEMO_SIZE = 4096
