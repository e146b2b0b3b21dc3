"""Fixtures shared by every test layer.

The control plane is real (etcd + kube-apiserver + kube-controller-manager built from Go
modules, see helmdeck_dev.controlplane) and started once per test session;
each test gets its own namespace. Tests under tests/integration/ are marked `cluster`
automatically, so `pytest -m "not cluster"` runs only the fast, pure layers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from helmdeck_dev.controlplane import ControlPlane, find_binaries

# The OpenShell emulator fixtures (openshell_emulator, emulator_factory, emulator_process_factory,
# emulator_tls, emulator_stub), shared by the emulator, gateway and integration tests.
pytest_plugins = ["helmdeck_dev.emulator_fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid or "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(
        state_dir=tmp_path_factory.mktemp("cluster"), binaries=find_binaries()
    ) as plane:
        yield plane


@pytest.fixture(scope="session")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with this project's CRDs installed and Established."""
    applied = control_plane.kubectl("apply", "-f", str(CRD_DIR))
    assert applied.returncode == 0, applied.stderr
    established = control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR)
    )
    assert established.returncode == 0, established.stderr
    return control_plane


@pytest.fixture
def namespace(cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards without waiting."""
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    created = cluster.kubectl("create", "namespace", name)
    assert created.returncode == 0, created.stderr
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")
