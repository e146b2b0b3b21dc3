"""One reconcile pass of a HelmdeckSession: read the cache, plan, act once, report.

The shell around `core.plan.plan_session`, run by a worker of the controller's queue
whenever something about the session may have changed (its object, its sandbox on the
gateway, its policy, a deadline). It gathers the inputs from memory (the session from
kopf's index, the policy translated once per generation, the sandbox from its gateway's
`Cache`), performs the single action the plan asks for, plans again with the
action's result, writes status only when it changed, posts the Events, and says what it
waits for: a sandbox in transition is `follow`ed (its watch stream wakes the session), a
deadline is returned as a delay, anything else wakes the session when it happens.

The finalizer is the operator's own: added before anything is created, removed once the
gateway confirms the sandbox gone (`finalize`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from opentelemetry.trace import Span

from helmdeck_operator import crashpoints
from helmdeck_operator.config import Port
from helmdeck_operator.core.endpoints import exposures
from helmdeck_operator.core.lifetime import lifetime
from helmdeck_operator.core.naming import (
    ANNOTATION_INITIAL_POLICY,
    ANNOTATION_POOL_FALLBACK,
    FINALIZER,
    copied_labels,
    sandbox_annotations,
    sandbox_labels,
    sandbox_name,
)
from helmdeck_operator.core.plan import (
    ANNOTATION_SHAPE,
    Action,
    DesiredPolicy,
    EventSpec,
    Observed,
    Plan,
    PolicyProblem,
    SessionFacts,
    idle_since,
    plan_session,
)
from helmdeck_operator.core.pool import ClaimRequest
from helmdeck_operator.core.session import (
    SandboxShape,
    SessionMeta,
    SessionSpec,
    ports_digest,
    sandbox_shape,
    session_ports,
)
from helmdeck_operator.core.session_status import owned_by, render_status, terminating_status
from helmdeck_operator.core.tenancy import Ask, Selected, ask_of, over_quota, refusal
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.errors import GatewayAlreadyExists, GatewayError, GatewayInvalid
from helmdeck_operator.kube import KubeConflict, status_changed
from helmdeck_operator.observability.tracing import reconcile_span, trace_id
from helmdeck_operator.reconcile.endpoints import sync_endpoints
from helmdeck_operator.reconcile.observe import observe_sandbox
from helmdeck_operator.reconcile.placement import claimed_sandbox, place, pool_key
from helmdeck_operator.reconcile.providers import sync_providers
from helmdeck_operator.reconcile.workspaces import ensure_workspace, sandbox_workspace
from helmdeck_operator.runtime import PLURALS, Cache, Key, Kind, Runtime
from helmdeck_operator.vocabulary import (
    PERMANENT_REASONS,
    EventReason,
    EventType,
    Phase,
    PolicyState,
    Reason,
)

__all__ = [
    "CONFLICT_RETRY_S",
    "STATUS_SETTLE_S",
    "Outcome",
    "add_finalizer",
    "finalize",
    "reconcile_session",
    "remove_finalizer",
    "resolve_policy",
    "settling",
]

logger = logging.getLogger(__name__)

#: Log lines that count as the sandbox's own activity: what it logs and the network events
#: its proxy reports (OCSF lines come from the sandbox too), not the gateway's own lines.
ACTIVITY_SOURCES = ("sandbox",)
#: After a lost optimistic write (the object changed meanwhile), look again this soon.
CONFLICT_RETRY_S = 0.2
#: A status that only says "waiting on the gateway" is written once it has held this long
#: (or with the next status that does not wait): a sandbox READY with its policy loaded a
#: moment after its create gets one status write, Ready, instead of three. Long enough to
#: cover the queueing of a burst (0.25 s left a fifth of a 1,000-session burst with two).
STATUS_SETTLE_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """What the controller does with the key after a pass."""

    requeue_after: float | None = None
    """Look again after this many seconds whatever happens (an action to take next, a
    deadline); None: only when something about the session changes."""
    failing: bool = False
    """The pass could not do its work (the gateway or the apiserver failed): retry with
    back-off, or when the gateway answers again."""
    gateway: str | None = None
    """The gateway the session lives on, where a failing key waits for recovery."""


@dataclass(frozen=True)
class _Inputs:
    """Everything a pass reads, built once."""

    key: Key
    body: Mapping[str, Any]
    meta: SessionMeta
    spec: SessionSpec
    status: dict[str, Any]
    shape: SandboxShape
    ports: tuple[Port, ...]
    desired: DesiredPolicy | PolicyProblem
    facts: SessionFacts
    workspace: str = ""
    """The gateway workspace of the session's sandbox (reconcile/workspaces.py)."""

    @property
    def policy_key(self) -> tuple[str, str]:
        ref = self.spec.policy_ref
        return (self.meta.namespace, ref.name if ref else f"default/{self.spec.family}")


