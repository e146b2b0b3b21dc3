"""The chart's tenancy objects, rendered offline: the TenantPolicies of `tenancy.policies`,
the ValidatingAdmissionPolicies checking sessions, pools and policies against them, their
bindings, and the operator's fallback in its configuration. What the apiserver makes of
them is tests/integration/test_tenancy_admission.py (and the dry-run of every posture).
"""

from __future__ import annotations

from typing import Any

import yaml

from helmdeck_operator.config import TenancyFallback
from helmdeck_operator.core.tenancy import SAFE_DEFAULT, TenantRules
from tests.support.chart import FULLNAME, Helm, find, one

KINDS = ("sessions", "pools", "policies")
#: What each admission policy checks.
RESOURCES = {"sessions": "helmdecksessions", "pools": "sessionpools", "policies": "sidecarpolicies"}
PARAM_KIND = {"apiVersion": "helmdeck.dev/v1alpha1", "kind": "TenantPolicy"}


def admission(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    ]


def config_tenancy(objects: list[dict[str, Any]]) -> Any:
    text = one(objects, "ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"]
    return yaml.safe_load(text)["tenancy"]


# -- TenantPolicies -------------------------------------------------------------------


def test_the_default_render_has_a_safe_default_tenant_policy(helm: Helm) -> None:
    objects = helm.objects()

    (policy,) = find(objects, "TenantPolicy")
    assert policy["apiVersion"] == "helmdeck.dev/v1alpha1"
    assert policy["metadata"]["name"] == "default"
    assert "namespace" not in policy["metadata"]  # cluster-scoped
    assert policy["metadata"]["labels"]["app.kubernetes.io/name"] == "helmdeck-operator"
    assert policy["spec"] == {
        "imagePrefixes": [],
        "providers": [],
        "perSession": {"cpu": "4", "memory": "8Gi", "gpu": 0, "ports": 8},
        "perNamespace": {"sessions": 20, "cpu": "32", "memory": "64Gi", "gpu": 0},
        "policy": {"allowAudit": False, "allowTlsSkip": False},
    }


def test_the_charts_default_asks_what_the_operators_built_in_default_asks(helm: Helm) -> None:
    """Besides the totals (the platform's sizing), the same rules whether the TenantPolicy
    exists or not."""
    (policy,) = find(helm.objects(), "TenantPolicy")

    rules = TenantRules.model_validate(policy["spec"])

    assert rules.model_copy(update={"per_namespace": SAFE_DEFAULT.per_namespace}) == SAFE_DEFAULT


def test_each_entry_of_tenancy_policies_renders_one_tenant_policy(helm: Helm) -> None:
    strict = {"gateways": ["pods"], "imagePrefixes": ["registry.example.com/agents/"]}
    vip = {"perSession": {"gpu": 2}, "policy": {"allowAudit": True}}

    objects = helm.objects({"tenancy": {"policies": {"strict": strict, "vip": vip}}})

    rendered = {p["metadata"]["name"]: p["spec"] for p in find(objects, "TenantPolicy")}
    assert set(rendered) == {"default", "strict", "vip"}  # values merge into the chart's map
    assert rendered["strict"] == strict
    assert rendered["vip"] == vip


def test_the_charts_default_tenant_policy_can_be_left_out(helm: Helm) -> None:
    objects = helm.objects({"tenancy": {"policies": {"default": None, "team": {"providers": []}}}})

    assert [p["metadata"]["name"] for p in find(objects, "TenantPolicy")] == ["team"]


def test_the_charts_default_tenant_policy_can_be_edited(helm: Helm) -> None:
    objects = helm.objects(
        {"tenancy": {"policies": {"default": {"perNamespace": {"sessions": 5}}}}}
    )

    spec = one(objects, "TenantPolicy", "default")["spec"]
    assert spec["perNamespace"] == {"sessions": 5, "cpu": "32", "memory": "64Gi", "gpu": 0}
    assert spec["imagePrefixes"] == []


# -- admission ------------------------------------------------------------------------


