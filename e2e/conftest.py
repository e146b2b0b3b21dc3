"""End-to-end suite: a user's journey against an operator that is already installed.

It talks to the cluster only through kubectl and plain JSON, so it runs against any
kubeconfig (kind, a cloud cluster, the local control plane of `make e2e`) and needs nothing
from this repository but these files. Options:

  --kubeconfig PATH          the cluster (default: $KUBECONFIG, else kubectl's default)
  --kubectl PATH             the kubectl binary (default: `kubectl` on PATH)
  --gateway-admin-url URL    the OpenShell emulator's admin API: sandboxes are then also
                             checked on the gateway side (same id after a reload, none left
                             after a delete). Without it only the Kubernetes side is checked.
  --namespace NS             use this existing namespace instead of creating one per test
                             (the operator installed with namespaced RBAC)
  --ready-timeout SECONDS    how long a session may take to become Ready (default 300;
                             a real gateway pulls images)
  --uninstall RELEASE        run the uninstall test last: `helm uninstall RELEASE`, then
                             check that no helmdeck object or RBAC rule is left
  --release-namespace NS     the release's namespace (default helmdeck-system)
  --helm PATH                the helm binary (default: `helm` on PATH)
  --delete-crds              with --uninstall: also delete the three CRDs (helm keeps CRDs
                             on uninstall) and check they are gone
  --local-state FILE         written by e2e/run_local.py (`make e2e`): the operator runs out
                             of cluster, started and restarted by the suite (RBAC test)

The uninstall test runs after every other test (it removes the operator).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_support import E2E_LABEL, GatewayAdmin, Kubectl


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("helmdeck e2e")
    group.addoption("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    group.addoption("--kubectl", default=shutil.which("kubectl") or "kubectl")
    group.addoption("--gateway-admin-url", default=None)
    group.addoption("--namespace", dest="e2e_namespace", default=None)
    group.addoption("--ready-timeout", type=float, default=300.0)
    group.addoption("--uninstall", metavar="RELEASE", default=None)
    group.addoption("--release-namespace", default="helmdeck-system")
    group.addoption("--helm", default=shutil.which("helm") or "helm")
    group.addoption("--delete-crds", action="store_true")
    group.addoption("--local-state", type=Path, default=None)


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        "slow: takes a minute or more (the TTL test waits for the CRD's smallest TTL)",
        "uninstall: removes the operator; always runs last",
        "local: needs `make e2e`'s out-of-cluster operator (--local-state)",
    ):
        config.addinivalue_line("markers", marker)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable sort: everything else in file order, then the local RBAC test, then uninstall.
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("uninstall"):
            return 2
        return 1 if item.get_closest_marker("local") else 0

    items.sort(key=rank)


@pytest.fixture(scope="session")
def kubectl(pytestconfig: pytest.Config) -> Kubectl:
    kube = Kubectl(pytestconfig.getoption("kubectl"), pytestconfig.getoption("kubeconfig"))
    result = kube.run("version", "-o", "json", timeout=30)
    if result.returncode != 0:
        pytest.exit(f"cannot reach the cluster with kubectl: {result.stderr.strip()}", 2)
    return kube


# -- the gateway (optional) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def gateway(pytestconfig: pytest.Config) -> GatewayAdmin | None:
    url = pytestconfig.getoption("gateway_admin_url")
    if not url:
        return None
    admin = GatewayAdmin(url)
    admin.sandboxes()  # fail early on a wrong URL
    return admin


# -- the local, out-of-cluster operator (make e2e only) -------------------------------------


@pytest.fixture(scope="session", autouse=True)
def local_operator(pytestconfig: pytest.Config) -> Iterator[Any]:
    """With --local-state: the operator process `make e2e` runs as the chart's
    ServiceAccount, started here for the whole session. Without it: None (the operator is
    already installed in the cluster)."""
    state = pytestconfig.getoption("local_state")
    if state is None:
        yield None
        return
    from local_operator import LocalOperator  # e2e/local_operator.py, next to this file

    operator = LocalOperator.from_state(state)
    operator.start()
    try:
        operator.wait_started()
        yield operator
    finally:
        operator.stop()


# -- namespaces and waiting -----------------------------------------------------------------


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())[:30].strip("-")


@pytest.fixture
def namespace(kubectl: Kubectl, pytestconfig: pytest.Config, request: Any) -> Iterator[str]:
    """A fresh namespace per test (or the one given with --namespace). At the end its
    sessions are deleted while the operator still runs (their finalizer needs it), then the
    namespace, waiting for both."""
    fixed = pytestconfig.getoption("e2e_namespace")
    name = fixed or f"e2e-{_slug(request.node.name)}-{secrets.token_hex(3)}"
    if not fixed:
        kubectl.ok("create", "namespace", name)
        kubectl.ok("label", "namespace", name, f"{E2E_LABEL}=true")
    yield name
    kubectl.run("delete", "hds", "-n", name, "-l", f"{E2E_LABEL}=true", "--timeout=120s")
    kubectl.run("delete", "scp", "-n", name, "-l", f"{E2E_LABEL}=true", "--timeout=60s")
    if not fixed:
        kubectl.run("delete", "namespace", name, "--timeout=180s", timeout=200)


Check = Callable[[], Any]


@pytest.fixture
def eventually(request: Any, pytestconfig: pytest.Config) -> Callable[..., Any]:
    """eventually(check, what, timeout=None) -> the first truthy value of check().

    The default timeout is --ready-timeout. A failure shows the operator's log tail when the
    suite runs the operator itself (make e2e)."""
    default = pytestconfig.getoption("ready_timeout")

    def wait(check: Check, what: str, timeout: float | None = None) -> Any:
        limit = default if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                context = ""
                operator = request.getfixturevalue("local_operator")
                if operator is not None:
                    context = "\noperator log:\n" + operator.log_tail()
                pytest.fail(f"not reached in {limit:.0f}s: {what}{context}")
            time.sleep(0.5)

    return wait