async def reconcile_session(rt: Runtime, key: Key) -> Outcome:
    """One pass over the session `key`, as stored now."""
    body = rt.session_body(key)
    if body is None:
        return Outcome()  # deleted; the watch's DELETED event already dropped its state
    meta = body["metadata"]
    with reconcile_span("session", key.namespace, key.name, meta["uid"]) as span:
        if meta.get("deletionTimestamp"):
            return await finalize(rt, key, body)
        return await _pass(rt, _inputs(rt, key, body), span)


def _inputs(rt: Runtime, key: Key, body: Mapping[str, Any]) -> _Inputs:
    meta = SessionMeta.from_body(body)
    spec = SessionSpec.model_validate(body.get("spec") or {})
    status = dict(body.get("status") or {})
    defaults = rt.config.families[spec.family]
    shape = sandbox_shape(spec, defaults)
    ports = session_ports(spec, defaults)
    desired = resolve_policy(rt, meta.namespace, spec)
    # All three hash something: once per spec generation is enough.
    digest, name, exposed = rt.derived(
        (meta.uid, meta.generation),
        lambda: (shape.digest, sandbox_name(meta.uid), ports_digest(ports)),
    )
    limit = timedelta(seconds=rt.config.sessions.max_lifetime_seconds)
    ends = lifetime(spec, meta, status, limit, rt.clock())
    facts = SessionFacts(
        uid=meta.uid,
        generation=meta.generation,
        suspend=spec.suspend,
        shape_digest=digest,
        expires_at=ends.expires_at,
        on_expiry=spec.lifetime.on_expiry,
        gateway=rt.session_gateway(spec, status),
        sandbox_name=name,
        on_sandbox_lost=rt.config.on_sandbox_lost,
        status=status,
        bound=spec.policy_ref is not None,
        ports=tuple(p.name for p in ports),
        ports_digest=exposed,
        providers=spec.providers,
        idle_timeout=ends.idle_timeout,
        on_idle=ends.on_idle,
        activity=ends.activity,
        extension=ends.extension,
        extended_to=ends.extended_to,
    )
    return _Inputs(key, body, meta, spec, status, shape, ports, desired, facts)


@dataclass(frozen=True)
class _Decided:
    """What a pass settled on: the plan after its action, and what it saw."""

    facts: SessionFacts
    """As planned with: after the pass's own deletion of the sandbox, its status forgets it
    (an absence we caused is not a loss)."""
    plan: Plan
    obs: Observed


