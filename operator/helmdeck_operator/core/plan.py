"""What a session should look like and what to do next: one pure function, `plan_session`.

Level-triggered: the inputs are the session as stored (spec and last status), the policy it
should run, what the gateway reports now, and the time; the output is the single next
action, the phase and conditions to report, the Events worth posting, and when to look
again. Nothing is remembered between calls except what is in the session's status, so a
restart at any point resumes from the same inputs.

The rules, in order (docs/reconcile.md draws them as a state diagram):

1. Past `expiresAt` (the TTL, or a later end a lease renewal was granted: `core.lifetime`):
   Delete removes the session (its finalizer removes the sandbox); Retain removes the
   sandbox and keeps the session as Expired.
2. A refusal of our create (or a missing gateway) is Failed; a permanent failure already
   reported for this generation stays Failed (no retry loop; `vocabulary.PERMANENT_REASONS`).
3. The gateway cannot be asked: phase kept, Ready Unknown with the error's reason.
4. No sandbox: create one, unless it existed and was lost behind our back (SandboxLost:
   recreate, or Failed when so configured), the policy cannot be resolved (Pending), the
   namespace's tenancy rules refuse it (Failed, TenancyRefused) or its namespace is at its
   totals (Pending, QuotaExceeded: created when room frees).
5. A sandbox of that name carrying another session's UID is a conflict: Failed.
6. A sandbox being deleted is waited for.
7. A sandbox whose shape (image, command, resources, env) differs from the spec is
   recreated: the shape cannot change on a live sandbox.
8. ERROR or COMPLETED on the gateway: Failed with the gateway's reason.
9. Idle (no activity for `lifetime.idleTimeout`): onIdle Delete removes the session;
   onIdle Suspend stops the sandbox like spec.suspend, until a renewal makes it active.
10. Suspend maps to Stop / Start; STOPPED is Suspended.
11. READY with its first policy loaded and its ports exposed is Ready; a different desired
    revision is pushed, refused or rolled out by recreation (`policy_rollout`); a change of
    ports is synchronised on the live sandbox (EndpointsExposed), then one of providers
    (ProvidersAttached: attached and detached, never a recreate).

A session that names a SessionPool waits for the pool's answer before rule 4 (a claimed
pool sandbox is then its sandbox; a refusal makes rule 4 a cold create), is not Ready on a
claimed sandbox before its own policy is loaded there, and carries a PoolClaimed condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from helmdeck_operator.core.conditions import Condition, Status, format_time
from helmdeck_operator.core.lifetime import idle_at
from helmdeck_operator.core.naming import LABEL_SESSION_UID
from helmdeck_operator.core.policy_rollout import next_rollout_step
from helmdeck_operator.core.providers import provider_changes
from helmdeck_operator.gateway import models as gw
from helmdeck_operator.policy.change import ChangeClass
from helmdeck_operator.policy.guard import EgressReport
from helmdeck_operator.vocabulary import (
    PERMANENT_REASONS,
    ConditionType,
    EventReason,
    EventType,
    Phase,
    PolicyState,
    Reason,
)

__all__ = [
    "ANNOTATION_SHAPE",
    "SOON",
    "Action",
    "DesiredPolicy",
    "EventSpec",
    "Observed",
    "Plan",
    "PolicyProblem",
    "PoolPlacement",
    "SessionFacts",
    "idle_since",
    "plan_session",
]

#: Sandbox annotation holding the shape digest the sandbox was created with.
ANNOTATION_SHAPE = "helmdeck.dev/shape"


class Action(StrEnum):
    NONE = "None"
    CREATE = "Create"
    PUSH_POLICY = "PushPolicy"
    STOP = "Stop"
    START = "Start"
    DELETE_SANDBOX = "DeleteSandbox"
    """Remove the sandbox and keep the session (recreate, or expiry with Retain)."""
    DELETE_SESSION = "DeleteSession"
    """Remove the session object itself (expiry or idleness with Delete)."""
    SYNC_PORTS = "SyncPorts"
    """Expose and remove endpoints on the live sandbox until they match the ports."""
    SYNC_PROVIDERS = "SyncProviders"
    """Detach and attach providers on the live sandbox until they are spec.providers."""


#: "Look again soon": the shell waits its `pending_seconds` for any positive requeue.
SOON = 1.0


@dataclass(frozen=True)
class DesiredPolicy:
    """The policy a session should run, already translated to the gateway's form."""

    name: str
    revision: str
    """`sha256:<hex>` of the canonical policy; the gateway's policy_hash is the same hex."""
    policy: Any
    """The `SandboxPolicy` protobuf message."""
    static_changes: str = "Reject"
    max_unavailable: int = 1
    egress: EgressReport | None = None
    """What the platform's egress guard changed in it (None: not guarded, in tests)."""


