"""Whole SessionPool passes and the claims of the sessions that name a pool, without a
cluster: the runtime on an in-process emulator, a FakeKube for Kubernetes (see
tests/support/passes.py). Each test drives the passes one at a time and moves the
emulator's clock itself, and asserts what a user or the gateway would see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from helmdeck_dev.emulator_fixtures import EmulatorFactory
from helmdeck_operator.core.naming import FINALIZER, LABEL_POOL_UID, sandbox_name
from helmdeck_operator.kube import POOLS, SESSIONS, KubeConflict
from helmdeck_operator.reconcile import pool as pool_pass
from helmdeck_operator.runtime import Key
from tests.support.passes import NAMESPACE, PassRig, eventually

#: The workspace the test gateway is configured with: where every sandbox here lives.
WS = "default"


@pytest_asyncio.fixture
async def rig(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PassRig]:
    # Every pass writes the counts it sees: these tests read them right after (one test
    # below holds them as the operator does).
    monkeypatch.setattr(pool_pass, "COUNTS_SETTLE_S", 0.0)
    started = await PassRig.start(emulator_factory, tmp_path)
    yield started
    await started.close()


def members(rig: PassRig, pool: Key) -> list[dict[str, Any]]:
    uid = rig.stored(pool)["metadata"]["uid"]
    return [s for s in rig.sandboxes() if s["labels"].get(LABEL_POOL_UID) == uid]


async def booted(rig: PassRig, pool: Key) -> None:
    """Let the gateway boot the pool's sandboxes, and the cache see every one READY."""
    rig.advance_gateway()
    names = [s["name"] for s in members(rig, pool)]

    def seen() -> bool:
        found = [rig.cache.get(WS, name) for name in names]
        return all(s is not None and s.is_ready for s in found)

    await eventually(seen, "the cache to see the pool's sandboxes READY")


async def answered(rig: PassRig, session: Key, pool: Key) -> None:
    """The session asks its pool, the pool answers, the session takes the answer."""
    await rig.reconcile(session)
    await rig.reconcile(pool)
    await rig.reconcile(session)


async def cold_ready(rig: PassRig, session: Key) -> None:
    """A session creating its own sandbox: the gateway boots it, the session is Ready."""
    rig.advance_gateway()
    await rig.woken(session)
    await rig.reconcile(session)


async def removed(rig: PassRig, keep: set[str]) -> None:
    """Let the gateway remove what is being deleted, and the cache see only `keep` left."""
    rig.advance_gateway()
    await eventually(
        lambda: {s.name for s in rig.cache.sandboxes()} == keep, f"only {keep} to be left"
    )


async def filled_pool(rig: PassRig, name: str = "warm", replicas: int = 2, **spec: Any) -> Key:
    """A pool whose `replicas` sandboxes are booted, its status saying so."""
    pool = rig.put_pool(name, replicas=replicas, **spec)
    await rig.reconcile(pool)
    assert len(members(rig, pool)) == replicas
    await booted(rig, pool)
    await rig.reconcile(pool)
    status = rig.status(pool)
    assert status["readyReplicas"] == replicas, status
    assert rig.condition(pool, "Ready")["reason"] == "PoolFilled"
    return pool


async def test_a_pool_boots_its_replicas_with_the_baseline_and_reports_them(rig: PassRig) -> None:
    pool = rig.put_pool("warm", replicas=3, maxProvisioning=2)

    await rig.reconcile(pool)

    stored = rig.stored(pool)
    assert stored["metadata"]["finalizers"] == [FINALIZER]
    first = members(rig, pool)
    assert len(first) == 2  # maxProvisioning bounds what boots at once
    assert all(rig.cache.following(WS, s["name"]) for s in first)  # their READY wakes the pool
    for sandbox in first:
        assert sandbox["name"].startswith("hp-")
        assert sandbox["annotations"]["helmdeck.dev/pool"] == f"{NAMESPACE}/warm"
        assert "helmdeck.dev/session-uid" not in sandbox["labels"]
    status = rig.status(pool)
    assert (status["readyReplicas"], status["provisioning"], status["replicas"]) == (0, 2, 2)
    assert status["baseline"]["name"] == "helmdeck-default-python-baseline"
    assert status["selector"] == f"{LABEL_POOL_UID}={stored['metadata']['uid']}"
    assert rig.condition(pool, "Ready")["reason"] == "PoolFilling"

    await booted(rig, pool)
    await rig.reconcile(pool)
    assert len(members(rig, pool)) == 3  # room to boot the third
    await booted(rig, pool)
    await rig.reconcile(pool)

    status = rig.status(pool)
    assert (status["readyReplicas"], status["provisioning"], status["claimed"]) == (3, 0, 0)
    assert rig.condition(pool, "Ready")["status"] == "True"
    # Streams are for booting sandboxes only: none stays open on an idle one.
    assert not [s["name"] for s in members(rig, pool) if rig.cache.following(WS, s["name"])]


