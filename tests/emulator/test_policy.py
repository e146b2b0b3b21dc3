"""Policy revision rules of the emulated gateway, one test per rule, over real gRPC."""

from __future__ import annotations

import hashlib

import grpc
from openshell._proto import sandbox_pb2

from helmdeck_operator.emulator.server import EmulatorHandle
from tests.support.openshell_rpc import (
    WS,
    Stub,
    create,
    eventually,
    get,
    pb,
    policy_status,
    rpc_error,
    update_policy,
    wait_ready,
)
from tests.support.policies import base_policy, rest_rule

Code = grpc.StatusCode
LOADED = pb.POLICY_STATUS_LOADED


async def loaded(stub: Stub, name: str, version: int) -> pb.GetSandboxPolicyStatusResponse:
    return await eventually(
        lambda: policy_status(stub, name, version), lambda r: r.revision.status == LOADED
    )


async def ready_with_policy(stub: Stub, name: str) -> None:
    await create(stub, name, policy=base_policy(npm=rest_rule("registry.npmjs.org")))
    await wait_ready(stub, name)
    await loaded(stub, name, 1)


async def test_policy_at_create_is_version_1_pending_then_loaded(emulator_stub: Stub) -> None:
    await create(emulator_stub, "v1", policy=base_policy())
    first = await policy_status(emulator_stub, "v1")
    assert (first.revision.version, first.revision.status) == (1, pb.POLICY_STATUS_PENDING)
    assert first.active_version == 0
    status = await loaded(emulator_stub, "v1", 1)
    assert status.active_version == 1
    assert (await get(emulator_stub, "v1")).status.current_policy_version == 1


async def test_update_bumps_the_version_by_one(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "bump")
    policy = base_policy(npm=rest_rule("registry.npmjs.org"), gh=rest_rule("api.github.com"))
    assert (await update_policy(emulator_stub, "bump", policy)).version == 2
    policy.network_policies["pypi"].CopyFrom(rest_rule("pypi.org"))
    assert (await update_policy(emulator_stub, "bump", policy)).version == 3


async def test_identical_policy_returns_existing_version_without_bump(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "same")
    policy = base_policy(npm=rest_rule("registry.npmjs.org"), gh=rest_rule("api.github.com"))
    first = await update_policy(emulator_stub, "same", policy, rev="a")
    second = await update_policy(emulator_stub, "same", policy, rev="a")
    assert second.version == first.version == 2
    different_annotations = await update_policy(emulator_stub, "same", policy, rev="b")
    assert different_annotations.version == 3


async def test_policy_hash_is_sha256_of_deterministic_bytes(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "hash")
    policy = base_policy(npm=rest_rule("registry.npmjs.org"), gh=rest_rule("api.github.com"))
    response = await update_policy(emulator_stub, "hash", policy)
    expected = hashlib.sha256(policy.SerializeToString(deterministic=True)).hexdigest()
    assert response.policy_hash == expected
    status = await policy_status(emulator_stub, "hash", response.version)
    assert status.revision.policy_hash == expected


async def test_revision_is_pending_then_loaded_and_active_moves_only_on_load(
    emulator_stub: Stub,
) -> None:
    await ready_with_policy(emulator_stub, "pend")
    policy = base_policy(gh=rest_rule("api.github.com"))
    version = (await update_policy(emulator_stub, "pend", policy)).version
    pending = await policy_status(emulator_stub, "pend", version)
    assert pending.revision.status == pb.POLICY_STATUS_PENDING
    assert pending.active_version == 1
    admission = (await get(emulator_stub, "pend")).status.configuration_admission
    assert admission.state == pb.CONFIGURATION_ADMISSION_STATE_PENDING
    assert admission.policy_version == version
    done = await loaded(emulator_stub, "pend", version)
    assert done.active_version == version
    sandbox = await get(emulator_stub, "pend")
    assert sandbox.status.current_policy_version == version
    assert sandbox.status.configuration_admission.state == pb.CONFIGURATION_ADMISSION_STATE_ACCEPTED


async def test_newer_revision_supersedes_a_pending_one(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "sup")
    v2 = (await update_policy(emulator_stub, "sup", base_policy(a=rest_rule("a.example")))).version
    v3 = (await update_policy(emulator_stub, "sup", base_policy(b=rest_rule("b.example")))).version
    assert (await policy_status(emulator_stub, "sup", v2)).revision.status == (
        pb.POLICY_STATUS_SUPERSEDED
    )
    assert (await loaded(emulator_stub, "sup", v3)).active_version == v3


