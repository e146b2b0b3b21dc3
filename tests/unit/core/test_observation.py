"""What a cached sandbox record says about its policy: loaded and newest revision."""

from __future__ import annotations

from helmdeck_operator.core.naming import ANNOTATION_INITIAL_POLICY
from helmdeck_operator.core.observation import loaded_pair, policy_facts
from helmdeck_operator.gateway import models as gw
from tests.support.builders import HEX_A, HEX_B, sandbox


def admission(
    state: gw.AdmissionState, version: int, digest: str, error: str = ""
) -> gw.PolicyAdmission:
    return gw.PolicyAdmission(state, version, digest, error)


def test_an_accepted_newest_version_is_the_loaded_one() -> None:
    record = sandbox(
        current_policy_version=2, admission=admission(gw.AdmissionState.ACCEPTED, 2, HEX_A)
    )

    facts = policy_facts(record)

    assert facts.active_revision == f"sha256:{HEX_A}"
    assert facts.latest == gw.PolicyRevision(2, HEX_A, gw.PolicyLoadState.LOADED)
    assert facts.lookup_version == 0
    assert loaded_pair(record) == (2, HEX_A)


def test_a_pending_newer_version_hides_the_loaded_hash_unless_remembered() -> None:
    record = sandbox(
        current_policy_version=2, admission=admission(gw.AdmissionState.PENDING, 3, HEX_B)
    )

    unknown = policy_facts(record)
    assert unknown.active_revision is None
    assert unknown.lookup_version == 2  # only the gateway can tell, once
    assert unknown.latest == gw.PolicyRevision(3, HEX_B, gw.PolicyLoadState.PENDING)
    assert loaded_pair(record) is None

    remembered = policy_facts(record, remembered=(2, HEX_A))
    assert (remembered.active_revision, remembered.lookup_version) == (f"sha256:{HEX_A}", 0)
    stale = policy_facts(record, remembered=(1, HEX_A))  # another version: not proof
    assert stale.lookup_version == 2


def test_version_one_is_named_by_the_initial_policy_annotation() -> None:
    record = sandbox(
        current_policy_version=1,
        admission=admission(gw.AdmissionState.REJECTED, 2, HEX_B, "proxy refused"),
        annotations={ANNOTATION_INITIAL_POLICY: f"sha256:{HEX_A}"},
    )

    facts = policy_facts(record)

    assert facts.active_revision == f"sha256:{HEX_A}"
    assert facts.latest == gw.PolicyRevision(2, HEX_B, gw.PolicyLoadState.FAILED, "proxy refused")


def test_nothing_loaded_yet() -> None:
    record = sandbox(
        current_policy_version=0, admission=admission(gw.AdmissionState.PENDING, 1, HEX_A)
    )

    facts = policy_facts(record, remembered=(1, HEX_A))

    assert facts.active_revision is None
    assert facts.lookup_version == 0
    assert facts.latest is not None
    assert facts.latest.status is gw.PolicyLoadState.PENDING


def test_a_sandbox_without_any_policy_has_no_revisions() -> None:
    facts = policy_facts(sandbox(current_policy_version=0))
    assert (facts.active_revision, facts.latest, facts.lookup_version) == (None, None, 0)
