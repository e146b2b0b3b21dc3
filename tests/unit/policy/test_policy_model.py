"""The spec model refuses what the CRD refuses, at the path the apiserver reports, and
applies the CRD's defaults so that defaulted and undefaulted specs are the same policy."""

from __future__ import annotations

import re
from typing import Any

import pytest

from helmdeck_operator.policy import errors, model, translate
from tests.support.policies import with_endpoint

_CEL_ENDPOINT_L7 = (
    "access, rules and denyRules inspect requests, so they need an L7 protocol "
    "(rest, websocket, graphql, sql, json-rpc or mcp), not tcp"
)


def _wildcard(host: str) -> str:
    return (
        f"host {host} may use a wildcard only as its whole first label, above at least two "
        "more labels (*.example.com or **.example.com)"
    )


def _dns(host: str) -> str:
    return (
        f"host {host} must be a lowercase DNS name or IPv4 address (letters, digits, '-' and "
        "'.'; no scheme, port or path)"
    )


def _uid(prefix: str) -> str:
    return (
        f"{prefix} must be sandbox or a numeric uid from 1 to 4294967294 in plain decimal (no "
        "sign, spaces or leading zeros; OpenShell resolves no other user names, and never runs "
        "as root)"
    )


def _gid(prefix: str) -> str:
    return (
        f"{prefix} must be sandbox or a numeric gid from 1 to 4294967294 in plain decimal (no "
        "sign, spaces or leading zeros; OpenShell resolves no other group names, and never "
        "runs as group root)"
    )


_OVERLAP = (
    "a path cannot be both readOnly and readWrite: a readOnly path that is a readWrite path "
    "or under one would be writable"
)


_IP = "allowedIps entries must be an IP address or a CIDR such as 203.0.113.0/24"
_EP = "spec.network[0].endpoints[0]"


def with_binaries(binaries: list[str]) -> dict[str, Any]:
    spec = with_endpoint()
    spec["network"][0]["binaries"] = binaries
    return spec


def with_query(matcher: dict[str, Any]) -> dict[str, Any]:
    return with_endpoint(protocol="rest", rules=[{"allow": {"query": {"page": matcher}}}])


def issues(spec: object) -> dict[str, str]:
    with pytest.raises(errors.PolicyValidationError) as caught:
        model.parse_spec(spec)
    return {issue.path: issue.message for issue in caught.value.issues}


