"""The operator's own Kubernetes calls: status, finalizers, Events, deletes, lookups, Leases.

kopf watches and dispatches; reconcile passes run on the operator's own work queue, so they
write through this module: status as a merge patch of `/status` (skipped by the caller when
nothing changed), finalizers with an optimistic-concurrency precondition, Events for the
recorder. Every call takes a token from one bucket (`rate_limits.kube_qps`/`kube_burst`), so
no storm of reconciles can overrun the apiserver, and every apiserver error is translated in
one place (`_translated`). Only this module imports lightkube.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from helmdeck_operator import API_GROUP, API_VERSION
from helmdeck_operator.core.naming import FINALIZER
from helmdeck_operator.ratelimit import TokenBucket

__all__ = [
    "POLICIES",
    "SESSIONS",
    "Kube",
    "KubeConflict",
    "KubeError",
    "status_changed",
]

logger = logging.getLogger(__name__)

HelmdeckSession = create_namespaced_resource(
    API_GROUP, API_VERSION, "HelmdeckSession", "helmdecksessions"
)
SidecarPolicy = create_namespaced_resource(
    API_GROUP, API_VERSION, "SidecarPolicy", "sidecarpolicies"
)
SESSIONS = "helmdecksessions"
POLICIES = "sidecarpolicies"
_KINDS = {SESSIONS: HelmdeckSession, POLICIES: SidecarPolicy}
#: The operator's name in managedFields.
FIELD_MANAGER = "helmdeck-operator"


class KubeError(RuntimeError):
    """A Kubernetes API call failed; the message names the call and the apiserver's reason."""


