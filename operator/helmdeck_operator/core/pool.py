"""A SessionPool as the operator reads it, and `plan_pool`: what one pool pass does.

A pool keeps `replicas` sandboxes booted with a baseline policy. A session that names the
pool asks it for one; the pool pass answers every waiting session at once, with a claim
or with the reason for a cold create. A claim is recorded in the pool's `status.claims`
with an optimistic write (the pool's resourceVersion as precondition): that write is the
moment a sandbox changes hands, so two passes (a restart, a second replica during a leader
handover) can never give one sandbox to two sessions: the later write fails and its pass
starts over from what the first one recorded. The session then records the claim in its
own status (`status.pool.sandbox`), which is what survives the pool's deletion.

The rules, in order:

1. A claim whose sandbox is no longer one of the pool's is forgotten: it was deleted (its
   session ended), or its session lost it and made its own of that name.
2. A claim whose session is gone, or recorded another sandbox (a cold one made during a
   leader handover), has its sandbox deleted: a sandbox once claimed is never idle again.
3. Waiting sessions, oldest request first: a pool being deleted answers PoolNotFound; a
   session whose family, gateway or shape differs from the pool's answers
   PoolShapeMismatch; one whose policy cannot be reached from the baseline as a live change
   answers PoolPolicyNotLive; otherwise the oldest ready idle sandbox is claimed, and when
   there is none (or the pool holds `MAX_CLAIMS` already) PoolEmpty.
4. Idle sandboxes in ERROR or COMPLETED, or booted with another shape or baseline (the
   template or baseline changed), are deleted; while the baseline cannot be resolved, none
   is claimed and none is deleted as stale.
5. Idle sandboxes above `replicas` are deleted, booting ones first, newest first.
6. Below `replicas`, new ones are booted, at most `maxProvisioning` at a time (creates not
   answered yet count), and none while the baseline policy cannot be resolved.
7. A pool being deleted keeps no idle sandbox, and is released once none is left (nor a
   create in flight) and every claim is recorded by its session (or its sandbox is gone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from helmdeck_operator.config import Family
from helmdeck_operator.core.conditions import Condition, Status, format_time, merge_conditions
from helmdeck_operator.core.naming import ANNOTATION_INITIAL_POLICY, LABEL_POOL_UID
from helmdeck_operator.core.plan import ANNOTATION_SHAPE
from helmdeck_operator.core.session import CrdView, PolicyRef, SandboxTemplate
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.vocabulary import ConditionType, Reason

__all__ = [
    "MAX_CLAIMS",
    "Claim",
    "ClaimRequest",
    "Holder",
    "Member",
    "MemberState",
    "PoolFacts",
    "PoolPlan",
    "PoolSpec",
    "Refusal",
    "claims_of",
    "member",
    "plan_pool",
    "pool_status",
]

#: Claims one pool records at most: each is about 150 bytes of the pool's status, and an
#: object must stay well below etcd's 1.5 MiB. Beyond it sessions are created cold.
MAX_CLAIMS = 4000


class PoolSpec(CrdView):
    family: Family
    gateway: str | None = None
    template: SandboxTemplate = SandboxTemplate()
    baseline_policy_ref: PolicyRef | None = None
    replicas: int = 1
    max_provisioning: int = 10


@dataclass(frozen=True)
class Claim:
    """One pool sandbox given to one session: an item of the pool's status.claims."""

    sandbox: str
    session: str
    uid: str
    claimed_at: str

    def to_status(self) -> dict[str, str]:
        return {
            "sandbox": self.sandbox,
            "session": self.session,
            "uid": self.uid,
            "claimedAt": self.claimed_at,
        }


def claims_of(status: Mapping[str, Any]) -> tuple[Claim, ...]:
    """The claims a pool's status records."""
    return tuple(
        Claim(
            sandbox=str(item["sandbox"]),
            session=str(item.get("session", "")),
            uid=str(item["uid"]),
            claimed_at=str(item.get("claimedAt", "")),
        )
        for item in status.get("claims") or ()
        if item.get("sandbox") and item.get("uid")
    )


class MemberState(StrEnum):
    READY = "Ready"
    """READY with its baseline loaded: can be claimed."""
    BOOTING = "Booting"
    BROKEN = "Broken"
    """ERROR or COMPLETED: never becomes claimable."""
    DELETING = "Deleting"


@dataclass(frozen=True)
class Member:
    """A sandbox labelled with the pool's UID, as the plan sees it."""

    name: str
    state: MemberState
    current: bool
    """Booted with the pool's present shape and baseline."""
    created_at: datetime | None = None


