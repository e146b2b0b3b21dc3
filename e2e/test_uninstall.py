"""Uninstall leaves nothing behind (run with --uninstall RELEASE; always the last test).

`helm uninstall` must remove every object of the release, in particular the cluster-scoped
RBAC (ClusterRoles and bindings outlive a namespace). Helm keeps CRDs installed from a
chart's crds/ directory on purpose (deleting them deletes every user's sessions and
policies); --delete-crds removes them too and checks they are gone. The operator's
leader-election Lease is written by the operator, not by Helm: it must be released (no
holder), and goes with the release namespace.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from e2e_support import CRDS, Kubectl

pytestmark = pytest.mark.uninstall

#: Namespaced kinds where a chart's leftovers would be; cluster-scoped ones checked by name.
NAMESPACED = (
    "serviceaccounts",
    "configmaps",
    "secrets",
    "services",
    "deployments",
    "roles",
    "rolebindings",
    "poddisruptionbudgets",
    "networkpolicies",
)
CLUSTER_SCOPED = (
    "clusterroles",
    "clusterrolebindings",
    "tenantpolicies",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
)


def helm(pytestconfig: pytest.Config, *args: str) -> str:
    argv = [pytestconfig.getoption("helm"), *args]
    kubeconfig = pytestconfig.getoption("kubeconfig")
    if kubeconfig:
        argv.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr}"
    return result.stdout


def release_objects(manifest: str) -> list[tuple[str, str, str | None]]:
    """(kind, name, namespace) of every object in a release manifest."""
    found = []
    for doc in yaml.safe_load_all(manifest):
        if isinstance(doc, dict) and doc.get("kind"):
            meta = doc.get("metadata") or {}
            found.append((doc["kind"], meta["name"], meta.get("namespace")))
    return found


def test_helm_uninstall_leaves_nothing_behind(
    kubectl: Kubectl, pytestconfig: pytest.Config, local_operator: Any
) -> None:
    release = pytestconfig.getoption("uninstall")
    if not release:
        pytest.skip("pass --uninstall RELEASE to uninstall the operator at the end")
    ns = pytestconfig.getoption("release_namespace")

    # Sessions and pools hold a finalizer only the operator removes: uninstalling under them
    # would leave them stuck in Terminating. The suite deletes its own; refuse if others exist.
    for kind, name in (("helmdecksessions", "HelmdeckSession"), ("sessionpools", "SessionPool")):
        left = kubectl.json("get", kind, "--all-namespaces")["items"]
        assert not left, f"delete every {name} before uninstalling: " + ", ".join(
            f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in left
        )

    objects = release_objects(helm(pytestconfig, "get", "manifest", release, "-n", ns))
    assert objects, f"release {release} has no objects"
    if local_operator is not None:
        # Out of cluster (make e2e) nothing deletes a pod: stop the operator the way the
        # Deployment's deletion would.
        local_operator.stop()
    helm(pytestconfig, "uninstall", release, "-n", ns, "--wait", "--timeout=180s")

    leftovers = []
    for kind, name, namespace in objects:
        cluster_kinds = (
            "ClusterRole",
            "ClusterRoleBinding",
            "TenantPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        )
        where = ["-n", namespace or ns] if kind not in cluster_kinds else []
        if kind == "CustomResourceDefinition":
            continue
        result = kubectl.run("get", kind, name, *where, "-o", "name")
        if result.returncode == 0:
            leftovers.append(f"{kind}/{name}")
        else:
            assert "NotFound" in result.stderr, result.stderr
    # And anything else carrying the release's labels or the product's name.
    selector = f"app.kubernetes.io/instance={release}"
    for kind in NAMESPACED:
        leftovers += kubectl.ok("get", kind, "-A", "-l", selector, "-o", "name").split()
    for kind in CLUSTER_SCOPED:
        leftovers += kubectl.ok("get", kind, "-l", selector, "-o", "name").split()
        leftovers += [n for n in kubectl.ok("get", kind, "-o", "name").split() if "helmdeck" in n]
    assert not sorted(set(leftovers)), f"left behind after uninstall: {sorted(set(leftovers))}"

    leases = kubectl.json("get", "leases", "-n", ns)["items"]
    for lease in leases:
        if "helmdeck" in lease["metadata"]["name"]:
            holder = (lease.get("spec") or {}).get("holderIdentity")
            assert not holder, f"Lease {lease['metadata']['name']} still held by {holder}"

    for kind in ("helmdecksessions", "sessionpools", "sidecarpolicies"):
        assert not kubectl.json("get", kind, "--all-namespaces")["items"], kind

    if pytestconfig.getoption("delete_crds"):
        kubectl.ok("delete", "crd", *CRDS, "--wait=true", "--timeout=120s")
        for name in CRDS:
            assert kubectl.get("crd", name) is None, name
        listed = kubectl.ok("api-resources", "--api-group=helmdeck.dev", "-o", "name")
        assert not listed.strip(), listed