# (spec, path, exact message); every CEL message of the CRD appears here at least once
# (test_every_cel_message_of_the_crd_is_exercised).
CEL_CASES = [
    pytest.param(
        with_endpoint(ports=[443]), _EP, "set exactly one of port or ports", id="port-and-ports"
    ),
    pytest.param(
        {"network": [{"name": "api", "endpoints": [{"host": "api.example.com"}]}]},
        _EP,
        "set exactly one of port or ports",
        id="neither-port-nor-ports",
    ),
    pytest.param(
        with_endpoint(protocol="rest", access="full", rules=[{"allow": {"method": "GET"}}]),
        _EP,
        "access is a preset: set access or rules, not both",
        id="access-and-rules",
    ),
    pytest.param(with_endpoint(access="read-only"), _EP, _CEL_ENDPOINT_L7, id="access-no-protocol"),
    pytest.param(
        with_endpoint(protocol="tcp", rules=[{"allow": {"method": "GET"}}]),
        _EP,
        _CEL_ENDPOINT_L7,
        id="rules-on-tcp",
    ),
    pytest.param(
        with_endpoint(denyRules=[]), _EP, _CEL_ENDPOINT_L7, id="empty-deny-rules-count-as-set"
    ),
    pytest.param(
        with_endpoint(host="*.com"),
        f"{_EP}.host",
        _wildcard("*.com"),
        id="wildcard-above-one-label",
    ),
    pytest.param(
        with_endpoint(host="api.*.example.com"),
        f"{_EP}.host",
        _wildcard("api.*.example.com"),
        id="wildcard-not-first-label",
    ),
    pytest.param(
        with_endpoint(host="*api.example.com"),
        f"{_EP}.host",
        _wildcard("*api.example.com"),
        id="partial-label",
    ),
    pytest.param(
        with_endpoint(host="API.example.com"),
        f"{_EP}.host",
        _dns("API.example.com"),
        id="uppercase",
    ),
    pytest.param(
        with_endpoint(host="api.example.com:443"),
        f"{_EP}.host",
        _dns("api.example.com:443"),
        id="host-with-port",
    ),
    pytest.param(
        with_endpoint(host="api.example.com\n"),
        f"{_EP}.host",
        _dns("api.example.com\n"),
        id="trailing-newline",
    ),
    pytest.param(
        {"filesystem": {"readOnly": ["/usr", "/data"], "readWrite": ["/data"]}},
        "spec.filesystem.readWrite",
        _OVERLAP,
        id="path-both-ro-and-rw",
    ),
    pytest.param(
        {"filesystem": {"readOnly": ["/data/x"], "readWrite": ["/tmp", "/data"]}},
        "spec.filesystem.readWrite",
        _OVERLAP,
        id="read-only-under-read-write",
    ),
    pytest.param(
        {"process": {"runAsUser": "root"}},
        "spec.process.runAsUser",
        _uid("runAsUser root"),
        id="user-root",
    ),
    pytest.param(
        {"process": {"runAsUser": "0"}},
        "spec.process.runAsUser",
        _uid("runAsUser 0"),
        id="uid-0",
    ),
    pytest.param(
        {"process": {"runAsUser": "0000"}},
        "spec.process.runAsUser",
        _uid("runAsUser 0000"),
        id="uid-0-spelled-long",
    ),
    pytest.param(
        {"process": {"runAsUser": "4294967295"}},
        "spec.process.runAsUser",
        _uid("runAsUser 4294967295"),
        id="uid-too-big",
    ),
    pytest.param(
        {"process": {"runAsUser": "nobody"}},
        "spec.process.runAsUser",
        _uid("runAsUser nobody"),
        id="user-name",
    ),
    pytest.param(
        {"process": {"runAsGroup": "root"}},
        "spec.process.runAsGroup",
        _gid("runAsGroup root"),
        id="group-root",
    ),
    pytest.param(
        {"filesystem": {"readWrite": ["/tmp", "/"]}},
        "spec.filesystem.readWrite",
        "readWrite cannot be / (the whole filesystem); name the directories to write",
        id="read-write-root",
    ),
    pytest.param(
        {"filesystem": {"readOnly": ["/data/./etc"]}},
        "spec.filesystem.readOnly[0]",
        "path /data/./etc has a . component; write it without one",
        id="dot",
    ),
    pytest.param(
        {"filesystem": {"readWrite": ["/data//tmp"]}},
        "spec.filesystem.readWrite[0]",
        "path /data//tmp has an empty component (//); write a single /",
        id="double-slash",
    ),
    pytest.param(
        with_binaries(["/usr/bin/"]),
        "spec.network[0].binaries[0]",
        "path /usr/bin/ ends with /; write it without the trailing /",
        id="trailing-slash",
    ),
    pytest.param(
        with_endpoint(protocol="rest", access="full", path="/a/../admin"),
        f"{_EP}.path",
        "path /a/../admin has a .. component; write it without one",
        id="request-path-dotdot",
    ),
    pytest.param(
        with_endpoint(allowedIps=["10.0.0.1/8"]),
        f"{_EP}.allowedIps[0]",
        "allowedIps entry 10.0.0.1/8 has host bits set: write its network address, with every "
        "bit after the first 8 set to 0",
        id="cidr-host-bits",
    ),
    pytest.param(
        with_endpoint(host="2001:db8::1", protocol="rest", access="full"),
        f"{_EP}.host",
        "host 2001:db8::1 is an IPv6 address: a host is a DNS name or an IPv4 address; give a "
        "name and list its IPv6 addresses or ranges in allowedIps",
        id="host-ipv6",
    ),
    pytest.param(
        with_endpoint(host="a..example.com"),
        f"{_EP}.host",
        "host a..example.com has an empty label (a leading, trailing or doubled '.')",
        id="host-empty-label",
    ),
    pytest.param(
        with_endpoint(host="a.-b.example.com"),
        f"{_EP}.host",
        "host a.-b.example.com has a label that starts or ends with '-'",
        id="host-hyphen",
    ),
    pytest.param(
        with_endpoint(host="x" * 64 + ".example.com"),
        f"{_EP}.host",
        f"host {'x' * 64}.example.com has a label longer than 63 characters",
        id="host-long-label",
    ),
    pytest.param(
        with_endpoint(host="10.0.0.256", protocol="rest", access="full"),
        f"{_EP}.host",
        "host 10.0.0.256 is all digits and dots, so it must be an IPv4 address: four numbers "
        "from 0 to 255 without leading zeros, such as 203.0.113.7",
        id="host-not-ipv4",
    ),
    pytest.param(
        {"filesystem": {"readOnly": ["/data/../etc"]}},
        "spec.filesystem.readOnly[0]",
        "path /data/../etc has a .. component; write it without one",
        id="dotdot",
    ),
    pytest.param(
        with_endpoint(protocol="tcp", path="/v1"),
        _EP,
        "path and enforcement apply to request inspection, so they need an L7 protocol "
        "(rest, websocket, graphql, sql, json-rpc or mcp), not tcp",
        id="tcp-path",
    ),
    pytest.param(
        with_endpoint(host="203.0.113.7"),
        _EP,
        "a tcp endpoint's host must be a DNS name, not the IP address 203.0.113.7; to reach "
        "an address, give a name and limit it with allowedIps",
        id="tcp-ip-host",
    ),
    pytest.param(
        with_endpoint(protocol="sql"),
        _EP,
        "protocol sql inspects requests and allows only what access or rules say: set one "
        "of them (access: read-only, for example)",
        id="sql-allows-nothing",
    ),
    pytest.param(
        with_endpoint(protocol="mcp", access="full"),
        _EP,
        "protocol mcp takes no access preset: list rules with allow.method, or set "
        "mcp.allowAllKnownMethods",
        id="mcp-access",
    ),
    pytest.param(
        with_endpoint(protocol="json-rpc"),
        _EP,
        "protocol json-rpc needs rules naming the allowed methods (allow.method)",
        id="json-rpc-no-rules",
    ),
    pytest.param(
        with_endpoint(protocol="mcp", mcp={"allowAllKnownMethods": False}),
        _EP,
        "protocol mcp needs rules naming the allowed methods, or mcp.allowAllKnownMethods: true",
        id="mcp-no-rules",
    ),
    pytest.param(
        with_endpoint(protocol="rest", access="read-only", mcp={}),
        _EP,
        "mcp options apply to protocol mcp only",
        id="mcp-options-on-rest",
    ),
    pytest.param(
        with_endpoint(protocol="rest", rules=[{"allow": {"query": {"q": {"glob": "*"}}}}]),
        _EP,
        "these rules allow nothing: give at least one rule's allow a method, path or "
        "operationType (a query matcher alone does not allow), or use access",
        id="rules-allow-nothing",
    ),
    pytest.param(
        with_endpoint(protocol="rest", denyRules=[{"method": "DELETE"}]),
        _EP,
        "protocol rest inspects requests and allows only what access or rules say: set one "
        "of them (access: read-only, for example); denyRules subtract from what access or "
        "rules allow: set one of them too",
        id="deny-without-base",
    ),
    pytest.param(
        with_endpoint(protocol="sql", access="read-only", enforcement="enforce"),
        _EP,
        "protocol sql supports enforcement: audit only (the gateway cannot parse SQL fully "
        "enough to block)",
        id="sql-enforce",
    ),
    pytest.param(
        with_endpoint(protocol="graphql", access="full", denyRules=[{"path": "/graphql"}]),
        _EP,
        "on a graphql endpoint every rule's allow and every deny rule needs operationType "
        "(query, mutation or subscription)",
        id="graphql-no-operation",
    ),
    pytest.param(
        with_endpoint(protocol="rest", rules=[{"allow": {"method": "GET", "operationName": "x"}}]),
        _EP,
        "operationType and operationName apply to protocol graphql only",
        id="operation-on-rest",
    ),
    pytest.param(
        with_query({"glob": "1*", "any": ["1"]}),
        f"{_EP}.rules[0].allow.query.page",
        "a query matcher sets exactly one of glob or any",
        id="query-glob-and-any",
    ),
    pytest.param(
        with_query({}),
        f"{_EP}.rules[0].allow.query.page",
        "a query matcher sets exactly one of glob or any",
        id="query-neither",
    ),
    pytest.param(
        with_endpoint(allowedIps=["203.0.113.7", "example.com"]),
        f"{_EP}.allowedIps[1]",
        _IP,
        id="ip-hostname",
    ),
]


