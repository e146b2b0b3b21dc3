"""The rendered chart against the real apiserver: every posture passes a server-side dry-run
(schema, defaulting, admission, RBAC escalation checks), and the RBAC, applied for real,
grants the chart's ServiceAccount exactly the operator's permissions where they belong, and
lets it derive its instance from the cluster and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.operator_process import write_config
from helmdeck_operator.config import load_config
from helmdeck_operator.core.naming import CLUSTER_ID_NAMESPACE, derived_instance
from helmdeck_operator.kube import Kube, KubeError
from helmdeck_operator.run import CLUSTER_PERMISSIONS, PERMISSIONS, _instance
from tests.support.chart import POSTURES, Helm, posture
from tests.support.cluster import create_namespace, delete_namespace, install_crds

pytestmark = pytest.mark.cluster

SERVICEMONITOR_CRD = Path(__file__).with_name("servicemonitor-crd.yaml")


@pytest.fixture(scope="module")
def servicemonitor_crd(cluster: ControlPlane) -> ControlPlane:
    return install_crds(cluster, SERVICEMONITOR_CRD)


@pytest.fixture
def namespaces(cluster: ControlPlane) -> Iterator[list[str]]:
    """Two fresh namespaces to watch in the namespaced posture."""
    names = [create_namespace(cluster, f"team-{secrets.token_hex(3)}") for _ in range(2)]
    yield names
    for name in names:
        delete_namespace(cluster, name)


@pytest.mark.parametrize("name", sorted(POSTURES))
def test_server_side_dry_run(
    helm: Helm,
    servicemonitor_crd: ControlPlane,
    namespace: str,
    namespaces: list[str],
    name: str,
) -> None:
    values = posture(name)
    if name == "namespaced":
        values["watchNamespaces"] = namespaces
    manifest = helm.template(values, "--include-crds", namespace=namespace)
    result = servicemonitor_crd.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest)
    assert result.returncode == 0, result.stderr
    applied = result.stdout.splitlines()
    assert all(line.endswith("(server dry run)") for line in applied), result.stdout
    kinds = {line.split("/")[0].split(".")[0] for line in applied}
    assert {"customresourcedefinition", "serviceaccount", "configmap", "deployment"} <= kinds
    # Tenancy, in every posture: TenantPolicies and the admission checks (their CEL parsed).
    assert {
        "tenantpolicy",
        "validatingadmissionpolicy",
        "validatingadmissionpolicybinding",
    } <= kinds
    if name == "servicemonitor":
        assert "servicemonitor" in kinds
    if name == "networkpolicy":
        assert "networkpolicy" in kinds


@contextlib.contextmanager
def _rbac_applied(
    helm: Helm, cluster: ControlPlane, values: dict[str, Any] | None, namespace: str
) -> Iterator[str]:
    """The chart's RBAC and ServiceAccount for `values`, applied for real under a fresh
    release in `namespace` and deleted afterwards; yields the release's full name (the
    ServiceAccount's and the Lease's)."""
    release = f"r{secrets.token_hex(3)}"
    manifest = helm.template(
        values,
        "--show-only",
        "templates/rbac.yaml",
        "--show-only",
        "templates/serviceaccount.yaml",
        namespace=namespace,
        release=release,
    )
    applied = cluster.kubectl("apply", "-f", "-", stdin=manifest)
    assert applied.returncode == 0, applied.stderr
    try:
        yield f"{release}-helmdeck-operator"
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=manifest)


def _can_i(cluster: ControlPlane, account: str, verb: str, *what: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, *what, f"--as={account}")
    assert result.stdout.strip() in {"yes", "no"}, result.stderr
    return result.stdout.strip() == "yes"


def _resource(group: str, resource: str, sub: str | None) -> list[str]:
    """`kubectl auth can-i` arguments for a (sub)resource: a subresource needs
    `--subresource`, since `TYPE/status` would ask about an object *named* status."""
    what = f"{resource}{'.' + group if group else ''}"
    return [what, f"--subresource={sub}"] if sub else [what]


def test_namespaced_rbac_grants_exactly_the_operators_permissions(
    helm: Helm, cluster: ControlPlane, namespace: str, namespaces: list[str]
) -> None:
    """Applied for real: allowed in the watched namespaces, nowhere else, and nothing more."""
    values = posture("namespaced")
    values["watchNamespaces"] = namespaces
    with _rbac_applied(helm, cluster, values, namespace) as fullname:
        account = f"system:serviceaccount:{namespace}:{fullname}"
        for verb, group, resource, sub in PERMISSIONS:
            what = _resource(group, resource, sub)
            for watched in namespaces:
                assert _can_i(cluster, account, verb, *what, "-n", watched), (
                    f"{verb} {what} in {watched}"
                )
            assert not _can_i(cluster, account, verb, *what, "-n", namespace), (
                f"{verb} {what} outside"
            )
            assert not _can_i(cluster, account, verb, *what, "--all-namespaces"), (
                f"{verb} {what} everywhere"
            )
        watched = namespaces[0]
        for verb, what in [
            ("get", "sidecarpolicies.helmdeck.dev"),  # the operator reads policies from its index
            ("create", "helmdecksessions.helmdeck.dev"),
            ("update", "helmdecksessions.helmdeck.dev"),
            ("delete", "sidecarpolicies.helmdeck.dev"),
            ("create", "sessionpools.helmdeck.dev"),  # pools are the user's
            ("update", "sessionpools.helmdeck.dev"),
            ("delete", "sessionpools.helmdeck.dev"),
            ("update", "events"),
            ("delete", "events"),
            ("get", "secrets"),
            ("list", "pods"),
        ]:
            assert not _can_i(cluster, account, verb, what, "-n", watched), f"{verb} {what}"
        # Leader election: its own Lease in the release namespace.
        lease = f"leases.coordination.k8s.io/{fullname}"
        for verb in ("get", "update"):
            assert _can_i(cluster, account, verb, lease, "-n", namespace)
            assert not _can_i(
                cluster, account, verb, "leases.coordination.k8s.io/other", "-n", namespace
            )
            assert not _can_i(cluster, account, verb, lease, "-n", watched)
        assert _can_i(cluster, account, "create", "leases.coordination.k8s.io", "-n", namespace)
        assert not _can_i(cluster, account, "delete", lease, "-n", namespace)
        # `check`: its three CRDs, nothing else cluster-scoped.
        crds = "customresourcedefinitions.apiextensions.k8s.io"
        assert _can_i(cluster, account, "get", f"{crds}/helmdecksessions.helmdeck.dev")
        assert _can_i(cluster, account, "get", f"{crds}/sessionpools.helmdeck.dev")
        assert _can_i(cluster, account, "get", f"{crds}/sidecarpolicies.helmdeck.dev")
        assert not _can_i(cluster, account, "get", f"{crds}/servicemonitors.monitoring.coreos.com")
        assert not _can_i(cluster, account, "list", crds)
        # The derived instance: the kube-system Namespace, in this scope too, and no other.
        assert _can_i(cluster, account, "get", f"namespaces/{CLUSTER_ID_NAMESPACE}")
        assert not _can_i(cluster, account, "get", f"namespaces/{namespace}")
        _assert_tenancy_reads(cluster, account)


def test_cluster_rbac_grants_the_operators_permissions_everywhere(
    helm: Helm, cluster: ControlPlane, namespace: str
) -> None:
    with _rbac_applied(helm, cluster, None, namespace) as fullname:
        account = f"system:serviceaccount:{namespace}:{fullname}"
        for verb, group, resource, sub in PERMISSIONS:
            what = _resource(group, resource, sub)
            assert _can_i(cluster, account, verb, *what, "--all-namespaces"), f"{verb} {what}"
        for verb in ("get", "update", "delete"):
            assert not _can_i(
                cluster, account, verb, "sidecarpolicies.helmdeck.dev", "--all-namespaces"
            ), f"{verb} sidecarpolicies"
        for verb in ("create", "update", "delete"):
            assert not _can_i(
                cluster, account, verb, "sessionpools.helmdeck.dev", "--all-namespaces"
            ), f"{verb} sessionpools"
        # The scale subresource is for users and autoscalers, not the operator.
        assert not _can_i(
            cluster,
            account,
            "patch",
            "sessionpools.helmdeck.dev",
            "--subresource=scale",
            "--all-namespaces",
        )
        assert not _can_i(cluster, account, "get", "secrets", "--all-namespaces")
        _assert_tenancy_reads(cluster, account)


def _assert_tenancy_reads(cluster: ControlPlane, account: str) -> None:
    """Tenancy, in either scope: TenantPolicies and Namespaces read cluster-wide, and only
    read (a tenant's rules are the platform team's to write)."""
    for verb, group, resource, sub in CLUSTER_PERMISSIONS:
        what = _resource(group, resource, sub)
        assert _can_i(cluster, account, verb, *what), f"{verb} {what}"
    for verb in ("get", "create", "update", "patch", "delete"):
        assert not _can_i(cluster, account, verb, "tenantpolicies.helmdeck.dev"), verb
    assert not _can_i(cluster, account, "patch", "namespaces")


def test_the_chart_account_derives_the_instance_and_reads_no_other_namespace(
    helm: Helm,
    cluster: ControlPlane,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the chart's ServiceAccount, the operator's start-up step reads the kube-system
    Namespace's UID (the one GET the derivation needs) and is refused any other Namespace."""
    cluster_uid = cluster.kubectl(
        "get", "namespace", CLUSTER_ID_NAMESPACE, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    config = load_config(
        write_config(tmp_path / "config.yaml", "127.0.0.1:1", instance="", release="ns/r"),
        environ={},
    )
    with _rbac_applied(helm, cluster, None, namespace) as fullname:
        monkeypatch.setenv(
            "KUBECONFIG",
            str(cluster.serviceaccount_kubeconfig(namespace, fullname, tmp_path / "sa.yaml")),
        )

        async def as_the_account() -> tuple[str, str]:
            kube = Kube.from_environment()
            try:
                resolved, source = await _instance(config, kube)
                with pytest.raises(KubeError, match="forbidden"):
                    await kube.namespace_uid(namespace)
                return resolved.instance, source
            finally:
                await kube.close()

        instance, source = asyncio.run(as_the_account())
    assert cluster_uid
    assert instance == derived_instance(cluster_uid, "ns/r")
    assert source.startswith("derived from the kube-system Namespace's UID")
