"""The orphan sweep: delete sandboxes labelled as ours whose session no longer exists.

A sandbox outlives its session only when something went wrong between the two (a session
force-deleted without its finalizer, a crash between create and the first status write of a
session deleted meanwhile). The sweep lists each gateway's sandboxes carrying this
instance's managed-by label, and deletes those whose session is gone or has another UID,
unless they are younger than the grace period (their session may not be visible yet).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from helmdeck_operator.core.naming import LABEL_MANAGED_BY, session_of
from helmdeck_operator.gateway import GatewayError
from helmdeck_operator.kube import SESSIONS
from helmdeck_operator.runtime import Runtime

__all__ = ["sweep_orphans"]

logger = logging.getLogger(__name__)


async def sweep_orphans(rt: Runtime) -> list[str]:
    """One sweep over every gateway; returns `gateway/sandbox` of each sandbox deleted."""
    grace = timedelta(seconds=rt.config.intervals.orphan_grace_seconds)
    now = rt.clock()
    deleted: list[str] = []
    for gateway, client in rt.gateways.items():
        try:
            sandboxes = await client.list_sandboxes({LABEL_MANAGED_BY: rt.config.instance})
        except GatewayError as err:
            logger.warning("orphan sweep skipped gateway %s: %s", gateway, err)
            continue
        for sandbox in sandboxes:
            owner = session_of(sandbox.labels, sandbox.annotations)
            if owner is None or sandbox.deleting:
                continue
            namespace, name, uid = owner
            if rt.config.namespaces and namespace not in rt.config.namespaces:
                continue
            if sandbox.created_at is not None and now - sandbox.created_at < grace:
                continue
            session = await rt.kube.get(SESSIONS, namespace, name)
            if session is not None and session["metadata"]["uid"] == uid:
                continue
            try:
                async with rt.mutation_slots[gateway]:
                    await client.delete_sandbox(sandbox.name)
            except GatewayError as err:
                logger.warning("could not delete orphan %s/%s: %s", gateway, sandbox.name, err)
                continue
            logger.info(
                "deleted orphan sandbox %s/%s of vanished session %s/%s (uid %s)",
                gateway,
                sandbox.name,
                namespace,
                name,
                uid,
            )
            deleted.append(f"{gateway}/{sandbox.name}")
    return deleted
