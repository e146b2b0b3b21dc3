"""The platform egress guard (policy/guard.py): allowedIps narrowed to the exact complement,
guarded hosts refused with the field and the guard entry named, exemptions, idempotence."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from helmdeck_operator.policy import errors, guard, model, translate
from helmdeck_operator.policy.guard import EgressAllowance, EgressGuard, GuardedSpec
from tests.support import policies

#: What the chart ships, plus a service and a pod range.
CLUSTER = EgressGuard.build(
    api_server=[
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
    ],
    service_cidrs=["10.96.0.0/12", "fd00:10:96::/108"],
    pod_cidrs=["10.244.0.0/16"],
    hosts=["metadata.google.internal"],
    cidrs=["100.100.100.200/32"],
)
HOST = "spec.network[0].endpoints[0].host"
IPS = "spec.network[0].endpoints[0].allowedIps"


def guarded(
    allowed_ips: list[str] | None = None,
    host: str = "internal.example.com",
    egress: EgressGuard = CLUSTER,
    allow: EgressAllowance = guard.NO_ALLOWANCE,
) -> GuardedSpec:
    fields: dict[str, Any] = {"host": host}
    if allowed_ips is not None:
        fields["allowedIps"] = allowed_ips
    spec = model.parse_spec({"network": [policies.rule("api", policies.rest(**fields))]})
    return guard.guard_spec(spec, egress, allow)


def sent_ips(result: GuardedSpec) -> list[str]:
    network = result.spec.network or ()
    return list(network[0].endpoints[0].allowed_ips or ())


def covered(cidrs: list[str]) -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return {ipaddress.ip_network(c) for c in cidrs}


def addresses(cidrs: list[str]) -> int:
    return sum(ipaddress.ip_network(c).num_addresses for c in cidrs)


# -- allowedIps ------------------------------------------------------------------------


def test_a_partial_overlap_is_narrowed_to_the_exact_complement() -> None:
    result = guarded(["10.0.0.0/8"], egress=EgressGuard.build(service_cidrs=["10.96.0.0/12"]))

    assert sent_ips(result) == ["10.0.0.0/10", "10.64.0.0/11", "10.112.0.0/12", "10.128.0.0/9"]
    assert addresses(sent_ips(result)) == 2**24 - 2**20  # everything but the /12, exactly
    service = ipaddress.ip_network("10.96.0.0/12")
    assert not any(n.overlaps(service) for n in covered(sent_ips(result)))
    (narrowing,) = result.report.narrowings
    assert narrowing == guard.Narrowing(
        f"{IPS}[0]", "10.0.0.0/8", tuple(sent_ips(result)), ("10.96.0.0/12 (serviceCidrs)",)
    )
    assert result.refusals == ()


def test_every_overlapping_guard_range_is_cut_out_and_named() -> None:
    result = guarded(["10.0.0.0/8", "203.0.113.0/24"])

    kept = sent_ips(result)
    assert "203.0.113.0/24" in kept  # untouched, as written
    ten = ipaddress.ip_network("10.0.0.0/8")
    inside = [n for n in covered(kept) if n.network_address in ten]
    # 2^24 minus the service /12 and the pod /16 (the API server's /32 is in the /12).
    assert sum(n.num_addresses for n in inside) == 2**24 - 2**20 - 2**16
    assert result.report.narrowings[0].guarded == (
        "10.96.0.1/32 (apiServer)",
        "10.96.0.0/12 (serviceCidrs)",
        "10.244.0.0/16 (podCidrs)",
    )


def test_the_whole_ipv4_space_keeps_only_what_is_outside_the_guard() -> None:
    kept = sent_ips(guarded(["0.0.0.0/0"]))
    metadata = ipaddress.ip_address("169.254.169.254")
    assert not any(metadata in n for n in covered(kept))
    guarded_total = 2**16 + 2**20 + 2**16 + 1  # link-local, services, pods, Alibaba metadata
    assert addresses(kept) == 2**32 - guarded_total


def test_ipv6_entries_are_narrowed_against_ipv6_ranges_only() -> None:
    result = guarded(["fe80::/9", "fd00:10::/32"])

    kept = sent_ips(result)
    assert not any(n.overlaps(ipaddress.ip_network("fe80::/10")) for n in covered(kept))
    assert "fec0::/10" in kept  # the half of fe80::/9 outside link-local
    assert not any(n.overlaps(ipaddress.ip_network("fd00:10:96::/108")) for n in covered(kept))
    assert addresses(kept) == 2**119 - 2**118 + 2**96 - 2**20
    assert [n.guarded for n in result.report.narrowings] == [
        ("fe80::/10 (linkLocal)",),
        ("fd00:10:96::/108 (serviceCidrs)",),
    ]


def test_an_entry_inside_the_guard_is_removed_and_the_rest_kept() -> None:
    result = guarded(["169.254.169.254/32", "203.0.113.0/24"])

    assert sent_ips(result) == ["203.0.113.0/24"]
    (narrowing,) = result.report.narrowings
    assert (narrowing.field, narrowing.kept) == (f"{IPS}[0]", ())
    assert str(narrowing) == (
        f"{IPS}[0]: 169.254.169.254/32 removed: inside 169.254.0.0/16 (linkLocal)"
    )


def test_an_endpoint_left_with_no_address_is_refused_naming_the_field() -> None:
    result = guarded(["169.254.169.254", "10.96.0.0/16"])

    (refusal,) = result.refusals
    assert refusal.path == IPS
    assert "169.254.0.0/16 (linkLocal)" in refusal.message
    assert "10.96.0.0/12 (serviceCidrs)" in refusal.message
    assert "any public address" in refusal.message  # why removing all is not "none"
    assert sent_ips(result) == ["169.254.169.254", "10.96.0.0/16"]  # the spec, unchanged


def test_entries_outside_the_guard_pass_as_written() -> None:
    result = guarded(["203.0.113.7", "2001:db8::/32"])

    assert sent_ips(result) == ["203.0.113.7", "2001:db8::/32"]
    assert result.report.narrowings == ()


def test_a_narrowed_entry_equal_to_another_entry_is_sent_once() -> None:
    result = guarded(
        ["10.0.0.0/8", "10.0.0.0/10"], egress=EgressGuard.build(cidrs=["10.96.0.0/12"])
    )

    assert sent_ips(result).count("10.0.0.0/10") == 1


# -- hosts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "entry"),
    [
        ("169.254.169.254", "169.254.0.0/16 (linkLocal)"),
        ("10.96.0.1", "10.96.0.1/32 (apiServer)"),
        ("10.100.3.4", "10.96.0.0/12 (serviceCidrs)"),
        ("100.100.100.200", "100.100.100.200/32 (cidrs)"),
        # Spellings the C resolver reads as 169.254.169.254.
        ("0xa9fea9fe", "169.254.0.0/16 (linkLocal)"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.0.0/16 (linkLocal)"),
    ],
)
def test_an_ip_literal_host_inside_the_guard_is_refused(host: str, entry: str) -> None:
    (refusal,) = guarded(host=host).refusals

    assert refusal.path == HOST
    assert f"{host} is inside {entry}" in refusal.message
    assert "tenancy rules" in refusal.message  # how to fix it


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("kubernetes.default.svc", "kubernetes.default.svc"),
        ("kubernetes.default.svc.cluster.local", "kubernetes.default.svc.cluster.local"),
        ("metadata.google.internal", "metadata.google.internal"),
        ("*.default.svc", "kubernetes.default.svc"),
        ("**.cluster.local", "kubernetes.default.svc.cluster.local"),
        ("**.svc.cluster.local", "kubernetes.default.svc.cluster.local"),
        ("*.google.internal", "metadata.google.internal"),
    ],
)
def test_a_guarded_name_or_a_wildcard_covering_one_is_refused(host: str, name: str) -> None:
    (refusal,) = guarded(host=host).refusals

    assert refusal.path == HOST
    assert name in refusal.message
    assert "a name cannot be narrowed" in refusal.message
    if "*" in host:
        assert "instead of the wildcard" in refusal.message


@pytest.mark.parametrize(
    "host",
    [
        "api.example.com",
        "203.0.113.7",
        "*.svc.cluster.local",  # one label: never kubernetes.default.svc.cluster.local
        "kubernetes.example.com",
        "**.example.internal",
    ],
)
def test_hosts_the_guard_does_not_cover_pass(host: str) -> None:
    result = guarded(host=host)
    assert (result.refusals, result.report.narrowings) == ((), ())


def test_a_guarded_wildcard_covers_names_under_it() -> None:
    egress = EgressGuard.build(hosts=["**.internal"])
    (refusal,) = guarded(host="metadata.google.internal", egress=egress).refusals
    assert "**.internal (hosts)" in refusal.message


def test_every_problem_of_every_endpoint_is_reported() -> None:
    spec = model.parse_spec(
        {
            "network": [
                policies.rule("a", policies.rest("api.example.com")),
                policies.rule(
                    "b",
                    policies.rest("169.254.169.254"),
                    policies.rest("kubernetes.default.svc", allowedIps=["169.254.0.0/24"]),
                ),
            ]
        }
    )
    result = guard.guard_spec(spec, CLUSTER)
    assert [r.path for r in result.refusals] == [
        "spec.network[1].endpoints[0].host",
        "spec.network[1].endpoints[1].host",
        "spec.network[1].endpoints[1].allowedIps",
    ]


# -- exemptions --------------------------------------------------------------------------


def test_an_exempt_range_is_cut_out_of_the_guard_and_no_more() -> None:
    allow = EgressAllowance.of(["10.96.0.10/32"])

    result = guarded(["10.96.0.0/24"], allow=allow)

    assert sent_ips(result) == ["10.96.0.10/32"]  # the one exempt address of the /24
    assert result.report.narrowings[0].guarded == (
        "10.96.0.1/32 (apiServer)",
        "10.96.0.0/12 (serviceCidrs)",
    )
    assert result.report.exemptions == 1
    assert guarded(host="10.96.0.10", allow=allow).refusals == ()
    assert len(guarded(host="10.96.0.11", allow=allow).refusals) == 1


def test_an_exempt_name_passes_even_under_a_guarded_wildcard() -> None:
    egress = EgressGuard.build(hosts=["**.internal"])
    allow = EgressAllowance.of(["metadata.google.internal"])

    assert guarded(host="metadata.google.internal", egress=egress, allow=allow).refusals == ()
    assert guarded(host="other.google.internal", egress=egress, allow=allow).refusals != ()


def test_a_wildcard_passes_when_every_guarded_name_it_covers_is_exempt() -> None:
    allow = EgressAllowance.of(["kubernetes.default.svc"])
    assert guarded(host="*.default.svc", allow=allow).refusals == ()
    # An exempt wildcard covers the names under it.
    allow = EgressAllowance.of(["**.cluster.local"])
    assert guarded(host="*.default.svc.cluster.local", allow=allow).refusals == ()


def test_the_link_local_ranges_can_be_exempted_only_by_tenancy_rules() -> None:
    assert EgressGuard.build().networks == EgressGuard().networks  # not configurable away
    allow = EgressAllowance.of(["169.254.169.254"])
    assert guarded(host="169.254.169.254", allow=allow).refusals == ()


# -- idempotence and the translation -------------------------------------------------------


@pytest.mark.parametrize(
    "allowed_ips",
    [["10.0.0.0/8"], ["0.0.0.0/0", "::/0"], ["169.254.0.0/15", "203.0.113.0/24"]],
)
def test_guarding_a_guarded_spec_changes_nothing(allowed_ips: list[str]) -> None:
    once = guarded(allowed_ips)
    twice = guard.guard_spec(once.spec, CLUSTER)

    assert twice.spec == once.spec
    assert twice.report.narrowings == ()
    assert once.report.narrowings != ()


def test_a_spec_the_guard_does_not_touch_is_sent_as_translated(family: str) -> None:
    spec = policies.family_spec(family)
    sent = translate.to_guarded_policy(spec, CLUSTER)
    assert sent.policy == translate.to_sandbox_policy(spec)
    assert sent.report == guard.EgressReport(cidrs=7, hosts=5, exemptions=0)


def test_the_translation_sends_the_narrowed_list() -> None:
    spec = policies.with_endpoint(protocol="rest", access="read-only", allowedIps=["10.0.0.0/8"])
    sent = translate.to_guarded_policy(spec, EgressGuard.build(service_cidrs=["10.96.0.0/12"]))
    endpoint = sent.policy.network_policies["api"].endpoints[0]
    assert list(endpoint.allowed_ips) == [
        "10.0.0.0/10",
        "10.112.0.0/12",
        "10.128.0.0/9",
        "10.64.0.0/11",
    ]  # canonical: sorted as strings


def test_a_refusal_raises_the_guard_error_with_every_field() -> None:
    spec = policies.with_endpoint(host="169.254.169.254", protocol="rest", access="read-only")
    with pytest.raises(errors.EgressGuardError) as raised:
        translate.to_guarded_policy(spec, EgressGuard())
    assert [issue.path for issue in raised.value.issues] == [HOST]
    assert isinstance(raised.value, errors.PolicyValidationError)


# -- building the guard ------------------------------------------------------------------


def test_the_guard_is_built_from_addresses_cidrs_and_names() -> None:
    built = EgressGuard.build(api_server=["10.96.0.1", "Kubernetes.Default."], hosts=["*.internal"])
    assert [(n.entry, n.source) for n in built.networks] == [
        ("169.254.0.0/16", "linkLocal"),
        ("fe80::/10", "linkLocal"),
        ("10.96.0.1/32", "apiServer"),
    ]
    assert [(n.name, n.source) for n in built.names] == [
        ("kubernetes.default", "apiServer"),
        ("*.internal", "hosts"),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"service_cidrs": ["10.96.0.1/12"]},  # host bits: a typo more often than not
        {"pod_cidrs": ["kubernetes"]},
        {"hosts": ["http://metadata"]},
        {"api_server": ["a b"]},
    ],
)
def test_a_bad_entry_is_refused(fields: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError, match="is not a"):
        EgressGuard.build(**fields)