async def test_a_session_claims_a_ready_sandbox_and_the_pool_refills(rig: PassRig) -> None:
    pool = await filled_pool(rig)
    idle = {s["name"] for s in members(rig, pool)}
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    uid = rig.stored(session)["metadata"]["uid"]

    await rig.reconcile(session)  # asks the pool, waits for its answer
    assert rig.queued(pool)
    await rig.reconcile(pool)

    [claim] = rig.status(pool)["claims"]
    assert (claim["uid"], claim["session"]) == (uid, "s1")
    assert claim["sandbox"] in idle
    assert rig.queued(session)
    await rig.reconcile(session)

    status = rig.status(session)
    assert status["phase"] == "Ready", status  # python's policy is its baseline: no push
    assert status["sandbox"]["name"] == claim["sandbox"]
    assert status["pool"] == {
        "name": "warm",
        "sandbox": claim["sandbox"],
        "claimedAt": claim["claimedAt"],
    }
    assert rig.condition(session, "PoolClaimed")["reason"] == "ClaimedFromPool"
    assert ("Normal", "PoolClaimed") in rig.posted_about(session)
    assert sandbox_name(uid) not in {s["name"] for s in rig.sandboxes()}  # nothing cold

    rig.deliver()
    await rig.reconcile(pool)  # one claimed: one more boots to keep two idle
    assert len(members(rig, pool)) == 3
    assert rig.status(pool)["claimed"] == 1


async def test_a_claimed_session_is_ready_only_once_its_own_policy_is_loaded(
    rig: PassRig,
) -> None:
    pool = await filled_pool(rig, replicas=1)
    rig.put_policy(
        "pypi",
        {
            "network": [
                {
                    "name": "pypi",
                    "endpoints": [
                        {"host": "pypi.org", "port": 443, "protocol": "rest", "access": "read-only"}
                    ],
                    "binaries": ["/usr/bin/python3"],
                }
            ],
            "filesystem": {
                "includeWorkdir": True,
                "readOnly": ["/usr", "/lib", "/etc", "/proc", "/dev/urandom"],
                "readWrite": ["/tmp", "/dev/null", "/home/helmdeck"],
            },
            "landlock": {"compatibility": "best_effort"},
            "process": {"runAsUser": "1000", "runAsGroup": "1000"},
        },
    )
    session = rig.put_session(
        "s1", family="python", poolRef={"name": "warm"}, policyRef={"name": "pypi"}
    )
    await rig.reconcile(session)
    await rig.reconcile(pool)
    [claim] = rig.status(pool)["claims"]

    creates = rig.gateway_calls().count("CreateSandbox")
    await rig.reconcile(session)  # pushes the session's policy into the claimed sandbox
    assert rig.gateway_calls()[-1] == "UpdateConfig"
    assert rig.stored(session).get("status", {}).get("phase") != "Ready"

    rig.advance_gateway()  # the sandbox loads it
    loaded = rig.cache.get(WS, claim["sandbox"])
    await eventually(
        lambda: (
            (found := rig.cache.get(WS, claim["sandbox"])) and found.current_policy_version == 2
        ),
        f"the cache to see the second policy version loaded (was {loaded})",
    )
    await rig.reconcile(session)

    status = rig.status(session)
    assert status["phase"] == "Ready", status
    assert status["sandbox"]["name"] == claim["sandbox"]
    assert status["policy"]["state"] == "Loaded"
    assert status["policy"]["revision"] == status["policy"]["desiredRevision"]
    assert rig.gateway_calls().count("CreateSandbox") == creates  # nothing created for it