async def _pass(rt: Runtime, inputs: _Inputs, span: Span) -> Outcome:
    """Observe, plan, act once and plan again, then report and say when to look again."""
    cache = rt.caches.get(inputs.facts.gateway)
    inputs = _held(rt, inputs)
    # First: a session that names a pool asks it now, so the answer is on its way while the
    # finalizer is written (a claim for a session deleted meanwhile has no holder: the pool
    # deletes that sandbox). Not one its tenancy rules hold back.
    if inputs.facts.held is None:
        inputs = _placed(rt, cache, inputs)
    if cache is not None:
        where = sandbox_workspace(
            cache, inputs.meta.namespace, inputs.facts.sandbox_name, inputs.status
        )
        inputs = replace(inputs, workspace=where)
    if not await add_finalizer(rt, inputs.key, inputs.body):
        return Outcome(requeue_after=CONFLICT_RETRY_S)
    now = rt.clock()
    obs = await _observe(rt, cache, inputs, now)
    if obs is None:
        return Outcome()  # parked on its gateway until the first listing
    decided = await _decide(rt, cache, inputs, obs, now, span)
    plan, facts = decided.plan, decided.facts
    if decided.obs.sandbox is None and not (inputs.status.get("sandbox") or {}).get("id"):
        # The room `_held` took is given back by a plan that ends without a sandbox (an
        # Expired or Failed session is passed again and again, with nothing to write).
        ns, name = inputs.meta.namespace, inputs.meta.name
        for woken in rt.quota.settled(ns, name, plan.phase):
            rt.queue.add(Key(Kind.SESSION, ns, woken))
    if plan.phase is Phase.FAILED or (
        plan.phase is Phase.READY and plan.policy.get("state") == PolicyState.LOADED
    ):
        for waiter in rt.rollouts.release(inputs.meta.uid):
            rt.queue.add(waiter)
    if plan.awaits_slot:
        rt.rollouts.wait(inputs.policy_key, inputs.key)
    waits = plan.requeue_after is not None and plan.requeue_after > 0 and not plan.awaits_slot
    settle = await _report(rt, cache, inputs, decided, waits, now, span)
    if cache is not None:
        if waits and decided.obs.sandbox is not None:
            cache.follow(inputs.workspace, facts.sandbox_name)  # its watch wakes us when it moves
        else:
            cache.unfollow(inputs.workspace, facts.sandbox_name)
    if decided.obs.error is not None:
        return Outcome(failing=True, gateway=facts.gateway)
    if plan.requeue_after == 0:
        return Outcome(requeue_after=0.0)  # another action is due at once
    if settle is not None:
        return Outcome(requeue_after=settle)
    # The next deadline: expiry, or going idle (one already passed is acted on, not awaited).
    ends = [facts.expires_at] if plan.phase is not Phase.EXPIRED else []
    deadlines = [t for t in (*ends, plan.idle_at) if t is not None and t > now]
    if deadlines:
        return Outcome(requeue_after=(min(deadlines) - now).total_seconds())
    return Outcome()


def _held(rt: Runtime, inputs: _Inputs) -> _Inputs:
    """For a session without a sandbox: whether its namespace's tenancy rules let it have
    one (core/tenancy.py). If they do, its room in the namespace's totals is taken now, in
    the same step as the check (no await between), so two sessions never both take the last
    room; otherwise it is held back and woken when room frees or the rules change."""
    if (inputs.status.get("sandbox") or {}).get("id"):
        return inputs
    ns, name = inputs.meta.namespace, inputs.meta.name
    rt.quota.build(rt.store.sessions)  # once, at the first pass after a start
    selected = rt.store.tenancy(ns)
    ask = _ask(inputs)
    refused = refusal(selected, ask)
    waiting = (
        over_quota(selected, rt.quota.usage(ns, name), ask)
        if refused is None and isinstance(selected, Selected)
        else None
    )
    if refused is None and waiting is None:
        rt.quota.take(ns, name, ask)
        return inputs
    held = (
        (Reason.TENANCY_REFUSED, refused)
        if refused is not None
        else (Reason.QUOTA_EXCEEDED, str(waiting))
    )
    rt.quota.hold_back(ns, name)
    return replace(inputs, facts=replace(inputs.facts, held=held))


