"""The shipped per-family default policies: valid, least privilege, and pinned by golden files.

The golden files (tests/unit/policy/golden/<family>.yaml) hold exactly what
`helmdeck-operator policy render policies/<family>.yaml` prints. After an intended change to a
policy or to the translation, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/policy/test_policy_families.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openshell._proto import sandbox_pb2

from helmdeck_operator.policy import cli, translate
from tests.support.policies import family_spec
from tests.support.repo import REPO_ROOT

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
# Never reachable from any default: cloud metadata and the private ranges (DESIGN.md §9).
_FORBIDDEN_HOSTS = re.compile(r"^(169\.254\.|10\.|127\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)")


def test_manifest_identity(family: str, family_manifest: dict[str, Any]) -> None:
    assert family_manifest["apiVersion"] == "helmdeck.dev/v1alpha1"
    assert family_manifest["kind"] == "SidecarPolicy"
    assert family_manifest["metadata"]["name"] == f"helmdeck-default-{family}"
    assert "namespace" not in family_manifest["metadata"]
    assert set(family_manifest) == {"apiVersion", "kind", "metadata", "spec"}


def test_rendering_matches_the_golden_file(family: str, family_manifest: dict[str, Any]) -> None:
    rendered = cli.render(translate.to_sandbox_policy(family_manifest["spec"]))
    golden = GOLDEN_DIR / f"{family}.yaml"

    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)

    assert rendered == golden.read_text()


def test_least_privilege_common_to_every_family(family_manifest: dict[str, Any]) -> None:
    policy = translate.to_sandbox_policy(family_manifest["spec"])

    assert policy.process.run_as_user == "1000"
    assert policy.process.run_as_group == "1000"
    assert policy.filesystem.include_workdir
    assert set(policy.filesystem.read_only) == {"/usr", "/lib", "/etc", "/proc", "/dev/urandom"}
    assert {"/tmp", "/dev/null"} <= set(policy.filesystem.read_write)
    for rule in policy.network_policies.values():
        assert rule.binaries, f"{rule.name} must name the programs it is for"
        for endpoint in rule.endpoints:
            # allowedIps is OpenShell's opt-in to private addresses; no default opts in.
            assert list(endpoint.allowed_ips) == []
            assert not _FORBIDDEN_HOSTS.match(endpoint.host)
            assert "*" not in endpoint.host
    assert family_manifest["spec"]["staticChanges"] == "Reject"


@pytest.mark.parametrize("family", ["python", "browser", "vision"])
def test_families_without_any_outbound_traffic(family: str) -> None:
    assert len(translate.to_sandbox_policy(family_spec(family)).network_policies) == 0


def test_node_reaches_only_the_npm_registry_read_only_from_node() -> None:
    policy = translate.to_sandbox_policy(family_spec("node"))

    assert list(policy.network_policies) == ["npm-registry"]
    rule = policy.network_policies["npm-registry"]
    assert [b.path for b in rule.binaries] == ["/usr/bin/node"]
    (endpoint,) = rule.endpoints
    assert (endpoint.host, endpoint.port, list(endpoint.ports)) == ("registry.npmjs.org", 443, [])
    assert endpoint.protocol == "rest"
    assert endpoint.access == sandbox_pb2.NETWORK_ACCESS_PRESET_READ_ONLY
    assert endpoint.enforcement == sandbox_pb2.NETWORK_ENFORCEMENT_MODE_ENFORCE


def test_python_cannot_write_outside_scratch_and_workdir() -> None:
    policy = translate.to_sandbox_policy(family_spec("python"))

    assert list(policy.filesystem.read_write) == ["/dev/null", "/tmp"]


def _documented_policies() -> list[Any]:
    text = (REPO_ROOT / "docs" / "policies.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    return [
        pytest.param(doc, id=doc["metadata"]["name"])
        for doc in map(yaml.safe_load, blocks)
        if doc.get("kind") == "SidecarPolicy"
    ]


@pytest.mark.parametrize("manifest", _documented_policies())
def test_policies_in_the_docs_are_valid(manifest: dict[str, Any]) -> None:
    assert translate.to_sandbox_policy(manifest["spec"]).network_policies