@pytest.mark.parametrize(("spec", "path", "message"), CEL_CASES)
def test_cel_rules_are_rechecked_at_the_apiserver_path(
    spec: dict[str, Any], path: str, message: str
) -> None:
    assert issues(spec)[path] == message


def cel_messages(schema: object) -> list[re.Pattern[str]]:
    """Every CEL rule's message in a schema, as a pattern: a `messageExpression` such as
    `"host " + self + " may ..."` matches any value where it says `self`."""
    found: list[re.Pattern[str]] = []
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            if "message" in rule:
                found.append(re.compile(re.escape(" ".join(rule["message"].split()))))
            else:
                parts = [part.strip() for part in rule["messageExpression"].split("+")]
                found.append(
                    re.compile(
                        "".join(
                            # A quoted literal, or an expression (self, self.host, a
                            # conditional) standing for any text.
                            re.escape(" ".join(part.strip('"').split()))
                            if part.startswith('"')
                            else "(?s:.*)"
                            for part in parts
                        )
                    )
                )
        for value in schema.values():
            found += cel_messages(value)
    elif isinstance(schema, list):
        for value in schema:
            found += cel_messages(value)
    return found


def test_every_cel_message_of_the_crd_is_exercised(crd_spec_schema: dict[str, Any]) -> None:
    # A case may fail several rules at once (their messages joined by "; "), as some of the
    # gateway's rules never fail alone.
    whole = [str(case.values[2]) for case in CEL_CASES]
    exercised = whole + [part for m in whole for part in m.split("; ")]
    patterns = cel_messages(crd_spec_schema)

    def known(message: str) -> bool:
        return any(p.fullmatch(message) for p in patterns)

    assert [p.pattern for p in patterns if not any(p.fullmatch(m) for m in exercised)] == []
    assert [m for m in whole if not (known(m) or all(map(known, m.split("; "))))] == []


