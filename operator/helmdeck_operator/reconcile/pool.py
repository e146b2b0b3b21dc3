"""One reconcile pass of a SessionPool: answer the waiting sessions, record, then refill.

The shell around `core.pool.plan_pool`. A pass reads the pool (kopf's index with the
operator's own writes), its sandboxes (the gateway's cache: every sandbox labelled with the
pool's UID), what each claiming session records (the session index) and the sessions
waiting for an answer (`Runtime.pools`). It plans, then writes the status with the pool's
resourceVersion as precondition: only once that write succeeded are the claims in it
real, so only then are the waiting sessions woken. A write that loses the race (another
replica, a restart) answers nobody; the pass starts over from the newer pool. Then it
boots and deletes sandboxes as planned, and follows the booting ones, whose READY wakes
the pool again.

The pool's finalizer (the sessions' own) is removed once its idle sandboxes are gone and
every claimed sandbox is recorded by its session: a deleted pool leaves its claimed
sessions running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from helmdeck_operator import crashpoints
from helmdeck_operator.core import tenancy
from helmdeck_operator.core.conditions import Condition, Status
from helmdeck_operator.core.endpoints import exposures
from helmdeck_operator.core.naming import (
    ANNOTATION_INITIAL_POLICY,
    FINALIZER,
    home_workspace,
    pool_sandbox_annotations,
    pool_sandbox_labels,
    pool_sandbox_name,
)
from helmdeck_operator.core.plan import ANNOTATION_SHAPE, DesiredPolicy, PolicyProblem
from helmdeck_operator.core.pool import (
    Claim,
    ClaimRequest,
    Holder,
    Member,
    MemberState,
    PoolFacts,
    PoolPlan,
    PoolSpec,
    Refusal,
    claims_of,
    member,
    plan_pool,
    pool_status,
)
from helmdeck_operator.core.session import SandboxShape, ports_digest, sandbox_shape
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.kube import KubeConflict, status_changed
from helmdeck_operator.observability.tracing import reconcile_span
from helmdeck_operator.reconcile.session import (
    CONFLICT_RETRY_S,
    Outcome,
    add_finalizer,
    remove_finalizer,
    settling,
)
from helmdeck_operator.reconcile.workspaces import ensure_workspace
from helmdeck_operator.runtime import Cache, Key, Kind, Runtime
from helmdeck_operator.vocabulary import ConditionType, Reason

__all__ = ["reconcile_pool"]

logger = logging.getLogger(__name__)

#: How long a pool's status may lag its counts: at 20 claims a second a pool would else be
#: written again for every replacement that becomes READY (the claims list and all).
COUNTS_SETTLE_S = 1.0


@dataclass(frozen=True)
class _Pool:
    """A pool pass's reading of its object."""

    key: Key
    body: Mapping[str, Any]
    spec: PoolSpec
    status: dict[str, Any]
    facts: PoolFacts
    shape: SandboxShape
    baseline: DesiredPolicy | PolicyProblem
    """Resolved once per pass: the plan, the requests' classification and the creates
    all read this one."""


async def reconcile_pool(rt: Runtime, key: Key) -> Outcome:
    """One pass over the pool `key`, as stored now."""
    body = rt.pool_body(key)
    if body is None:
        return Outcome()  # deleted; its watch event dropped what was kept about it
    meta = body["metadata"]
    deleting = bool(meta.get("deletionTimestamp"))
    finalizers = list(meta.get("finalizers") or [])
    if deleting and FINALIZER not in finalizers:
        return Outcome()
    with reconcile_span("pool", key.namespace, key.name, meta["uid"]):
        if not deleting and FINALIZER not in finalizers:
            if not await add_finalizer(rt, key, body):
                return Outcome(requeue_after=CONFLICT_RETRY_S)
            body = rt.pool_body(key) or body  # at its new version: the status write needs it
        spec = PoolSpec.model_validate(body.get("spec") or {})
        gateway = spec.gateway or rt.config.default_gateway
        cache = rt.caches.get(gateway)
        pool = _read(rt, key, body, spec, gateway, deleting)
        if cache is None:
            return await _unconfigured(rt, pool)
        if not cache.up:
            return Outcome(failing=True, gateway=gateway)  # waiters wait with it
        if not cache.synced.is_set():
            cache.park(key)
            return Outcome()
        return await _pass(rt, cache, pool)


