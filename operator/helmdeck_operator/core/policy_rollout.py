"""What to do when a ready sandbox runs another policy revision than its session wants.

A pure decision from the desired revision, what the gateway reports (the newest stored
revision and its load state), how the change classifies against the policy the sandbox
started with, and what the session's status already says. Kept apart from the lifecycle
rules in `plan` because it is the one place the hot-reload semantics live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helmdeck_operator.core.conditions import Status
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.policy.change import ChangeClass
from helmdeck_operator.vocabulary import PolicyState, Reason

__all__ = ["RolloutStep", "next_rollout_step"]


@dataclass(frozen=True)
class RolloutStep:
    """The PolicyApplied condition, the policy state, and whether to push or recreate."""

    status: Status
    reason: Reason
    message: str
    state: PolicyState
    push: bool = False
    recreate: bool = False
    poll: bool = False
    """Waiting on the gateway: it is loading the revision."""
    awaits_slot: bool = False
    """Waiting for a rollout slot of the policy: woken when one frees."""
    warn: bool = field(default=False)
    """Post a PolicyRejected Warning (only the first time this revision is refused)."""


def next_rollout_step(
    *,
    desired_revision: str,
    static_changes: str,
    latest: gw.PolicyRevision | None,
    change: ChangeClass | None,
    may_recreate: bool,
    reported: dict[str, Any],
    refusal: str | None = None,
) -> RolloutStep:
    """Decide for a sandbox that is READY and has not loaded `desired_revision`.

    `reported` is the session's current status.policy, used so a refusal is announced once
    and a refused revision is not pushed again and again (level-triggered, not a hot loop).
    `refusal` is the gateway's message when a push of this revision was just refused.
    """
    first_refusal = not (
        reported.get("state") == PolicyState.FAILED
        and reported.get("desiredRevision") == desired_revision
    )
    target = desired_revision.removeprefix("sha256:")
    if latest is not None and latest.hash == target:
        if latest.status is gw.PolicyLoadState.FAILED:
            message = f"the gateway failed to load {desired_revision}: {latest.load_error}"
            return RolloutStep(
                Status.FALSE,
                Reason.POLICY_LOAD_FAILED,
                message,
                PolicyState.FAILED,
                warn=first_refusal,
            )
        if latest.status is not gw.PolicyLoadState.SUPERSEDED:
            message = f"{desired_revision} sent as gateway version {latest.version}; loading"
            return RolloutStep(
                Status.FALSE, Reason.POLICY_PENDING, message, PolicyState.PENDING, poll=True
            )

    if refusal is not None:
        message = f"the gateway refused {desired_revision}: {refusal}"
        return RolloutStep(
            Status.FALSE, Reason.POLICY_REJECTED, message, PolicyState.FAILED, warn=first_refusal
        )

    if change is None or change.live:
        if not first_refusal:
            message = str(reported.get("message") or f"the gateway refused {desired_revision}")
            return RolloutStep(Status.FALSE, Reason.POLICY_REJECTED, message, PolicyState.FAILED)
        message = f"pushing {desired_revision}"
        return RolloutStep(
            Status.FALSE, Reason.POLICY_PENDING, message, PolicyState.PENDING, push=True
        )

    blockers = "; ".join(str(b) for b in change.blockers)
    if static_changes == "Recreate":
        if not may_recreate:
            message = f"{desired_revision} needs a new sandbox ({blockers}); waiting for a slot"
            return RolloutStep(
                Status.FALSE,
                Reason.RECREATE_PENDING,
                message,
                PolicyState.PENDING,
                awaits_slot=True,
            )
        message = f"{desired_revision} cannot be hot-reloaded ({blockers}); recreating"
        return RolloutStep(
            Status.FALSE, Reason.RECREATING, message, PolicyState.PENDING, recreate=True
        )
    message = (
        f"{desired_revision} cannot be hot-reloaded ({blockers}); staticChanges is Reject, "
        "so the sandbox keeps its loaded revision"
    )
    return RolloutStep(
        Status.FALSE, Reason.STATIC_CHANGE_REJECTED, message, PolicyState.FAILED, warn=first_refusal
    )
