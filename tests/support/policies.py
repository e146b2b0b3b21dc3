"""SidecarPolicy data for tests: the shipped family policies, and builders of specs.

Specs are plain dicts as a user writes them (camelCase, the CRD's shape).
"""

from __future__ import annotations

from typing import Any

import yaml
from tests.support.repo import POLICY_DIR

__all__ = ["FAMILIES", "family_manifest", "family_spec"]

#: The session families, each with a shipped default policy (policies/<family>.yaml).
FAMILIES = ("browser", "node", "python", "vision")


def family_manifest(family: str) -> dict[str, Any]:
    """The shipped default SidecarPolicy manifest of one family."""
    manifest: dict[str, Any] = yaml.safe_load((POLICY_DIR / f"{family}.yaml").read_text())
    return manifest


def family_spec(family: str) -> dict[str, Any]:
    """The `spec` of a shipped family policy."""
    spec: dict[str, Any] = family_manifest(family)["spec"]
    return spec