def _read(
    rt: Runtime, key: Key, body: Mapping[str, Any], spec: PoolSpec, gateway: str, deleting: bool
) -> _Pool:
    meta = body["metadata"]
    status = dict(body.get("status") or {})
    shape = sandbox_shape(spec.template, rt.config.families[spec.family])
    baseline = _baseline(rt, key.namespace, spec)
    ask = tenancy.ask_of(spec.template, shape, gateway)
    refused = tenancy.refusal(rt.store.tenancy(key.namespace), ask, prefix="spec.template")
    if refused is not None:
        # Like an unresolvable baseline: nothing new is booted (rule 6 of core/pool.py).
        baseline = PolicyProblem(key.name, Reason.TENANCY_REFUSED, refused)
    facts = PoolFacts(
        uid=meta["uid"],
        name=key.name,
        generation=int(meta.get("generation", 1)),
        family=spec.family,
        gateway=gateway,
        replicas=spec.replicas,
        max_provisioning=spec.max_provisioning,
        shape_digest=shape.digest,
        baseline=(
            (baseline.name, baseline.revision) if isinstance(baseline, DesiredPolicy) else None
        ),
        baseline_problem=(
            (baseline.reason, baseline.message) if isinstance(baseline, PolicyProblem) else None
        ),
        deleting=deleting,
        claims=claims_of(status),
        in_flight=rt.pools.booting.get((key.namespace, key.name), 0),
    )
    return _Pool(key, body, spec, status, facts, shape, baseline)


async def _pass(rt: Runtime, cache: Cache, pool: _Pool) -> Outcome:
    facts, key = pool.facts, pool.key
    now = rt.clock()
    baseline_revision = facts.baseline[1] if facts.baseline else None
    members = [
        member(s, facts.shape_digest, baseline_revision, pool.shape.providers)
        for s in cache.group(facts.uid)
    ]
    holders = {c.uid: _holder(rt, key.namespace, c.session, c.uid, c.sandbox) for c in facts.claims}
    claimed_uids = {c.uid for c in facts.claims}
    waiting = rt.pools.waiting((key.namespace, key.name))
    stale = [r.uid for _, r, _ in waiting if _done(rt, key.namespace, r, claimed_uids)]
    rt.pools.answered((key.namespace, key.name), stale)
    requests = [
        _classified(rt, pool, request, desired)
        for _, request, desired in waiting
        if request.uid not in stale
    ]
    plan = plan_pool(facts, members, holders, requests, now)
    status = pool_status(facts, plan, pool.status, now)
    held = None
    if status_changed(pool.status, status):
        # Claims are written at once (nobody is answered before), and so is a new
        # generation's first status (a scale shows at once); a change of counts alone (a
        # sandbox READY, one booted) waits up to COUNTS_SETTLE_S to go with the next.
        counts_only = (
            plan.claims == facts.claims
            and not facts.deleting
            and pool.status.get("observedGeneration") == facts.generation
        )
        if counts_only:
            held = settling(rt, key, window=COUNTS_SETTLE_S)
        if held is None:
            try:
                await rt.write_status(
                    key, status, resource_version=str(pool.body["metadata"]["resourceVersion"])
                )
            except KubeConflict:
                # Someone else recorded something first: answer nobody from this view.
                return Outcome(requeue_after=CONFLICT_RETRY_S)
            rt.settling.pop(key, None)
            if plan.granted:
                crashpoints.reached(crashpoints.AFTER_CLAIM)
    _answer(rt, key, plan.granted, plan.refused)
    failed = await _act(rt, cache, pool, plan, members)
    rt.metrics.record_pool(
        key.namespace,
        key.name,
        ready=plan.ready,
        provisioning=plan.booting,
        claimed=len(plan.claims),
        target=0 if facts.deleting else facts.replicas,
    )
    if plan.release:
        return await _release(rt, pool)
    if failed is not None:
        return Outcome(failing=True, gateway=facts.gateway)
    if held is not None:
        return Outcome(requeue_after=held)
    # Booting sandboxes are followed (READY wakes the pool); the resync is a safety net for
    # what wakes nobody (a baseline policy edited, a claimed sandbox gone).
    return Outcome(requeue_after=rt.config.intervals.resync_seconds)


def _done(rt: Runtime, namespace: str, request: ClaimRequest, claimed: set[str]) -> bool:
    """A waiting session that needs no answer any more: it holds a claim already, recorded
    an answer, or is gone."""
    return (
        request.uid in claimed
        or _holder(rt, namespace, request.session, request.uid) is not Holder.UNRECORDED
    )


