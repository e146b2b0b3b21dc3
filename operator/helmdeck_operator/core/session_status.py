"""The HelmdeckSession status a pass writes, rendered from its plan: pure functions.

`plan_session` decides; this turns the decision and what the gateway reported into the
`status` object (phase, conditions with their transition times, the policy, the sandbox
with its providers and its endpoints, what its pool answered, expiresAt, the idle clock,
readyAt) as a merge patch against the status stored now: a key no longer reported is sent
as null, except the consumer's own `lease`, which the operator never writes.
`terminating_status` is what a session being deleted shows while its sandbox is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from helmdeck_operator.core.conditions import Condition, Status, format_time, merge_conditions
from helmdeck_operator.core.naming import LABEL_SESSION_UID
from helmdeck_operator.core.plan import Observed, Plan, SessionFacts
from helmdeck_operator.gateway import models
from helmdeck_operator.vocabulary import ConditionType, Phase, Reason

__all__ = ["owned_by", "render_status", "terminating_status"]

#: Status keys the session's consumer writes (docs/helmdeck.md): never sent by the operator,
#: so its writes can neither undo nor race a renewal.
_CONSUMER_KEYS = frozenset({"lease"})


def owned_by(sandbox: models.Sandbox | None, uid: str) -> bool:
    """A sandbox of the session `uid` (or one without an owner label, made under its name)."""
    return sandbox is not None and sandbox.labels.get(LABEL_SESSION_UID, uid) == uid


def render_status(
    facts: SessionFacts,
    plan: Plan,
    obs: Observed,
    old: Mapping[str, Any],
    workspace: str,
    now: datetime,
) -> dict[str, Any]:
    """The status to write after a pass over `old`, the status stored now (which
    `facts.status` may no longer be: a pass that deleted the sandbox forgets it there);
    keys no longer reported are sent as null (merge-patch removal). `workspace` is the
    gateway's, shown when the sandbox does not name its own."""
    sandbox = obs.sandbox if owned_by(obs.sandbox, facts.uid) else None
    # (another session's sandbox, a name conflict: never show its details)
    status: dict[str, Any] = {
        "phase": plan.phase.value,
        "observedGeneration": facts.generation,
        "conditions": merge_conditions(
            old.get("conditions", []), plan.conditions, generation=facts.generation, now=now
        ),
        "policy": plan.policy,
    }
    if obs.error is not None:
        # Unreachable: what we knew about the sandbox stays as it was.
        for key in ("sandbox", "endpoints"):
            if key in old:
                status[key] = old[key]
    elif sandbox is None:
        # Recorded even without a sandbox: the session stays on this gateway.
        status["sandbox"] = {"gateway": facts.gateway}
    else:
        status["sandbox"] = {
            "name": sandbox.name,
            "gateway": facts.gateway,
            "workspace": sandbox.workspace or workspace,
            "phase": "DELETING" if sandbox.deleting else sandbox.phase.value,
        }
        if not sandbox.deleting:
            status["sandbox"]["id"] = sandbox.id
        if obs.exposed is not None:
            status["sandbox"]["ports"] = obs.exposed
        if sandbox.providers:
            # The gateway's record, not the spec: what the sandbox has now.
            status["sandbox"]["providers"] = sorted(sandbox.providers)
        status["endpoints"] = dict(sandbox.service_urls)
    if facts.pool is not None:
        pool = {
            "name": facts.pool.name,
            "sandbox": facts.pool.sandbox,
            "claimedAt": facts.pool.claimed_at,
            "fallback": facts.pool.fallback.value if facts.pool.fallback else None,
        }
        status["pool"] = {k: v for k, v in pool.items() if v is not None}
    if facts.expires_at is not None:
        status["expiresAt"] = format_time(facts.expires_at)
    if facts.extended_to is not None:
        status["extendedTo"] = format_time(facts.extended_to)
    if plan.activity is not None and facts.idle_timeout is not None:
        status["lastActivityAt"] = format_time(plan.activity)
    if plan.idle_at is not None:
        status["idleAt"] = format_time(plan.idle_at)
    if old.get("lastTraceId"):
        # The trace of the pass that last changed something: kept until another does (the
        # shell sets it when it writes), never a change by itself.
        status["lastTraceId"] = old["lastTraceId"]
    if old.get("readyAt"):
        status["readyAt"] = old["readyAt"]
    elif plan.phase is Phase.READY:
        status["readyAt"] = format_time(now)
    return _with_removals(old, status)


def terminating_status(
    old: Mapping[str, Any], waiting: str, generation: int, now: datetime
) -> dict[str, Any]:
    """A deleted session whose sandbox is not gone yet: Terminating, and why it waits."""
    return {
        "phase": Phase.TERMINATING.value,
        "conditions": merge_conditions(
            old.get("conditions", []),
            (Condition(ConditionType.READY, Status.FALSE, Reason.TERMINATING, waiting),),
            generation=generation,
            now=now,
        ),
    }


def _with_removals(old: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge patches merge maps: a key we stopped reporting must be sent as null."""
    out = dict(new)
    for key, value in old.items():
        if key in _CONSUMER_KEYS:
            continue
        if key not in out:
            out[key] = None
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _with_removals(value, out[key])
    return out