@dataclass(frozen=True)
class PolicyProblem:
    """Why no policy can be resolved: PolicyNotFound, or PolicyInvalid with the field path."""

    name: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class PoolPlacement:
    """A session with spec.poolRef: what its pool answered, as recorded or just now."""

    name: str
    sandbox: str | None = None
    """The pool sandbox claimed for the session."""
    claimed_at: str | None = None
    fallback: Reason | None = None
    """Why the session was created cold instead."""
    message: str = ""

    @property
    def waiting(self) -> bool:
        return self.sandbox is None and self.fallback is None


@dataclass(frozen=True)
class SessionFacts:
    """The inputs about the session itself."""

    uid: str
    generation: int
    suspend: bool
    shape_digest: str
    expires_at: datetime | None
    on_expiry: str
    gateway: str
    sandbox_name: str
    on_sandbox_lost: str = "Recreate"
    status: dict[str, Any] = field(default_factory=dict)
    """The status as last written (empty for a new session)."""
    bound: bool = False
    """The desired policy is a SidecarPolicy (spec.policyRef): its hot reloads are announced
    once on the policy, for all its sessions, not by an Event per session."""
    pool: PoolPlacement | None = None
    """Set for a session that names a SessionPool."""
    ports: tuple[str, ...] = ()
    """Names of the ports to expose (spec.ports or the family's)."""
    ports_digest: str = ""
    """`core.session.ports_digest` of those ports."""
    providers: tuple[str, ...] = ()
    """The providers the sandbox should have (spec.providers)."""
    idle_timeout: timedelta | None = None
    on_idle: str = "Suspend"
    activity: datetime | None = None
    """The latest activity the status and the consumer's renewal tell (`core.lifetime`)."""
    extension: Condition | None = None
    """LifetimeExtended, once the consumer asked for a later end."""
    extended_to: datetime | None = None
    """The latest end a renewal was granted (status.extendedTo)."""
    held: tuple[Reason, str] | None = None
    """Why the namespace's tenancy rules hold back a new sandbox (`core.tenancy`):
    TenancyRefused (Failed, until the spec or the rules change) or QuotaExceeded (Pending,
    woken when room frees). None: a sandbox may be created."""


@dataclass(frozen=True)
class Observed:
    """What the gateway reports now, and how our last action went."""

    sandbox: gw.Sandbox | None = None
    active_revision: str | None = None
    """Revision (sha256:...) of the policy version the sandbox has LOADED, if any."""
    latest: gw.PolicyRevision | None = None
    """The newest policy revision stored for the sandbox."""
    change: ChangeClass | None = None
    """How the desired policy differs from the one the sandbox started with, if classified."""
    error: str | None = None
    """A gateway problem observing or acting that a later pass may not have; which call."""
    error_reason: Reason = Reason.GATEWAY_UNAVAILABLE
    """The condition reason for `error`, e.g. GatewayPermissionDenied."""
    failure: tuple[Reason, str] | None = None
    """A permanent refusal of our last action: (reason, the gateway's message)."""
    refusal: str | None = None
    """The gateway's message when it just refused the desired policy."""
    may_recreate: bool = True
    """Whether the policy's rollout bound leaves room to recreate this session now."""
    activity: datetime | None = None
    """The newest sandbox activity (a log line or network event) the shell looked for and
    found, when the idle clock ran out."""
    exposed: str | None = None
    """The ports digest the sandbox's endpoints are known to match, if known."""
    exposure_failure: tuple[Reason, str] | None = None
    """The gateway's refusal of the port synchronisation just attempted."""
    provider_failure: tuple[Reason, str] | None = None
    """The gateway's refusal of the provider synchronisation just attempted."""


@dataclass(frozen=True)
class EventSpec:
    type: EventType
    reason: EventReason | Reason
    """A failure's Event carries the failure's condition reason."""
    message: str


