"""The controller: workers that run reconcile passes from the queue, and the background work.

kopf watches the two kinds, fills the indexes the passes read, and hands every relevant
watch event to `on_session_event` / `on_policy_event`, which only add keys to the queue.
From there the controller-runtime model takes over:

    kopf watch events ─┐
    gateway caches  ───┼──> WorkQueue ──> N workers ──> reconcile_session / reconcile_policy
    timers (TTL, retry)┘    (de-duplicated keys,          │
                             one worker per key)          └──> Outcome: done, requeue after a
                                                               delay, back off, or wait for
                                                               the gateway to come back

A failing pass backs off per key (jittered, doubling up to 60 s); one that failed because
its gateway is down is parked on that gateway's cache instead, and all parked keys are
woken together, at a bounded rate, when the gateway answers again. Beside the workers run
the orphan sweep and one OCSF denial poller per gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import time
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from helmdeck_operator.kube import KubeError
from helmdeck_operator.ratelimit import TokenBucket
from helmdeck_operator.reconcile.denials import DenialPoller
from helmdeck_operator.reconcile.policy import reconcile_policy
from helmdeck_operator.reconcile.pool import reconcile_pool
from helmdeck_operator.reconcile.session import Outcome, reconcile_session
from helmdeck_operator.reconcile.sweep import sweep_orphans
from helmdeck_operator.runtime import Key, Kind, Runtime, policy_ref
from helmdeck_operator.tasks import cancel_and_wait
from helmdeck_operator.workqueue import QueueShutDown

__all__ = ["POLICY_STATUS_DELAY_S", "Controller"]

logger = logging.getLogger(__name__)

#: A session's status change re-queues its policy this much later, so a rollout over many
#: sessions recounts (and rewrites the policy's status) a few times a second at most.
POLICY_STATUS_DELAY_S = 0.5
#: How often memory is looked after, how many passes since the last time make it worth it,
#: how often the full collection runs, and how long the queue must have been quiet for it.
MEMORY_CHECK_S = 10.0
MEMORY_TIDY_AFTER_PASSES = 200
MEMORY_FULL_S = 600.0
MEMORY_QUIET_S = 5.0


class Controller:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._tasks: list[asyncio.Task[None]] = []
        self._wakes: deque[Hashable] = deque()
        self._wake_ready = asyncio.Event()
        self._wake_bucket = TokenBucket(rt.config.rate_limits.recovery_wakes_per_second, 50)

    # -- life -------------------------------------------------------------------------

    async def start(self) -> None:
        rt = self.rt
        await rt.start()
        self._spawn(self._waker(), "waker")
        for i in range(rt.config.concurrency.workers):
            self._spawn(self._worker(), f"worker-{i}")
        self._spawn(self._sweep_forever(), "orphan-sweep")
        self._spawn(self._tidy_memory_forever(), "memory-tidy")
        if rt.config.observability.follow_denials:
            for name, cache in rt.caches.items():
                self._spawn(DenialPoller(rt, cache).run(), f"denials-{name}")

    async def stop(self) -> None:
        self.rt.queue.shut_down()
        await cancel_and_wait(self._tasks)
        await self.rt.close()

    def _spawn(self, work: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    # -- what kopf hands over --------------------------------------------------------

    def on_session_event(self, type_: str | None, body: Mapping[str, Any]) -> None:
        rt = self.rt
        meta = body["metadata"]
        key = Key(Kind.SESSION, meta["namespace"], meta["name"])
        deleted = type_ == "DELETED"
        previous = rt.store.track(key.namespace, key.name, None if deleted else body)
        for woken in rt.quota.track(key.namespace, key.name, None if deleted else body):
            rt.queue.add(Key(Kind.SESSION, key.namespace, woken))  # room was given back
        for name in {None if deleted else policy_ref(body), previous} - {None}:
            # Its bound/loaded counts may have moved.
            rt.queue.add_after(Key(Kind.POLICY, key.namespace, str(name)), POLICY_STATUS_DELAY_S)
        if deleted:
            rt.forget(key, meta.get("uid"))
            pool = ((body.get("spec") or {}).get("poolRef") or {}).get("name")
            if pool:
                rt.queue.add(Key(Kind.POOL, key.namespace, str(pool)))  # its claim may go
        elif not rt.own_event(key, str(meta.get("resourceVersion", ""))):
            rt.queue.add(key)

    def on_tenancy_event(self, namespace: str | None) -> None:
        """A TenantPolicy (namespace None) or a namespace's labels changed: the sessions its
        rules held back look again."""
        for ns, name in self.rt.quota.held_back(namespace):
            self.rt.queue.add(Key(Kind.SESSION, ns, name))
        for ns, name in self.rt.store.policy_names(namespace):
            self.rt.queue.add(Key(Kind.POLICY, ns, name))  # a mode may be allowed now, or not

    def on_policy_event(self, type_: str | None, body: Mapping[str, Any]) -> None:
        rt = self.rt
        meta = body["metadata"]
        key = Key(Kind.POLICY, meta["namespace"], meta["name"])
        if type_ == "DELETED":
            rt.queue.add(key)  # its pass wakes the bound sessions
            rt.written.pop(key, None)
            return
        if not rt.own_event(key, str(meta.get("resourceVersion", ""))):
            rt.queue.add(key)
            for pool in rt.store.pools_on(key.namespace, key.name):
                rt.queue.add(Key(Kind.POOL, key.namespace, pool))  # their baseline

    def on_pool_event(self, type_: str | None, body: Mapping[str, Any]) -> None:
        rt = self.rt
        meta = body["metadata"]
        key = Key(Kind.POOL, meta["namespace"], meta["name"])
        if type_ == "DELETED":
            rt.forget(key, None)
            rt.metrics.forget_pool(key.namespace, key.name)
            for _, request, _ in rt.pools.waiting((key.namespace, key.name)):
                rt.queue.add(Key(Kind.SESSION, key.namespace, request.session))
            return
        if not rt.own_event(key, str(meta.get("resourceVersion", ""))):
            rt.queue.add(key)

    def wake_many(self, keys: Iterable[Hashable]) -> None:
        """Queue many keys at a bounded rate (a gateway back after an outage)."""
        self._wakes.extend(keys)
        self._wake_ready.set()

    # -- the loops --------------------------------------------------------------------

    async def _waker(self) -> None:
        while True:
            if not self._wakes:
                self._wake_ready.clear()
                await self._wake_ready.wait()
                continue
            await self._wake_bucket.take()
            key = self._wakes.popleft()
            if isinstance(key, Key):
                self.rt.queue.add(key)

    async def _worker(self) -> None:
        queue = self.rt.queue
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            try:
                outcome = await self._process(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except KubeError as err:
                logger.warning("%s %s/%s: %s", key.kind.value, key.namespace, key.name, err)
                self.rt.metrics.record_error(key.kind.value, "KubernetesAPIError")
                outcome = Outcome(failing=True)
            except Exception:  # a pass must never take a worker down; back off and retry
                logger.exception("%s %s/%s: reconcile failed", key.kind.value, *key[1:])
                self.rt.metrics.record_error(key.kind.value, "InternalError")
                outcome = Outcome(failing=True)
            self._apply(key, outcome)
            queue.done(key)

    async def _process(self, key: Key) -> Outcome:
        if key.kind is Kind.SESSION:
            return await reconcile_session(self.rt, key)
        if key.kind is Kind.POOL:
            return await reconcile_pool(self.rt, key)
        return await reconcile_policy(self.rt, key)

    def _apply(self, key: Key, outcome: Outcome) -> None:
        queue = self.rt.queue
        if outcome.failing:
            cache = self.rt.caches.get(outcome.gateway) if outcome.gateway else None
            if cache is not None and not cache.up:
                cache.park(key)  # woken when the gateway answers again
            else:
                queue.add_rate_limited(key)
            return
        queue.forget(key)
        if outcome.requeue_after is not None:
            queue.add_after(key, outcome.requeue_after)

    async def _tidy_memory_forever(self) -> None:
        """Keep the garbage collector's pauses and the process's size small.

        The operator holds many long-lived objects (the indexes, the caches): a full
        collection of them by Python's cyclic garbage collector takes about 200 ms at 5,000
        sessions, a pause any pass in flight would wait out. So after much work the
        survivors are frozen (`gc.freeze`, cheap: later collections skip them), glibc is
        asked to hand back what a burst freed (`malloc_trim`; it keeps freed memory
        otherwise), and the one full collection (cycles among frozen objects) runs every
        `MEMORY_FULL_S`, at a moment the queue has been quiet for `MEMORY_QUIET_S`."""
        done, full = 0, time.monotonic()
        while True:
            await asyncio.sleep(MEMORY_CHECK_S)
            queue = self.rt.queue
            quiet = queue.quiet_for() >= MEMORY_QUIET_S
            if queue.done_count - done >= MEMORY_TIDY_AFTER_PASSES:
                done = queue.done_count
                gc.freeze()
                if quiet:
                    _malloc_trim()
            if quiet and time.monotonic() - full >= MEMORY_FULL_S:
                full = time.monotonic()
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                _malloc_trim()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rt.config.intervals.orphan_sweep_seconds)
            try:
                self.rt.metrics.record_orphans(await sweep_orphans(self.rt))
            except Exception:  # a sweep must never take the operator down; the next one retries
                logger.exception("orphan sweep failed")


def _malloc_trim() -> None:
    """glibc's malloc_trim(0); nothing on a C library without it."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(name).malloc_trim(0)
