"""The emulator refuses what the real gateway refuses (../shared/OPENSHELL-RULES.md): one
case per rule, each on CreateSandbox and on UpdateConfig of a live sandbox, with the
gateway's status code; and the forms the gateway accepts are not refused."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from openshell._proto import sandbox_pb2

from tests.support.openshell_rpc import WS, Stub, create, pb, rpc_error, update_policy
from tests.support.policies import base_policy

Code = grpc.StatusCode
S = sandbox_pb2
Edit = Callable[[S.SandboxPolicy], None]


def endpoint(**fields: object) -> Edit:
    """An edit that adds rule `r` with one endpoint: api.example.com:443 plus `fields`."""

    def edit(policy: S.SandboxPolicy) -> None:
        ep = S.NetworkEndpoint(host="api.example.com", port=443)
        for key, value in fields.items():
            if key in ("rules", "deny_rules", "ports", "allowed_ips"):
                getattr(ep, key).extend(value)  # type: ignore[call-overload]
            elif key == "mcp":
                ep.mcp.CopyFrom(value)  # type: ignore[arg-type]
            else:
                setattr(ep, key, value)
        policy.network_policies["r"].CopyFrom(S.NetworkPolicyRule(name="r", endpoints=[ep]))

    return edit


def policy_edit(field: str, value: object) -> Edit:
    def edit(policy: S.SandboxPolicy) -> None:
        section, name = field.split(".")
        target = getattr(policy, section)
        if isinstance(value, list):
            del getattr(target, name)[:]
            getattr(target, name).extend(value)
        else:
            setattr(target, name, value)

    return edit


def reserved_rule(policy: S.SandboxPolicy) -> None:
    """A rule named like the ones the gateway adds for providers."""
    rule = S.NetworkPolicyRule(
        name="_provider_github", endpoints=[S.NetworkEndpoint(host="api.github.com", port=443)]
    )
    policy.network_policies["_provider_github"].CopyFrom(rule)


READ_ONLY = S.NETWORK_ACCESS_PRESET_READ_ONLY
ALLOW_GET = S.L7Rule(allow=S.L7Allow(method="GET"))

#: (id, edit, words of the message): every policy rule, each answered INVALID_ARGUMENT.
POLICY_CASES: list[tuple[str, Edit, str]] = [
    ("unknown-protocol", endpoint(protocol="ftp"), "unknown protocol 'ftp'"),
    (
        "tcp-with-access",
        endpoint(protocol="tcp", access=READ_ONLY),
        "protocol tcp does not support",
    ),
    ("tcp-with-path", endpoint(protocol="tcp", path="/v1"), "L7-only fields: path"),
    (
        "tcp-with-enforcement",
        endpoint(protocol="tcp", enforcement=S.NETWORK_ENFORCEMENT_MODE_AUDIT),
        "L7-only fields: enforcement",
    ),
    (
        "rules-and-access",
        endpoint(protocol="rest", access=READ_ONLY, rules=[ALLOW_GET]),
        "mutually",
    ),
    ("rest-allows-nothing", endpoint(protocol="rest"), "requires rules or access"),
    ("mcp-with-access", endpoint(protocol="mcp", access=READ_ONLY), "does not support access"),
    ("json-rpc-without-rules", endpoint(protocol="json-rpc"), "requires explicit rules"),
    ("mcp-without-rules", endpoint(protocol="mcp"), "mcp requires rules"),
    (
        "rules-deny-all",
        endpoint(protocol="rest", rules=[S.L7Rule(allow=S.L7Allow())]),
        "would deny all traffic",
    ),
    (
        "deny-without-protocol",
        endpoint(deny_rules=[S.L7DenyRule(method="DELETE")]),
        "deny_rules require protocol",
    ),
    (
        "deny-without-base",
        endpoint(protocol="websocket", deny_rules=[S.L7DenyRule(method="DELETE")]),
        "base allow set",
    ),
    ("path-relative", endpoint(protocol="rest", access=READ_ONLY, path="v1"), "path must start"),
    (
        "sql-enforce",
        endpoint(protocol="sql", access=READ_ONLY, enforcement=S.NETWORK_ENFORCEMENT_MODE_ENFORCE),
        "SQL enforcement",
    ),
    (
        "mcp-options-elsewhere",
        endpoint(protocol="rest", access=READ_ONLY, mcp=S.McpOptions()),
        "only valid for protocol mcp",
    ),
    (
        "graphql-without-operation",
        endpoint(protocol="graphql", rules=[S.L7Rule(allow=S.L7Allow(path="/graphql"))]),
        "operation_type must be",
    ),
    (
        "graphql-deny-without-operation",
        endpoint(protocol="graphql", access=READ_ONLY, deny_rules=[S.L7DenyRule(path="/graphql")]),
        "deny_rules[0].operation_type",
    ),
    ("host-missing", endpoint(host=""), "host is required"),
    ("tcp-host-ip", endpoint(host="203.0.113.7", protocol="tcp"), "not an IP address"),
    ("no-port", endpoint(port=0), "at least one port"),
    ("port-range", endpoint(port=0, ports=[70000]), "out of range"),
    ("tld-wildcard", endpoint(host="*.com"), "top-level domain"),
    ("bare-wildcard", endpoint(host="**"), "not a valid wildcard"),
    ("double-star-later", endpoint(host="a.**.example.com"), "first label"),
    ("partial-wildcard", endpoint(host="api*.example.com"), "whole label"),
    ("read-write-root", policy_edit("filesystem.read_write", ["/"]), "must not include '/'"),
    ("read-write-root-twice", policy_edit("filesystem.read_write", ["//"]), "include '/'"),
    ("dotdot", policy_edit("filesystem.read_only", ["/usr/../etc"]), "must not contain '..'"),
    ("relative-path", policy_edit("filesystem.read_only", ["usr"]), "must be absolute"),
    (
        "too-many-paths",
        policy_edit("filesystem.read_only", [f"/p{i}" for i in range(256)]),
        "at most 256 paths",
    ),
    (
        "path-too-long",
        policy_edit("filesystem.read_only", ["/" + "p" * 4096]),
        "longer than 4096 bytes",
    ),
    ("reserved-rule-name", reserved_rule, "reserved"),
    ("user-root", policy_edit("process.run_as_user", "0"), "run_as_user '0'"),
    ("user-root-signed", policy_edit("process.run_as_user", "+0"), "run_as_user '+0'"),
    ("user-name", policy_edit("process.run_as_user", "nobody"), "'sandbox' or a number"),
    ("group-too-big", policy_edit("process.run_as_group", "4294967295"), "run_as_group"),
]

#: Forms the gateway accepts.
VALID: list[tuple[str, Edit]] = [
    ("mcp-allow-all", endpoint(protocol="mcp", mcp=S.McpOptions(allow_all_known_mcp_methods=True))),
    (
        "json-rpc-rules",
        endpoint(protocol="json-rpc", rules=[S.L7Rule(allow=S.L7Allow(method="*"))]),
    ),
    (
        "graphql-operations",
        endpoint(
            protocol="graphql",
            rules=[S.L7Rule(allow=S.L7Allow(operation_type="query"))],
            deny_rules=[S.L7DenyRule(operation_type="mutation")],
        ),
    ),
    ("path-double-star", endpoint(protocol="rest", access=READ_ONLY, path="**")),
    ("later-single-star", endpoint(host="a.*.example.com")),
    ("l7-ip-host", endpoint(host="203.0.113.7", protocol="rest", access=READ_ONLY)),
    (
        "allowed-ips-without-host",
        endpoint(host="", protocol="rest", access=READ_ONLY, allowed_ips=["10.0.0.0/8"]),
    ),
    ("uid-with-zeros", policy_edit("process.run_as_user", "0007")),
    # The gateway parses ids with Rust's u32 parser, which takes one leading `+`, and checks
    # paths by component, so `.`, `//` and a trailing `/` pass (the CRD refuses them).
    ("uid-with-plus", policy_edit("process.run_as_user", "+7")),
    ("non-canonical-paths", policy_edit("filesystem.read_only", ["/usr/./lib", "/etc//ssl/"])),
]


def named(prefix: str, case: str) -> str:
    """A sandbox name the gateway takes: at most 19 characters, not ending with '-'."""
    return f"{prefix}-{case}"[:19].rstrip("-")


def edited(edit: Edit) -> S.SandboxPolicy:
    policy = base_policy()
    edit(policy)
    return policy


@pytest.mark.parametrize(("case", "edit", "says"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
async def test_an_invalid_policy_is_refused_on_create_and_on_update(
    emulator_stub: Stub, case: str, edit: Edit, says: str
) -> None:
    created = await rpc_error(create(emulator_stub, named("c", case), policy=edited(edit)))
    assert created.code() == Code.INVALID_ARGUMENT
    assert says in (created.details() or "")

    await create(emulator_stub, named("u", case), policy=base_policy())
    updated = await rpc_error(update_policy(emulator_stub, named("u", case), edited(edit)))
    assert updated.code() == Code.INVALID_ARGUMENT
    assert says in (updated.details() or "")


@pytest.mark.parametrize(("case", "edit"), VALID, ids=[c[0] for c in VALID])
async def test_what_the_gateway_accepts_is_accepted(
    emulator_stub: Stub, case: str, edit: Edit
) -> None:
    await create(emulator_stub, named("v", case), policy=edited(edit))


#: CreateSandbox request rules: (id, spec fields, words of the message).
REQUEST_CASES: list[tuple[str, dict[str, object], str]] = [
    ("env-reserved", {"environment": {"OPENSHELL_X": "1"}}, "reserved"),
    ("env-bad-key", {"environment": {"1X": "1"}}, "must match"),
    ("env-newline", {"environment": {"A": "a\nb"}}, "NUL, CR or LF"),
    ("env-value-bytes", {"environment": {"A": "x" * 8193}}, "exceeds 8192 bytes"),
    ("env-count", {"environment": {f"V{i}": "1" for i in range(129)}}, "at most 128"),
    (
        "env-total",
        {"environment": {f"V{i}": "x" * 8000 for i in range(33)}},
        "in total",
    ),
    ("env-key-long", {"environment": {"K" * 257: "1"}}, "must match"),
    ("command-first-empty", {"command": ["", "x"]}, "first argument"),
    ("command-arg-long", {"command": ["/bin/sh", "x" * (32 * 1024 + 1)]}, "exceeds 32768 bytes"),
    ("command-total", {"command": ["/bin/sh"] + ["x" * 32768] * 8}, "in total"),
    ("command-nul", {"command": ["/bin/sh", "a\0b"]}, "NUL"),
    ("command-count", {"command": ["/bin/true"] * 257}, "at most 256"),
    ("providers-count", {"providers": [f"p{i}" for i in range(33)]}, "at most 32"),
    ("image-long", {"template": pb.SandboxTemplate(image="r/" + "x" * 1024)}, "1024 bytes"),
]


@pytest.mark.parametrize(("case", "spec", "says"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
async def test_an_invalid_request_is_refused(
    emulator_stub: Stub, case: str, spec: dict[str, object], says: str
) -> None:
    error = await rpc_error(create(emulator_stub, named("r", case), **spec))
    assert error.code() == Code.INVALID_ARGUMENT
    assert says in (error.details() or "")


async def test_a_create_without_a_spec_is_refused(emulator_stub: Stub) -> None:
    request = pb.CreateSandboxRequest(workspace_scope=WS, name="nospec")
    error = await rpc_error(emulator_stub.CreateSandbox(request))
    assert error.code() == Code.INVALID_ARGUMENT
    assert "spec is required" in (error.details() or "")


async def test_a_missing_provider_is_a_failed_precondition(emulator_stub: Stub) -> None:
    error = await rpc_error(create(emulator_stub, "noprov", providers=["nowhere"]))
    assert error.code() == Code.FAILED_PRECONDITION


def two_endpoints(left: S.NetworkEndpoint, right: S.NetworkEndpoint) -> S.SandboxPolicy:
    policy = base_policy()
    policy.network_policies["a"].CopyFrom(S.NetworkPolicyRule(name="a", endpoints=[left]))
    policy.network_policies["b"].CopyFrom(S.NetworkPolicyRule(name="b", endpoints=[right]))
    return policy


def rest(host: str = "api.example.com", port: int = 443, **fields: object) -> S.NetworkEndpoint:
    """An inspected read-only endpoint; `fields` override or add."""
    values: dict[str, object] = {"protocol": "rest", "access": READ_ONLY, **fields}
    return S.NetworkEndpoint(host=host, port=port, **values)  # type: ignore[arg-type]


#: Pairs of endpoints the gateway refuses with FAILED_PRECONDITION, and the conflict named.
AMBIGUOUS = [
    (
        "tls",
        S.NetworkEndpoint(host="api.example.com", port=443, tls=S.NETWORK_TLS_MODE_SKIP),
        S.NetworkEndpoint(host="api.example.com", port=443),
        "tls=",
    ),
    (
        "allowed-ips",
        rest("*.example.com", allowed_ips=["10.0.0.0/8"]),
        rest("api.example.com"),
        "allowed_ips=",
    ),
    (
        "raw-tcp",
        S.NetworkEndpoint(host="git.example.com", port=22, protocol="tcp"),
        S.NetworkEndpoint(host="git.example.com", ports=[22, 443]),
        "transparent_tcp_eligible=",
    ),
    (
        "enforcement",
        rest(path="/v1/*", enforcement=S.NETWORK_ENFORCEMENT_MODE_ENFORCE),
        rest(path="/v1/*", enforcement=S.NETWORK_ENFORCEMENT_MODE_AUDIT),
        "enforcement=",
    ),
    (
        "protocol",
        rest("**.example.com", path="/ws"),
        S.NetworkEndpoint(
            host="api.example.com", port=443, protocol="websocket", access=READ_ONLY, path="/w*s"
        ),
        "protocol=",
    ),
]

#: Pairs the gateway accepts: they never meet, or meet and agree, or one path is more specific.
UNAMBIGUOUS = [
    ("other-port", rest(tls=S.NETWORK_TLS_MODE_SKIP), rest(port=8443)),
    ("other-host", rest("*.example.com", tls=S.NETWORK_TLS_MODE_SKIP), rest("a.b.example.com")),
    ("agree", rest(enforcement=S.NETWORK_ENFORCEMENT_MODE_ENFORCE), rest(path="/v1")),
    (
        "more-specific-path",
        rest(path="/v1/admin/*", enforcement=S.NETWORK_ENFORCEMENT_MODE_ENFORCE),
        rest(path="/v1/*"),
    ),
    ("disjoint-paths", rest(path="/a/*", protocol="websocket"), rest(path="/b/*")),
]


@pytest.mark.parametrize(
    ("case", "left", "right", "says"), AMBIGUOUS, ids=[c[0] for c in AMBIGUOUS]
)
async def test_ambiguous_endpoints_are_a_failed_precondition(
    emulator_stub: Stub, case: str, left: S.NetworkEndpoint, right: S.NetworkEndpoint, says: str
) -> None:
    policy = two_endpoints(left, right)
    created = await rpc_error(create(emulator_stub, named("amb", case), policy=policy))
    assert created.code() == Code.FAILED_PRECONDITION
    assert says in (created.details() or "")
    await create(emulator_stub, named("ambu", case), policy=base_policy())
    updated = await rpc_error(update_policy(emulator_stub, named("ambu", case), policy))
    assert updated.code() == Code.FAILED_PRECONDITION


@pytest.mark.parametrize(("case", "left", "right"), UNAMBIGUOUS, ids=[c[0] for c in UNAMBIGUOUS])
async def test_endpoints_that_never_disagree_are_accepted(
    emulator_stub: Stub, case: str, left: S.NetworkEndpoint, right: S.NetworkEndpoint
) -> None:
    await create(emulator_stub, named("ok", case), policy=two_endpoints(left, right))
