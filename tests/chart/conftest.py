"""Fixtures for the Helm chart tests: `helm` against the chart (tests.support.chart).

`helm` is built by hack/build-tools.sh (pinned v3.19.5, cached outside the repository) the
first time a chart test needs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chart import Helm
from tests.support.tools import build_tools


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """helm from hack/build-tools.sh: built on first use (a few minutes), then cached."""
    return build_tools() / "helm"


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary, tmp_path_factory.mktemp("helm"))
