"""A SidecarPolicy spec as the policy sessions should run: translated, or why it cannot be.

The one step between the policy layer (spec -> OpenShell `SandboxPolicy`, which needs the
protobuf stubs) and the core, which takes the result as a value (`DesiredPolicy` or
`PolicyProblem`) and so never imports the stubs or gRPC. The runtime calls it once per
policy generation and for the family defaults at start-up. Every policy passes the
platform's egress guard here (`policy.guard`), so none reaches a gateway without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helmdeck_operator.core.plan import DesiredPolicy, PolicyProblem
from helmdeck_operator.policy import revision, translate
from helmdeck_operator.policy.errors import EgressGuardError, PolicyValidationError
from helmdeck_operator.policy.guard import NO_ALLOWANCE, EgressAllowance, EgressGuard
from helmdeck_operator.vocabulary import Reason

__all__ = ["desired_policy", "resolve"]


def desired_policy(
    name: str,
    spec: Mapping[str, Any],
    guard: EgressGuard,
    allow: EgressAllowance = NO_ALLOWANCE,
) -> DesiredPolicy:
    """Translate a SidecarPolicy spec into the policy sessions should run, with the egress
    guard (less the namespace's exemptions, `allow`) merged in.

    Raises the policy layer's PolicyValidationError when the spec does not translate, and
    its EgressGuardError when the guard refuses it.
    """
    policy, report = translate.to_guarded_policy(dict(spec), guard, allow)
    rollout = spec.get("rollout") or {}
    return DesiredPolicy(
        name=name,
        revision=revision.revision(policy),
        policy=policy,
        static_changes=str(spec.get("staticChanges", "Reject")),
        max_unavailable=int(rollout.get("maxUnavailable", 1)),
        egress=report,
    )


def resolve(
    name: str,
    spec: Mapping[str, Any],
    guard: EgressGuard,
    allow: EgressAllowance = NO_ALLOWANCE,
) -> DesiredPolicy | PolicyProblem:
    """`desired_policy`, or the problem naming each field when it fails: EgressGuarded
    when the guard refuses it, PolicyInvalid otherwise."""
    try:
        return desired_policy(name, spec, guard, allow)
    except EgressGuardError as err:
        return PolicyProblem(name, Reason.EGRESS_GUARDED, f"SidecarPolicy {name}: {err}")
    except PolicyValidationError as err:
        return PolicyProblem(name, Reason.POLICY_INVALID, f"SidecarPolicy {name}: {err}")
