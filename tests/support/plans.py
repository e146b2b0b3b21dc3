"""Running the session planner as the reconciler does, and reading what it planned."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from helmdeck_operator.core.plan import (
    DesiredPolicy,
    Observed,
    Plan,
    PolicyProblem,
    SessionFacts,
    plan_session,
)
from tests.support.builders import NOW, status_after

__all__ = ["condition", "passes", "reasons"]


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
    """The reasons of the Events a plan posts, in order."""
    return [e.reason for e in plan.events]


def condition(plan: Plan, type_: str) -> tuple[str, str]:
    """(status, reason) of one condition of a plan."""
    (found,) = [c for c in plan.conditions if c.type == type_]
    return found.status.value, found.reason
