"""The CRDs as a user meets them through kubectl: samples, explain, columns, categories, status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.objects import policy
from tests.support.repo import POLICY_DIR, REPO_ROOT

SAMPLES = sorted((REPO_ROOT / "docs" / "samples").rglob("*.yaml"))
DEFAULT_POLICIES = sorted(POLICY_DIR.glob("*.yaml"))


def test_there_are_samples_for_every_family() -> None:
    names = {p.stem for p in SAMPLES}
    assert {"browser", "python", "node", "vision"} <= names
    assert len([p for p in SAMPLES if p.parent.name == "policies"]) >= 4


@pytest.mark.parametrize(
    "manifest", SAMPLES + DEFAULT_POLICIES, ids=lambda p: p.parent.name + "/" + p.name
)
def test_every_sample_and_default_policy_applies(
    cluster: ControlPlane, namespace: str, manifest: Path
) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", str(manifest))
    assert result.returncode == 0, result.stderr
    assert "created" in result.stdout
    assert result.stderr == ""  # no warnings either (e.g. unknown fields dropped)


def test_explain_shows_field_docs(cluster: ControlPlane) -> None:
    result = cluster.kubectl("explain", "helmdecksession.spec.lifetime.ttl")
    assert result.returncode == 0, result.stderr
    assert "Go duration" in result.stdout
    result = cluster.kubectl("explain", "sidecarpolicy.spec.network.endpoints.host")
    assert result.returncode == 0, result.stderr
    assert "wildcard may only be the" in result.stdout


def test_category_short_names_and_printer_columns(cluster: ControlPlane, namespace: str) -> None:
    for manifest in SAMPLES:
        assert cluster.kubectl("apply", "-n", namespace, "-f", str(manifest)).returncode == 0
    status = {
        "status": {
            "phase": "Ready",
            "sandbox": {"name": "hd-abc", "gateway": "microvm"},
            "policy": {"name": "vision-docs-only", "gatewayVersion": 3},
        }
    }
    patched = cluster.kubectl(
        "patch",
        "hds",
        "vision-desktop",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    assert patched.returncode == 0, patched.stderr

    listing = cluster.kubectl("get", "helmdeck", "-n", namespace)
    assert listing.returncode == 0, listing.stderr
    assert "helmdecksession.helmdeck.dev/browser-research" in listing.stdout
    assert "sidecarpolicy.helmdeck.dev/python-pypi" in listing.stdout

    wide = cluster.kubectl("get", "hds", "vision-desktop", "-n", namespace, "-o", "wide")
    header, row = wide.stdout.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "FAMILY",
        "PHASE",
        "POLICY",
        "POLICY-VER",
        "SANDBOX",
        "GATEWAY",
        "EXPIRES",
        "AGE",
    ]
    assert row.split()[:7] == [
        "vision-desktop",
        "vision",
        "Ready",
        "vision-docs-only",
        "3",
        "hd-abc",
        "microvm",
    ]

    policies = cluster.kubectl("get", "scp", "-n", namespace)
    assert policies.stdout.split()[:6] == ["NAME", "VALID", "APPLIED", "BOUND", "LOADED", "AGE"]


def test_status_is_a_subresource(cluster: ControlPlane, namespace: str) -> None:
    sample = REPO_ROOT / "docs" / "samples" / "sessions" / "python.yaml"
    assert cluster.kubectl("apply", "-n", namespace, "-f", str(sample)).returncode == 0
    before = cluster.kubectl_json("get", "hds", "python-analysis", "-n", namespace)

    # A status sent with the main resource is ignored ...
    before["status"] = {"phase": "Ready"}
    cluster.kubectl("replace", "-n", namespace, "-f", "-", stdin=json.dumps(before))
    after = cluster.kubectl_json("get", "hds", "python-analysis", "-n", namespace)
    assert "status" not in after

    # ... written through /status it sticks and does not bump the generation.
    result = cluster.kubectl(
        "patch",
        "hds",
        "python-analysis",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Provisioning"}}),
    )
    assert result.returncode == 0, result.stderr
    after = cluster.kubectl_json("get", "hds", "python-analysis", "-n", namespace)
    assert after["status"]["phase"] == "Provisioning"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_defaults_are_applied_by_the_apiserver(cluster: ControlPlane, namespace: str) -> None:
    manifest = policy("bare", filesystem={}, landlock={}, rollout={})
    created = cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(manifest))
    assert created.returncode == 0, created.stderr
    spec = cluster.kubectl_json("get", "scp", "bare", "-n", namespace)["spec"]
    assert spec == {
        "filesystem": {"includeWorkdir": True},
        "landlock": {"compatibility": "best_effort"},
        "rollout": {"maxUnavailable": 1},
        "staticChanges": "Reject",
    }
