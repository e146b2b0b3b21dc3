"""Spec -> OpenShell SandboxPolicy: every field lands where OpenShell expects it, canonically."""

from __future__ import annotations

from typing import Any

import pytest
from openshell._proto import sandbox_pb2

from helmdeck_operator.policy import canonical, errors, model, translate
from tests.support import policies


def one_endpoint(**fields: Any) -> sandbox_pb2.NetworkEndpoint:
    """The translation of the one endpoint of policies.with_endpoint(**fields)."""
    spec = policies.with_endpoint(**fields)
    endpoint: sandbox_pb2.NetworkEndpoint = (
        translate.to_sandbox_policy(spec).network_policies["api"].endpoints[0]
    )
    return endpoint


def test_a_full_spec_maps_field_by_field() -> None:
    spec = {
        "network": [
            {
                "name": "github",
                "endpoints": [
                    {
                        "host": "api.github.com",
                        "port": 443,
                        "path": "/repos/**",
                        "protocol": "rest",
                        "tls": "terminate",
                        "enforcement": "audit",
                        "rules": [
                            {
                                "allow": {
                                    "method": "GET",
                                    "path": "/repos/*/*",
                                    "query": {"page": {"glob": "[0-9]*"}},
                                }
                            }
                        ],
                        "denyRules": [
                            {"method": "DELETE", "query": {"force": {"any": ["1", "true"]}}}
                        ],
                        "allowedIps": ["140.82.112.0/20"],
                    }
                ],
                "binaries": ["/usr/bin/git"],
            }
        ],
        "filesystem": {"includeWorkdir": False, "readOnly": ["/usr"], "readWrite": ["/tmp"]},
        "landlock": {"compatibility": "hard_requirement"},
        "process": {"runAsUser": "sandbox", "runAsGroup": "sandbox"},
    }

    # policies.base_policy: /usr read-only, /tmp writable, run as sandbox, as the spec says.
    expected = policies.base_policy(
        include_workdir=False,
        landlock="hard_requirement",
        github=sandbox_pb2.NetworkPolicyRule(
            name="github",
            endpoints=[
                sandbox_pb2.NetworkEndpoint(
                    host="api.github.com",
                    port=443,
                    path="/repos/**",
                    protocol="rest",
                    tls=sandbox_pb2.NETWORK_TLS_MODE_TERMINATE,
                    enforcement=sandbox_pb2.NETWORK_ENFORCEMENT_MODE_AUDIT,
                    rules=[
                        sandbox_pb2.L7Rule(
                            allow=sandbox_pb2.L7Allow(
                                method="GET",
                                path="/repos/*/*",
                                query={"page": sandbox_pb2.L7QueryMatcher(glob="[0-9]*")},
                            )
                        )
                    ],
                    deny_rules=[
                        sandbox_pb2.L7DenyRule(
                            method="DELETE",
                            query={"force": sandbox_pb2.L7QueryMatcher(any=["1", "true"])},
                        )
                    ],
                    allowed_ips=["140.82.112.0/20"],
                )
            ],
            binaries=[sandbox_pb2.NetworkBinary(path="/usr/bin/git")],
        ),
    )

    assert translate.to_sandbox_policy(spec) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("terminate", sandbox_pb2.NETWORK_TLS_MODE_TERMINATE),
        ("passthrough", sandbox_pb2.NETWORK_TLS_MODE_PASSTHROUGH),
        ("skip", sandbox_pb2.NETWORK_TLS_MODE_SKIP),
    ],
)
def test_tls_modes(value: str, expected: int) -> None:
    assert one_endpoint(port=443, tls=value).tls == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("enforce", sandbox_pb2.NETWORK_ENFORCEMENT_MODE_ENFORCE),
        ("audit", sandbox_pb2.NETWORK_ENFORCEMENT_MODE_AUDIT),
    ],
)
def test_enforcement_modes(value: str, expected: int) -> None:
    endpoint = one_endpoint(port=443, protocol="rest", access="read-only", enforcement=value)
    assert endpoint.enforcement == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("read-only", sandbox_pb2.NETWORK_ACCESS_PRESET_READ_ONLY),
        ("read-write", sandbox_pb2.NETWORK_ACCESS_PRESET_READ_WRITE),
        ("full", sandbox_pb2.NETWORK_ACCESS_PRESET_FULL),
    ],
)
def test_access_presets(value: str, expected: int) -> None:
    assert one_endpoint(port=443, protocol="rest", access=value).access == expected