def _placed(rt: Runtime, cache: Cache | None, inputs: _Inputs) -> _Inputs:
    """The inputs with the session's pool answer, and the sandbox it gives (placement.py)."""
    if inputs.spec.pool_ref is None:
        return inputs
    facts, spec = inputs.facts, inputs.spec
    known = cache is not None and cache.up and cache.synced.is_set()
    request = ClaimRequest(
        uid=facts.uid,
        session=inputs.meta.name,
        family=spec.family,
        gateway=facts.gateway,
        shape_digest=facts.shape_digest,
    )
    placement = place(
        rt,
        cache if known else None,
        inputs.key,
        inputs.meta,
        spec,
        inputs.status,
        inputs.desired,
        request,
    )
    name = placement.sandbox if placement is not None and placement.sandbox else None
    facts = replace(facts, pool=placement, sandbox_name=name or facts.sandbox_name)
    return replace(inputs, facts=facts)


async def _observe(
    rt: Runtime, cache: Cache | None, inputs: _Inputs, now: datetime
) -> Observed | None:
    """What the gateway says of the session's sandbox now, from its cache; None when the
    gateway has not been listed yet (the key is parked: nothing is decided before that)."""
    facts = inputs.facts
    if cache is None:
        # The other gateways' names are the platform's business, not every tenant's.
        return Observed(
            failure=(
                Reason.GATEWAY_NOT_CONFIGURED,
                f"gateway {facts.gateway!r} is not configured for this operator",
            )
        )
    if not cache.up:
        error = cache.error
        return Observed(
            error=str(error) if error else "the gateway does not answer",
            error_reason=error.reason if error else Reason.GATEWAY_UNAVAILABLE,
        )
    if not cache.synced.is_set():
        cache.park(inputs.key)
        return None
    uid, desired = inputs.meta.uid, inputs.desired
    obs = await observe_sandbox(
        rt, cache, inputs.workspace, facts.sandbox_name, uid, desired, inputs.status
    )
    if isinstance(desired, DesiredPolicy):
        room = rt.rollouts.may_recreate(inputs.policy_key, uid, desired.max_unavailable)
        obs = replace(obs, may_recreate=room)
    return await _last_look(cache, facts, obs, now)


async def _last_look(cache: Cache, facts: SessionFacts, obs: Observed, now: datetime) -> Observed:
    """A running session whose idle clock ran out: did its sandbox do anything since (a
    log line or a network event)? Asked only then, one call, so an idle session costs one
    call per idle window and a busy one is never cut off by a stale clock."""
    sandbox = obs.sandbox
    if (
        idle_since(facts, facts.activity, now) is None
        or sandbox is None
        or sandbox.phase is not models.SandboxPhase.READY
        or obs.error is not None
    ):
        return obs
    try:
        lines = await cache.client.get_sandbox_logs(
            sandbox.name,
            lines=1,
            sources=ACTIVITY_SOURCES,
            since=facts.activity,
            workspace=sandbox.workspace,
        )
    except GatewayError as err:
        cache.report(err)
        return replace(obs, error=str(err), error_reason=err.reason)
    seen = [line.time for line in lines if line.time is not None]
    return replace(obs, activity=min(max(seen), now)) if seen else obs


async def _decide(
    rt: Runtime, cache: Cache | None, inputs: _Inputs, obs: Observed, now: datetime, span: Span
) -> _Decided:
    """Plan, take the plan's one action, and plan again with its result."""
    facts = inputs.facts
    plan = plan_session(facts, inputs.desired, obs, now)
    span.set_attribute("helmdeck.action", plan.action.value)  # what this pass set out to do
    if plan.action is Action.NONE or cache is None:
        return _Decided(facts, plan, obs)
    acted = await _act(rt, cache, plan, inputs, obs)
    if acted is None:
        return _Decided(facts, plan, obs)
    events = plan.events
    made = acted.sandbox
    if plan.action is Action.CREATE and made is not None and owned_by(made, facts.uid):
        crashpoints.reached(crashpoints.AFTER_CREATE)
        created = f"sandbox {made.name} created on gateway {facts.gateway}"
        events += (EventSpec(EventType.NORMAL, EventReason.PROVISIONED, created),)
    if plan.action is Action.DELETE_SANDBOX and acted.error is None:
        facts = replace(facts, status={**inputs.status, "sandbox": {"gateway": facts.gateway}})
    replanned = plan_session(facts, inputs.desired, acted, now)
    return _Decided(
        facts, replace(replanned, events=_merge_events(events, replanned.events)), acted
    )


