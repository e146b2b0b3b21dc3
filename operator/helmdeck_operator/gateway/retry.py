"""When to try a failed gateway call again: a pure function of the attempt count.

Kept apart from the client so the schedule can be tested exactly (a seeded random) and
read in one place. The client sleeps for what ``next_delay`` says, or gives up when it
says None; nothing else decides about retries.
"""

from __future__ import annotations

import random

from helmdeck_operator.gateway.config import RetryPolicy

__all__ = ["JITTER", "backoff_delay", "next_delay"]

#: Fraction of each delay that is random. Half keeps a floor (so a retry never fires at
#: once into the same outage) while still spreading many reconcilers hitting one gateway.
JITTER = 0.5


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Delay after the ``attempt``-th failure (1-based): exponential, capped, jittered.

    The ceiling is ``initial_backoff * multiplier**(attempt-1)`` capped at ``max_backoff``;
    the delay is drawn uniformly from ``[ceiling * (1 - JITTER), ceiling]``.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** (attempt - 1))
    return ceiling * (1.0 - JITTER * rng.random())


def next_delay(
    attempt: int,
    policy: RetryPolicy,
    rng: random.Random,
    hint: float | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    Gives up once ``max_attempts`` are spent, and when the server asks for a pause longer
    than ``max_backoff``: then the caller (a reconciler) should requeue after the hint
    rather than hold a worker asleep. A shorter hint raises the delay to at least the hint.
    """
    if attempt >= policy.max_attempts:
        return None
    if hint is not None and hint > policy.max_backoff:
        return None
    delay = backoff_delay(attempt, policy, rng)
    return max(delay, hint) if hint is not None else delay