async def test_an_empty_pool_sends_the_session_to_a_cold_create_and_says_why(
    rig: PassRig,
) -> None:
    pool = rig.put_pool("warm", replicas=0)
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    uid = rig.stored(session)["metadata"]["uid"]

    await answered(rig, session, pool)

    assert sandbox_name(uid) in {s["name"] for s in rig.sandboxes()}
    await cold_ready(rig, session)
    status = rig.status(session)
    assert status["phase"] == "Ready"
    assert status["pool"] == {"name": "warm", "fallback": "PoolEmpty"}
    cond = rig.condition(session, "PoolClaimed")
    assert (cond["status"], cond["reason"]) == ("False", "PoolEmpty")
    assert "no ready sandbox" in cond["message"]
    assert ("Warning", "PoolFallback") in rig.posted_about(session)
    sandbox = next(s for s in rig.sandboxes() if s["name"] == sandbox_name(uid))
    assert sandbox["annotations"]["helmdeck.dev/pool-fallback"] == "PoolEmpty"


async def test_a_session_of_another_shape_is_created_cold(rig: PassRig) -> None:
    pool = await filled_pool(rig, replicas=1)
    session = rig.put_session(
        "s1", family="python", poolRef={"name": "warm"}, resources={"cpu": "3"}
    )
    await answered(rig, session, pool)
    await cold_ready(rig, session)

    assert rig.status(pool).get("claims") == []
    cond = rig.condition(session, "PoolClaimed")
    assert cond["reason"] == "PoolShapeMismatch"
    assert len(members(rig, pool)) == 1


async def test_a_policy_that_is_not_a_live_change_from_the_baseline_is_created_cold(
    rig: PassRig,
) -> None:
    pool = await filled_pool(rig, replicas=1)
    rig.put_policy(
        "root",
        {
            "filesystem": {"includeWorkdir": True, "readOnly": ["/usr"], "readWrite": ["/tmp"]},
            "landlock": {"compatibility": "best_effort"},
            "process": {"runAsUser": "1001", "runAsGroup": "1001"},
        },
    )
    session = rig.put_session(
        "s1", family="python", poolRef={"name": "warm"}, policyRef={"name": "root"}
    )
    await answered(rig, session, pool)
    await cold_ready(rig, session)

    cond = rig.condition(session, "PoolClaimed")
    assert cond["reason"] == "PoolPolicyNotLive"
    assert "process" in cond["message"]
    assert rig.status(pool).get("claims") == []


async def test_a_claim_that_loses_the_race_for_the_pool_answers_nobody(rig: PassRig) -> None:
    pool = await filled_pool(rig, replicas=1)
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    await rig.reconcile(session)
    rig.kube.fail_next("patch_status", KubeConflict("the object has been modified"))

    outcome = await rig.reconcile(pool)

    assert outcome.requeue_after is not None
    assert outcome.requeue_after > 0
    assert rig.status(pool).get("claims") == []
    assert not rig.queued(session)  # not answered
    await rig.reconcile(pool)  # the retry answers it
    assert len(rig.status(pool)["claims"]) == 1
    assert rig.queued(session)


async def test_a_deleted_session_deletes_its_claimed_sandbox_and_the_claim_goes(
    rig: PassRig,
) -> None:
    pool = await filled_pool(rig, replicas=1)
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    await answered(rig, session, pool)
    [claim] = rig.status(pool)["claims"]

    refill = {s["name"] for s in members(rig, pool)} - {claim["sandbox"]}
    rig.delete(session)
    await rig.reconcile(session)
    await removed(rig, refill)  # the gateway removes the claimed one
    await rig.reconcile(session)
    assert rig.kube.object(SESSIONS, NAMESPACE, "s1") is None
    rig.deliver()
    await rig.reconcile(pool)
    assert rig.status(pool)["claims"] == []


async def test_scaling_down_deletes_idle_sandboxes_only(rig: PassRig) -> None:
    pool = await filled_pool(rig, replicas=3)
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    await rig.reconcile(session)
    await rig.reconcile(pool)
    [claim] = rig.status(pool)["claims"]

    rig.edit(pool, replicas=0)
    await rig.reconcile(pool)
    await removed(rig, {claim["sandbox"]})
    await rig.reconcile(pool)

    left = {s["name"] for s in members(rig, pool) if s["phase"] != "DELETING"}
    assert left == {claim["sandbox"]}
    status = rig.status(pool)
    assert (status["replicas"], status["claimed"]) == (0, 1)