def test_the_default_render_checks_sessions_pools_and_policies_at_admission(helm: Helm) -> None:
    objects = helm.objects()

    policies = find(objects, "ValidatingAdmissionPolicy")
    assert sorted(p["metadata"]["name"] for p in policies) == sorted(
        f"{FULLNAME}-tenancy-{kind}" for kind in KINDS
    )
    for kind in KINDS:
        spec = one(objects, "ValidatingAdmissionPolicy", f"{FULLNAME}-tenancy-{kind}")["spec"]
        assert spec["paramKind"] == PARAM_KIND
        assert spec["failurePolicy"] == "Fail"
        (rule,) = spec["matchConstraints"]["resourceRules"]
        assert rule == {
            "apiGroups": ["helmdeck.dev"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": [RESOURCES[kind]],
        }
        # Only a written spec is checked: the operator's finalizer writes on objects admitted
        # under older rules must pass, or their deletion could never finish.
        (written,) = spec["matchConditions"]
        assert "object.spec != oldObject.spec" in written["expression"]
        assert all(v["reason"] == "Forbidden" for v in spec["validations"])
        assert all("messageExpression" in v for v in spec["validations"])


def test_each_binding_evaluates_every_tenant_policy_and_denies(helm: Helm) -> None:
    objects = helm.objects()

    bindings = find(objects, "ValidatingAdmissionPolicyBinding")
    assert len(bindings) == len(KINDS)
    for kind in KINDS:
        name = f"{FULLNAME}-tenancy-{kind}"
        spec = one(objects, "ValidatingAdmissionPolicyBinding", name)["spec"]
        assert spec["policyName"] == name
        assert spec["validationActions"] == ["Deny"]
        assert spec["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
        assert "matchResources" not in spec  # every namespace


def test_the_admission_checks_name_the_fields_where_each_kind_holds_them(helm: Helm) -> None:
    """A session's fields are under spec, a pool's under spec.template; only a session has
    ports. The messages start with the field, as the operator's refusals do."""
    objects = helm.objects()

    def messages(kind: str) -> str:
        spec = one(objects, "ValidatingAdmissionPolicy", f"{FULLNAME}-tenancy-{kind}")["spec"]
        return "\n".join(v["messageExpression"] for v in spec["validations"])

    sessions, pools, policies = (messages(kind) for kind in KINDS)
    for field in ("image", "providers", "resources.cpu", "resources.memory", "resources.gpu"):
        assert f"'spec.{field}: " in sessions
        assert f"'spec.template.{field}: " in pools
    assert "'spec.ports: " in sessions
    assert "spec.ports" not in pools
    assert "'spec.gateway: " in sessions
    assert "policy.allowAudit: false" in policies
    assert "policy.allowTlsSkip: false" in policies


def test_admission_can_be_switched_off_keeping_the_tenant_policies(helm: Helm) -> None:
    objects = helm.objects({"tenancy": {"admission": {"enabled": False}}})

    assert admission(objects) == []
    assert [p["metadata"]["name"] for p in find(objects, "TenantPolicy")] == ["default"]


def test_the_namespace_selector_reaches_every_binding(helm: Helm) -> None:
    selector = {
        "matchLabels": {"helmdeck.dev/tenant": "true"},
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ],
    }

    objects = helm.objects({"tenancy": {"admission": {"namespaceSelector": selector}}})

    bindings = find(objects, "ValidatingAdmissionPolicyBinding")
    assert len(bindings) == len(KINDS)
    for binding in bindings:
        assert binding["spec"]["matchResources"] == {"namespaceSelector": selector}


# -- the operator's side --------------------------------------------------------------


def test_the_configuration_carries_the_fallback(helm: Helm) -> None:
    assert config_tenancy(helm.objects()) == {"fallback": "Safe"}
    opened = helm.objects({"tenancy": {"fallback": "Open"}})
    assert config_tenancy(opened) == {"fallback": TenancyFallback.OPEN.value}


def test_a_fallback_the_operator_does_not_know_is_refused(helm: Helm) -> None:
    result = helm.render({"tenancy": {"fallback": "Closed"}})

    assert result.returncode != 0
    assert "fallback" in result.stderr