async def _report(
    rt: Runtime,
    cache: Cache | None,
    inputs: _Inputs,
    decided: _Decided,
    waits: bool,
    now: datetime,
    span: Span,
) -> float | None:
    """Write the status if it changed (unless it is held to settle: the seconds left),
    post the Events, delete the session when the plan says so, record metrics."""
    facts, plan, obs = decided.facts, decided.plan, decided.obs
    key, old = inputs.key, inputs.status
    span.set_attribute("openshell.sandbox.name", facts.sandbox_name)
    if obs.sandbox is not None and owned_by(obs.sandbox, facts.uid):
        span.set_attribute("openshell.sandbox.id", obs.sandbox.id)
    span.set_attribute("helmdeck.session.phase", plan.phase.value)

    new_status = render_status(facts, plan, obs, old, inputs.workspace, now)
    # Only "still waiting on the gateway" (or on the pool) may settle: no action left to
    # take, and either pending, provisioning or the phase unchanged (a new phase, Expired or
    # Suspended, shows at once).
    transient = (
        waits
        and plan.action is Action.NONE
        and (
            plan.phase in (Phase.PENDING, Phase.PROVISIONING)
            or plan.phase.value == old.get("phase")
        )
    )
    settle = None
    if status_changed(old, new_status):
        settle = settling(rt, key, plan.events) if transient else None
        if settle is None:
            # The trace of the pass that last changed something, to jump from kubectl to it.
            new_status["lastTraceId"] = trace_id(span) or old.get("lastTraceId")
            await rt.write_status(key, new_status)
    if settle is None:
        held = rt.settling.pop(key, (0.0, ()))[1]
        rt.post(Kind.SESSION, inputs.body, _merge_events(held, plan.events))
    if plan.action is Action.DELETE_SESSION:
        await rt.kube.delete_session(inputs.meta.namespace, inputs.meta.name)
    _record(rt, inputs, decided, now)
    return settle


def settling(
    rt: Runtime, key: Key, events: tuple[EventSpec, ...] = (), window: float | None = None
) -> float | None:
    """Hold back a status that only says "waiting" for up to `window` (STATUS_SETTLE_S):
    seconds left (its Events kept for the write), or None when it has held long enough to
    be written. The writer pops `rt.settling[key]` when it writes."""
    clock = time.monotonic()
    since, held = rt.settling.get(key, (clock, ()))
    left = (STATUS_SETTLE_S if window is None else window) - (clock - since)
    if left <= 0:
        return None
    rt.settling[key] = (since, _merge_events(held, events))
    return left


async def add_finalizer(rt: Runtime, key: Key, body: Mapping[str, Any]) -> bool:
    """Add the finalizer (a session's or a pool's) before anything is created: True once it
    is there, False when the write lost a race (the object changed; its new version is on
    the way)."""
    meta = body["metadata"]
    current = list(meta.get("finalizers") or [])
    if FINALIZER in current:
        return True
    try:
        written = await rt.kube.add_finalizer(
            PLURALS[key.kind], key.namespace, key.name, current, meta["resourceVersion"]
        )
    except KubeConflict:
        return False
    rt.wrote(key, written, {"metadata": {"finalizers": [*current, FINALIZER]}})
    return written is not None


async def remove_finalizer(rt: Runtime, key: Key, current: list[str]) -> bool:
    """Release the object (its sandboxes are gone); False when the write lost a race."""
    try:
        written = await rt.kube.remove_finalizer(
            PLURALS[key.kind], key.namespace, key.name, current
        )
    except KubeConflict:
        return False
    rt.wrote(key, written, {"metadata": {"finalizers": [f for f in current if f != FINALIZER]}})
    return True


