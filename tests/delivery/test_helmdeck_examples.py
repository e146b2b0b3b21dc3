"""docs/helmdeck.md shows the consumer examples whole: each block marked
`<!-- example: PATH -->` must be the file at PATH, byte for byte, and every example source
file must be shown. The RBAC Roles it documents (`<!-- role: NAME -->`) grant what the page
says, and the examples stay lint-clean here, since `make lint` covers the product's
directories only: `go vet` and gofmt for Go, ruff and strict mypy for Python.

The integration tests (tests/integration/operator/test_helmdeck_clients.py) run both
examples against the real operator and apply the documented Roles and session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helmdeck_doc import (
    EXAMPLES,
    GO_EXAMPLE,
    PY_EXAMPLE,
    doc_blocks,
    doc_yaml,
)
from tests.support.repo import REPO_ROOT

REPO = REPO_ROOT


def test_the_doc_shows_each_example_file_as_it_is() -> None:
    shown = doc_blocks("example")
    sources = sorted(
        p.relative_to(REPO).as_posix() for p in EXAMPLES.rglob("*") if p.suffix in {".go", ".py"}
    )
    assert sources, "no example sources found"
    assert sorted(shown) == sources, "each example source shown once, and nothing else"
    for path, text in shown.items():
        assert text == (REPO / path).read_text(), (
            f"docs/helmdeck.md's copy of {path} drifted: paste the file into the block again"
        )


def test_the_documented_roles_grant_what_the_doc_says() -> None:
    def rules(name: str) -> dict[str, set[str]]:
        role = doc_yaml("role", name)
        assert role["kind"] == "Role"
        assert "namespace" not in role["metadata"]  # applied with -n into the consumer's
        granted: dict[str, set[str]] = {}
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["helmdeck.dev"]
            for resource in rule["resources"]:
                granted.setdefault(resource, set()).update(rule["verbs"])
        return granted

    assert rules("consumer") == {
        "helmdecksessions": {"create", "get", "list", "watch", "delete"},
        "helmdecksessions/status": {"patch"},
    }
    assert rules("renewer") == {"helmdecksessions/status": {"get", "patch"}}


def test_the_documented_session_is_a_helmdecksession() -> None:
    session = doc_yaml("session", "research")
    assert session["kind"] == "HelmdeckSession"
    assert session["apiVersion"] == "helmdeck.dev/v1alpha1"


def test_the_readme_links_the_page() -> None:
    assert "(docs/helmdeck.md)" in (REPO / "README.md").read_text()


def run(*cmd: str, cwd: Path = REPO, timeout: float = 240) -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout}{result.stderr}"
    assert not (cmd[0].endswith("gofmt") and result.stdout), f"not gofmt'ed: {result.stdout}"


def test_the_go_example_is_vet_and_gofmt_clean() -> None:
    if shutil.which("go") is None:
        pytest.skip("no `go` on PATH: the Go example cannot be vetted here")
    run("gofmt", "-l", ".", cwd=GO_EXAMPLE)
    run("go", "vet", "./...", cwd=GO_EXAMPLE)


def test_the_python_example_is_lint_clean() -> None:
    tools = Path(sys.executable).parent
    run(str(tools / "ruff"), "format", "--check", str(PY_EXAMPLE))
    run(str(tools / "ruff"), "check", str(PY_EXAMPLE))
    # Strict, except that the kubernetes client's config and watch modules are untyped.
    run(str(tools / "mypy"), "--strict", "--allow-untyped-calls", str(PY_EXAMPLE))
