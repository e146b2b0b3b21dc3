"""SidecarPolicy spec -> OpenShell `SandboxPolicy`, as a pure function.

Reconcilers, the revision in status and the `policy render` CLI all need the policy a spec
stands for; computing it in one pure function means they cannot disagree. The mapping:

- `network` (a list keyed by name) -> the `network_policies` map keyed by rule name;
  `binaries` -> `NetworkBinary(path)`; `denyRules` -> `deny_rules`; `allowedIps` ->
  `allowed_ips`; `operationType`/`operationName` -> `operation_type`/`operation_name`;
  `mcp.allowAllKnownMethods` -> `mcp.allow_all_known_mcp_methods`;
- `tls`, `enforcement` and `access` strings -> the `NetworkTlsMode`,
  `NetworkEnforcementMode` and `NetworkAccessPreset` enums; absent -> `*_UNSPECIFIED`, which
  leaves the choice to the gateway's default;
- `protocol` is passed as written except `tcp`, which becomes the empty string: both mean
  "no request inspection" to OpenShell, and one spelling keeps revisions equal;
- `filesystem` and `landlock` are always sent (the CRD's defaults are applied), `process`
  only when it names a user or group;
- `staticChanges` and `rollout` steer the operator, not the sandbox, and are not translated.

The result is canonical (`canonical.canonicalize`), so equal specs give equal bytes.

What the operator sends is `to_guarded_policy`: the translation of the spec with the
platform's egress guard merged in (`guard`), refused when the guard cannot be merged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, TypeVar

from openshell._proto import sandbox_pb2

from helmdeck_operator.policy import canonical, errors, guard, model

__all__ = ["POLICY_VERSION", "Guarded", "to_guarded_policy", "to_sandbox_policy"]

#: The `SandboxPolicy.version` (schema version) OpenShell 0.1.x accepts.
POLICY_VERSION = 1

# None (absent) maps to UNSPECIFIED: the gateway's default applies.
_TLS: dict[model.TlsMode | None, sandbox_pb2.NetworkTlsMode] = {
    None: sandbox_pb2.NETWORK_TLS_MODE_UNSPECIFIED,
    "terminate": sandbox_pb2.NETWORK_TLS_MODE_TERMINATE,
    "passthrough": sandbox_pb2.NETWORK_TLS_MODE_PASSTHROUGH,
    "skip": sandbox_pb2.NETWORK_TLS_MODE_SKIP,
}
_ENFORCEMENT: dict[model.Enforcement | None, sandbox_pb2.NetworkEnforcementMode] = {
    None: sandbox_pb2.NETWORK_ENFORCEMENT_MODE_UNSPECIFIED,
    "enforce": sandbox_pb2.NETWORK_ENFORCEMENT_MODE_ENFORCE,
    "audit": sandbox_pb2.NETWORK_ENFORCEMENT_MODE_AUDIT,
}
_ACCESS: dict[model.Access | None, sandbox_pb2.NetworkAccessPreset] = {
    None: sandbox_pb2.NETWORK_ACCESS_PRESET_UNSPECIFIED,
    "read-only": sandbox_pb2.NETWORK_ACCESS_PRESET_READ_ONLY,
    "read-write": sandbox_pb2.NETWORK_ACCESS_PRESET_READ_WRITE,
    "full": sandbox_pb2.NETWORK_ACCESS_PRESET_FULL,
}


def to_sandbox_policy(spec: model.SidecarPolicySpec | object) -> sandbox_pb2.SandboxPolicy:
    """The canonical OpenShell policy for a spec (a model, or the raw `spec` mapping).

    Raises `errors.PolicyValidationError`, and nothing else, for a spec the CRD would refuse.
    """
    parsed = model.parse_spec(spec)
    policy = sandbox_pb2.SandboxPolicy(
        version=POLICY_VERSION,
        filesystem=sandbox_pb2.FilesystemPolicy(
            include_workdir=parsed.filesystem.include_workdir,
            read_only=parsed.filesystem.read_only or (),
            read_write=parsed.filesystem.read_write or (),
        ),
        landlock=sandbox_pb2.LandlockPolicy(compatibility=parsed.landlock.compatibility),
        network_policies={rule.name: _rule(rule) for rule in parsed.network or ()},
    )
    if parsed.process.run_as_user is not None or parsed.process.run_as_group is not None:
        policy.process.CopyFrom(
            sandbox_pb2.ProcessPolicy(
                run_as_user=parsed.process.run_as_user or "",
                run_as_group=parsed.process.run_as_group or "",
            )
        )
    return canonical.canonicalize(policy)


class Guarded(NamedTuple):
    """A spec's policy as the operator sends it, and what the guard changed in it."""

    policy: sandbox_pb2.SandboxPolicy
    report: guard.EgressReport


