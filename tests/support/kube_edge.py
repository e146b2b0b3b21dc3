"""A fake of the operator's Kubernetes edge (`helmdeck_operator.kube.Kube`), in memory.

`FakeKube` answers every call the reconcile passes, the Event recorder and leader election
make, the way the apiserver would for them:

- what is sent goes through JSON, as on the wire (a value JSON cannot carry fails the call,
  and what is stored and watched is plain JSON data);
- objects carry resourceVersions from one counter that only grows (etcd's revision), and
  a write that changes nothing keeps the version and sends no watch event;
- `patch_status` merge-patches (RFC 7386) the status, `add_finalizer` is refused with
  `KubeConflict` when its resourceVersion is stale (and with `KubeError` on an object being
  deleted, as the apiserver forbids new finalizers then), `remove_finalizer` with
  `KubeConflict` when its test fails (the finalizer is not where the caller saw it);
- deleting an object with finalizers only marks it (deletionTimestamp); it is removed when
  its last finalizer goes;
- every call is recorded in order (`calls`), and `fail_next` makes the next call of a
  method raise, after it was recorded.

What another client does (a user applying, editing or deleting an object, another
controller) goes through `create`, `edit_spec`, `update` and `request_deletion`; those are
not calls of the operator and are not recorded. Every change is handed to the `watchers`
as (type, plural, body), which is how a test feeds the operator's writes back into its
store, as the watch would.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from helmdeck_operator import API_GROUP, API_VERSION
from helmdeck_operator.core.conditions import format_time
from helmdeck_operator.core.naming import FINALIZER
from helmdeck_operator.kube import POLICIES, POOLS, SESSIONS, KubeConflict, KubeError

__all__ = ["Call", "FakeKube", "Watcher", "merge_patch", "wire"]

#: kind of each plural this fake stores.
KINDS = {SESSIONS: "HelmdeckSession", POLICIES: "SidecarPolicy", POOLS: "SessionPool"}
#: Methods that change something in the API (the rest only read).
WRITES = frozenset(
    {
        "patch_status",
        "add_finalizer",
        "remove_finalizer",
        "delete_session",
        "create_event",
        "patch_event",
        "create_lease",
        "write_lease",
    }
)

Watcher = Callable[[str, str, dict[str, Any]], None]
"""Called with (ADDED | MODIFIED | DELETED, plural, a copy of the object)."""


@dataclass(frozen=True)
class Call:
    """One call the operator made: the method's name and its arguments."""

    method: str
    args: tuple[Any, ...]

    @property
    def write(self) -> bool:
        return self.method in WRITES


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: maps merge, None removes a key, anything else replaces.

    The apiserver's side, written apart from `runtime.merge_patch` on purpose (as the
    emulator is apart from the client): the operator overlays its own writes with that one,
    and a shared bug would make the fake agree with it."""
    out = copy.deepcopy(dict(target))
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def wire(value: Any) -> Any:
    """`value` as the apiserver receives it: encoded to JSON and decoded again."""
    return json.loads(json.dumps(value))


@dataclass
class FakeKube:
    """Duck-types `helmdeck_operator.kube.Kube`; see the module docstring."""

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """Creation and deletion timestamps (a test may move it)."""
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """(plural, namespace, name) -> the stored object."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """core/v1 Events, in the order they were created."""
    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)
    crds: dict[str, list[str]] = field(
        default_factory=lambda: {
            f"{plural}.{API_GROUP}": [API_VERSION] for plural in (SESSIONS, POLICIES, POOLS)
        }
    )
    """CRD name -> served versions (absent: not installed)."""
    allowed: bool = True
    """What every access review answers."""
    closed: bool = False
    _failures: dict[str, deque[KubeError]] = field(default_factory=dict)
    _revision: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what a test does ---------------------------------------------------------------

    def fail_next(self, method: str, error: KubeError | None = None) -> None:
        """Make the next call of `method` raise `error` (a KubeError naming it by default);
        several queued failures fail that many calls."""
        if not hasattr(self, method) or method.startswith("_"):
            raise AttributeError(f"Kube has no method {method!r}")
        failure = error or KubeError(f"{method}: injected failure")
        self._failures.setdefault(method, deque()).append(failure)

    def calls_to(self, *methods: str) -> list[Call]:
        return [c for c in self.calls if c.method in methods]

    def writes(self) -> list[Call]:
        """The calls that changed something, in order."""
        return [c for c in self.calls if c.write]

    def object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object (a copy), without recording a call."""
        found = self.objects.get((plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def events_about(self, name: str) -> list[tuple[str, str]]:
        """(type, reason) of the Events on object `name`, oldest first."""
        return [
            (e["type"], e["reason"]) for e in self.events if e["involvedObject"]["name"] == name
        ]

    async def wait_for(self, check: Callable[[], Any], within: float = 5.0) -> Any:
        """Wait until `check()` is truthy after some call (its value); TimeoutError if not."""
        async with asyncio.timeout(within):
            while True:
                found = check()
                if found:
                    return found
                self._changed.clear()
                await self._changed.wait()

    def create(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new object as the apiserver would (uid, generation 1, version, creation
        time); a copy of what was stored."""
        body = wire(dict(body))
        meta = dict(body.get("metadata") or {})
        namespace, name = meta["namespace"], meta["name"]
        if (plural, namespace, name) in self.objects:
            raise KubeConflict(f"{plural}/{namespace}/{name} already exists")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", format_time(self.clock()))
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_version()
        stored = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KINDS[plural],
            **body,
            "metadata": meta,
        }
        self.objects[(plural, namespace, name)] = stored
        self._notify("ADDED", plural, stored)
        return copy.deepcopy(stored)

    def edit_spec(
        self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A user's merge patch of the spec: a new generation when it changes anything."""
        stored = self._stored(plural, namespace, name)
        if stored is None:
            raise KubeError(f"{plural}/{namespace}/{name} not found")
        spec = merge_patch(stored.get("spec") or {}, wire(dict(patch)))
        if spec != stored.get("spec"):
            stored["spec"] = spec
            stored["metadata"]["generation"] = int(stored["metadata"].get("generation", 1)) + 1
            self._bump("MODIFIED", plural, stored)
        return copy.deepcopy(stored)

    def update(
        self, plural: str, namespace: str, name: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Another client's write: `change` edits the stored object in place (a new
        resourceVersion, no new generation)."""
        stored = self._stored(plural, namespace, name)
        if stored is None:
            raise KubeError(f"{plural}/{namespace}/{name} not found")
        change(stored)
        self._bump("MODIFIED", plural, stored)
        return copy.deepcopy(stored)

    def request_deletion(self, plural: str, namespace: str, name: str) -> None:
        """A user's delete (`kubectl delete --wait=false`)."""
        self._delete(plural, namespace, name)

    # -- the Kube interface -------------------------------------------------------------

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> str | None:
        status = wire(dict(status))
        self._record("patch_status", plural, namespace, name, status)
        stored = self._stored(plural, namespace, name)
        if stored is None:
            return None
        if resource_version is not None and stored["metadata"]["resourceVersion"] != (
            resource_version
        ):
            raise KubeConflict(
                f"patching {plural}/{namespace}/{name} status: the object has been modified; "
                "please apply your changes to the latest version and try again"
            )
        patched = merge_patch(stored.get("status") or {}, status)
        if patched != (stored.get("status") or {}):
            stored["status"] = patched
            self._bump("MODIFIED", plural, stored)
        return str(stored["metadata"]["resourceVersion"])

    async def add_finalizer(
        self, plural: str, namespace: str, name: str, current: list[str], resource_version: str
    ) -> str | None:
        self._record("add_finalizer", plural, namespace, name, list(current), resource_version)
        stored = self._stored(plural, namespace, name)
        if stored is None:
            return None
        meta = stored["metadata"]
        if meta["resourceVersion"] != resource_version:
            raise KubeConflict(
                f"adding the finalizer to {plural}/{namespace}/{name}: the object has been "
                "modified; please apply your changes to the latest version and try again"
            )
        if meta.get("deletionTimestamp"):
            raise KubeError(
                f"adding the finalizer to {plural}/{namespace}/{name}: Forbidden: no new "
                "finalizers can be added if the object is being deleted"
            )
        meta["finalizers"] = [*current, FINALIZER]
        self._bump("MODIFIED", plural, stored)
        return str(meta["resourceVersion"])

    async def remove_finalizer(
        self, plural: str, namespace: str, name: str, current: list[str]
    ) -> str | None:
        self._record("remove_finalizer", plural, namespace, name, list(current))
        if FINALIZER not in current:
            return None
        stored = self._stored(plural, namespace, name)
        if stored is None:
            return None
        meta = stored["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        index = current.index(FINALIZER)
        if index >= len(finalizers) or finalizers[index] != FINALIZER:
            raise KubeConflict(
                f"removing the finalizer from {plural}/{namespace}/{name}: the server rejected "
                "our request due to an error in our request (test failed)"
            )
        del finalizers[index]
        meta["finalizers"] = finalizers
        if meta.get("deletionTimestamp") and not finalizers:
            version = self._next_version()
            meta["resourceVersion"] = version
            del self.objects[(plural, namespace, name)]
            self._notify("DELETED", plural, stored)
            return version
        self._bump("MODIFIED", plural, stored)
        return str(meta["resourceVersion"])

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._record("get", plural, namespace, name)
        return self.object(plural, namespace, name)

    async def delete_session(self, namespace: str, name: str) -> None:
        self._record("delete_session", namespace, name)
        self._delete(SESSIONS, namespace, name)

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> str:
        event = wire(dict(body))
        self._record("create_event", namespace, copy.deepcopy(event))
        meta = event.setdefault("metadata", {})
        name = f"{meta.get('generateName', 'event.')}{uuid.uuid4().hex[:10]}"
        meta.update(name=name, namespace=namespace, resourceVersion=self._next_version())
        self.events.append(event)
        return name

    async def patch_event(self, namespace: str, name: str, count: int, last: str) -> None:
        self._record("patch_event", namespace, name, count, last)
        for event in self.events:
            meta = event["metadata"]
            if (meta["namespace"], meta["name"]) == (namespace, name):
                event.update(count=count, lastTimestamp=last)
                meta["resourceVersion"] = self._next_version()

    async def crd_versions(self, name: str) -> list[str] | None:
        self._record("crd_versions", name)
        versions = self.crds.get(name)
        return list(versions) if versions is not None else None

    async def can_i(
        self,
        verb: str,
        group: str,
        resource: str,
        namespace: str | None,
        subresource: str | None = None,
    ) -> bool:
        self._record("can_i", verb, group, resource, namespace, subresource)
        return self.allowed

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._record("get_lease", namespace, name)
        lease = self.leases.get((namespace, name))
        if lease is None:
            return None
        spec = lease["spec"]
        return {
            "holder": spec.get("holderIdentity") or "",
            "duration": spec.get("leaseDurationSeconds"),
            "transitions": spec.get("leaseTransitions") or 0,
            "acquireTime": spec.get("acquireTime"),
            "resourceVersion": lease["resourceVersion"],
        }

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        spec = wire(spec)
        self._record("create_lease", namespace, name, copy.deepcopy(spec))
        if (namespace, name) in self.leases:
            raise KubeConflict(f"creating lease {namespace}/{name}: already exists")
        self.leases[(namespace, name)] = {
            "spec": copy.deepcopy(spec),
            "resourceVersion": self._next_version(),
        }

    async def write_lease(
        self, namespace: str, name: str, spec: dict[str, Any], resource_version: str
    ) -> None:
        spec = wire(spec)
        self._record("write_lease", namespace, name, copy.deepcopy(spec), resource_version)
        lease = self.leases.get((namespace, name))
        if lease is None:
            raise KubeError(f"writing lease {namespace}/{name}: not found")
        if lease["resourceVersion"] != resource_version:
            raise KubeConflict(f"writing lease {namespace}/{name}: the object has been modified")
        lease.update(spec=copy.deepcopy(spec), resourceVersion=self._next_version())

    async def close(self) -> None:
        self._record("close")
        self.closed = True

    # -- bookkeeping --------------------------------------------------------------------

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append(Call(method, args))
        self._changed.set()
        queued = self._failures.get(method)
        if queued:
            raise queued.popleft()

    def _next_version(self) -> str:
        return str(next(self._revision))

    def _stored(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    def _bump(self, type_: str, plural: str, stored: dict[str, Any]) -> None:
        stored["metadata"]["resourceVersion"] = self._next_version()
        self._notify(type_, plural, stored)

    def _delete(self, plural: str, namespace: str, name: str) -> None:
        stored = self._stored(plural, namespace, name)
        if stored is None:
            return
        meta = stored["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = format_time(self.clock())
                self._bump("MODIFIED", plural, stored)
            return
        meta["resourceVersion"] = self._next_version()
        del self.objects[(plural, namespace, name)]
        self._notify("DELETED", plural, stored)

    def _notify(self, type_: str, plural: str, stored: dict[str, Any]) -> None:
        self._changed.set()
        for watcher in list(self.watchers):
            watcher(type_, plural, copy.deepcopy(stored))
