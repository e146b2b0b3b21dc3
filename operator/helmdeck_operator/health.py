"""Liveness and readiness over HTTP, for the kubelet's probes.

Served from the first moment, before leadership, so a standby replica is alive and ready
(a Deployment's rolling update waits for new pods to be ready; a standby that never was
would stall it). `/healthz` answers while the event loop turns; `/readyz` answers 200 for a
standby that reaches the apiserver's Lease, and for the leader once kopf reports its
watches established.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["Health", "serve_health"]


@dataclass
class Health:
    role: str = "starting"
    """starting, standby or leader."""
    watching: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by kopf (its ready flag) once the leader's watches are established."""

    def ready(self) -> tuple[bool, str]:
        if self.role == "standby":
            return True, "standby: waiting for the lease"
        if self.role == "leader" and self.watching.is_set():
            return True, "leader: watching"
        return False, f"{self.role}: not watching yet"


async def serve_health(health: Health, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text=f"ok ({health.role})\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = health.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
