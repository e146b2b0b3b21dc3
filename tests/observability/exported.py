"""What the operator exports, read from its own registry (not from a list kept by hand).

Names come from the registry's metric families, so a metric with no samples yet counts too;
prometheus_client adds `_total` to counters and `_bucket`, `_sum`, `_count` to histograms
(`_created` samples exist too, but nothing should chart them). Label names come from a
registry in which every recorder has been called once.
"""

from __future__ import annotations

from helmdeck_operator.gateway.client import CallRecord
from helmdeck_operator.observability.metrics import Metrics

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


class _Cache:
    """A gateway's sandbox cache, as the gateway gauges read it at scrape time."""

    up = True
    watches = 0

    def __len__(self) -> int:
        return 0


def families() -> dict[str, str]:
    """Metric family name -> type, as the registry describes them."""
    return {family.name: family.type for family in Metrics().registry.collect()}


def series_names() -> dict[str, str]:
    """Every sample name a query may use -> the family it belongs to."""
    return {name + suffix: name for name, kind in families().items() for suffix in SUFFIXES[kind]}


def labels_by_family() -> dict[str, set[str]]:
    """Family -> its label names (plus `le` for histograms), from a populated registry."""
    metrics = Metrics()
    metrics.record_session("uid", "Ready", "node", "gw")
    metrics.record_ready("node", "gw", 1.0)
    metrics.record_propagation(1.0)
    metrics.record_call(CallRecord("gw", "GetSandbox", "OK", 1, 0.01, "rid"))
    metrics.record_error("HelmdeckSession", "GatewayUnavailable")
    metrics.record_orphans(["gw/name"])
    metrics.record_expiry("node", "Delete")
    metrics.record_idle("node", "Suspend")
    metrics.record_denials("ns", "node", 1)
    metrics.record_event_dropped("PolicyDenied")
    metrics.record_pool("ns", "warm", ready=1, provisioning=0, claimed=0, target=1)
    metrics.record_claim("node", 0.1)
    metrics.record_fallback("node", "PoolEmpty")
    metrics.watch_caches({"gw": _Cache()})
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        names = out.setdefault(family.name, set())
        for sample in family.samples:
            names.update(sample.labels)
    return out