class KubeConflict(KubeError):
    """An optimistic write lost: the object changed (or appeared) since it was read."""


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change the stored status (only the keys we own)."""
    current = current or {}
    return any(current.get(key) != value for key, value in desired.items())


class Kube:
    """A lightkube client with the handful of calls the operator makes itself."""

    def __init__(self, client: AsyncClient, limiter: TokenBucket | None = None) -> None:
        self._client = client
        self._limiter = limiter or TokenBucket(0, 1)

    @classmethod
    def from_environment(cls, qps: float = 0, burst: int = 1) -> Kube:
        """In-cluster credentials when running in a pod, else the current kubeconfig."""
        return cls(
            AsyncClient(config=KubeConfig.from_env(), field_manager=FIELD_MANAGER),
            TokenBucket(qps, burst),
        )

    async def close(self) -> None:
        await self._client.close()

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> str | None:
        """Merge-patch `status`; the new resourceVersion, or None when the object is gone."""
        await self._limiter.take()
        with _translated(f"patching {plural}/{namespace}/{name} status", missing_ok=True):
            obj = await self._client.patch(
                _KINDS[plural].Status,
                name,
                {"status": dict(status)},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
            return _version(obj)
        return None

    async def add_finalizer(
        self, plural: str, namespace: str, name: str, current: list[str], resource_version: str
    ) -> str | None:
        """Append `FINALIZER` if the object is still at `resource_version` (KubeConflict
        otherwise); the new resourceVersion, or None when the object is gone."""
        await self._limiter.take()
        patch = {
            "metadata": {"finalizers": [*current, FINALIZER], "resourceVersion": resource_version}
        }
        with _translated(f"adding the finalizer to {plural}/{namespace}/{name}", missing_ok=True):
            obj = await self._client.patch(
                _KINDS[plural], name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )
            return _version(obj)
        return None

    async def remove_finalizer(
        self, plural: str, namespace: str, name: str, current: list[str]
    ) -> str | None:
        """Remove `FINALIZER` from where `current` has it, testing it is still there (a JSON
        patch: a concurrent status write does not conflict, a reordered list does)."""
        if FINALIZER not in current:
            return None
        await self._limiter.take()
        path = f"/metadata/finalizers/{current.index(FINALIZER)}"
        patch = [{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}]
        # A failed test (the list changed under us) is 422: a conflict like any other.
        with _translated(
            f"removing the finalizer from {plural}/{namespace}/{name}",
            missing_ok=True,
            conflicts=(409, 422),
        ):
            obj = await self._client.patch(
                _KINDS[plural], name, patch, namespace=namespace, patch_type=PatchType.JSON
            )
            return _version(obj)
        return None

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        await self._limiter.take()
        with _translated(f"reading {plural}/{namespace}/{name}", missing_ok=True):
            obj = await self._client.get(_KINDS[plural], name, namespace=namespace)
            found: dict[str, Any] = obj.to_dict()  # type: ignore[no-untyped-call]
            return found
        return None

    async def delete_session(self, namespace: str, name: str) -> None:
        await self._limiter.take()
        with _translated(f"deleting {namespace}/{name}", missing_ok=True):
            await self._client.delete(HelmdeckSession, name, namespace=namespace)

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> str:
        """Create a core/v1 Event; its generated name."""
        await self._limiter.take()
        with _translated(f"creating an Event in {namespace}"):
            event = await self._client.create(cast(Event, Event.from_dict(dict(body))))
            return str(event.metadata.name) if event.metadata else ""
        raise AssertionError("unreachable")  # pragma: no cover - _translated re-raises

    async def patch_event(self, namespace: str, name: str, count: int, last: str) -> None:
        """Count a repeat on an existing Event (a missing one is not an error)."""
        await self._limiter.take()
        with _translated(f"updating Event {namespace}/{name}", missing_ok=True):
            await self._client.patch(
                Event,
                name,
                {"count": count, "lastTimestamp": last},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )

    async def crd_versions(self, name: str) -> list[str] | None:
        """Served versions of a CRD, or None when it is not installed."""
        with _translated(f"reading CRD {name}", missing_ok=True):
            crd = await self._client.get(CustomResourceDefinition, name)
            return [v.name for v in crd.spec.versions if v.served]
        return None

    async def can_i(
        self,
        verb: str,
        group: str,
        resource: str,
        namespace: str | None,
        subresource: str | None = None,
    ) -> bool:
        review = SelfSubjectAccessReview(
            spec=SelfSubjectAccessReviewSpec(
                resourceAttributes=ResourceAttributes(
                    verb=verb,
                    group=group,
                    resource=resource,
                    namespace=namespace,
                    subresource=subresource,
                )
            )
        )
        with _translated(f"reviewing access to {verb} {resource}"):
            result = await self._client.create(review)
        return bool(result.status and result.status.allowed)

    # -- leader election (coordination.k8s.io Lease) ---------------------------------------
    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """holder, duration, transitions, acquireTime and resourceVersion; None if absent."""
        with _translated(f"reading lease {namespace}/{name}", missing_ok=True):
            lease = await self._client.get(Lease, name, namespace=namespace)
            spec = lease.spec
            return {
                "holder": (spec.holderIdentity if spec else "") or "",
                "duration": spec.leaseDurationSeconds if spec else None,
                "transitions": spec.leaseTransitions if spec else 0,
                "acquireTime": str(spec.acquireTime) if spec and spec.acquireTime else None,
                "resourceVersion": lease.metadata.resourceVersion if lease.metadata else "",
            }
        return None

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        with _translated(f"creating lease {namespace}/{name}"):
            await self._client.create(cast(Lease, Lease.from_dict(body)))

    async def write_lease(
        self, namespace: str, name: str, spec: dict[str, Any], resource_version: str
    ) -> None:
        """Replace the spec only if the Lease is still at `resource_version`."""
        body = {
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "spec": spec,
        }
        with _translated(f"writing lease {namespace}/{name}"):
            await self._client.replace(cast(Lease, Lease.from_dict(body)))


def _version(obj: Any) -> str:
    return str(obj.metadata.resourceVersion) if obj.metadata else ""


@contextmanager
def _translated(
    what: str, *, missing_ok: bool = False, conflicts: tuple[int, ...] = (409,)
) -> Iterator[None]:
    """The one translation of apiserver errors: 404 is "gone" when `missing_ok` (the block
    is left and the caller returns its default), 409 is KubeConflict, the rest KubeError,
    each naming the call and carrying the apiserver's message."""
    try:
        yield
    except ApiError as err:
        code = err.status.code
        if code == 404 and missing_ok:
            return
        message = f"{what}: {err.status.message}"
        if code in conflicts:
            raise KubeConflict(message) from err
        raise KubeError(message) from err
