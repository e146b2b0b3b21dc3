"""SidecarPolicy values that must be refused as what they are (issue 14, item 4): host names
and IP literals, canonical paths, numeric ids, CIDRs. One table for both layers, so that
the apiserver (tests/integration/test_admission.py) and the policy model
(tests/unit/policy/test_policy_hardening.py) refuse the same inputs, at the same field, in
the same words; and the specs both must admit, the tricky ones near each rule's edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.policies import with_endpoint

__all__ = ["ADMITTED", "REFUSED", "Refusal"]

_EP = "spec.network[0].endpoints[0]"
_HOST = f"{_EP}.host"
_IP = f"{_EP}.allowedIps[0]"
_RO = "spec.filesystem.readOnly[0]"
_RW = "spec.filesystem.readWrite[0]"
_BINARY = "spec.network[0].binaries[0]"
_UID = "spec.process.runAsUser"
_GID = "spec.process.runAsGroup"

_WILDCARD = "may use a wildcard only as its whole first label"
_CHARACTERS = "must be a lowercase DNS name or IPv4 address"
_EMPTY_LABEL = "has an empty label"
_HYPHEN = "has a label that starts or ends with '-'"
_LONG_LABEL = "has a label longer than 63 characters"
_IPV4 = "so it must be an IPv4 address: four numbers from 0 to 255 without leading zeros"
_IPV6 = "is an IPv6 address: a host is a DNS name or an IPv4 address"
_NOT_IP = "must be an IP address or a CIDR"
_DOTDOT = "has a .. component"
_DOT = "has a . component"
_EMPTY_SEGMENT = "has an empty component (//)"
_TRAILING = "ends with /; write it without the trailing /"
_UID_RULE = "must be sandbox or a numeric uid from 1 to 4294967294 in plain decimal"
_GID_RULE = "must be sandbox or a numeric gid from 1 to 4294967294 in plain decimal"
_OVERLAP = "a readOnly path that is a readWrite path or under one would be writable"


@dataclass(frozen=True)
class Refusal:
    """A spec both layers refuse: the field both name, and words both messages contain."""

    id: str
    spec: dict[str, Any]
    field: str
    says: str


def _host(host: str) -> dict[str, Any]:
    """An inspected endpoint on `host`, so the tcp rule on IP literals stays out of it."""
    return with_endpoint(host=host, protocol="rest", access="read-only")


def _ips(*values: str) -> dict[str, Any]:
    return with_endpoint(allowedIps=list(values))


def _binaries(*paths: str) -> dict[str, Any]:
    spec = with_endpoint()
    spec["network"][0]["binaries"] = list(paths)
    return spec


def _files(
    read_only: list[str] | None = None, read_write: list[str] | None = None
) -> dict[str, Any]:
    filesystem = {"readOnly": read_only, "readWrite": read_write}
    return {"filesystem": {key: paths for key, paths in filesystem.items() if paths}}


def _user(value: str) -> dict[str, Any]:
    return {"process": {"runAsUser": value}}


def _group(value: str) -> dict[str, Any]:
    return {"process": {"runAsGroup": value}}


REFUSED = (
    # -- hosts: DNS names label by label, and IP literals as IP literals ---------------------
    Refusal("host-label-64", _host("a" * 64 + ".example.com"), _HOST, _LONG_LABEL),
    Refusal("host-wildcard-label-64", _host("*." + "b" * 64 + ".com"), _HOST, _LONG_LABEL),
    Refusal("host-label-leading-hyphen", _host("-api.example.com"), _HOST, _HYPHEN),
    Refusal("host-label-trailing-hyphen", _host("api-.example.com"), _HOST, _HYPHEN),
    Refusal("host-tld-trailing-hyphen", _host("api.example-"), _HOST, _HYPHEN),
    Refusal("host-doubled-dot", _host("api..example.com"), _HOST, _EMPTY_LABEL),
    Refusal("host-trailing-dot", _host("api.example.com."), _HOST, _EMPTY_LABEL),
    Refusal("host-leading-dot", _host(".example.com"), _HOST, _EMPTY_LABEL),
    Refusal("host-underscore", _host("my_api.example.com"), _HOST, _CHARACTERS),
    Refusal("host-ipv4-octet-256", _host("256.1.1.1"), _HOST, _IPV4),
    Refusal("host-ipv4-three-octets", _host("1.2.3"), _HOST, _IPV4),
    Refusal("host-ipv4-five-octets", _host("1.2.3.4.5"), _HOST, _IPV4),
    Refusal("host-ipv4-leading-zero", _host("01.2.3.4"), _HOST, _IPV4),
    Refusal("host-all-digits", _host("2130706433"), _HOST, _IPV4),
    Refusal("host-ipv6-literal", _host("2001:db8::1"), _HOST, _IPV6),
    Refusal("host-tld-wildcard-any-depth", _host("**.com"), _HOST, _WILDCARD),
    Refusal("host-bare-wildcard", _host("*"), _HOST, _WILDCARD),
    Refusal("host-wildcard-not-first", _host("api.**.example.com"), _HOST, _WILDCARD),
    # -- CIDRs: a network address, a prefix in range, valid IPv4 or IPv6 ---------------------
    Refusal(
        "cidr-host-bits",
        _ips("10.0.0.1/8"),
        _IP,
        "has host bits set: write its network address, with every bit after the first 8 set to 0",
    ),
    Refusal(
        "cidr-host-bits-24", _ips("192.168.1.7/24"), _IP, "every bit after the first 24 set to 0"
    ),
    Refusal(
        "cidr-ipv6-host-bits", _ips("2001:db8::1/32"), _IP, "every bit after the first 32 set to 0"
    ),
    Refusal("cidr-prefix-33", _ips("10.0.0.0/33"), _IP, _NOT_IP),
    Refusal("cidr-ipv6-prefix-129", _ips("2001:db8::/129"), _IP, _NOT_IP),
    Refusal("cidr-netmask", _ips("10.0.0.0/255.0.0.0"), _IP, _NOT_IP),
    Refusal("cidr-octet-leading-zero", _ips("010.0.0.0/8"), _IP, _NOT_IP),
    Refusal("ip-octet-256", _ips("203.0.113.256"), _IP, _NOT_IP),
    Refusal("ip-ipv4-mapped-ipv6", _ips("::ffff:10.0.0.1"), _IP, _NOT_IP),
    # -- paths in canonical form ------------------------------------------------------------
    Refusal("read-only-dot-segment", _files(["/data/./x"]), _RO, _DOT),
    Refusal("read-only-leading-dot-segment", _files(["/./etc"]), _RO, _DOT),
    Refusal("read-only-double-slash", _files(["/data//x"]), _RO, _EMPTY_SEGMENT),
    Refusal("read-only-leading-double-slash", _files(["//etc"]), _RO, _EMPTY_SEGMENT),
    Refusal("read-only-trailing-slash", _files(["/data/"]), _RO, _TRAILING),
    Refusal("read-write-trailing-dot", _files(read_write=["/tmp/."]), _RW, _DOT),
    Refusal("read-write-trailing-slash", _files(read_write=["/tmp/"]), _RW, _TRAILING),
    Refusal("read-write-double-slash", _files(read_write=["/tmp//x"]), _RW, _EMPTY_SEGMENT),
    Refusal("binary-dotdot", _binaries("/usr/bin/../sbin/iptables"), _BINARY, _DOTDOT),
    Refusal("binary-dot-segment", _binaries("/usr/bin/./node"), _BINARY, _DOT),
    Refusal("binary-double-slash", _binaries("/usr//bin/node"), _BINARY, _EMPTY_SEGMENT),
    Refusal("binary-trailing-slash", _binaries("/usr/bin/"), _BINARY, _TRAILING),
    Refusal(
        "endpoint-path-dotdot",
        with_endpoint(protocol="rest", access="read-only", path="/v1/../admin"),
        f"{_EP}.path",
        _DOTDOT,
    ),
    Refusal(
        "endpoint-path-double-slash",
        with_endpoint(protocol="rest", access="read-only", path="/v1//admin"),
        f"{_EP}.path",
        _EMPTY_SEGMENT,
    ),
    Refusal(
        "allow-path-dot-segment",
        with_endpoint(protocol="rest", rules=[{"allow": {"method": "GET", "path": "/v1/./x"}}]),
        f"{_EP}.rules[0].allow.path",
        "should match",  # a pattern, as CEL's cost budget cannot cover every rule's path
    ),
    Refusal(
        "deny-path-dotdot",  # a deny rule that can never match denies nothing
        with_endpoint(protocol="rest", access="full", denyRules=[{"path": "/v1/../admin"}]),
        f"{_EP}.denyRules[0].path",
        "should match",
    ),
    # -- the readOnly/readWrite overlap, after canonicalisation ------------------------------
    Refusal(
        "read-only-under-read-write",
        _files(["/data/cache"], ["/data"]),
        "spec.filesystem.readWrite",
        _OVERLAP,
    ),
    Refusal(
        "read-only-deep-under-read-write",
        _files(["/usr", "/home/a/b/c"], ["/tmp", "/home/a"]),
        "spec.filesystem.readWrite",
        _OVERLAP,
    ),
    # -- uids and gids: plain decimal, 1..4294967294, never root however spelled -------------
    Refusal("uid-zero-twice", _user("00"), _UID, _UID_RULE),
    Refusal("uid-plus-zero", _user("+0"), _UID, _UID_RULE),
    Refusal("uid-minus-zero", _user("-0"), _UID, _UID_RULE),
    Refusal("uid-hex-zero", _user("0x0"), _UID, _UID_RULE),
    Refusal("uid-space-zero", _user(" 0"), _UID, _UID_RULE),
    Refusal("uid-root-uppercase", _user("ROOT"), _UID, "never runs as root"),
    Refusal("uid-decimal-point", _user("0.0"), _UID, _UID_RULE),
    Refusal("uid-exponent", _user("1e0"), _UID, _UID_RULE),
    Refusal("uid-leading-zero", _user("007"), _UID, "no sign, spaces or leading zeros"),
    Refusal("uid-plus-sign", _user("+1000"), _UID, "no sign, spaces or leading zeros"),
    Refusal("uid-trailing-space", _user("1000 "), _UID, _UID_RULE),
    Refusal("uid-eleven-digits", _user("10000001000"), _UID, _UID_RULE),
    Refusal("gid-zero", _group("0"), _GID, "never runs as group root"),
    Refusal("gid-no-id", _group("4294967295"), _GID, _GID_RULE),
    Refusal("gid-leading-zero", _group("01000"), _GID, _GID_RULE),
    Refusal("gid-empty", _group(""), _GID, _GID_RULE),
)

#: Specs both layers admit: each sits at the edge of a rule above.
ADMITTED: dict[str, dict[str, Any]] = {
    "prefix-is-not-a-parent": _files(["/data2", "/database"], ["/data"]),
    "writable-carve-out-under-read-only": _files(["/data"], ["/data/cache"]),
    "network-addresses": _ips("10.0.0.0/8", "2001:db8::/32", "203.0.113.7", "0.0.0.0/0", "::/0"),
    "host-address-as-a-32": _ips("203.0.113.7/32", "2001:db8::1/128"),
    "wildcard-any-depth": _host("**.example.com"),
    "label-of-63": _host("a" * 63 + ".example.com"),
    "host-of-253": _host(".".join(["a" * 63] * 3 + ["b" * 61])),
    "punycode-and-inner-hyphens": _host("xn--bcher-kva.ex-ample.com"),
    "ipv4-edges": _host("255.255.255.255"),
    "digits-in-a-name": _host("1password.com"),
    "largest-ids": {"process": {"runAsUser": "4294967294", "runAsGroup": "1"}},
    "request-path-trailing-slash": with_endpoint(protocol="rest", access="read-only", path="/api/"),
    "names-with-dots": _binaries("/usr/bin/python3.11", "/opt/.venv/bin/..x"),
}