def _record(rt: Runtime, inputs: _Inputs, decided: _Decided, now: datetime) -> None:
    metrics, meta, spec = rt.metrics, inputs.meta, inputs.spec
    plan, obs, gateway = decided.plan, decided.obs, inputs.facts.gateway
    metrics.record_session(meta.uid, plan.phase.value, spec.family, gateway)
    pool = inputs.facts.pool
    # Counted once: when the status says it, the answer held in memory goes.
    recorded = (inputs.status.get("pool") or {}).get("fallback")
    held = rt.pools.refusals.pop(meta.uid, None) if recorded else None
    if pool is not None and pool.fallback is not None and held is not None:
        metrics.record_fallback(spec.family, pool.fallback.value)
    if plan.phase is Phase.READY and not inputs.status.get("readyAt"):
        metrics.record_ready(spec.family, gateway, (now - meta.created_at).total_seconds())
        asked = rt.pools.asked_at.pop(meta.uid, None)
        if asked is not None and pool is not None and pool.sandbox is not None:
            metrics.record_claim(spec.family, time.monotonic() - asked)
    if any(e.reason is EventReason.EXPIRED for e in plan.events):
        metrics.record_expiry(spec.family, spec.lifetime.on_expiry)
    if any(e.reason is EventReason.IDLE for e in plan.events):
        metrics.record_idle(spec.family, spec.lifetime.on_idle)
    if obs.error is not None:
        metrics.record_error("HelmdeckSession", obs.error_reason)
    elif obs.failure is not None:
        metrics.record_error("HelmdeckSession", obs.failure[0])


def resolve_policy(rt: Runtime, namespace: str, spec: SessionSpec) -> DesiredPolicy | PolicyProblem:
    """The policy the session should run: its policyRef, or its family's default."""
    if spec.policy_ref is None:
        return rt.family_policies[spec.family]
    name = spec.policy_ref.name
    body = rt.store.policy(namespace, name)
    if body is None:
        return PolicyProblem(
            name,
            Reason.POLICY_NOT_FOUND,
            f"SidecarPolicy {namespace}/{name} does not exist; waiting for it",
        )
    return rt.translate(namespace, body)


