"""Static properties of the CRDs that `kubectl explain` and tooling rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.repo import CRD_DIR
from tests.support.schema import walk

CRD_FILES = sorted(CRD_DIR.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd


@pytest.fixture(params=CRD_FILES, ids=lambda p: p.name)
def crd(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


#: The platform team's kind: cluster-scoped, written by people only (no status).
PLATFORM_KINDS = {"TenantPolicy"}


def test_the_four_kinds_are_defined() -> None:
    assert [load(p)["spec"]["names"]["kind"] for p in CRD_FILES] == [
        "HelmdeckSession",
        "SessionPool",
        "SidecarPolicy",
        "TenantPolicy",
    ]


def test_identity_and_discovery(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.helmdeck.dev"
    assert spec["group"] == "helmdeck.dev"
    platform = spec["names"]["kind"] in PLATFORM_KINDS
    assert spec["scope"] == ("Cluster" if platform else "Namespaced")
    assert spec["names"]["categories"] == ["helmdeck"]
    assert len(spec["names"]["shortNames"]) == 1
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    subresources = dict(version.get("subresources") or {})
    if spec["names"]["kind"] == "SessionPool":
        # kubectl scale, HorizontalPodAutoscaler and KEDA: replicas and a selector string.
        assert subresources.pop("scale") == {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    assert subresources == ({} if platform else {"status": {}})
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age"


def test_every_field_is_documented(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented = [
        path
        for path, node in walk(schema, "")
        if path not in ("", ".metadata")
        and not node.get("description")
        # Items of scalar lists are described by the list itself.
        and not (path.endswith("[]") and node.get("type") in ("string", "integer"))
    ]
    assert undocumented == []


def test_cel_rules_carry_a_message(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema, ""):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("message") or rule.get("messageExpression"), path
            assert rule.get("reason"), path


def test_conditions_follow_the_kubernetes_convention(crd: dict[str, Any]) -> None:
    if crd["spec"]["names"]["kind"] in PLATFORM_KINDS:
        pytest.skip("TenantPolicy has no status: the operator only reads it")
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert "observedGeneration" in item["properties"]


def _schema(plural: str) -> dict[str, Any]:
    schema: dict[str, Any] = load(CRD_DIR / f"{plural}.helmdeck.dev.yaml")["spec"]["versions"][0][
        "schema"
    ]["openAPIV3Schema"]
    return schema


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


#: The sandbox-shape fields a SessionPool's template restates from a HelmdeckSession spec.
SHAPE_FIELDS = ["image", "command", "resources", "env", "providers"]


def test_the_pool_template_is_exactly_the_sessions_sandbox_shape() -> None:
    """A pool sandbox serves a session only if their shapes are equal, so the template must
    accept exactly what a session accepts: same fields, schemas, rules and messages."""
    session = _schema("helmdecksessions")["properties"]["spec"]["properties"]
    template = _schema("sessionpools")["properties"]["spec"]["properties"]["template"]
    assert list(template["properties"]) == SHAPE_FIELDS
    for name in SHAPE_FIELDS:
        assert template["properties"][name] == session[name], name
    assert "required" not in template


def test_references_share_the_policy_refs_schema() -> None:
    session = _schema("helmdecksessions")["properties"]["spec"]["properties"]
    pool = _schema("sessionpools")["properties"]["spec"]["properties"]
    policy_ref = _without_descriptions(session["policyRef"])
    assert _without_descriptions(session["poolRef"]) == policy_ref
    assert _without_descriptions(pool["baselinePolicyRef"]) == policy_ref
    assert _without_descriptions(pool["gateway"]) == _without_descriptions(session["gateway"])


def test_pool_and_session_conditions_share_one_schema() -> None:
    def conditions(plural: str) -> Any:
        status = _schema(plural)["properties"]["status"]["properties"]
        return _without_descriptions(status["conditions"])

    assert conditions("sessionpools") == conditions("helmdecksessions")


@pytest.mark.parametrize(
    ("plural", "field"),
    [("helmdecksessions", "gateway"), ("helmdecksessions", "poolRef"), ("sessionpools", "gateway")],
)
def test_added_or_removed_or_changed_is_refused_for_immutable_refs(plural: str, field: str) -> None:
    spec = _schema(plural)["properties"]["spec"]
    rules = [r for r in spec["x-kubernetes-validations"] if r.get("fieldPath") == f".{field}"]
    assert len(rules) == 1, rules
    (rule,) = rules
    assert rule["rule"].startswith(f"has(self.{field}) == has(oldSelf.{field}) && ")
    assert rule["message"].startswith(f"{field} is immutable; delete the ")
    assert rule["reason"] == "FieldValueForbidden"


def test_pool_bounds_and_defaults() -> None:
    spec = _schema("sessionpools")["properties"]["spec"]
    assert spec["required"] == ["family"]
    replicas, provisioning = spec["properties"]["replicas"], spec["properties"]["maxProvisioning"]
    assert (replicas["default"], replicas["minimum"], replicas["maximum"]) == (1, 0, 1000)
    assert (provisioning["default"], provisioning["minimum"], provisioning["maximum"]) == (
        10,
        1,
        100,
    )
    claims = _schema("sessionpools")["properties"]["status"]["properties"]["claims"]
    # Atomic: the operator writes the list whole, and per-claim field ownership made every
    # write of a 250-claim pool cost the apiserver enough to triple claim latency.
    assert claims["x-kubernetes-list-type"] == "atomic"
    assert set(claims["items"]["required"]) == {"sandbox", "uid"}
