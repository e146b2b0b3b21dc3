"""Fixtures for the policy unit tests: the CRD's spec schema, and the shipped family policies.

Everything here reads files from the repository; nothing needs a cluster or a gateway.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import policies, schema


@pytest.fixture(scope="session")
def crd_spec_schema() -> dict[str, Any]:
    """The openAPIV3Schema of SidecarPolicy's `spec`, as the apiserver is given it."""
    return schema.crd_spec_schema("sidecarpolicies")


@pytest.fixture(params=policies.FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def family_manifest(family: str) -> dict[str, Any]:
    """The shipped default SidecarPolicy manifest of one family."""
    return policies.family_manifest(family)
