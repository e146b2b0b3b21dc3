"""The kopf wiring: watches, indexes, and the start and stop of the controller.

kopf does what it does best: it logs in, lists and watches the three kinds (re-listing when a
watch expires), keeps three in-memory indexes current (sessions, policies and pools by name), and
guarantees no handler runs before the indexes hold every object. Every watch event is
handed to the controller, which only queues a key. Every handler is a coroutine: kopf
runs plain functions in a thread pool, which costs a thread hop per event and would touch
the queue from another thread.

Reconcile passes run on the controller's own workers (controller.py), not in kopf's
per-object handlers, because a pass must be bounded, de-duplicated and retried per key,
and woken by a gateway's sandboxes as well as by Kubernetes. For the same reason the
finalizer is the operator's own (added and removed by the session pass), and kopf is given
no handler that would make it add one, write progress annotations or store a diff-base.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import kopf

from helmdeck_operator import API_GROUP, API_VERSION
from helmdeck_operator.controller import Controller
from helmdeck_operator.core.tenancy import SAFE_DEFAULT, TenantRules
from helmdeck_operator.kube import POLICIES, POOLS, SESSIONS, TENANT_POLICIES, Kube
from helmdeck_operator.observability.metrics import Metrics
from helmdeck_operator.runtime import Runtime

__all__ = ["KOPF_FINALIZER", "NoDiffBase", "build_registry", "tenant_rules", "trimmed"]

logger = logging.getLogger(__name__)

_SESSION = (API_GROUP, API_VERSION, SESSIONS)
_POLICY = (API_GROUP, API_VERSION, POLICIES)
_POOL = (API_GROUP, API_VERSION, POOLS)
_TENANT_POLICY = (API_GROUP, API_VERSION, TENANT_POLICIES)
#: Namespaces are watched for their labels only: the label naming their TenantPolicy.
_NAMESPACE = ("", "v1", "namespaces")
#: kopf's own finalizer name. kopf removes *its* finalizer from objects when no handler
#: needs one, so it must never be ours (helmdeck.dev/sandbox-cleanup); no handler here
#: needs one, so kopf never adds it.
KOPF_FINALIZER = "kopf.helmdeck.dev/unused"
#: Metadata a pass reads; the rest (managedFields above all) is not kept in memory.
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
    "labels",  # the ones sessions.copy_labels names go onto the sandbox
)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf computes an object's "essence" (a deep copy of it) on every watch event, for the
    change detection behind on.create / on.update / on.delete. None of those is used here,
    so no essence is built, kept or compared: a burst of events costs no deep copies."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an index keeps of an object: identity, spec and status, nothing else, with its
    keys and short strings interned: thousands of objects spell the same field names,
    phases, reasons and times, and the index holds them all (at 5,000 sessions this is
    about 13 MiB less than the decoded JSON)."""
    meta = body["metadata"]
    return {
        "metadata": {key: _interned(meta[key]) for key in _KEPT_METADATA if key in meta},
        "spec": _interned(body.get("spec") or {}),
        "status": _interned(body.get("status") or {}),
    }


#: Strings this short are interned (names of phases, reasons, times); longer ones (messages,
#: UIDs) are mostly unique and would only grow the interpreter's table.
_INTERN_UP_TO = 32


def _interned(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {sys.intern(str(k)): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if isinstance(value, str) and len(value) <= _INTERN_UP_TO:
        return sys.intern(value)
    return value


def tenant_rules(name: str, spec: Mapping[str, Any]) -> TenantRules:
    """A TenantPolicy's rules; one the operator cannot read (its schema admitted it, so
    only a newer, unknown shape) counts as the built-in safe default, never as no rules."""
    try:
        return TenantRules.model_validate(dict(spec))
    except ValueError:
        logger.error("TenantPolicy %s cannot be read; applying the built-in defaults", name)
        return SAFE_DEFAULT


def build_registry() -> kopf.OperatorRegistry:
    """A fresh registry with every handler, so tests and `run` share the exact wiring."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry, id="start")
    async def start(settings: kopf.OperatorSettings, memo: Any, **kwargs: Any) -> None:
        settings.persistence.finalizer = KOPF_FINALIZER
        settings.persistence.diffbase_storage = NoDiffBase()
        # Our own Events say what happened; kopf mirrors only critical log lines as Events.
        settings.posting.level = logging.CRITICAL
        # The operator knows its resources; scanning CRDs and namespaces would need
        # cluster-wide list/watch on both, beyond least privilege (and stalls without it).
        settings.scanning.disabled = True
        limits = memo.config.rate_limits
        metrics: Metrics = memo.get("metrics") or Metrics()
        controller: Controller | None = None

        def wake_many(keys: Any) -> None:
            assert controller is not None
            controller.wake_many(keys)

        rt = Runtime.build(
            memo.config,
            Kube.from_environment(limits.kube_qps, limits.kube_burst),
            metrics,
            wake_many,
        )
        rt.bind(kwargs)  # kopf's indexes, empty now, filled before any event handler runs
        controller = Controller(rt)
        await controller.start()
        memo.runtime, memo.controller = rt, controller
        if memo.get("health") is not None:
            memo.health.gateways = rt.gateways

    @kopf.on.cleanup(registry=registry, id="stop")
    async def stop(memo: Any, **_: Any) -> None:
        await memo.controller.stop()

    @kopf.index(*_SESSION, registry=registry, id="session_bodies")
    async def session_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> object:
        return {(namespace, name): trimmed(body)}

    @kopf.index(*_POLICY, registry=registry, id="policy_bodies")
    async def policy_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> object:
        return {(namespace, name): trimmed(body)}

    @kopf.index(*_POOL, registry=registry, id="pool_bodies")
    async def pool_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> object:
        return {(namespace, name): trimmed(body)}

    @kopf.index(*_TENANT_POLICY, registry=registry, id="tenant_policies")
    async def tenant_policies(name: str, spec: kopf.Spec, **_: Any) -> object:
        return {name: tenant_rules(name, spec)}

    @kopf.index(*_NAMESPACE, registry=registry, id="namespace_labels")
    async def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> object:
        return {name: dict(labels)}

    @kopf.on.event(*_TENANT_POLICY, registry=registry, id="tenant_policy_event")
    async def tenant_policy_event(memo: Any, **_: Any) -> None:
        memo.controller.on_tenancy_event(None)

    @kopf.on.event(*_NAMESPACE, registry=registry, id="namespace_event")
    async def namespace_event(name: str, memo: Any, **_: Any) -> None:
        memo.controller.on_tenancy_event(name)

    @kopf.on.event(*_SESSION, registry=registry, id="session_event")
    async def session_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
        memo.controller.on_session_event(type, body)

    @kopf.on.event(*_POLICY, registry=registry, id="policy_event")
    async def policy_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
        memo.controller.on_policy_event(type, body)

    @kopf.on.event(*_POOL, registry=registry, id="pool_event")
    async def pool_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
        memo.controller.on_pool_event(type, body)

    return registry
