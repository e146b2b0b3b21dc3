"""What the gateway client tests share: the types of their fixtures (tests/gateway/conftest.py),
and rotating a mounted Secret's file."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from helmdeck_operator.emulator.server import EmulatorHandle
from helmdeck_operator.gateway.config import GatewayConfig

__all__ = ["Calls", "ConfigFactory", "EmulatorFactory", "rotate"]

#: `start_emu`: start an emulator, EmulatorConfig fields as keywords.
EmulatorFactory = Callable[..., Awaitable[EmulatorHandle]]
#: `config_for`: a client config for the test's emulator, fields as keywords.
ConfigFactory = Callable[..., GatewayConfig]
#: `calls`: the emulator's records of one RPC method, oldest first.
Calls = Callable[[str], list[dict[str, Any]]]


def rotate(path: Path, content: str) -> None:
    """Replace a file the way the kubelet updates a Secret volume: a new inode, swapped in."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(content)
    os.replace(fresh, path)
