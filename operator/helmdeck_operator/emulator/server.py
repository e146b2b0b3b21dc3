"""Start and stop an emulated gateway: gRPC server, timer driver, optional admin HTTP.

`start_emulator(config)` is the single entry point used by the pytest fixtures, the CLI and
the demo. It binds (port 0 picks a free port), starts the driver task that applies timed
transitions when they fall due, and returns an `EmulatorHandle` exposing the address, the
state machine, the fault controller, a snapshot function and `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from openshell._proto import openshell_pb2_grpc

from helmdeck_operator.emulator.admin import build_admin_app
from helmdeck_operator.emulator.auth import AuthSettings, Principal
from helmdeck_operator.emulator.clock import Clock, SystemClock
from helmdeck_operator.emulator.faults import Faults
from helmdeck_operator.emulator.servicer import DEFAULT_WATCH_QUEUE, EmulatorServicer
from helmdeck_operator.emulator.state import Gateway, GatewaySettings
from helmdeck_operator.tasks import cancel_and_wait

__all__ = ["EmulatorConfig", "EmulatorHandle", "TlsFiles", "start_emulator"]

#: Longest the driver sleeps with nothing due, so expired outages etc. are noticed.
_IDLE_WAKE = 0.5
#: Grace given to in-flight RPCs (open watch streams) when stopping.
_STOP_GRACE = 0.5


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for server TLS; with `client_ca` a client certificate is required (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


#: hyper's default SETTINGS_MAX_CONCURRENT_STREAMS for HTTP/2 servers (the real gateway
#: serves gRPC through it).
MAX_CONCURRENT_STREAMS = 200


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator instance is started with."""

    host: str = "127.0.0.1"
    #: gRPC port; 0 picks a free one (read it back from the handle).
    port: int = 0
    #: Admin HTTP port; None disables the admin endpoint, 0 picks a free one.
    admin_port: int | None = None
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    tls: TlsFiles | None = None
    #: Bearer token -> principal; empty means no bearer auth.
    tokens: Mapping[str, Principal] = field(default_factory=dict)
    #: Fault specs applied at start (the `POST /faults` JSON shape), in order.
    faults: Sequence[Mapping[str, Any]] = ()
    seed: int | None = None
    watch_queue_size: int = DEFAULT_WATCH_QUEUE
    clock: Clock | None = None


@dataclass
class EmulatorHandle:
    """A running emulator."""

    address: str
    port: int
    admin_url: str | None
    gateway: Gateway
    faults: Faults
    servicer: EmulatorServicer
    tls: bool
    _server: grpc.aio.Server
    _driver: asyncio.Task[None]
    _admin: web.AppRunner | None

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Metadata of every RPC received (no token values), oldest first."""
        return list(self.servicer.requests)

    def snapshot(self) -> dict[str, Any]:
        """Sandboxes, revisions, lifecycle events, faults and requests as plain data."""
        data = self.gateway.snapshot()
        data["requests"] = self.requests
        return data

    async def stop(self) -> None:
        await cancel_and_wait([self._driver])
        await self._server.stop(_STOP_GRACE)
        if self._admin is not None:
            await self._admin.cleanup()


async def _drive(gateway: Gateway, wake: asyncio.Event) -> None:
    """Apply timed transitions as they fall due; woken early when one is scheduled."""
    while True:
        gateway.tick()
        wake.clear()
        due = gateway.next_due()
        timeout = _IDLE_WAKE
        if due is not None:
            timeout = min(_IDLE_WAKE, max(0.0, due - gateway.clock.monotonic()))
        # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a cancellation
        # that arrives as the event is set, and stopping the emulator would hang.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await wake.wait()


def _credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    ca = tls.client_ca.read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


async def start_emulator(config: EmulatorConfig | None = None) -> EmulatorHandle:
    """Start an emulator on the running loop and return once it accepts connections."""
    config = config or EmulatorConfig()
    clock = config.clock or SystemClock()
    faults = Faults(clock, seed=config.seed)
    for spec in config.faults:
        faults.apply(spec)
    gateway = Gateway(config.gateway, clock, faults)
    wake = asyncio.Event()
    gateway.on_schedule = wake.set
    servicer = EmulatorServicer(gateway, AuthSettings(config.tokens), config.watch_queue_size)
    # Streams one connection may hold open, as the real gateway's HTTP/2 server (hyper)
    # advertises them: a client that opens more waits for a free one.
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS)])
    openshell_pb2_grpc.add_OpenShellServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    bind = f"{config.host}:{config.port}"
    if config.tls is not None:
        port = server.add_secure_port(bind, _credentials(config.tls))
    else:
        port = server.add_insecure_port(bind)
    await server.start()
    driver = asyncio.create_task(_drive(gateway, wake), name="openshell-emulator-driver")
    admin_runner: web.AppRunner | None = None
    admin_url: str | None = None
    if config.admin_port is not None:
        admin_runner = web.AppRunner(build_admin_app(gateway, servicer.requests))
        await admin_runner.setup()
        site = web.TCPSite(admin_runner, config.host, config.admin_port)
        await site.start()
        admin_port = admin_runner.addresses[0][1]
        admin_url = f"http://{config.host}:{admin_port}"
    return EmulatorHandle(
        address=f"{config.host}:{port}",
        port=port,
        admin_url=admin_url,
        gateway=gateway,
        faults=faults,
        servicer=servicer,
        tls=config.tls is not None,
        _server=server,
        _driver=driver,
        _admin=admin_runner,
    )
