"""Whole SidecarPolicy passes (`reconcile_policy`) with the session passes they fan out to,
without a cluster: the runtime on an in-process emulator, a FakeKube for Kubernetes (see
tests/support/passes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_operator.core.naming import FINALIZER
from helmdeck_operator.kube import POLICIES
from helmdeck_operator.policy import revision, translate
from helmdeck_operator.reconcile.session import Outcome
from helmdeck_operator.runtime import Key, Kind
from tests.support import policies
from tests.support.passes import NAMESPACE, PassRig


@pytest_asyncio.fixture
async def rig(emulator_factory: EmulatorFactory, tmp_path: Path) -> AsyncIterator[PassRig]:
    started = await PassRig.start(emulator_factory, tmp_path)
    yield started
    await started.close()


def rev(spec: dict[str, Any]) -> str:
    return revision.revision(translate.to_sandbox_policy(spec))


def counts(rig: PassRig, key: Key) -> dict[str, int]:
    sessions: dict[str, int] = rig.status(key)["sessions"]
    return sessions


async def test_a_policy_edit_is_pushed_live_and_counted_once_loaded(rig: PassRig) -> None:
    base = policies.pypi_spec()
    policy = rig.put_policy("p", base)

    assert await rig.reconcile(policy) == Outcome()
    assert rig.status(policy)["revision"] == rev(base)
    assert counts(rig, policy) == {"bound": 0, "loaded": 0, "pending": 0, "failed": 0}
    valid = rig.condition(policy, "Valid")
    assert (valid["status"], valid["reason"]) == ("True", "Translated")
    assert rig.condition(policy, "Applied")["reason"] == "NoSessions"

    session = await rig.ready_session("s1", policyRef={"name": "p"})
    assert rig.status(session)["policy"]["revision"] == rev(base)
    await rig.reconcile(policy)
    assert counts(rig, policy) == {"bound": 1, "loaded": 1, "pending": 0, "failed": 0}
    assert rig.condition(policy, "Applied")["reason"] == "Loaded"
    assert rig.posted_about(policy) == [("Normal", "Applied")]
    before = rig.sandbox_of(session)
    assert before is not None

    edited = policies.pypi_spec()
    edited["network"].append(policies.files_rule())  # a new inspected rule: loads live
    rig.edit(policy, network=edited["network"])
    session_writes = len(rig.kube.calls_to("patch_status"))

    assert await rig.reconcile(policy) == Outcome()

    # The fan-out pushed the revision; the session's status says nothing until it loads.
    assert rig.gateway_calls()[-1] == "UpdateConfig"
    pushed = rig.sandbox_of(session)
    assert pushed is not None
    assert [r["status"] for r in pushed["revisions"]] == ["LOADED", "PENDING"]
    assert rig.status(policy)["revision"] == rev(edited)
    assert counts(rig, policy) == {"bound": 1, "loaded": 0, "pending": 1, "failed": 0}
    assert rig.condition(policy, "Applied")["reason"] == "Progressing"
    assert rig.status(session)["policy"]["revision"] == rev(base)
    assert len(rig.kube.calls_to("patch_status")) == session_writes + 1  # the policy's only

    rig.advance_gateway()  # the sandbox loads it
    await rig.woken(session)  # the push follows the sandbox: LOADED wakes the session
    assert await rig.reconcile(session) == Outcome()

    policy_status = rig.status(session)["policy"]
    assert policy_status["revision"] == policy_status["desiredRevision"] == rev(edited)
    assert (policy_status["state"], policy_status["gatewayVersion"]) == ("Loaded", 2)
    assert rig.condition(session, "PolicyApplied")["reason"] == "PolicyLoaded"
    assert rig.status(session)["phase"] == "Ready"
    assert len(rig.kube.calls_to("patch_status")) == session_writes + 2  # one session write
    # Announced once on the policy for all its sessions, not by an Event per session.
    assert ("Normal", "PolicyApplied") not in rig.posted_about(session)
    after = rig.sandbox_of(session)
    assert after is not None
    assert (after["id"], after["boots"]) == (before["id"], 1)  # loaded in place

    await rig.reconcile(policy)
    assert counts(rig, policy) == {"bound": 1, "loaded": 1, "pending": 0, "failed": 0}
    assert rig.condition(policy, "Applied")["reason"] == "Loaded"
    assert rig.posted_about(policy) == [("Normal", "Applied"), ("Normal", "Applied")]
    assert rig.gateway_calls().count("UpdateConfig") == 1


async def test_a_session_waits_for_its_missing_policy_and_the_policy_pass_wakes_it(
    rig: PassRig,
) -> None:
    session = rig.put_session("s1", policyRef={"name": "later"})

    outcome = await rig.reconcile(session)

    assert outcome == Outcome()  # nothing to poll: the policy's arrival wakes it
    assert rig.status(session)["phase"] == "Pending"
    applied = rig.condition(session, "PolicyApplied")
    assert (applied["status"], applied["reason"]) == ("False", "PolicyNotFound")
    assert f"{NAMESPACE}/later" in applied["message"]
    assert rig.sandboxes() == []

    spec = policies.pypi_spec()
    policy = rig.put_policy("later", spec)
    await rig.reconcile(policy)

    assert rig.queued(session)  # woken by the fan-out of the policy's first revision
    assert counts(rig, policy)["bound"] == 1
    await rig.reconcile(session)
    [sandbox] = rig.sandboxes()
    assert sandbox["annotations"]["helmdeck.dev/initial-policy"] == rev(spec)
    rig.advance_gateway()
    await rig.woken(session)
    await rig.reconcile(session)
    assert rig.status(session)["phase"] == "Ready"
    assert rig.status(session)["policy"]["revision"] == rev(spec)
    await rig.reconcile(policy)
    assert counts(rig, policy) == {"bound": 1, "loaded": 1, "pending": 0, "failed": 0}


async def test_an_invalid_edit_is_reported_and_the_sessions_keep_their_policy(
    rig: PassRig,
) -> None:
    base = policies.pypi_spec()
    policy = rig.put_policy("p", base)
    session = await rig.ready_session("s1", policyRef={"name": "p"})
    await rig.reconcile(policy)
    calls = rig.gateway_calls()

    rig.edit(policy, network=[{"name": "broken"}])  # a rule without endpoints
    await rig.reconcile(policy)

    status = rig.status(policy)
    assert "revision" not in status  # no revision to name (written as null: removed)
    valid = rig.condition(policy, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "Invalid")
    assert "endpoints" in valid["message"]
    assert rig.posted_about(policy)[-1] == ("Warning", "Invalid")
    assert rig.queued(session)  # its own pass reports it

    await rig.reconcile(session)

    assert rig.status(session)["phase"] == "Ready"
    applied = rig.condition(session, "PolicyApplied")
    assert (applied["status"], applied["reason"]) == ("False", "PolicyInvalid")
    assert "keeps its loaded policy" in applied["message"]
    assert rig.status(session)["policy"]["revision"] == rev(base)
    assert rig.gateway_calls() == calls  # nothing pushed, nothing recreated


async def test_a_deleted_policy_leaves_its_sessions_running_on_what_they_loaded(
    rig: PassRig,
) -> None:
    base = policies.pypi_spec()
    policy = rig.put_policy("p", base)
    session = await rig.ready_session("s1", policyRef={"name": "p"})
    calls = rig.gateway_calls()
    rig.delete(policy)  # no finalizer: gone at once

    assert await rig.reconcile(policy) == Outcome()

    assert rig.queued(session)
    await rig.reconcile(session)
    assert rig.status(session)["phase"] == "Ready"
    applied = rig.condition(session, "PolicyApplied")
    assert (applied["status"], applied["reason"]) == ("False", "PolicyNotFound")
    assert rig.status(session)["policy"]["revision"] == rev(base)
    assert rig.gateway_calls() == calls


async def test_a_policy_finalizer_left_by_an_earlier_build_is_released(rig: PassRig) -> None:
    policy = rig.put_policy("legacy", {"network": []}, finalizers=[FINALIZER])

    await rig.reconcile(policy)

    assert [c.method for c in rig.kube.writes()] == ["remove_finalizer", "patch_status"]
    assert rig.stored(policy)["metadata"]["finalizers"] == []
    rig.delete(policy)
    assert rig.kube.object(POLICIES, NAMESPACE, "legacy") is None
    rig.deliver()
    assert await rig.reconcile(Key(Kind.POLICY, NAMESPACE, "legacy")) == Outcome()
