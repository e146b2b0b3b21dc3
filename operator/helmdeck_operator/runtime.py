"""Everything the reconcile passes share for the life of the operator process.

One `Runtime` lives in kopf's `memo`: the validated configuration, the Kubernetes client,
a gateway client and a `SandboxCache` per configured gateway with its bound on concurrent
mutations, the work queue, the Event recorder, read access to kopf's indexes (the stores
of sessions and policies), translated policies and the memos that spare repeated work
(translations by policy generation, baseline policies by revision, live-change
classifications by revision pair), the rollout slots of Recreate policies, and the requests
sessions have made of their pools. Nothing here decides anything; it holds, looks up and
hands out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import yaml

from helmdeck_operator import API_GROUP, API_VERSION
from helmdeck_operator.config import FAMILIES, Family, OperatorConfig, TenancyFallback
from helmdeck_operator.core.naming import (
    LABEL_MANAGED_BY,
    LABEL_POOL_UID,
    in_its_workspace,
    pool_of,
    session_of,
)
from helmdeck_operator.core.plan import DesiredPolicy, EventSpec, PolicyProblem
from helmdeck_operator.core.policy_status import SessionPolicy, session_policy
from helmdeck_operator.core.pool import Claim, ClaimRequest, Refusal, claims_of
from helmdeck_operator.core.session import SessionSpec, sandbox_shape, session_ports
from helmdeck_operator.core.tenancy import (
    Ask,
    Selected,
    TenantRules,
    Unresolved,
    ask_of,
    policy_refusal,
    select_rules,
)
from helmdeck_operator.desired import desired_policy, resolve
from helmdeck_operator.events import EventRecorder, ObjectRef
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.config import GatewayConfig, WorkspaceMode
from helmdeck_operator.kube import POLICIES, POOLS, SESSIONS, Kube
from helmdeck_operator.observability.metrics import Metrics
from helmdeck_operator.policy.change import ChangeClass
from helmdeck_operator.policy.classify import classify_change
from helmdeck_operator.policy.guard import NO_ALLOWANCE, EgressAllowance, EgressGuard
from helmdeck_operator.quota import QuotaLedger
from helmdeck_operator.sandbox_cache import SandboxCache
from helmdeck_operator.tasks import cancel_and_wait
from helmdeck_operator.vocabulary import Reason
from helmdeck_operator.workqueue import Backoff, WorkQueue

__all__ = [
    "PLURALS",
    "Cache",
    "ClaimIndex",
    "Key",
    "Kind",
    "OwnWrites",
    "PoolDesk",
    "RolloutSlots",
    "Runtime",
    "Stores",
    "load_family_policy",
    "merge_patch",
    "policy_ref",
    "session_key_of",
]

logger = logging.getLogger(__name__)

#: Translated policies, baseline policies and classifications remembered (LRU).
MEMO_SIZE = 4096
#: Per-session derived strings (shape digest, sandbox name) remembered: a few hundred bytes
#: each, for as many sessions as a large installation runs.
DERIVED_SIZE = 20000


class Kind(StrEnum):
    SESSION = "HelmdeckSession"
    POLICY = "SidecarPolicy"
    POOL = "SessionPool"


#: The plural of each kind, for the API paths.
PLURALS = {Kind.SESSION: SESSIONS, Kind.POLICY: POLICIES, Kind.POOL: POOLS}


class Key(NamedTuple):
    """What the work queue holds: one object to reconcile."""

    kind: Kind
    namespace: str
    name: str


class OwnWrites(NamedTuple):
    """The operator's own writes to one object that the watch has not delivered yet."""

    version: str
    """The resourceVersion of the last one."""
    patch: dict[str, Any]
    """Their merge patches combined (the last one's resourceVersion included)."""
    versions: frozenset[str]
    """The resourceVersions of all of them: their watch events are echoes, not changes."""


_API = f"{API_GROUP}/{API_VERSION}"
Cache = SandboxCache[Key]
"""A gateway's sandbox cache, keyed by the sessions' reconcile keys."""