@dataclass(frozen=True)
class Plan:
    action: Action
    phase: Phase
    conditions: tuple[Condition, ...]
    policy: dict[str, Any]
    """status.policy: name, revision, desiredRevision, gatewayVersion, state, message."""
    events: tuple[EventSpec, ...] = ()
    requeue_after: float | None = None
    """Seconds until the next look; None means the steady-state resync interval."""
    rollout: bool = False
    """The sandbox is deleted to roll out a Recreate policy: it takes one rollout slot."""
    awaits_slot: bool = False
    """Waiting for a rollout slot of its Recreate policy; woken when one frees."""
    activity: datetime | None = None
    """status.lastActivityAt to record."""
    idle_at: datetime | None = None
    """When the session goes idle without further activity (status.idleAt)."""


@dataclass(frozen=True)
class _Ctx:
    """The three inputs, with the helpers that turn a verdict into a Plan."""

    facts: SessionFacts
    desired: DesiredPolicy | PolicyProblem
    obs: Observed

    @property
    def old_phase(self) -> str | None:
        return self.facts.status.get("phase") or None

    @property
    def activity(self) -> datetime | None:
        known = [t for t in (self.facts.activity, self.obs.activity) if t is not None]
        return max(known) if known else None

    def old_condition(self, type_: ConditionType) -> dict[str, Any] | None:
        return _stored_condition(self.facts, type_)

    def once(self, *events: EventSpec, unless_phase: Phase) -> tuple[EventSpec, ...]:
        """Events announcing a phase, posted only on the way into it."""
        return () if self.old_phase == unless_phase else events

    def policy_status(self, state: PolicyState | None = None, message: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.desired.name}
        if isinstance(self.desired, DesiredPolicy):
            out["desiredRevision"] = self.desired.revision
        if self.obs.active_revision:
            out["revision"] = self.obs.active_revision
        if self.obs.sandbox is not None and self.obs.sandbox.current_policy_version:
            out["gatewayVersion"] = self.obs.sandbox.current_policy_version
        if state is not None:
            out["state"] = state.value
        if message:
            out["message"] = message
        return out

    def provisioned(self, reason: Reason, message: str) -> Condition:
        if self.obs.sandbox is not None:
            where = f"sandbox {self.obs.sandbox.name} on gateway {self.facts.gateway}"
            return Condition(ConditionType.PROVISIONED, Status.TRUE, Reason.SANDBOX_CREATED, where)
        return Condition(ConditionType.PROVISIONED, Status.FALSE, reason, message)

    def waiting(
        self,
        phase: Phase,
        reason: Reason,
        message: str,
        *,
        action: Action = Action.NONE,
        events: tuple[EventSpec, ...] = (),
        requeue: float | None = SOON,
    ) -> Plan:
        if isinstance(self.desired, PolicyProblem):
            policy = Condition(
                ConditionType.POLICY_APPLIED,
                Status.FALSE,
                self.desired.reason,
                self.desired.message,
            )
        else:
            policy = Condition(
                ConditionType.POLICY_APPLIED, Status.UNKNOWN, reason, "waiting for the sandbox"
            )
        return Plan(
            action=action,
            phase=phase,
            conditions=(
                Condition(ConditionType.READY, Status.FALSE, reason, message),
                self.provisioned(reason, message),
                policy,
            ),
            policy=self.policy_status(),
            events=events,
            requeue_after=0.0 if action is not Action.NONE else requeue,
        )

    def failed(self, reason: Reason, message: str) -> Plan:
        return Plan(
            action=Action.NONE,
            phase=Phase.FAILED,
            conditions=(
                Condition(ConditionType.READY, Status.FALSE, reason, message),
                self.provisioned(reason, message),
                Condition(
                    ConditionType.POLICY_APPLIED, Status.UNKNOWN, reason, "no usable sandbox"
                ),
            ),
            policy=self.policy_status(),
            events=self.once(
                EventSpec(EventType.WARNING, reason, message), unless_phase=Phase.FAILED
            ),
        )


def plan_session(
    facts: SessionFacts, desired: DesiredPolicy | PolicyProblem, obs: Observed, now: datetime
) -> Plan:
    """The next step for one session; see the module docstring for the rules."""
    ctx = _Ctx(facts, desired, obs)
    plan = _with_clock(ctx, _plan(ctx, now), now)
    if facts.extension is not None:
        plan = replace(plan, conditions=(*plan.conditions, facts.extension))
    return plan if facts.pool is None else _with_pool(ctx, facts.pool, plan)


