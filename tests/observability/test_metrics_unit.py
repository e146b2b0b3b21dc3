"""metrics.py: each recorder moves the series docs/metrics.md says it does, with the labels
it says; a fresh Metrics has a fresh registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from helmdeck_operator.gateway.client import CallRecord
from helmdeck_operator.observability.metrics import Metrics

from .exported import families


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    registry: CollectorRegistry = metrics.registry
    return registry.get_sample_value(name, labels)


def test_session_gauge_counts_sessions_per_phase_family_and_gateway() -> None:
    metrics = Metrics()
    metrics.record_session("u1", "Ready", "node", "pods")
    metrics.record_session("u2", "Ready", "node", "pods")
    metrics.record_session("u3", "Provisioning", "browser", "vms")
    assert sample(metrics, "helmdeck_sessions", phase="Ready", family="node", gateway="pods") == 2
    assert (
        sample(metrics, "helmdeck_sessions", phase="Provisioning", family="browser", gateway="vms")
        == 1
    )
    # A session moves: it counts in its latest phase only.
    metrics.record_session("u3", "Ready", "browser", "vms")
    assert (
        sample(metrics, "helmdeck_sessions", phase="Provisioning", family="browser", gateway="vms")
        is None
    )
    assert sample(metrics, "helmdeck_sessions", phase="Ready", family="browser", gateway="vms") == 1


def test_forget_removes_a_session_and_ignores_unknown_ones() -> None:
    metrics = Metrics()
    metrics.record_session("u1", "Ready", "node", "pods")
    metrics.record_session("u2", "Ready", "node", "pods")
    metrics.forget_session("u1")
    metrics.forget_session("never-seen")
    assert sample(metrics, "helmdeck_sessions", phase="Ready", family="node", gateway="pods") == 1
    metrics.forget_session("u2")
    assert (
        sample(metrics, "helmdeck_sessions", phase="Ready", family="node", gateway="pods") is None
    )


def test_record_call_counts_by_code_and_times_by_rpc() -> None:
    metrics = Metrics()
    metrics.record_call(CallRecord("pods", "GetSandbox", "UNAVAILABLE", 1, 0.02, "r1"))
    metrics.record_call(CallRecord("pods", "GetSandbox", "OK", 2, 0.004, "r1"))
    count = "helmdeck_gateway_requests_total"
    assert sample(metrics, count, gateway="pods", rpc="GetSandbox", code="UNAVAILABLE") == 1
    assert sample(metrics, count, gateway="pods", rpc="GetSandbox", code="OK") == 1
    latency = "helmdeck_gateway_request_duration_seconds"
    assert sample(metrics, f"{latency}_count", gateway="pods", rpc="GetSandbox") == 2
    assert sample(metrics, f"{latency}_sum", gateway="pods", rpc="GetSandbox") == 0.024
    assert sample(metrics, f"{latency}_bucket", gateway="pods", rpc="GetSandbox", le="0.005") == 1
    assert sample(metrics, f"{latency}_bucket", gateway="pods", rpc="GetSandbox", le="0.025") == 2


def test_record_orphans_takes_the_gateway_from_gateway_slash_name() -> None:
    metrics = Metrics()
    metrics.record_orphans(["pods/hd-1", "pods/hd-2", "vms/hd-3"])
    metrics.record_orphans([])
    assert sample(metrics, "helmdeck_orphans_collected_total", gateway="pods") == 2
    assert sample(metrics, "helmdeck_orphans_collected_total", gateway="vms") == 1


def test_the_other_recorders() -> None:
    metrics = Metrics()
    metrics.record_ready("node", "pods", 3.0)
    metrics.record_ready("node", "pods", -1.0)  # clock skew: clamped, not a negative sample
    metrics.record_propagation(0.7)
    metrics.record_error("HelmdeckSession", "GatewayUnavailable")
    metrics.record_expiry("python", "Retain")
    metrics.record_idle("python", "Delete")
    metrics.record_denials("team-a", "browser", 3)
    ready = "helmdeck_session_time_to_ready_seconds"
    assert sample(metrics, f"{ready}_count", family="node", gateway="pods") == 2
    assert sample(metrics, f"{ready}_bucket", family="node", gateway="pods", le="0.5") == 1
    assert sample(metrics, "helmdeck_policy_propagation_seconds_bucket", le="1.0") == 1
    assert (
        sample(
            metrics,
            "helmdeck_reconcile_errors_total",
            kind="HelmdeckSession",
            reason="GatewayUnavailable",
        )
        == 1
    )
    assert (
        sample(metrics, "helmdeck_session_expiries_total", family="python", on_expiry="Retain") == 1
    )
    assert sample(metrics, "helmdeck_session_idles_total", family="python", on_idle="Delete") == 1
    assert (
        sample(metrics, "helmdeck_policy_denials_total", namespace="team-a", family="browser") == 3
    )


POOL_GAUGES = (
    "helmdeck_pool_ready_sandboxes",
    "helmdeck_pool_provisioning_sandboxes",
    "helmdeck_pool_claimed_sandboxes",
    "helmdeck_pool_target_sandboxes",
)


def test_record_pool_sets_the_four_gauges_of_each_pool() -> None:
    metrics = Metrics()
    metrics.record_pool("team-a", "warm", ready=3, provisioning=2, claimed=5, target=4)
    metrics.record_pool("team-b", "warm", ready=0, provisioning=1, claimed=0, target=1)
    values = [sample(metrics, name, namespace="team-a", pool="warm") for name in POOL_GAUGES]
    assert values == [3, 2, 5, 4]
    values = [sample(metrics, name, namespace="team-b", pool="warm") for name in POOL_GAUGES]
    assert values == [0, 1, 0, 1]
    # The next pass replaces the counts, it does not add to them.
    metrics.record_pool("team-a", "warm", ready=4, provisioning=0, claimed=6, target=4)
    values = [sample(metrics, name, namespace="team-a", pool="warm") for name in POOL_GAUGES]
    assert values == [4, 0, 6, 4]
    text = metrics.exposition().decode()
    assert 'helmdeck_pool_ready_sandboxes{namespace="team-a",pool="warm"} 4.0' in text
    assert 'helmdeck_pool_target_sandboxes{namespace="team-b",pool="warm"} 1.0' in text


def test_forget_pool_removes_its_series_and_ignores_unknown_pools() -> None:
    metrics = Metrics()
    metrics.record_pool("team-a", "warm", ready=3, provisioning=2, claimed=5, target=4)
    metrics.record_pool("team-a", "big", ready=1, provisioning=0, claimed=0, target=1)
    metrics.forget_pool("team-a", "warm")
    metrics.forget_pool("team-a", "never-seen")
    for name in POOL_GAUGES:
        assert sample(metrics, name, namespace="team-a", pool="warm") is None, name
        assert sample(metrics, name, namespace="team-a", pool="big") is not None, name
    text = metrics.exposition().decode()
    assert 'pool="warm"' not in text
    assert "# TYPE helmdeck_pool_ready_sandboxes gauge" in text  # the family stays


def test_record_claim_observes_seconds_by_family() -> None:
    metrics = Metrics()
    metrics.record_claim("browser", 0.04)
    metrics.record_claim("browser", 0.3)
    metrics.record_claim("browser", -0.01)  # clock skew: clamped, not a negative sample
    claim = "helmdeck_pool_claim_seconds"
    assert sample(metrics, f"{claim}_count", family="browser") == 3
    assert sample(metrics, f"{claim}_sum", family="browser") == pytest.approx(0.34)
    assert sample(metrics, f"{claim}_bucket", family="browser", le="0.01") == 1
    assert sample(metrics, f"{claim}_bucket", family="browser", le="0.05") == 2
    assert sample(metrics, f"{claim}_bucket", family="browser", le="0.35") == 3
    assert sample(metrics, f"{claim}_count", family="node") is None
    assert 'helmdeck_pool_claim_seconds_bucket{family="browser",le="5.0"} 3.0' in (
        metrics.exposition().decode()
    )


def test_record_fallback_counts_by_family_and_reason() -> None:
    metrics = Metrics()
    metrics.record_fallback("node", "PoolEmpty")
    metrics.record_fallback("node", "PoolEmpty")
    metrics.record_fallback("node", "PoolNotFound")
    metrics.record_fallback("python", "PoolShapeMismatch")
    fallbacks = "helmdeck_pool_fallbacks_total"
    assert sample(metrics, fallbacks, family="node", reason="PoolEmpty") == 2
    assert sample(metrics, fallbacks, family="node", reason="PoolNotFound") == 1
    assert sample(metrics, fallbacks, family="python", reason="PoolShapeMismatch") == 1
    assert sample(metrics, fallbacks, family="python", reason="PoolPolicyNotLive") is None
    assert 'helmdeck_pool_fallbacks_total{family="node",reason="PoolEmpty"} 2.0' in (
        metrics.exposition().decode()
    )


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.record_denials("ns", "node", 1)
    assert sample(second, "helmdeck_policy_denials_total", namespace="ns", family="node") is None


def test_exposition_has_help_and_type_for_every_metric_even_before_samples() -> None:
    text = Metrics().exposition().decode()
    for name, kind in families().items():
        exposed = f"{name}_total" if kind == "counter" else name
        assert f"# HELP {exposed} " in text, name
        assert f"# TYPE {exposed} {kind}" in text, name
    assert "helmdeck_policy_propagation_seconds_count 0.0" in text  # unlabelled: always there