def member(
    sandbox: gw.Sandbox,
    shape_digest: str,
    baseline_revision: str | None,
    providers: tuple[str, ...],
) -> Member:
    """What the plan needs of one of the pool's sandboxes. Its providers are compared apart
    from the shape digest (a session attaches and detaches its own on a claimed one), so a
    change of the template's providers replaces the idle sandboxes too."""
    if sandbox.deleting or sandbox.phase is gw.SandboxPhase.DELETING:
        state = MemberState.DELETING
    elif sandbox.phase in (gw.SandboxPhase.ERROR, gw.SandboxPhase.COMPLETED):
        state = MemberState.BROKEN
    elif sandbox.phase is gw.SandboxPhase.READY and sandbox.current_policy_version >= 1:
        state = MemberState.READY
    else:
        state = MemberState.BOOTING
    current = (
        baseline_revision is not None
        and sandbox.annotations.get(ANNOTATION_SHAPE) == shape_digest
        and sandbox.annotations.get(ANNOTATION_INITIAL_POLICY) == baseline_revision
        and set(sandbox.providers) == set(providers)
    )
    return Member(sandbox.name, state, current, sandbox.created_at)


class Holder(StrEnum):
    """What the session of a claim says about it."""

    RECORDED = "Recorded"
    """Its status names this sandbox."""
    UNRECORDED = "Unrecorded"
    """It exists and has not recorded a sandbox yet."""
    ELSEWHERE = "Elsewhere"
    """It recorded another sandbox, or a cold create."""
    GONE = "Gone"
    """It was deleted (or replaced by another object of its name)."""


@dataclass(frozen=True)
class ClaimRequest:
    """A session waiting for its pool's answer."""

    uid: str
    session: str
    family: str
    gateway: str
    shape_digest: str
    live: bool = True
    """Whether the session's policy can be pushed to a sandbox running the baseline."""
    not_live: str = ""
    """Why not, when it cannot (the classifier's blockers)."""


@dataclass(frozen=True)
class Refusal:
    """A waiting session sent to a cold create, and why."""

    uid: str
    session: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class PoolFacts:
    """The inputs about the pool itself."""

    uid: str
    name: str
    generation: int
    family: str
    gateway: str
    replicas: int
    max_provisioning: int
    shape_digest: str
    baseline: tuple[str, str] | None
    """(name, revision) of the baseline policy; None when it cannot be resolved."""
    baseline_problem: tuple[Reason, str] | None = None
    deleting: bool = False
    claims: tuple[Claim, ...] = ()
    in_flight: int = 0
    """Creates sent and not answered yet (they run beside the pool's passes)."""


@dataclass(frozen=True)
class PoolPlan:
    claims: tuple[Claim, ...]
    """The claims to record (rule 1 applied, the new ones added)."""
    granted: tuple[Claim, ...]
    refused: tuple[Refusal, ...]
    create: int
    delete: tuple[str, ...]
    ready: int
    booting: int
    condition: Condition
    release: bool = False
    """Being deleted and nothing left to wait for: remove the finalizer."""


def plan_pool(
    pool: PoolFacts,
    members: Sequence[Member],
    holders: Mapping[str, Holder],
    requests: Sequence[ClaimRequest],
    now: datetime,
) -> PoolPlan:
    """The pool's next step; see the module docstring for the rules. `holders` says, per
    claimed session UID, what that session records."""
    by_name = {m.name: m for m in members}
    claims = [c for c in pool.claims if c.sandbox in by_name]  # rule 1
    delete: list[str] = [
        c.sandbox
        for c in claims
        if holders.get(c.uid, Holder.GONE) in (Holder.GONE, Holder.ELSEWHERE)
        and by_name[c.sandbox].state is not MemberState.DELETING
    ]  # rule 2
    claimed = {c.sandbox for c in claims}
    idle = [m for m in members if m.name not in claimed and m.state is not MemberState.DELETING]
    # Rule 4; with the baseline unknown (its policy missing or invalid for a moment), whether
    # a sandbox is stale is unknown too: kept, but not claimed (unless the pool goes).
    known = pool.baseline is not None or pool.deleting
    unusable = [m for m in idle if m.state is MemberState.BROKEN or (not m.current and known)]
    delete += [m.name for m in unusable]
    usable = [m for m in idle if m.state is not MemberState.BROKEN and m.current]
    ready = sorted((m for m in usable if m.state is MemberState.READY), key=_age_order)

    granted: list[Claim] = []
    refused: list[Refusal] = []
    stamp = format_time(now)
    for request in requests:  # rule 3
        verdict = _verdict(pool, request, ready, len(claims) + len(granted))
        if verdict is not None:
            refused.append(Refusal(request.uid, request.session, *verdict))
            continue
        chosen = ready.pop(0)
        granted.append(Claim(chosen.name, request.session, request.uid, stamp))
    taken = {c.sandbox for c in granted}
    usable = [m for m in usable if m.name not in taken]

    target = 0 if pool.deleting else pool.replicas
    booting = [m for m in usable if m.state is MemberState.BOOTING]
    # Creates still in flight count as booting: the gateway has not answered them yet.
    surplus = len(usable) + pool.in_flight - target
    if surplus > 0:  # rule 5
        newest_first = sorted(booting, key=_age_order, reverse=True) + sorted(
            (m for m in usable if m.state is MemberState.READY), key=_age_order, reverse=True
        )
        dropped = {m.name for m in newest_first[:surplus]}
        delete += [m.name for m in newest_first[:surplus]]
        usable = [m for m in usable if m.name not in dropped]
        booting = [m for m in booting if m.name not in dropped]
    create = 0
    if pool.baseline is not None and not pool.deleting:  # rule 6
        create = max(
            0,
            min(
                target - len(usable) - pool.in_flight,
                pool.max_provisioning - len(booting) - pool.in_flight,
            ),
        )
    n_ready = len(usable) - len(booting)
    n_booting = len(booting) + pool.in_flight + create
    all_claims = (*claims, *granted)
    # Rule 7: the claims of sessions that are gone go with their sandboxes (rules 2, 1).
    release = (
        pool.deleting
        and pool.in_flight == 0
        and all(m.name in claimed for m in members)
        and all(holders.get(c.uid) is Holder.RECORDED for c in all_claims)
    )
    return PoolPlan(
        claims=all_claims,
        granted=tuple(granted),
        refused=tuple(refused),
        create=create,
        delete=tuple(delete),
        ready=n_ready,
        booting=n_booting,
        condition=_condition(pool, n_ready, n_booting, target),
        release=release,
    )


