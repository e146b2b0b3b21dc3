"""A protocol-faithful emulator of the NVIDIA OpenShell gateway (0.1.x gRPC API).

Every test and the demo talk to this instead of a real gateway. Layers: `state` is the
gateway as a plain-Python state machine (with `policy_rules`, `model`, `clock`, `faults`);
`servicer` adapts it to `grpc.aio` (with `auth`); `server` starts it (with the `admin` HTTP
side door); `cli` runs it as a process. Pytest fixtures and a subprocess runner live in
`helmdeck_dev.emulator_fixtures` / `.emulator_process`. See docs/emulator.md.

Names are re-exported lazily so that importing `helmdeck_operator.emulator.cli` (done by
the operator's CLI to register the subcommand) does not load gRPC or aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "EmulatorConfig",
    "EmulatorHandle",
    "Gateway",
    "GatewaySettings",
    "TlsFiles",
    "start_emulator",
]

_HOME = {
    "EmulatorConfig": "server",
    "EmulatorHandle": "server",
    "TlsFiles": "server",
    "start_emulator": "server",
    "Gateway": "state",
    "GatewaySettings": "settings",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_HOME[name]}")
    return getattr(module, name)
