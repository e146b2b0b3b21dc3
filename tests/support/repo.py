"""Where the repository's files are, for tests that read them (CRDs, shipped policies, docs)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHART", "CRD_DIR", "POLICY_DIR", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
#: The shipped per-family default SidecarPolicies (policies/<family>.yaml).
POLICY_DIR = REPO_ROOT / "policies"
CHART = REPO_ROOT / "charts" / "helmdeck-operator"
