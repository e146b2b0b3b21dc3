"""Token buckets: how fast the operator may call its gateways and the Kubernetes API.

A bucket holds up to `burst` tokens and refills at `rate` per second; every call takes one,
waiting when none is left. A burst of work therefore starts at full speed and then settles
at the configured rate, and a reconcile storm (thousands of sessions at once, a recovery
after an outage) cannot overrun the apiserver or a gateway however many workers run.
A rate of 0 means unlimited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self) -> bool:
        """Take a token if one is there now; never waits."""
        if self.unlimited:
            return True
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a token, waiting for one; callers are served in arrival order."""
        if self.unlimited or (not self._lock.locked() and self.try_take()):
            return
        async with self._lock:  # FIFO: the waiter at the head sleeps, the others queue
            while not self.try_take():  # noqa: ASYNC110 - a refill is time, not an event
                await asyncio.sleep((1 - self._tokens) / self.rate)
