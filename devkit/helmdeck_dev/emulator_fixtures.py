"""pytest fixtures for the OpenShell gateway emulator.

Load with `pytest_plugins = ["helmdeck_dev.emulator_fixtures"]` in the
top-level conftest (or import the fixtures into a directory's conftest). In-process
fixtures run the emulator on the test's own event loop on a free loopback port; the
subprocess factory is for tests where the gateway must be a separate process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from openshell._proto import openshell_pb2_grpc

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.pki import TlsMaterial, generate_tls_material
from helmdeck_operator.emulator.server import EmulatorConfig, EmulatorHandle, start_emulator
from helmdeck_operator.emulator.state import GatewaySettings

__all__ = [
    "FAST_SETTINGS",
    "emulator_factory",
    "emulator_process_factory",
    "emulator_stub",
    "emulator_tls",
    "openshell_emulator",
]

#: Delays short enough for fast tests, long enough that intermediate phases are observable.
FAST_SETTINGS = GatewaySettings(
    ready_delay=0.05, load_delay=0.05, delete_delay=0.05, stop_delay=0.05, start_delay=0.05
)

EmulatorFactory = Callable[[EmulatorConfig], Awaitable[EmulatorHandle]]


@pytest_asyncio.fixture
async def emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with custom configs; all are stopped after the test."""
    handles: list[EmulatorHandle] = []

    async def start(config: EmulatorConfig) -> EmulatorHandle:
        handle = await start_emulator(config)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop()


@pytest_asyncio.fixture
async def openshell_emulator(emulator_factory: EmulatorFactory) -> EmulatorHandle:
    """An in-process emulator with fast delays, no TLS, no auth, admin API on a free port."""
    return await emulator_factory(EmulatorConfig(gateway=FAST_SETTINGS, admin_port=0))


@pytest_asyncio.fixture
async def emulator_stub(
    openshell_emulator: EmulatorHandle,
) -> AsyncIterator[openshell_pb2_grpc.OpenShellStub]:
    """The official OpenShell stub over a `grpc.aio` channel to `openshell_emulator`."""
    async with grpc.aio.insecure_channel(openshell_emulator.address) as channel:
        yield openshell_pb2_grpc.OpenShellStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def emulator_tls(tmp_path: Path) -> TlsMaterial:
    """A throwaway CA, server and client certificate in the test's tmp dir."""
    return generate_tls_material(tmp_path / "tls")


@pytest.fixture
def emulator_process_factory() -> Iterator[Callable[[Sequence[str]], EmulatorProcess]]:
    """Start emulator subprocesses with extra CLI args; all are stopped after the test."""
    procs: list[EmulatorProcess] = []

    def start(args: Sequence[str] = ()) -> EmulatorProcess:
        proc = EmulatorProcess(args).start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.__exit__(None, None, None)
