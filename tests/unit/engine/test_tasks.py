"""cancel_and_wait: background tasks end, their errors surface, the caller's own
cancellation is never swallowed."""

from __future__ import annotations

import asyncio

import pytest

from helmdeck_operator.tasks import cancel_and_wait


async def test_every_task_is_cancelled_and_has_ended() -> None:
    tasks = [asyncio.create_task(asyncio.sleep(60)) for _ in range(3)]

    await cancel_and_wait(tasks)

    assert all(task.done() and task.cancelled() for task in tasks)


async def test_nothing_to_end_returns_at_once() -> None:
    await cancel_and_wait([])


async def test_an_error_a_task_ended_with_is_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("the watch broke")

    broken = asyncio.create_task(fails())
    await asyncio.sleep(0)  # it has ended with its error before the shutdown
    sleeping = asyncio.create_task(asyncio.sleep(60))

    with pytest.raises(RuntimeError, match="the watch broke"):
        await cancel_and_wait([broken, sleeping])
    assert sleeping.cancelled()


async def test_the_callers_own_cancellation_propagates() -> None:
    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(60)  # cleanup that takes long
            raise

    stubborn = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait([stubborn]))
    await asyncio.sleep(0.01)

    stopping.cancel()  # e.g. a timeout around the shutdown
    done, _ = await asyncio.wait({stopping}, timeout=5)

    assert stopping in done
    assert stopping.cancelled()  # raised to the caller, not swallowed
    stubborn.cancel()
    await asyncio.wait({stubborn})
