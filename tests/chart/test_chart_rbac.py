"""The chart's RBAC is exactly what the operator calls, in both scopes.

`RULES` is the table docs/install.md explains verb by verb. It must equal `run.PERMISSIONS`
(what `helmdeck-operator check` verifies and the operator uses): a permission added to the
operator without the chart, or to the chart without the operator, fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from helmdeck_operator.core.naming import CLUSTER_ID_NAMESPACE
from helmdeck_operator.run import CLUSTER_PERMISSIONS, CRDS, PERMISSIONS
from tests.support.chart import FULLNAME, RELEASE_NAMESPACE, Helm, find, one, posture

Triple = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

#: In each watched namespace (Role) or cluster-wide (ClusterRole).
RULES: frozenset[Triple] = frozenset(
    {
        ("helmdeck.dev", "helmdecksessions", "get"),  # orphan sweep: does the session exist?
        ("helmdeck.dev", "helmdecksessions", "list"),  # kopf: initial listing
        ("helmdeck.dev", "helmdecksessions", "watch"),  # kopf: changes
        ("helmdeck.dev", "helmdecksessions", "patch"),  # the operator's finalizer, on and off
        ("helmdeck.dev", "helmdecksessions", "delete"),  # lifetime.onExpiry: Delete
        ("helmdeck.dev", "helmdecksessions/status", "patch"),  # status
        ("helmdeck.dev", "sessionpools", "get"),  # orphan sweep: does the pool still exist?
        ("helmdeck.dev", "sessionpools", "list"),  # kopf: initial listing
        ("helmdeck.dev", "sessionpools", "watch"),  # kopf: changes
        ("helmdeck.dev", "sessionpools", "patch"),  # the operator's finalizer, on and off
        ("helmdeck.dev", "sessionpools/status", "patch"),  # counts, claims, conditions
        ("helmdeck.dev", "sidecarpolicies", "list"),  # kopf: initial listing
        ("helmdeck.dev", "sidecarpolicies", "watch"),  # kopf: changes
        ("helmdeck.dev", "sidecarpolicies", "patch"),  # release a finalizer of old versions
        ("helmdeck.dev", "sidecarpolicies/status", "patch"),  # revision, counts, conditions
        ("", "events", "create"),  # Events on sessions and policies
        ("", "events", "patch"),  # a repeated Event: its count and lastTimestamp
    }
)
#: Leader election, in the release namespace only, on the one Lease.
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": [FULLNAME],
        "verbs": ["get", "update"],
    },
]
#: A derived instance: the kube-system Namespace's UID, the cluster's identity, read once.
CLUSTER_ID_RULES = [
    {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "resourceNames": [CLUSTER_ID_NAMESPACE],
        "verbs": ["get"],
    }
]
#: `check`: its own four CRDs, by name.
CRD_RULES = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "resourceNames": list(CRDS),
        "verbs": ["get"],
    }
]


def test_the_table_is_what_the_operator_uses() -> None:
    used = {
        (group, resource + (f"/{sub}" if sub else ""), verb)
        for verb, group, resource, sub in PERMISSIONS
    }
    assert used == RULES


def triples(rules: list[dict[str, Any]]) -> set[Triple]:
    assert all("resourceNames" not in r and "nonResourceURLs" not in r for r in rules), rules
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _binding_subjects(binding: dict[str, Any]) -> list[dict[str, Any]]:
    return list(binding["subjects"])


_SUBJECT = [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}]


def test_cluster_scope(helm: Helm) -> None:
    objects = helm.objects()
    role = one(objects, "ClusterRole", FULLNAME)
    assert triples(role["rules"]) == RULES
    binding = one(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert _binding_subjects(binding) == _SUBJECT
    assert not [r for r in find(objects, "Role") if r["metadata"]["name"] == FULLNAME]
    _assert_common(objects)


def test_namespaces_scope(helm: Helm) -> None:
    objects = helm.objects(posture("namespaced"))
    assert not find(objects, "ClusterRole", FULLNAME)
    assert not find(objects, "ClusterRoleBinding", FULLNAME)
    for namespace in ("team-a", "team-b"):
        (role,) = [
            r for r in find(objects, "Role", FULLNAME) if r["metadata"]["namespace"] == namespace
        ]
        assert triples(role["rules"]) == RULES
        (binding,) = [
            b
            for b in find(objects, "RoleBinding", FULLNAME)
            if b["metadata"]["namespace"] == namespace
        ]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert _binding_subjects(binding) == _SUBJECT
    assert len(find(objects, "Role", FULLNAME)) == 2
    _assert_common(objects)


def _assert_common(objects: list[dict[str, Any]]) -> None:
    lease_role = one(objects, "Role", f"{FULLNAME}-leader-election")
    assert lease_role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert lease_role["rules"] == LEASE_RULES
    assert _binding_subjects(one(objects, "RoleBinding", f"{FULLNAME}-leader-election")) == _SUBJECT
    assert one(objects, "ClusterRole", f"{FULLNAME}-crds")["rules"] == CRD_RULES
    assert _binding_subjects(one(objects, "ClusterRoleBinding", f"{FULLNAME}-crds")) == _SUBJECT
    # The default instance is derived: a ClusterRole in either scope, on the one Namespace.
    assert one(objects, "ClusterRole", f"{FULLNAME}-cluster-id")["rules"] == CLUSTER_ID_RULES
    binding = one(objects, "ClusterRoleBinding", f"{FULLNAME}-cluster-id")
    assert binding["roleRef"]["name"] == f"{FULLNAME}-cluster-id"
    assert _binding_subjects(binding) == _SUBJECT
    # Tenancy: TenantPolicies and Namespaces are cluster-scoped, so a ClusterRole in either
    # scope, read only: exactly `run.CLUSTER_PERMISSIONS`.
    tenancy = one(objects, "ClusterRole", f"{FULLNAME}-tenancy")
    assert triples(tenancy["rules"]) == {
        (group, resource, verb) for verb, group, resource, _ in CLUSTER_PERMISSIONS
    }
    binding = one(objects, "ClusterRoleBinding", f"{FULLNAME}-tenancy")
    assert binding["roleRef"]["name"] == f"{FULLNAME}-tenancy"
    assert _binding_subjects(binding) == _SUBJECT
    # Nothing else grants anything (the tenancy objects grant nothing: they restrict).
    kinds = {o["kind"] for o in objects}
    assert kinds <= {
        "TenantPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "NetworkPolicy",
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    }


@pytest.mark.parametrize(
    ("values", "absent"),
    [
        ({"leaderElection": {"enabled": False}, "replicas": 1}, f"{FULLNAME}-leader-election"),
        ({"rbac": {"create": True, "scope": "cluster", "checkCRDs": False}}, f"{FULLNAME}-crds"),
        # A pinned instance is not derived: no grant on kube-system.
        ({"config": {"instance": "team-blue"}}, f"{FULLNAME}-cluster-id"),
    ],
)
def test_optional_grants_can_be_left_out(helm: Helm, values: dict[str, Any], absent: str) -> None:
    objects = helm.objects(values)
    assert not [o for o in objects if o["metadata"]["name"] == absent]


def test_rbac_create_false_renders_no_grants(helm: Helm) -> None:
    objects = helm.objects({"rbac": {"create": False, "scope": "cluster"}})
    assert not {o["kind"] for o in objects} & {
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    }


def test_lease_name_follows_the_values(helm: Helm) -> None:
    objects = helm.objects({"leaderElection": {"enabled": True, "leaseName": "hd-leader"}})
    rule = one(objects, "Role", f"{FULLNAME}-leader-election")["rules"][1]
    assert rule["resourceNames"] == ["hd-leader"]
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"][container["args"].index("--lease-name") + 1] == "hd-leader"
