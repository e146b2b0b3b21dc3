"""The orphan sweep: delete sandboxes labelled as ours that nobody owns any more.

A sandbox outlives its owner only when something went wrong between the two (a session
force-deleted without its finalizer, a crash between create and the first status write of a
session deleted meanwhile, a pool force-deleted). The sweep goes over each gateway's cache
(already filtered by this instance's managed-by label, and listing every workspace of a
gateway that gives each namespace its own, each sandbox only where its namespace's may be:
no extra listing), and deletes,
unless they are younger than the grace period (their owner may not be visible yet):

- a session's sandbox whose session is gone or has another UID, or whose session records
  a pool sandbox instead (a cold create that lost a race with a claim during a leader
  handover), or, for a sandbox under a pool sandbox's name (the recreation of a claimed
  sandbox that was lost), whose session records another sandbox and no claim of it (a crash
  between that create and its status write, after which the session was placed elsewhere);
- a pool's sandbox whose pool is gone and that no session records as claimed (a live
  pool's sandboxes are its pass's business).

A candidate is confirmed with a read of its owner from the API before anything is
deleted, so an owner the watch has not delivered yet is safe.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from helmdeck_operator.core.naming import pool_of, sandbox_name, session_of
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.kube import POOLS, SESSIONS
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
            if sandbox.deleting:
                continue
            if sandbox.created_at is not None and now - sandbox.created_at < grace:
                continue
            whose = await _orphan_of(rt, sandbox)
            if whose is None:
                continue
            try:
                async with rt.mutation_slots[gateway]:
                    outcome = await cache.client.delete_sandbox(
                        sandbox.name, workspace=sandbox.workspace
                    )
            except GatewayError as err:
                cache.report(err)
                logger.warning("could not delete orphan %s/%s: %s", gateway, sandbox.name, err)
                continue
            cache.deleted(sandbox.workspace, sandbox.name, outcome.gone)
            where = f"{gateway}/{sandbox.workspace}/{sandbox.name}"
            logger.info("deleted orphan sandbox %s of %s", where, whose)
            deleted.append(f"{gateway}/{sandbox.name}")
    return deleted


async def _orphan_of(rt: Runtime, sandbox: models.Sandbox) -> str | None:
    """Whose orphan the sandbox is (for the log), or None when it is owned or not ours."""
    owner = session_of(sandbox.labels, sandbox.annotations)
    pool = pool_of(sandbox.labels, sandbox.annotations)
    namespace = (owner or pool or ("",))[0]
    if not namespace or (rt.config.namespaces and namespace not in rt.config.namespaces):
        return None  # not ours, or not this instance's namespaces
    if owner is not None:
        return await _session_orphan(rt, sandbox.name, *owner)
    assert pool is not None
    return await _pool_orphan(rt, sandbox.name, *pool)


async def _session_orphan(
    rt: Runtime, sandbox: str, namespace: str, name: str, uid: str
) -> str | None:
    known = rt.store.session(namespace, name)
    if known is None or known["metadata"]["uid"] != uid:
        known = await rt.kube.get(SESSIONS, namespace, name)
    if known is None or known["metadata"]["uid"] != uid:
        return f"vanished session {namespace}/{name} (uid {uid})"
    status = known.get("status") or {}
    claimed = (status.get("pool") or {}).get("sandbox")
    if claimed and claimed != sandbox:
        return f"session {namespace}/{name}, which runs pool sandbox {claimed} instead"
    runs = (status.get("sandbox") or {}).get("name")
    # The session's own name is never an orphan while it lives (a create whose status write
    # is still to come looks like this); a pool name is its only while it records it.
    if not claimed and runs and runs != sandbox and sandbox != sandbox_name(uid):
        return f"session {namespace}/{name}, which runs sandbox {runs} instead"
    return None


async def _pool_orphan(
    rt: Runtime, sandbox: str, namespace: str, name: str, uid: str
) -> str | None:
    known = rt.store.pool(namespace, name)
    if known is not None and known["metadata"]["uid"] == uid:
        return None
    if rt.claims(namespace, name).by_sandbox.get(sandbox) is not None:
        return None
    if rt.store.holder(namespace, sandbox) is not None:
        return None
    found = await rt.kube.get(POOLS, namespace, name)
    if found is not None and found["metadata"]["uid"] == uid:
        return None
    return f"vanished SessionPool {namespace}/{name} (uid {uid}), unclaimed"
