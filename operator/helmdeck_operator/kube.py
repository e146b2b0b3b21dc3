"""The operator's own Kubernetes calls: status, finalizers, Events, deletes, lookups, Leases.

kopf watches and dispatches; reconcile passes run on the operator's own work queue, so they
write through this module: status as a merge patch of `/status` (skipped by the caller when
nothing changed), finalizers with an optimistic-concurrency precondition, Events for the
recorder. Every call takes a token from one bucket (`rate_limits.kube_qps`/`kube_burst`), so
no storm of reconciles can overrun the apiserver, and every apiserver error is translated in
one place (`_raise_for`). Only this module imports lightkube.

Two transports, one configuration. The calls made once per session or more (status,
finalizers, Events, session reads and deletes) go over a plain aiohttp session: measured on
the local apiserver, a patch costs the operator about 0.25 ms of CPU that way against about
1 ms through lightkube's httpx stack, which was a third of the operator's CPU in a burst.
Both are built from the same lightkube `KubeConfig` (in-cluster or kubeconfig), with
lightkube's own TLS context and credential logic (static and rotating token files, exec
plugins, client certificates): a 401 lets the credential refresh and retries once, as
lightkube does. The rare calls (Leases, access reviews, CRDs) stay on lightkube.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import aiohttp
from lightkube import AsyncClient, KubeConfig
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.core.exceptions import ApiError
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.coordination_v1 import Lease

from helmdeck_operator import API_GROUP, API_VERSION
from helmdeck_operator.core.naming import FINALIZER
from helmdeck_operator.ratelimit import TokenBucket

__all__ = [
    "CONNECTIONS",
    "POLICIES",
    "POOLS",
    "SESSIONS",
    "TENANT_POLICIES",
    "Kube",
    "KubeConflict",
    "KubeError",
    "status_changed",
]

logger = logging.getLogger(__name__)

SESSIONS = "helmdecksessions"
POLICIES = "sidecarpolicies"
POOLS = "sessionpools"
TENANT_POLICIES = "tenantpolicies"
#: The operator's name in managedFields.
FIELD_MANAGER = "helmdeck-operator"
#: Seconds a single API call may take (lightkube's default too).
TIMEOUT_S = 10.0
#: Connections to the apiserver kept for per-session calls: each TLS connection holds a
#: 256 KiB read buffer, and 16 calls in flight keep a local apiserver busy.
CONNECTIONS = 16
_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


class KubeError(RuntimeError):
    """A Kubernetes API call failed; the message names the call and the apiserver's reason."""


class KubeConflict(KubeError):
    """An optimistic write lost: the object changed (or appeared) since it was read."""


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change the stored status (only the keys we own)."""
    current = current or {}
    return any(current.get(key) != value for key, value in desired.items())


@dataclass
class _Request:
    """What a credential's auth flow sets headers on (duck-typed as an httpx request)."""

    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Response:
    status_code: int


