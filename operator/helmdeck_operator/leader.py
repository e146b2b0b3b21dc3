"""Leader election on a coordination.k8s.io Lease: two replicas, one active.

The chart runs two replicas so a node loss costs seconds, not a reschedule; only the Lease
holder runs the kopf operator, the other waits as a warm standby. The protocol is
client-go's: a holder renews the Lease every `renew_seconds`; a candidate takes it over
only when it has seen the Lease record unchanged for `lease_seconds` (time measured on the
candidate's own clock from when *it* observed the record, so clock skew between nodes does
not matter); updates carry the resourceVersion, so two candidates cannot both win. A holder
that cannot renew for `lease_seconds` stops itself before anyone else may take over.

`decide` is the pure part; `LeaderElector` does the I/O through `Kube`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from helmdeck_operator.kube import Kube, KubeConflict

__all__ = ["LeaderElector", "LeaseRecord", "Verdict", "decide"]

logger = logging.getLogger(__name__)

#: Lease timing as client-go's defaults scaled down: failover within ~lease + retry seconds.
LEASE_SECONDS = 15
RENEW_SECONDS = 5
RETRY_SECONDS = 2


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    duration: int
    transitions: int
    resource_version: str


class Verdict(StrEnum):
    CREATE = "create"
    """No Lease yet: create it, holding it."""
    RENEW = "renew"
    """We hold it: renew."""
    TAKE_OVER = "take-over"
    """The holder stopped renewing (or released it): take it."""
    WAIT = "wait"
    """Someone else holds a live Lease."""


def decide(record: LeaseRecord | None, identity: str, unchanged_for: float) -> Verdict:
    """What a candidate should do, given the Lease as last read and how long (on its own
    clock) that record has been seen unchanged."""
    if record is None:
        return Verdict.CREATE
    if record.holder == identity:
        return Verdict.RENEW
    if not record.holder or unchanged_for >= record.duration:
        return Verdict.TAKE_OVER
    return Verdict.WAIT


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, keep and release one Lease for `identity`."""

    def __init__(
        self,
        kube: Kube,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_seconds: int = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self.monotonic = monotonic
        self._seen: tuple[str, float] | None = None  # (resourceVersion, first seen at)
        self._renewed_at = 0.0

    async def acquire(self) -> None:
        """Return once we hold the Lease; until then wait as a standby."""
        announced = False
        while not await self._try():
            if not announced:
                logger.info(
                    "standby: lease %s/%s is held by another replica", self.namespace, self.name
                )
                announced = True
            await asyncio.sleep(self.retry_seconds)
        logger.info("leader: holding lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew until cancelled; set `lost` when the Lease could not be renewed in time."""
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                held = await self._try()
            except Exception as err:  # any API failure counts as a missed renewal
                logger.warning("lease renewal failed: %s", err)
                held = self.monotonic() - self._renewed_at < self.lease_seconds - self.renew_seconds
            if not held:
                logger.error("lost lease %s/%s; stopping", self.namespace, self.name)
                lost.set()
                return

    async def release(self) -> None:
        """Hand over at once on a clean shutdown: empty the holder so a standby need not wait."""
        record = await self.kube.get_lease(self.namespace, self.name)
        if record is not None and record.get("holder") == self.identity:
            try:
                await self.kube.write_lease(
                    self.namespace, self.name, self._spec("", record), record["resourceVersion"]
                )
            except KubeConflict:
                return

    async def _try(self) -> bool:
        raw = await self.kube.get_lease(self.namespace, self.name)
        record = (
            LeaseRecord(
                holder=raw.get("holder", ""),
                duration=int(raw.get("duration") or self.lease_seconds),
                transitions=int(raw.get("transitions") or 0),
                resource_version=raw["resourceVersion"],
            )
            if raw is not None
            else None
        )
        now = self.monotonic()
        if record is not None and (self._seen is None or self._seen[0] != record.resource_version):
            self._seen = (record.resource_version, now)
        unchanged_for = now - self._seen[1] if self._seen else 0.0
        verdict = decide(record, self.identity, unchanged_for)
        if verdict is Verdict.WAIT:
            return False
        try:
            if verdict is Verdict.CREATE:
                await self.kube.create_lease(
                    self.namespace, self.name, self._spec(self.identity, None)
                )
            else:
                assert raw is not None
                assert record is not None
                await self.kube.write_lease(
                    self.namespace,
                    self.name,
                    self._spec(self.identity, raw),
                    record.resource_version,
                )
        except KubeConflict:
            return False  # someone else wrote first; read again next time
        self._renewed_at = now
        return True

    def _spec(self, holder: str, current: dict[str, Any] | None) -> dict[str, Any]:
        taking_over = current is None or current.get("holder") != holder
        spec: dict[str, Any] = {
            "holderIdentity": holder,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": _now(),
            "leaseTransitions": int((current or {}).get("transitions") or 0)
            + (1 if taking_over and current else 0),
        }
        spec["acquireTime"] = (
            _now() if taking_over else (current or {}).get("acquireTime") or _now()
        )
        return spec
