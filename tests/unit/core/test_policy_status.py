"""`report_policy`: a SidecarPolicy's status from its spec and its bound sessions.

Uses the shipped family policies as real specs. `loaded` must mean what the gateway
reports loaded (the session's status.policy.revision), not what was sent.
"""

from __future__ import annotations

import copy
from typing import Any

from helmdeck_operator.core.policy_status import PolicyReport, report_policy, tally
from helmdeck_operator.desired import resolve
from helmdeck_operator.policy import revision, translate
from helmdeck_operator.policy.guard import EgressGuard
from tests.support import policies
from tests.support.builders import NOW, later
from tests.support.policies import family_spec


def revision_of(spec: dict[str, Any]) -> str:
    return revision.revision(translate.to_sandbox_policy(spec))


def report(
    spec: dict[str, Any],
    bound: list[dict[str, Any]],
    old: dict[str, Any] | None = None,
    generation: int = 1,
) -> PolicyReport:
    return report_policy(
        resolve("p", spec, EgressGuard()), generation, tally(bound), old or {}, NOW
    )


def loaded(rev: str) -> dict[str, Any]:
    return {"revision": rev, "desiredRevision": rev, "state": "Loaded"}


def pending(rev: str, old_rev: str = "sha256:" + "0" * 64) -> dict[str, Any]:
    return {"revision": old_rev, "desiredRevision": rev, "state": "Pending"}


def refused(rev: str) -> dict[str, Any]:
    return {"revision": "sha256:" + "0" * 64, "desiredRevision": rev, "state": "Failed"}


def conditions(result: PolicyReport) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in result.status["conditions"]}


def invalid_spec() -> dict[str, Any]:
    spec = copy.deepcopy(family_spec("node"))
    spec["network"][0]["endpoints"][0]["port"] = 70000
    return spec


def test_a_valid_spec_reports_its_revision(family: str) -> None:
    spec = family_spec(family)

    result = report(spec, [])

    assert result.revision == revision_of(spec)
    assert result.status["revision"] == result.revision
    assert result.revision.startswith("sha256:")
    assert conditions(result)["Valid"] == ("True", "Translated")
    assert result.status["observedGeneration"] == 1


def test_a_policy_without_sessions_is_applied_and_settled() -> None:
    result = report(family_spec("node"), [])

    assert conditions(result)["Applied"] == ("True", "NoSessions")
    assert result.status["sessions"] == {"bound": 0, "loaded": 0, "pending": 0, "failed": 0}
    assert result.settled
    assert result.events == ()


def test_sessions_are_counted_by_what_the_gateway_reports() -> None:
    spec = family_spec("node")
    rev = revision_of(spec)

    result = report(spec, [loaded(rev), loaded(rev), pending(rev), refused(rev), {}])

    assert result.status["sessions"] == {"bound": 5, "loaded": 2, "pending": 2, "failed": 1}


def test_a_session_still_on_another_revision_is_pending_not_loaded() -> None:
    spec = family_spec("node")

    result = report(spec, [loaded("sha256:" + "0" * 64)])

    assert result.status["sessions"]["loaded"] == 0
    assert result.status["sessions"]["pending"] == 1


def test_a_refusal_of_an_older_revision_is_not_counted_as_failed() -> None:
    spec = family_spec("node")

    result = report(spec, [refused("sha256:" + "0" * 64)])

    assert result.status["sessions"]["failed"] == 0
    assert result.status["sessions"]["pending"] == 1


def test_progress_is_reported_while_sessions_load() -> None:
    spec = family_spec("node")
    rev = revision_of(spec)

    result = report(spec, [loaded(rev), pending(rev)])

    assert conditions(result)["Applied"] == ("False", "Progressing")
    assert "1 of 2 bound sessions have loaded" in result.status["conditions"][1]["message"]
    assert not result.settled
    assert result.events == ()


def test_all_sessions_loaded_is_applied_with_one_event() -> None:
    spec = family_spec("node")
    rev = revision_of(spec)

    first = report(spec, [loaded(rev), loaded(rev)])
    again = report(spec, [loaded(rev), loaded(rev)], old=first.status)

    assert conditions(first)["Applied"] == ("True", "Loaded")
    assert first.settled
    assert [(e.type, e.reason) for e in first.events] == [("Normal", "Applied")]
    assert rev in first.events[0].message
    assert again.events == ()


def test_applied_is_announced_again_for_a_new_revision() -> None:
    node, python = family_spec("node"), family_spec("python")
    before = report(node, [loaded(revision_of(node))])

    after = report(python, [loaded(revision_of(python))], old=before.status)

    assert [e.reason for e in after.events] == ["Applied"]


def test_refused_sessions_are_reported_with_one_warning() -> None:
    spec = family_spec("node")
    rev = revision_of(spec)

    first = report(spec, [loaded(rev), refused(rev)])
    again = report(spec, [loaded(rev), refused(rev)], old=first.status)

    assert conditions(first)["Applied"] == ("False", "SessionsRefused")
    assert "1 of 2 bound sessions could not load" in first.status["conditions"][1]["message"]
    assert first.settled
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "SessionsRefused")]
    assert again.events == ()


