"""Every client operation against the emulated gateway over a real socket."""

from __future__ import annotations

import asyncio
import re

import pytest
from openshell._proto import openshell_pb2, sandbox_pb2

from helmdeck_operator.emulator.server import EmulatorHandle
from helmdeck_operator.gateway.client import PAGE_SIZE, CallRecord, GatewayClient
from helmdeck_operator.gateway.errors import (
    GatewayAlreadyExists,
    GatewayInvalid,
    GatewayNotFound,
    GatewayPreconditionFailed,
)
from helmdeck_operator.gateway.models import (
    AdmissionState,
    DeletionState,
    HealthStatus,
    PolicyLoadState,
    PolicyStatus,
    RestartPolicy,
    Sandbox,
    SandboxPhase,
    SandboxSpec,
    ServiceExposure,
)
from tests.support.gateway import Calls, ConfigFactory

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")


def policy(*read_only: str) -> sandbox_pb2.SandboxPolicy:
    return sandbox_pb2.SandboxPolicy(
        version=1,
        filesystem=sandbox_pb2.FilesystemPolicy(include_workdir=True, read_only=list(read_only)),
    )


async def wait_for_phase(client: GatewayClient, name: str, phase: SandboxPhase) -> Sandbox:
    async with asyncio.timeout(5):
        async for event in client.watch_sandbox(name):
            if event.sandbox is not None and event.sandbox.phase is phase:
                return event.sandbox
    raise AssertionError(f"{name} never reached {phase}")


async def wait_for_policy(
    client: GatewayClient, name: str, version: int, state: PolicyLoadState
) -> PolicyStatus:
    for _ in range(200):
        status = await client.get_policy_status(name, version)
        if status is not None and status.revision.status is state:
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} policy v{version} never became {state}")


async def test_health_and_identity(client: GatewayClient) -> None:
    health = await client.health()
    assert health.status is HealthStatus.HEALTHY
    assert health.is_healthy
    assert health.version
    who = await client.whoami()
    assert who.subject == "anonymous"
    assert "sandbox:write" in who.scopes


