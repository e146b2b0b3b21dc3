"""Fixtures shared by every test layer.

The control plane is real (etcd + kube-apiserver + kube-controller-manager built from Go
modules, see helmdeck_dev.controlplane) and started once per test session;
each test gets its own namespace. Tests under tests/integration/ are marked `cluster`
automatically, so `pytest -m "not cluster"` runs only the fast, pure layers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from helmdeck_dev.controlplane import ControlPlane, find_binaries
from tests.support.cluster import create_namespace, delete_namespace, install_crds
from tests.support.repo import CRD_DIR

# The OpenShell emulator fixtures (openshell_emulator, emulator_factory, emulator_process_factory,
# emulator_tls, emulator_stub), shared by the emulator, gateway and integration tests.
pytest_plugins = ["helmdeck_dev.emulator_fixtures"]


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
    return install_crds(control_plane, CRD_DIR)


@pytest.fixture
def namespace(cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards without waiting."""
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = create_namespace(cluster, f"t-{slug}-{secrets.token_hex(3)}")
    yield name
    delete_namespace(cluster, name)