def idle_since(facts: SessionFacts, activity: datetime | None, now: datetime) -> datetime | None:
    """When the session went idle after `activity`, if it has. Never while spec.suspend
    holds it, nor in the pass that lets go of it: that resume restarts the clock. (The
    shell asks it too, to know when to look for sandbox activity first.)"""
    at = idle_at(activity, facts.idle_timeout)
    held = (_stored_condition(facts, ConditionType.READY) or {}).get("reason") == Reason.SUSPENDED
    return at if at is not None and now >= at and not facts.suspend and not held else None


def _stored_condition(facts: SessionFacts, type_: ConditionType) -> dict[str, Any] | None:
    conds = facts.status.get("conditions", [])
    return next((dict(c) for c in conds if c.get("type") == type_), None)


def _with_clock(ctx: _Ctx, plan: Plan, now: datetime) -> Plan:
    """The idle clock the plan leaves: it starts at the first Ready and restarts with a
    start of the sandbox (a resume)."""
    activity = ctx.activity
    if plan.action is Action.START or (plan.phase is Phase.READY and activity is None):
        activity = now
    return replace(plan, activity=activity, idle_at=idle_at(activity, ctx.facts.idle_timeout))


def _plan(ctx: _Ctx, now: datetime) -> Plan:
    facts, desired, obs = ctx.facts, ctx.desired, ctx.obs
    sandbox = obs.sandbox

    if facts.expires_at is not None and now >= facts.expires_at:
        return _expired(ctx)
    if obs.failure is not None:
        return ctx.failed(*obs.failure)
    still = _still_failed(ctx)
    if still is not None:
        return replace(ctx.failed(*still), events=())
    if obs.error is not None:
        return _unreachable(ctx)
    if (
        sandbox is None
        and facts.pool is not None
        and facts.pool.waiting
        and isinstance(desired, DesiredPolicy)
    ):
        # The pool pass answers every waiting session at once and wakes it; the look
        # again soon only covers a pool pass that fails (and holds this status back).
        return ctx.waiting(
            Phase.PENDING,
            Reason.WAITING_FOR_POOL,
            f"waiting for SessionPool {facts.pool.name} to answer",
        )
    if sandbox is None:
        return _no_sandbox(ctx)

    owner = sandbox.labels.get(LABEL_SESSION_UID)
    if owner is not None and owner != facts.uid:
        # Which session owns it is not this tenant's to read (it may be another namespace's).
        message = f"sandbox {sandbox.name} on the gateway belongs to another session"
        # Nothing the gateway reports about that sandbox (its policy included) is ours.
        foreign = replace(obs, sandbox=None, active_revision=None, latest=None)
        return _Ctx(facts, desired, foreign).failed(Reason.SANDBOX_NAME_CONFLICT, message)
    if sandbox.deleting or sandbox.phase is gw.SandboxPhase.DELETING:
        return ctx.waiting(
            Phase.PROVISIONING,
            Reason.SANDBOX_DELETING,
            f"waiting for the previous sandbox {sandbox.name} to be removed",
        )
    digest = sandbox.annotations.get(ANNOTATION_SHAPE)
    if digest is not None and digest != facts.shape_digest:
        message = "image, command, resources or env changed; recreating the sandbox"
        return ctx.waiting(
            Phase.PROVISIONING,
            Reason.RECREATING,
            message,
            action=Action.DELETE_SANDBOX,
            events=(EventSpec(EventType.NORMAL, EventReason.RECREATING, message),),
        )
    if sandbox.phase is gw.SandboxPhase.ERROR:
        detail = next((c.message for c in sandbox.conditions if c.message), "")
        message = f"the gateway reports sandbox {sandbox.name} in ERROR"
        return ctx.failed(Reason.SANDBOX_ERROR, f"{message}: {detail}" if detail else message)
    if sandbox.phase is gw.SandboxPhase.COMPLETED:
        message = f"the gateway reports sandbox {sandbox.name} COMPLETED: its main process exited"
        return ctx.failed(Reason.SANDBOX_COMPLETED, message)
    idle = idle_since(facts, ctx.activity, now)
    if idle is not None and facts.on_idle == "Delete":
        return _idle_deleted(ctx, idle)
    suspended = _suspend(ctx, sandbox, idle)
    if suspended is not None:
        return suspended
    if sandbox.phase is not gw.SandboxPhase.READY or not obs.active_revision:
        waiting_for = "" if obs.active_revision else "; waiting for its policy to load"
        # UNKNOWN (the driver lost track) may last: look again at the resync pace.
        unknown = sandbox.phase is gw.SandboxPhase.UNKNOWN
        return ctx.waiting(
            Phase.PROVISIONING,
            Reason.PROVISIONING,
            f"sandbox {sandbox.name} is {sandbox.phase.value.lower()}{waiting_for}",
            requeue=None if unknown else SOON,
        )
    return _ready(ctx, sandbox)