async def _act(
    rt: Runtime, cache: Cache, plan: Plan, inputs: _Inputs, obs: Observed
) -> Observed | None:
    """Perform the plan's action; the observation as it stands afterwards (None: nothing
    to re-plan). Every answer is recorded in the cache, so the next pass sees it."""
    client, action = cache.client, plan.action
    workspace, name = inputs.workspace, inputs.facts.sandbox_name
    try:
        async with rt.mutation_slots[client.name]:
            if action is Action.CREATE:
                assert isinstance(inputs.desired, DesiredPolicy)
                made = await _create(rt, cache, inputs, inputs.desired)
                return replace(obs, sandbox=made)
            if action is Action.PUSH_POLICY:
                assert isinstance(inputs.desired, DesiredPolicy)
                try:
                    pushed = await client.update_policy(
                        name, inputs.desired.policy, workspace=workspace
                    )
                except GatewayInvalid as err:
                    return replace(obs, refusal=err.message)
                cache.put_revision(workspace, name, pushed)
                crashpoints.reached(crashpoints.MID_FANOUT)
                return replace(obs, latest=pushed)
            if action is Action.SYNC_PORTS:
                assert obs.sandbox is not None
                try:
                    urls = await sync_endpoints(cache, workspace, name, inputs.ports)
                except GatewayError as err:
                    if err.reason not in PERMANENT_REASONS:
                        raise
                    return replace(obs, exposure_failure=(err.reason, _refused(err, "ports")))
                sandbox = replace(obs.sandbox, service_urls=dict(urls))
                return replace(obs, sandbox=sandbox, exposed=inputs.facts.ports_digest)
            if action is Action.SYNC_PROVIDERS:
                assert obs.sandbox is not None
                refused = _providers_refused(rt, inputs)
                if refused is not None:
                    return replace(obs, provider_failure=(Reason.TENANCY_REFUSED, refused))
                try:
                    synced = await sync_providers(cache, obs.sandbox, inputs.facts.providers)
                except GatewayError as err:
                    if err.reason not in PERMANENT_REASONS:
                        raise
                    failure = (err.reason, _refused(err, "providers"))
                    return replace(obs, provider_failure=failure)
                # The gateway's answers carry no endpoint URLs: the ones known stay.
                sandbox = replace(synced, service_urls=obs.sandbox.service_urls)
                return replace(obs, sandbox=sandbox)
            if action is Action.STOP:
                stopped = await client.stop_sandbox(name, workspace=workspace)
                cache.put(stopped)
                return replace(obs, sandbox=stopped)
            if action is Action.START:
                started = await client.start_sandbox(name, workspace=workspace)
                cache.put(started)
                return replace(obs, sandbox=started)
            if action is Action.DELETE_SANDBOX:
                if plan.rollout:
                    rt.rollouts.take(inputs.policy_key, inputs.meta.uid)
                outcome = await client.delete_sandbox(name, workspace=workspace)
                if outcome.gone or obs.sandbox is None:
                    cache.drop(workspace, name)
                    return replace(obs, sandbox=None)
                cache.mark_deleting(workspace, name)
                return replace(obs, sandbox=replace(obs.sandbox, deleting=True))
    except GatewayError as err:
        if action is Action.CREATE and err.reason in PERMANENT_REASONS:
            # The request itself is wrong for this gateway (a bad value, an unknown
            # provider): no retry fixes it. To other calls the same codes can be a race
            # with a phase change, so there they are retried.
            return replace(obs, failure=(err.reason, err.message))
        cache.report(err)
        return replace(obs, error=f"{action.value}: {err}", error_reason=err.reason)
    return None


def _providers_refused(rt: Runtime, inputs: _Inputs) -> str | None:
    """Why the namespace's tenancy rules refuse a provider the spec names. Checked before
    attaching on a live sandbox as before a create: admission may have been bypassed. Not
    a permanent refusal: a later pass (the rules changed) checks again."""
    return refusal(rt.store.tenancy(inputs.meta.namespace), _ask(inputs), only="spec.providers")


def _ask(inputs: _Inputs) -> Ask:
    """What the session asks of its namespace's tenancy rules."""
    return ask_of(inputs.spec, inputs.shape, inputs.facts.gateway, len(inputs.ports))


def _refused(err: GatewayError, what: str) -> str:
    return f"the gateway refused the {what} ({err.reason}): {err.message}"


async def _create(
    rt: Runtime, cache: Cache, inputs: _Inputs, desired: DesiredPolicy
) -> models.Sandbox:
    meta, shape, client = inputs.meta, inputs.shape, cache.client
    workspace, name = inputs.workspace, inputs.facts.sandbox_name
    await ensure_workspace(rt, cache, workspace, meta.namespace)
    labels = sandbox_labels(
        session_uid=meta.uid,
        family=inputs.spec.family,
        instance=rt.config.instance,
        copied=copied_labels(inputs.body, rt.config.sessions.copy_labels),
    )
    annotations = {
        **sandbox_annotations(namespace=meta.namespace, name=meta.name),
        ANNOTATION_SHAPE: shape.digest,
        ANNOTATION_INITIAL_POLICY: desired.revision,
    }
    pool = inputs.facts.pool
    if pool is not None and pool.fallback is not None:
        annotations[ANNOTATION_POOL_FALLBACK] = pool.fallback.value
    try:
        made = await client.create_sandbox(
            name,
            shape.sandbox_spec(),
            policy=desired.policy,
            labels=labels,
            annotations=annotations,
            exposures=exposures(inputs.ports),
            workspace=workspace,
        )
    except GatewayAlreadyExists:
        # A create whose response was lost, or a restart after create and before the status
        # write: the name is ours by construction, so adopt it if its UID label agrees.
        # A foreign one is returned too: the plan's ownership rule reports the conflict.
        # (Its endpoints are not in this answer: the next pass lists them.)
        existing = await client.get_sandbox(name, workspace=workspace)
        if existing is None:
            raise
        cache.put(existing)
        return existing
    cache.put(made)
    cache.put_services(workspace, name, made.service_urls, inputs.facts.ports_digest)
    return made


