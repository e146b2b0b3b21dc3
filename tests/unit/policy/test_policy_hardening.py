"""The policy model refuses every value the apiserver refuses as not what it claims to be
(issue 14, item 4), at the same field and in the same words, and admits the same edge cases:
the table is tests/support/hardening.py, which tests/integration/test_admission.py runs on
the real apiserver."""

from __future__ import annotations

import re
from typing import Any

import pytest

from helmdeck_operator.policy import errors, model
from tests.support.hardening import ADMITTED, REFUSED, Refusal


@pytest.mark.parametrize("refusal", REFUSED, ids=lambda r: r.id)
def test_the_model_refuses_what_admission_refuses(refusal: Refusal) -> None:
    with pytest.raises(errors.PolicyValidationError) as caught:
        model.parse_spec(refusal.spec)

    reported = {issue.path: issue.message for issue in caught.value.issues}
    assert refusal.field in reported, reported
    assert refusal.says in reported[refusal.field]


@pytest.mark.parametrize("spec", ADMITTED.values(), ids=list(ADMITTED))
def test_the_model_admits_what_admission_admits(spec: dict[str, Any]) -> None:
    model.parse_spec(spec)


@pytest.mark.parametrize(
    ("read_only", "read_write", "overlap"),
    [
        ("/data", "/data", True),
        ("/data/x", "/data", True),
        ("/data/x/y", "/data", True),
        ("/data2", "/data", False),
        ("/dat", "/data", False),
        ("/data", "/data/x", False),  # a writable carve-out under a readable tree
        ("/", "/tmp", False),
    ],
)
def test_a_read_only_path_is_writable_exactly_when_it_is_under_a_read_write_one(
    read_only: str, read_write: str, overlap: bool
) -> None:
    spec = {"filesystem": {"readOnly": [read_only], "readWrite": [read_write]}}
    issues: tuple[errors.Issue, ...] = ()
    try:
        model.parse_spec(spec)
    except errors.PolicyValidationError as exc:
        issues = exc.issues

    assert [issue.path for issue in issues] == (["spec.filesystem.readWrite"] if overlap else [])


@pytest.mark.parametrize("spelling", ["0", "00", "+0", "-0", "0x0", " 0", "0.0", "0e0", "root"])
def test_root_is_refused_however_it_is_spelled(spelling: str) -> None:
    for field in ("runAsUser", "runAsGroup"):
        with pytest.raises(errors.PolicyValidationError):
            model.parse_spec({"process": {field: spelling}})


#: Where a second rule's message about the same value would start, once joined by "; ".
_ANOTHER_RULE = re.compile(r"; (host|path|allowedIps entr\w+|runAs\w+) ")


@pytest.mark.parametrize("refusal", REFUSED, ids=lambda r: r.id)
def test_each_mistake_gives_one_message(refusal: Refusal) -> None:
    """The rules are guarded so that a value breaking one is not also reported under another
    (as the CRD's rules are): one issue, and one rule's message in it."""
    with pytest.raises(errors.PolicyValidationError) as caught:
        model.parse_spec(refusal.spec)

    (issue,) = caught.value.issues
    assert not _ANOTHER_RULE.search(issue.message), issue.message
