"""A sandbox's providers on its gateway: making them the session's, on the live sandbox.

The gateway's sandbox record carries the attached providers, so the cache knows them from
every listing, and no status has to remember them; this only acts. Each call is a
compare-and-set on the resource version of the answer before it, so nothing is attached or
detached on a stale view (another replica's pass, a provider attached by hand meanwhile).
"""

from __future__ import annotations

from helmdeck_operator.core.providers import provider_changes
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.runtime import Cache
from helmdeck_operator.vocabulary import Reason

__all__ = ["sync_providers"]


async def sync_providers(
    cache: Cache, sandbox: models.Sandbox, wanted: tuple[str, ...]
) -> models.Sandbox:
    """Detach and attach providers until the sandbox has exactly `wanted`; the sandbox as
    the gateway last answered, recorded in the cache.

    Detaches go first, so a change never passes the gateway's limit of 32 on the way. A
    sandbox that changed since `sandbox` was read (ABORTED) is read again and returned as
    it is now: the next pass plans from it. Any other refusal is raised, what was done
    before it already in the cache."""
    client, current = cache.client, sandbox
    workspace, name = sandbox.workspace, sandbox.name
    changes = provider_changes(wanted, sandbox.providers)
    try:
        steps = [(client.detach_provider, p) for p in changes.detach]
        steps += [(client.attach_provider, p) for p in changes.attach]
        for call, provider in steps:
            current = await call(
                name,
                provider,
                expected_resource_version=current.resource_version,
                workspace=workspace,
            )
            cache.put(current)
    except GatewayError as err:
        if err.reason is not Reason.GATEWAY_ABORTED:
            raise
        fresh = await client.get_sandbox(name, workspace=workspace)
        if fresh is None:
            raise  # gone meanwhile: the next listing tells the session
        cache.put(fresh)
        return fresh
    return current
