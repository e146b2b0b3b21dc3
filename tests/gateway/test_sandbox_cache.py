"""The per-gateway sandbox cache over real gRPC against the emulator: snapshots, watches for
sandboxes in transition, exact wake-ups, the outage cycle (down, parked, announced, back up)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from openshell._proto import sandbox_pb2

from helmdeck_operator.core.naming import sandbox_annotations, sandbox_labels
from helmdeck_operator.emulator.server import EmulatorHandle
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.sandbox_cache import SandboxCache

INSTANCE = "cache-test"
Key = tuple[str, str]

#: The workspace the test gateway is configured with: where every sandbox here lives.
WS = "default"


class Recorder:
    """What the cache asked to wake: single keys and bulk wake-ups."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.bulk: list[set[Key]] = []
        self.changed = asyncio.Event()

    def notify(self, key: Key) -> None:
        self.keys.append(key)
        self.changed.set()

    def wake_many(self, keys: Any) -> None:
        self.bulk.append(set(keys))
        self.changed.set()

    async def wait_for(self, check: Callable[[], bool]) -> None:
        """Until `check()` holds, re-checked at each wake-up (5 s at most)."""
        async with asyncio.timeout(5):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def key_of(sandbox: models.Sandbox) -> Key | None:
    session = sandbox.annotations.get("helmdeck.dev/session")
    if not session or sandbox.labels.get("helmdeck.dev/managed-by") != INSTANCE:
        return None
    namespace, _, name = session.partition("/")
    return namespace, name


def make_cache(client: GatewayClient, recorder: Recorder, **settings: Any) -> SandboxCache[Key]:
    values: dict[str, Any] = {
        "resync_seconds": 30.0,
        "pending_seconds": 0.05,
        "max_watches": 10,
        "outage_grace_seconds": 0.2,
    }
    values.update(settings)
    return SandboxCache(
        client,
        selector={"helmdeck.dev/managed-by": INSTANCE},
        key_of=key_of,
        notify=recorder.notify,
        wake_many=recorder.wake_many,
        **values,
    )


async def create(client: GatewayClient, name: str, instance: str = INSTANCE) -> models.Sandbox:
    return await client.create_sandbox(
        name,
        labels=sandbox_labels(session_uid=f"uid-{name}", family="python", instance=instance),
        annotations=sandbox_annotations(namespace="team", name=name),
    )


@pytest.fixture
async def started() -> AsyncIterator[list[SandboxCache[Key]]]:
    caches: list[SandboxCache[Key]] = []
    yield caches
    for cache in caches:
        await cache.close()


def start_cache(
    client: GatewayClient, started: list[SandboxCache[Key]], **settings: Any
) -> tuple[SandboxCache[Key], Recorder]:
    """A started cache (closed after the test) and what it asks to wake."""
    recorder = Recorder()
    cache = make_cache(client, recorder, **settings)
    started.append(cache)
    cache.start()
    return cache, recorder


@pytest.fixture
async def synced(
    client: GatewayClient, started: list[SandboxCache[Key]]
) -> tuple[SandboxCache[Key], Recorder]:
    """A cache with default settings, started and past its first listing."""
    cache, recorder = start_cache(client, started)
    await asyncio.wait_for(cache.synced.wait(), 5)
    return cache, recorder


async def test_the_first_snapshot_holds_only_this_instances_sandboxes(
    client: GatewayClient, started: list[SandboxCache[Key]]
) -> None:
    await create(client, "mine")
    await create(client, "theirs", instance="someone-else")
    cache, recorder = start_cache(client, started)

    await asyncio.wait_for(cache.synced.wait(), 5)

    assert cache.get(WS, "mine") is not None
    assert cache.get(WS, "theirs") is None
    assert len(cache) == 1
    assert recorder.keys == [("team", "mine")]  # news to whoever reconciles it


async def test_a_followed_sandbox_wakes_its_session_when_it_becomes_ready(
    client: GatewayClient, synced: tuple[SandboxCache[Key], Recorder], emulator: EmulatorHandle
) -> None:
    cache, recorder = synced
    emulator.faults.apply({"slow_boots": {"seconds": 0.3}})
    made = await create(client, "s1")
    cache.put(made)  # the create's answer: PROVISIONING, not news for the one who created it
    assert recorder.keys == []

    cache.follow(WS, "s1")
    await recorder.wait_for(
        lambda: (s := cache.get(WS, "s1")) is not None and s.phase is models.SandboxPhase.READY
    )
    assert set(recorder.keys) == {("team", "s1")}
    assert cache.watches == 1
    assert cache.service_urls(WS, "s1") is None  # endpoints come from put_services only

    cache.unfollow(WS, "s1")
    await asyncio.sleep(0.05)
    assert cache.watches == 0


