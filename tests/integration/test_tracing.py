"""Traces: a span per reconcile pass with the session and sandbox attributes, the gateway
calls beneath it, the same trace id in the traceparent the gateway received and on the
session's status. In process (an in-memory span exporter), against the real apiserver and
the emulator over real gRPC."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.objects import policy, session
from helmdeck_dev.operator_process import write_config
from helmdeck_operator.config import load_config
from helmdeck_operator.core.naming import sandbox_name
from helmdeck_operator.emulator.server import EmulatorHandle
from helmdeck_operator.handlers import trimmed
from helmdeck_operator.kube import Kube
from helmdeck_operator.observability.metrics import Metrics
from helmdeck_operator.reconcile.session import reconcile_session
from helmdeck_operator.runtime import Key, Kind, Runtime
from tests.support import policies

ROOT = "reconcile session"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    # The global provider can be set once per process; no other test sets one.
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


class Index(dict[tuple[str, str], list[dict[str, Any]]]):
    """Stands in for one of kopf's indexes: (namespace, name) -> the object's trimmed body."""

    def load(self, cluster: ControlPlane, namespace: str, kind: str, name: str) -> None:
        self[(namespace, name)] = [trimmed(get(cluster, namespace, kind, name))]


@pytest.fixture
async def runtime(
    cluster: ControlPlane,
    openshell_emulator: EmulatorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    config = load_config(write_config(tmp_path / "config.yaml", openshell_emulator.address))
    rt = Runtime.build(config, Kube.from_environment(), Metrics(), lambda keys: None)
    rt.bind({"session_bodies": Index(), "policy_bodies": Index(), "pool_bodies": Index()})
    await rt.start()
    await asyncio.wait_for(rt.caches["pods"].synced.wait(), 10)
    yield rt
    await rt.close()


def get(cluster: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.kubectl_json("get", kind, name, "-n", namespace)
    return found


def create(cluster: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj))
    assert result.returncode == 0, result.stderr


def index(rt: Runtime, name: str) -> Index:
    indices: dict[str, Index] = {"sessions": rt.store._sessions, "policies": rt.store._policies}
    return indices[name]


async def run_pass(rt: Runtime, cluster: ControlPlane, namespace: str, name: str) -> None:
    """One pass over the session as the apiserver has it now."""
    index(rt, "sessions").load(cluster, namespace, "hds", name)
    await reconcile_session(rt, Key(Kind.SESSION, namespace, name))


def pass_spans(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The last reconcile span and the gateway spans under it."""
    spans = exporter.get_finished_spans()
    root = [s for s in spans if s.name == ROOT][-1]
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id
    ]
    return root, children


async def until_ready(rt: Runtime, cluster: ControlPlane, namespace: str, name: str) -> None:
    for _ in range(60):
        if (get(cluster, namespace, "hds", name).get("status") or {}).get("phase") == "Ready":
            return
        await run_pass(rt, cluster, namespace, name)
        await asyncio.sleep(0.1)
    pytest.fail("session never Ready")


async def test_a_create_is_one_trace_from_reconcile_to_gateway(
    cluster: ControlPlane,
    namespace: str,
    runtime: Runtime,
    exporter: InMemorySpanExporter,
    openshell_emulator: EmulatorHandle,
) -> None:
    create(cluster, namespace, session("traced", "python"))
    uid = get(cluster, namespace, "hds", "traced")["metadata"]["uid"]
    exporter.clear()

    await run_pass(runtime, cluster, namespace, "traced")

    root, children = pass_spans(exporter)
    assert root.attributes is not None
    assert root.attributes["k8s.namespace.name"] == namespace
    assert root.attributes["helmdeck.session.name"] == "traced"
    assert root.attributes["helmdeck.session.uid"] == uid
    assert root.attributes["openshell.sandbox.name"] == sandbox_name(uid)
    workspace = runtime.gateways["pods"].config.workspace  # Shared: the configured one
    made = runtime.caches["pods"].get(workspace, sandbox_name(uid))
    assert made is not None
    assert root.attributes["openshell.sandbox.id"] == made.id
    assert root.attributes["helmdeck.action"] == "Create"
    # The pass read the gateway's cache: the create is its only call to the gateway.
    assert [s.name for s in children] == ["openshell.v1.OpenShell/CreateSandbox"]
    assert all(s.context.trace_id == root.context.trace_id for s in children)
    sent = [r for r in openshell_emulator.requests if r["method"] == "CreateSandbox"][-1]
    assert sent["traceparent"].split("-")[1] == format(root.context.trace_id, "032x")

    # The pass that writes the status (Ready, once the sandbox is) leaves its trace there.
    await until_ready(runtime, cluster, namespace, "traced")
    writer = [s for s in exporter.get_finished_spans() if s.name == ROOT][-1]
    ready = get(cluster, namespace, "hds", "traced")
    assert ready["status"]["lastTraceId"] == format(writer.context.trace_id, "032x")
    assert ready["status"]["sandbox"]["id"] == made.id


async def test_a_policy_reload_is_traced_to_the_config_update(
    cluster: ControlPlane,
    namespace: str,
    runtime: Runtime,
    exporter: InMemorySpanExporter,
    openshell_emulator: EmulatorHandle,
) -> None:
    first = {"network": [policies.rule("a", policies.endpoint("a.example.com"))]}
    create(cluster, namespace, policy("p", **first))
    index(runtime, "policies").load(cluster, namespace, "scp", "p")
    create(cluster, namespace, session("reloaded", "node", policyRef={"name": "p"}))
    await until_ready(runtime, cluster, namespace, "reloaded")

    second = {"network": [policies.rule("b", policies.endpoint("b.example.com"))]}
    create(cluster, namespace, policy("p", **second))
    index(runtime, "policies").load(cluster, namespace, "scp", "p")
    exporter.clear()
    await run_pass(runtime, cluster, namespace, "reloaded")

    root, children = pass_spans(exporter)
    assert root.attributes is not None
    assert root.attributes["helmdeck.action"] == "PushPolicy"
    update = [s for s in children if s.name == "openshell.v1.OpenShell/UpdateConfig"]
    assert len(update) == 1
    assert update[0].attributes is not None
    assert (
        update[0].attributes["openshell.sandbox.name"] == root.attributes["openshell.sandbox.name"]
    )
    sent = [r for r in openshell_emulator.requests if r["method"] == "UpdateConfig"][-1]
    assert sent["traceparent"].split("-")[1] == format(root.context.trace_id, "032x")
