"""The retry schedule: exponential, capped, jittered within bounds, bounded in attempts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helmdeck_operator.gateway.config import RetryPolicy
from helmdeck_operator.gateway.retry import JITTER, backoff_delay, next_delay

POLICY = RetryPolicy(max_attempts=5, initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)


def test_schedule_is_reproducible_with_a_seed() -> None:
    first = [backoff_delay(n, POLICY, random.Random(7)) for n in range(1, 6)]
    again = [backoff_delay(n, POLICY, random.Random(7)) for n in range(1, 6)]
    assert first == again


def test_schedule_grows_then_caps() -> None:
    class Top(random.Random):
        def random(self) -> float:
            return 0.0  # no jitter: the ceiling itself

    delays = [backoff_delay(n, POLICY, Top()) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


@given(
    attempt=st.integers(min_value=1, max_value=30),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jitter_stays_within_bounds(attempt: int, seed: int) -> None:
    ceiling = min(POLICY.max_backoff, POLICY.initial_backoff * POLICY.multiplier ** (attempt - 1))
    delay = backoff_delay(attempt, POLICY, random.Random(seed))
    assert ceiling * (1 - JITTER) <= delay <= ceiling


def test_attempts_are_bounded() -> None:
    rng = random.Random(1)
    delays = [next_delay(n, POLICY, rng) for n in range(1, 8)]
    assert all(d is not None for d in delays[:4])
    assert delays[4:] == [None, None, None]
    assert next_delay(1, RetryPolicy(max_attempts=1), rng) is None


def test_a_short_server_hint_raises_the_delay() -> None:
    delay = next_delay(1, POLICY, random.Random(1), hint=0.9)
    assert delay == 0.9


def test_a_long_server_hint_ends_the_call() -> None:
    assert next_delay(1, POLICY, random.Random(1), hint=5.0) is None


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0, POLICY, random.Random(1))
