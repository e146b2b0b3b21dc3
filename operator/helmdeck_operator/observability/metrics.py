"""Every Prometheus metric the operator exports, each with bounded labels and a recorder.

One module so the whole metrics surface reads in one sitting (docs/metrics.md is its
reference, and a test checks the two agree). Labels are bounded sets only: family, gateway
(from configuration), phase, RPC, gRPC code, reason, namespace for denials, namespace and
name of a SessionPool (few objects, written by platform teams); never a session or sandbox
name. Metrics live in their own registry so tests get a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from helmdeck_operator.gateway.client import CallRecord
from helmdeck_operator.workqueue import QueueObserver

__all__ = ["Metrics", "SessionGauge"]

#: Seconds: sandboxes take from well under a second (pods, warm) to minutes (cold MicroVMs).
READY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
#: Seconds: a policy edit reaches all bound sessions within one to a few reconcile passes.
PROPAGATION_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
#: Seconds: one gateway round trip.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Seconds: a key's wait in the work queue, and one reconcile pass.
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Seconds: a claim from a warm pool only binds a booted sandbox and loads its policy.
CLAIM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 1, 2.5, 5)


class GatewayView(Protocol):
    """What the gateway gauges read from each gateway's sandbox cache at scrape time."""

    @property
    def up(self) -> bool: ...

    @property
    def watches(self) -> int: ...

    def __len__(self) -> int: ...


@dataclass(eq=False)
class GatewayGauges(Collector):
    """helmdeck_gateway_up / _cached_sandboxes / _watches{gateway}, read at scrape time."""

    caches: Mapping[str, GatewayView] = field(default_factory=dict)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "helmdeck_gateway_up",
            "1 while the gateway answers, 0 while it is down (an outage, or it cannot be listed).",
            labels=["gateway"],
        )
        cached = GaugeMetricFamily(
            "helmdeck_gateway_cached_sandboxes",
            "This instance's sandboxes in the gateway's cache.",
            labels=["gateway"],
        )
        watches = GaugeMetricFamily(
            "helmdeck_gateway_watches",
            "WatchSandbox streams open for sandboxes in transition.",
            labels=["gateway"],
        )
        for name, cache in sorted(self.caches.items()):
            up.add_metric([name], 1 if cache.up else 0)
            cached.add_metric([name], len(cache))
            watches.add_metric([name], cache.watches)
        yield up
        yield cached
        yield watches


class _QueueMetrics(QueueObserver):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def added(self, depth: int) -> None:
        self._m.queue_adds.inc()
        self._m.queue_depth.set(depth)

    def taken(self, waited: float, depth: int) -> None:
        self._m.queue_depth.set(depth)
        self._m.queue_wait.observe(waited)

    def finished(self, seconds: float) -> None:
        self._m.queue_work.observe(seconds)

    def retried(self) -> None:
        self._m.queue_retries.inc()


