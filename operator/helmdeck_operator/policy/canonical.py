"""The canonical form of an OpenShell `SandboxPolicy`: one message per meaning.

Revisions must be equal for equal policies whatever the order a user wrote set-like lists in,
and the gateway hashes the policy bytes it receives, so the operator sends, stores and hashes
only canonical messages. Canonicalisation:

- sorts and de-duplicates what the CRD declares a set: filesystem `read_only` / `read_write`,
  rule `binaries` (by path), endpoint `ports` and `allowed_ips`;
- spells "no request inspection" one way, the empty protocol (OpenShell reads `tcp` and the
  empty string alike);
- drops an empty `process` section, which means the same as none (the driver's identity).

Network rules need no sorting: they are a protobuf map, which deterministic serialisation
orders by key. Endpoint and L7 rule order is kept as written: the CRD declares those lists
ordered (atomic), and reordering them is a live network change anyway.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import TypeVar

from openshell._proto import sandbox_pb2

__all__ = ["RAW_TCP_PROTOCOLS", "canonicalize"]

#: Protocol spellings that mean "pass the connection through without request inspection".
RAW_TCP_PROTOCOLS = frozenset({"", "tcp"})

_Scalar = TypeVar("_Scalar", str, int)


def canonicalize(policy: sandbox_pb2.SandboxPolicy) -> sandbox_pb2.SandboxPolicy:
    """A canonical copy of `policy`; the argument is left untouched. Idempotent."""
    out = sandbox_pb2.SandboxPolicy()
    out.CopyFrom(policy)
    if out.HasField("filesystem"):
        _as_sorted_set(out.filesystem.read_only)
        _as_sorted_set(out.filesystem.read_write)
    if out.HasField("process") and out.process == sandbox_pb2.ProcessPolicy():
        out.ClearField("process")
    for rule in out.network_policies.values():
        paths = sorted({binary.path for binary in rule.binaries})
        if [binary.path for binary in rule.binaries] != paths:
            del rule.binaries[:]
            rule.binaries.extend(sandbox_pb2.NetworkBinary(path=path) for path in paths)
        for endpoint in rule.endpoints:
            if endpoint.protocol in RAW_TCP_PROTOCOLS:
                endpoint.protocol = ""
            _as_sorted_set(endpoint.ports)
            _as_sorted_set(endpoint.allowed_ips)
    return out


def _as_sorted_set(values: MutableSequence[_Scalar]) -> None:
    # Only touch non-empty fields: writing an empty list could mark an absent parent present.
    if values:
        unique = sorted(set(values))
        del values[:]
        values.extend(unique)
