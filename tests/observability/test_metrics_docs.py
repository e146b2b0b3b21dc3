"""docs/metrics.md is the reference of metrics.py: every exported metric has its row (type and
labels as exported) and its section, and the page names no metric that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

from .exported import SUFFIXES, families, labels_by_family, series_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_ROW = re.compile(r"^\| \[`(helmdeck_\w+)`\]\(#[\w-]+\) \| (\w+) \| ([^|]*) \|", re.MULTILINE)


def exposed(name: str, kind: str) -> str:
    """The name a reader sees in the exposition: counters with `_total`."""
    return name + SUFFIXES[kind][0] if kind == "counter" else name


def test_every_metric_has_a_row_with_its_type_and_labels() -> None:
    rows = {name: (kind, labels) for name, kind, labels in _ROW.findall(DOC.read_text())}
    labels = labels_by_family()
    expected = {
        exposed(name, kind): (kind, sorted(labels[name] - {"le"}))
        for name, kind in families().items()
    }
    documented = {
        name: (kind, sorted(re.findall(r"`(\w+)`", cell))) for name, (kind, cell) in rows.items()
    }
    assert documented == expected


def test_every_metric_has_a_section() -> None:
    text = DOC.read_text()
    missing = [
        exposed(name, kind)
        for name, kind in families().items()
        if f"\n## {exposed(name, kind)}\n" not in text
    ]
    assert not missing, f"docs/metrics.md has no section for {missing}"


def test_the_page_names_only_exported_metrics() -> None:
    known = set(series_names()) | set(families())
    # Metric names, not the package in a path (operator/helmdeck_operator/...).
    named = set(re.findall(r"(?<![\w/])helmdeck_[a-z_]*[a-z](?![\w/])", DOC.read_text()))
    assert named - known == set()