@dataclass(eq=False)  # registries key collectors by identity
class SessionGauge(Collector):
    """helmdeck_sessions{phase,family,gateway}: computed at scrape time from what each
    session's last reconcile pass reported, so a deleted session simply disappears."""

    by_uid: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "helmdeck_sessions",
            "HelmdeckSessions known to this operator, by phase, family and gateway.",
            labels=["phase", "family", "gateway"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for key in self.by_uid.values():
            counts[key] = counts.get(key, 0) + 1
        for (phase, family, gateway), count in sorted(counts.items()):
            gauge.add_metric([phase, family, gateway], count)
        yield gauge


class PoolCounts(NamedTuple):
    """A SessionPool's sandboxes, as its last pass counted them."""

    ready: int
    provisioning: int
    claimed: int
    target: int


@dataclass(eq=False)  # registries key collectors by identity
class PoolGauges(Collector):
    """helmdeck_pool_{ready,provisioning,claimed,target}_sandboxes{namespace,pool}: computed
    at scrape time from what each SessionPool's last pass counted, so a deleted pool simply
    disappears."""

    by_pool: dict[tuple[str, str], PoolCounts] = field(default_factory=dict)

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "pool"]
        ready = GaugeMetricFamily(
            "helmdeck_pool_ready_sandboxes",
            "Idle sandboxes of the pool, booted with its baseline policy, ready to be claimed.",
            labels=labels,
        )
        provisioning = GaugeMetricFamily(
            "helmdeck_pool_provisioning_sandboxes",
            "Idle sandboxes of the pool still booting.",
            labels=labels,
        )
        claimed = GaugeMetricFamily(
            "helmdeck_pool_claimed_sandboxes",
            "Sandboxes of the pool claimed by sessions.",
            labels=labels,
        )
        target = GaugeMetricFamily(
            "helmdeck_pool_target_sandboxes",
            "Idle ready sandboxes the pool keeps (spec.replicas).",
            labels=labels,
        )
        for (namespace, pool), counts in sorted(self.by_pool.items()):
            ready.add_metric([namespace, pool], counts.ready)
            provisioning.add_metric([namespace, pool], counts.provisioning)
            claimed.add_metric([namespace, pool], counts.claimed)
            target.add_metric([namespace, pool], counts.target)
        yield ready
        yield provisioning
        yield claimed
        yield target


