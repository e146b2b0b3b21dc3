"""Copies the chart carries stay identical to their sources in the repository.

Helm can only package files under the chart directory, so the CRDs and the family default
policies are copies; these tests fail the moment a source changes without its copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chart import FULLNAME, Helm, one
from tests.support.repo import CHART, REPO_ROOT

CRDS = sorted(p.name for p in (REPO_ROOT / "crds").glob("*.yaml"))
POLICIES = sorted(p.name for p in (REPO_ROOT / "policies").glob("*.yaml"))


def test_the_chart_carries_exactly_the_crds_and_policies() -> None:
    assert CRDS == [
        "helmdecksessions.helmdeck.dev.yaml",
        "sessionpools.helmdeck.dev.yaml",
        "sidecarpolicies.helmdeck.dev.yaml",
        "tenantpolicies.helmdeck.dev.yaml",
    ]
    assert POLICIES == ["browser.yaml", "node.yaml", "python.yaml", "vision.yaml"]
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == CRDS
    assert sorted(p.name for p in (CHART / "files" / "policies").iterdir()) == POLICIES


@pytest.mark.parametrize("name", CRDS)
def test_crd_copy_is_byte_identical(name: str) -> None:
    source, copy = REPO_ROOT / "crds" / name, CHART / "crds" / name
    assert copy.read_bytes() == source.read_bytes(), f"cp {_rel(source)} {_rel(copy)}"


@pytest.mark.parametrize("name", POLICIES)
def test_policy_copy_is_byte_identical(name: str) -> None:
    source, copy = REPO_ROOT / "policies" / name, CHART / "files" / "policies" / name
    assert copy.read_bytes() == source.read_bytes(), f"cp {_rel(source)} {_rel(copy)}"


def test_policies_configmap_holds_the_files_unchanged(helm: Helm) -> None:
    config_map = one(helm.objects(), "ConfigMap", f"{FULLNAME}-policies")
    assert config_map["data"] == {
        name: (REPO_ROOT / "policies" / name).read_text() for name in POLICIES
    }


def test_crds_render_with_include_crds(helm: Helm) -> None:
    rendered = helm.template(None, "--include-crds")
    for name in CRDS:
        assert (REPO_ROOT / "crds" / name).read_text().strip() in rendered


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))
