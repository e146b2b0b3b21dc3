"""Builders of the values tests feed the operator: the planner's inputs (session facts, the
gateway's sandbox, the desired policy or why there is none, an observation) and the
Kubernetes objects.

Every builder gives a typical value and takes keyword overrides, so a test states only
what it is about. The HelmdeckSession and SidecarPolicy object builders are the dev kit's
(`helmdeck_dev.objects`, shared with the demo and the benchmarks), re-exported here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from helmdeck_dev.objects import policy, session
from helmdeck_operator.core.conditions import merge_conditions
from helmdeck_operator.core.naming import LABEL_SESSION_UID
from helmdeck_operator.core.plan import (
    ANNOTATION_SHAPE,
    DesiredPolicy,
    Observed,
    Plan,
    PolicyProblem,
    SessionFacts,
)
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.vocabulary import Reason

__all__ = [
    "HEX_A",
    "HEX_B",
    "NOW",
    "OTHER_UID",
    "PORTS",
    "REV_A",
    "REV_B",
    "SANDBOX",
    "SHAPE",
    "UID",
    "desired",
    "facts",
    "later",
    "policy",
    "problem",
    "ready",
    "sandbox",
    "session",
    "status_after",
]

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
UID = "6f1c2a9e-0d6b-4c1e-9a55-3b7f2e8d1c40"
OTHER_UID = "11111111-2222-3333-4444-555555555555"
SANDBOX = "hd-abcdefghijklmnop"
SHAPE = "0123456789abcdef"
#: Two policy revisions, and the hashes the gateway reports for them.
HEX_A, HEX_B = "a" * 64, "b" * 64
#: The ports digest of the session's ports; a `ready()` sandbox has them exposed.
PORTS = "p" * 16
REV_A, REV_B = f"sha256:{HEX_A}", f"sha256:{HEX_B}"


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def facts(**overrides: Any) -> SessionFacts:
    """A session of generation 1, not suspended, never expiring, with an empty status."""
    values: dict[str, Any] = {
        "uid": UID,
        "generation": 1,
        "suspend": False,
        "shape_digest": SHAPE,
        "expires_at": None,
        "on_expiry": "Delete",
        "gateway": "pods",
        "sandbox_name": SANDBOX,
        "status": {},
        "ports": ("cdp",),
        "ports_digest": PORTS,
    }
    values.update(overrides)
    return SessionFacts(**values)


def sandbox(
    phase: gw.SandboxPhase = gw.SandboxPhase.READY,
    *,
    owner: str | None = UID,
    shape: str | None = SHAPE,
    **overrides: Any,
) -> gw.Sandbox:
    """Our sandbox as the gateway reports it: labelled with `owner`, annotated with `shape`."""
    values: dict[str, Any] = {
        "name": SANDBOX,
        "id": "sbx-1",
        "workspace": "default",
        "phase": phase,
        "labels": {LABEL_SESSION_UID: owner} if owner is not None else {},
        "annotations": {ANNOTATION_SHAPE: shape} if shape is not None else {},
        "current_policy_version": 1,
    }
    values.update(overrides)
    return gw.Sandbox(**values)


def desired(revision: str = REV_A, **overrides: Any) -> DesiredPolicy:
    """The session's SidecarPolicy `web`, resolved to `revision`."""
    values: dict[str, Any] = {"name": "web", "revision": revision, "policy": None}
    values.update(overrides)
    return DesiredPolicy(**values)


def problem(reason: str = "PolicyNotFound") -> PolicyProblem:
    """Why the session's SidecarPolicy `web` gives no desired policy."""
    return PolicyProblem("web", Reason(reason), f"SidecarPolicy team/web: {reason}")


def ready(revision: str | None = REV_A, **overrides: Any) -> Observed:
    """A READY sandbox that has loaded `revision` (None: no policy loaded yet)."""
    values: dict[str, Any] = {"sandbox": sandbox(), "active_revision": revision, "exposed": PORTS}
    values.update(overrides)
    return Observed(**values)


def status_after(plan: Plan, generation: int = 1, **extra: Any) -> dict[str, Any]:
    """The status the shell writes for `plan` (the parts the planner reads back)."""
    return {
        "phase": plan.phase.value,
        "conditions": merge_conditions([], plan.conditions, generation=generation, now=NOW),
        "policy": plan.policy,
        **extra,
    }
