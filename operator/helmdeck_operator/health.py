"""Liveness, readiness and metrics over HTTP, for the kubelet's probes and Prometheus.

Served from the first moment, before leadership, so a standby replica is alive and ready
(a Deployment's rolling update waits for new pods to be ready; a standby that never was
would stall it). `/healthz` answers while the event loop turns; `/readyz` answers 200 for a
standby waiting on the Lease, and for the leader once kopf reports its watches established
and at least one configured gateway answers its Health call (the body lists each gateway).
`/metrics` is the Prometheus exposition, on its own port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.observability.metrics import Metrics

__all__ = ["Health", "serve_health", "serve_metrics"]

#: A gateway's Health answer is trusted this long; readiness probes come every few seconds.
GATEWAY_CHECK_TTL_S = 10.0


@dataclass
class Health:
    role: str = "starting"
    """starting, standby or leader."""
    watching: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by kopf (its ready flag) once the leader's watches are established."""
    gateways: Mapping[str, GatewayClient] = field(default_factory=dict)
    checked: dict[str, tuple[float, bool]] = field(default_factory=dict)

    async def ready(self) -> tuple[bool, str]:
        if self.role == "standby":
            return True, "standby: waiting for the lease"
        if self.role != "leader" or not self.watching.is_set():
            return False, f"{self.role}: not watching yet"
        states = {name: await self._reachable(name, c) for name, c in self.gateways.items()}
        lines = "".join(
            f"\ngateway {n}: {'reachable' if ok else 'UNREACHABLE'}" for n, ok in states.items()
        )
        if states and not any(states.values()):
            return False, "leader: watching, but no gateway is reachable" + lines
        return True, "leader: watching" + lines

    async def _reachable(self, name: str, client: GatewayClient) -> bool:
        now = time.monotonic()
        cached = self.checked.get(name)
        if cached is not None and now - cached[0] < GATEWAY_CHECK_TTL_S:
            return cached[1]
        try:
            ok = (await client.health()).is_healthy
        except GatewayError:
            ok = False
        self.checked[name] = (now, ok)
        return ok


async def serve_health(health: Health, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text=f"ok ({health.role})\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = await health.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return await _serve(app, port)


async def serve_metrics(metrics: Metrics, port: int) -> web.AppRunner:
    async def exposition(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    return await _serve(app, port)


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    """Serve `app` on every interface: the kubelet and Prometheus reach the pod's IP."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