async def test_create_sends_the_whole_spec(client: GatewayClient, emulator: EmulatorHandle) -> None:
    spec = SandboxSpec(
        image="ghcr.io/helmdeck/browser:1",
        command=("/bin/agent", "--serve"),
        env={"MODE": "test"},
        resources={"limits": {"cpu": "1", "memory": "1Gi"}},
        gpu=1,
        providers=("github",),
        runtime_class_name="kata",
        driver_config={"node_selector": {"pool": "gpu"}},
        template_labels={"app": "sidecar"},
        restart_policy=RestartPolicy.ON_FAILURE,
        log_level="debug",
    )
    created = await client.create_sandbox(
        "browser-1",
        spec,
        policy=policy("/usr"),
        labels={"helmdeck.dev/session": "s1"},
        annotations={"helmdeck.dev/owner": "ns/s1"},
        exposures=(ServiceExposure("cdp", 9222),),
    )
    assert (created.name, created.workspace, created.image) == ("browser-1", "default", spec.image)
    assert created.phase is SandboxPhase.PROVISIONING
    assert created.labels == {"helmdeck.dev/session": "s1"}
    assert created.annotations == {"helmdeck.dev/owner": "ns/s1"}
    assert created.service_urls == {"cdp": "http://default--browser-1--cdp.sandbox.local/"}
    assert created.id
    assert created.created_at is not None
    assert created.admission is not None
    assert created.admission.policy_version == 1
    stored = emulator.gateway.snapshot()["sandboxes"][0]["spec"]
    assert stored["template"]["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}}
    assert stored["template"]["driverConfig"] == {"node_selector": {"pool": "gpu"}}
    assert stored["resourceRequirements"] == {"gpu": {"count": 1}}
    assert stored["restartPolicy"] == "SANDBOX_RESTART_POLICY_ON_FAILURE"
    assert stored["command"] == ["/bin/agent", "--serve"]
    assert stored["providers"] == ["github"]
    assert stored["environment"] == {"MODE": "test"}


async def test_request_metadata(client: GatewayClient, calls: Calls) -> None:
    await client.create_sandbox("meta")
    (record,) = calls("CreateSandbox")
    assert re.match(r"^[0-9a-f-]{36}$", record["x_request_id"])
    assert TRACEPARENT.match(record["traceparent"])
    assert record["authorization"] is False


async def test_get_returns_none_for_a_missing_sandbox(client: GatewayClient) -> None:
    assert await client.get_sandbox("nope") is None
    await client.create_sandbox("here")
    got = await client.get_sandbox("here")
    assert got is not None
    assert got.name == "here"


async def test_list_filters_by_labels_and_follows_pages(
    client: GatewayClient, emulator: EmulatorHandle, calls: Calls
) -> None:
    total = 2 * PAGE_SIZE + 30  # three pages of everything, two of one team
    for n in range(total):
        labels = {"team": "a" if n % 2 else "b", "helmdeck.dev/managed": "true"}
        emulator.gateway.create("default", f"s-{n}", openshell_pb2.SandboxSpec(), labels=labels)
    everything = await client.list_sandboxes()
    assert len(everything) == total
    assert len({s.name for s in everything}) == total
    team_a = await client.list_sandboxes({"team": "a", "helmdeck.dev/managed": "true"})
    assert {s.name for s in team_a} == {f"s-{n}" for n in range(1, total, 2)}
    pages = calls("ListSandboxes")
    assert len(pages) == 3 + 2
    assert len({p["x_request_id"] for p in pages[:3]}) == 1  # one logical call
    assert await client.list_sandboxes({"team": "c"}) == []


async def test_a_listing_reuses_the_callers_copy_of_an_unchanged_sandbox(
    client: GatewayClient,
) -> None:
    kept = await client.create_sandbox("kept")
    changed = await client.create_sandbox("changed")
    await client.update_policy("changed", sandbox_pb2.SandboxPolicy(version=1))
    mine = {"kept": kept, "changed": changed}

    def known(workspace: str, name: str, sandbox_id: str, resource_version: int) -> Sandbox | None:
        assert workspace == "default"
        copy = mine.get(name)
        if copy and (copy.id, copy.resource_version) == (sandbox_id, resource_version):
            return copy
        return None

    listed = {s.name: s for s in await client.list_sandboxes(known=known)}
    assert listed["kept"] is kept  # not converted again
    assert listed["changed"] is not changed
    assert listed["changed"].resource_version > changed.resource_version


async def test_list_refuses_selectors_it_cannot_express(client: GatewayClient) -> None:
    with pytest.raises(ValueError, match="selector"):
        await client.list_sandboxes({"a,b": "c"})


async def test_delete_outcomes(client: GatewayClient) -> None:
    await client.create_sandbox("doomed")
    outcome = await client.delete_sandbox("doomed")
    assert outcome.state is DeletionState.ACCEPTED
    assert not outcome.gone
    assert outcome.sandbox_id
    deleting = await client.get_sandbox("doomed")
    assert deleting is not None
    assert deleting.deleting
    for _ in range(100):
        if await client.get_sandbox("doomed") is None:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the sandbox never went away")
    gone = await client.delete_sandbox("doomed")
    assert gone.state is DeletionState.ALREADY_ABSENT
    assert gone.gone
    with pytest.raises(GatewayNotFound):
        await client.delete_sandbox("doomed", allow_missing=False)


async def test_stop_and_start(client: GatewayClient) -> None:
    await client.create_sandbox("cycle")
    with pytest.raises(GatewayPreconditionFailed, match="cannot be stopped"):
        await client.stop_sandbox("cycle")  # still provisioning
    await wait_for_phase(client, "cycle", SandboxPhase.READY)
    stopping = await client.stop_sandbox("cycle")
    assert stopping.phase is SandboxPhase.STOPPING
    await wait_for_phase(client, "cycle", SandboxPhase.STOPPED)
    assert (await client.stop_sandbox("cycle")).phase is SandboxPhase.STOPPED  # repeat: no-op
    assert (await client.start_sandbox("cycle")).phase is SandboxPhase.STARTING
    ready = await wait_for_phase(client, "cycle", SandboxPhase.READY)
    assert ready.is_ready


async def test_watch_follows_changes_until_deletion(client: GatewayClient) -> None:
    await client.create_sandbox("watched", policy=policy())
    phases: list[SandboxPhase] = []
    async with asyncio.timeout(5):
        async for event in client.watch_sandbox("watched", follow_logs=True):
            if event.sandbox is None:
                continue
            phases.append(event.sandbox.phase)
            if event.sandbox.is_ready and event.sandbox.current_policy_version == 1:
                await client.delete_sandbox("watched")
    assert phases[0] is SandboxPhase.PROVISIONING
    assert SandboxPhase.READY in phases
    assert phases[-1] is SandboxPhase.DELETING


async def test_watch_of_a_missing_sandbox_ends_at_once(client: GatewayClient) -> None:
    events = [event async for event in client.watch_sandbox("ghost")]
    assert events == []


async def test_watch_carries_logs(client: GatewayClient, emulator: EmulatorHandle) -> None:
    await client.create_sandbox("chatty")
    async with asyncio.timeout(5):
        async for event in client.watch_sandbox("chatty", follow_logs=True):
            if event.sandbox is not None and event.cursor == "0":
                emulator.gateway.append_log("default", "chatty", "hello", level="OCSF")
            if event.log is not None and event.log.message == "hello":
                assert event.log.level == "OCSF"
                assert event.log.time is not None
                break


async def test_policy_update_and_status(client: GatewayClient) -> None:
    assert await client.get_policy_status("nope") is None  # no sandbox at all
    await client.create_sandbox("nopolicy")
    assert await client.get_policy_status("nopolicy") is None  # no revision yet
    await client.create_sandbox("pol", policy=policy())
    await wait_for_phase(client, "pol", SandboxPhase.READY)
    revision = await client.update_policy("pol", policy("/usr"), annotations={"by": "test"})
    assert revision.version == 2
    assert len(revision.hash) == 64
    assert revision.status is PolicyLoadState.UNSPECIFIED
    same = await client.update_policy("pol", policy("/usr"), annotations={"by": "test"})
    assert same.version == 2  # identical policy: no new version
    status = await wait_for_policy(client, "pol", 2, PolicyLoadState.LOADED)
    assert status.active_version == 2
    assert status.revision.hash == revision.hash
    first = await client.get_policy_status("pol", 1)
    assert first is not None
    assert first.revision.version == 1
    sandbox = await client.get_sandbox("pol")
    assert sandbox is not None
    assert sandbox.current_policy_version == 2
    assert sandbox.admission is not None
    assert sandbox.admission.state is AdmissionState.ACCEPTED
    assert sandbox.configuration_activated


async def test_failed_policy_load_is_reported(
    client: GatewayClient, emulator: EmulatorHandle
) -> None:
    await client.create_sandbox("fragile", policy=policy())
    await wait_for_phase(client, "fragile", SandboxPhase.READY)
    emulator.faults.apply({"policy_load_failures": {"next": 1, "message": "bad rule"}})
    revision = await client.update_policy("fragile", policy("/opt"))
    status = await wait_for_policy(client, "fragile", revision.version, PolicyLoadState.FAILED)
    assert status.revision.load_error == "bad rule"
    assert status.active_version == 1


async def test_live_change_violation_is_invalid(client: GatewayClient) -> None:
    await client.create_sandbox("strict", policy=policy())
    changed = policy()
    changed.process.run_as_user = "1000"
    with pytest.raises(GatewayInvalid, match="cannot be changed on a live sandbox") as invalid:
        await client.update_policy("strict", changed)
    assert invalid.value.reason == "GatewayInvalidArgument"
    assert not invalid.value.is_transient


async def test_logs(client: GatewayClient, emulator: EmulatorHandle) -> None:
    await client.create_sandbox("logs")
    emulator.gateway.append_log("default", "logs", "denied", level="OCSF", source="sandbox")
    lines = await client.get_sandbox_logs("logs", lines=10)
    assert [line.message for line in lines][-1] == "denied"
    only_ocsf = await client.get_sandbox_logs("logs", sources=["sandbox"])
    assert {line.source for line in only_ocsf} == {"sandbox"}
    with pytest.raises(GatewayNotFound):
        await client.get_sandbox_logs("nope")


async def test_validation_errors_name_the_field(client: GatewayClient) -> None:
    with pytest.raises(GatewayInvalid) as invalid:
        await client.create_sandbox("this-name-is-far-too-long-for-openshell")
    assert [v.field for v in invalid.value.violations] == ["name"]
    assert invalid.value.attempts == 1


async def test_unknown_provider_is_a_failed_precondition(client: GatewayClient) -> None:
    with pytest.raises(GatewayPreconditionFailed, match="provider"):
        await client.create_sandbox("p", SandboxSpec(providers=("nosuch",)))


async def test_duplicate_create_is_already_exists(client: GatewayClient) -> None:
    await client.create_sandbox("twice")
    with pytest.raises(GatewayAlreadyExists) as exists:
        await client.create_sandbox("twice")
    assert exists.value.attempts == 1


async def test_observers_see_every_attempt(config_for: ConfigFactory) -> None:
    seen: list[CallRecord] = []
    async with GatewayClient(config_for(), observers=[seen.append]) as client:
        await client.health()
        await client.get_sandbox("missing")
    assert [(r.gateway, r.rpc, r.code, r.attempt) for r in seen] == [
        ("emu", "Health", "OK", 1),
        ("emu", "GetSandbox", "NOT_FOUND", 1),
    ]
    assert all(r.seconds >= 0 and r.request_id for r in seen)


async def test_calls_need_a_started_client(config_for: ConfigFactory) -> None:
    client = GatewayClient(config_for())
    with pytest.raises(RuntimeError, match="not started"):
        await client.health()
    await client.start()
    await client.start()  # idempotent
    assert (await client.health()).is_healthy
    await client.close()
    assert "emu" in repr(client)
