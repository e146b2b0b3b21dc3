"""The platform egress guard: addresses and names no tenant policy may open.

OpenShell network policy is an allowlist, and its proxy refuses private, loopback and
link-local destinations unless an endpoint's `allowed_ips` covers them. So a policy reaches
the cloud metadata service, the Kubernetes API or the pod and service ranges in two ways
only: a host that *is* such an address or name, or `allowed_ips` that cover such a range.
The guard closes both, in every policy the operator sends (`translate.to_guarded_policy`):

- an `allowedIps` entry that overlaps a guarded range is narrowed to its exact complement
  (`10.0.0.0/8` minus `10.96.0.0/12` is the four CIDRs around it); one wholly inside the
  guard is removed; an endpoint left with no entry is refused, because an endpoint without
  `allowedIps` means something else (any public address), not "nothing";
- a host that is an IP address inside a guarded range, a guarded name, or a wildcard that
  covers a guarded name (`*.default.svc` covers `kubernetes.default.svc`) is refused: a name
  cannot be narrowed.

The link-local ranges (169.254.0.0/16, the cloud metadata service's; fe80::/10) are always
guarded; the platform adds its API server, service and pod ranges and its own lists
(`config.EgressGuardConfig`). A tenant's exemptions (`EgressAllowance`, from its tenancy
rules) open holes in the guard, never more than the policy itself asks for.

Pure: values in, values out; no protobuf, so the core can carry the report.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from helmdeck_operator.policy import ambiguity, errors, model

__all__ = [
    "LINK_LOCAL",
    "NO_ALLOWANCE",
    "EgressAllowance",
    "EgressGuard",
    "EgressReport",
    "GuardSource",
    "GuardedSpec",
    "Narrowing",
    "guard_spec",
    "parse_cidr",
    "parse_name",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class GuardSource(StrEnum):
    """Where a guard entry comes from: the configuration field that lists it."""

    LINK_LOCAL = "linkLocal"
    API_SERVER = "apiServer"
    SERVICE_CIDRS = "serviceCidrs"
    POD_CIDRS = "podCidrs"
    HOSTS = "hosts"
    CIDRS = "cidrs"


#: Always guarded, whatever the configuration: the cloud metadata services (169.254.169.254
#: on AWS, GCP, Azure, OpenStack...) and every other link-local service live here.
LINK_LOCAL = (ipaddress.IPv4Network("169.254.0.0/16"), ipaddress.IPv6Network("fe80::/10"))

# A name, optionally under a `*.` or `**.` first label, as hosts are written in policies.
_NAME = re.compile(r"(\*\*?\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# What the C resolver (inet_aton) also reads as an IPv4 address: one to four parts, each a
# decimal, octal (leading 0) or hex (0x) number: `0xa9fea9fe` is 169.254.169.254.
_LEGACY_IPV4 = re.compile(r"[0-9][0-9a-fx]*(\.[0-9][0-9a-fx]*){0,3}")


def parse_cidr(value: str) -> Network:
    """A guard or allowance CIDR (an address alone is its /32 or /128); ValueError names
    what is wrong. Host bits are refused: `10.96.0.1/12` is a typo more often than not."""
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a CIDR or IP address ({err})") from None


def parse_name(value: str) -> str:
    """A guard or allowance host name (`*.` or `**.` allowed as the first label), in the
    lower case policies use; ValueError when it is not one."""
    name = value.strip().lower().rstrip(".")
    if not _NAME.fullmatch(name) or len(name) > 253:
        raise ValueError(f"{value!r} is not a DNS name (a `*.` or `**.` first label allowed)")
    return name


@dataclass(frozen=True)
class _Net:
    network: Network
    """A guarded range, or the part of one an exemption leaves."""
    entry: str
    """The configured entry it comes from, as the messages name it."""
    source: GuardSource


@dataclass(frozen=True)
class _Name:
    name: str
    source: GuardSource


@dataclass(frozen=True)
class EgressAllowance:
    """What a tenant's rules let through the guard: ranges and names. Empty: nothing."""

    networks: tuple[Network, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> EgressAllowance:
        """From CIDRs, addresses and names mixed; ValueError on anything else."""
        networks: list[Network] = []
        names: list[str] = []
        for entry in entries:
            try:
                networks.append(parse_cidr(entry))
            except ValueError:
                names.append(parse_name(entry))
        return cls(tuple(networks), tuple(names))

    def __len__(self) -> int:
        return len(self.networks) + len(self.names)

    def covers(self, host: str) -> bool:
        """Whether an exempt name covers every host `host` can name."""
        return any(_covers(name, host) for name in self.names)


NO_ALLOWANCE = EgressAllowance()


@dataclass(frozen=True)
class EgressGuard:
    """The guarded ranges and names, each with the entry and field it comes from;
    `EgressGuard()` guards the link-local ranges only."""

    networks: tuple[_Net, ...] = tuple(
        _Net(net, str(net), GuardSource.LINK_LOCAL) for net in LINK_LOCAL
    )
    names: tuple[_Name, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        api_server: Sequence[str] = (),
        service_cidrs: Sequence[str] = (),
        pod_cidrs: Sequence[str] = (),
        hosts: Sequence[str] = (),
        cidrs: Sequence[str] = (),
    ) -> EgressGuard:
        """The link-local ranges plus the configured entries (`api_server` takes addresses,
        CIDRs and names alike); ValueError names the first bad entry."""
        networks = list(cls().networks)
        names: list[_Name] = []
        for source, entries in (
            (GuardSource.API_SERVER, api_server),
            (GuardSource.SERVICE_CIDRS, service_cidrs),
            (GuardSource.POD_CIDRS, pod_cidrs),
            (GuardSource.CIDRS, cidrs),
        ):
            for entry in entries:
                try:
                    net = parse_cidr(entry)
                except ValueError:
                    if source is not GuardSource.API_SERVER:
                        raise
                    names.append(_Name(parse_name(entry), source))
                else:
                    networks.append(_Net(net, str(net), source))
        names.extend(_Name(parse_name(entry), GuardSource.HOSTS) for entry in hosts)
        return cls(tuple(networks), tuple(names))

    def exempting(self, allow: EgressAllowance) -> EgressGuard:
        """The guard with the allowance's ranges cut out of it (what is left of each range
        keeps its entry's name). Exempt names are applied per host (`EgressAllowance.covers`):
        an exempt `metadata.google.internal` must pass a guarded `**.internal`."""
        networks = list(self.networks)
        for hole in allow.networks:
            networks = [
                _Net(piece, net.entry, net.source)
                for net in networks
                for piece in _minus(net.network, hole)
            ]
        return EgressGuard(tuple(networks), self.names)

    def report(self, allow: EgressAllowance, narrowings: Sequence[Narrowing]) -> EgressReport:
        return EgressReport(
            cidrs=len({net.entry for net in self.networks}),
            hosts=len(self.names),
            exemptions=len(allow),
            narrowings=tuple(narrowings),
        )


@dataclass(frozen=True)
class Narrowing:
    """One `allowedIps` entry the guard changed."""

    field: str
    """Where, as status paths are written: `spec.network[0].endpoints[1].allowedIps[0]`."""
    entry: str
    """The entry as written."""
    kept: tuple[str, ...]
    """What replaced it: the parts outside the guard; empty when it was removed."""
    guarded: tuple[str, ...]
    """The guard entries it overlapped, as `169.254.0.0/16 (linkLocal)`."""

    def __str__(self) -> str:
        guarded = ", ".join(self.guarded)
        if not self.kept:
            return f"{self.field}: {self.entry} removed: inside {guarded}"
        return (
            f"{self.field}: {self.entry} narrowed to {', '.join(self.kept)} to leave out {guarded}"
        )


@dataclass(frozen=True)
class EgressReport:
    """What the guard did to one policy, for its status and `policy render`."""

    cidrs: int
    """How many ranges are guarded (the link-local ones included)."""
    hosts: int
    """How many names are guarded."""
    exemptions: int
    """How many entries the tenant's rules exempt."""
    narrowings: tuple[Narrowing, ...] = ()


@dataclass(frozen=True)
class GuardedSpec:
    """A spec with the guard merged in, or the reasons it cannot be."""

    spec: model.SidecarPolicySpec
    """The spec with its allowedIps narrowed (as it was when there are refusals)."""
    report: EgressReport
    refusals: tuple[errors.Issue, ...]


def guard_spec(
    spec: model.SidecarPolicySpec, guard: EgressGuard, allow: EgressAllowance = NO_ALLOWANCE
) -> GuardedSpec:
    """Merge the guard, less the tenant's exemptions, into a parsed spec. Idempotent: a
    guarded spec comes back unchanged, with no narrowings."""
    effective = guard.exempting(allow)
    narrowings: list[Narrowing] = []
    refusals: list[errors.Issue] = []
    rules = []
    for i, rule in enumerate(spec.network or ()):
        endpoints = []
        for j, endpoint in enumerate(rule.endpoints):
            at = ("network", i, "endpoints", j)
            refusals.extend(
                _host_refusals(errors.field_path((*at, "host")), endpoint.host, effective, allow)
            )
            kept, narrowed = _narrow(at, endpoint.allowed_ips or (), effective)
            narrowings.extend(narrowed)
            if narrowed and not kept:
                refusals.append(_emptied(errors.field_path((*at, "allowedIps")), narrowed))
            if narrowed:
                endpoint = endpoint.model_copy(update={"allowed_ips": kept})
            endpoints.append(endpoint)
        rules.append(rule.model_copy(update={"endpoints": tuple(endpoints)}))
    guarded = spec.model_copy(update={"network": tuple(rules)}) if narrowings else spec
    return GuardedSpec(
        spec if refusals else guarded, guard.report(allow, narrowings), tuple(refusals)
    )


def _host_refusals(
    path: str, host: str, guard: EgressGuard, allow: EgressAllowance
) -> list[errors.Issue]:
    address = _address(host)
    if address is not None:
        inside = next((net for net in guard.networks if address in net.network), None)
        if inside is None:
            return []
        return [
            errors.Issue(
                path,
                f"{host} is inside {inside.entry} ({inside.source}), which the platform's "
                "egress guard closes; remove the endpoint, or ask the platform team to exempt "
                "the address in your namespace's tenancy rules",
            )
        ]
    name = host.lower().rstrip(".")
    if not name or allow.covers(name):
        return []
    for guarded in guard.names:
        if allow.covers(guarded.name) or not ambiguity.hosts_overlap(name, guarded.name):
            continue
        what = "is" if name == guarded.name else "can name"
        return [
            errors.Issue(
                path,
                f"{host} {what} {guarded.name} ({guarded.source}), which the platform's egress "
                "guard closes, and a name cannot be narrowed; "
                + (
                    "list the names you need instead of the wildcard"
                    if "*" in name
                    else "remove the endpoint"
                )
                + ", or ask the platform team to exempt the name in your namespace's tenancy "
                "rules",
            )
        ]
    return []


def _address(host: str) -> Address | None:
    """The address a host names if it is an IP literal in any spelling a resolver accepts
    (IPv6 in brackets, IPv4-mapped IPv6, inet_aton's octal and hex forms), else None."""
    literal = host.strip("[]")
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        if not _LEGACY_IPV4.fullmatch(literal.lower()):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(literal))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _narrow(
    at: tuple[str | int, ...], entries: Sequence[str], guard: EgressGuard
) -> tuple[tuple[str, ...], list[Narrowing]]:
    """The entries with the guard cut out, in order, and what was cut."""
    kept: list[str] = []
    narrowings = []
    for k, entry in enumerate(entries):
        pieces = [ipaddress.ip_network(entry, strict=False)]
        hit: dict[str, None] = {}  # the guard entries overlapped, in guard order
        for net in guard.networks:
            if any(p.overlaps(net.network) for p in pieces):  # False across IP versions
                hit[f"{net.entry} ({net.source})"] = None
                pieces = [q for p in pieces for q in _minus(p, net.network)]
        if not hit:
            kept.append(entry)
            continue
        # The pieces share the entry's IP version, which is all collapse_addresses needs.
        left = tuple(str(p) for p in ipaddress.collapse_addresses(pieces))  # type: ignore[type-var]
        kept.extend(left)
        narrowings.append(
            Narrowing(errors.field_path((*at, "allowedIps", k)), entry, left, tuple(hit))
        )
    # A narrowed entry can repeat one written beside it; allowedIps is a set.
    return tuple(dict.fromkeys(kept)), narrowings


