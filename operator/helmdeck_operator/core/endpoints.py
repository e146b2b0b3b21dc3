"""A session's ports as the gateway's service endpoints, and what changes them. Pure.

A port (`spec.ports`, or the family's in the operator configuration) is exposed as a
service of the same name on the sandbox: at create as its service exposures, later on the
live sandbox by ExposeService (an upsert on the gateway) and DeleteService. The ports are
the whole truth: an endpoint the ports do not name is removed, whoever exposed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from helmdeck_operator.config import Authorization, Port
from helmdeck_operator.gateway import models

__all__ = ["PortChanges", "exposures", "port_changes", "ports_of"]

_MODES: dict[Authorization, models.ServiceAuthorization] = {
    "Strip": models.ServiceAuthorization.STRIP,
    "BearerPassthrough": models.ServiceAuthorization.BEARER_PASSTHROUGH,
}
_NAMES: dict[models.ServiceAuthorization, Authorization] = {
    mode: name for name, mode in _MODES.items()
}


def exposures(ports: Iterable[Port]) -> tuple[models.ServiceExposure, ...]:
    """The gateway's form of `ports`."""
    return tuple(models.ServiceExposure(p.name, p.port, _MODES[p.authorization]) for p in ports)


def ports_of(endpoints: Iterable[models.ServiceEndpoint]) -> tuple[Port, ...]:
    """The ports a sandbox's named endpoints expose (the unnamed endpoint is none of ours)."""
    return tuple(
        Port(name=e.name, port=e.port, authorization=_NAMES[e.authorization])
        for e in endpoints
        if e.name
    )


@dataclass(frozen=True)
class PortChanges:
    """What to ask the gateway so that the endpoints match the ports."""

    expose: tuple[models.ServiceExposure, ...]
    remove: tuple[str, ...]


def port_changes(ports: Iterable[Port], endpoints: Iterable[models.ServiceEndpoint]) -> PortChanges:
    """Expose every port whose endpoint is missing or different; remove every endpoint no
    port names."""
    current = {(e.name, e.port, e.authorization): e for e in endpoints}
    wanted = exposures(ports)
    names = {w.name for w in wanted}
    expose = tuple(w for w in wanted if (w.name, w.port, w.authorization) not in current)
    remove = tuple(sorted({e.name for e in current.values() if e.name not in names}))
    return PortChanges(expose, remove)