def _merge_events(
    first: tuple[EventSpec, ...], then: tuple[EventSpec, ...]
) -> tuple[EventSpec, ...]:
    seen = {e.reason for e in first}
    return first + tuple(e for e in then if e.reason not in seen)


# -- deletion ------------------------------------------------------------------------------


async def finalize(rt: Runtime, key: Key, body: Mapping[str, Any]) -> Outcome:
    """The session is being deleted: delete its sandbox, then release the object."""
    meta = body["metadata"]
    current = list(meta.get("finalizers") or [])
    if FINALIZER not in current:
        return Outcome()  # released already (or never ours to hold)
    for waiter in rt.rollouts.release(meta["uid"]):
        rt.queue.add(waiter)
    spec = SessionSpec.model_validate(body.get("spec") or {})
    status = dict(body.get("status") or {})
    gateway = rt.session_gateway(spec, status)
    cache = rt.caches.get(gateway)
    own = sandbox_name(meta["uid"])
    claimed = claimed_sandbox(rt, SessionMeta.from_body(body), spec, status)
    name = claimed or own
    workspace = sandbox_workspace(cache, key.namespace, name, status) if cache else ""
    waiting, failing = await _delete_sandbox(rt, cache, gateway, workspace, name, status)
    own_workspace = sandbox_workspace(cache, key.namespace, own, {}) if cache else ""
    if waiting is None and claimed and cache is not None and cache.get(own_workspace, own):
        # Both exist only after a leader handover raced a cold create with a claim.
        waiting, failing = await _delete_sandbox(rt, cache, gateway, own_workspace, own, status)
    if waiting is None:
        if cache is not None:
            cache.unfollow(workspace, name)
        if not await remove_finalizer(rt, key, current):
            return Outcome(requeue_after=CONFLICT_RETRY_S)
        pool = pool_key(key.namespace, spec)
        if pool is not None:
            rt.queue.add(pool)  # its claim goes once the sandbox is gone
        return Outcome()
    terminating = terminating_status(status, waiting, int(meta.get("generation", 1)), rt.clock())
    if status_changed(status, terminating):
        await rt.write_status(key, terminating)
    if failing:
        return Outcome(failing=True, gateway=gateway)
    if cache is not None:
        cache.follow(workspace, name)  # its stream ends when the gateway removes it
    return Outcome()


async def _delete_sandbox(
    rt: Runtime,
    cache: Cache | None,
    gateway: str,
    workspace: str,
    name: str,
    status: Mapping[str, Any],
) -> tuple[str | None, bool]:
    """Delete the session's sandbox: (None, _) once it is gone, else (why we wait, failing)."""
    if cache is None:
        if not (status.get("sandbox") or {}).get("id"):
            return None, False  # nothing was ever created there
        return (
            f"sandbox {name} lives on gateway {gateway!r}, which is no longer configured: "
            "restore it in the operator configuration so the sandbox can be deleted, or "
            f"remove the finalizer {FINALIZER} to abandon the sandbox",
            True,
        )
    try:
        async with rt.mutation_slots[gateway]:
            outcome = await cache.client.delete_sandbox(name, workspace=workspace)
        crashpoints.reached(crashpoints.AFTER_DELETE)
    except GatewayError as err:
        cache.report(err)
        return f"cannot delete sandbox {name} yet ({err.reason}): {err}", True
    cache.deleted(workspace, name, outcome.gone)
    if outcome.gone:
        return None, False
    return f"sandbox {name} is being deleted by the gateway", False
