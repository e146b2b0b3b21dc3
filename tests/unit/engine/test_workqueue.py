"""The work queue's guarantees, each pinned: de-duplication, one worker per key, delayed
adds where the earliest wins, per-key back-off, shutdown."""

from __future__ import annotations

import asyncio
import random

import pytest

from helmdeck_operator.workqueue import Backoff, QueueObserver, QueueShutDown, WorkQueue


async def take_all(queue: WorkQueue[str]) -> list[str]:
    taken = []
    while len(queue):
        key = await queue.get()
        taken.append(key)
        queue.done(key)
    return taken


async def test_a_key_added_many_times_while_waiting_is_taken_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "b", "c"):
        queue.add(key)

    assert await take_all(queue) == ["a", "b", "c"]


async def test_a_key_added_while_processed_is_queued_again_after_done_not_before() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")  # a change arrives during the pass
    queue.add("a")

    assert len(queue) == 0  # never handed to a second worker meanwhile
    assert "a" in queue
    queue.done(key)
    assert len(queue) == 1
    assert await take_all(queue) == ["a"]


async def test_add_after_fires_once_at_the_earliest_deadline() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.2)
    queue.add_after("a", 0.05)  # earlier: replaces
    queue.add_after("a", 0.5)  # later: ignored
    assert queue.pending_timers() == 1

    started = asyncio.get_running_loop().time()
    key = await asyncio.wait_for(queue.get(), timeout=1)
    waited = asyncio.get_running_loop().time() - started
    queue.done(key)

    assert key == "a"
    assert 0.04 <= waited < 0.2
    await asyncio.sleep(0.5)
    assert len(queue) == 0  # the replaced timers never fire


async def test_an_immediate_add_cancels_the_pending_timer() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.1)
    queue.add("a")
    assert queue.pending_timers() == 0
    assert await take_all(queue) == ["a"]
    await asyncio.sleep(0.15)
    assert len(queue) == 0


async def test_back_off_grows_with_failures_and_forget_starts_it_afresh() -> None:
    queue: WorkQueue[str] = WorkQueue(backoff=Backoff(base=1.0, maximum=8.0), rng=random.Random(1))
    delays = [queue.add_rate_limited("a") for _ in range(6)]

    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert queue.failures("a") == 6
    queue.forget("a")
    assert queue.failures("a") == 0
    assert 0.5 <= queue.add_rate_limited("a") <= 1.0
    queue.shut_down()


def test_jittered_back_off_spreads_retries_of_many_keys() -> None:
    backoff, rng = Backoff(base=1.0, maximum=60.0), random.Random(7)
    delays = {round(backoff.delay(5, rng), 3) for _ in range(50)}
    assert len(delays) > 40
    assert all(16 <= d <= 32 for d in delays)


async def test_discard_drops_timers_failures_and_dirtiness() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_rate_limited("a")
    queue.discard("a")
    assert queue.failures("a") == 0
    assert queue.pending_timers() == 0


async def test_shut_down_wakes_waiting_workers_and_stops_adds() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shut_down()
    with pytest.raises(QueueShutDown):
        await waiter
    queue.add("a")
    assert len(queue) == 0


async def test_the_observer_sees_adds_waits_passes_and_retries() -> None:
    seen: list[str] = []

    class Recorder(QueueObserver):
        def added(self, depth: int) -> None:
            seen.append(f"added {depth}")

        def taken(self, waited: float, depth: int) -> None:
            seen.append(f"taken {depth}")

        def finished(self, seconds: float) -> None:
            seen.append("finished")

        def retried(self) -> None:
            seen.append("retried")

    queue: WorkQueue[str] = WorkQueue(observer=Recorder())
    queue.add("a")
    queue.add("b")
    await take_all(queue)
    queue.add_rate_limited("a")
    queue.shut_down()

    assert seen == [
        "added 1",
        "added 2",
        "taken 1",
        "finished",
        "taken 0",
        "finished",
        "retried",
    ]


async def test_quiet_time_counts_from_the_last_add_or_finished_pass() -> None:
    now = [100.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    now[0] = 105.0
    assert queue.quiet_for() == 5.0
    queue.add("a")
    assert queue.quiet_for() == 0.0  # waiting
    key = await queue.get()
    now[0] = 106.0
    assert queue.quiet_for() == 0.0  # running
    queue.done(key)
    now[0] = 109.0
    assert queue.quiet_for() == 3.0
