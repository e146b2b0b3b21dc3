"""The Lease protocol's decision, and the elector against a Lease store that behaves like the
apiserver (optimistic concurrency by resourceVersion)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helmdeck_operator.kube import KubeConflict
from helmdeck_operator.leader import LeaderElector, LeaseRecord, Verdict, decide


def record(holder: str, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder=holder, duration=duration, transitions=0, resource_version="1")


@pytest.mark.parametrize(
    ("lease", "unchanged_for", "verdict"),
    [
        (None, 0.0, Verdict.CREATE),
        (record("me"), 100.0, Verdict.RENEW),
        (record("other"), 14.9, Verdict.WAIT),
        (record("other"), 15.0, Verdict.TAKE_OVER),
        (record(""), 0.0, Verdict.TAKE_OVER),  # released on a clean shutdown
    ],
)
def test_decide(lease: LeaseRecord | None, unchanged_for: float, verdict: Verdict) -> None:
    assert decide(lease, "me", unchanged_for) is verdict


class FakeLeases:
    """One Lease, versioned like the apiserver: a write with a stale version conflicts."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return dict(self.lease) if self.lease else None

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        if self.lease is not None:
            raise KubeConflict("exists")
        self._store(spec)

    async def write_lease(self, namespace: str, name: str, spec: dict[str, Any], rv: str) -> None:
        if self.lease is None or self.lease["resourceVersion"] != rv:
            raise KubeConflict("changed")
        self._store(spec)

    def _store(self, spec: dict[str, Any]) -> None:
        self.version += 1
        self.lease = {
            "holder": spec["holderIdentity"],
            "duration": spec["leaseDurationSeconds"],
            "transitions": spec["leaseTransitions"],
            "acquireTime": spec["acquireTime"],
            "resourceVersion": str(self.version),
        }


def elector(store: FakeLeases, identity: str, clock: list[float]) -> LeaderElector:
    return LeaderElector(
        store,  # type: ignore[arg-type]
        name="l", namespace="ns", identity=identity,
        lease_seconds=15, renew_seconds=5, retry_seconds=0.01,
        monotonic=lambda: clock[0],
    )  # fmt: skip


async def test_a_candidate_waits_for_a_live_holder_and_takes_over_a_silent_one() -> None:
    store, clock = FakeLeases(), [0.0]
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    await a.acquire()
    assert store.lease is not None
    assert store.lease["holder"] == "a"

    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # a's lease is live on b's clock
    clock[0] = 16.0  # a stopped renewing 16 s ago, as b measures it
    await asyncio.wait_for(waiting, 1)
    assert store.lease["holder"] == "b"
    assert store.lease["transitions"] == 1


async def test_a_release_hands_over_without_waiting_for_expiry() -> None:
    store, clock = FakeLeases(), [0.0]
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    await a.acquire()
    await a.release()
    await asyncio.wait_for(b.acquire(), 1)  # no clock advance needed
    assert store.lease is not None
    assert store.lease["holder"] == "b"


async def test_a_holder_that_was_taken_over_notices_and_reports_the_loss() -> None:
    store, clock = FakeLeases(), [0.0]
    a = elector(store, "a", clock)
    a.renew_seconds = 0.01
    await a.acquire()
    assert store.lease is not None
    store.lease["holder"] = "usurper"
    lost = asyncio.Event()
    await asyncio.wait_for(a.keep(lost), 1)
    assert lost.is_set()