def _minus(network: Network, hole: Network) -> list[Network]:
    """`network` without the addresses of `hole` (the exact complement, as few CIDRs as
    `address_exclude` gives)."""
    if network.version != hole.version or not network.overlaps(hole):
        return [network]
    if network.subnet_of(hole):  # type: ignore[arg-type]  # same version, checked above
        return []
    return list(network.address_exclude(hole))  # type: ignore[arg-type]


def _emptied(path: str, narrowings: Sequence[Narrowing]) -> errors.Issue:
    guarded = ", ".join(dict.fromkeys(g for n in narrowings for g in n.guarded))
    return errors.Issue(
        path,
        f"every entry is inside the platform's egress guard ({guarded}), and an endpoint "
        "without allowedIps may reach any public address instead of none; list addresses "
        "outside the guard, remove the endpoint, or ask the platform team to exempt the "
        "range in your namespace's tenancy rules",
    )


def _covers(pattern: str, host: str) -> bool:
    """Whether every host `host` can name is one `pattern` names (`*.` is one label,
    `**.` one or more, as the gateway matches them)."""
    if pattern == host:
        return True
    kind, suffix = _wildcard(pattern)
    if not kind:
        return False
    host_kind, host_suffix = _wildcard(host)
    if not host_kind:
        if not host.endswith("." + suffix):
            return False
        return kind == "**" or "." not in host[: -len(suffix) - 1]
    if kind == "*":
        return host_kind == "*" and host_suffix == suffix
    return host_suffix == suffix or host_suffix.endswith("." + suffix)


def _wildcard(host: str) -> tuple[str, str]:
    first, _, rest = host.partition(".")
    return (first, rest) if first in ("*", "**") else ("", host)