class _Http:
    """JSON calls over aiohttp with the kubeconfig's server, TLS and credentials."""

    def __init__(self, config: KubeConfig) -> None:
        single = config.get()
        if single is None or single.user is None:
            raise KubeError("the kubeconfig has no current context with a user")
        self._server = single.cluster.server.rstrip("/")
        self._ssl = verify_cluster(single.cluster, single.user, single.abs_file)
        self._auth = user_auth(single.user)
        self._session: aiohttp.ClientSession | None = None
        # Calls wait for a connection here, first come first served. aiohttp's own pool lets
        # a new call take a freed connection before a waiting one wakes up: at 5,000
        # sessions some calls waited out their whole timeout that way while the apiserver
        # answered others in 50 ms, and each of them then cost a retry with back-off.
        self._turns = asyncio.Semaphore(CONNECTIONS)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """(HTTP status, raw body) of one call; transport failures raise KubeError."""
        url = f"{self._server}{path}"
        data = None if body is None else json.dumps(body)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        flow = self._auth.async_auth_flow(_Request(headers)) if self._auth else None  # type: ignore[arg-type]
        if flow is not None:
            await flow.__anext__()
        try:
            while True:
                status, raw = await self._send(method, url, data, headers)
                if status != 401 or flow is None:
                    return status, raw
                try:  # let the credential refresh (a rotated token file, an exec plugin)
                    await flow.asend(_Response(status))  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return status, raw
                flow = None
        finally:
            if flow is not None:
                await flow.aclose()

    async def _send(
        self, method: str, url: str, data: str | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        # No timeout on the turn itself: each call ahead holds it for TIMEOUT_S at most.
        async with self._turns:
            try:
                async with self._open().request(method, url, data=data, headers=headers) as reply:
                    return reply.status, await reply.read()
            except (aiohttp.ClientError, TimeoutError) as err:
                raise KubeError(f"{method} {url}: {type(err).__name__}: {err}") from err


class Kube:
    """The operator's Kubernetes edge: aiohttp for per-session calls, lightkube for the rest."""

    def __init__(
        self, client: AsyncClient, http: _Http, limiter: TokenBucket | None = None
    ) -> None:
        self._client = client
        self._http = http
        self._limiter = limiter or TokenBucket(0, 1)

    @classmethod
    def from_environment(cls, qps: float = 0, burst: int = 1) -> Kube:
        """In-cluster credentials when running in a pod, else the current kubeconfig."""
        config = KubeConfig.from_env()
        return cls(
            AsyncClient(config=config, field_manager=FIELD_MANAGER),
            _Http(config),
            TokenBucket(qps, burst),
        )

    async def close(self) -> None:
        await self._http.close()
        await self._client.close()

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        missing_ok: bool = False,
        conflicts: tuple[int, ...] = (409,),
    ) -> bytes | None:
        """One rate-limited call; its raw answer, or None for a missing object (missing_ok)."""
        await self._limiter.take()
        status, raw = await self._http.call(method, path, body, content_type)
        if status < 300:
            return raw
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        message = answer.get("message", "") if isinstance(answer, dict) else ""
        _raise_for(status, message, what, missing_ok=missing_ok, conflicts=conflicts)
        return None

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> str | None:
        """Merge-patch `status`; the new resourceVersion, or None when the object is gone.
        With `resource_version`, only if the object is still at it (KubeConflict otherwise):
        a compare-and-set."""
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        obj = await self._call(
            f"patching {plural}/{namespace}/{name} status",
            "PATCH",
            _path(plural, namespace, name, "/status"),
            patch,
            content_type=_MERGE,
            missing_ok=True,
        )
        return _version(obj)

    async def add_finalizer(
        self, plural: str, namespace: str, name: str, current: list[str], resource_version: str
    ) -> str | None:
        """Append `FINALIZER` if the object is still at `resource_version` (KubeConflict
        otherwise); the new resourceVersion, or None when the object is gone."""
        patch = {
            "metadata": {"finalizers": [*current, FINALIZER], "resourceVersion": resource_version}
        }
        obj = await self._call(
            f"adding the finalizer to {plural}/{namespace}/{name}",
            "PATCH",
            _path(plural, namespace, name),
            patch,
            content_type=_MERGE,
            missing_ok=True,
        )
        return _version(obj)

    async def remove_finalizer(
        self, plural: str, namespace: str, name: str, current: list[str]
    ) -> str | None:
        """Remove `FINALIZER` from where `current` has it, testing it is still there (a JSON
        patch: a concurrent status write does not conflict, a reordered list does)."""
        if FINALIZER not in current:
            return None
        path = f"/metadata/finalizers/{current.index(FINALIZER)}"
        obj = await self._call(
            f"removing the finalizer from {plural}/{namespace}/{name}",
            "PATCH",
            _path(plural, namespace, name),
            [{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}],
            content_type=_JSON_PATCH,
            missing_ok=True,
            conflicts=(409, 422),  # a failed test is 422: the list changed under us
        )
        return _version(obj)

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = await self._call(
            f"reading {plural}/{namespace}/{name}",
            "GET",
            _path(plural, namespace, name),
            missing_ok=True,
        )
        return cast(dict[str, Any], json.loads(found)) if found is not None else None

    async def delete_session(self, namespace: str, name: str) -> None:
        await self._call(
            f"deleting {namespace}/{name}",
            "DELETE",
            _path(SESSIONS, namespace, name),
            missing_ok=True,
        )

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> str:
        """Create a core/v1 Event; its generated name."""
        event = await self._call(
            f"creating an Event in {namespace}",
            "POST",
            f"/api/v1/namespaces/{quote(namespace)}/events?fieldManager={FIELD_MANAGER}",
            dict(body),
        )
        return str(json.loads(event or b"{}").get("metadata", {}).get("name", ""))

    async def patch_event(self, namespace: str, name: str, count: int, last: str) -> None:
        """Count a repeat on an existing Event (a missing one is not an error)."""
        await self._call(
            f"updating Event {namespace}/{name}",
            "PATCH",
            f"/api/v1/namespaces/{quote(namespace)}/events/{quote(name)}"
            f"?fieldManager={FIELD_MANAGER}",
            {"count": count, "lastTimestamp": last},
            content_type=_MERGE,
            missing_ok=True,
        )

    async def namespace_uid(self, name: str) -> str:
        """The UID of Namespace `name` (kube-system's stands for the cluster)."""
        what = f"reading Namespace {name}"
        raw = await self._call(what, "GET", f"/api/v1/namespaces/{quote(name)}")
        uid = json.loads(raw or b"{}").get("metadata", {}).get("uid")
        if not isinstance(uid, str) or not uid:
            raise KubeError(f"{what}: the answer has no metadata.uid")
        return uid

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


