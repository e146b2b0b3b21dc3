"""The Grafana dashboard shipped in the chart: valid, and every query names only series the
operator exports (and only labels those series carry), so a renamed metric breaks this test
rather than a panel nobody looks at until the incident."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.repo import CHART

from .exported import families, labels_by_family, series_names

DASHBOARD = CHART / "dashboards" / "helmdeck-operator.json"
TEMPLATE = CHART / "templates" / "dashboard-configmap.yaml"

#: PromQL words that are not metric names (binary operators, modifiers).
KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
#: Labels Prometheus itself attaches at scrape time, usable on any series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
#: A metric's `namespace` label is renamed to this when the target has one (no honorLabels).
RENAMED = {"exported_namespace"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (identifiers not called as functions)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring clauses."""
    text = _STRING.sub('""', expr)
    used = set()
    for matchers in _MATCHERS.findall(text):
        used.update(_MATCHER_LABEL.findall(matchers))
    for grouping in _GROUPING.findall(text):
        used.update(part.strip() for part in grouping.split(",") if part.strip())
    return used


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows nest theirs


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every panel target and every query variable."""
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            yield f"variable ${variable['name']}", inner.group(1) if inner else text


def unknown_metrics(board: dict[str, Any]) -> list[str]:
    exported = series_names()
    return [
        f"{where}: {name} is not exported by the operator"
        for where, expr in queries(board)
        for name in sorted(metric_names(expr))
        if name not in exported
    ]


def test_dashboard_is_valid_json_with_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"]
    assert board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in all_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in all_panels(dashboard()["panels"])]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    assert not repeated, f"panel ids used more than once: {repeated}"


def test_panels_fit_the_grid() -> None:
    for panel in all_panels(dashboard()["panels"]):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_query_names_only_exported_metrics() -> None:
    problems = unknown_metrics(dashboard())
    assert not problems, "\n".join(problems)


def test_every_query_uses_only_labels_its_metrics_carry() -> None:
    exported, labels = series_names(), labels_by_family()
    problems = []
    for where, expr in queries(dashboard()):
        carried = set().union(*(labels[exported[n]] for n in metric_names(expr) if n in exported))
        unknown = label_names(expr) - carried - TARGET_LABELS - RENAMED
        problems += [f"{where}: label {label!r} is on none of its metrics" for label in unknown]
    assert not problems, "\n".join(problems)


def test_every_exported_metric_is_on_the_dashboard() -> None:
    exported = series_names()
    shown = {
        exported[n] for _, expr in queries(dashboard()) for n in metric_names(expr) if n in exported
    }
    assert set(families()) - shown == set()


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (phase) (helmdeck_sessions{job=~"$job"})', {"helmdeck_sessions"}),
        (
            "histogram_quantile(0.99, sum by (le, rpc) (rate(x_bucket[$__rate_interval])))",
            {"x_bucket"},
        ),
        ("a / on(gateway) group_left b offset 5m", {"a", "b"}),
        ('label_replace(m, "namespace", "$1", "exported_namespace", "(.+)") or vector(0)', {"m"}),
        ("sum(rate(m_total[5m])) by (code) > 1e3", {"m_total"}),
    ],
)
def test_metric_names_reads_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_carry_the_client_suffixes() -> None:
    exported = series_names()
    assert "helmdeck_session_time_to_ready_seconds" not in exported  # histograms: suffixes only
    assert "helmdeck_gateway_requests" not in exported  # counters: `_total` only
    assert {"helmdeck_sessions", "helmdeck_gateway_requests_total"} <= set(exported)
    assert {
        "helmdeck_policy_propagation_seconds_bucket",
        "helmdeck_policy_propagation_seconds_sum",
        "helmdeck_policy_propagation_seconds_count",
    } <= set(exported)


def test_an_unknown_metric_is_reported_with_its_panel() -> None:
    board = {
        "panels": [
            {
                "id": 7,
                "title": "Typo",
                "targets": [{"expr": "sum(rate(helmdeck_gateway_request_total[5m]))"}],
            }
        ],
        "templating": {
            "list": [{"name": "job", "type": "query", "query": "label_values(up, job)"}]
        },
    }
    assert unknown_metrics(board) == [
        "panel 7 'Typo': helmdeck_gateway_request_total is not exported by the operator",
        "variable $job: up is not exported by the operator",
    ]


def test_the_chart_ships_this_file_in_a_configmap() -> None:
    template = TEMPLATE.read_text()
    assert '.Files.Get "dashboards/helmdeck-operator.json"' in template
    assert ".Values.grafanaDashboard" in template