def _with_pool(ctx: _Ctx, pool: PoolPlacement, plan: Plan) -> Plan:
    """The PoolClaimed condition, and the Event of the pool's answer the first time."""
    recorded = ctx.facts.status.get("pool") or {}
    events: tuple[EventSpec, ...] = ()
    if pool.sandbox is not None:
        message = f"sandbox {pool.sandbox} claimed from SessionPool {pool.name}"
        condition = Condition(
            ConditionType.POOL_CLAIMED, Status.TRUE, Reason.CLAIMED_FROM_POOL, message
        )
        if recorded.get("sandbox") != pool.sandbox:
            events = (EventSpec(EventType.NORMAL, EventReason.POOL_CLAIMED, message),)
    elif pool.fallback is not None:
        condition = Condition(ConditionType.POOL_CLAIMED, Status.FALSE, pool.fallback, pool.message)
        if not recorded.get("fallback"):
            events = (
                EventSpec(
                    EventType.WARNING,
                    EventReason.POOL_FALLBACK,
                    f"created cold ({pool.fallback}): {pool.message}",
                ),
            )
    else:
        condition = Condition(
            ConditionType.POOL_CLAIMED,
            Status.UNKNOWN,
            Reason.WAITING_FOR_POOL,
            f"waiting for SessionPool {pool.name} to answer",
        )
    return replace(plan, conditions=(*plan.conditions, condition), events=events + plan.events)


def _still_failed(ctx: _Ctx) -> tuple[Reason, str] | None:
    """The permanent failure already reported for this generation, if any."""
    return _permanent(ctx, ConditionType.READY) if ctx.old_phase == Phase.FAILED else None


def _permanent(ctx: _Ctx, type_: ConditionType) -> tuple[Reason, str] | None:
    """(reason, message) of the stored condition `type_` when its reason is one only a
    change of the session fixes, reported for this generation: not to be retried."""
    old = ctx.old_condition(type_) or {}
    reason = _stored_reason(old.get("reason"))
    if reason in PERMANENT_REASONS and old.get("observedGeneration") == ctx.facts.generation:
        return reason, str(old.get("message", ""))
    return None


def _stored_reason(value: Any) -> Reason | None:
    """A reason read back from the stored status; None if not one this version writes."""
    try:
        return Reason(value)
    except ValueError:
        return None


def _unreachable(ctx: _Ctx) -> Plan:
    """The gateway could not be asked: keep what we knew, say why, try again later.

    Ready becomes Unknown (as a node's does when its kubelet stops reporting): the sandbox
    may well be serving, but nobody can vouch for it now. The phase is kept.
    """
    reason, message = ctx.obs.error_reason, ctx.obs.error or ""

    def kept(type_: ConditionType) -> Condition:
        old = ctx.old_condition(type_) or {}
        old_reason = _stored_reason(old.get("reason"))
        if old_reason is None:
            return Condition(type_, Status.UNKNOWN, reason, message)
        return Condition(type_, Status(old["status"]), old_reason, str(old.get("message", "")))

    return Plan(
        action=Action.NONE,
        phase=Phase(ctx.old_phase or Phase.PENDING),
        conditions=(
            Condition(ConditionType.READY, Status.UNKNOWN, reason, message),
            kept(ConditionType.PROVISIONED),
            kept(ConditionType.POLICY_APPLIED),
        ),
        policy=dict(ctx.facts.status.get("policy") or ctx.policy_status()),
    )


