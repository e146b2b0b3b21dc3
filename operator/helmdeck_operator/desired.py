"""A SidecarPolicy spec as the policy sessions should run: translated, or why it cannot be.

The one step between the policy layer (spec -> OpenShell `SandboxPolicy`, which needs the
protobuf stubs) and the core, which takes the result as a value (`DesiredPolicy` or
`PolicyProblem`) and so never imports the stubs or gRPC. The runtime calls it once per
policy generation and for the family defaults at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helmdeck_operator.core.plan import DesiredPolicy, PolicyProblem
from helmdeck_operator.policy import revision, translate
from helmdeck_operator.policy.errors import PolicyValidationError
from helmdeck_operator.vocabulary import Reason

__all__ = ["desired_policy", "resolve"]


def desired_policy(name: str, spec: Mapping[str, Any]) -> DesiredPolicy:
    """Translate a SidecarPolicy spec into the policy sessions should run.

    Raises the policy layer's PolicyValidationError when the spec does not translate.
    """
    policy = translate.to_sandbox_policy(dict(spec))
    rollout = spec.get("rollout") or {}
    return DesiredPolicy(
        name=name,
        revision=revision.revision(policy),
        policy=policy,
        static_changes=str(spec.get("staticChanges", "Reject")),
        max_unavailable=int(rollout.get("maxUnavailable", 1)),
    )


def resolve(name: str, spec: Mapping[str, Any]) -> DesiredPolicy | PolicyProblem:
    """`desired_policy`, or the PolicyInvalid problem naming the field when it fails."""
    try:
        return desired_policy(name, spec)
    except PolicyValidationError as err:
        return PolicyProblem(name, Reason.POLICY_INVALID, f"SidecarPolicy {name}: {err}")