def test_absent_enums_are_left_to_the_gateway() -> None:
    endpoint = one_endpoint(port=443)

    assert endpoint.tls == sandbox_pb2.NETWORK_TLS_MODE_UNSPECIFIED
    assert endpoint.enforcement == sandbox_pb2.NETWORK_ENFORCEMENT_MODE_UNSPECIFIED
    assert endpoint.access == sandbox_pb2.NETWORK_ACCESS_PRESET_UNSPECIFIED


#: For each L7 protocol, the least an endpoint must say to be accepted by the gateway.
L7_MINIMAL: dict[str, dict[str, Any]] = {
    "rest": {"access": "read-only"},
    "websocket": {"access": "full"},
    "graphql": {"rules": [{"allow": {"operationType": "query"}}]},
    "sql": {"access": "read-only"},
    "json-rpc": {"rules": [{"allow": {"method": "*"}}]},
    "mcp": {"mcp": {"allowAllKnownMethods": True}},
}


@pytest.mark.parametrize("protocol", sorted(L7_MINIMAL))
def test_l7_protocols_pass_as_written(protocol: str) -> None:
    assert one_endpoint(port=443, protocol=protocol, **L7_MINIMAL[protocol]).protocol == protocol


def test_graphql_operations_and_mcp_options_are_translated() -> None:
    graphql = one_endpoint(
        port=443,
        protocol="graphql",
        rules=[{"allow": {"operationType": "query", "operationName": "Get*"}}],
        denyRules=[{"operationType": "mutation"}],
    )
    assert (graphql.rules[0].allow.operation_type, graphql.rules[0].allow.operation_name) == (
        "query",
        "Get*",
    )
    assert graphql.deny_rules[0].operation_type == "mutation"
    mcp = one_endpoint(port=443, protocol="mcp", mcp={"allowAllKnownMethods": True})
    assert mcp.HasField("mcp")
    assert mcp.mcp.allow_all_known_mcp_methods
    assert not one_endpoint(port=443, protocol="rest", access="full").HasField("mcp")


def test_tcp_is_sent_as_the_empty_protocol_so_both_spellings_are_one_policy() -> None:
    assert one_endpoint(port=22, protocol="tcp") == one_endpoint(port=22)
    assert one_endpoint(port=22, protocol="tcp").protocol == ""


def test_rules_become_a_map_keyed_by_name_whatever_their_order() -> None:
    a = policies.rule("a", policies.endpoint("a.example.com"))
    b = policies.rule("b", policies.endpoint("b.example.com"))

    policy = translate.to_sandbox_policy({"network": [b, a]})

    assert sorted(policy.network_policies) == ["a", "b"]
    assert policy.network_policies["a"].name == "a"
    assert policy.network_policies["b"].endpoints[0].host == "b.example.com"
    assert policy == translate.to_sandbox_policy({"network": [a, b]})


