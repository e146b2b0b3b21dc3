"""One reconcile pass of a SidecarPolicy: fan a new revision out, report validity and progress.

**Fan-out as one operation.** When the pass sees a revision it has not fanned out yet, it
goes over every bound session at once, from memory: each session's sandbox in its
gateway's cache, its loaded and newest revision, and the live-change classification
against the sandbox's baseline (computed once per distinct baseline, not per session). A
sandbox that can take the revision live gets it pushed with the gateway's config-update
RPC, all of them concurrently within the gateway's mutation bound, and is followed until
the gateway reports it LOADED; only then does its session's pass run and write its status,
once. Every other bound session (not ready, suspended, a static change, a refused
revision, a policy that does not translate) is woken, and its own pass decides, exactly as
it would have alone. After a restart the first pass fans out again; it pushes only where
the gateway still runs another revision, so a crash half-way loses nothing
(level-triggered: desired revision vs loaded revision, per sandbox).

**Report.** The policy's status (validity, revision, bound/loaded/pending/failed counts) is
computed from the bound sessions' own status by `core.policy_status`; session status
changes re-queue the policy with a short delay, so a rollout over a thousand sessions
updates the counts a few times, not a thousand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from helmdeck_operator import crashpoints
from helmdeck_operator.core.naming import FINALIZER, LABEL_SESSION_UID, sandbox_name
from helmdeck_operator.core.observation import policy_facts
from helmdeck_operator.core.plan import DesiredPolicy, PolicyProblem
from helmdeck_operator.core.policy_rollout import next_rollout_step
from helmdeck_operator.core.policy_status import PolicyReport, report_policy
from helmdeck_operator.core.session import SessionSpec
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.kube import POLICIES, status_changed
from helmdeck_operator.observability.tracing import reconcile_span
from helmdeck_operator.reconcile.observe import classify_for
from helmdeck_operator.reconcile.session import Outcome
from helmdeck_operator.reconcile.workspaces import sandbox_workspace
from helmdeck_operator.runtime import Cache, Key, Kind, Runtime
from helmdeck_operator.vocabulary import PolicyState

__all__ = ["fan_out", "reconcile_policy"]

logger = logging.getLogger(__name__)

#: A revision that does not translate: fanned out as "wake every session" once.
_INVALID = "invalid"


async def reconcile_policy(rt: Runtime, key: Key) -> Outcome:
    body = rt.policy_body(key)
    policy_key = (key.namespace, key.name)
    if body is None:
        # Gone: its sessions report PolicyNotFound (and keep their loaded policy).
        for name in rt.store.bound_names(key.namespace, key.name):
            rt.queue.add(Key(Kind.SESSION, key.namespace, name))
        rt.fanned_out.pop(policy_key, None)
        rt.propagation.pop(policy_key, None)
        return Outcome()
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if FINALIZER in finalizers:
        # Builds before 0.2 let kopf put the sessions' finalizer on policies too (for a
        # daemon per policy). Nothing guards a policy now: release it, or its deletion hangs.
        released = await rt.kube.remove_finalizer(POLICIES, key.namespace, key.name, finalizers)
        rt.wrote(
            key, released, {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER]}}
        )
    with reconcile_span("policy", key.namespace, key.name, meta["uid"]) as span:
        desired = rt.translate(key.namespace, body)
        fanned = desired.revision if isinstance(desired, DesiredPolicy) else _INVALID
        if rt.fanned_out.get(policy_key) != fanned:
            rt.fanned_out[policy_key] = fanned
            sessions = []
            for name in rt.store.bound_names(key.namespace, key.name):
                session_key = Key(Kind.SESSION, key.namespace, name)
                if (found := rt.session_body(session_key)) is not None:
                    sessions.append((session_key, found))
            began = time.monotonic()
            pushed = await fan_out(rt, desired, sessions)
            span.set_attribute("helmdeck.policy.pushed", pushed)
            logger.info(
                "policy %s/%s %s: pushed to %d of %d bound sessions in %.2f s",
                key.namespace,
                key.name,
                fanned,
                pushed,
                len(sessions),
                time.monotonic() - began,
            )
        old = dict(body.get("status") or {})
        bound = rt.store.tally(key.namespace, key.name)
        report = report_policy(desired, int(meta.get("generation", 1)), bound, old, rt.clock())
        total = sum(bound.values())
        span.set_attribute("helmdeck.policy.revision", report.revision or "")
        span.set_attribute("helmdeck.policy.bound", total)
        _measure_propagation(rt, policy_key, report, total)
        if status_changed(old, report.status):
            await rt.write_status(key, report.status)
        rt.post(Kind.POLICY, body, report.events)
    return Outcome()


async def fan_out(
    rt: Runtime,
    desired: DesiredPolicy | PolicyProblem,
    sessions: Sequence[tuple[Key, Mapping[str, Any]]],
) -> int:
    """Push `desired` to every bound sandbox that can load it live; wake the other
    sessions. Returns how many pushes were sent."""
    if isinstance(desired, PolicyProblem):
        for session_key, _ in sessions:
            rt.queue.add(session_key)
        return 0
    pushes: list[asyncio.Task[None]] = []
    for session_key, body in sessions:
        target = await _push_target(rt, session_key, body, desired)
        if target is not None:
            push = _push(rt, *target, session_key, desired)
            pushes.append(asyncio.create_task(push))  # started now, bounded by the slots
    await asyncio.gather(*pushes)
    return len(pushes)


async def _push_target(
    rt: Runtime, key: Key, body: Mapping[str, Any], desired: DesiredPolicy
) -> tuple[Cache, str, str] | None:
    """The cache, workspace and name of the session's sandbox if the fan-out should push
    to it; otherwise the session is woken (when its own pass has something to do) and
    None returned."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return None  # its finalizer is at work; a policy no longer matters
    spec = SessionSpec.model_validate(body.get("spec") or {})
    status = body.get("status") or {}
    cache = rt.caches.get(rt.session_gateway(spec, status))
    name = sandbox_name(meta["uid"])
    workspace = sandbox_workspace(cache, key.namespace, name, status) if cache else ""
    sandbox = cache.get(workspace, name) if cache is not None and cache.up else None
    if (
        cache is None
        or sandbox is None
        or spec.suspend
        or sandbox.deleting
        or sandbox.phase is not models.SandboxPhase.READY
        or sandbox.labels.get(LABEL_SESSION_UID, meta["uid"]) != meta["uid"]
    ):
        rt.queue.add(key)
        return None
    reported = status.get("policy") or {}
    facts = policy_facts(sandbox, cache.remembered_load(workspace, name))
    if facts.active_revision == desired.revision:
        if (reported.get("revision"), reported.get("state")) != (
            desired.revision,
            PolicyState.LOADED,
        ):
            rt.queue.add(key)  # loaded already; its status has yet to say so
        return None
    if facts.lookup_version:
        rt.queue.add(key)  # which revision it runs needs a question to the gateway
        return None
    latest = facts.latest
    change = None
    if latest is None or f"sha256:{latest.hash}" != desired.revision:
        try:
            change = await classify_for(rt, cache, sandbox, desired)
        except GatewayError as err:
            cache.report(err)
            rt.queue.add(key)
            return None
    step = next_rollout_step(
        desired_revision=desired.revision,
        static_changes=desired.static_changes,
        latest=latest,
        change=change,
        may_recreate=False,  # recreating takes a rollout slot: the session's own pass does it
        reported=reported,
    )
    if step.push:
        return cache, workspace, name
    rt.queue.add(key)
    return None


async def _push(
    rt: Runtime, cache: Cache, workspace: str, name: str, key: Key, desired: DesiredPolicy
) -> None:
    try:
        async with rt.mutation_slots[cache.name]:
            revision = await cache.client.update_policy(name, desired.policy, workspace=workspace)
    except GatewayError as err:
        cache.report(err)
        rt.queue.add(key)  # its own pass retries, or reports the refusal
        return
    cache.put_revision(workspace, name, revision)
    crashpoints.reached(crashpoints.MID_FANOUT)
    cache.follow(workspace, name)  # LOADED (or FAILED) wakes the session, which writes once


def _measure_propagation(
    rt: Runtime, key: tuple[str, str], report: PolicyReport, bound: int
) -> None:
    """From the first pass that sees a revision to the pass that sees it loaded everywhere;
    measured once per revision."""
    if report.revision is None or bound == 0:
        rt.propagation.pop(key, None)
        return
    revision, started = rt.propagation.get(key, ("", None))
    if revision != report.revision:
        revision, started = report.revision, time.monotonic()
        rt.propagation[key] = (revision, started)
    if started is not None and report.status["sessions"]["loaded"] == bound:
        rt.metrics.record_propagation(time.monotonic() - started)
        rt.propagation[key] = (revision, None)
