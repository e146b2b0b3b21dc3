"""The operator `make e2e` runs out of cluster, as the chart's ServiceAccount.

e2e/run_local.py prepares everything (control plane, emulator, the chart's objects, a
kubeconfig holding a TokenRequest token of the chart's ServiceAccount, the chart's rendered
config.yaml) and writes a state file; the suite starts the operator from it (conftest's
`local_operator` fixture) with the command line the chart's Deployment would run, so the
RBAC test can restart it. Standard library only; the operator runs from the current
interpreter's helmdeck_operator.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Start-up: imports, the Lease, kopf's first watches; seconds on a busy two-core machine.
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalOperator:
    state: dict[str, Any]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    starts: int = 0
    args: list[str] = field(default_factory=list)

    @classmethod
    def from_state(cls, path: Path) -> LocalOperator:
        state: dict[str, Any] = json.loads(Path(path).read_text())
        return cls(state=state, log_path=Path(state["operator_log"]))

    # -- the command line -----------------------------------------------------------------
    def command(self) -> list[str]:
        """The Deployment's container args, with the config path, the health port and the
        metrics port made local (free ports: 8080 and 9090 may be taken on this machine)."""
        args = list(self.state["operator_args"])
        self.health_port = free_port()
        local = {
            "--config": self.state["config"],
            "--health-port": str(self.health_port),
            "--metrics-port": str(free_port()),
        }
        out: list[str] = []
        skip = False
        for i, arg in enumerate(args):
            if skip:
                skip = False
                continue
            if arg in local and i + 1 < len(args):
                skip = True
                continue
            if arg.split("=", 1)[0] in local:
                continue
            out.append(arg)
        if not out or out[0] != "run":
            out.insert(0, "run")
        had_metrics = "--metrics-port" in args or any(a.startswith("--metrics-port=") for a in args)
        for flag, value in local.items():
            if flag != "--metrics-port" or had_metrics:
                out += [flag, value]
        return [sys.executable, "-m", "helmdeck_operator", *out]

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.starts += 1
        self.args = self.command()
        env = {
            **os.environ,
            **self.state.get("operator_env", {}),
            "KUBECONFIG": self.state["operator_kubeconfig"],
            "POD_NAMESPACE": self.state["namespace"],
            "POD_NAME": f"local-operator-{self.starts}",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start #{self.starts}: {' '.join(self.args)} ====\n".encode())
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until /readyz answers 200: leader with kopf's watches established."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        while True:
            if not self.running:
                raise RuntimeError(f"the operator exited at start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator not ready in {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM (a pod's termination): the operator releases its Lease and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_started()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
