"""Endpoints the gateway would find ambiguous are refused by the policy model at
spec.network, and the host and path overlap it rests on."""

from __future__ import annotations

from typing import Any

import pytest

from helmdeck_operator.policy import errors, model
from helmdeck_operator.policy.ambiguity import hosts_overlap, paths_overlap
from tests.support.policies import rest, rule


def two(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """A spec with rule a holding `left` and rule b holding `right`."""
    return {"network": [rule("a", left), rule("b", right)]}


@pytest.mark.parametrize(
    ("left", "right", "says"),
    [
        (rest(tls="skip"), rest(), "tls (skip on one only)"),
        (rest(host="*.example.com", allowedIps=["10.0.0.0/8"]), rest(), "allowedIps"),
        (rest(path="/v1/*", enforcement="enforce"), rest(path="/v1/*"), "enforcement"),
        (rest(path="/ws"), rest(protocol="websocket", path="/w*s"), "protocol"),
    ],
)
def test_endpoints_that_meet_and_disagree_are_refused(
    left: dict[str, Any], right: dict[str, Any], says: str
) -> None:
    with pytest.raises(errors.PolicyValidationError) as caught:
        model.parse_spec(two(left, right))
    (issue,) = caught.value.issues
    assert issue.path == "spec.network"
    assert (
        "rule a endpoint 0 (api.example.com)" in issue.message
        or "rule a endpoint 0" in issue.message
    )
    assert f"disagree on {says}" in issue.message


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (rest(tls="skip"), rest(port=8443)),
        (rest(host="*.example.com", tls="skip"), rest(host="a.b.example.com")),
        (rest(path="/v1/admin/*", enforcement="enforce"), rest(path="/v1/*")),
        (rest(path="/a/*", protocol="websocket"), rest(path="/b/*")),
        (rest(enforcement="enforce"), rest(enforcement="enforce", path="/x")),
    ],
)
def test_endpoints_that_never_disagree_are_accepted(
    left: dict[str, Any], right: dict[str, Any]
) -> None:
    model.parse_spec(two(left, right))


@pytest.mark.parametrize(
    ("left", "right", "meet"),
    [
        ("api.example.com", "api.example.com", True),
        ("*.example.com", "*.example.com", True),
        ("**.example.com", "**.example.com", True),
        ("api.example.com", "*.example.com", True),
        ("a.api.example.com", "*.example.com", False),
        ("a.api.example.com", "**.example.com", True),
        ("example.com", "**.example.com", False),
        ("*.api.example.com", "**.example.com", True),
        ("*.example.com", "**.api.example.com", False),
        ("**.a.example.com", "**.b.example.com", False),
        ("**.xa.com", "**.a.com", False),
        ("*.a.com", "*.b.com", False),
    ],
)
def test_host_overlap(left: str, right: str, meet: bool) -> None:
    assert hosts_overlap(left, right) is meet
    assert hosts_overlap(right, left) is meet


@pytest.mark.parametrize(
    ("left", "right", "meet"),
    [
        (None, "/a", True),
        ("/**", "/a", True),
        ("/v1/*", "/v1/admin/users", True),
        ("/v1/*", "/v2/*", False),
        ("/a?c", "/abc", True),
        ("/a[bc]d", "/acd", True),
        ("/x*y", "/x", False),
        ("/" + "a" * 1000, "/" + "a" * 999 + "*", True),
    ],
)
def test_path_overlap(left: str | None, right: str, meet: bool) -> None:
    assert paths_overlap(left, right) is meet
    assert paths_overlap(right, left) is meet