def to_guarded_policy(
    spec: model.SidecarPolicySpec | object,
    egress_guard: guard.EgressGuard,
    allow: guard.EgressAllowance = guard.NO_ALLOWANCE,
) -> Guarded:
    """The canonical policy of a spec with the egress guard (less `allow`) merged in.

    Raises `errors.PolicyValidationError` for a spec the CRD would refuse, and its
    `errors.EgressGuardError` for one the guard refuses (naming each field).
    """
    guarded = guard.guard_spec(model.parse_spec(spec), egress_guard, allow)
    if guarded.refusals:
        raise errors.EgressGuardError(guarded.refusals)
    return Guarded(to_sandbox_policy(guarded.spec), guarded.report)


def _rule(rule: model.NetworkRule) -> sandbox_pb2.NetworkPolicyRule:
    return sandbox_pb2.NetworkPolicyRule(
        name=rule.name,
        endpoints=[_endpoint(endpoint) for endpoint in rule.endpoints],
        binaries=[sandbox_pb2.NetworkBinary(path=path) for path in rule.binaries or ()],
    )


def _endpoint(endpoint: model.Endpoint) -> sandbox_pb2.NetworkEndpoint:
    return sandbox_pb2.NetworkEndpoint(
        host=endpoint.host,
        port=endpoint.port or 0,
        ports=endpoint.ports or (),
        path=endpoint.path or "",
        protocol=endpoint.protocol or "",
        tls=_TLS[endpoint.tls],
        enforcement=_ENFORCEMENT[endpoint.enforcement],
        access=_ACCESS[endpoint.access],
        rules=[
            sandbox_pb2.L7Rule(allow=_l7(sandbox_pb2.L7Allow, rule.allow))
            for rule in endpoint.rules or ()
        ],
        deny_rules=[_l7(sandbox_pb2.L7DenyRule, match) for match in endpoint.deny_rules or ()],
        allowed_ips=endpoint.allowed_ips or (),
        mcp=_mcp(endpoint.mcp),
    )


def _mcp(options: model.McpOptions | None) -> sandbox_pb2.McpOptions | None:
    if options is None:
        return None
    if options.allow_all_known_methods is None:
        return sandbox_pb2.McpOptions()
    return sandbox_pb2.McpOptions(allow_all_known_mcp_methods=options.allow_all_known_methods)


#: The two messages an allow or a deny match becomes; they share these fields.
_L7 = TypeVar("_L7", sandbox_pb2.L7Allow, sandbox_pb2.L7DenyRule)


def _l7(message: type[_L7], match: model.L7Match) -> _L7:
    return message(
        method=match.method or "",
        path=match.path or "",
        operation_type=match.operation_type or "",
        operation_name=match.operation_name or "",
        query=_query(match.query),
    )


def _query(
    query: Mapping[str, model.QueryMatcher] | None,
) -> dict[str, sandbox_pb2.L7QueryMatcher]:
    return {
        name: sandbox_pb2.L7QueryMatcher(glob=matcher.glob or "", any=matcher.any_of or ())
        for name, matcher in (query or {}).items()
    }