class Metrics:
    """The registry and a `record_*` method per thing worth counting."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions = SessionGauge()
        self.registry.register(self.sessions)
        self.gateways = GatewayGauges()
        self.registry.register(self.gateways)
        self.pools = PoolGauges()
        self.registry.register(self.pools)
        self.queue_depth = Gauge(
            "helmdeck_workqueue_depth",
            "Keys waiting in the reconcile work queue.",
            registry=self.registry,
        )
        self.queue_adds = Counter(
            "helmdeck_workqueue_adds",
            "Keys added to the work queue (a key already waiting is not added again).",
            registry=self.registry,
        )
        self.queue_retries = Counter(
            "helmdeck_workqueue_retries",
            "Keys re-queued with back-off after a failed pass.",
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "helmdeck_workqueue_queue_duration_seconds",
            "How long a key waited in the work queue before a worker took it.",
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.queue_work = Histogram(
            "helmdeck_workqueue_work_duration_seconds",
            "How long one reconcile pass took.",
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.events_dropped = Counter(
            "helmdeck_events_dropped",
            "Kubernetes Events not posted: the per-object spam filter or a full backlog.",
            ["reason"],
            registry=self.registry,
        )
        self.time_to_ready = Histogram(
            "helmdeck_session_time_to_ready_seconds",
            "From a session's creation to its first Ready (sandbox READY, policy loaded).",
            ["family", "gateway"],
            buckets=READY_BUCKETS,
            registry=self.registry,
        )
        self.propagation = Histogram(
            "helmdeck_policy_propagation_seconds",
            "From a SidecarPolicy change being seen to its revision loaded on every bound session.",
            buckets=PROPAGATION_BUCKETS,
            registry=self.registry,
        )
        self.gateway_requests = Counter(
            "helmdeck_gateway_requests",
            "Gateway RPC attempts, by gateway, RPC and gRPC status code.",
            ["gateway", "rpc", "code"],
            registry=self.registry,
        )
        self.gateway_latency = Histogram(
            "helmdeck_gateway_request_duration_seconds",
            "Gateway RPC attempt latency, by gateway and RPC.",
            ["gateway", "rpc"],
            buckets=RPC_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "helmdeck_reconcile_errors",
            "Reconcile passes that met a gateway or API problem, by kind and reason.",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.orphans = Counter(
            "helmdeck_orphans_collected",
            "Sandboxes deleted by the orphan sweep because their session was gone.",
            ["gateway"],
            registry=self.registry,
        )
        self.expiries = Counter(
            "helmdeck_session_expiries",
            "Sessions that reached the end of their lifetime, by family and onExpiry.",
            ["family", "on_expiry"],
            registry=self.registry,
        )
        self.idles = Counter(
            "helmdeck_session_idles",
            "Sessions that went idle (no renewal, no sandbox activity), by family and onIdle.",
            ["family", "on_idle"],
            registry=self.registry,
        )
        self.denials = Counter(
            "helmdeck_policy_denials",
            "OCSF policy-denial events from sandboxes, by session namespace and family.",
            ["namespace", "family"],
            registry=self.registry,
        )
        self.pool_claim = Histogram(
            "helmdeck_pool_claim_seconds",
            "From a session asking its SessionPool for a sandbox to the session Ready.",
            ["family"],
            buckets=CLAIM_BUCKETS,
            registry=self.registry,
        )
        self.pool_fallbacks = Counter(
            "helmdeck_pool_fallbacks",
            "Sessions that named a SessionPool and were created cold, by family and reason.",
            ["family", "reason"],
            registry=self.registry,
        )

    # -- recorders ------------------------------------------------------------------------
    def queue_observer(self) -> QueueObserver:
        return _QueueMetrics(self)

    def watch_caches(self, caches: Mapping[str, GatewayView]) -> None:
        self.gateways.caches = caches

    def record_event_dropped(self, reason: str) -> None:
        self.events_dropped.labels(reason).inc()

    def record_call(self, call: CallRecord) -> None:
        """The gateway client's observer: one call per RPC attempt."""
        self.gateway_requests.labels(call.gateway, call.rpc, call.code).inc()
        self.gateway_latency.labels(call.gateway, call.rpc).observe(call.seconds)

    def record_session(self, uid: str, phase: str, family: str, gateway: str) -> None:
        self.sessions.by_uid[uid] = (phase, family, gateway)

    def forget_session(self, uid: str) -> None:
        self.sessions.by_uid.pop(uid, None)

    def record_ready(self, family: str, gateway: str, seconds: float) -> None:
        self.time_to_ready.labels(family, gateway).observe(max(seconds, 0.0))

    def record_propagation(self, seconds: float) -> None:
        self.propagation.observe(max(seconds, 0.0))

    def record_error(self, kind: str, reason: str) -> None:
        self.reconcile_errors.labels(kind, reason).inc()

    def record_orphans(self, deleted: Iterable[str]) -> None:
        for item in deleted:
            self.orphans.labels(item.split("/", 1)[0]).inc()

    def record_expiry(self, family: str, on_expiry: str) -> None:
        self.expiries.labels(family, on_expiry).inc()

    def record_idle(self, family: str, on_idle: str) -> None:
        self.idles.labels(family, on_idle).inc()

    def record_denials(self, namespace: str, family: str, count: int) -> None:
        self.denials.labels(namespace, family).inc(count)

    def record_pool(
        self, namespace: str, pool: str, *, ready: int, provisioning: int, claimed: int, target: int
    ) -> None:
        """What a SessionPool's pass counted: its idle sandboxes ready to claim and still
        booting, those claimed by sessions, and the idle ready count it keeps (replicas).
        Labelled by the pool's namespace and name: pools are few objects written by platform
        teams, so these labels are bounded by the number of pools (unlike session names,
        which never become labels)."""
        self.pools.by_pool[namespace, pool] = PoolCounts(ready, provisioning, claimed, target)

    def forget_pool(self, namespace: str, pool: str) -> None:
        """The pool was deleted: its series leave the gauges (an unknown pool is ignored)."""
        self.pools.by_pool.pop((namespace, pool), None)

    def record_claim(self, family: str, seconds: float) -> None:
        """From a session asking its pool for a sandbox to that session Ready (the policy
        loaded), observed once per session claimed from a pool."""
        self.pool_claim.labels(family).observe(max(seconds, 0.0))

    def record_fallback(self, family: str, reason: str) -> None:
        """A session that named a pool was created cold instead; `reason` is one of
        PoolEmpty, PoolShapeMismatch, PoolPolicyNotLive, PoolNotFound. No pool label: a
        PoolNotFound session names a pool that does not exist, chosen by its author."""
        self.pool_fallbacks.labels(family, reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
