"""Whole reconcile passes without a cluster: the operator's runtime on an in-process
OpenShell emulator, with a `FakeKube` as its Kubernetes edge and kopf's indexes as plain
dicts.

`PassRig.start` builds the runtime the way the operator's start-up handler does
(`Runtime.build` with the configuration the cluster tests give the operator, `bind` to the
indexes, `start`), and a real `Controller` (never started: no workers, no sweep) receives
the watch events, so the store, the policy tallies, own-write echoes and the work queue
behave as in the operator. Nothing runs a pass by itself: a test runs them, one at a time,
and decides when the store sees the FakeKube's writes (`deliver`, as the watch would).

Time is the test's on both sides: the emulator runs on a `ManualClock` (a sandbox moves
only when `advance_gateway` says so) and the runtime's clock (expiry, condition times) is
`PassRig.now`, moved by `advance_time`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_dev.objects import condition
from helmdeck_dev.operator_process import write_config
from helmdeck_operator.config import load_config
from helmdeck_operator.controller import Controller
from helmdeck_operator.core.naming import sandbox_name
from helmdeck_operator.core.plan import EventSpec
from helmdeck_operator.emulator.clock import ManualClock
from helmdeck_operator.emulator.server import EmulatorConfig, EmulatorHandle
from helmdeck_operator.emulator.state import GatewaySettings
from helmdeck_operator.events import ObjectRef
from helmdeck_operator.handlers import trimmed
from helmdeck_operator.kube import POLICIES, POOLS, SESSIONS
from helmdeck_operator.observability.metrics import Metrics
from helmdeck_operator.observability.tracing import configure_tracing
from helmdeck_operator.reconcile.policy import reconcile_policy
from helmdeck_operator.reconcile.pool import reconcile_pool
from helmdeck_operator.reconcile.session import Outcome, reconcile_session
from helmdeck_operator.runtime import PLURALS, Cache, Key, Kind, Runtime
from tests.support.kube_edge import FakeKube

__all__ = ["GATEWAY_DELAY", "NAMESPACE", "PassRig", "eventually"]

NAMESPACE = "team-a"
#: Every transition of the emulated gateway takes this long on its (manual) clock: nothing
#: moves until a test advances it.
GATEWAY_DELAY = 10.0
#: Longest a test waits for something to happen (it happens in milliseconds).
WAIT_S = 5.0

T = TypeVar("T")
#: kopf's index of each plural.
_INDEXES = {SESSIONS: "session_bodies", POLICIES: "policy_bodies", POOLS: "pool_bodies"}


async def eventually(check: Callable[[], T], what: str, within: float = WAIT_S) -> T:
    """Wait until `check()` is truthy (its value); fail naming `what` after `within` s.
    For state that offers no event to wait on (the gateway cache's health)."""
    try:
        async with asyncio.timeout(within):
            while not (found := check()):  # noqa: ASYNC110 - nothing to wait on but polling
                await asyncio.sleep(0.005)
            return found
    except TimeoutError:
        raise AssertionError(f"timed out after {within} s waiting for {what}") from None


@dataclass
class PassRig:
    rt: Runtime
    kube: FakeKube
    emulator: EmulatorHandle
    gateway_clock: ManualClock
    controller: Controller
    indices: dict[str, dict[tuple[str, str], list[dict[str, Any]]]]
    now: datetime
    pending: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Watch events not yet delivered to the store."""
    posted: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(object kind, name, type, reason) of every Event a pass handed to the Event recorder, at
    once (the FakeKube sees them later: the recorder writes in the background, and counts
    a repeat on the existing Event instead of creating another)."""

    @classmethod
    async def start(
        cls, emulator_factory: EmulatorFactory, tmp_path: Path, **config: Any
    ) -> PassRig:
        """A started runtime on a fresh emulator; `config` overrides the configuration
        `helmdeck_dev.operator_process.write_config` writes (nested keys merge)."""
        _trace_as_the_operator_does()
        clock = ManualClock()
        emulator = await emulator_factory(
            EmulatorConfig(
                gateway=GatewaySettings(
                    workspaces=("default", "microvm"),
                    ready_delay=GATEWAY_DELAY,
                    load_delay=GATEWAY_DELAY,
                    delete_delay=GATEWAY_DELAY,
                    stop_delay=GATEWAY_DELAY,
                    start_delay=GATEWAY_DELAY,
                ),
                clock=clock,
            )
        )
        path = write_config(tmp_path / "operator.yaml", emulator.address, **config)
        operator_config = load_config(path, environ={})
        now = datetime.now(UTC).replace(microsecond=0)
        kube = FakeKube()
        holder: list[Controller] = []
        rt = Runtime.build(operator_config, kube, Metrics(), lambda keys: _wake(holder, keys))  # type: ignore[arg-type]
        indices: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {
            "session_bodies": {},
            "policy_bodies": {},
            "pool_bodies": {},
        }
        rt.bind(indices)
        controller = Controller(rt)
        holder.append(controller)
        rig = cls(rt, kube, emulator, clock, controller, indices, now)
        kube.clock = lambda: rig.now
        rt.clock = lambda: rig.now
        kube.watchers.append(lambda *event: rig.pending.append(event))
        recorder, post = rt.events, rt.events.post

        def record(ref: ObjectRef, event: EventSpec) -> None:
            rig.posted.append((ref.kind, ref.name, str(event.type), str(event.reason)))
            post(ref, event)

        recorder.post = record  # type: ignore[method-assign]
        await rt.start()
        for cache in rt.caches.values():
            await asyncio.wait_for(cache.synced.wait(), WAIT_S)
        return rig

    async def close(self) -> None:
        self.rt.queue.shut_down()
        await self.rt.close()

    # -- objects, as a user would change them --------------------------------------------

    def put_session(
        self,
        name: str,
        family: str = "python",
        *,
        metadata: dict[str, Any] | None = None,
        **spec: Any,
    ) -> Key:
        """Create a HelmdeckSession; the store sees it (ADDED) at once."""
        meta = {"name": name, "namespace": NAMESPACE, **(metadata or {})}
        body: dict[str, Any] = {"metadata": meta, "spec": {"family": family, **spec}}
        self.kube.create(SESSIONS, body)
        self.deliver()
        return Key(Kind.SESSION, NAMESPACE, name)

    async def ready_session(
        self,
        name: str = "s1",
        family: str = "python",
        *,
        metadata: dict[str, Any] | None = None,
        **spec: Any,
    ) -> Key:
        """A new session taken through its passes to Ready (its sandbox created, booted and
        its policy loaded), its Ready Event written and every write delivered."""
        key = self.put_session(name, family, metadata=metadata, **spec)
        await self.reconcile(key)
        self.advance_gateway()
        await self.woken(key)
        await self.reconcile(key)
        assert self.status(key).get("phase") == "Ready", self.status(key)
        await self.kube.wait_for(lambda: ("Normal", "Ready") in self.kube.events_about(name))
        self.deliver()
        return key

    def put_policy(self, name: str, spec: dict[str, Any], **metadata: Any) -> Key:
        body = {"metadata": {"name": name, "namespace": NAMESPACE, **metadata}, "spec": spec}
        self.kube.create(POLICIES, body)
        self.deliver()
        return Key(Kind.POLICY, NAMESPACE, name)

    def put_pool(self, name: str, family: str = "python", **spec: Any) -> Key:
        """Create a SessionPool; the store sees it (ADDED) at once."""
        body = {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"family": family, **spec},
        }
        self.kube.create(POOLS, body)
        self.deliver()
        return Key(Kind.POOL, NAMESPACE, name)

    def edit(self, key: Key, **spec: Any) -> dict[str, Any]:
        """A user's merge patch of the spec (not delivered yet)."""
        return self.kube.edit_spec(_plural(key), key.namespace, key.name, spec)

    def delete(self, key: Key) -> None:
        """A user's delete (not delivered yet)."""
        self.kube.request_deletion(_plural(key), key.namespace, key.name)

    def stored(self, key: Key) -> dict[str, Any]:
        """The object as the FakeKube holds it now."""
        found = self.kube.object(_plural(key), key.namespace, key.name)
        assert found is not None, f"{key.kind} {key.name} does not exist"
        return found

    def status(self, key: Key) -> dict[str, Any]:
        return dict(self.stored(key).get("status") or {})

    def posted_about(self, key: Key) -> list[tuple[str, str]]:
        """(type, reason) of the Events the passes posted about `key`, oldest first."""
        return [
            (type_, reason)
            for kind, name, type_, reason in self.posted
            if (kind, name) == (key.kind.value, key.name)
        ]

    def condition(self, key: Key, type_: str) -> dict[str, Any]:
        found = condition(self.stored(key), type_)
        assert found, f"{key.name} has no {type_} condition"
        return found

    # -- the watch --------------------------------------------------------------------

    def deliver(self) -> int:
        """Hand the FakeKube's changes to the store and the controller, in order, as kopf
        does (index first, then the event handler); how many there were."""
        events, self.pending = self.pending, []
        for type_, plural, body in events:
            meta = body["metadata"]
            index = _INDEXES[plural]
            where = (meta["namespace"], meta["name"])
            if type_ == "DELETED":
                self.indices[index].pop(where, None)
            else:
                self.indices[index][where] = [trimmed(body)]
            if plural == SESSIONS:
                self.controller.on_session_event(type_, body)
            elif plural == POOLS:
                self.controller.on_pool_event(type_, body)
            else:
                self.controller.on_policy_event(type_, body)
        return len(events)

    # -- passes -----------------------------------------------------------------------

    async def reconcile(self, key: Key, *, deliver: bool = True) -> Outcome:
        """Deliver what the watch has (unless told not to: the store lags behind), take
        what waits in the queue (a worker would run those passes now; this one stands for
        them), and run one pass over `key`."""
        if deliver:
            self.deliver()
        await self.drain()
        if key.kind is Kind.SESSION:
            return await reconcile_session(self.rt, key)
        if key.kind is Kind.POOL:
            outcome = await reconcile_pool(self.rt, key)
            # What the pass started beside it (its creates) is done before the test looks.
            await asyncio.gather(*list(self.rt.background))
            return outcome
        return await reconcile_policy(self.rt, key)

    async def drain(self) -> list[Key]:
        """Take every key waiting in the work queue now; which they were."""
        queue, taken = self.rt.queue, []
        while len(queue):
            key = await queue.get()  # returns at once: a key is waiting
            queue.done(key)
            taken.append(key)
        return taken

    async def woken(self, key: Key, within: float = WAIT_S) -> None:
        """Wait until `key` is queued (by the gateway's cache, a timer, an event), and take
        it; other keys queued meanwhile are taken too."""
        queue = self.rt.queue
        async with asyncio.timeout(within):
            while True:
                taken = await queue.get()
                queue.done(taken)
                if taken == key:
                    return

    def queued(self, key: Key) -> bool:
        return key in self.rt.queue

    # -- the gateway and time ------------------------------------------------------------

    @property
    def cache(self) -> Cache:
        return self.rt.caches[self.rt.config.default_gateway]

    def advance_gateway(self, seconds: float = GATEWAY_DELAY) -> None:
        """Move the emulator's clock and apply every transition that fell due."""
        self.gateway_clock.advance(seconds)
        self.emulator.gateway.tick()

    def advance_time(self, seconds: float) -> None:
        """Move the runtime's (and the FakeKube's) clock."""
        self.now += timedelta(seconds=seconds)

    def sandboxes(self) -> list[dict[str, Any]]:
        """The emulator's sandboxes as plain data."""
        return list(self.emulator.gateway.snapshot()["sandboxes"])

    def sandbox_of(self, key: Key) -> dict[str, Any] | None:
        uid = self.stored(key)["metadata"]["uid"]
        name = sandbox_name(uid)
        return next((s for s in self.sandboxes() if s["name"] == name), None)

    def gateway_calls(self, *ignored: str) -> list[str]:
        """The RPCs the emulator received, oldest first, but for the cache's own reads."""
        skip = {"ListSandboxes", "WatchSandbox", *ignored}
        return [r["method"] for r in self.emulator.requests if r["method"] not in skip]


def _plural(key: Key) -> str:
    return PLURALS[key.kind]


def _wake(holder: list[Controller], keys: Iterable[Key]) -> None:
    """The controller's bounded wake-up, minus the bound: keys are queued at once."""
    for controller in holder:
        for key in keys:
            controller.rt.queue.add(key)


def _trace_as_the_operator_does() -> None:
    """The operator always installs the SDK tracer provider, so its passes have real trace
    ids (written as status.lastTraceId); so must the passes here, whichever test ran first.
    OpenTelemetry takes the first provider installed in a process and keeps it."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        configure_tracing()
