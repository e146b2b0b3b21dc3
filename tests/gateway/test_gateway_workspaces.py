"""The client's workspace calls (create, get, list, delete) and the workspace every sandbox
call can be scoped to, against the emulated gateway over a real socket."""

from __future__ import annotations

import pytest

from helmdeck_operator.gateway import client as client_module
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.errors import (
    GatewayAlreadyExists,
    GatewayInvalid,
    GatewayNotFound,
    GatewayPreconditionFailed,
)
from helmdeck_operator.gateway.models import (
    DeletionState,
    ServiceExposure,
    WorkspacePhase,
)
from tests.support.gateway import Calls, ConfigFactory


async def test_create_get_and_delete_a_workspace(client: GatewayClient, calls: Calls) -> None:
    made = await client.create_workspace("team-a", labels={"helmdeck.dev/managed-by": "x"})
    assert (made.name, made.phase) == ("team-a", WorkspacePhase.ACTIVE)
    assert made.id
    assert made.labels == {"helmdeck.dev/managed-by": "x"}
    assert await client.get_workspace("team-a") == made
    assert await client.get_workspace("ghost") is None
    assert calls("CreateWorkspace")[0]["x_request_id"]  # the request id a replay needs
    outcome = await client.delete_workspace("team-a")
    assert outcome.state is DeletionState.COMPLETED
    again = await client.delete_workspace("team-a")
    assert again.state is DeletionState.ALREADY_ABSENT
    with pytest.raises(GatewayNotFound):
        await client.delete_workspace("team-a", allow_missing=False)


async def test_a_taken_name_and_a_bad_one_raise_their_errors(client: GatewayClient) -> None:
    await client.create_workspace("team-a")
    with pytest.raises(GatewayAlreadyExists):
        await client.create_workspace("team-a")
    with pytest.raises(GatewayInvalid, match="consecutive hyphens"):
        await client.create_workspace("team--a")


async def test_list_reads_every_page_and_filters_by_label(
    client: GatewayClient, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    for index in range(5):
        labels = {"owner": "us"} if index % 2 == 0 else {"owner": "them"}
        await client.create_workspace(f"ws-{index}", labels=labels)
    everything = await client.list_workspaces()
    assert [w.name for w in everything] == ["default", *(f"ws-{i}" for i in range(5))]
    assert len(calls("ListWorkspaces")) == 3
    ours = await client.list_workspaces({"owner": "us"})
    assert [w.name for w in ours] == ["ws-0", "ws-2", "ws-4"]


async def test_a_non_empty_workspace_refuses_its_delete(client: GatewayClient) -> None:
    await client.create_workspace("team-a")
    await client.create_sandbox("sbx", workspace="team-a")
    with pytest.raises(GatewayPreconditionFailed, match="still contains resources: sandbox"):
        await client.delete_workspace("team-a")
    found = await client.get_workspace("team-a")
    assert found is not None
    assert found.phase is WorkspacePhase.TERMINATING


async def test_every_sandbox_call_is_scoped_to_the_workspace_it_names(
    client: GatewayClient,
) -> None:
    await client.create_workspace("team-a")
    made = await client.create_sandbox(
        "sbx", workspace="team-a", exposures=(ServiceExposure("web", 8080),)
    )
    assert made.workspace == "team-a"
    # The configured workspace (default) knows no such sandbox.
    assert await client.get_sandbox("sbx") is None
    assert await client.list_sandboxes() == []
    assert await client.get_service("sbx", "web") is None
    with pytest.raises(GatewayNotFound):
        await client.list_services("sbx")
    # Scoped to team-a, every call reaches it.
    found = await client.get_sandbox("sbx", workspace="team-a")
    assert found is not None
    assert found.id == made.id
    assert [s.name for s in await client.list_sandboxes(workspace="team-a")] == ["sbx"]
    assert [e.name for e in await client.list_services("sbx", workspace="team-a")] == ["web"]
    assert await client.get_service("sbx", "web", workspace="team-a") is not None
    exposed = await client.expose_service("sbx", ServiceExposure("api", 9000), workspace="team-a")
    assert exposed.url.startswith("http://team-a--sbx--api.")
    assert await client.delete_service("sbx", "api", workspace="team-a")
    async for event in client.watch_sandbox("sbx", workspace="team-a"):
        assert event.sandbox is not None
        assert event.sandbox.id == made.id
        break
    assert await client.get_sandbox_logs("sbx", workspace="team-a")
    revision = await client.get_policy_status("sbx", workspace="team-a")
    assert revision is None  # created without a policy
    assert (await client.delete_sandbox("sbx")).state is DeletionState.ALREADY_ABSENT
    deleted = await client.delete_sandbox("sbx", workspace="team-a")
    assert deleted.state is not DeletionState.ALREADY_ABSENT


async def test_a_listing_across_workspaces_names_each_sandbox_workspace(
    client: GatewayClient,
) -> None:
    await client.create_workspace("team-a")
    await client.create_sandbox("sbx", labels={"app": "x"})
    await client.create_sandbox("sbx", workspace="team-a", labels={"app": "x"})
    await client.create_sandbox("other", workspace="team-a", labels={"app": "y"})
    listed = await client.list_sandboxes({"app": "x"}, all_workspaces=True)
    assert sorted((s.workspace, s.name) for s in listed) == [
        ("default", "sbx"),
        ("team-a", "sbx"),
    ]


async def test_a_gateway_configured_with_another_workspace_scopes_unnamed_calls_to_it(
    client: GatewayClient, config_for: ConfigFactory
) -> None:
    await client.create_workspace("agents")
    async with GatewayClient(config_for(workspace="agents")) as scoped:
        made = await scoped.create_sandbox("sbx")
        assert made.workspace == "agents"
        assert await client.get_sandbox("sbx") is None
        assert await client.get_sandbox("sbx", workspace="agents") is not None
