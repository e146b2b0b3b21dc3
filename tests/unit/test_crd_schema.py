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


def test_both_kinds_are_defined() -> None:
    assert [load(p)["spec"]["names"]["kind"] for p in CRD_FILES] == [
        "HelmdeckSession",
        "SidecarPolicy",
    ]


def test_identity_and_discovery(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.helmdeck.dev"
    assert spec["group"] == "helmdeck.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["categories"] == ["helmdeck"]
    assert len(spec["names"]["shortNames"]) == 1
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
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
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert "observedGeneration" in item["properties"]
