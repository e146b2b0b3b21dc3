"""A sandbox's endpoints on its gateway: what they are now, and making them match the ports.

The gateway returns endpoint URLs with the create and with each service call, never with
the sandbox in other answers; the cache keeps them together with the ports digest they
match. After a restart the session's status tells them for the same sandbox; only when
nothing does is the gateway asked (ListServices), once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helmdeck_operator.config import Port
from helmdeck_operator.core.endpoints import port_changes, ports_of
from helmdeck_operator.core.session import ports_digest
from helmdeck_operator.gateway import models
from helmdeck_operator.runtime import Cache

__all__ = ["known_endpoints", "sync_endpoints"]


async def known_endpoints(
    cache: Cache, sandbox: models.Sandbox, status: Mapping[str, Any]
) -> tuple[Mapping[str, str], str]:
    """The sandbox's endpoint URLs by port name, and the ports digest they match."""
    workspace, name = sandbox.workspace, sandbox.name
    urls, exposed = cache.service_urls(workspace, name), cache.exposed(workspace, name)
    if urls is not None and exposed is not None:
        return urls, exposed
    recorded = status.get("sandbox") or {}
    endpoints = status.get("endpoints")
    if recorded.get("id") == sandbox.id and recorded.get("ports") and isinstance(endpoints, dict):
        urls, exposed = endpoints, str(recorded["ports"])
    else:
        listed = await cache.client.list_services(name, workspace=workspace)
        urls, exposed = _urls(listed), ports_digest(ports_of(listed))
    cache.put_services(workspace, name, urls, exposed)
    return urls, exposed


async def sync_endpoints(
    cache: Cache, workspace: str, name: str, ports: tuple[Port, ...]
) -> Mapping[str, str]:
    """Expose and remove endpoints until they are exactly `ports`; their URLs by name.

    Both calls are idempotent on the gateway, so a pass interrupted half-way (a gateway
    error, a restart) is finished by the next one, which lists the endpoints again."""
    client = cache.client
    listed = await client.list_services(name, workspace=workspace)
    changes = port_changes(ports, listed)
    urls = _urls(listed)
    try:
        for removed in changes.remove:
            await client.delete_service(name, removed, workspace=workspace)
            urls.pop(removed, None)
        for exposure in changes.expose:
            made = await client.expose_service(name, exposure, workspace=workspace)
            urls[made.name] = made.url
    except BaseException:
        # Not known to match anything: listed next time.
        cache.put_services(workspace, name, urls, None)
        raise
    cache.put_services(workspace, name, urls, ports_digest(ports))
    return urls


def _urls(endpoints: list[models.ServiceEndpoint]) -> dict[str, str]:
    return {e.name: e.url for e in endpoints if e.name}