def _expired(ctx: _Ctx) -> Plan:
    assert ctx.facts.expires_at is not None
    message = f"lifetime ended at {format_time(ctx.facts.expires_at)}"
    sandbox = ctx.obs.sandbox
    if ctx.facts.on_expiry == "Delete":
        action = Action.DELETE_SESSION
    elif sandbox is not None and not sandbox.deleting:
        action = Action.DELETE_SANDBOX
    else:
        action = Action.NONE
    return Plan(
        action=action,
        phase=Phase.EXPIRED,
        conditions=(
            Condition(ConditionType.READY, Status.FALSE, Reason.EXPIRED, message),
            Condition(
                ConditionType.PROVISIONED,
                Status.TRUE if sandbox else Status.FALSE,
                Reason.EXPIRED,
                message,
            ),
            Condition(ConditionType.POLICY_APPLIED, Status.UNKNOWN, Reason.EXPIRED, message),
        ),
        policy=ctx.policy_status(),
        events=ctx.once(
            EventSpec(EventType.NORMAL, EventReason.EXPIRED, message), unless_phase=Phase.EXPIRED
        ),
        # A sandbox still being removed (Retain) is followed until it is gone, so the status
        # stops showing it then, not at the next resync.
        requeue_after=None if action is Action.NONE and sandbox is None else SOON,
    )


def _no_sandbox(ctx: _Ctx) -> Plan:
    if isinstance(ctx.desired, PolicyProblem):
        # Creating needs a policy; wait (the policy handler wakes us when it appears).
        return ctx.waiting(Phase.PENDING, ctx.desired.reason, ctx.desired.message, requeue=None)
    facts = ctx.facts
    events: tuple[EventSpec, ...] = ()
    previous = facts.status.get("sandbox") or {}
    if previous.get("id"):
        name = previous.get("name", facts.sandbox_name)
        message = f"sandbox {name} disappeared from gateway {facts.gateway}"
        if facts.on_sandbox_lost == "Fail":
            return ctx.failed(Reason.SANDBOX_LOST, message)
        events = (
            EventSpec(EventType.WARNING, EventReason.SANDBOX_LOST, message + "; recreating it"),
        )
    if facts.held is not None:
        reason, message = facts.held
        if reason is Reason.QUOTA_EXCEEDED:
            return ctx.waiting(Phase.PENDING, reason, message, requeue=None)
        return ctx.failed(reason, message)
    return ctx.waiting(
        Phase.PROVISIONING,
        Reason.CREATING,
        f"creating sandbox {facts.sandbox_name} on gateway {facts.gateway}",
        action=Action.CREATE,
        events=events,
    )


def _idle_deleted(ctx: _Ctx, since: datetime) -> Plan:
    """Idle with onIdle Delete: the session goes (its finalizer removes the sandbox)."""
    message = f"idle since {format_time(since)}: {_quiet(ctx)}; deleting the session"
    return Plan(
        action=Action.DELETE_SESSION,
        phase=Phase.EXPIRED,
        conditions=(Condition(ConditionType.READY, Status.FALSE, Reason.IDLE, message),),
        policy=ctx.policy_status(),
        events=(EventSpec(EventType.NORMAL, EventReason.IDLE, message),),
    )


def _quiet(ctx: _Ctx) -> str:
    timeout = ctx.facts.idle_timeout
    return f"no renewal and no sandbox activity for {timeout}"


