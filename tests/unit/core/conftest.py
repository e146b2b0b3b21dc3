"""Builders for the functional-core tests: session facts, gateway observations, statuses.

Everything is a plain value: the core is pure, so a test builds its inputs, calls one
function and looks at the result. `status_after` turns a Plan into the status the shell
would write, so a test can run two passes in a row the way the reconciler does.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmdeck_operator.core.conditions import merge_conditions
from helmdeck_operator.core.naming import LABEL_SESSION_UID
from helmdeck_operator.core.plan import (
    ANNOTATION_SHAPE,
    DesiredPolicy,
    Observed,
    Plan,
    PolicyProblem,
    SessionFacts,
    plan_session,
)
from helmdeck_operator.gateway import models as gw

REPO_ROOT = Path(__file__).resolve().parents[3]
POLICY_DIR = REPO_ROOT / "policies"
FAMILIES = ("browser", "node", "python", "vision")

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
UID = "6f1c2a9e-0d6b-4c1e-9a55-3b7f2e8d1c40"
OTHER_UID = "11111111-2222-3333-4444-555555555555"
SANDBOX = "hd-abcdefghijklmnop"
SHAPE = "0123456789abcdef"
REV_A = "sha256:" + "a" * 64
REV_B = "sha256:" + "b" * 64


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
    values: dict[str, Any] = {"name": "web", "revision": revision, "policy": None}
    values.update(overrides)
    return DesiredPolicy(**values)


def problem(reason: str = "PolicyNotFound") -> PolicyProblem:
    return PolicyProblem("web", reason, f"SidecarPolicy team/web: {reason}")


def ready(revision: str = REV_A, **overrides: Any) -> Observed:
    """A READY sandbox that has loaded `revision`."""
    values: dict[str, Any] = {"sandbox": sandbox(), "active_revision": revision}
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


def passes(
    session: SessionFacts,
    policy: DesiredPolicy | PolicyProblem,
    observations: list[Observed],
    now: datetime = NOW,
) -> list[Plan]:
    """Plan once per observation, each pass reading the status the previous one wrote."""
    plans = []
    for obs in observations:
        plan = plan_session(session, policy, obs, now)
        plans.append(plan)
        status = dict(session.status)
        status.update(status_after(plan, session.generation))
        session = replace(session, status=status)
    return plans


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def condition(plan: Plan, type_: str) -> tuple[str, str]:
    """(status, reason) of one condition of a plan."""
    (found,) = [c for c in plan.conditions if c.type == type_]
    return found.status.value, found.reason


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def policy_spec(family: str) -> dict[str, Any]:
    """The `spec` of a shipped family policy (policies/<family>.yaml)."""
    manifest = yaml.safe_load((POLICY_DIR / f"{family}.yaml").read_text())
    spec: dict[str, Any] = manifest["spec"]
    return spec


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