def test_all_failing_cel_rules_of_an_endpoint_are_reported_together() -> None:
    message = issues(with_endpoint(ports=[80], access="full", rules=[{"allow": {}}]))[_EP]

    assert message.split("; ") == [
        "set exactly one of port or ports",
        "access is a preset: set access or rules, not both",
        _CEL_ENDPOINT_L7,
        "these rules allow nothing: give at least one rule's allow a method, path or "
        "operationType (a query matcher alone does not allow), or use access",
    ]


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.0/33",
        "10.0.0.0/255.0.0.0",
        "10.0.0.0/08",
        "010.0.0.1",
        "::ffff:10.0.0.1",
        "fe80::1%eth0",
        "10.0.0.0/",
        "",
    ],
)
def test_allowed_ips_refuses_what_kubernetes_isip_and_iscidr_refuse(value: str) -> None:
    assert issues(with_endpoint(allowedIps=[value]))[f"{_EP}.allowedIps[0]"] == _IP


def test_allowed_ips_accepts_addresses_and_network_cidrs() -> None:
    values = ["203.0.113.7", "10.0.0.0/8", "2001:db8::/32", "2001:db8::1", "0.0.0.0/0"]

    spec = model.parse_spec(with_endpoint(allowedIps=values))

    assert spec.network is not None
    assert spec.network[0].endpoints[0].allowed_ips == tuple(values)


