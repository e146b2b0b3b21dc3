"""The orphan sweep: delete sandboxes labelled as ours whose session no longer exists.

A sandbox outlives its session only when something went wrong between the two (a session
force-deleted without its finalizer, a crash between create and the first status write of a
session deleted meanwhile). The sweep goes over each gateway's cache (already filtered by
this instance's managed-by label; no extra listing), and deletes the sandboxes whose
session is gone or has another UID, unless they are younger than the grace period (their
session may not be visible yet). A candidate is confirmed with a read of the session from
the API before anything is deleted, so a session the watch has not delivered yet is safe.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from helmdeck_operator.core.naming import session_of
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.kube import SESSIONS
from helmdeck_operator.runtime import Runtime

__all__ = ["sweep_orphans"]

logger = logging.getLogger(__name__)


async def sweep_orphans(rt: Runtime) -> list[str]:
    """One sweep over every gateway; returns `gateway/sandbox` of each sandbox deleted."""
    grace = timedelta(seconds=rt.config.intervals.orphan_grace_seconds)
    now = rt.clock()
    deleted: list[str] = []
    for gateway, cache in rt.caches.items():
        if not cache.up or not cache.synced.is_set():
            continue  # nothing is known for sure about a gateway that does not answer
        for sandbox in cache.sandboxes():
            owner = session_of(sandbox.labels, sandbox.annotations)
            if owner is None or sandbox.deleting:
                continue
            namespace, name, uid = owner
            if rt.config.namespaces and namespace not in rt.config.namespaces:
                continue
            if sandbox.created_at is not None and now - sandbox.created_at < grace:
                continue
            known = rt.store.session(namespace, name)
            if known is not None and known["metadata"]["uid"] == uid:
                continue
            session = await rt.kube.get(SESSIONS, namespace, name)
            if session is not None and session["metadata"]["uid"] == uid:
                continue
            try:
                async with rt.mutation_slots[gateway]:
                    outcome = await cache.client.delete_sandbox(sandbox.name)
            except GatewayError as err:
                cache.report(err)
                logger.warning("could not delete orphan %s/%s: %s", gateway, sandbox.name, err)
                continue
            if outcome.gone:
                cache.drop(sandbox.name)
            else:
                cache.mark_deleting(sandbox.name)
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
