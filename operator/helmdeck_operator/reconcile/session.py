"""One reconcile pass of a HelmdeckSession: observe the gateway, plan, act once, report.

The shell around `core.plan.plan_session`: it gathers the inputs (the session object, the
policy it should run, what the gateway says), performs the single action the plan asks for,
plans again with the action's result, writes status when it changed and posts the Events.
It returns when to look again. `delete_sandbox_for` is the finalizer's half.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from opentelemetry.trace import Span

from helmdeck_operator import crashpoints
from helmdeck_operator.core.conditions import format_time, merge_conditions
from helmdeck_operator.core.naming import (
    FINALIZER,
    LABEL_SESSION_UID,
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
    Phase,
    Plan,
    PolicyProblem,
    SessionFacts,
    desired_policy,
    plan_session,
)
from helmdeck_operator.core.session import (
    SandboxShape,
    SessionMeta,
    SessionSpec,
    expires_at,
    sandbox_shape,
)
from helmdeck_operator.gateway import GatewayClient, models
from helmdeck_operator.gateway.errors import (
    GatewayAlreadyExists,
    GatewayError,
    GatewayInvalid,
    GatewayPreconditionFailed,
)
from helmdeck_operator.kube import SESSIONS, status_changed
from helmdeck_operator.observability.tracing import reconcile_span, trace_id
from helmdeck_operator.policy.classify import classify_change
from helmdeck_operator.policy.errors import PolicyValidationError
from helmdeck_operator.runtime import Runtime

__all__ = ["Outcome", "delete_sandbox_for", "reconcile_session"]

logger = logging.getLogger(__name__)

#: Longest wait between attempts while the gateway keeps failing.
MAX_ERROR_BACKOFF = 60.0
#: Errors that no retry fixes when the gateway answers them to a create: the request
#: itself is wrong for this gateway (a bad value, an unknown provider). To other calls the
#: same codes can be a race with a phase change, so there they are retried.
_CREATE_REFUSALS = (GatewayInvalid, GatewayPreconditionFailed)


@dataclass(frozen=True)
class Outcome:
    """What a pass did: the plan carried out, when to look again, the Events to post."""

    plan: Plan
    requeue_after: float
    events: tuple[EventSpec, ...]
    failing: bool
    """The gateway could not be reached or refused transiently; the caller backs off."""


async def reconcile_session(
    rt: Runtime, body: Mapping[str, Any], policy_spec: Mapping[str, Any] | None, errors: int = 0
) -> Outcome:
    """Observe, plan, act and report once. `errors` counts consecutive failed passes."""
    meta = body["metadata"]
    with reconcile_span("session", meta["namespace"], meta["name"], meta["uid"]) as span:
        return await _pass(rt, body, policy_spec, errors, span)


async def _pass(
    rt: Runtime,
    body: Mapping[str, Any],
    policy_spec: Mapping[str, Any] | None,
    errors: int,
    span: Span,
) -> Outcome:
    meta = SessionMeta.from_body(body)
    spec = SessionSpec.model_validate(body.get("spec") or {})
    status = dict(body.get("status") or {})
    now = rt.clock()
    defaults = rt.config.families[spec.family]
    shape = sandbox_shape(spec, defaults)
    gateway_name = session_gateway(rt, spec, status)
    desired = resolve_policy(rt, meta.namespace, spec, policy_spec)
    facts = SessionFacts(
        uid=meta.uid,
        generation=meta.generation,
        suspend=spec.suspend,
        shape_digest=shape.digest,
        expires_at=expires_at(spec, meta),
        on_expiry=spec.lifetime.on_expiry,
        gateway=gateway_name,
        sandbox_name=sandbox_name(meta.uid),
        on_sandbox_lost=rt.config.on_sandbox_lost,
        status=status,
    )
    client = rt.gateways.get(gateway_name)
    policy_key = _policy_key(meta.namespace, spec)
    if client is None:
        configured = ", ".join(sorted(rt.gateways))
        obs = Observed(
            failure=(
                "GatewayNotConfigured",
                f"gateway {gateway_name!r} is not configured; configured gateways: {configured}",
            )
        )
    else:
        obs = await _observe(client, facts.sandbox_name, desired)
        if isinstance(desired, DesiredPolicy):
            obs = replace(
                obs,
                may_recreate=rt.rollouts.may_recreate(
                    policy_key, meta.uid, desired.max_unavailable
                ),
            )

    plan = plan_session(facts, desired, obs, now)
    span.set_attribute("helmdeck.action", plan.action.value)  # what this pass set out to do
    events = plan.events
    if plan.action is not Action.NONE and client is not None:
        acted = await _act(
            rt,
            client,
            plan.action,
            meta,
            spec,
            shape,
            facts,
            desired,
            obs,
            policy_key,
            plan.rollout,
        )
        if acted is not None:
            made = acted.sandbox
            if plan.action is Action.CREATE and made is not None and _ours(made, meta.uid):
                crashpoints.reached(crashpoints.AFTER_CREATE)
                created = f"sandbox {made.name} created on gateway {gateway_name}"
                events += (EventSpec("Normal", "Provisioned", created),)
            if plan.action is Action.DELETE_SANDBOX and acted.error is None:
                # Our own deletion: its absence later is not a loss.
                facts = replace(facts, status={**status, "sandbox": {"gateway": gateway_name}})
            obs = acted
            replanned = plan_session(facts, desired, obs, now)
            events = _merge_events(events, replanned.events)
            plan = replace(replanned, events=events)
    if plan.phase is Phase.FAILED or (
        plan.phase is Phase.READY and plan.policy.get("state") == "Loaded"
    ):
        rt.rollouts.release(meta.uid)

    span.set_attribute("openshell.sandbox.name", facts.sandbox_name)
    if obs.sandbox is not None and _ours(obs.sandbox, meta.uid):
        span.set_attribute("openshell.sandbox.id", obs.sandbox.id)
    span.set_attribute("helmdeck.session.phase", plan.phase.value)

    new_status = render_status(facts, plan, obs, gateway_name, client, status, now)
    if status_changed(status, new_status):
        # The trace of the pass that last changed something, to jump from kubectl to it.
        new_status["lastTraceId"] = trace_id(span) or status.get("lastTraceId")
        await rt.kube.patch_status(SESSIONS, meta.namespace, meta.name, new_status)
    if plan.action is Action.DELETE_SESSION:
        await rt.kube.delete_session(meta.namespace, meta.name)

    failing = obs.error is not None
    _record(rt, meta, spec, gateway_name, plan, events, status, obs, now)
    return Outcome(plan, _next_wait(rt, plan, failing, errors), events, failing)


def _record(
    rt: Runtime,
    meta: SessionMeta,
    spec: SessionSpec,
    gateway: str,
    plan: Plan,
    events: tuple[EventSpec, ...],
    old: Mapping[str, Any],
    obs: Observed,
    now: datetime,
) -> None:
    metrics = rt.metrics
    metrics.record_session(meta.uid, plan.phase.value, spec.family, gateway)
    if plan.phase is Phase.READY and not old.get("readyAt"):
        metrics.record_ready(spec.family, gateway, (now - meta.created_at).total_seconds())
    if any(e.reason == "Expired" for e in events):
        metrics.record_expiry(spec.family, spec.lifetime.on_expiry)
    if obs.error is not None:
        metrics.record_error("HelmdeckSession", obs.error_reason)
    elif obs.failure is not None:
        metrics.record_error("HelmdeckSession", obs.failure[0])


def session_gateway(rt: Runtime, spec: SessionSpec, status: Mapping[str, Any]) -> str:
    """The session's gateway: as named, else the one its sandbox was created on, else the
    configured default. Pinning to the recorded one means a later change of the default
    never moves a running session (and never leaves its first sandbox behind)."""
    recorded = (status.get("sandbox") or {}).get("gateway")
    return spec.gateway or recorded or rt.config.default_gateway


def resolve_policy(
    rt: Runtime, namespace: str, spec: SessionSpec, policy_spec: Mapping[str, Any] | None
) -> DesiredPolicy | PolicyProblem:
    """The policy the session should run: its policyRef, or its family's default."""
    if spec.policy_ref is None:
        return rt.family_policies[spec.family]
    name = spec.policy_ref.name
    if policy_spec is None:
        return PolicyProblem(
            name,
            "PolicyNotFound",
            f"SidecarPolicy {namespace}/{name} does not exist; waiting for it",
        )
    try:
        return desired_policy(name, policy_spec)
    except PolicyValidationError as err:
        return PolicyProblem(name, "PolicyInvalid", f"SidecarPolicy {name}: {err}")


