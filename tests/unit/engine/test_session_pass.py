"""Whole session passes (`reconcile_session`, `finalize`) without a cluster: the runtime on
an in-process emulator, a FakeKube for Kubernetes (see tests/support/passes.py).

Each test drives the passes one at a time and moves the emulator's clock itself, so every
intermediate state is observed, and asserts what a user or the gateway would see: status,
conditions, Events, API writes, sandboxes and requests on the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from tests.support.passes import NAMESPACE, PassRig

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_operator.core.naming import FINALIZER, sandbox_name
from helmdeck_operator.runtime import Key


@pytest_asyncio.fixture
async def rig(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[PassRig]:
    started = await PassRig.start(emulator_factory, tmp_path)
    yield started
    await started.close()


async def make_ready(rig: PassRig, name: str = "s1", **spec: Any) -> Key:
    """A session through its first passes to Ready (asserted in detail by the first test)."""
    key = rig.put_session(name, **spec)
    await rig.reconcile(key)
    rig.advance_gateway()
    await rig.woken(key)
    await rig.reconcile(key)
    assert rig.status(key)["phase"] == "Ready"
    await rig.kube.wait_for(lambda: ("Normal", "Ready") in rig.kube.events_about(name))
    rig.deliver()
    return key


async def test_a_new_session_gets_its_finalizer_then_a_sandbox_then_ready(rig: PassRig) -> None:
    sandboxes_at_finalizer: list[int] = []
    original = rig.kube.add_finalizer

    async def add_finalizer(*args: object, **kwargs: object) -> str | None:
        sandboxes_at_finalizer.append(len(rig.sandboxes()))
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    rig.kube.add_finalizer = add_finalizer  # type: ignore[method-assign]
    key = rig.put_session("s1", family="python", lifetime={"ttl": "2h"})
    uid = rig.stored(key)["metadata"]["uid"]

    first = await rig.reconcile(key)

    # The finalizer first (one PATCH, before anything exists on the gateway), then the create.
    assert [c.method for c in rig.kube.calls] == ["add_finalizer"]
    assert sandboxes_at_finalizer == [0]
    assert rig.stored(key)["metadata"]["finalizers"] == [FINALIZER]
    [sandbox] = rig.sandboxes()
    assert sandbox["name"] == sandbox_name(uid)
    assert sandbox["phase"] == "PROVISIONING"
    assert sandbox["labels"] == {
        "helmdeck.dev/managed-by": "helmdeck-test",
        "helmdeck.dev/session-uid": uid,
        "helmdeck.dev/family": "python",
    }
    assert sandbox["annotations"]["helmdeck.dev/session"] == f"{NAMESPACE}/s1"
    assert sandbox["spec"]["template"]["image"] == "ghcr.io/tosin2013/helmdeck-sidecar-python:0.9.0"
    # "Provisioning" only says it waits on the gateway: held back, looked at again soon.
    assert "status" not in rig.stored(key) or not rig.status(key)
    assert first.requeue_after is not None
    assert 0 < first.requeue_after <= 1.0
    assert not first.failing
    assert rig.cache.following(sandbox["name"])
    # The watch echoes our own write: nothing to react to.
    assert rig.deliver() == 1
    assert not rig.queued(key)

    rig.advance_gateway()  # READY, and the supervisor loads its policy at boot
    await rig.woken(key)  # the sandbox's watch stream wakes the session
    second = await rig.reconcile(key)

    [status_write] = rig.kube.calls_to("patch_status")
    status = rig.status(key)
    assert status_write.args[3]["phase"] == "Ready"
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == 1
    assert status["sandbox"]["name"] == sandbox_name(uid)
    assert status["sandbox"]["gateway"] == "pods"
    assert status["sandbox"]["workspace"] == "default"
    assert status["sandbox"]["phase"] == "READY"
    assert status["sandbox"]["id"] == sandbox["id"]
    assert status["endpoints"]
    assert status["policy"]["name"] == "helmdeck-default-python"
    assert status["policy"]["state"] == "Loaded"
    assert status["policy"]["gatewayVersion"] == 1
    assert status["policy"]["revision"] == status["policy"]["desiredRevision"]
    assert status["readyAt"]
    assert status["expiresAt"]
    for type_, reason in (
        ("Ready", "SandboxReady"),
        ("Provisioned", "SandboxCreated"),
        ("PolicyApplied", "PolicyLoaded"),
    ):
        cond = rig.condition(key, type_)
        assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", reason, 1)
    # Looked at again when the TTL runs out, not before.
    assert second.requeue_after is not None
    assert 7100 < second.requeue_after <= 7200
    assert not rig.cache.following(sandbox["name"])
    events = await rig.kube.wait_for(lambda: len(rig.kube.events) >= 2 and rig.kube.events)
    assert rig.kube.events_about("s1") == [("Normal", "Provisioned"), ("Normal", "Ready")]
    assert "helmdeck-default-python sha256:" in events[1]["message"]
    assert rig.gateway_calls() == ["CreateSandbox"]
