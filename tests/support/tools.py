"""The delivery tools hack/build-tools.sh builds from Go modules (helm, actionlint)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.repo import REPO_ROOT

__all__ = ["build_tools"]


def build_tools() -> Path:
    """The folder holding the tools: built on first use (a few minutes), then cached outside
    the repository (an unchanged tree is a no-op)."""
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert built.returncode == 0, f"hack/build-tools.sh failed:\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1])