def _holder(
    rt: Runtime, namespace: str, session: str, uid: str, sandbox: str | None = None
) -> Holder:
    """What session `session` (of UID `uid`) records of its pool's answer, as the holder of
    `sandbox` (without one: RECORDED never, ELSEWHERE for any answer recorded)."""
    body = rt.session_body(Key(Kind.SESSION, namespace, session))
    if body is None or body["metadata"]["uid"] != uid:
        return Holder.GONE
    recorded = (body.get("status") or {}).get("pool") or {}
    if sandbox is not None and recorded.get("sandbox") == sandbox:
        return Holder.RECORDED
    if recorded.get("sandbox") or recorded.get("fallback"):
        return Holder.ELSEWHERE
    return Holder.UNRECORDED


def _classified(
    rt: Runtime, pool: _Pool, request: ClaimRequest, desired: DesiredPolicy
) -> ClaimRequest:
    """The request, saying whether its policy is a live change from the pool's baseline."""
    baseline = pool.baseline
    if not isinstance(baseline, DesiredPolicy):
        return request  # nothing is booted without a baseline: the plan answers PoolEmpty
    change = rt.classify(baseline.revision, baseline.policy, desired)
    return replace(request, live=change.live, not_live="; ".join(str(b) for b in change.blockers))


def _baseline(rt: Runtime, namespace: str, spec: PoolSpec) -> DesiredPolicy | PolicyProblem:
    """What the pool's idle sandboxes run: its baselinePolicyRef, else the family's
    default policy without network rules."""
    ref = spec.baseline_policy_ref
    if ref is None:
        return rt.pool_baselines[spec.family]
    body = rt.store.policy(namespace, ref.name)
    if body is None:
        return PolicyProblem(
            ref.name,
            Reason.POLICY_NOT_FOUND,
            f"baseline SidecarPolicy {namespace}/{ref.name} does not exist; waiting for it",
        )
    return rt.translate(namespace, body)


def _answer(
    rt: Runtime, key: Key, granted: tuple[Claim, ...], refused: tuple[Refusal, ...]
) -> None:
    """Wake the sessions the recorded plan answered."""
    for refusal in refused:
        rt.pools.refusals[refusal.uid] = refusal
    answered = [c.uid for c in granted] + [r.uid for r in refused]
    rt.pools.answered((key.namespace, key.name), answered)
    for name in [c.session for c in granted] + [r.session for r in refused]:
        rt.queue.add(Key(Kind.SESSION, key.namespace, name))


async def _act(
    rt: Runtime, cache: Cache, pool: _Pool, plan: PoolPlan, members: list[Member]
) -> GatewayError | None:
    """Delete as planned, at once (within the gateway's bound on mutations), and start the
    creates beside the pass: a claim waiting for the next pass does not wait for them. The
    first gateway error of the deletes, if any (the rest are tried regardless)."""
    if plan.create:
        where = (pool.key.namespace, pool.key.name)
        rt.pools.booting[where] = rt.pools.booting.get(where, 0) + plan.create
        rt.spawn(_boot_all(rt, cache, pool, plan.create), f"boot-{pool.key.name}")
    # Each member in its own workspace: those booted before a change of mode stay there.
    workspaces = {s.name: s.workspace for s in cache.group(pool.facts.uid)}
    deletes = (_delete(rt, cache, workspaces.get(n, ""), n) for n in plan.delete)
    errors = [e for e in await asyncio.gather(*deletes) if e]
    _follow_booting(cache, plan, members, workspaces)
    _report_errors(rt, pool, errors)
    return errors[0] if errors else None


async def _boot_all(rt: Runtime, cache: Cache, pool: _Pool, count: int) -> None:
    """`count` creates at once; each counted out as it is answered. A failed one wakes the
    pool to plan again (back off: the gateway may be down)."""
    where = (pool.key.namespace, pool.key.name)

    async def one() -> GatewayError | None:
        try:
            return await _boot(rt, cache, pool)
        finally:
            rt.pools.booting[where] = rt.pools.booting.get(where, 1) - 1
            if rt.pools.booting[where] <= 0:
                del rt.pools.booting[where]

    errors = [e for e in await asyncio.gather(*(one() for _ in range(count))) if e]
    _report_errors(rt, pool, errors)
    if errors:
        rt.queue.add_rate_limited(pool.key)


