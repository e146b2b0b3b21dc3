"""Tenancy at admission: the chart's ValidatingAdmissionPolicies on the real apiserver.

The chart is rendered with one strict TenantPolicy (tests.support.tenancy.STRICT) and its
bindings limited to namespaces carrying this module's label, so no other test's namespace is
checked. Each object that breaks a rule is refused naming the field and the rule, both when
a tenant with rights in its namespace only creates it, and when the operator's own
ServiceAccount (the chart's RBAC) writes it into an admitted object's spec: admission is not
something the operator's identity gets around either.
"""

from __future__ import annotations

import copy
import json
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from helmdeck_dev import objects
from helmdeck_dev.controlplane import ControlPlane
from tests.support.chart import Helm
from tests.support.cluster import create_namespace, delete_namespace
from tests.support.tenancy import LABEL, RULE_CASES, STRICT, RuleCase
from tests.support.tools import build_tools

TAG = secrets.token_hex(3)
RELEASE = f"tn-{TAG}"
STRICT_NAME = f"strict-{TAG}"
#: Only namespaces with this label are checked by this module's bindings.
SCOPE = {"helmdeck.dev/tenancy-test": TAG}
TENANT = f"alice-{TAG}"
KINDS = ("TenantPolicy", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@pytest.fixture(scope="module")
def chart_objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    helm = Helm(build_tools() / "helm", tmp_path_factory.mktemp("helm"))
    values = {
        "tenancy": {
            # The chart's safe `default` stays out of this shared cluster: other tests'
            # namespaces have no label and would fall under it.
            "policies": {"default": None, STRICT_NAME: STRICT},
            "admission": {"namespaceSelector": {"matchLabels": SCOPE}},
        },
    }
    rendered = helm.objects(values, namespace=f"{RELEASE}-system", release=RELEASE)
    wanted = {*KINDS, "ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    return [o for o in rendered if o["kind"] in wanted]


@pytest.fixture(scope="module")
def tenancy(cluster: ControlPlane, chart_objects: list[dict[str, Any]]) -> Iterator[str]:
    """The rendered tenancy objects and the chart's RBAC applied; the ServiceAccount's user."""
    system = create_namespace(cluster, f"{RELEASE}-system")
    applied = _apply(cluster, chart_objects, system)
    assert applied.returncode == 0, applied.stderr
    yield f"system:serviceaccount:{system}:{RELEASE}-helmdeck-operator"
    for obj in chart_objects:
        if obj["kind"] != "ServiceAccount":
            cluster.kubectl("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found")
    delete_namespace(cluster, system)


@pytest.fixture
def tenant_ns(cluster: ControlPlane, tenancy: str) -> Iterator[str]:
    """A namespace under STRICT, where user TENANT may do anything with helmdeck objects and
    nothing else."""
    name = create_namespace(cluster, f"tn-{TAG}-{secrets.token_hex(3)}")
    labels = [f"{k}={v}" for k, v in {**SCOPE, LABEL: STRICT_NAME}.items()]
    assert cluster.kubectl("label", "namespace", name, *labels).returncode == 0
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "tenant", "namespace": name},
        "rules": [{"apiGroups": ["helmdeck.dev"], "resources": ["*"], "verbs": ["*"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tenant", "namespace": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}],
    }
    assert _apply(cluster, [role, binding], name).returncode == 0
    _wait_until_enforced(cluster, name)
    yield name
    delete_namespace(cluster, name)


def _apply(cluster: ControlPlane, objs: list[dict[str, Any]], namespace: str, *as_: str) -> Any:
    docs = yaml.safe_dump_all(objs)
    return cluster.kubectl(*as_, "apply", "-n", namespace, "-f", "-", stdin=docs)


def _create(cluster: ControlPlane, obj: dict[str, Any], namespace: str, user: str) -> Any:
    return cluster.kubectl(
        f"--as={user}", "create", "-n", namespace, "-f", "-", stdin=json.dumps(obj)
    )


def _wait_until_enforced(cluster: ControlPlane, namespace: str) -> None:
    """A new ValidatingAdmissionPolicy takes a moment to reach the apiserver's admission
    chain: probe with an object that breaks a rule until it is refused."""
    probe = objects.session("probe", family="python", gateway="microvm")
    for _ in range(100):
        result = _create(cluster, probe, namespace, TENANT)
        if result.returncode != 0 and "spec.gateway" in result.stderr:
            return
        cluster.kubectl("delete", "hds", "probe", "-n", namespace, "--ignore-not-found")
        cluster.kubectl("wait", "--for=delete", "hds/probe", "-n", namespace, "--timeout=5s")
    pytest.fail("the tenancy ValidatingAdmissionPolicy never took effect")


def test_the_policies_type_check_cleanly(cluster: ControlPlane, tenancy: str) -> None:
    """The apiserver type-checks each CEL expression against the CRD schemas: none warns."""
    for kind in ("sessions", "pools", "policies"):
        name = f"{RELEASE}-helmdeck-operator-tenancy-{kind}"
        for _ in range(50):
            vap = cluster.kubectl_json("get", "validatingadmissionpolicy", name)
            status = vap.get("status") or {}
            if status.get("observedGeneration") == vap["metadata"]["generation"]:
                break
        warnings = (status.get("typeChecking") or {}).get("expressionWarnings") or []
        assert warnings == [], f"{name}: {warnings}"


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: c.id)
def test_a_tenant_is_refused_each_rule_naming_field_and_rule(
    cluster: ControlPlane, tenant_ns: str, case: RuleCase
) -> None:
    result = _create(cluster, case.obj, tenant_ns, TENANT)
    assert result.returncode != 0, f"{case.id} was admitted"
    message = result.stderr
    print(f"{case.id}: {message.strip()}")
    assert "ValidatingAdmissionPolicy" in message
    assert case.field in message, message
    assert case.says in message, message
    assert f"TenantPolicy {STRICT_NAME}" in message, message


#: spec.gateway is immutable (the CRD refuses any change of it first), so that rule can only
#: be broken by a create, which the operator's account has no right to.
WRITABLE = [c for c in RULE_CASES if c.field != "spec.gateway"]


@pytest.mark.parametrize("case", WRITABLE, ids=lambda c: c.id)
def test_the_operators_own_account_cannot_write_a_broken_spec_either(
    cluster: ControlPlane, tenancy: str, tenant_ns: str, case: RuleCase
) -> None:
    allowed = _allowed_version(case)
    assert _create(cluster, allowed, tenant_ns, TENANT).returncode == 0
    name = allowed["metadata"]["name"]
    code, answer = _patch_as(
        cluster, tenancy, case.kind, tenant_ns, name, {"spec": case.obj["spec"]}
    )
    assert code == 403, f"{case.id}: the operator's account wrote it ({code})"
    assert "ValidatingAdmissionPolicy" in answer, answer
    assert case.field in answer, answer
    assert case.says in answer, answer


def test_objects_within_the_rules_are_admitted_and_the_operators_writes_pass(
    cluster: ControlPlane, tenancy: str, tenant_ns: str
) -> None:
    fitting = objects.session(
        "fits",
        family="python",
        gateway="pods",
        image="registry.example.com/agents/python:1.0",
        providers=["github"],
        resources={"cpu": "2", "memory": "4Gi", "gpu": 1},
        ports=[{"name": "app", "port": 8000}],
    )
    created = _create(cluster, fitting, tenant_ns, TENANT)
    assert created.returncode == 0, created.stderr
    # Its rules tightened afterwards, the operator's metadata and status writes still pass
    # (only a change of spec is checked), so a finalizer can always be removed.
    tighter = {**STRICT, "providers": []}
    cluster.kubectl(
        "patch",
        "tenantpolicy",
        STRICT_NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": tighter}),
    )
    try:
        for finalizers in (["helmdeck.dev/sandbox-cleanup"], None):
            meta = {"metadata": {"finalizers": finalizers}}
            code, answer = _patch_as(cluster, tenancy, "HelmdeckSession", tenant_ns, "fits", meta)
            assert code == 200, answer
        broken = {"spec": {"providers": ["github"], "suspend": True}}
        code, answer = _patch_as(cluster, tenancy, "HelmdeckSession", tenant_ns, "fits", broken)
        assert code == 403, answer
        assert "provider github is not allowed" in answer, answer
    finally:
        cluster.kubectl(
            "patch", "tenantpolicy", STRICT_NAME, "--type=merge", "-p", json.dumps({"spec": STRICT})
        )


def test_a_namespace_without_the_bindings_label_is_not_checked_by_them(
    cluster: ControlPlane, tenancy: str, namespace: str
) -> None:
    """The bindings' namespaceSelector (chart value tenancy.admission.namespaceSelector)
    decides where admission applies: elsewhere only the operator's own check holds."""
    broken = RULE_CASES[0].obj
    created = cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(broken))
    assert created.returncode == 0, created.stderr


_PLURALS = {
    "HelmdeckSession": "helmdecksessions",
    "SessionPool": "sessionpools",
    "SidecarPolicy": "sidecarpolicies",
}


def _patch_as(
    cluster: ControlPlane, user: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
) -> tuple[int, str]:
    """A merge patch sent as `user` (impersonated), as the operator sends its writes: one
    PATCH, no GET first (the operator's account may not read policies one by one)."""
    url = (
        f"{cluster.server}/apis/helmdeck.dev/v1alpha1/namespaces/{namespace}/"
        f"{_PLURALS[kind]}/{name}"
    )
    request = urllib.request.Request(
        url,
        data=json.dumps(patch).encode(),
        method="PATCH",
        headers={
            "Authorization": f"Bearer {cluster.admin_token}",
            "Impersonate-User": user,
            "Content-Type": "application/merge-patch+json",
        },
    )
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _allowed_version(case: RuleCase) -> dict[str, Any]:
    """The case's object with the breaking part taken out: admitted under STRICT."""
    obj = copy.deepcopy(case.obj)
    obj["metadata"]["name"] = f"ok-{case.id}"
    if case.kind == "SidecarPolicy":
        obj["spec"] = {
            "network": [{"name": "api", "endpoints": [{"host": "a.example.com", "port": 443}]}]
        }
    elif case.kind == "SessionPool":
        obj["spec"]["template"] = {}
    else:
        obj["spec"] = {"family": obj["spec"]["family"]}
    return obj
