"""What the gateway checks about a sandbox policy, as pure functions.

Reproduces the 0.1.x gateway's rules: the policy hash is SHA-256 over deterministic protobuf
bytes; on a live sandbox only network rules (and settings) may change (a first raw-TCP
endpoint included: the gateway has no rule against it), filesystem paths may only be added,
and `include_workdir`, landlock and process are fixed from version 1. Messages follow the
gateway's wording so clients can match on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from openshell._proto import openshell_pb2, sandbox_pb2

from helmdeck_operator.emulator.errors import Code, GatewayError

__all__ = [
    "apply_merge_operations",
    "canonical_bytes",
    "check_live_change",
    "policy_hash",
]


def canonical_bytes(policy: sandbox_pb2.SandboxPolicy) -> bytes:
    """Deterministic serialization: map entries sorted, so equal policies give equal bytes."""
    data: bytes = policy.SerializeToString(deterministic=True)
    return data


def policy_hash(policy: sandbox_pb2.SandboxPolicy) -> str:
    """The gateway's `policy_hash`: SHA-256 hex of the canonical bytes."""
    return hashlib.sha256(canonical_bytes(policy)).hexdigest()


def _invalid(message: str) -> GatewayError:
    return GatewayError(Code.INVALID_ARGUMENT, message)


def _check_filesystem(baseline: sandbox_pb2.SandboxPolicy, new: sandbox_pb2.SandboxPolicy) -> None:
    if not baseline.HasField("filesystem"):
        return  # nothing was fixed at start-up: enrichment from empty is allowed
    if not new.HasField("filesystem"):
        raise _invalid("filesystem policy cannot be removed on a live sandbox")
    base, upd = baseline.filesystem, new.filesystem
    if base.include_workdir != upd.include_workdir:
        raise _invalid("filesystem include_workdir cannot be changed on a live sandbox")
    for kind, old, now in (
        ("read_only", base.read_only, upd.read_only),
        ("read_write", base.read_write, upd.read_write),
    ):
        for path in old:
            if path not in now:
                raise _invalid(
                    f"filesystem {kind} path '{path}' cannot be removed on a live sandbox"
                )


def _same_optional(
    baseline: sandbox_pb2.SandboxPolicy, new: sandbox_pb2.SandboxPolicy, field: str
) -> bool:
    # Presence matters as in the gateway (an unset section differs from an empty one).
    if baseline.HasField(field) != new.HasField(field):
        return False
    same: bool = getattr(baseline, field) == getattr(new, field)
    return same


def check_live_change(
    baseline: sandbox_pb2.SandboxPolicy | None, new: sandbox_pb2.SandboxPolicy
) -> None:
    """Raise INVALID_ARGUMENT when `new` may not replace a live sandbox's policy.

    `baseline` is the version-1 policy (what the sandbox was started with); None means the
    sandbox was created without one, in which case any first policy is accepted.
    """
    if baseline is None:
        return
    _check_filesystem(baseline, new)
    if not _same_optional(baseline, new, "landlock"):
        raise _invalid("landlock policy cannot be changed on a live sandbox (applied at startup)")
    if not _same_optional(baseline, new, "process"):
        raise _invalid("process policy cannot be changed on a live sandbox (applied at startup)")


def _endpoint_matches(ep: sandbox_pb2.NetworkEndpoint, host: str, ports: Sequence[int]) -> bool:
    if host and ep.host != host:
        return False
    if not ports:
        return True
    have = set(ep.ports) | ({ep.port} if ep.port else set())
    return bool(have & set(ports))


def _rule(policy: sandbox_pb2.SandboxPolicy, name: str) -> sandbox_pb2.NetworkPolicyRule:
    if name not in policy.network_policies:
        raise GatewayError(Code.NOT_FOUND, f"network rule '{name}' not found")
    rule: sandbox_pb2.NetworkPolicyRule = policy.network_policies[name]
    return rule


def apply_merge_operations(
    base: sandbox_pb2.SandboxPolicy,
    operations: Iterable[openshell_pb2.PolicyMergeOperation],
) -> sandbox_pb2.SandboxPolicy:
    """A new policy: `base` with each merge operation applied in order (base is not changed)."""
    policy = sandbox_pb2.SandboxPolicy()
    policy.CopyFrom(base)
    for op in operations:
        kind = op.WhichOneof("operation")
        if kind == "add_rule":
            rule = policy.network_policies[op.add_rule.rule_name or op.add_rule.rule.name]
            rule.CopyFrom(op.add_rule.rule)
            if not rule.name:
                rule.name = op.add_rule.rule_name
        elif kind == "remove_rule":
            _rule(policy, op.remove_rule.rule_name)
            del policy.network_policies[op.remove_rule.rule_name]
        elif kind == "remove_endpoint":
            rm = op.remove_endpoint
            rule = _rule(policy, rm.rule_name)
            keep = [ep for ep in rule.endpoints if not _endpoint_matches(ep, rm.host, [rm.port])]
            del rule.endpoints[:]
            rule.endpoints.extend(keep)
        elif kind == "remove_binary":
            rule = _rule(policy, op.remove_binary.rule_name)
            binaries = [b for b in rule.binaries if b.path != op.remove_binary.binary_path]
            del rule.binaries[:]
            rule.binaries.extend(binaries)
        elif kind in ("add_deny_rules", "add_allow_rules"):
            change = getattr(op, kind)
            target = change.target
            rule = _rule(policy, target.rule_name)
            for ep in rule.endpoints:
                if _endpoint_matches(ep, target.host, list(target.ports)):
                    if kind == "add_deny_rules":
                        ep.deny_rules.extend(change.deny_rules)
                    else:
                        ep.rules.extend(change.rules)
        else:
            raise GatewayError(Code.INVALID_ARGUMENT, "merge operation has no operation set")
    return policy
