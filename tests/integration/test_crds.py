"""The CRDs as a user meets them through kubectl: samples, explain, columns, categories, status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.objects import policy, pool
from tests.support.repo import POLICY_DIR, REPO_ROOT

SAMPLE_DIR = REPO_ROOT / "docs" / "samples"
SAMPLES = sorted(SAMPLE_DIR.rglob("*.yaml"))
DEFAULT_POLICIES = sorted(POLICY_DIR.glob("*.yaml"))


def test_there_are_samples_for_every_family() -> None:
    families = {"browser", "python", "node", "vision"}
    for kind in ("sessions", "pools"):
        assert families <= {p.stem for p in SAMPLES if p.parent.name == kind}, kind
    assert len([p for p in SAMPLES if p.parent.name == "policies"]) >= 4
    assert {p.parent.name for p in SAMPLES} == {"policies", "pools", "sessions"}


def test_the_pooled_session_sample_fits_its_pool() -> None:
    """The sample claims for real: its pool exists among the samples, of its family and
    gateway, with a template equal to the session's shape fields."""
    session = yaml.safe_load((SAMPLE_DIR / "sessions" / "browser-pooled.yaml").read_text())
    pools = {
        pool["metadata"]["name"]: pool
        for pool in (yaml.safe_load(p.read_text()) for p in SAMPLES if p.parent.name == "pools")
    }
    pool = pools[session["spec"]["poolRef"]["name"]]["spec"]
    assert pool["family"] == session["spec"]["family"]
    assert pool.get("gateway") == session["spec"].get("gateway")
    shape = ("image", "command", "resources", "env", "providers")
    assert pool["template"] == {k: v for k, v in session["spec"].items() if k in shape}


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
    result = cluster.kubectl("explain", "sessionpool.spec.template.image")
    assert result.returncode == 0, result.stderr
    assert "pinned by tag or digest" in result.stdout
    result = cluster.kubectl("explain", "helmdecksession.spec.poolRef")
    assert result.returncode == 0, result.stderr
    assert "falls back to a cold create" in result.stdout


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
        "POOL",
        "IDLE-AT",
        "ENDPOINTS",
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

    assert "sessionpool.helmdeck.dev/browser-warm" in listing.stdout
    pool_status = {"status": {"readyReplicas": 1, "claimed": 4, "provisioning": 0}}
    patched = cluster.kubectl(
        "patch",
        "hdp",
        "vision-warm",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(pool_status),
    )
    assert patched.returncode == 0, patched.stderr
    pools = cluster.kubectl("get", "hdp", "vision-warm", "-n", namespace, "-o", "wide")
    header, row = pools.stdout.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "FAMILY",
        "DESIRED",
        "READY",
        "CLAIMED",
        "GATEWAY",
        "PROVISIONING",
        "AGE",
    ]
    assert row.split()[:7] == ["vision-warm", "vision", "1", "1", "4", "microvm", "0"]


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


def test_pool_defaults_are_applied_by_the_apiserver(cluster: ControlPlane, namespace: str) -> None:
    created = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", stdin=json.dumps(pool("bare", "node"))
    )
    assert created.returncode == 0, created.stderr
    spec = cluster.kubectl_json("get", "hdp", "bare", "-n", namespace)["spec"]
    assert spec == {"family": "node", "replicas": 1, "maxProvisioning": 10}


def test_pool_status_is_a_subresource(cluster: ControlPlane, namespace: str) -> None:
    sample = SAMPLE_DIR / "pools" / "python.yaml"
    assert cluster.kubectl("apply", "-n", namespace, "-f", str(sample)).returncode == 0
    before = cluster.kubectl_json("get", "hdp", "python-warm", "-n", namespace)
    before["status"] = {"replicas": 2}
    cluster.kubectl("replace", "-n", namespace, "-f", "-", stdin=json.dumps(before))
    assert "status" not in cluster.kubectl_json("get", "hdp", "python-warm", "-n", namespace)

    status = {
        "replicas": 2,
        "readyReplicas": 1,
        "provisioning": 1,
        "claimed": 1,
        "selector": "helmdeck.dev/pool-uid=abc",
        "observedGeneration": 1,
        "baseline": {"name": "python-pypi", "revision": "sha256:" + "0" * 64},
        "shape": "0123456789abcdef",
        "claims": [
            {
                "sandbox": "hd-pool-1",
                "session": "python-analysis",
                "uid": "5b0c5f0e-0000-4000-8000-000000000001",
                "claimedAt": "2025-06-01T12:00:00Z",
            }
        ],
    }
    result = cluster.kubectl(
        "patch",
        "hdp",
        "python-warm",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert result.returncode == 0, result.stderr
    after = cluster.kubectl_json("get", "hdp", "python-warm", "-n", namespace)
    assert after["status"] == status  # nothing pruned: every field the operator writes is known
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