def test_set_lists_are_sorted() -> None:
    spec = {
        "network": [
            policies.rule(
                "api",
                policies.endpoint(
                    port=None,
                    ports=[8443, 443],
                    allowedIps=["203.0.113.9", "198.51.100.0/24"],
                ),
                binaries=["/usr/bin/python3", "/usr/bin/curl"],
            )
        ],
        "filesystem": {"readOnly": ["/usr", "/etc"], "readWrite": ["/tmp", "/dev/null"]},
    }

    policy = translate.to_sandbox_policy(spec)

    rule = policy.network_policies["api"]
    assert list(rule.endpoints[0].ports) == [443, 8443]
    assert list(rule.endpoints[0].allowed_ips) == ["198.51.100.0/24", "203.0.113.9"]
    assert [b.path for b in rule.binaries] == ["/usr/bin/curl", "/usr/bin/python3"]
    assert list(policy.filesystem.read_only) == ["/etc", "/usr"]
    assert list(policy.filesystem.read_write) == ["/dev/null", "/tmp"]


def test_endpoint_order_is_kept() -> None:
    endpoints = [{"host": "b.example.com", "port": 443}, {"host": "a.example.com", "port": 443}]

    policy = translate.to_sandbox_policy({"network": [{"name": "x", "endpoints": endpoints}]})

    assert [e.host for e in policy.network_policies["x"].endpoints] == [
        "b.example.com",
        "a.example.com",
    ]


def test_defaults_are_always_sent_and_process_only_when_named() -> None:
    policy = translate.to_sandbox_policy({})

    assert policy.version == translate.POLICY_VERSION == 1
    assert policy.HasField("filesystem")
    assert policy.filesystem.include_workdir is True
    assert policy.landlock.compatibility == "best_effort"
    assert not policy.HasField("process")
    assert len(policy.network_policies) == 0
    assert translate.to_sandbox_policy({"process": {}}) == policy


def test_a_process_with_only_a_user_is_sent() -> None:
    policy = translate.to_sandbox_policy({"process": {"runAsUser": "1000"}})

    assert policy.process == sandbox_pb2.ProcessPolicy(run_as_user="1000")


def test_operator_only_fields_do_not_reach_the_sandbox_policy() -> None:
    assert translate.to_sandbox_policy(
        {"staticChanges": "Recreate", "rollout": {"maxUnavailable": 5}}
    ) == translate.to_sandbox_policy({})


def test_a_parsed_model_translates_like_its_source() -> None:
    raw = {"network": [{"name": "a", "endpoints": [{"host": "a.example.com", "port": 1}]}]}

    assert translate.to_sandbox_policy(model.parse_spec(raw)) == translate.to_sandbox_policy(raw)


def test_an_invalid_spec_raises_the_project_error() -> None:
    with pytest.raises(errors.PolicyValidationError) as caught:
        translate.to_sandbox_policy({"network": [{"name": "a"}]})

    assert [str(i) for i in caught.value.issues] == ["spec.network[0].endpoints: Field required"]


def test_canonicalize_leaves_its_argument_alone_and_is_idempotent() -> None:
    messy = sandbox_pb2.SandboxPolicy(
        filesystem=sandbox_pb2.FilesystemPolicy(read_only=["/usr", "/etc", "/usr"]),
        process=sandbox_pb2.ProcessPolicy(),
        network_policies={
            "x": sandbox_pb2.NetworkPolicyRule(
                endpoints=[sandbox_pb2.NetworkEndpoint(protocol="tcp", ports=[2, 1, 2])],
                binaries=[
                    sandbox_pb2.NetworkBinary(path="/b"),
                    sandbox_pb2.NetworkBinary(path="/a"),
                ],
            )
        },
    )
    before = messy.SerializeToString(deterministic=True)

    once = canonical.canonicalize(messy)

    assert messy.SerializeToString(deterministic=True) == before
    assert canonical.canonicalize(once) == once
    assert list(once.filesystem.read_only) == ["/etc", "/usr"]
    assert not once.HasField("process")
    endpoint = once.network_policies["x"].endpoints[0]
    assert (endpoint.protocol, list(endpoint.ports)) == ("", [1, 2])
    assert [b.path for b in once.network_policies["x"].binaries] == ["/a", "/b"]


def test_canonicalize_does_not_invent_absent_sections() -> None:
    assert not canonical.canonicalize(sandbox_pb2.SandboxPolicy()).HasField("filesystem")
