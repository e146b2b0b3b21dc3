"""A session's end (TTL and lease extensions) and idle clock, from spec, status and lease."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from helmdeck_operator.core.conditions import format_time
from helmdeck_operator.core.lifetime import idle_at, lifetime, parse_time
from helmdeck_operator.core.session import SessionMeta, SessionSpec
from tests.support.builders import NOW, UID

CREATED = NOW - timedelta(minutes=10)
META = SessionMeta(namespace="team", name="s", uid=UID, generation=1, created_at=CREATED)
MAX = timedelta(hours=4)


def spec(**lifetime: Any) -> SessionSpec:
    return SessionSpec.model_validate({"family": "browser", "lifetime": lifetime})


def at(minutes: float) -> str:
    """A status timestamp `minutes` after creation."""
    return format_time(CREATED + timedelta(minutes=minutes))


def test_the_ttl_alone_ends_the_session_at_creation_plus_ttl() -> None:
    ends = lifetime(spec(ttl="1h"), META, {}, MAX, NOW)

    assert ends.expires_at == CREATED + timedelta(hours=1)
    assert ends.extended_to is None
    assert ends.extension is None


def test_a_renewal_within_the_maximum_extends_the_end() -> None:
    ends = lifetime(spec(ttl="1h"), META, {"lease": {"expireTime": at(150)}}, MAX, NOW)

    assert ends.expires_at == CREATED + timedelta(minutes=150)
    assert ends.extended_to == CREATED + timedelta(minutes=150)
    assert ends.extension is not None
    assert (ends.extension.type, ends.extension.status, ends.extension.reason) == (
        "LifetimeExtended",
        "True",
        "Extended",
    )


def test_a_renewal_past_the_maximum_is_refused_and_the_granted_end_stays() -> None:
    status = {"extendedTo": at(150), "lease": {"expireTime": at(300)}}

    ends = lifetime(spec(ttl="1h"), META, status, MAX, NOW)

    assert ends.expires_at == CREATED + timedelta(minutes=150)
    assert ends.extended_to == CREATED + timedelta(minutes=150)
    assert ends.extension is not None
    assert (ends.extension.status, ends.extension.reason) == ("False", "ExtensionRefused")
    assert f"maximum lifetime, which ends at {at(240)}" in ends.extension.message
    assert f"still expires at {at(150)}" in ends.extension.message


def test_a_renewal_exactly_at_the_maximum_is_granted() -> None:
    ends = lifetime(spec(ttl="1h"), META, {"lease": {"expireTime": at(240)}}, MAX, NOW)

    assert ends.expires_at == CREATED + MAX


def test_an_earlier_end_never_shortens_the_lifetime() -> None:
    status = {"extendedTo": at(150), "lease": {"expireTime": at(30)}}

    ends = lifetime(spec(ttl="1h"), META, status, MAX, NOW)

    assert ends.expires_at == CREATED + timedelta(minutes=150)
    assert ends.extension is not None
    assert ends.extension.status == "True"


def test_a_session_without_a_ttl_has_nothing_to_extend() -> None:
    ends = lifetime(spec(), META, {"lease": {"expireTime": at(60)}}, MAX, NOW)

    assert ends.expires_at is None
    assert ends.extension is not None
    assert ends.extension.reason == "ExtensionRefused"
    assert "no lifetime.ttl" in ends.extension.message


def test_a_longer_ttl_than_the_granted_end_wins() -> None:
    ends = lifetime(spec(ttl="3h"), META, {"extendedTo": at(90)}, MAX, NOW)

    assert ends.expires_at == CREATED + timedelta(hours=3)


def test_the_idle_clock_starts_at_the_first_ready() -> None:
    idle = spec(idleTimeout="5m")

    assert lifetime(idle, META, {}, MAX, NOW).activity is None
    assert lifetime(idle, META, {"lease": {"renewTime": at(9)}}, MAX, NOW).activity is None
    ready = lifetime(idle, META, {"readyAt": at(1)}, MAX, NOW)
    assert ready.activity == CREATED + timedelta(minutes=1)
    assert ready.idle_timeout == timedelta(minutes=5)
    assert ready.on_idle == "Suspend"


@pytest.mark.parametrize(
    ("status", "latest"),
    [
        ({"readyAt": at(1), "lastActivityAt": at(4)}, 4),
        ({"readyAt": at(1), "lastActivityAt": at(4), "lease": {"renewTime": at(7)}}, 7),
        ({"readyAt": at(1), "lastActivityAt": at(8), "lease": {"renewTime": at(7)}}, 8),
        ({"readyAt": at(1), "lease": {"renewTime": "not a time"}}, 1),
    ],
    ids=["recorded", "renewed", "renewal-older", "renewal-garbled"],
)
def test_activity_is_the_latest_of_ready_recorded_and_renewed(
    status: dict[str, Any], latest: float
) -> None:
    ends = lifetime(spec(idleTimeout="5m"), META, status, MAX, NOW)

    assert ends.activity == CREATED + timedelta(minutes=latest)


def test_a_renewal_dated_in_the_future_counts_as_now() -> None:
    status = {"readyAt": at(1), "lease": {"renewTime": at(600)}}

    assert lifetime(spec(idleTimeout="5m"), META, status, MAX, NOW).activity == NOW


def test_idle_at_is_activity_plus_timeout_when_both_are_known() -> None:
    assert idle_at(NOW, timedelta(minutes=5)) == NOW + timedelta(minutes=5)
    assert idle_at(None, timedelta(minutes=5)) is None
    assert idle_at(NOW, None) is None


@pytest.mark.parametrize("value", [None, "", 5, "yesterday"])
def test_parse_time_reads_only_rfc3339(value: Any) -> None:
    assert parse_time(value) is None


def test_parse_time_reads_the_kubernetes_form() -> None:
    assert parse_time(format_time(NOW)) == NOW
