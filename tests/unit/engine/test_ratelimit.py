"""Token buckets: a burst at once, then the rate; zero means unlimited."""

from __future__ import annotations

import asyncio
import time

from helmdeck_operator.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)

    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.1  # one token back
    assert [bucket.try_take() for _ in range(2)] == [True, False]
    clock.now = 100  # never more than the burst
    assert sum(bucket.try_take() for _ in range(10)) == 3


def test_a_rate_of_zero_never_limits() -> None:
    bucket = TokenBucket(rate=0, burst=1)
    assert bucket.unlimited
    assert all(bucket.try_take() for _ in range(10_000))


async def test_take_waits_for_the_rate() -> None:
    bucket = TokenBucket(rate=50, burst=1)
    started = time.monotonic()
    await asyncio.gather(*(bucket.take() for _ in range(6)))
    # One at once, five more at 50/s.
    assert time.monotonic() - started >= 0.09