def _suspend(ctx: _Ctx, sandbox: gw.Sandbox, idle: datetime | None) -> Plan | None:
    phase = sandbox.phase
    if ctx.facts.suspend or idle is not None:
        if idle is not None:
            why = f"idle since {format_time(idle)} ({_quiet(ctx)}; a renewal resumes it)"
            reason, event = Reason.IDLE, EventReason.IDLE
        else:
            why, reason, event = "spec.suspend is true", Reason.SUSPENDED, EventReason.SUSPENDED
        # Announced on the way into phase Suspended, which starts with the Stop: the stop is
        # asynchronous, so by the time STOPPED is seen the phase is already Suspended.
        suspended = ctx.once(
            EventSpec(EventType.NORMAL, event, f"{why}; stopping sandbox {sandbox.name}"),
            unless_phase=Phase.SUSPENDED,
        )
        if phase is gw.SandboxPhase.STOPPED:
            return ctx.waiting(
                Phase.SUSPENDED,
                reason,
                f"{why}; the sandbox is stopped",
                events=suspended,
                requeue=None,
            )
        if phase is gw.SandboxPhase.READY:
            return ctx.waiting(
                Phase.SUSPENDED,
                Reason.STOPPING,
                f"{why}; stopping the sandbox",
                action=Action.STOP,
                events=suspended,
            )
        if phase is gw.SandboxPhase.STOPPING:
            return ctx.waiting(
                Phase.SUSPENDED, Reason.STOPPING, f"{why}; stopping the sandbox", events=suspended
            )
        return ctx.waiting(
            Phase.PROVISIONING,
            Reason.STOPPING,
            f"will stop the sandbox once it leaves {phase.value}",
        )
    if phase is gw.SandboxPhase.STOPPED:
        resumed = EventSpec(
            EventType.NORMAL, EventReason.RESUMED, f"starting sandbox {sandbox.name}"
        )
        return ctx.waiting(
            Phase.PROVISIONING,
            Reason.STARTING,
            "not suspended (spec.suspend is false and the session is active); starting the sandbox",
            action=Action.START,
            events=(resumed,) if ctx.old_phase == Phase.SUSPENDED else (),
        )
    if phase is gw.SandboxPhase.STOPPING:
        return ctx.waiting(
            Phase.PROVISIONING,
            Reason.STARTING,
            "waiting for the sandbox to stop before starting it",
        )
    return None


def _ready(ctx: _Ctx, sandbox: gw.Sandbox) -> Plan:
    desired, obs = ctx.desired, ctx.obs
    first = ctx.old_phase != Phase.READY
    events: list[EventSpec] = []
    action, requeue, awaits_slot = Action.NONE, None, False
    reported = ctx.facts.status.get("policy") or {}
    ready = f"sandbox {sandbox.name} is ready"
    if isinstance(desired, PolicyProblem):
        policy = Condition(
            ConditionType.POLICY_APPLIED,
            Status.FALSE,
            desired.reason,
            f"{desired.message}; the sandbox keeps its loaded policy",
        )
        policy_status = ctx.policy_status()
    elif obs.active_revision == desired.revision:
        policy = Condition(
            ConditionType.POLICY_APPLIED,
            Status.TRUE,
            Reason.POLICY_LOADED,
            f"{desired.revision} loaded",
        )
        policy_status = ctx.policy_status(PolicyState.LOADED)
        loaded = (
            f"policy {desired.name} {desired.revision} loaded"
            f" (gateway version {sandbox.current_policy_version})"
        )
        if first:
            # One Event says both: the sandbox is usable and runs the policy asked for.
            ready = f"{ready}; {loaded}"
        elif not ctx.facts.bound and (
            reported.get("revision") != desired.revision
            or reported.get("state") != PolicyState.LOADED
        ):
            events.append(EventSpec(EventType.NORMAL, EventReason.POLICY_APPLIED, loaded))
    else:
        step = next_rollout_step(
            desired_revision=desired.revision,
            static_changes=desired.static_changes,
            latest=obs.latest,
            change=obs.change,
            may_recreate=obs.may_recreate,
            reported=reported,
            refusal=obs.refusal,
        )
        policy = Condition(ConditionType.POLICY_APPLIED, step.status, step.reason, step.message)
        policy_status = ctx.policy_status(step.state, step.message)
        if step.warn:
            events.append(EventSpec(EventType.WARNING, EventReason.POLICY_REJECTED, step.message))
        if step.push:
            action = Action.PUSH_POLICY
        elif step.recreate:
            action = Action.DELETE_SANDBOX
            events.append(EventSpec(EventType.NORMAL, EventReason.RECREATING, step.message))
        awaits_slot = step.awaits_slot
        requeue = 0.0 if action is not Action.NONE else (SOON if step.poll else None)
    # The live parts, one synchronisation per pass: endpoints first, then providers.
    live = (
        (_endpoints(ctx, first), Action.SYNC_PORTS),
        (_providers(ctx, sandbox, first), Action.SYNC_PROVIDERS),
    )
    for part, sync in live:
        events.extend(part.events)
        if action is Action.NONE and part.sync:
            action, requeue = sync, 0.0
        if first and part.failure is not None:
            return ctx.failed(*part.failure)
    live_conditions = tuple(part.condition for part, _ in live)
    claimed = ctx.facts.pool is not None and ctx.facts.pool.sandbox is not None
    waits_for = None
    if claimed and obs.active_revision != getattr(desired, "revision", None):
        # A claimed sandbox runs the pool's baseline: the session is not Ready until its
        # own policy is loaded there.
        waits_for = policy
    else:
        waits_for = next((c for c in live_conditions if c.status is not Status.TRUE), None)
    if first and waits_for is not None:
        return Plan(
            action=action,
            phase=Phase.PROVISIONING,
            conditions=(
                Condition(ConditionType.READY, Status.FALSE, waits_for.reason, waits_for.message),
                ctx.provisioned(Reason.SANDBOX_CREATED, ready),
                policy,
                *live_conditions,
            ),
            policy=policy_status,
            events=tuple(events),
            requeue_after=requeue,
        )
    if first:
        events.insert(0, EventSpec(EventType.NORMAL, EventReason.READY, ready))
    return Plan(
        rollout=action is Action.DELETE_SANDBOX,
        action=action,
        phase=Phase.READY,
        conditions=(
            Condition(
                ConditionType.READY,
                Status.TRUE,
                Reason.SANDBOX_READY,
                f"sandbox {sandbox.name} is ready",
            ),
            ctx.provisioned(Reason.SANDBOX_CREATED, f"sandbox {sandbox.name} is ready"),
            policy,
            *live_conditions,
        ),
        policy=policy_status,
        events=tuple(events),
        requeue_after=requeue,
        awaits_slot=awaits_slot,
    )