@pytest.mark.parametrize("host", ["*.example.com", "**.a.example.com", "203.0.113.7", "a-b.c0"])
def test_hosts_the_crd_accepts(host: str) -> None:
    # An inspected endpoint: a tcp one may not name an IP address (the gateway's rule).
    model.parse_spec(with_endpoint(host=host, protocol="rest", access="read-only"))


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        (with_endpoint(ports=[443, 8443, 443], port=None), f"{_EP}.ports"),
        (with_endpoint(allowedIps=["203.0.113.7", "203.0.113.7"]), f"{_EP}.allowedIps"),
        (with_binaries(["/usr/bin/node", "/usr/bin/node"]), "spec.network[0].binaries"),
        ({"filesystem": {"readOnly": ["/usr", "/usr"]}}, "spec.filesystem.readOnly"),
        ({"filesystem": {"readWrite": ["/tmp", "/tmp"]}}, "spec.filesystem.readWrite"),
    ],
    ids=["ports", "allowedIps", "binaries", "readOnly", "readWrite"],
)
def test_set_lists_refuse_duplicates(spec: dict[str, Any], path: str) -> None:
    assert "duplicate value" in issues(spec)[path]


def test_rule_names_are_unique() -> None:
    api = with_endpoint()["network"][0]

    assert issues({"network": [api, api]})["spec.network"] == (
        "duplicate rule name 'api': rule names are unique"
    )


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            {"network": [{"name": "Bad", "endpoints": [{"host": "a.b", "port": 1}]}]},
            "spec.network[0].name",
            "pattern",
        ),
        ({"network": [{"name": "api"}]}, "spec.network[0].endpoints", "Field required"),
        (
            {"network": [{"name": "api", "endpoints": []}]},
            "spec.network[0].endpoints",
            "at least 1",
        ),
        (with_endpoint(port="443"), f"{_EP}.port", "valid integer"),
        (with_endpoint(port=True), f"{_EP}.port", "valid integer"),
        (with_endpoint(port=65536), f"{_EP}.port", "less than or equal to 65535"),
        (with_endpoint(protocol="http"), f"{_EP}.protocol", "'tcp'"),
        (with_endpoint(path="api/*"), f"{_EP}.path", "pattern"),
        (with_endpoint(hostname="x"), f"{_EP}.hostname", "Extra inputs are not permitted"),
        (
            with_endpoint(protocol="rest", rules=[{"allow": {"method": "get"}}]),
            f"{_EP}.rules[0].allow.method",
            "'GET'",
        ),
        (
            with_endpoint(protocol="rest", rules=[{"deny": {}}]),
            f"{_EP}.rules[0].allow",
            "Field required",
        ),
        (with_binaries(["node"]), "spec.network[0].binaries[0]", "pattern"),
        ({"filesystem": {"includeWorkdir": "true"}}, "spec.filesystem.includeWorkdir", "boolean"),
        (
            {"filesystem": {"include_workdir": True}},
            "spec.filesystem.include_workdir",
            "Extra inputs are not permitted",
        ),
        ({"landlock": {"compatibility": "strict"}}, "spec.landlock.compatibility", "'best_effort'"),
        ({"process": {"runAsUser": "1" * 33}}, "spec.process.runAsUser", "at most 32"),
        ({"staticChanges": "reject"}, "spec.staticChanges", "'Reject'"),
        (
            {"rollout": {"maxUnavailable": 0}},
            "spec.rollout.maxUnavailable",
            "greater than or equal to 1",
        ),
        (
            {"rollout": {"maxUnavailable": 101}},
            "spec.rollout.maxUnavailable",
            "less than or equal to 100",
        ),
        ({"status": {}}, "spec.status", "Extra inputs are not permitted"),
        ("network: []", "spec", "valid dictionary"),
        (None, "spec", "valid dictionary"),
    ],
)
def test_openapi_constraints_are_rechecked(spec: object, path: str, fragment: str) -> None:
    assert fragment in issues(spec)[path]