def _age_order(m: Member) -> tuple[float, str]:
    """Oldest first (the name breaks ties, so the order is the same on every pass)."""
    return (m.created_at.timestamp() if m.created_at else 0.0, m.name)


def _verdict(
    pool: PoolFacts, request: ClaimRequest, ready: list[Member], claims: int
) -> tuple[Reason, str] | None:
    """Why `request` cannot have a ready sandbox of `ready` (None: it can)."""
    where = f"SessionPool {pool.name}"
    if pool.deleting:
        return Reason.POOL_NOT_FOUND, f"{where} is being deleted"
    if request.family != pool.family or request.gateway != pool.gateway:
        return (
            Reason.POOL_SHAPE_MISMATCH,
            f"{where} boots {pool.family} sandboxes on gateway {pool.gateway}; this session is "
            f"{request.family} on gateway {request.gateway}",
        )
    if request.shape_digest != pool.shape_digest:
        return (
            Reason.POOL_SHAPE_MISMATCH,
            f"{where} boots another image, command, resources or env than this session asks for",
        )
    if not request.live:
        return (
            Reason.POOL_POLICY_NOT_LIVE,
            f"the session's policy cannot be loaded into a running sandbox of {where} "
            f"(baseline {pool.baseline[0] if pool.baseline else 'unresolved'}): "
            f"{request.not_live}",
        )
    if claims >= MAX_CLAIMS:
        return Reason.POOL_EMPTY, f"{where} holds {MAX_CLAIMS} claims, the most one pool records"
    if not ready:
        return Reason.POOL_EMPTY, f"{where} has no ready sandbox"
    return None


def _condition(pool: PoolFacts, ready: int, booting: int, target: int) -> Condition:
    if pool.baseline_problem is not None:
        reason, message = pool.baseline_problem
        return Condition(ConditionType.READY, Status.FALSE, reason, message)
    if ready >= target:
        return Condition(
            ConditionType.READY, Status.TRUE, Reason.POOL_FILLED, f"{ready} of {target} ready"
        )
    return Condition(
        ConditionType.READY,
        Status.FALSE,
        Reason.POOL_FILLING,
        f"{ready} of {target} ready, {booting} booting",
    )


def pool_status(
    pool: PoolFacts, plan: PoolPlan, old: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The status a pool pass writes."""
    status: dict[str, Any] = {
        "observedGeneration": pool.generation,
        "replicas": plan.ready + plan.booting,
        "readyReplicas": plan.ready,
        "provisioning": plan.booting,
        "claimed": len(plan.claims),
        "selector": f"{LABEL_POOL_UID}={pool.uid}",
        "shape": pool.shape_digest,
        "claims": [c.to_status() for c in plan.claims],
        "conditions": merge_conditions(
            old.get("conditions", []), (plan.condition,), generation=pool.generation, now=now
        ),
    }
    status["baseline"] = (
        {"name": pool.baseline[0], "revision": pool.baseline[1]} if pool.baseline else None
    )
    return status
