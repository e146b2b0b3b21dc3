"""Ending background tasks: cancel them, wait for them, and let the caller's own
cancellation through.

Awaiting each cancelled task under `suppress(CancelledError)` also swallows a cancellation
aimed at the caller while it waits (a timeout around a shutdown then returns instead of
raising); `asyncio.wait` does not raise the tasks' outcomes, so a cancellation that arrives
there is the caller's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended. Their cancellation is the expected end;
    an error a task ended with instead is raised (the first one)."""
    ending = list(tasks)
    for task in ending:
        task.cancel()
    if not ending:
        return
    await asyncio.wait(ending)
    for task in ending:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
