"""The operator's own Kubernetes calls: status writes, session deletion, lookups, access checks.

kopf watches and dispatches; it applies a handler's patch only when the handler returns, and
the session and policy daemons run for the object's whole life, so they write status
through this module instead. Every write is a merge patch of `/status` that is skipped when
nothing changed (STYLE: status is the source of truth; skip writes that change nothing).
Only this module imports lightkube.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from helmdeck_operator import API_GROUP, API_VERSION

__all__ = ["POLICIES", "SESSIONS", "Kube", "KubeError", "status_changed"]

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

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster credentials when running in a pod, else the current kubeconfig."""
        return cls(AsyncClient(config=KubeConfig.from_env(), field_manager=FIELD_MANAGER))

    async def close(self) -> None:
        await self._client.close()

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """Merge-patch `status`; a vanished object is not an error (it is being deleted)."""
        kind = _KINDS[plural]
        try:
            await self._client.patch(
                kind.Status,
                name,
                {"status": dict(status)},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as err:
            if err.status.code == 404:
                return
            raise KubeError(
                f"patching {plural}/{namespace}/{name} status: {err.status.message}"
            ) from err

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self._client.get(_KINDS[plural], name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise KubeError(f"reading {plural}/{namespace}/{name}: {err.status.message}") from err
        found: dict[str, Any] = obj.to_dict()  # type: ignore[no-untyped-call]
        return found

    async def delete_session(self, namespace: str, name: str) -> None:
        try:
            await self._client.delete(HelmdeckSession, name, namespace=namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise KubeError(f"deleting {namespace}/{name}: {err.status.message}") from err

    async def crd_versions(self, name: str) -> list[str] | None:
        """Served versions of a CRD, or None when it is not installed."""
        try:
            crd = await self._client.get(CustomResourceDefinition, name)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise KubeError(f"reading CRD {name}: {err.status.message}") from err
        return [v.name for v in crd.spec.versions if v.served]

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
        result = await self._client.create(review)
        return bool(result.status and result.status.allowed)

    # -- leader election (coordination.k8s.io Lease) ---------------------------------------
    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """holder, duration, transitions, acquireTime and resourceVersion; None if absent."""
        try:
            lease = await self._client.get(Lease, name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise KubeError(f"reading lease {namespace}/{name}: {err.status.message}") from err
        spec = lease.spec
        return {
            "holder": (spec.holderIdentity if spec else "") or "",
            "duration": spec.leaseDurationSeconds if spec else None,
            "transitions": spec.leaseTransitions if spec else 0,
            "acquireTime": str(spec.acquireTime) if spec and spec.acquireTime else None,
            "resourceVersion": lease.metadata.resourceVersion if lease.metadata else "",
        }

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        try:
            await self._client.create(cast(Lease, Lease.from_dict(body)))
        except ApiError as err:
            if err.status.code == 409:
                raise KubeConflict(f"lease {namespace}/{name} already exists") from err
            raise KubeError(f"creating lease {namespace}/{name}: {err.status.message}") from err

    async def write_lease(
        self, namespace: str, name: str, spec: dict[str, Any], resource_version: str
    ) -> None:
        """Replace the spec only if the Lease is still at `resource_version`."""
        body = {
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "spec": spec,
        }
        try:
            await self._client.replace(cast(Lease, Lease.from_dict(body)))
        except ApiError as err:
            if err.status.code == 409:
                raise KubeConflict(f"lease {namespace}/{name} changed meanwhile") from err
            raise KubeError(f"writing lease {namespace}/{name}: {err.status.message}") from err