async def test_injected_load_failure_marks_revision_failed_and_keeps_active(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    await ready_with_policy(emulator_stub, "fail")
    openshell_emulator.faults.apply({"policy_load_failures": {"next": 1, "message": "bad rule"}})
    version = (await update_policy(emulator_stub, "fail", base_policy())).version
    status = await eventually(
        lambda: policy_status(emulator_stub, "fail", version),
        lambda r: r.revision.status != pb.POLICY_STATUS_PENDING,
    )
    assert status.revision.status == pb.POLICY_STATUS_FAILED
    assert status.revision.load_error == "bad rule"
    assert status.active_version == 1
    admission = (await get(emulator_stub, "fail")).status.configuration_admission
    assert admission.state == pb.CONFIGURATION_ADMISSION_STATE_REJECTED
    assert admission.error == "bad rule"


async def test_policy_status_not_found_without_revisions(emulator_stub: Stub) -> None:
    await create(emulator_stub, "nopol")
    assert (await rpc_error(policy_status(emulator_stub, "nopol"))).code() == Code.NOT_FOUND
    await create(emulator_stub, "pol", policy=base_policy())
    assert (await rpc_error(policy_status(emulator_stub, "pol", 7))).code() == Code.NOT_FOUND


async def test_network_rules_change_live(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "net")
    policy = base_policy(gh=rest_rule("api.github.com"))  # npm removed, gh added
    version = (await update_policy(emulator_stub, "net", policy)).version
    await loaded(emulator_stub, "net", version)


async def assert_live_rejection(stub: Stub, name: str, policy: object, fragment: str) -> None:
    error = await rpc_error(update_policy(stub, name, policy))  # type: ignore[arg-type]
    assert error.code() == Code.INVALID_ARGUMENT
    assert "on a live sandbox" in (error.details() or "")
    assert fragment in (error.details() or "")


async def test_filesystem_paths_may_be_added_not_removed(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "fs")
    grown = base_policy(npm=rest_rule("registry.npmjs.org"))
    grown.filesystem.read_only.append("/opt")
    assert (await update_policy(emulator_stub, "fs", grown)).version == 2
    shrunk = base_policy(npm=rest_rule("registry.npmjs.org"))
    del shrunk.filesystem.read_write[:]
    await assert_live_rejection(emulator_stub, "fs", shrunk, "read_write path '/tmp'")


async def test_include_workdir_is_fixed(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "wd")
    policy = base_policy(npm=rest_rule("registry.npmjs.org"))
    policy.filesystem.include_workdir = False
    await assert_live_rejection(emulator_stub, "wd", policy, "include_workdir")


async def test_landlock_must_be_identical(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "ll")
    policy = base_policy(npm=rest_rule("registry.npmjs.org"))
    policy.landlock.compatibility = "hard_requirement"
    await assert_live_rejection(emulator_stub, "ll", policy, "landlock")


async def test_process_must_be_identical(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "proc")
    policy = base_policy(npm=rest_rule("registry.npmjs.org"))
    policy.process.run_as_user = "1000"
    await assert_live_rejection(emulator_stub, "proc", policy, "process")


async def test_a_first_raw_tcp_endpoint_can_be_added_live(emulator_stub: Stub) -> None:
    """The gateway has no rule against it (../shared/OPENSHELL-RULES.md)."""
    await ready_with_policy(emulator_stub, "tcp")
    policy = base_policy(
        npm=rest_rule("registry.npmjs.org"), ssh=rest_rule("github.com", 22, protocol="")
    )
    assert (await update_policy(emulator_stub, "tcp", policy)).version == 2


async def test_exactly_one_of_policy_setting_or_merge(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "one")
    none = pb.UpdateConfigRequest(workspace_scope=WS, sandbox="one")
    assert (await rpc_error(emulator_stub.UpdateConfig(none))).code() == Code.INVALID_ARGUMENT
    both = pb.UpdateConfigRequest(
        workspace_scope=WS, sandbox="one", policy=base_policy(), setting_key="ocsf_json_enabled"
    )
    assert (await rpc_error(emulator_stub.UpdateConfig(both))).code() == Code.INVALID_ARGUMENT


async def test_setting_update_does_not_bump_the_policy(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "set")
    request = pb.UpdateConfigRequest(
        workspace_scope=WS,
        sandbox="set",
        setting_key="ocsf_json_enabled",
        setting_value=sandbox_pb2.SettingValue(bool_value=True),
    )
    response = await emulator_stub.UpdateConfig(request)
    assert response.settings_revision == 1
    assert (await policy_status(emulator_stub, "set")).revision.version == 1


async def test_merge_operations_add_a_rule_as_a_new_version(emulator_stub: Stub) -> None:
    await ready_with_policy(emulator_stub, "merge")
    op = pb.PolicyMergeOperation(
        add_rule=pb.AddNetworkRule(rule_name="gh", rule=rest_rule("api.github.com"))
    )
    request = pb.UpdateConfigRequest(workspace_scope=WS, sandbox="merge", merge_operations=[op])
    assert (await emulator_stub.UpdateConfig(request)).version == 2
    revision = (await policy_status(emulator_stub, "merge", 2)).revision
    assert set(revision.policy.network_policies) == {"npm", "gh"}


async def test_hot_reload_restarts_nothing(
    openshell_emulator: EmulatorHandle, emulator_stub: Stub
) -> None:
    await ready_with_policy(emulator_stub, "hot")
    before = await get(emulator_stub, "hot")
    for i in range(3):
        policy = base_policy(npm=rest_rule("registry.npmjs.org"), extra=rest_rule(f"h{i}.example"))
        version = (await update_policy(emulator_stub, "hot", policy)).version
        await loaded(emulator_stub, "hot", version)
    after = await get(emulator_stub, "hot")
    assert after.metadata.id == before.metadata.id
    assert after.status.main_process_instance_id == before.status.main_process_instance_id
    record = openshell_emulator.snapshot()["sandboxes"][0]
    assert record["boots"] == 1
    assert record["restart_count"] == 0
    kinds = [e["event"] for e in openshell_emulator.snapshot()["events"]]
    assert kinds.count("created") == 1
    assert "stopping" not in kinds
    assert "deleted" not in kinds