def _policy_key(namespace: str, spec: SessionSpec) -> tuple[str, str]:
    return (namespace, spec.policy_ref.name if spec.policy_ref else f"default/{spec.family}")


async def _observe(
    client: GatewayClient, name: str, desired: DesiredPolicy | PolicyProblem
) -> Observed:
    try:
        sandbox = await client.get_sandbox(name)
        if sandbox is None:
            return Observed()
        status = await client.get_policy_status(name)
        if status is None:
            return Observed(sandbox=sandbox)
        latest = status.revision
        active_hash = ""
        if status.active_version == latest.version:
            active_hash = latest.hash if latest.status is models.PolicyLoadState.LOADED else ""
        elif status.active_version:
            active = await client.get_policy_status(name, status.active_version)
            active_hash = active.revision.hash if active is not None else ""
        obs = Observed(
            sandbox=sandbox,
            active_revision=f"sha256:{active_hash}" if active_hash else None,
            latest=latest,
        )
        if (
            isinstance(desired, DesiredPolicy)
            and obs.active_revision not in (None, desired.revision)
            and latest.hash != desired.revision.removeprefix("sha256:")
        ):
            # Live-change rules compare with the policy the sandbox started with (version 1).
            baseline = await client.get_policy_status(name, 1)
            if baseline is not None and baseline.revision.policy is not None:
                obs = replace(obs, change=classify_change(baseline.revision.policy, desired.policy))
        return obs
    except GatewayError as err:
        return Observed(error=str(err), error_reason=err.reason)


