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

import pytest
import pytest_asyncio

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_operator.core.naming import FINALIZER, sandbox_name
from helmdeck_operator.kube import SESSIONS, KubeError
from helmdeck_operator.reconcile.session import Outcome
from tests.support.expectations import assert_ready_status
from tests.support.passes import NAMESPACE, PassRig, eventually

#: The workspace the test gateway is configured with: where every sandbox here lives.
WS = "default"


@pytest_asyncio.fixture
async def rig(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[PassRig]:
    started = await PassRig.start(emulator_factory, tmp_path)
    yield started
    await started.close()


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
    assert rig.cache.following(WS, sandbox["name"])
    # The watch echoes our own write: nothing to react to.
    assert rig.deliver() == 1
    assert not rig.queued(key)

    rig.advance_gateway()  # READY, and the supervisor loads its policy at boot
    await rig.woken(key)  # the sandbox's watch stream wakes the session
    second = await rig.reconcile(key)

    [status_write] = rig.kube.calls_to("patch_status")
    status = rig.status(key)
    assert status_write.args[3]["phase"] == "Ready"
    assert status["observedGeneration"] == 1
    assert status["sandbox"]["name"] == sandbox_name(uid)
    assert status["sandbox"]["gateway"] == "pods"
    assert status["sandbox"]["workspace"] == "default"
    assert status["sandbox"]["phase"] == "READY"
    assert status["sandbox"]["id"] == sandbox["id"]
    assert status["endpoints"] == {}  # python serves no ports by default
    assert status["sandbox"]["ports"]  # the digest of none, known from the create
    assert_ready_status(status, "helmdeck-default-python")
    # Looked at again when the TTL runs out, not before.
    assert second.requeue_after is not None
    assert 7100 < second.requeue_after <= 7200
    assert not rig.cache.following(WS, sandbox["name"])
    events = await rig.kube.wait_for(lambda: len(rig.kube.events) >= 2 and rig.kube.events)
    assert rig.kube.events_about("s1") == [("Normal", "Provisioned"), ("Normal", "Ready")]
    assert "helmdeck-default-python sha256:" in events[1]["message"]
    assert rig.gateway_calls() == ["CreateSandbox"]


async def test_a_finalizer_write_that_loses_a_race_creates_nothing(rig: PassRig) -> None:
    key = rig.put_session("s1")
    # A user edits the session; the pass runs before the watch delivers the edit.
    rig.edit(key, env=[{"name": "GREETING", "value": "hello"}])

    outcome = await rig.reconcile(key, deliver=False)

    assert [c.method for c in rig.kube.calls] == ["add_finalizer"]
    assert outcome.requeue_after is not None
    assert 0 < outcome.requeue_after <= 1.0  # soon: the newer version is on its way
    assert not outcome.failing
    assert "finalizers" not in rig.stored(key)["metadata"]
    assert rig.sandboxes() == []
    assert rig.gateway_calls() == []
    assert rig.posted == []

    # With the edit delivered, the next pass holds the session and creates its sandbox.
    await rig.reconcile(key)
    assert rig.stored(key)["metadata"]["finalizers"] == [FINALIZER]
    [sandbox] = rig.sandboxes()
    assert sandbox["spec"]["environment"] == {"GREETING": "hello"}


async def test_an_apiserver_failure_adding_the_finalizer_fails_the_pass_before_any_create(
    rig: PassRig,
) -> None:
    key = rig.put_session("s1")
    rig.kube.fail_next("add_finalizer")

    with pytest.raises(KubeError, match="add_finalizer"):
        await rig.reconcile(key)  # the controller backs the key off

    assert rig.sandboxes() == []
    assert rig.gateway_calls() == []
    await rig.reconcile(key)
    assert len(rig.sandboxes()) == 1


@pytest.mark.parametrize(
    ("spec", "reason", "detail"),
    [
        # Stricter than the CRD (a gateway's own rule): INVALID_ARGUMENT.
        (
            {"env": [{"name": "OPENSHELL_TOKEN", "value": "x"}]},
            "GatewayInvalidArgument",
            "OPENSHELL_",
        ),
        # A provider the gateway does not have: FAILED_PRECONDITION.
        ({"providers": ["bitbucket"]}, "GatewayFailedPrecondition", "bitbucket"),
    ],
)
async def test_a_refused_create_fails_the_session_once_and_is_not_retried(
    rig: PassRig, spec: dict[str, Any], reason: str, detail: str
) -> None:
    key = rig.put_session("s1", **spec)

    first = await rig.reconcile(key)

    assert first == Outcome()  # nothing to wait for: no retry, no back-off
    assert rig.sandboxes() == []
    [status_write] = rig.kube.calls_to("patch_status")
    assert status_write.args[3]["phase"] == "Failed"
    assert rig.status(key)["phase"] == "Failed"
    ready = rig.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert detail in ready["message"]
    provisioned = rig.condition(key, "Provisioned")
    assert (provisioned["status"], provisioned["reason"]) == ("False", reason)
    assert rig.posted_about(key) == [("Warning", reason)]
    [event] = await rig.kube.wait_for(lambda: rig.kube.events)
    assert (event["type"], event["reason"]) == ("Warning", reason)
    assert detail in event["message"]

    second = await rig.reconcile(key)  # what the echoes of the two writes cause

    assert second == Outcome()
    assert rig.gateway_calls() == ["CreateSandbox"]  # one create, never retried
    assert len(rig.kube.calls_to("patch_status")) == 1
    assert rig.posted_about(key) == [("Warning", reason)]

    # A new generation of the spec is a new request: it is tried again.
    rig.edit(key, env=[], providers=["github"])
    await rig.reconcile(key)
    assert rig.gateway_calls() == ["CreateSandbox", "CreateSandbox"]
    assert len(rig.sandboxes()) == 1


async def test_an_unchanged_ready_session_costs_no_write_and_no_gateway_call(
    rig: PassRig,
) -> None:
    key = await rig.ready_session()
    calls, gateway_calls, posted = len(rig.kube.calls), rig.gateway_calls(), list(rig.posted)

    for _ in range(3):
        outcome = await rig.reconcile(key)
        assert outcome == Outcome()

    assert rig.kube.calls[calls:] == []
    assert rig.gateway_calls() == gateway_calls
    assert rig.posted == posted


async def test_suspend_stops_the_sandbox_and_resume_starts_it(rig: PassRig) -> None:
    key = await rig.ready_session()
    writes = len(rig.kube.calls_to("patch_status"))
    rig.edit(key, suspend=True)

    await rig.reconcile(key)  # asks the gateway to stop

    assert rig.gateway_calls()[-1] == "StopSandbox"
    assert rig.sandbox_of(key)["phase"] == "STOPPING"  # type: ignore[index]
    assert rig.status(key)["phase"] == "Suspended"  # a new phase shows at once
    assert rig.condition(key, "Ready")["reason"] == "Stopping"
    assert rig.posted_about(key)[-1] == ("Normal", "Suspended")

    rig.advance_gateway()
    await rig.woken(key)
    await rig.reconcile(key)

    status = rig.status(key)
    assert status["phase"] == "Suspended"
    assert status["sandbox"]["phase"] == "STOPPED"
    assert status["observedGeneration"] == 2
    ready = rig.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Suspended")
    assert len(rig.kube.calls_to("patch_status")) == writes + 2
    assert rig.posted_about(key).count(("Normal", "Suspended")) == 1

    rig.edit(key, suspend=False)
    await rig.reconcile(key)
    assert rig.gateway_calls()[-1] == "StartSandbox"
    assert rig.sandbox_of(key)["phase"] == "STARTING"  # type: ignore[index]
    # "Starting" only waits on the gateway: held back for the status that follows it.
    assert len(rig.kube.calls_to("patch_status")) == writes + 2
    rig.advance_gateway()
    await rig.woken(key)
    await rig.reconcile(key)
    assert len(rig.kube.calls_to("patch_status")) == writes + 3
    assert rig.status(key)["phase"] == "Ready"
    assert rig.sandbox_of(key)["phase"] == "READY"  # type: ignore[index]
    assert ("Normal", "Resumed") in rig.posted_about(key)


async def test_a_deleted_session_has_its_sandbox_deleted_then_is_released(rig: PassRig) -> None:
    key = await rig.ready_session()
    sandbox = rig.sandbox_of(key)
    assert sandbox is not None
    rig.delete(key)  # held by the finalizer: marked, not removed

    outcome = await rig.reconcile(key)

    assert rig.gateway_calls()[-1] == "DeleteSandbox"
    assert rig.sandbox_of(key)["phase"] == "DELETING"  # type: ignore[index]
    assert rig.status(key)["phase"] == "Terminating"
    terminating = rig.condition(key, "Ready")
    assert (terminating["status"], terminating["reason"]) == ("False", "Terminating")
    assert rig.stored(key)["metadata"]["finalizers"] == [FINALIZER]
    assert outcome == Outcome()  # the sandbox's watch says when it is gone
    assert rig.cache.following(WS, sandbox["name"])

    rig.advance_gateway()  # the gateway removes it
    await rig.woken(key)
    await rig.reconcile(key)

    assert rig.sandboxes() == []
    assert rig.kube.object(SESSIONS, NAMESPACE, "s1") is None  # released, so removed
    assert rig.kube.calls[-1].method == "remove_finalizer"
    rig.deliver()  # DELETED: the operator forgets the session
    assert await rig.reconcile(key) == Outcome()


async def test_an_expired_session_with_on_expiry_delete_is_deleted_with_its_sandbox(
    rig: PassRig,
) -> None:
    key = await rig.ready_session(lifetime={"ttl": "1m", "onExpiry": "Delete"})
    before = await rig.reconcile(key)
    assert before.requeue_after is not None
    assert 0 < before.requeue_after <= 60  # woken when the lifetime ends
    rig.advance_time(61)

    await rig.reconcile(key)

    assert [c.method for c in rig.kube.writes()][-2:] == ["patch_status", "delete_session"]
    assert rig.kube.calls_to("delete_session")[0].args == (NAMESPACE, "s1")
    expired = rig.condition(key, "Ready")
    assert (rig.status(key)["phase"], expired["reason"]) == ("Expired", "Expired")
    assert rig.stored(key)["metadata"]["deletionTimestamp"]
    assert rig.posted_about(key)[-1] == ("Normal", "Expired")

    await rig.reconcile(key)  # the finalizer's turn: the sandbox goes first
    rig.advance_gateway()
    await rig.woken(key)
    await rig.reconcile(key)
    assert rig.sandboxes() == []
    assert rig.kube.object(SESSIONS, NAMESPACE, "s1") is None


async def test_an_expired_session_with_on_expiry_retain_keeps_the_session_only(
    rig: PassRig,
) -> None:
    key = await rig.ready_session(lifetime={"ttl": "1m", "onExpiry": "Retain"})
    rig.advance_time(61)

    outcome = await rig.reconcile(key)

    assert rig.kube.calls_to("delete_session") == []
    assert rig.gateway_calls()[-1] == "DeleteSandbox"
    assert rig.sandbox_of(key)["phase"] == "DELETING"  # type: ignore[index]
    status = rig.status(key)
    assert status["phase"] == "Expired"
    assert "expiresAt" in status
    assert rig.condition(key, "Ready")["reason"] == "Expired"
    assert outcome == Outcome()
    assert rig.posted_about(key)[-1] == ("Normal", "Expired")
    name = rig.sandbox_of(key)["name"]  # type: ignore[index]
    assert rig.cache.following(WS, name)  # watched until the gateway removes it

    rig.advance_gateway()
    assert rig.sandboxes() == []
    await rig.woken(key)  # its watch says it is gone: no wait for the next resync
    for _ in range(2):
        assert await rig.reconcile(key) == Outcome()
    assert not rig.cache.following(WS, name)
    assert rig.gateway_calls().count("DeleteSandbox") == 1
    assert rig.status(key)["phase"] == "Expired"
    assert rig.status(key)["sandbox"] == {"gateway": "pods"}
    assert rig.condition(key, "Provisioned")["status"] == "False"
    assert rig.posted_about(key).count(("Normal", "Expired")) == 1


async def test_a_gateway_outage_makes_ready_unknown_then_recovers(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # Listed often, so the cache notices the outage (and the recovery) quickly.
    rig = await PassRig.start(emulator_factory, tmp_path, intervals={"resync_seconds": 0.1})
    try:
        key = await rig.ready_session()
        writes = len(rig.kube.calls_to("patch_status"))
        rig.emulator.faults.apply({"outage": True})
        await eventually(lambda: not rig.cache.up, "the cache to see the gateway down")

        outcome = await rig.reconcile(key)

        assert outcome.failing
        assert outcome.gateway == "pods"
        status = rig.status(key)
        assert status["phase"] == "Ready"  # kept: nobody can say otherwise now
        ready = rig.condition(key, "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", "GatewayUnavailable")
        assert "UNAVAILABLE" in ready["message"]
        provisioned = rig.condition(key, "Provisioned")
        assert (provisioned["status"], provisioned["reason"]) == ("True", "SandboxCreated")
        assert status["sandbox"]["phase"] == "READY"  # what we knew stays
        assert len(rig.kube.calls_to("patch_status")) == writes + 1
        # Still down: the same report, not written again.
        assert (await rig.reconcile(key)).failing
        assert len(rig.kube.calls_to("patch_status")) == writes + 1

        rig.cache.park(key)  # as the controller does with a failing key on a gateway down
        rig.emulator.faults.apply({"outage": None})
        await rig.woken(key)  # the gateway answering again wakes what was parked
        outcome = await rig.reconcile(key)

        assert outcome == Outcome()
        ready = rig.condition(key, "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "SandboxReady")
        assert len(rig.kube.calls_to("patch_status")) == writes + 2
        assert rig.gateway_calls().count("CreateSandbox") == 1  # nothing recreated
    finally:
        await rig.close()


async def test_a_create_during_an_outage_fails_the_pass_and_is_retried_after(
    rig: PassRig,
) -> None:
    rig.emulator.faults.apply({"outage": True})
    key = rig.put_session("s1")

    outcome = await rig.reconcile(key)

    assert outcome.failing
    assert outcome.gateway == "pods"
    assert not rig.cache.up  # the failed call told the cache
    assert rig.stored(key)["metadata"]["finalizers"] == [FINALIZER]
    assert rig.sandboxes() == []
    status = rig.status(key)
    assert status["phase"] == "Pending"
    ready = rig.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "GatewayUnavailable")
    assert "CreateSandbox" in ready["message"]
    assert [r for r in rig.posted_about(key) if r[0] == "Warning"] == []

    rig.cache.park(key)
    rig.emulator.faults.apply({"outage": None})
    await rig.woken(key)
    await rig.reconcile(key)
    assert len(rig.sandboxes()) == 1
    rig.advance_gateway()
    await rig.woken(key)
    await rig.reconcile(key)
    assert rig.status(key)["phase"] == "Ready"
    assert rig.condition(key, "Ready")["status"] == "True"


async def test_a_pass_before_the_watch_delivers_its_own_write_does_not_repeat_it(
    rig: PassRig,
) -> None:
    key = rig.put_session("s1")
    await rig.reconcile(key)
    rig.advance_gateway()
    await rig.woken(key)
    await rig.reconcile(key)  # writes Ready
    writes, posted = len(rig.kube.writes()), list(rig.posted)

    # The store still holds the session as it was before that write.
    assert rig.pending
    assert await rig.reconcile(key, deliver=False) == Outcome()

    assert len(rig.kube.writes()) == writes
    assert rig.posted == posted
    assert rig.deliver() == 1
    assert not rig.queued(key)  # and the write's echo is recognised as ours


async def test_a_finalizer_removal_that_loses_a_race_is_retried(rig: PassRig) -> None:
    other = "example.com/audit"
    key = await rig.ready_session(metadata={"finalizers": [other]})
    assert rig.stored(key)["metadata"]["finalizers"] == [other, FINALIZER]
    rig.delete(key)
    await rig.reconcile(key)
    rig.advance_gateway()
    await rig.woken(key)
    # Another controller releases its finalizer; the store has not seen it yet.
    rig.kube.update(
        SESSIONS, NAMESPACE, "s1", lambda s: s["metadata"].update(finalizers=[FINALIZER])
    )

    outcome = await rig.reconcile(key, deliver=False)

    assert rig.kube.calls[-1].method == "remove_finalizer"
    assert outcome.requeue_after is not None
    assert 0 < outcome.requeue_after <= 1.0
    assert not outcome.failing
    assert rig.stored(key)["metadata"]["finalizers"] == [FINALIZER]
    assert rig.sandboxes() == []

    await rig.reconcile(key)
    assert rig.kube.object(SESSIONS, NAMESPACE, "s1") is None


async def test_a_session_on_a_gateway_not_configured_fails_at_once(rig: PassRig) -> None:
    key = rig.put_session("s1", gateway="edge")

    assert await rig.reconcile(key) == Outcome()

    assert rig.status(key)["phase"] == "Failed"
    ready = rig.condition(key, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "GatewayNotConfigured")
    assert "'edge'" in ready["message"]
    for other in ("microvm", "pods"):  # the configured gateways are not a tenant's to read
        assert other not in ready["message"]
    assert rig.posted_about(key) == [("Warning", "GatewayNotConfigured")]
    assert rig.gateway_calls() == []