@dataclass(frozen=True)
class _Live:
    """A part of a READY sandbox synchronised live (its endpoints, its providers)."""

    condition: Condition
    sync: bool = False
    """It differs from the spec: synchronise it (the part's action)."""
    failure: tuple[Reason, str] | None = None
    """It was refused (just now, or for this generation before)."""
    events: tuple[EventSpec, ...] = ()


def _live(
    ctx: _Ctx,
    first: bool,
    type_: ConditionType,
    *,
    done: tuple[Reason, str] | None,
    pending: tuple[Reason, str],
    refusal: tuple[Reason, str] | None,
    event: EventReason,
) -> _Live:
    """The condition `type_` of a live part: `done` when it matches the spec, else a
    refusal, else `pending` and a synchronisation.

    A refusal that only a change of the session fixes (a permanent reason) is not retried
    for the same generation; a session never Ready with it is Failed, a running one keeps
    running as it was, with a Warning."""
    if done is not None:
        return _Live(Condition(type_, Status.TRUE, *done))
    failure = refusal or _permanent(ctx, type_)
    if failure is not None:
        condition = Condition(type_, Status.FALSE, *failure)
        warn = refusal is not None and not first
        events = (EventSpec(EventType.WARNING, event, failure[1]),)
        return _Live(condition, failure=failure, events=events if warn else ())
    return _Live(Condition(type_, Status.UNKNOWN, *pending), sync=True)


def _endpoints(ctx: _Ctx, first: bool) -> _Live:
    """EndpointsExposed on a READY sandbox, and whether to synchronise its endpoints."""
    facts, obs = ctx.facts, ctx.obs
    names = ", ".join(facts.ports) or "no ports"
    exposed = f"{names} exposed" if facts.ports else "no ports to expose"
    return _live(
        ctx,
        first,
        ConditionType.ENDPOINTS_EXPOSED,
        done=(Reason.PORTS_EXPOSED, exposed) if obs.exposed == facts.ports_digest else None,
        pending=(Reason.EXPOSING, f"exposing {names}"),
        refusal=obs.exposure_failure,
        event=EventReason.ENDPOINT_FAILED,
    )


def _providers(ctx: _Ctx, sandbox: gw.Sandbox, first: bool) -> _Live:
    """ProvidersAttached on a READY sandbox, and whether to attach or detach providers:
    the sandbox's record says what is attached."""
    wanted = ctx.facts.providers
    changes = provider_changes(wanted, sandbox.providers)
    attached = f"{', '.join(wanted)} attached" if wanted else "no providers to attach"
    return _live(
        ctx,
        first,
        ConditionType.PROVIDERS_ATTACHED,
        done=None if changes.attach or changes.detach else (Reason.PROVIDERS_ATTACHED, attached),
        pending=(Reason.ATTACHING_PROVIDERS, changes.describe()),
        refusal=ctx.obs.provider_failure,
        event=EventReason.PROVIDER_FAILED,
    )
