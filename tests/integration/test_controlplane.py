"""The local control plane is the real thing: version, RBAC, ServiceAccount identities, GC."""

from __future__ import annotations

import json
import time
from pathlib import Path

from helmdeck_dev.controlplane import ControlPlane


def test_server_reports_kubernetes_1_34(control_plane: ControlPlane) -> None:
    version = control_plane.kubectl_json("version")
    assert version["serverVersion"]["gitVersion"].startswith("v1.34.")
    assert version["serverVersion"]["minor"] == "34"


def test_serviceaccount_kubeconfig_acts_as_that_identity(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    assert cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace).returncode == 0
    kubeconfig = cluster.serviceaccount_kubeconfig(namespace, "robot", tmp_path / "robot")

    whoami = cluster.kubectl_json("auth", "whoami", kubeconfig=kubeconfig)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:robot"

    # RBAC is on: nothing is allowed until a Role grants it, then exactly that is.
    denied = cluster.kubectl("get", "hds", "-n", namespace, kubeconfig=kubeconfig)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    for args in (
        ("create", "role", "reader", "--verb=get,list", "--resource=helmdecksessions.helmdeck.dev"),
        ("create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={namespace}:robot"),
    ):
        assert cluster.kubectl(*args, "-n", namespace).returncode == 0
    allowed = cluster.kubectl("get", "hds", "-n", namespace, kubeconfig=kubeconfig)
    assert allowed.returncode == 0, allowed.stderr
    still_denied = cluster.kubectl("get", "scp", "-n", namespace, kubeconfig=kubeconfig)
    assert still_denied.returncode != 0
    assert "forbidden" in still_denied.stderr.lower()


def test_namespaces_delete_and_owned_objects_are_collected(cluster: ControlPlane) -> None:
    assert cluster.kubectl("create", "namespace", "gc-check").returncode == 0
    owner = cluster.kubectl_json("create", "configmap", "owner", "-n", "gc-check")
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    assert (
        cluster.kubectl("create", "-n", "gc-check", "-f", "-", stdin=json.dumps(owned)).returncode
        == 0
    )
    assert cluster.kubectl("delete", "configmap", "owner", "-n", "gc-check").returncode == 0
    _eventually(
        lambda: cluster.kubectl("get", "configmap", "owned", "-n", "gc-check").returncode != 0
    )

    deleted = cluster.kubectl("delete", "namespace", "gc-check", "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    assert "NotFound" in cluster.kubectl("get", "namespace", "gc-check").stderr


def _eventually(check: object, timeout: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)
