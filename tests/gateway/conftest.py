"""Fixtures for the gateway client tests: a running emulator, client configs, test PKI.

The emulator is the real gRPC server of helmdeck_operator.emulator on 127.0.0.1 (port 0),
so every integration test crosses a real socket; a fresh one per test keeps faults and
state from leaking between tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev.pki import generate_tls_material
from helmdeck_operator.emulator.server import EmulatorConfig, EmulatorHandle
from helmdeck_operator.emulator.state import GatewaySettings
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.config import GatewayConfig
from tests.support.gateway import Calls, ConfigFactory, EmulatorFactory

#: Small, fixed backoff so retry tests take milliseconds yet still exercise the schedule.
FAST_RETRY = {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.05}
#: Emulator transitions (provisioning, loads, deletes) in a blink.
QUICK = GatewaySettings(
    ready_delay=0.02, load_delay=0.02, delete_delay=0.02, stop_delay=0.02, start_delay=0.02
)


@pytest.fixture
def start_emu(
    emulator_factory: Callable[[EmulatorConfig], Awaitable[EmulatorHandle]],
) -> EmulatorFactory:
    """Start emulators (EmulatorConfig fields as keywords) with this suite's short delays."""

    async def start(**fields: Any) -> EmulatorHandle:
        fields.setdefault("gateway", QUICK)
        fields.setdefault("seed", 1)
        return await emulator_factory(EmulatorConfig(**fields))

    return start


@pytest.fixture
async def emulator(start_emu: EmulatorFactory) -> EmulatorHandle:
    return await start_emu()


def _client_config(handle: EmulatorHandle, **fields: Any) -> GatewayConfig:
    base: dict[str, Any] = {
        "name": "emu",
        "endpoint": handle.address,
        "plaintext": not handle.tls,
        "deadline_seconds": 2.0,
        "retry": FAST_RETRY,
    }
    base.update(fields)
    return GatewayConfig.model_validate(base)


@pytest.fixture
def config_for(emulator: EmulatorHandle) -> ConfigFactory:
    """A client config for the test's emulator; keyword arguments override fields."""
    return lambda **fields: _client_config(emulator, **fields)


@pytest.fixture
def calls(emulator: EmulatorHandle) -> Calls:
    """The emulator's records of one RPC method, oldest first."""
    return lambda method: [r for r in emulator.requests if r["method"] == method]


@pytest.fixture
async def client(config_for: ConfigFactory) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(config_for()) as gateway:
        yield gateway


@dataclass(frozen=True)
class Pki:
    """Test certificates (shared generator) plus a CA that signed nothing here."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost, a client certificate."""
    ours = generate_tls_material(tmp_path_factory.mktemp("pki"))
    stranger = generate_tls_material(tmp_path_factory.mktemp("stranger-pki"))
    return Pki(
        ca=ours.ca_cert,
        server_cert=ours.server_cert,
        server_key=ours.server_key,
        client_cert=ours.client_cert,
        client_key=ours.client_key,
        stranger_ca=stranger.ca_cert,
    )