async def _act(
    rt: Runtime,
    client: GatewayClient,
    action: Action,
    meta: SessionMeta,
    spec: SessionSpec,
    shape: SandboxShape,
    facts: SessionFacts,
    desired: DesiredPolicy | PolicyProblem,
    obs: Observed,
    policy_key: tuple[str, str],
    rollout: bool,
) -> Observed | None:
    """Perform `action`; the observation as it stands afterwards (None: nothing to re-plan)."""
    name = facts.sandbox_name
    try:
        async with rt.mutation_slots[client.name]:
            if action is Action.CREATE:
                assert isinstance(desired, DesiredPolicy)
                return replace(obs, sandbox=await _create(rt, client, meta, spec, shape, desired))
            if action is Action.PUSH_POLICY:
                assert isinstance(desired, DesiredPolicy)
                try:
                    pushed = await client.update_policy(name, desired.policy)
                except GatewayInvalid as err:
                    return replace(obs, refusal=err.message)
                crashpoints.reached(crashpoints.MID_FANOUT)
                return replace(obs, latest=pushed)
            if action is Action.STOP:
                return replace(obs, sandbox=await client.stop_sandbox(name))
            if action is Action.START:
                return replace(obs, sandbox=await client.start_sandbox(name))
            if action is Action.DELETE_SANDBOX:
                if rollout:
                    rt.rollouts.take(policy_key, meta.uid)
                outcome = await client.delete_sandbox(name)
                if outcome.gone or obs.sandbox is None:
                    return replace(obs, sandbox=None)
                return replace(obs, sandbox=replace(obs.sandbox, deleting=True))
    except _CREATE_REFUSALS as err:
        if action is not Action.CREATE:
            return replace(obs, error=f"{action.value}: {err}", error_reason=err.reason)
        return replace(obs, failure=(err.reason, err.message))
    except GatewayError as err:
        return replace(obs, error=f"{action.value}: {err}", error_reason=err.reason)
    return None


async def _create(
    rt: Runtime,
    client: GatewayClient,
    meta: SessionMeta,
    spec: SessionSpec,
    shape: SandboxShape,
    desired: DesiredPolicy,
) -> models.Sandbox:
    name = sandbox_name(meta.uid)
    labels = sandbox_labels(session_uid=meta.uid, family=spec.family, instance=rt.config.instance)
    annotations = {
        **sandbox_annotations(namespace=meta.namespace, name=meta.name),
        ANNOTATION_SHAPE: shape.digest,
    }
    sandbox_spec = models.SandboxSpec(
        image=shape.image,
        command=shape.command,
        env=dict(shape.env),
        resources={"limits": {"cpu": shape.cpu, "memory": shape.memory}},
        gpu=shape.gpu,
        providers=shape.providers,
    )
    try:
        return await client.create_sandbox(
            name, sandbox_spec, policy=desired.policy, labels=labels, annotations=annotations
        )
    except GatewayAlreadyExists:
        # A create whose response was lost, or a restart after create and before the status
        # write: the name is ours by construction, so adopt it if its UID label agrees.
        # A foreign one is returned too: the plan's ownership rule reports the conflict.
        existing = await client.get_sandbox(name)
        if existing is None:
            raise
        return existing


