"""docs/helmdeck.md and the consumer examples it shows: where they are, and the blocks the
page marks (`<!-- example: PATH -->`, `<!-- role: NAME -->`, `<!-- session: NAME -->`), for
the drift test and the integration tests that run what the page says."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.repo import REPO_ROOT

__all__ = ["DOC", "EXAMPLES", "GO_EXAMPLE", "PY_EXAMPLE", "doc_blocks", "doc_yaml"]

DOC = REPO_ROOT / "docs" / "helmdeck.md"
EXAMPLES = REPO_ROOT / "examples"
GO_EXAMPLE = EXAMPLES / "go" / "helmdeck-session"
PY_EXAMPLE = EXAMPLES / "python" / "helmdeck_session.py"
#: A marker comment, then the fenced block right after it.
_BLOCK = re.compile(r"<!-- (\w+): (\S+) -->\n```\w*\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def doc_blocks(kind: str) -> dict[str, str]:
    """The doc's fenced blocks marked `<!-- kind: name -->`, by name."""
    return {name: text for k, name, text in _BLOCK.findall(DOC.read_text()) if k == kind}


def doc_yaml(kind: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(doc_blocks(kind)[name])
    return loaded
