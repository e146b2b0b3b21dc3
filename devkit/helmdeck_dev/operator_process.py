"""Run the operator as a subprocess, the way production runs it, for tests and the demo.

A subprocess (not kopf's in-thread runner) because crash-safety tests kill it with SIGKILL
and restart it, and because the demo and `make dev` run the real command line. The
configuration it gets points every gateway at an emulator and uses short intervals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["REPO_ROOT", "OperatorProcess", "write_config"]

REPO_ROOT = Path(__file__).resolve().parents[2]
_IMAGES = {
    "browser": "ghcr.io/tosin2013/helmdeck-sidecar:0.9.0",
    "vision": "ghcr.io/tosin2013/helmdeck-sidecar:0.9.0",
    "python": "ghcr.io/tosin2013/helmdeck-sidecar-python:0.9.0",
    "node": "ghcr.io/tosin2013/helmdeck-sidecar-node:0.9.0",
}


def write_config(
    path: Path,
    gateway_address: str,
    *,
    gateway_fields: Mapping[str, Mapping[str, Any]] | None = None,
    **overrides: Any,
) -> Path:
    """An operator configuration with gateways `pods` and `microvm` on one emulator.

    The two gateways use separate workspaces of the same emulator, standing in for two
    gateways with different compute drivers. Intervals are short so tests converge fast.
    `gateway_fields` merges fields into the gateway entry of that name (the list itself is
    built here: it needs the emulator's address); `overrides` into the rest.
    """
    config: dict[str, Any] = {
        "instance": "helmdeck-test",
        "default_gateway": "pods",
        "gateways": [
            {
                "name": name,
                "endpoint": gateway_address,
                "plaintext": True,
                "driver": driver,
                "workspace": workspace,
                "auth": {"type": "none"},
                "deadline_seconds": 5,
                "retry": {"max_attempts": 2, "initial_backoff": 0.1, "max_backoff": 0.5},
            }
            for name, driver, workspace in (
                ("pods", "kubernetes", "default"),
                ("microvm", "vm", "microvm"),
            )
        ],
        "families": {
            family: {
                "image": image,
                "command": ["/usr/local/bin/helmdeck-sidecar"],
                "policy_file": str(REPO_ROOT / "policies" / f"{family}.yaml"),
            }
            for family, image in _IMAGES.items()
        },
        "intervals": {
            "resync_seconds": 3,
            "pending_seconds": 0.2,
            "orphan_sweep_seconds": 2,
            "orphan_grace_seconds": 1,
            "outage_grace_seconds": 2,
        },
        "observability": {
            "denial_window_seconds": 2,
            "denial_poll_min_seconds": 0.5,
            "denial_poll_max_seconds": 2,
        },
    }
    for entry in config["gateways"]:
        _merge(entry, (gateway_fields or {}).get(entry["name"], {}))
    _merge(config, overrides)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


class OperatorProcess:
    """`helmdeck-operator run` in a subprocess; its output goes to `log_path`."""

    def __init__(
        self,
        config: Path,
        kubeconfig: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.args = list(args)
        self.config = config
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, env: Mapping[str, str] | None = None) -> OperatorProcess:
        self.starts += 1
        environment = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env, **(env or {})}
        environment.setdefault("PYTHONUNBUFFERED", "1")
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start #{self.starts} ====\n".encode())
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "helmdeck_operator",
                    "run",
                    "--config",
                    str(self.config),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to end by itself (e.g. at a crash point); its exit code."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no finalizer work, like a node loss."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