def _ours(sandbox: models.Sandbox | None, uid: str) -> bool:
    """A sandbox of this session (or one without an owner label, created under its name)."""
    return sandbox is not None and sandbox.labels.get(LABEL_SESSION_UID, uid) == uid


def _merge_events(
    first: tuple[EventSpec, ...], then: tuple[EventSpec, ...]
) -> tuple[EventSpec, ...]:
    seen = {e.reason for e in first}
    return first + tuple(e for e in then if e.reason not in seen)


def _next_wait(rt: Runtime, plan: Plan, failing: bool, errors: int) -> float:
    """Resync when settled, at once after an action, `pending_seconds` while waiting on the
    gateway, and with jittered exponential back-off while the gateway keeps failing."""
    intervals = rt.config.intervals
    if failing:
        ceiling = min(MAX_ERROR_BACKOFF, intervals.pending_seconds * 2 ** min(errors, 10))
        return random.uniform(ceiling / 2, ceiling)  # jitter, not security
    if plan.requeue_after is None:
        return intervals.resync_seconds
    return 0.0 if plan.requeue_after <= 0 else intervals.pending_seconds


def render_status(
    facts: SessionFacts,
    plan: Plan,
    obs: Observed,
    gateway: str,
    client: GatewayClient | None,
    old: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The status to write; keys we no longer report are sent as null (merge-patch removal)."""
    sandbox = obs.sandbox
    status: dict[str, Any] = {
        "phase": plan.phase.value,
        "observedGeneration": facts.generation,
        "conditions": merge_conditions(
            old.get("conditions", []), plan.conditions, generation=facts.generation, now=now
        ),
        "policy": plan.policy,
    }
    if not _ours(sandbox, facts.uid):
        sandbox = None  # another session's sandbox (a name conflict): never show its details
    if obs.error is not None:
        # Unreachable: what we knew about the sandbox stays as it was.
        for key in ("sandbox", "endpoints"):
            if key in old:
                status[key] = old[key]
    elif sandbox is None:
        # Recorded even without a sandbox: the session stays on this gateway (session_gateway).
        status["sandbox"] = {"gateway": gateway}
    else:
        status["sandbox"] = {
            "name": sandbox.name,
            "gateway": gateway,
            "workspace": sandbox.workspace or (client.config.workspace if client else ""),
            "phase": "DELETING" if sandbox.deleting else sandbox.phase.value,
        }
        if not sandbox.deleting:
            status["sandbox"]["id"] = sandbox.id
        status["endpoints"] = dict(sandbox.service_urls)
    if facts.expires_at is not None:
        status["expiresAt"] = format_time(facts.expires_at)
    if old.get("readyAt"):
        status["readyAt"] = old["readyAt"]
    elif plan.phase is Phase.READY:
        status["readyAt"] = format_time(now)
    return _with_removals(old, status)


def _with_removals(old: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge patches merge maps: a key we stopped reporting must be sent as null."""
    out = dict(new)
    for key, value in old.items():
        if key not in out:
            out[key] = None
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _with_removals(value, out[key])
    return out


async def delete_sandbox_for(rt: Runtime, body: Mapping[str, Any]) -> str | None:
    """Delete the session's sandbox; None once it is gone, else why we must wait."""
    meta = SessionMeta.from_body(body)
    spec = SessionSpec.model_validate(body.get("spec") or {})
    rt.rollouts.release(meta.uid)
    status = body.get("status") or {}
    gateway = session_gateway(rt, spec, status)
    client = rt.gateways.get(gateway)
    name = sandbox_name(meta.uid)
    if client is None:
        if not (status.get("sandbox") or {}).get("id"):
            return None  # nothing was ever created there
        return (
            f"sandbox {name} lives on gateway {gateway!r}, which is no longer configured: "
            "restore it in the operator configuration so the sandbox can be deleted, or "
            f"remove the finalizer {FINALIZER} to abandon the sandbox"
        )
    try:
        async with rt.mutation_slots[client.name]:
            outcome = await client.delete_sandbox(name)
        crashpoints.reached(crashpoints.AFTER_DELETE)
        if outcome.gone:
            return None
        sandbox = await client.get_sandbox(name)
    except GatewayError as err:
        return f"cannot delete sandbox {name} yet ({err.reason}): {err}"
    if sandbox is None:
        return None
    return f"sandbox {name} is being deleted by the gateway"
