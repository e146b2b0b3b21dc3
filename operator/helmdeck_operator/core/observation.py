"""What a sandbox, as its gateway reports it, says about the policy it runs.

The gateway's sandbox record carries everything a reconcile needs about policy, without a
call per question: `current_policy_version` (the newest version the sandbox has LOADED)
and `configuration_admission` (the newest stored version, its hash and whether the
supervisor accepted, is loading or rejected it). Only the *hash* of the loaded version is
missing once a newer version is stored on top of it; the gateway cache remembers the last
accepted (version, hash) it saw, the sandbox carries the revision it was created with as an
annotation, and only when neither answers does the caller ask the gateway
(`PolicyFacts.lookup_version`). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from helmdeck_operator.core.naming import ANNOTATION_INITIAL_POLICY
from helmdeck_operator.gateway import models as gw

__all__ = ["PolicyFacts", "loaded_pair", "policy_facts"]

_LOAD_STATE = {
    gw.AdmissionState.PENDING: gw.PolicyLoadState.PENDING,
    gw.AdmissionState.ACCEPTED: gw.PolicyLoadState.LOADED,
    gw.AdmissionState.REJECTED: gw.PolicyLoadState.FAILED,
}


@dataclass(frozen=True)
class PolicyFacts:
    active_revision: str | None
    """`sha256:<hex>` of the version the sandbox has loaded; None when none is, or when its
    hash is not known here (then `lookup_version` says which version to ask about)."""
    latest: gw.PolicyRevision | None
    """The newest stored revision: version, hash, load state and load error."""
    lookup_version: int = 0
    """A loaded version whose hash only the gateway can tell (0: nothing to look up)."""


def loaded_pair(sandbox: gw.Sandbox) -> tuple[int, str] | None:
    """(version, hash) the supervisor has accepted, if the record says so; worth keeping,
    since a later record stops saying it once a newer version is stored."""
    admission = sandbox.admission
    if (
        admission is not None
        and admission.state is gw.AdmissionState.ACCEPTED
        and admission.policy_version == sandbox.current_policy_version
        and admission.policy_hash
    ):
        return admission.policy_version, admission.policy_hash
    return None


def policy_facts(sandbox: gw.Sandbox, remembered: tuple[int, str] | None = None) -> PolicyFacts:
    """The loaded and the newest revision of `sandbox`; `remembered` is the last
    (version, hash) seen accepted on it."""
    admission = sandbox.admission
    latest = None
    if admission is not None and admission.policy_version:
        latest = gw.PolicyRevision(
            version=admission.policy_version,
            hash=admission.policy_hash,
            status=_LOAD_STATE.get(admission.state, gw.PolicyLoadState.UNSPECIFIED),
            load_error=admission.error,
        )
    current = sandbox.current_policy_version
    if current <= 0:
        return PolicyFacts(None, latest)
    pair = loaded_pair(sandbox) or remembered
    if pair is not None and pair[0] == current:
        return PolicyFacts(f"sha256:{pair[1]}", latest)
    initial = sandbox.annotations.get(ANNOTATION_INITIAL_POLICY)
    if current == 1 and initial:
        return PolicyFacts(initial, latest)
    return PolicyFacts(None, latest, lookup_version=current)