def load_family_policy(
    family: Family, path: Path, guard: EgressGuard, *, network: bool = True
) -> DesiredPolicy:
    """The family default: a SidecarPolicy manifest file, translated (and guarded: the
    platform's own files pass the egress guard too, with no exemption) once at start-up.
    Without `network`: the same policy with no network rule, which allows no egress at
    all: what a pool's idle sandboxes run unless the pool names a baseline (any policy
    that keeps its filesystem, landlock and process settings is a live change from it)."""
    manifest = yaml.safe_load(path.read_text())
    if not isinstance(manifest, dict) or manifest.get("kind") != "SidecarPolicy":
        raise ValueError("not a SidecarPolicy manifest")
    name = (manifest.get("metadata") or {}).get("name") or f"helmdeck-default-{family}"
    spec = dict(manifest.get("spec") or {})
    if not network:
        spec.pop("network", None)
        name = f"{name}-baseline"
    return desired_policy(name, spec, guard)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass
class RolloutSlots:
    """How many sessions of each Recreate policy are being recreated right now, and who
    waits for a slot (woken when one frees, instead of polling for it).

    In memory on purpose: after a restart, sessions still mid-recreation finish anyway and
    new ones wait for free slots, so the bound can be exceeded only by what was in flight.
    """

    holders: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    waiters: dict[tuple[str, str], set[Key]] = field(default_factory=dict)

    def may_recreate(self, policy: tuple[str, str], uid: str, limit: int) -> bool:
        holding = self.holders.get(policy, set())
        return uid in holding or len(holding) < limit

    def take(self, policy: tuple[str, str], uid: str) -> None:
        self.holders.setdefault(policy, set()).add(uid)

    def wait(self, policy: tuple[str, str], key: Key) -> None:
        self.waiters.setdefault(policy, set()).add(key)

    def release(self, uid: str) -> list[Key]:
        """Free the session's slot; the sessions that were waiting for one."""
        woken: list[Key] = []
        for policy, holding in self.holders.items():
            if uid in holding:
                holding.discard(uid)
                woken.extend(self.waiters.pop(policy, set()))
        return woken


@dataclass(frozen=True)
class ClaimIndex:
    """A pool's recorded claims, looked up by sandbox and by session UID."""

    by_sandbox: Mapping[str, Claim]
    by_uid: Mapping[str, Claim]

    @classmethod
    def of(cls, claims: Iterable[Claim]) -> ClaimIndex:
        listed = list(claims)
        return cls({c.sandbox: c for c in listed}, {c.uid: c for c in listed})


_NO_CLAIMS = ClaimIndex({}, {})


@dataclass
class PoolDesk:
    """Sessions waiting for their pool's answer, and the answers not yet recorded.

    In memory on purpose: a session records its pool's answer in its own status (a claim is
    in the pool's status first), so after a restart a session that had no answer just asks
    again."""

    requests: dict[tuple[str, str], dict[str, tuple[Key, ClaimRequest, DesiredPolicy]]] = field(
        default_factory=dict
    )
    """Per pool (namespace, name): the waiting sessions by UID, oldest request first, with
    the policy each one will run (whether it is live from the baseline is the pool's to
    say)."""
    refusals: dict[str, Refusal] = field(default_factory=dict)
    """Per session UID: a cold-create answer its session has not recorded yet."""
    asked_at: dict[str, float] = field(default_factory=dict)
    """Per session UID: when (monotonic) it first asked, for the claim latency."""
    booting: dict[tuple[str, str], int] = field(default_factory=dict)
    """Per pool: creates sent and not answered yet (a pass does not wait for them)."""

    def ask(
        self,
        pool: tuple[str, str],
        key: Key,
        request: ClaimRequest,
        desired: DesiredPolicy,
        now: float,
    ) -> None:
        self.requests.setdefault(pool, {})[request.uid] = (key, request, desired)
        self.asked_at.setdefault(request.uid, now)

    def waiting(self, pool: tuple[str, str]) -> list[tuple[Key, ClaimRequest, DesiredPolicy]]:
        return list(self.requests.get(pool, {}).values())

    def answered(self, pool: tuple[str, str], uids: Iterable[str]) -> None:
        waiting = self.requests.get(pool, {})
        for uid in uids:
            waiting.pop(uid, None)
        if not waiting:
            self.requests.pop(pool, None)

    def forget(self, uid: str) -> None:
        """The session recorded its answer (or is gone)."""
        self.refusals.pop(uid, None)
        self.asked_at.pop(uid, None)
        for waiting in self.requests.values():
            waiting.pop(uid, None)


