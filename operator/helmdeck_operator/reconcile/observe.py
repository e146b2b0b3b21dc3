"""What the gateway says about one session's sandbox, read from the gateway's cache.

A session pass and a policy fan-out both need the same observation: the sandbox, the
revision it has loaded, the newest one stored, and how a desired policy differs from the
one the sandbox started with. All of it comes from the `Cache`; the gateway is asked
only for what no cached record can say (the hash of a loaded version that a newer one
covered, the baseline policy of a sandbox created before this operator version, the
endpoints of a sandbox the operator never saw them for: `endpoints.known_endpoints`), each
at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from helmdeck_operator.core.naming import ANNOTATION_INITIAL_POLICY, LABEL_SESSION_UID
from helmdeck_operator.core.observation import policy_facts
from helmdeck_operator.core.plan import DesiredPolicy, Observed, PolicyProblem
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.policy.change import ChangeClass
from helmdeck_operator.reconcile.endpoints import known_endpoints
from helmdeck_operator.runtime import Cache, Runtime

__all__ = ["classify_for", "observe_sandbox"]


async def observe_sandbox(
    rt: Runtime,
    cache: Cache,
    workspace: str,
    name: str,
    uid: str,
    desired: DesiredPolicy | PolicyProblem,
    status: Mapping[str, Any],
) -> Observed:
    """The session's sandbox as the cache knows it (gateway errors become `error`)."""
    sandbox = cache.get(workspace, name)
    if sandbox is None:
        return Observed()
    if sandbox.labels.get(LABEL_SESSION_UID, uid) != uid:
        return Observed(sandbox=sandbox)  # another session's: nothing else of it matters
    try:
        urls, exposed = await known_endpoints(cache, sandbox, status)
        if urls != sandbox.service_urls:
            sandbox = replace(sandbox, service_urls=dict(urls))
        facts = policy_facts(sandbox, cache.remembered_load(workspace, name))
        active = facts.active_revision
        if facts.lookup_version:
            found = await cache.lookup_revision_hash(workspace, name, facts.lookup_version)
            active = f"sha256:{found}" if found else None
        obs = Observed(
            sandbox=sandbox, active_revision=active, latest=facts.latest, exposed=exposed
        )
        if (
            isinstance(desired, DesiredPolicy)
            and active not in (None, desired.revision)
            and (facts.latest is None or f"sha256:{facts.latest.hash}" != desired.revision)
        ):
            obs = replace(obs, change=await classify_for(rt, cache, sandbox, desired))
        return obs
    except GatewayError as err:
        cache.report(err)
        return Observed(error=str(err), error_reason=err.reason)


async def classify_for(
    rt: Runtime, cache: Cache, sandbox: models.Sandbox, desired: DesiredPolicy
) -> ChangeClass | None:
    """How `desired` differs from the policy the sandbox started with (its version 1,
    which OpenShell's live-change rules compare with); None when that is unknown."""
    revision = sandbox.annotations.get(ANNOTATION_INITIAL_POLICY, "")
    baseline = rt.baseline(revision) if revision else None
    if baseline is None:
        found = await cache.client.get_policy_status(sandbox.name, 1, workspace=sandbox.workspace)
        if found is None or found.revision.policy is None:
            return None
        revision, baseline = f"sha256:{found.revision.hash}", found.revision.policy
    return rt.classify(revision, baseline, desired)
