"""ocsf.py: which gateway log lines are policy denials, and how repeats become few Events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from helmdeck_operator.gateway.models import LogLine
from helmdeck_operator.observability.ocsf import Aggregator, Denial, parse_denial


def line(
    fields: Mapping[str, str] | None = None,
    *,
    message: str = "",
    level: str = "OCSF",
    sandbox_id: str = "sb-1",
) -> LogLine:
    return LogLine(
        sandbox_id=sandbox_id,
        time=None,
        level=level,
        target="ocsf",
        message=message,
        source="sandbox",
        fields=dict(fields or {}),
    )


FLAT = {
    "class_uid": "4001",
    "action": "Denied",
    "dst_host": "evil.example.com",
    "dst_port": "443",
    "rule": "default-deny",
}


# -- parse_denial -------------------------------------------------------------------------


def test_flat_fields() -> None:
    assert parse_denial(line(FLAT, message="NET:DENIED [HIGH] egress blocked")) == Denial(
        sandbox_id="sb-1", activity="network", target="evil.example.com:443", rule="default-deny"
    )


def test_dotted_ocsf_fields_and_a_blocked_disposition() -> None:
    fields = {
        "class_uid": "4002",
        "disposition": "Blocked",
        "dst_endpoint.hostname": "api.example.com",
        "dst_endpoint.port": "8443",
        "firewall_rule.name": "no-writes",
    }
    assert parse_denial(line(fields)) == Denial("sb-1", "http", "api.example.com:8443", "no-writes")


def test_json_message_takes_the_sandbox_id_from_metadata_uid() -> None:
    event: dict[str, Any] = {
        "class_uid": 4007,
        "action": "Denied",
        "dst_endpoint": {"ip": "10.0.0.9", "port": 22},
        "firewall_rule": {"name": "ssh-off"},
        "metadata": {"uid": "sb-from-json", "version": "1.8.0"},
    }
    denial = parse_denial(line(message=json.dumps(event), sandbox_id=""))
    assert denial == Denial("sb-from-json", "ssh", "10.0.0.9:22", "ssh-off")


def test_the_line_sandbox_id_wins_over_metadata_uid() -> None:
    event = {"class_uid": 4001, "action": "Denied", "metadata": {"uid": "other"}}
    denial = parse_denial(line(message=json.dumps(event), sandbox_id="sb-1"))
    assert denial is not None
    assert denial.sandbox_id == "sb-1"


def test_a_message_that_only_looks_like_json_falls_back_to_fields() -> None:
    denial = parse_denial(line(FLAT, message="{not json"))
    assert denial is not None
    assert denial.target == "evil.example.com:443"


def test_process_denial_names_the_executable() -> None:
    fields = {"class_uid": "1007", "action": "deny", "process.file.path": "/usr/bin/nc"}
    assert parse_denial(line(fields)) == Denial("sb-1", "process", "/usr/bin/nc", "")


def test_host_without_port_and_no_destination_at_all() -> None:
    hostonly = parse_denial(line({"class_uid": "4001", "action": "Denied", "dst_host": "a.b"}))
    nothing = parse_denial(line({"class_uid": "4001", "action": "Denied"}))
    assert hostonly is not None
    assert hostonly.target == "a.b"
    assert nothing is not None
    assert nothing.target == "unknown destination"


def test_detection_finding_is_a_denial_whatever_its_action() -> None:
    fields = {"class_uid": "2004", "dst_host": "exfil.example.com", "policy": "dlp"}
    assert parse_denial(line(fields)) == Denial(
        "sb-1", "detection finding", "exfil.example.com", "dlp"
    )


@pytest.mark.parametrize(
    ("fields", "level"),
    [
        pytest.param({**FLAT, "action": "Allowed"}, "OCSF", id="allowed action"),
        pytest.param({**FLAT, "action": "", "disposition": "Allowed"}, "OCSF", id="allowed"),
        pytest.param(FLAT, "INFO", id="not an OCSF level"),
        pytest.param(FLAT, "WARN", id="a warning about a denial is not the event"),
        pytest.param(
            {"class_uid": "5019", "policy_version": "2"}, "OCSF", id="config state change"
        ),
        pytest.param({**FLAT, "class_uid": "5019"}, "OCSF", id="config change saying denied"),
        pytest.param({"action": "Denied"}, "OCSF", id="no class"),
    ],
)
def test_non_denials(fields: Mapping[str, str], level: str) -> None:
    assert parse_denial(line(fields, level=level)) is None


def test_the_level_is_matched_case_insensitively() -> None:
    assert parse_denial(line(FLAT, level="ocsf")) is not None


def test_describe() -> None:
    assert Denial("sb", "network", "h:1", "r").describe() == (
        "network to h:1 denied by the sandbox policy (rule r)"
    )
    assert Denial("sb", "network", "h:1", "").describe() == (
        "network to h:1 denied by the sandbox policy"
    )


# -- Aggregator ---------------------------------------------------------------------------

A = Denial("sb-1", "network", "a.example.com:443", "r")
B = Denial("sb-1", "network", "b.example.com:443", "r")
C = Denial("sb-1", "process", "/bin/sh", "")


def test_the_first_of_a_kind_is_posted_at_once_and_repeats_are_counted() -> None:
    agg = Aggregator(window=60)
    assert agg.add(A, now=100.0) == A.describe()
    assert agg.add(A, now=101.0) is None
    assert agg.add(A, now=102.0) is None
    assert agg.add(B, now=103.0) == B.describe()  # another kind is news
    assert agg.seen == {A: 3, B: 1}


def test_nothing_is_flushed_before_the_window_ends() -> None:
    agg = Aggregator(window=60)
    agg.add(A, now=100.0)
    agg.add(A, now=101.0)
    assert agg.flush(now=159.9) == []
    assert agg.seen == {A: 2}  # still counting


def test_after_the_window_one_summary_per_repeated_kind() -> None:
    agg = Aggregator(window=60)
    for _ in range(21):
        agg.add(A, now=100.0)
    agg.add(B, now=100.0)  # once only: already posted, nothing to summarise
    for _ in range(3):
        agg.add(C, now=110.0)
    assert agg.flush(now=160.0) == [
        f"{A.describe()}: 20 more times in the last 60s",
        f"{C.describe()}: 2 more times in the last 60s",
    ]


def test_kinds_beyond_max_kinds_are_only_counted_and_summarised() -> None:
    agg = Aggregator(window=10, max_kinds=2)
    assert agg.add(A, now=0.0) is not None
    assert agg.add(B, now=0.0) is not None
    assert agg.add(C, now=1.0) is None  # a third kind: bounded, not posted
    assert agg.add(C, now=1.0) is None
    assert agg.add(A, now=2.0) is None
    assert len(agg.seen) == 2
    assert agg.flush(now=10.0) == [
        f"{A.describe()}: 1 more times in the last 10s",
        "2 more denials of other kinds in the last 10s",
    ]


def test_a_new_window_starts_clean() -> None:
    agg = Aggregator(window=60)
    agg.add(A, now=0.0)
    agg.add(A, now=1.0)
    assert len(agg.flush(now=60.0)) == 1
    assert agg.seen == {}
    assert agg.overflow == 0
    assert agg.flush(now=61.0) == []  # nothing new: nothing to say
    assert agg.add(A, now=200.0) == A.describe()  # first of its kind again, posted at once
    agg.add(A, now=201.0)
    assert agg.flush(now=259.0) == []  # the new window started at 200, not at 0
    assert agg.flush(now=260.0) == [f"{A.describe()}: 1 more times in the last 60s"]


def test_a_window_without_repeats_flushes_nothing_but_still_resets() -> None:
    agg = Aggregator(window=5)
    agg.add(A, now=0.0)
    assert agg.flush(now=5.0) == []
    assert agg.add(A, now=6.0) == A.describe()