def _report_errors(rt: Runtime, pool: _Pool, errors: list[GatewayError]) -> None:
    for error in errors:
        logger.warning("SessionPool %s/%s: %s", pool.key.namespace, pool.key.name, error)
        rt.metrics.record_error(Kind.POOL.value, error.reason)


def _follow_booting(
    cache: Cache, plan: PoolPlan, members: list[Member], workspaces: Mapping[str, str]
) -> None:
    """Streams for the idle sandboxes still booting (READY wakes the pool), none for the
    others: streams are few per gateway, and one left open on a sandbox that sits idle
    for hours is one a claimed sandbox's policy load waits for. A claimed sandbox's stream
    is its session's business; a deleted one is followed until gone (`_delete`)."""
    leave = {c.sandbox for c in plan.claims} | set(plan.delete)
    for m in members:
        if m.name in leave or m.state is MemberState.DELETING:
            continue
        if m.state is MemberState.BOOTING:
            cache.follow(workspaces.get(m.name, ""), m.name)
        else:
            cache.unfollow(workspaces.get(m.name, ""), m.name)


async def _boot(rt: Runtime, cache: Cache, pool: _Pool) -> GatewayError | None:
    baseline, shape = pool.baseline, pool.shape
    assert isinstance(baseline, DesiredPolicy)  # the plan boots nothing without one
    labels = pool_sandbox_labels(
        pool_uid=pool.facts.uid, family=pool.spec.family, instance=rt.config.instance
    )
    annotations = {
        **pool_sandbox_annotations(namespace=pool.key.namespace, name=pool.key.name),
        ANNOTATION_SHAPE: shape.digest,
        ANNOTATION_INITIAL_POLICY: baseline.revision,
    }
    # The family's ports: a session that claims it with the family's ports (most do) finds
    # its endpoints there; others are synchronised live after the claim.
    ports = rt.config.families[pool.spec.family].ports or ()
    workspace = home_workspace(cache.client.config, pool.key.namespace)
    try:
        await ensure_workspace(rt, cache, workspace, pool.key.namespace)
        async with rt.mutation_slots[cache.client.name]:
            made = await cache.client.create_sandbox(
                pool_sandbox_name(),
                shape.sandbox_spec(),
                policy=baseline.policy,
                labels=labels,
                annotations=annotations,
                exposures=exposures(ports),
                workspace=workspace,
            )
    except GatewayError as err:
        cache.report(err)
        return err
    cache.put(made)
    cache.put_services(made.workspace, made.name, made.service_urls, ports_digest(ports))
    cache.follow(made.workspace, made.name)  # its READY wakes the pool
    return None


async def _delete(rt: Runtime, cache: Cache, workspace: str, name: str) -> GatewayError | None:
    try:
        async with rt.mutation_slots[cache.client.name]:
            outcome = await cache.client.delete_sandbox(name, workspace=workspace)
    except GatewayError as err:
        cache.report(err)
        return err
    cache.deleted(workspace, name, outcome.gone)
    if not outcome.gone:
        cache.follow(workspace, name)  # its stream ends when the gateway removes it
    return None


async def _release(rt: Runtime, pool: _Pool) -> Outcome:
    current = list(pool.body["metadata"].get("finalizers") or [])
    if not await remove_finalizer(rt, pool.key, current):
        return Outcome(requeue_after=CONFLICT_RETRY_S)
    rt.metrics.forget_pool(pool.key.namespace, pool.key.name)
    return Outcome()


async def _unconfigured(rt: Runtime, pool: _Pool) -> Outcome:
    """A pool on a gateway the configuration does not name: nothing can be booted; the
    waiting sessions are created cold (where their own gateway decides what happens)."""
    key = pool.key
    message = f"gateway {pool.facts.gateway!r} is not configured"
    refused = tuple(
        Refusal(r.uid, r.session, Reason.POOL_EMPTY, f"SessionPool {key.name}: {message}")
        for _, r, _ in rt.pools.waiting((key.namespace, key.name))
    )
    plan = PoolPlan(
        claims=pool.facts.claims,
        granted=(),
        refused=refused,
        create=0,
        delete=(),
        ready=0,
        booting=0,
        condition=Condition(
            ConditionType.READY, Status.FALSE, Reason.GATEWAY_NOT_CONFIGURED, message
        ),
    )
    status = pool_status(pool.facts, plan, pool.status, rt.clock())
    if status_changed(pool.status, status):
        await rt.write_status(key, status)
    _answer(rt, key, (), refused)
    return Outcome()
