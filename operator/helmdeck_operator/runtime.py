"""Everything the handlers share for the life of the operator process.

One `Runtime` lives in kopf's `memo`: the validated configuration, a gateway client per
configured gateway with its bound on concurrent mutations, the Kubernetes client, the
translated family default policies, wake-up events and the rollout slots of Recreate
policies. Nothing here decides anything; it only holds and hands out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from helmdeck_operator.config import FAMILIES, Family, OperatorConfig
from helmdeck_operator.core.plan import DesiredPolicy, desired_policy
from helmdeck_operator.gateway import GatewayClient
from helmdeck_operator.kube import Kube
from helmdeck_operator.observability.metrics import Metrics

__all__ = ["RolloutSlots", "Runtime", "load_family_policy"]

logger = logging.getLogger(__name__)


def load_family_policy(family: Family, path: Path) -> DesiredPolicy:
    """The family default: a SidecarPolicy manifest file, translated once at start-up."""
    manifest = yaml.safe_load(path.read_text())
    if not isinstance(manifest, dict) or manifest.get("kind") != "SidecarPolicy":
        raise ValueError("not a SidecarPolicy manifest")
    name = (manifest.get("metadata") or {}).get("name") or f"helmdeck-default-{family}"
    return desired_policy(name, manifest.get("spec") or {})


@dataclass
class RolloutSlots:
    """How many sessions of each Recreate policy are being recreated right now.

    In memory on purpose: after a restart, sessions still mid-recreation finish anyway and
    new ones wait for free slots, so the bound can be exceeded only by what was in flight.
    """

    holders: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def may_recreate(self, policy: tuple[str, str], uid: str, limit: int) -> bool:
        holding = self.holders.get(policy, set())
        return uid in holding or len(holding) < limit

    def take(self, policy: tuple[str, str], uid: str) -> None:
        self.holders.setdefault(policy, set()).add(uid)

    def release(self, uid: str) -> None:
        for holding in self.holders.values():
            holding.discard(uid)


@dataclass
class Runtime:
    config: OperatorConfig
    kube: Kube
    gateways: dict[str, GatewayClient]
    family_policies: dict[Family, DesiredPolicy]
    mutation_slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    wakeups: dict[object, asyncio.Event] = field(default_factory=dict)
    rollouts: RolloutSlots = field(default_factory=RolloutSlots)
    metrics: Metrics = field(default_factory=Metrics)
    followers: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1000))
    propagation: dict[tuple[str, str], tuple[str, float | None]] = field(default_factory=dict)
    """Per policy: the revision being rolled out and when (monotonic) the change was seen;
    None once its propagation was measured."""
    generations: dict[object, object] = field(default_factory=dict)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @classmethod
    async def start(
        cls, config: OperatorConfig, kube: Kube, metrics: Metrics | None = None
    ) -> Runtime:
        metrics = metrics or Metrics()
        gateways = {
            g.name: GatewayClient(g, observers=[metrics.record_call]) for g in config.gateways
        }
        for client in gateways.values():
            await client.start()
        return cls(
            config=config,
            kube=kube,
            gateways=gateways,
            family_policies={
                f: load_family_policy(f, config.families[f].policy_file) for f in FAMILIES
            },
            mutation_slots={
                name: asyncio.Semaphore(config.concurrency.gateway_mutations) for name in gateways
            },
            metrics=metrics,
            followers=asyncio.Semaphore(config.observability.max_followers),
        )

    async def close(self) -> None:
        for client in self.gateways.values():
            await client.close()
        await self.kube.close()

    def wakeup(self, key: object) -> asyncio.Event:
        """The event that cuts the wait of the daemon for `key` (a session UID, a policy)."""
        return self.wakeups.setdefault(key, asyncio.Event())

    def wake(self, key: object) -> None:
        event = self.wakeups.get(key)
        if event is not None:
            event.set()

    def generation_changed(self, key: object, generation: object) -> bool:
        """True the first time an object's generation is seen: its spec changed.

        Status writes also produce watch events; they must not wake daemons, or every
        status write would cost an extra reconcile pass.
        """
        changed = self.generations.get(key) != generation
        self.generations[key] = generation
        return changed

    def forget(self, key: object) -> None:
        self.wakeups.pop(key, None)
        self.generations.pop(key, None)
