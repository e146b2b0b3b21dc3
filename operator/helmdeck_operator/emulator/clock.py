"""Time for the emulator, injectable so tests can step it instead of sleeping.

Transitions (PROVISIONING -> READY, policy loads, deletions) are due at a monotonic instant;
timestamps shown to clients come from wall time. `ManualClock` lets unit tests of the state
machine advance time explicitly and deterministically.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """What the state machine needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; used for due times."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch; used for timestamps in responses."""
        ...


class SystemClock:
    """The real clocks, for the running emulator."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; wall time tracks it from a fixed epoch."""

    def __init__(self, start: float = 1_000.0, epoch: float = 1_767_225_600.0) -> None:
        self._now = start
        self._offset = epoch - start

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._offset

    def advance(self, seconds: float) -> None:
        self._now += seconds