class Stores:
    """Read access to kopf's indexes: the operator's in-memory view of its objects.

    kopf fills an index from its watch before any handler runs, and keeps it current with
    every watch event; the reconcile passes read objects from here instead of the API.
    Which sessions reference which policy is kept here too, in both directions, with a
    tally per policy of its sessions' status.policy (what the policy's counts are made
    of): built from the full session index at the first use (by then kopf has filled it)
    and updated by `track` on every session event, so a policy pass never reads thousands
    of sessions to count them.
    """

    def __init__(
        self, indices: Mapping[str, Any], fallback: TenancyFallback = TenancyFallback.OPEN
    ) -> None:
        self._fallback = fallback
        self._sessions = indices["session_bodies"]
        self._policies = indices["policy_bodies"]
        self._pools = indices["pool_bodies"]
        # Cluster-scoped: the platform's TenantPolicies (parsed) and the namespaces' labels.
        self._tenant_policies = indices.get("tenant_policies", {})
        self._namespaces = indices.get("namespace_labels", {})
        self._reference: dict[tuple[str, str], tuple[str, SessionPolicy]] = {}
        self._holds: dict[tuple[str, str], str] = {}
        """(namespace, session) -> the pool sandbox its status records as claimed."""
        self._holders: dict[tuple[str, str], str] = {}
        """(namespace, pool sandbox) -> the session whose status records it."""
        self._bound: dict[tuple[str, str], set[str]] = {}
        self._tallies: dict[tuple[str, str], Counter[SessionPolicy]] = {}
        self._built = False

    @staticmethod
    def _one(store: Any) -> dict[str, Any] | None:
        for item in store:
            found: dict[str, Any] = item
            return found
        return None

    def session(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one(self._sessions.get((namespace, name), ()))

    def policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one(self._policies.get((namespace, name), ()))

    def pool(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one(self._pools.get((namespace, name), ()))

    def tenancy(self, namespace: str) -> Selected | Unresolved:
        """The tenancy rules `namespace` is under now (core/tenancy.py)."""
        labels = self._one(self._namespaces.get(namespace, ()))
        return select_rules(namespace, labels, self._tenant_policy, self._fallback)

    def _tenant_policy(self, name: str) -> TenantRules | None:
        for rules in self._tenant_policies.get(name, ()):
            found: TenantRules = rules
            return found
        return None

    def policy_names(self, namespace: str | None = None) -> list[tuple[str, str]]:
        """The stored SidecarPolicies, in one namespace or in all, as (namespace, name)."""
        return [key for key in list(self._policies) if namespace in (None, key[0])]

    def sessions(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every stored session, as (namespace, name, body)."""
        found = []
        for (namespace, name), store in list(self._sessions.items()):
            body = self._one(store)
            if body is not None:
                found.append((namespace, name, body))
        return found

    def pools_on(self, namespace: str, policy: str) -> list[str]:
        """The pools whose baselinePolicyRef names `policy` (pools are few: a scan)."""
        return [
            name
            for (where, name), store in list(self._pools.items())
            if where == namespace
            and (body := self._one(store)) is not None
            and ((body.get("spec") or {}).get("baselinePolicyRef") or {}).get("name") == policy
        ]

    def bound_names(self, namespace: str, policy: str) -> list[str]:
        """The names of the sessions whose spec.policyRef names `policy`, sorted."""
        self._build()
        return sorted(self._bound.get((namespace, policy), ()))

    def tally(self, namespace: str, policy: str) -> Counter[SessionPolicy]:
        """How many bound sessions report each (revision, desiredRevision, state)."""
        self._build()
        return Counter(self._tallies.get((namespace, policy), Counter()))

    def track(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> str | None:
        """Record a session as it is now (None: it is gone); the policy it referenced
        before."""
        self._build()
        key = (namespace, name)
        previous = self._reference.pop(key, None)
        if previous is not None:
            self._unlink(namespace, name, *previous)
        held = self._holds.pop(key, None)
        if held is not None:
            self._holders.pop((namespace, held), None)
        if body is not None:
            self._link(namespace, name, body)
        return previous[0] if previous is not None else None

    def holder(self, namespace: str, sandbox: str) -> str | None:
        """The session whose status records the pool sandbox `sandbox` as its own (what
        outlives the pool's own record of the claim)."""
        self._build()
        return self._holders.get((namespace, sandbox))

    def _link(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        held = ((body.get("status") or {}).get("pool") or {}).get("sandbox")
        if held:
            self._holds[(namespace, name)] = str(held)
            self._holders[(namespace, str(held))] = name
        policy = policy_ref(body)
        if policy is None:
            return
        facts = session_policy((body.get("status") or {}).get("policy"))
        self._reference[(namespace, name)] = (policy, facts)
        self._bound.setdefault((namespace, policy), set()).add(name)
        self._tallies.setdefault((namespace, policy), Counter())[facts] += 1

    def _unlink(self, namespace: str, name: str, policy: str, facts: SessionPolicy) -> None:
        self._bound.get((namespace, policy), set()).discard(name)
        tally = self._tallies.get((namespace, policy))
        if tally is not None:
            tally[facts] -= 1
            if tally[facts] <= 0:
                del tally[facts]

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        for (namespace, name), store in self._sessions.items():
            body = self._one(store)
            if body is not None:
                self._link(namespace, name, body)


def policy_ref(body: Mapping[str, Any]) -> str | None:
    """The SidecarPolicy a session names in spec.policyRef, if any."""
    ref = ((body.get("spec") or {}).get("policyRef") or {}).get("name")
    return str(ref) if ref else None


@dataclass
class Runtime:
    config: OperatorConfig
    kube: Kube
    gateways: dict[str, GatewayClient]
    caches: dict[str, Cache]
    family_policies: dict[Family, DesiredPolicy]
    pool_baselines: dict[Family, DesiredPolicy]
    """Per family: what a pool's idle sandboxes run when the pool names no baseline."""
    queue: WorkQueue[Key]
    events: EventRecorder
    metrics: Metrics
    stores: Stores | None = None
    mutation_slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    rollouts: RolloutSlots = field(default_factory=RolloutSlots)
    pools: PoolDesk = field(default_factory=PoolDesk)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    """Work a pass started and does not wait for (a pool's creates)."""
    workspaces: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    """Per (gateway, workspace): the one making of a namespace's workspace this process
    started, shared by the passes that need it (reconcile/workspaces.py)."""
    propagation: dict[tuple[str, str], tuple[str, float | None]] = field(default_factory=dict)
    """Per policy: the revision being rolled out and when (monotonic) the change was seen;
    None once its propagation was measured."""
    fanned_out: dict[tuple[str, str], str] = field(default_factory=dict)
    """Per policy: the revision last fanned out (in memory: after a restart the first pass
    fans out again, which pushes only to sandboxes that still need it)."""
    written: dict[Key, OwnWrites] = field(default_factory=dict)
    """The operator's own writes per object not yet delivered by the watch. The store is
    read with them applied, so a pass right after a write never sees the object as
    it was before it (no double write, no repeated Event), and the watch events they cause
    are not mistaken for changes to react to."""
    settling: dict[Key, tuple[float, tuple[EventSpec, ...]]] = field(default_factory=dict)
    """Sessions whose status write is held back while it only says "waiting on the
    gateway": since when (monotonic), and the Events to post with the write."""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _translations: _Lru[tuple[str, str, str, EgressAllowance], DesiredPolicy | PolicyProblem] = (
        field(default_factory=_Lru)
    )
    _baselines: _Lru[str, Any] = field(default_factory=_Lru)
    _classified: _Lru[tuple[str, str], ChangeClass] = field(default_factory=_Lru)
    _derived: _Lru[tuple[str, int], tuple[str, str, str]] = field(
        default_factory=lambda: _Lru(DERIVED_SIZE)
    )
    _claims: dict[tuple[str, str], tuple[str, ClaimIndex]] = field(default_factory=dict)
    egress_guard: EgressGuard = field(default_factory=EgressGuard)
    """The platform's egress guard, from the configuration (fixed for the process; built
    once, by `build`)."""
    quota: QuotaLedger = field(init=False)
    """Per namespace: the sessions that hold a sandbox and what they take (quota.py)."""

    def __post_init__(self) -> None:
        self.quota = QuotaLedger(self.ask_of)

    @classmethod
    def build(
        cls,
        config: OperatorConfig,
        kube: Kube,
        metrics: Metrics,
        wake_many: Callable[[Iterable[Key]], None],
    ) -> Runtime:
        """Everything but the stores (kopf's indexes), which `bind` adds at start-up."""
        gateways = {
            g.name: GatewayClient(g, observers=[metrics.record_call]) for g in config.gateways
        }
        queue: WorkQueue[Key] = WorkQueue(
            backoff=Backoff(base=config.intervals.pending_seconds, maximum=60.0),
            observer=metrics.queue_observer(),
        )
        limits = config.rate_limits
        guard = config.egress_guard.guard()
        rt = cls(
            config=config,
            kube=kube,
            gateways=gateways,
            caches={},
            family_policies={
                f: load_family_policy(f, config.families[f].policy_file, guard) for f in FAMILIES
            },
            pool_baselines={
                f: load_family_policy(f, config.families[f].policy_file, guard, network=False)
                for f in FAMILIES
            },
            queue=queue,
            egress_guard=guard,
            events=EventRecorder(
                kube,
                qps=limits.events_qps,
                burst=limits.events_burst,
                backlog=limits.events_backlog,
                on_drop=metrics.record_event_dropped,
                instance=config.instance,
            ),
            metrics=metrics,
            mutation_slots={
                name: asyncio.Semaphore(config.concurrency.gateway_mutations) for name in gateways
            },
        )
        for name, client in gateways.items():
            rt.caches[name] = Cache(
                client,
                selector={LABEL_MANAGED_BY: config.instance},
                key_of=rt.sandbox_key,
                notify=queue.add,
                wake_many=wake_many,
                resync_seconds=config.intervals.resync_seconds,
                pending_seconds=config.intervals.pending_seconds,
                max_watches=config.concurrency.gateway_watches,
                outage_grace_seconds=config.intervals.outage_grace_seconds,
                group_label=LABEL_POOL_UID,
                all_workspaces=client.config.workspaces is WorkspaceMode.PER_NAMESPACE,
                admits=functools.partial(_admits, client.config),
            )
        for desired in (*rt.family_policies.values(), *rt.pool_baselines.values()):
            rt.remember_policy(desired)
        metrics.watch_caches(rt.caches)
        return rt

    async def start(self) -> None:
        for client in self.gateways.values():
            await client.start()
        for cache in self.caches.values():
            cache.start()
        self.events.start()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` beside the passes (ended by `close`)."""
        task = asyncio.create_task(work, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        await cancel_and_wait([*self.background, *self.workspaces.values()])
        await self.events.close()
        for cache in self.caches.values():
            await cache.close()
        for client in self.gateways.values():
            await client.close()
        await self.kube.close()

    # -- objects ---------------------------------------------------------------------

    def bind(self, indices: Mapping[str, Any]) -> None:
        self.stores = Stores(indices, self.config.tenancy.fallback)

    @property
    def store(self) -> Stores:
        if self.stores is None:
            raise RuntimeError("the runtime is not bound to kopf's indexes yet")
        return self.stores

    def session_body(self, key: Key) -> dict[str, Any] | None:
        return self._overlaid(key, self.store.session(key.namespace, key.name))

    def policy_body(self, key: Key) -> dict[str, Any] | None:
        return self._overlaid(key, self.store.policy(key.namespace, key.name))

    def pool_body(self, key: Key) -> dict[str, Any] | None:
        return self._overlaid(key, self.store.pool(key.namespace, key.name))

    def claims(self, namespace: str, pool: str) -> ClaimIndex:
        """The claims the pool records now (own writes included), indexed once per version."""
        body = self.pool_body(Key(Kind.POOL, namespace, pool))
        if body is None:
            self._claims.pop((namespace, pool), None)
            return _NO_CLAIMS
        version = str(body["metadata"].get("resourceVersion", ""))
        found = self._claims.get((namespace, pool))
        if found is None or found[0] != version:
            found = (version, ClaimIndex.of(claims_of(body.get("status") or {})))
            self._claims[(namespace, pool)] = found
        return found[1]

    def sandbox_key(self, sandbox: models.Sandbox) -> Key | None:
        """Whom a change of the sandbox concerns: its session; for a pool's sandbox, the
        session that claimed it, else the pool."""
        key = session_key_of(sandbox)
        if key is not None:
            return key
        pool = pool_of(sandbox.labels, sandbox.annotations)
        if pool is None:
            return None
        namespace, name, _ = pool
        claim = self.claims(namespace, name).by_sandbox.get(sandbox.name)
        holder = claim.session if claim is not None else self.store.holder(namespace, sandbox.name)
        if holder is not None:
            return Key(Kind.SESSION, namespace, holder)
        return Key(Kind.POOL, namespace, name)

    def _overlaid(self, key: Key, body: dict[str, Any] | None) -> dict[str, Any] | None:
        written = self.written.get(key)
        if written is None or body is None:
            return body
        if not _older(body["metadata"].get("resourceVersion", ""), written.version):
            del self.written[key]  # the store has caught up with (or passed) our write
            return body
        return merge_patch(body, written.patch)

    def wrote(self, key: Key, resource_version: str | None, patch: dict[str, Any]) -> None:
        """Remember an own write (see `written`); None: the object was gone."""
        if resource_version is None:
            return
        if key not in self.written:
            stored = {
                Kind.SESSION: self.store.session,
                Kind.POLICY: self.store.policy,
                Kind.POOL: self.store.pool,
            }[key.kind](key.namespace, key.name)
            if stored is not None and not _older(
                stored["metadata"].get("resourceVersion", ""), resource_version
            ):
                return  # the watch delivered it before the answer came: the store is current
        previous = self.written.get(key)
        combined = merge_patch(previous.patch, patch) if previous is not None else dict(patch)
        combined = merge_patch(combined, {"metadata": {"resourceVersion": resource_version}})
        versions = previous.versions if previous is not None else frozenset()
        self.written[key] = OwnWrites(resource_version, combined, versions | {resource_version})

    def own_event(self, key: Key, resource_version: str) -> bool:
        """Whether a watch event is the echo of one of the operator's own writes."""
        written = self.written.get(key)
        if written is None:
            return False
        if written.version == resource_version:
            del self.written[key]
            return True
        if resource_version in written.versions:
            return True  # an earlier write of ours: the overlay already holds what follows
        if not _older(resource_version, written.version):
            del self.written[key]  # something newer than our write: the store is current
        return False

    async def write_status(
        self, key: Key, status: dict[str, Any], *, resource_version: str | None = None
    ) -> str | None:
        """Merge-patch the object's status (a compare-and-set with `resource_version`:
        KubeConflict when it moved); the new resourceVersion, None when it is gone."""
        written = await self.kube.patch_status(
            PLURALS[key.kind], key.namespace, key.name, status, resource_version=resource_version
        )
        self.wrote(key, written, {"status": status})
        return written

    def forget(self, key: Key, uid: str | None) -> None:
        """The object is gone: drop what was kept about it."""
        self.queue.discard(key)
        self.written.pop(key, None)
        self.settling.pop(key, None)
        if uid:
            self.events.forget(uid)
            self.metrics.forget_session(uid)
            self.pools.forget(uid)

    @staticmethod
    def ref(kind: Kind, namespace: str, name: str, uid: str) -> ObjectRef:
        return ObjectRef(kind.value, _API, namespace, name, uid)

    def post(self, kind: Kind, body: Mapping[str, Any], events: Iterable[EventSpec]) -> None:
        """Post Events about an object (through the recorder: aggregated, rate-limited)."""
        meta = body["metadata"]
        ref = self.ref(kind, meta["namespace"], meta["name"], meta["uid"])
        for event in events:
            self.events.post(ref, event)

    # -- policies --------------------------------------------------------------------

    def remember_policy(self, desired: DesiredPolicy) -> None:
        """Keep a translated policy by revision: it may be some sandbox's baseline."""
        self._baselines.put(desired.revision, desired.policy)

    def translate(self, namespace: str, body: Mapping[str, Any]) -> DesiredPolicy | PolicyProblem:
        """A SidecarPolicy translated (once per generation), unless it uses a mode its
        namespace's tenancy rules do not allow: then it is refused and never sent. The
        platform's egress guard is merged in, less the exemptions those rules grant."""
        selected = self.store.tenancy(namespace)
        allow = selected.rules.egress.allowance if isinstance(selected, Selected) else NO_ALLOWANCE
        found = self._translated(namespace, body, allow)
        if isinstance(found, DesiredPolicy):
            refused = policy_refusal(selected, body.get("spec") or {})
            if refused is not None:
                return PolicyProblem(found.name, Reason.TENANCY_REFUSED, refused)
        return found

    def ask_of(self, body: Mapping[str, Any]) -> Ask | None:
        """What a stored session asks for (after its family's defaults); None when its spec
        cannot be read."""
        try:
            spec = SessionSpec.model_validate(body.get("spec") or {})
        except ValueError:
            return None
        gateway = self.session_gateway(spec, body.get("status") or {})
        defaults = self.config.families[spec.family]
        shape = sandbox_shape(spec, defaults)
        return ask_of(spec, shape, gateway, len(session_ports(spec, defaults)))

    def session_gateway(self, spec: SessionSpec, status: Mapping[str, Any]) -> str:
        """The session's gateway: as named, else the one its sandbox was created on, else
        the configured default. Pinning to the recorded one means a later change of the
        default never moves a running session (and never leaves its first sandbox behind)."""
        recorded = (status.get("sandbox") or {}).get("gateway")
        return spec.gateway or recorded or self.config.default_gateway

    def _translated(
        self, namespace: str, body: Mapping[str, Any], allow: EgressAllowance = NO_ALLOWANCE
    ) -> DesiredPolicy | PolicyProblem:
        """The policy with the egress guard merged in, less `allow`: the exemptions the
        namespace's tenancy rules grant (every pass must give the same for a namespace;
        the memo is keyed by them, so a change of the rules translates again)."""
        meta = body["metadata"]
        generation = str(meta.get("generation", meta.get("uid", "")))
        key = (namespace, meta["name"], generation, allow)
        found = self._translations.get(key)
        if found is None:
            found = resolve(meta["name"], body.get("spec") or {}, self.egress_guard, allow)
            if isinstance(found, DesiredPolicy):
                self.remember_policy(found)
            self._translations.put(key, found)
        return found

    def derived(
        self, key: tuple[str, int], compute: Callable[[], tuple[str, str, str]]
    ) -> tuple[str, str, str]:
        """Strings derived from a session's spec (by UID and generation), computed once."""
        found = self._derived.get(key)
        if found is None:
            found = compute()
            self._derived.put(key, found)
        return found

    def baseline(self, revision: str) -> Any:
        return self._baselines.get(revision)

    def classify(
        self, baseline_revision: str, baseline: Any, desired: DesiredPolicy
    ) -> ChangeClass:
        """How `desired` differs from a sandbox's baseline, computed once per pair."""
        key = (baseline_revision, desired.revision)
        found = self._classified.get(key)
        if found is None:
            found = classify_change(baseline, desired.policy)
            self._classified.put(key, found)
            self._baselines.put(baseline_revision, baseline)
        return found


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`target` with a JSON merge patch (RFC 7386) applied: None removes a key."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out


def _older(version: str, than: str) -> bool:
    """Whether resourceVersion `version` predates `than`. Opaque by the API's rules, but
    etcd revisions in practice; anything unparsable counts as not older (the overlay is
    dropped, at worst costing a redundant write, never hiding a newer change)."""
    try:
        return int(version) < int(than)
    except ValueError:
        return False


def _admits(gateway: GatewayConfig, sandbox: models.Sandbox) -> bool:
    return in_its_workspace(gateway, sandbox.workspace, sandbox.labels, sandbox.annotations)


def session_key_of(sandbox: models.Sandbox) -> Key | None:
    """The reconcile key of the session a sandbox belongs to, from its labels."""
    owner = session_of(sandbox.labels, sandbox.annotations)
    if owner is None:
        return None
    namespace, name, _ = owner
    return Key(Kind.SESSION, namespace, name)
