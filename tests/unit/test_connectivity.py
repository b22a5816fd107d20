"""PROXY protocol headers from byte tables; the security-group gate from rules; CIDRs as stored."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from proxy.config import Cluster, Config, IngressRule, SecurityGroup
from proxy.policy.connectivity import (GroupRules, SecurityGroupGate, SecurityGroups, canonical_cidr,
                                       client_ip)
from proxy.protocol.proxy_header import (V2_SIGNATURE, BadProxyHeader, ProxyHeader, parse,
                                         starts_like_proxy_header, v2_header)


@pytest.mark.parametrize("data, expected", [
    (b"PROXY TCP4 192.168.0.1 10.0.0.1 56324 5439\r\nrest",
     (ProxyHeader(False, ("192.168.0.1", 56324), ("10.0.0.1", 5439)), 44)),
    (b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n", (ProxyHeader(False, ("2001:db8::1", 1), ("::1", 2)), 32)),
    (b"PROXY UNKNOWN\r\n", (ProxyHeader(False), 15)),  # use the connection's own endpoints
    (b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", (ProxyHeader(False), 31)),
    (v2_header(("10.1.2.3", 4000), ("127.0.0.1", 5439)), (ProxyHeader(False, ("10.1.2.3", 4000), ("127.0.0.1", 5439)), 28)),
    (v2_header(("2001:db8::7", 1), ("::1", 2)), (ProxyHeader(False, ("2001:db8::7", 1), ("::1", 2)), 52)),
    (V2_SIGNATURE + b"\x20\x00\x00\x00", (ProxyHeader(True), 16)),  # LOCAL
    (V2_SIGNATURE + b"\x21\x00\x00\x00", (ProxyHeader(False), 16)),  # PROXY, UNSPEC family
])
def test_valid_headers(data, expected):
    assert parse(data) == expected
    for cut in range(1, len(data[:expected[1]])):  # any shorter read asks for more
        assert parse(data[:cut]) is None


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", b"PROXY " + b"x" * 120,
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12,   # version 1 in a v2 signature
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\x00" * 12,   # command 2
    V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\x00" * 12,   # UDP
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,    # short IPv4 block
    V2_SIGNATURE + b"\x21\x31\x00\x0c" + b"\x00" * 12,   # AF_UNIX
    V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", 5000),  # too long
    b"GET / HTTP/1.1\r\n\r\n",
])
def test_malformed_headers(data):
    with pytest.raises(BadProxyHeader):
        parse(data)


def test_signature_detection():
    assert starts_like_proxy_header(b"PROXY TCP4") and starts_like_proxy_header(V2_SIGNATURE[:5])
    assert not starts_like_proxy_header(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")


def test_gate():
    config = replace(Config(), security_groups=[
        SecurityGroup("a", ingress=[IngressRule("10.0.0.0/16"), IngressRule("2001:db8::/32")]),
        SecurityGroup("b", ingress=[IngressRule("192.168.0.0/24")])],
        cluster=replace(Cluster(), security_groups=["a"]), trusted_proxies=["127.0.0.9/32"])
    gate = SecurityGroupGate.from_config(config)
    assert gate.admits("10.0.255.255") and not gate.admits("10.1.0.0")
    assert gate.admits("::ffff:10.0.0.1")  # IPv4-mapped matches as IPv4
    assert gate.admits("2001:db8::1") and not gate.admits("2001:db9::1")
    assert not gate.admits("192.168.0.1")  # group b is not attached
    assert not gate.admits("local") and client_ip("not an ip") is None
    assert gate.is_trusted_proxy("127.0.0.9") and not gate.is_trusted_proxy("127.0.0.1")


@pytest.mark.parametrize("text, canonical", [
    ("127.0.0.2/32", "127.0.0.2/32"),
    ("10.1.2.3/16", "10.1.0.0/16"),          # host bits dropped
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("2001:DB8:0:0::/32", "2001:db8::/32"),  # IPv6 compressed, lower case
    ("::1/128", "::1/128"),
    ("10.0.0.0", None), ("10.0.0.0/33", None), ("127.0.0.300/32", None), ("127.1/32", None),
    ("10/8", None), ("2001:db8::/129", None), ("2001:db8::g/64", None), ("1.2.3.4/8/8", None), ("", None),
])
def test_canonical_cidr(text, canonical):
    if canonical is None:
        with pytest.raises(ValueError):
            canonical_cidr(text)
    else:
        assert canonical_cidr(text) == canonical


def test_security_groups_digest_and_gate():
    config = replace(Config(), security_groups=[
        SecurityGroup("a", "x", [IngressRule("10.0.0.0/16")]), SecurityGroup("b", "y", [IngressRule("192.168.0.0/24")])],
        cluster=replace(Cluster(), security_groups=["a"]))
    groups = SecurityGroups.from_config(config)
    reordered = SecurityGroups(tuple(reversed(groups.groups)), groups.attached)
    assert groups.digest() == reordered.digest()
    for changed in (SecurityGroups(groups.groups, ("a", "b")),
                    SecurityGroups((GroupRules("a", "x", ("10.0.0.0/8",)), groups.groups[1]), groups.attached),
                    SecurityGroups((GroupRules("a", "other", ("10.0.0.0/16",)), groups.groups[1]), groups.attached)):
        assert changed.digest() != groups.digest()
    gate = SecurityGroupGate.build(groups, ["127.0.0.9/32"])
    assert gate.admits("10.0.0.1") and not gate.admits("192.168.0.1")
    assert not SecurityGroupGate.build(SecurityGroups(), []).admits("127.0.0.1")  # nothing attached: no one
