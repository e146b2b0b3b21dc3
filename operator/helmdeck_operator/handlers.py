"""The kopf wiring: which handler runs for which event, each delegating in a line or two.

- A daemon per HelmdeckSession runs reconcile passes for the object's whole life, waiting
  between them for its requeue time or a wake-up (a spec change, its policy changing).
- A finalizer-guarded delete handler removes the sandbox and keeps the finalizer until the
  gateway confirms it gone: a gateway outage delays deletion, it never leaks a sandbox.
- A daemon per SidecarPolicy reports validity, revision and rollout progress.
- Indexes give sessions their policy spec and policies their bound sessions without API
  lists; raw watch events only wake daemons.
- A background task sweeps orphaned sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from helmdeck_operator import API_GROUP, API_VERSION
from helmdeck_operator.core.naming import FINALIZER
from helmdeck_operator.core.plan import EventSpec
from helmdeck_operator.kube import POLICIES, SESSIONS, Kube
from helmdeck_operator.reconcile.denials import follow_denials
from helmdeck_operator.reconcile.policy import reconcile_policy
from helmdeck_operator.reconcile.session import delete_sandbox_for, reconcile_session
from helmdeck_operator.reconcile.sweep import sweep_orphans
from helmdeck_operator.runtime import Runtime

__all__ = ["FINALIZER", "build_registry"]

logger = logging.getLogger(__name__)

_SESSION = (API_GROUP, API_VERSION, SESSIONS)
_POLICY = (API_GROUP, API_VERSION, POLICIES)
#: How long a stopping daemon may take to finish its pass before kopf cancels it.
CANCELLATION_TIMEOUT_S = 10.0


def build_registry() -> kopf.OperatorRegistry:
    """A fresh registry with every handler, so tests and `run` share the exact wiring."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry, id="start")
    async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="helmdeck.dev"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="helmdeck.dev", key="last-handled-configuration"
        )
        # Our own Events say what happened; kopf mirrors only critical log lines as Events.
        settings.posting.level = logging.CRITICAL
        # The operator knows its resources; scanning CRDs and namespaces would need
        # cluster-wide list/watch on both, beyond least privilege (and stalls without it).
        settings.scanning.disabled = True
        memo.runtime = await Runtime.start(
            memo.config, Kube.from_environment(), metrics=memo.get("metrics")
        )
        if memo.get("health") is not None:
            memo.health.gateways = memo.runtime.gateways
        memo.sweeper = asyncio.create_task(_sweep_forever(memo.runtime))

    @kopf.on.cleanup(registry=registry, id="stop")
    async def stop(memo: Any, **_: Any) -> None:
        memo.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await memo.sweeper
        await memo.runtime.close()

    @kopf.index(*_POLICY, registry=registry, id="policy_specs")
    def policy_specs(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> object:
        return {(namespace, name): dict(spec)}

    @kopf.index(*_SESSION, registry=registry, id="sessions_by_policy")
    def sessions_by_policy(
        namespace: str | None, uid: str, spec: kopf.Spec, status: kopf.Status, **_: Any
    ) -> object:
        ref = _policy_ref(spec)
        if not ref:
            return None
        return {(namespace, ref): {"uid": uid, "policy": dict(status.get("policy") or {})}}

    @kopf.on.event(*_SESSION, registry=registry, id="session_event")
    def session_event(
        meta: kopf.Meta, namespace: str | None, uid: str, spec: kopf.Spec, memo: Any, **_: Any
    ) -> None:
        rt: Runtime = memo.runtime
        ref = _policy_ref(spec)
        if ref:
            rt.wake(("policy", namespace, ref))
        if rt.generation_changed(uid, meta.get("generation")):
            rt.wake(uid)

    @kopf.on.event(*_POLICY, registry=registry, id="policy_event")
    def policy_event(
        type: str, meta: kopf.Meta, namespace: str | None, name: str, memo: Any, **kwargs: Any
    ) -> None:
        rt: Runtime = memo.runtime
        key = ("policy", namespace, name)
        # Only a spec change, or the policy appearing or going, concerns the sessions; the
        # policy's own status writes must not cost every bound session an extra pass.
        if rt.generation_changed(key, meta.get("generation")) or type == "DELETED":
            for session in _bound(kwargs, namespace, name):
                rt.wake(session["uid"])
        rt.wake(key)

    @kopf.daemon(
        *_SESSION,
        registry=registry,
        cancellation_timeout=CANCELLATION_TIMEOUT_S,
        id="session_daemon",
    )
    async def session_daemon(
        body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, memo: Any, **kwargs: Any
    ) -> None:
        rt: Runtime = memo.runtime
        specs: kopf.Index[Any, Any] = kwargs["policy_specs"]
        wake = rt.wakeup(uid)
        errors = 0

        def post(type_: str, reason: str, message: str) -> None:
            kopf.event(body, type=type_, reason=reason, message=message)

        denials = asyncio.create_task(follow_denials(rt, body, post))
        try:
            while not stopped:
                ref = _policy_ref(body.spec)
                policy = _first(specs.get((body.metadata.namespace, ref), [])) if ref else None
                outcome = await reconcile_session(rt, body, policy, errors)
                errors = errors + 1 if outcome.failing else 0
                _post(body, outcome.events)
                await _pause(wake, stopped, outcome.requeue_after)
        finally:
            denials.cancel()
            rt.forget(uid)
            rt.metrics.forget_session(uid)

    @kopf.on.delete(*_SESSION, registry=registry, id="session_deleted")
    async def session_deleted(body: kopf.Body, memo: Any, patch: kopf.Patch, **_: Any) -> None:
        rt: Runtime = memo.runtime
        waiting = await delete_sandbox_for(rt, body)
        if waiting is not None:
            patch.status["phase"] = "Terminating"
            raise kopf.TemporaryError(waiting, delay=rt.config.intervals.pending_seconds)

    @kopf.daemon(
        *_POLICY, registry=registry, cancellation_timeout=CANCELLATION_TIMEOUT_S, id="policy_daemon"
    )
    async def policy_daemon(
        body: kopf.Body, stopped: kopf.DaemonStopped, memo: Any, **kwargs: Any
    ) -> None:
        rt: Runtime = memo.runtime
        namespace, name = body.metadata.namespace, body.metadata.name
        key = ("policy", namespace, name)
        wake = rt.wakeup(key)
        intervals = rt.config.intervals
        try:
            while not stopped:
                report = await reconcile_policy(rt, body, _bound(kwargs, namespace, name))
                _post(body, report.events)
                wait = intervals.resync_seconds if report.settled else intervals.pending_seconds
                await _pause(wake, stopped, wait)
        finally:
            rt.forget(key)

    return registry


def _bound(kwargs: Mapping[str, Any], namespace: str | None, name: str | None) -> list[Any]:
    """Index entries of the sessions that reference policy namespace/name."""
    index: kopf.Index[Any, Any] = kwargs["sessions_by_policy"]
    return list(index.get((namespace, name), []))


def _policy_ref(spec: Mapping[str, Any]) -> str | None:
    ref = (spec.get("policyRef") or {}).get("name")
    return str(ref) if ref else None


def _first(store: Any) -> Any:
    for item in store:
        return item
    return None


def _post(body: kopf.Body, events: tuple[EventSpec, ...]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


async def _pause(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep until `seconds` pass, the daemon is woken, or it is being stopped."""
    if seconds > 0 and not wake.is_set():
        waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
    wake.clear()


async def _sweep_forever(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(rt.config.intervals.orphan_sweep_seconds)
        try:
            rt.metrics.record_orphans(await sweep_orphans(rt))
        except Exception:  # a sweep must never take the operator down; the next one retries
            logger.exception("orphan sweep failed")