async def test_endpoints_recorded_for_a_sandbox_last_until_another_sandbox_takes_its_name(
    client: GatewayClient, synced: tuple[SandboxCache[Key], Recorder]
) -> None:
    cache, _ = synced
    made = await create(client, "s1")
    cache.put(made)
    cache.put_services(WS, "s1", {"cdp": "http://cdp.example/"}, "digest-1")

    cache.put(replace(made, resource_version=made.resource_version + 1))  # a newer report
    assert cache.service_urls(WS, "s1") == {"cdp": "http://cdp.example/"}
    assert cache.exposed(WS, "s1") == "digest-1"

    cache.put(replace(made, id="another-sandbox-of-that-name"))
    assert cache.service_urls(WS, "s1") is None
    assert cache.exposed(WS, "s1") is None


async def test_beyond_the_watch_bound_sandboxes_are_observed_by_listing(
    client: GatewayClient, started: list[SandboxCache[Key]], emulator: EmulatorHandle
) -> None:
    cache, recorder = start_cache(client, started, max_watches=1)
    await asyncio.wait_for(cache.synced.wait(), 5)
    emulator.faults.apply({"slow_boots": {"seconds": 0.3}})
    for name in ("a", "b", "c"):
        cache.put(await create(client, name))
        cache.follow(WS, name)

    assert cache.watches == 1
    await recorder.wait_for(
        lambda: all(
            (s := cache.get(WS, n)) is not None and s.phase is models.SandboxPhase.READY
            for n in ("a", "b", "c")
        )
    )
    assert {("team", n) for n in ("a", "b", "c")} <= set(recorder.keys)
    assert cache.snapshots > 1  # the ones without a stream were listed meanwhile


async def test_a_sandbox_removed_behind_our_back_wakes_its_session(
    client: GatewayClient, started: list[SandboxCache[Key]], emulator: EmulatorHandle
) -> None:
    await create(client, "gone")
    cache, recorder = start_cache(client, started, resync_seconds=0.1)
    await recorder.wait_for(lambda: cache.get(WS, "gone") is not None)
    recorder.keys.clear()

    emulator.gateway.vanish("default", "gone")

    await recorder.wait_for(lambda: cache.get(WS, "gone") is None)
    assert recorder.keys == [("team", "gone")]


async def test_an_unchanged_sandbox_wakes_nobody(
    client: GatewayClient, started: list[SandboxCache[Key]]
) -> None:
    await create(client, "idle")
    cache, recorder = start_cache(client, started, resync_seconds=0.05)
    await recorder.wait_for(
        lambda: (s := cache.get(WS, "idle")) is not None and s.phase is models.SandboxPhase.READY
    )
    await asyncio.sleep(0.2)  # READY and loaded: nothing moves any more
    recorder.keys.clear()
    before = cache.snapshots

    await asyncio.sleep(0.5)

    assert cache.snapshots > before + 3
    assert recorder.keys == []


async def test_an_outage_parks_keys_announces_itself_and_recovery_wakes_everything(
    client: GatewayClient, started: list[SandboxCache[Key]], emulator: EmulatorHandle
) -> None:
    await create(client, "kept")
    cache, recorder = start_cache(client, started, resync_seconds=0.1)
    await asyncio.wait_for(cache.synced.wait(), 5)

    emulator.faults.apply({"outage": {"until_cleared": True}})
    async with asyncio.timeout(5):
        while cache.up:  # noqa: ASYNC110 - the cache has no event for it; a test may poll
            await asyncio.sleep(0.01)
    assert cache.error is not None
    assert cache.error.code == "UNAVAILABLE"
    cache.park(("team", "waiting"))
    # After the grace, every session on the gateway hears of it.
    await recorder.wait_for(lambda: bool(recorder.bulk))
    assert recorder.bulk[0] == {("team", "kept"), ("team", "waiting")}

    emulator.faults.clear(["outage"])
    await recorder.wait_for(lambda: cache.up and len(recorder.bulk) == 2)
    assert recorder.bulk[1] == {("team", "kept"), ("team", "waiting")}
    assert cache.error is None


