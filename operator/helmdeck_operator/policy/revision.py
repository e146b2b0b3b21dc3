"""Revisions: the content address of an OpenShell policy.

A SidecarPolicy's `status.revision`, each session's desired and loaded revision, and the
hot-reload decision "is this sandbox already on this policy?" all compare revisions, so a
revision must depend on the policy's meaning only: it is the SHA-256 of the deterministic
protobuf serialisation of the canonical message (see `canonical`). That is also how the
gateway computes its `policy_hash`, so the hex part can be compared with what it reports.
"""

from __future__ import annotations

import hashlib

from openshell._proto import sandbox_pb2

from helmdeck_operator.policy import canonical

__all__ = ["REVISION_PREFIX", "revision"]

#: Names the hash function, so a later change of algorithm cannot be mistaken for a change
#: of policy.
REVISION_PREFIX = "sha256:"


def revision(policy: sandbox_pb2.SandboxPolicy) -> str:
    """`sha256:<64 hex>` of the canonical form of `policy`."""
    data = canonical.canonicalize(policy).SerializeToString(deterministic=True)
    return REVISION_PREFIX + hashlib.sha256(data).hexdigest()
