"""Cluster connectivity decisions: which addresses the security groups admit, which peers are
trusted load balancers. Pure; built from the configuration (and, later, the API's changes)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class SecurityGroupGate:
    """Admits an address when any ingress rule of any attached security group contains it."""

    admitted: netaddr.IPSet
    trusted: netaddr.IPSet

    @classmethod
    def from_config(cls, config: Config) -> "SecurityGroupGate":
        attached = set(config.cluster.security_groups)
        cidrs = [rule.cidr for group in config.security_groups if group.name in attached
                 for rule in group.ingress]
        return cls(netaddr.IPSet(cidrs), netaddr.IPSet(config.trusted_proxies))

    def admits(self, address: str) -> bool:
        ip = client_ip(address)
        return ip is not None and ip in self.admitted

    def is_trusted_proxy(self, address: str) -> bool:
        ip = client_ip(address)
        return ip is not None and ip in self.trusted
