"""metrics.py: each recorder moves the series docs/metrics.md says it does, with the labels
it says; a fresh Metrics has a fresh registry."""

from __future__ import annotations

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
    assert (
        sample(metrics, "helmdeck_policy_denials_total", namespace="team-a", family="browser") == 3
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
