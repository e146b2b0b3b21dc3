"""What an operator of this operator watches: metrics move as things happen, and OCSF
policy denials reach the owning session as (aggregated) Events and a metric."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import phase, policy, session
from helmdeck_operator.core.naming import sandbox_name
from tests.support import policies

pytestmark = pytest.mark.usefixtures("operator")

Scrape = Callable[[], dict[str, float]]


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for key, sample in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += sample
    return total


def test_metrics_follow_sessions_policies_and_gateway_errors(
    kube: Any, eventually: Any, gateway: EmulatorProcess, scrape: Scrape
) -> None:
    before = scrape()
    kube.apply(policy("p", network=[policies.rule("a", policies.endpoint("a.example.com"))]))
    kube.apply(session("watched", "node", policyRef={"name": "p"}))
    eventually(lambda: phase(kube.get("hds", "watched")) == "Ready", "Ready")

    after = eventually(
        lambda: (
            (s := scrape())
            and value(s, "helmdeck_session_time_to_ready_seconds_count", family="node")
            > value(before, "helmdeck_session_time_to_ready_seconds_count", family="node")
            and s
        ),
        "time-to-Ready observed",
    )
    assert value(after, "helmdeck_sessions", phase="Ready", family="node", gateway="pods") >= 1
    assert value(after, "helmdeck_gateway_requests_total", rpc="CreateSandbox", code="OK") > value(
        before, "helmdeck_gateway_requests_total", rpc="CreateSandbox", code="OK"
    )
    # One listing per gateway, not a call per session, keeps the cache current.
    assert value(after, "helmdeck_gateway_request_duration_seconds_count", rpc="ListSandboxes") > 0

    # A policy edit: propagation is observed once it is loaded on the bound session.
    kube.apply(policy("p", network=[policies.rule("b", policies.endpoint("b.example.com"))]))
    eventually(
        lambda: (
            value(scrape(), "helmdeck_policy_propagation_seconds_count")
            > value(after, "helmdeck_policy_propagation_seconds_count")
        ),
        "policy propagation observed",
    )

    # An injected gateway error shows its code, and the failed pass counts as an error: the
    # listing fails, the gateway is down, and after the outage grace (2 s here) every
    # session on it is told.
    gateway.set_faults({"errors": {"ListSandboxes": {"code": "UNAVAILABLE", "rate": 1.0}}})
    eventually(
        lambda: (
            (s := scrape())
            and value(s, "helmdeck_gateway_requests_total", rpc="ListSandboxes", code="UNAVAILABLE")
            >= 1
            and value(s, "helmdeck_gateway_up", gateway="pods") == 0
            and value(s, "helmdeck_reconcile_errors_total", kind="HelmdeckSession") >= 1
        ),
        "UNAVAILABLE counted and the pass reported as a reconcile error",
    )

    # A deleted session leaves the sessions gauge.
    uid = kube.get("hds", "watched")["metadata"]["uid"]
    gateway.clear_faults()
    kube.run("delete", "hds", "watched", "--wait=true", "--timeout=60s")
    assert uid  # the gauge counts per session; none of this namespace's remain
    eventually(
        lambda: (
            value(scrape(), "helmdeck_sessions", family="node", phase="Ready")
            < value(after, "helmdeck_sessions", family="node", phase="Ready")
        ),
        "the deleted session leaves the gauge",
    )


DENIAL = {
    "message": "NET:DENIED [HIGH] egress to evil.example.com:443 blocked",
    "level": "OCSF",
    "target": "ocsf",
    "source": "sandbox",
    "fields": {
        "class_uid": "4001",
        "action": "Denied",
        "dst_host": "evil.example.com",
        "dst_port": "443",
        "rule": "default-deny",
    },
}


def test_a_denial_becomes_one_event_and_repeats_are_aggregated(
    kube: Any, eventually: Any, gateway: EmulatorProcess, scrape: Scrape
) -> None:
    kube.apply(session("noisy", "browser"), session("quiet", "browser"))
    ready = eventually(kube.in_phase("noisy", "Ready"), "noisy Ready")
    eventually(lambda: phase(kube.get("hds", "quiet")) == "Ready", "quiet Ready")
    time.sleep(1)  # let the follower open its log stream on the new sandbox
    base = value(
        scrape(), "helmdeck_policy_denials_total", namespace=kube.namespace, family="browser"
    )
    name = sandbox_name(ready["metadata"]["uid"])

    gateway.append_logs("default", name, [DENIAL])
    eventually(lambda: ("Warning", "PolicyDenied") in kube.events("noisy"), "a PolicyDenied Event")
    denied = [e for e in kube.events("noisy") if e[1] == "PolicyDenied"]
    assert len(denied) == 1
    assert (
        value(scrape(), "helmdeck_policy_denials_total", namespace=kube.namespace, family="browser")
        == base + 1
    )

    # Twenty more of the same: counted each, posted as one summary after the window (2 s).
    gateway.append_logs("default", name, [DENIAL] * 20)
    eventually(
        lambda: len([e for e in kube.events("noisy") if e[1] == "PolicyDenied"]) == 2,
        "one summary Event for the repeats",
    )
    time.sleep(3)  # another window: nothing more to say
    assert len([e for e in kube.events("noisy") if e[1] == "PolicyDenied"]) == 2
    assert (
        value(scrape(), "helmdeck_policy_denials_total", namespace=kube.namespace, family="browser")
        == base + 21
    )
    listing = kube.plane.kubectl_json(
        "get", "events", "-n", kube.namespace, "--field-selector=reason=PolicyDenied"
    )
    messages = [e["message"] for e in listing["items"]]
    assert any("evil.example.com:443" in m and "20 more times" in m for m in messages)
    assert all(e["involvedObject"]["name"] == "noisy" for e in listing["items"])
    assert ("Warning", "PolicyDenied") not in kube.events("quiet")