async def test_a_deleted_pool_leaves_its_claimed_sessions_running(rig: PassRig) -> None:
    pool = await filled_pool(rig, replicas=2)
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    await answered(rig, session, pool)
    [claim] = rig.status(pool)["claims"]

    rig.delete(pool)
    await rig.reconcile(pool)
    await removed(rig, {claim["sandbox"]})
    await rig.reconcile(pool)

    assert rig.kube.object(POOLS, NAMESPACE, "warm") is None  # released
    names = {s["name"] for s in rig.sandboxes()}
    assert names == {claim["sandbox"]}
    await rig.reconcile(session)
    assert rig.status(session)["phase"] == "Ready"

    # Its session still owns the sandbox: deleting it waits for the gateway, and the end of
    # the sandbox wakes it (the pool that recorded the claim is gone: its status says it).
    rig.delete(session)
    await rig.reconcile(session)
    assert rig.status(session)["phase"] == "Terminating"
    rig.advance_gateway()
    await rig.woken(session)
    await rig.reconcile(session)
    assert rig.kube.object(SESSIONS, NAMESPACE, "s1") is None
    assert rig.sandboxes() == []


async def test_a_session_naming_no_existing_pool_is_created_cold_at_once(rig: PassRig) -> None:
    session = rig.put_session("s1", family="python", poolRef={"name": "nowhere"})
    uid = rig.stored(session)["metadata"]["uid"]

    await rig.reconcile(session)

    assert sandbox_name(uid) in {s["name"] for s in rig.sandboxes()}  # nobody asked, no wait
    await cold_ready(rig, session)
    assert rig.status(session)["pool"] == {"name": "nowhere", "fallback": "PoolNotFound"}
    assert "does not exist" in rig.condition(session, "PoolClaimed")["message"]


async def test_a_restart_between_the_claim_and_the_sessions_record_finds_the_claim(
    rig: PassRig,
) -> None:
    pool = await filled_pool(rig, replicas=1)
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    await rig.reconcile(session)
    await rig.reconcile(pool)
    [claim] = rig.status(pool)["claims"]
    rig.rt.pools = type(rig.rt.pools)()  # what a restart forgets: requests and answers

    await rig.reconcile(session)

    status = rig.status(session)
    assert status["phase"] == "Ready"
    assert status["pool"]["sandbox"] == claim["sandbox"]
    uid = rig.stored(session)["metadata"]["uid"]
    assert sandbox_name(uid) not in {s["name"] for s in rig.sandboxes()}  # nothing cold
    assert rig.status(pool)["claims"] == [claim]  # and no second claim


async def test_a_restart_after_a_cold_create_keeps_the_sandbox_and_its_reason(
    rig: PassRig,
) -> None:
    pool = rig.put_pool("warm", replicas=0)
    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    uid = rig.stored(session)["metadata"]["uid"]
    await answered(rig, session, pool)  # created cold; its status write is held back
    assert "pool" not in rig.status(session)
    rig.rt.pools = type(rig.rt.pools)()  # the restart forgets the pool's answer

    await cold_ready(rig, session)

    assert rig.status(session)["pool"] == {"name": "warm", "fallback": "PoolEmpty"}
    assert [s["name"] for s in rig.sandboxes()] == [sandbox_name(uid)]
    assert not rig.queued(pool)  # it did not ask again


async def test_a_change_of_counts_alone_is_held_back_but_claims_are_written_at_once(
    rig: PassRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_pass, "COUNTS_SETTLE_S", 60.0)
    pool = rig.put_pool("warm", replicas=1)
    await rig.reconcile(pool)  # a generation's first status is written at once
    assert rig.status(pool)["provisioning"] == 1
    await booted(rig, pool)
    outcome = await rig.reconcile(pool)
    assert outcome.requeue_after is not None
    assert 0 < outcome.requeue_after <= 60.0
    assert rig.status(pool)["readyReplicas"] == 0  # READY is a count: held back

    session = rig.put_session("s1", family="python", poolRef={"name": "warm"})
    await rig.reconcile(session)
    await rig.reconcile(pool)

    status = rig.status(pool)  # a claim is written at once, with the counts held so far
    assert len(status["claims"]) == 1
    assert status["claimed"] == 1