def test_a_bad_item_is_reported_once_not_also_as_a_too_short_list() -> None:
    spec = {"network": [{"name": "api", "endpoints": [{"host": "*.com", "port": 443}]}]}

    assert list(issues(spec)) == [f"{_EP}.host"]


def test_strings_that_cannot_be_utf8_encoded_are_invalid_not_a_crash() -> None:
    reported = issues({"filesystem": {"readOnly": ["/data\ud800"]}})

    assert "spec.filesystem.readOnly[0]" in reported


def test_nulls_mean_absent_as_the_apiserver_prunes_them() -> None:
    spec = {
        "network": [
            {
                "name": "api",
                "endpoints": [{"host": "a.example.com", "port": 443, "ports": None}],
                "binaries": None,
            }
        ],
        "filesystem": {"includeWorkdir": None, "readOnly": None},
        "landlock": None,
        "staticChanges": None,
    }

    parsed = model.parse_spec(spec)

    assert parsed.filesystem.include_workdir is True
    assert parsed.landlock.compatibility == "best_effort"
    assert parsed.static_changes == "Reject"
    assert parsed.network is not None
    assert parsed.network[0].endpoints[0].ports is None


def test_defaults_are_the_crds() -> None:
    parsed = model.parse_spec({})

    assert parsed.filesystem.include_workdir is True
    assert parsed.landlock.compatibility == "best_effort"
    assert parsed.static_changes == "Reject"
    assert parsed.rollout.max_unavailable == 1
    assert parsed.network is None


@pytest.mark.parametrize(
    "undefaulted",
    [{}, {"filesystem": {}, "landlock": {}, "rollout": {}}],
    ids=["absent-objects", "empty-objects"],
)
def test_a_spec_before_and_after_apiserver_defaulting_is_the_same(
    undefaulted: dict[str, Any],
) -> None:
    defaulted = {
        "filesystem": {"includeWorkdir": True},
        "landlock": {"compatibility": "best_effort"},
        "rollout": {"maxUnavailable": 1},
        "staticChanges": "Reject",
    }

    assert model.parse_spec(undefaulted) == model.parse_spec(defaulted)
    assert translate.to_sandbox_policy(undefaulted) == translate.to_sandbox_policy(defaulted)


def test_models_are_immutable() -> None:
    parsed = model.parse_spec({})

    with pytest.raises(ValueError, match="frozen"):
        parsed.static_changes = "Recreate"


def test_a_parsed_model_passes_through_unchanged() -> None:
    parsed = model.parse_spec(with_endpoint())

    assert model.parse_spec(parsed) is parsed


def test_validation_error_lists_every_issue_in_its_message() -> None:
    with pytest.raises(errors.PolicyValidationError) as caught:
        model.parse_spec({"process": {"runAsUser": "root", "runAsGroup": "0"}})

    assert str(caught.value) == (
        f"spec.process.runAsUser: {_uid('runAsUser root')}; "
        f"spec.process.runAsGroup: {_gid('runAsGroup 0')}"
    )


def test_a_validation_error_needs_an_issue() -> None:
    with pytest.raises(ValueError, match="at least one issue"):
        errors.PolicyValidationError([])
