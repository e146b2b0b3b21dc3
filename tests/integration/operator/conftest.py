"""The operator as production runs it: a subprocess against the real apiserver, with the
OpenShell emulator in its own process as the gateway.

One emulator and one operator per test module (starting them costs seconds); every test
works in its own namespace, and faults injected into the emulator are cleared after each
test. `eventually` failures carry the operator's log tail and the emulator's sandboxes, so
a red test says why.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev.controlplane import ControlPlane, free_port
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.operator_process import OperatorProcess, write_config
from tests.support.cluster import Check, Kube

#: Emulator delays: short, but long enough that phases are observable in between.
EMULATOR_ARGS = [
    "--workspace", "default", "--workspace", "microvm", "--provider", "github",
    "--provider", "openai",
    "--ready-delay", "0.3", "--load-delay", "0.2", "--delete-delay", "0.2",
    "--stop-delay", "0.2", "--start-delay", "0.2",
]  # fmt: skip
#: Most convergence here takes a second or two; allow for a busy two-core CI machine.
CONVERGE_S = 60.0


@pytest.fixture(scope="module")
def gateway() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(EMULATOR_ARGS) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "gateway" in request.fixturenames:
        request.getfixturevalue("gateway").clear_faults()


@pytest.fixture(scope="module")
def operator_config(gateway: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("operator") / "config.yaml", gateway.address)


@pytest.fixture(scope="module")
def operator(cluster: ControlPlane, operator_config: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        operator_config,
        cluster.kubeconfig,
        operator_config.parent / "operator.log",
        args=["--metrics-port", str(free_port())],
    ).start()
    yield process
    process.stop()


@pytest.fixture
def scrape(operator: OperatorProcess) -> Callable[[], dict[str, float]]:
    """The operator's /metrics as {'name{labels}': value} (labels sorted as exposed)."""
    port = int(operator.args[operator.args.index("--metrics-port") + 1])

    def read() -> dict[str, float]:
        deadline = time.monotonic() + CONVERGE_S  # the operator may still be starting
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    return read


@pytest.fixture
def kube(cluster: ControlPlane, namespace: str) -> Kube:
    return Kube(cluster, namespace)


@pytest.fixture
def eventually(
    request: pytest.FixtureRequest,
) -> Callable[..., Any]:
    """eventually(check, what, timeout=...) -> the first truthy value of check()."""

    def wait(check: Check, what: str, timeout: float = CONVERGE_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"not reached in {timeout:.0f}s: {what}\n{_context(request)}")
            time.sleep(0.25)

    return wait


def _context(request: pytest.FixtureRequest) -> str:
    parts = []
    if "operator" in request.fixturenames:
        parts.append("operator log:\n" + request.getfixturevalue("operator").log_tail())
    if "gateway" in request.fixturenames:
        sandboxes = request.getfixturevalue("gateway").snapshot()["sandboxes"]
        parts.append(
            "gateway sandboxes: "
            + json.dumps(
                [
                    (s["name"], s["phase"], s.get("annotations", {}).get("helmdeck.dev/session"))
                    for s in sandboxes
                ]
            )
        )
    return "\n".join(parts)
