"""Session and pool passes on a gateway in mode PerNamespace, against the emulator: a
namespace's workspace is made once before its first sandbox, every call about a sandbox is
scoped to the workspace it is in, and a sandbox made before the mode changed stays where it
is (reconcile/workspaces.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_operator.core.naming import (
    namespace_workspace,
    sandbox_annotations,
    sandbox_labels,
    sandbox_name,
)
from tests.support.passes import NAMESPACE, PassRig, eventually

HOME = namespace_workspace("ns-", NAMESPACE)


@pytest_asyncio.fixture
async def rig(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[PassRig]:
    started = await PassRig.start(
        emulator_factory, tmp_path, gateway_fields={"pods": {"workspaces": "PerNamespace"}}
    )
    yield started
    await started.close()


def workspace_calls(rig: PassRig) -> list[str]:
    return [c for c in rig.gateway_calls() if "Workspace" in c]


async def test_the_first_sandbox_of_a_namespace_makes_its_workspace_once(rig: PassRig) -> None:
    first = await rig.ready_session("s1")
    assert workspace_calls(rig) == ["GetWorkspace", "CreateWorkspace"]
    [workspace] = [w for w in rig.emulator.gateway.snapshot()["workspaces"] if w["name"] == HOME]
    assert workspace["labels"] == {
        "helmdeck.dev/managed-by": "helmdeck-test",
        "helmdeck.dev/namespace": NAMESPACE,
    }
    sandbox = rig.sandbox_of(first)
    assert sandbox is not None
    assert sandbox["workspace"] == HOME
    assert rig.status(first)["sandbox"]["workspace"] == HOME
    # The namespace's next session: its workspace is known, no call about it.
    await rig.ready_session("s2")
    assert workspace_calls(rig) == ["GetWorkspace", "CreateWorkspace"]


async def test_a_deleted_session_takes_its_sandbox_from_its_workspace(rig: PassRig) -> None:
    key = await rig.ready_session("s1")
    rig.delete(key)
    await rig.reconcile(key)
    rig.advance_gateway()
    await rig.woken(key)
    await rig.reconcile(key)
    assert rig.sandboxes() == []
    # The workspace stays: the namespace's next session needs it.
    assert HOME in {w["name"] for w in rig.emulator.gateway.snapshot()["workspaces"]}


async def test_a_sandbox_made_before_the_mode_changed_stays_where_it_is(rig: PassRig) -> None:
    key = rig.put_session("old")
    uid = rig.stored(key)["metadata"]["uid"]
    # As the operator made it in mode Shared: in the gateway's own workspace.
    made = await rig.cache.client.create_sandbox(
        sandbox_name(uid),
        labels=sandbox_labels(session_uid=uid, family="python", instance="helmdeck-test"),
        annotations=sandbox_annotations(namespace=NAMESPACE, name="old"),
        workspace="default",
    )
    rig.cache.put(made)
    for _ in range(20):  # adopted (once the status, held while it only waits, is written)
        outcome = await rig.reconcile(key)
        rig.advance_gateway()
        if "sandbox" in rig.status(key):
            break
        await asyncio.sleep(min(outcome.requeue_after or 0.05, 0.5))
    assert [s["workspace"] for s in rig.sandboxes()] == ["default"]  # not made again
    assert rig.status(key)["sandbox"]["workspace"] == "default"
    assert workspace_calls(rig) == []


async def test_a_sandbox_labelled_as_ours_in_another_namespace_workspace_is_ignored(
    rig: PassRig,
) -> None:
    key = rig.put_session("s1")
    uid = rig.stored(key)["metadata"]["uid"]
    # Someone else's workspace holds a sandbox claiming to be this session's.
    client = rig.cache.client
    await client.create_workspace("ns-intruder")
    forged = await client.create_sandbox(
        sandbox_name(uid),
        labels=sandbox_labels(session_uid=uid, family="python", instance="helmdeck-test"),
        annotations=sandbox_annotations(namespace=NAMESPACE, name="s1"),
        workspace="ns-intruder",
    )
    rig.cache.put(forged)
    assert rig.cache.get("ns-intruder", forged.name) is None  # not admitted
    await rig.reconcile(key)
    mine = rig.sandbox_of(key)
    assert mine is not None
    workspaces = sorted(s["workspace"] for s in rig.sandboxes())
    assert workspaces == sorted([HOME, "ns-intruder"])  # its own, made in its workspace


async def test_a_pool_boots_in_its_namespace_workspace(rig: PassRig) -> None:
    pool = rig.put_pool("warm", replicas=2)
    await rig.reconcile(pool)
    assert sorted(s["workspace"] for s in rig.sandboxes()) == [HOME, HOME]
    assert workspace_calls(rig) == ["GetWorkspace", "CreateWorkspace"]


async def test_a_failed_making_of_the_workspace_is_asked_again_by_the_next_pass(
    rig: PassRig,
) -> None:
    # Both attempts of the client's first call fail; the second pass asks again.
    rig.emulator.gateway.faults.apply(
        {"errors": {"CreateWorkspace": {"code": "UNAVAILABLE", "count": 2}}}
    )
    key = rig.put_session("s1")
    first = await rig.reconcile(key)
    assert first.failing
    assert rig.sandboxes() == []  # no create without its workspace
    await eventually(lambda: rig.cache.up, "the gateway answering again")
    await rig.reconcile(key)
    assert [s["workspace"] for s in rig.sandboxes()] == [HOME]
    assert workspace_calls(rig) == [
        "GetWorkspace",
        "CreateWorkspace",
        "CreateWorkspace",
        "GetWorkspace",
        "CreateWorkspace",
    ]