def test_an_invalid_spec_names_the_field_and_warns_once() -> None:
    spec = invalid_spec()

    first = report(spec, [])
    again = report(spec, [], old=first.status)

    assert first.revision is None
    assert first.status["revision"] is None
    assert conditions(first) == {"Valid": ("False", "Invalid"), "Applied": ("False", "Invalid")}
    assert "spec.network[0].endpoints[0].port" in first.status["conditions"][0]["message"]
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "Invalid")]
    assert "spec.network[0].endpoints[0].port" in first.events[0].message
    assert again.events == ()


def test_a_policy_the_gateway_would_find_ambiguous_is_invalid_before_any_session_uses_it() -> None:
    endpoint = {"host": "api.example.com", "port": 443, "protocol": "rest", "access": "full"}
    spec = {
        "network": [
            {"name": "a", "endpoints": [endpoint]},
            {"name": "b", "endpoints": [{**endpoint, "tls": "skip"}]},
        ]
    }

    result = report(spec, [])

    assert conditions(result)["Valid"] == ("False", "Invalid")
    message = result.status["conditions"][0]["message"]
    assert "spec.network" in message
    assert "disagree on tls" in message


def test_a_different_problem_in_an_invalid_spec_warns_again() -> None:
    first = report(invalid_spec(), [])
    worse = invalid_spec()
    worse["network"][0]["endpoints"][0]["host"] = ""

    again = report(worse, [], old=first.status)

    assert [e.reason for e in again.events] == ["Invalid"]


def test_an_invalid_spec_counts_no_session_as_loaded() -> None:
    rev = revision_of(family_spec("node"))

    result = report(invalid_spec(), [loaded(rev)])

    assert result.status["sessions"] == {"bound": 1, "loaded": 0, "pending": 1, "failed": 0}


def test_an_invalid_spec_leaves_nothing_to_wait_for() -> None:
    """Sessions keep their loaded policy; polling them cannot make the spec valid."""
    rev = revision_of(family_spec("node"))

    assert report(invalid_spec(), [loaded(rev)]).settled


def test_fixing_an_invalid_spec_makes_it_valid_again() -> None:
    broken = report(invalid_spec(), [])

    fixed = report(family_spec("node"), [], old=broken.status, generation=2)

    assert conditions(fixed)["Valid"] == ("True", "Translated")
    assert all(c["observedGeneration"] == 2 for c in fixed.status["conditions"])
    assert fixed.events == ()


def test_unchanged_conditions_keep_their_transition_time() -> None:
    spec = family_spec("node")
    first = report(spec, [])

    again = report_policy(resolve("p", spec, EgressGuard()), 1, tally([]), first.status, later(60))

    assert again.status["conditions"] == first.status["conditions"]


def test_static_changes_setting_does_not_change_the_revision() -> None:
    spec = family_spec("node")
    other = dict(spec, staticChanges="Recreate")

    assert report(other, []).revision == report(spec, []).revision


# -- the egress guard --------------------------------------------------------------------

SERVICES = EgressGuard.build(service_cidrs=["10.96.0.0/12"], hosts=["metadata.google.internal"])


def wide_spec(host: str = "internal.example.com") -> dict[str, Any]:
    return policies.with_endpoint(
        host=host, protocol="rest", access="read-only", allowedIps=["10.0.0.0/8"]
    )


def test_the_status_carries_the_guard_summary_and_each_narrowing() -> None:
    result = report_policy(resolve("p", wide_spec(), SERVICES), 1, tally([]), {}, NOW)

    assert conditions(result)["Valid"] == ("True", "Translated")
    assert result.status["egressGuard"] == {
        "cidrs": 3,
        "hosts": 1,
        "exemptions": 0,
        "narrowed": [
            {
                "field": "spec.network[0].endpoints[0].allowedIps[0]",
                "entry": "10.0.0.0/8",
                "kept": ["10.0.0.0/10", "10.64.0.0/11", "10.112.0.0/12", "10.128.0.0/9"],
                "guard": ["10.96.0.0/12 (serviceCidrs)"],
            }
        ],
    }
    guarded = translate.to_guarded_policy(wide_spec(), SERVICES).policy
    assert result.revision == revision.revision(guarded)  # the revision of what is sent
    assert result.revision != revision_of(wide_spec())


def test_a_policy_the_guard_refuses_is_not_valid_and_names_the_field() -> None:
    spec = wide_spec(host="metadata.google.internal")

    first = report_policy(resolve("p", spec, SERVICES), 1, tally([{}]), {}, NOW)
    again = report_policy(resolve("p", spec, SERVICES), 1, tally([{}]), first.status, NOW)

    assert conditions(first) == {
        "Valid": ("False", "EgressGuarded"),
        "Applied": ("False", "EgressGuarded"),
    }
    valid = first.status["conditions"][0]["message"]
    assert "spec.network[0].endpoints[0].host: metadata.google.internal is" in valid
    assert (first.revision, first.status["egressGuard"]) == (None, None)
    assert first.settled  # nothing is sent, so nothing to wait for
    assert [(e.type, e.reason, e.message) for e in first.events] == [
        ("Warning", "EgressGuarded", valid)
    ]
    assert again.events == ()