def _path(plural: str, namespace: str, name: str, sub: str = "") -> str:
    return (
        f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{quote(namespace)}/{plural}/"
        f"{quote(name)}{sub}?fieldManager={FIELD_MANAGER}"
    )


#: An object's own resourceVersion in the apiserver's JSON: metadata comes first, and nothing
#: before it in metadata (managedFields included) has a field of that name.
_RESOURCE_VERSION = re.compile(rb'"resourceVersion"\s*:\s*"([^"]*)"')


def _version(raw: bytes | None) -> str | None:
    """The resourceVersion of an answer, None when there was none (the object is gone).

    Writes need only this of the object the apiserver sends back, so it is found in the
    bytes instead of parsing the whole object (managedFields and all) each time."""
    if raw is None:
        return None
    found = _RESOURCE_VERSION.search(raw)
    if found is not None:
        return found.group(1).decode()
    parsed = json.loads(raw) if raw else {}
    return str((parsed.get("metadata") or {}).get("resourceVersion", ""))


def _raise_for(
    code: int,
    message: str,
    what: str,
    *,
    missing_ok: bool = False,
    conflicts: tuple[int, ...] = (409,),
) -> None:
    """The one translation of apiserver errors: 404 is "gone" when `missing_ok` (returns),
    a conflict code is KubeConflict, the rest KubeError, each naming the call and carrying
    the apiserver's message."""
    if code == 404 and missing_ok:
        return
    text = f"{what}: {message or f'HTTP {code}'}"
    if code in conflicts:
        raise KubeConflict(text)
    raise KubeError(text)


@contextmanager
def _translated(what: str, *, missing_ok: bool = False) -> Iterator[None]:
    """lightkube's ApiError through `_raise_for` (the block is left on a missing object)."""
    try:
        yield
    except ApiError as err:
        try:
            _raise_for(err.status.code or 0, err.status.message or "", what, missing_ok=missing_ok)
        except KubeError as translated:
            raise translated from err
