"""Where a session's sandbox comes from: its own create, or a claim on its SessionPool.

A session without spec.poolRef always runs the sandbox named after its UID. One with a
pool runs the sandbox its pool gave it, found in this order (the first that answers wins,
so a restart anywhere in between finds the same answer):

1. its own status (`status.pool`: the claimed sandbox, or why it was created cold);
2. the pool's status.claims (the claim was recorded; the session's status not yet);
3. the pool's answer held in memory (until the status records it);
4. no pool of that name: cold, PoolNotFound;
5. a sandbox of its own name on the gateway (it was created cold; a restart lost the
   answer before the status said so: the reason is on the sandbox);
6. otherwise it asks the pool and waits: the pool pass answers every waiting session at
   once and wakes them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from helmdeck_operator.core.naming import ANNOTATION_POOL_FALLBACK, sandbox_name
from helmdeck_operator.core.plan import DesiredPolicy, PolicyProblem, PoolPlacement
from helmdeck_operator.core.pool import ClaimRequest
from helmdeck_operator.core.session import SessionMeta, SessionSpec
from helmdeck_operator.reconcile.workspaces import sandbox_workspace
from helmdeck_operator.runtime import Cache, Key, Kind, Runtime
from helmdeck_operator.vocabulary import ConditionType, Reason

__all__ = ["claimed_sandbox", "place", "pool_key"]

#: The reasons a pool's answer sends a session to a cold create.
FALLBACKS = frozenset(
    {
        Reason.POOL_EMPTY,
        Reason.POOL_SHAPE_MISMATCH,
        Reason.POOL_POLICY_NOT_LIVE,
        Reason.POOL_NOT_FOUND,
    }
)


def pool_key(namespace: str, spec: SessionSpec) -> Key | None:
    """The reconcile key of the session's pool, if it names one."""
    ref = spec.pool_ref
    return Key(Kind.POOL, namespace, ref.name) if ref is not None else None


def claimed_sandbox(
    rt: Runtime, meta: SessionMeta, spec: SessionSpec, status: Mapping[str, Any]
) -> str | None:
    """The pool sandbox the session holds, as recorded by itself or by its pool."""
    if spec.pool_ref is None:
        return None
    recorded = (status.get("pool") or {}).get("sandbox")
    if recorded:
        return str(recorded)
    claim = rt.claims(meta.namespace, spec.pool_ref.name).by_uid.get(meta.uid)
    return claim.sandbox if claim is not None else None


def place(
    rt: Runtime,
    cache: Cache | None,
    key: Key,
    meta: SessionMeta,
    spec: SessionSpec,
    status: Mapping[str, Any],
    desired: DesiredPolicy | PolicyProblem,
    request: ClaimRequest,
) -> PoolPlacement | None:
    """What the session's pool answered (see the module docstring); None without a pool.
    `request` is what the session would ask its pool; `cache` is None while the gateway's
    sandboxes are not known (down, not listed yet): then it asks nothing and waits."""
    ref = spec.pool_ref
    if ref is None:
        return None
    recorded = status.get("pool") or {}
    if recorded.get("sandbox"):
        return PoolPlacement(
            ref.name, sandbox=str(recorded["sandbox"]), claimed_at=recorded.get("claimedAt")
        )
    if recorded.get("fallback"):
        return PoolPlacement(
            ref.name, fallback=_fallback(recorded["fallback"]), message=_said(status)
        )
    claim = rt.claims(meta.namespace, ref.name).by_uid.get(meta.uid)
    if claim is not None:
        return PoolPlacement(ref.name, sandbox=claim.sandbox, claimed_at=claim.claimed_at)
    refusal = rt.pools.refusals.get(meta.uid)
    if refusal is not None:
        return PoolPlacement(ref.name, fallback=refusal.reason, message=refusal.message)
    where = Key(Kind.POOL, meta.namespace, ref.name)
    if rt.pool_body(where) is None:
        return PoolPlacement(
            ref.name,
            fallback=Reason.POOL_NOT_FOUND,
            message=f"SessionPool {meta.namespace}/{ref.name} does not exist",
        )
    if cache is None:
        return PoolPlacement(ref.name)
    own_name = sandbox_name(meta.uid)
    own = cache.get(sandbox_workspace(cache, meta.namespace, own_name, status), own_name)
    if own is not None:
        return PoolPlacement(
            ref.name,
            fallback=_fallback(own.annotations.get(ANNOTATION_POOL_FALLBACK)),
            message=f"sandbox {own.name} was created cold before the operator restarted",
        )
    if isinstance(desired, DesiredPolicy):
        # A session whose policy is missing or invalid asks nothing: it cannot run anywhere.
        rt.pools.ask((where.namespace, where.name), key, request, desired, time.monotonic())
        rt.queue.add(where)
    return PoolPlacement(ref.name)


def _fallback(value: object) -> Reason:
    """A recorded cold-create reason; PoolEmpty for one this version does not write."""
    try:
        reason = Reason(str(value))
    except ValueError:
        return Reason.POOL_EMPTY
    return reason if reason in FALLBACKS else Reason.POOL_EMPTY


def _said(status: Mapping[str, Any]) -> str:
    """The message the PoolClaimed condition already shows."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == ConditionType.POOL_CLAIMED:
            return str(condition.get("message", ""))
    return ""