async def test_a_push_is_recorded_and_its_load_wakes_the_session_once(
    client: GatewayClient, synced: tuple[SandboxCache[Key], Recorder]
) -> None:
    cache, recorder = synced
    first = sandbox_pb2.SandboxPolicy(version=1)
    made = await client.create_sandbox(
        "p1",
        policy=first,
        labels=sandbox_labels(session_uid="uid-p1", family="python", instance=INSTANCE),
        annotations=sandbox_annotations(namespace="team", name="p1"),
    )
    cache.put(made)
    cache.follow(WS, "p1")
    await recorder.wait_for(
        lambda: (s := cache.get(WS, "p1")) is not None and s.current_policy_version == 1
    )
    cache.unfollow(WS, "p1")  # settled; as the operator does, follow again after the push
    await asyncio.sleep(0.05)
    recorder.keys.clear()

    second = sandbox_pb2.SandboxPolicy(
        version=1, filesystem=sandbox_pb2.FilesystemPolicy(include_workdir=True)
    )
    pushed = await client.update_policy("p1", second)
    cache.put_revision(WS, "p1", pushed)
    record = cache.get(WS, "p1")
    assert record is not None
    assert record.admission is not None
    assert (record.admission.policy_version, record.admission.state) == (
        2,
        models.AdmissionState.PENDING,
    )
    assert cache.remembered_load(WS, "p1") is not None  # version 1's hash, for the meantime
    cache.follow(WS, "p1")

    await recorder.wait_for(
        lambda: (s := cache.get(WS, "p1")) is not None and s.current_policy_version == 2
    )
    await asyncio.sleep(0.1)
    assert recorder.keys == [("team", "p1")]  # PENDING was no news; LOADED is, once


async def test_a_group_holds_the_sandboxes_of_one_label_value_as_they_come_and_go(
    client: GatewayClient, started: list[SandboxCache[Key]], emulator: EmulatorHandle
) -> None:
    async def boot(name: str, group: str) -> None:
        await client.create_sandbox(
            name, labels={"helmdeck.dev/managed-by": INSTANCE, "helmdeck.dev/pool-uid": group}
        )

    await boot("a1", "pool-a")
    await boot("a2", "pool-a")
    await boot("b1", "pool-b")
    await create(client, "solo")  # no group label
    cache, _ = start_cache(client, started, resync_seconds=0.1, group_label="helmdeck.dev/pool-uid")
    await asyncio.wait_for(cache.synced.wait(), 5)

    assert sorted(s.name for s in cache.group("pool-a")) == ["a1", "a2"]
    assert [s.name for s in cache.group("pool-b")] == ["b1"]
    assert cache.group("pool-c") == []

    emulator.gateway.vanish("default", "a1")  # gone behind the cache's back: a listing
    emulator.gateway.vanish("default", "b1")
    cache.drop(WS, "b1")  # and its going seen at once, as the operator's own delete does
    await boot("a3", "pool-a")
    async with asyncio.timeout(5):  # no session to wake: the listings are polled for
        while cache.get(WS, "a1") is not None or cache.get(WS, "a3") is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    assert sorted(s.name for s in cache.group("pool-a")) == ["a2", "a3"]
    assert cache.group("pool-b") == []


async def test_a_name_is_one_sandbox_per_workspace_across_all_workspaces(
    client: GatewayClient, started: list[SandboxCache[Key]]
) -> None:
    await client.create_workspace("team-a")
    await client.create_workspace("team-b")
    await create(client, "same")
    labels = sandbox_labels(session_uid="uid-a", family="python", instance=INSTANCE)
    annotations = sandbox_annotations(namespace="team", name="same")
    for workspace in ("team-a", "team-b"):
        await client.create_sandbox(
            "same", labels=labels, annotations=annotations, workspace=workspace
        )
    cache, _ = start_cache(
        client, started, all_workspaces=True, admits=lambda s: s.workspace != "team-b"
    )
    await asyncio.wait_for(cache.synced.wait(), 5)
    first, second = cache.get(WS, "same"), cache.get("team-a", "same")
    assert first is not None
    assert second is not None
    assert first.id != second.id  # two sandboxes, one name
    assert cache.get("team-b", "same") is None  # listed, but not admitted
    assert cache.locate(("team-b", "team-a", WS), "same") == "team-a"
    cache.drop("team-a", "same")
    assert cache.get(WS, "same") is first  # dropping one leaves the other


async def test_a_cache_of_one_workspace_lists_only_it(
    client: GatewayClient, started: list[SandboxCache[Key]]
) -> None:
    await client.create_workspace("team-a")
    labels = sandbox_labels(session_uid="uid-a", family="python", instance=INSTANCE)
    await client.create_sandbox("elsewhere", labels=labels, workspace="team-a")
    await create(client, "here")
    cache, _ = start_cache(client, started)
    await asyncio.wait_for(cache.synced.wait(), 5)
    assert [s.name for s in cache.sandboxes()] == ["here"]
