"""A work queue of object keys, as controller-runtime's: the one place reconcile work waits.

Everything that may need a reconcile (a watch event, a sandbox changing on its gateway, a
deadline, a retry) only *adds a key*; bounded workers take keys one at a time and run the
pass. The properties that make this scale, each from client-go's workqueue:

- **De-duplicated**: a key waiting in the queue is queued once, however often it is added,
  so a burst of events for one object costs one pass.
- **One worker per key**: a key being processed is never handed to a second worker; adding
  it meanwhile marks it dirty, and it is queued again once the first pass is done, so the
  change is never lost and never handled twice at once.
- **Delayed adds** (`add_after`): deadlines (a TTL, a retry) are timers on the event loop,
  not polls; the earliest pending deadline per key wins.
- **Per-key back-off** (`add_rate_limited`): jittered exponential delays that grow with the
  key's consecutive failures, reset by `forget` after a success.

Pure asyncio with no knowledge of Kubernetes or gateways; `QueueObserver` lets the metrics
module count without this module importing it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Backoff", "QueueObserver", "QueueShutDown", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """`get` on a queue that was shut down: the worker should exit."""


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential back-off: a random delay between half and all of
    `min(maximum, base * 2**failures)`; jitter spreads retries of many keys apart."""

    base: float = 0.5
    maximum: float = 60.0

    def delay(self, failures: int, rng: random.Random) -> float:
        ceiling = min(self.maximum, self.base * 2 ** min(failures, 30))
        return rng.uniform(ceiling / 2, ceiling)


class QueueObserver:
    """Hooks for metrics; the defaults do nothing."""

    def added(self, depth: int) -> None:
        """A key entered the queue; `depth` is the number now waiting."""

    def taken(self, waited: float, depth: int) -> None:
        """A worker took a key that waited `waited` seconds."""

    def finished(self, seconds: float) -> None:
        """A worker finished a key after `seconds`."""

    def retried(self) -> None:
        """A key was added with back-off after a failure."""


class WorkQueue(Generic[K]):
    """Keys waiting for a worker; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        backoff: Backoff = Backoff(),
        observer: QueueObserver | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff = backoff
        self._observer = observer or QueueObserver()
        self._rng = rng or random.Random()
        self._clock = clock
        self._order: deque[K] = deque()
        self._queued: dict[K, float] = {}
        """Keys waiting, with when they were added (for the queue-duration metric)."""
        self._processing: dict[K, float] = {}
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}
        self._ready = asyncio.Event()
        self._shut_down = False
        self.done_count = 0
        """Passes finished since the queue was made."""
        self._active = clock()

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._queued or key in self._processing

    @property
    def processing(self) -> int:
        return len(self._processing)

    # -- adding ---------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue `key` now (once, however often it is added while it waits)."""
        if self._shut_down:
            return
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()  # what it was waiting for happens now
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._active = self._queued[key] = self._clock()
        self._order.append(key)
        self._ready.set()
        self._observer.added(len(self._order))

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds, unless it is due earlier anyway."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def add_rate_limited(self, key: K) -> float:
        """Queue `key` after its back-off, which grows with each call until `forget`."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = self._backoff.delay(failures, self._rng)
        self._observer.retried()
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        """Consecutive `add_rate_limited` calls since the last `forget`."""
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the back-off afresh."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """Drop every trace of a key that no longer exists (its object was deleted)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)
        self._dirty.discard(key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    # -- taking ---------------------------------------------------------------------------

    async def get(self) -> K:
        """The next key; the caller must call `done(key)` when its pass is over."""
        while True:
            if self._shut_down:
                raise QueueShutDown
            if self._order:
                break
            self._ready.clear()
            await self._ready.wait()
        key = self._order.popleft()
        added = self._queued.pop(key)
        now = self._clock()
        self._processing[key] = now
        self._observer.taken(now - added, len(self._order))
        return key

    def done(self, key: K) -> None:
        self.done_count += 1
        self._active = self._clock()
        started = self._processing.pop(key, None)
        if started is not None:
            self._observer.finished(self._clock() - started)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shut_down(self) -> None:
        """Stop handing out keys; waiting workers get QueueShutDown."""
        self._shut_down = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._ready.set()

    def pending_timers(self) -> int:
        return len(self._timers)

    def quiet_for(self) -> float:
        """Seconds since a key was last queued or a pass last finished; 0 while one runs."""
        if self._order or self._processing:
            return 0.0
        return self._clock() - self._active
