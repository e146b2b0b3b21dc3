"""Where a sandbox lives on its gateway, and making a namespace's workspace before its first.

A gateway in mode PerNamespace gives each namespace its own OpenShell workspace
(`core.naming.home_workspace`). Before the first sandbox of a namespace is created there,
the workspace must exist: asked once (GetWorkspace, then CreateWorkspace; ALREADY_EXISTS
counts as made: another replica or a retried call made it), labelled with this instance and
the namespace, and remembered for the life of the process, so a namespace costs one or two
calls however many sandboxes it gets. The passes of one namespace that create at once share
the one attempt; a failed attempt is forgotten, so the next create asks again. An existing
workspace of that name is used as it is (a platform admin may make them beforehand).

A workspace stays when its namespace empties, and when the namespace goes: deleting it
would race the next session's create, and the gateway marks a workspace it is asked to
delete TERMINATING even when it refuses (something is still in it), after which nothing can
be created there. A platform admin deletes the workspaces of retired namespaces.

Which workspace a session's sandbox is in (`sandbox_workspace`): the one its status
records; else one of the two it may be in where the gateway has a sandbox of its name (a
restart before the status said so; a pool's sandbox made before the mode changed); else its
home, where it will be created. So a change of mode moves nothing that exists.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from helmdeck_operator.core.naming import (
    allowed_workspaces,
    home_workspace,
    workspace_labels,
)
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.errors import GatewayAlreadyExists
from helmdeck_operator.runtime import Cache, Runtime

__all__ = ["ensure_workspace", "sandbox_workspace"]


def sandbox_workspace(cache: Cache, namespace: str, name: str, status: Mapping[str, Any]) -> str:
    """The workspace of the sandbox `name` of an object in `namespace` (module docstring)."""
    gateway = cache.client.config
    recorded = (status.get("sandbox") or {}).get("workspace")
    allowed = allowed_workspaces(gateway, namespace)
    if recorded in allowed:
        return str(recorded)
    return cache.locate(allowed, name) or home_workspace(gateway, namespace)


async def ensure_workspace(rt: Runtime, cache: Cache, workspace: str, namespace: str) -> None:
    """Make sure `workspace`, the workspace of `namespace`, exists before a create in it
    (GatewayError when it cannot be made: the create fails as its own refusal would)."""
    client = cache.client
    if workspace == client.config.workspace:
        return  # the gateway's own workspace exists by configuration
    key = (cache.name, workspace)
    making = rt.workspaces.get(key)
    if making is None or (making.done() and (making.cancelled() or making.exception())):
        labels = workspace_labels(instance=rt.config.instance, namespace=namespace)
        making = asyncio.ensure_future(_make(client, workspace, labels))
        rt.workspaces[key] = making
    # Shielded: a pass cancelled while waiting must not cancel the others' attempt.
    await asyncio.shield(making)


async def _make(client: GatewayClient, workspace: str, labels: Mapping[str, str]) -> None:
    if await client.get_workspace(workspace) is not None:
        return
    # ALREADY_EXISTS: made meanwhile, or by a retry of ours whose first answer was lost.
    with contextlib.suppress(GatewayAlreadyExists):
        await client.create_workspace(workspace, labels=labels)
