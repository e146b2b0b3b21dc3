"""Which policy changes can be hot-reloaded into running sandboxes, and why not the others."""

from __future__ import annotations

from typing import Any

from openshell._proto import sandbox_pb2

from helmdeck_operator.policy import classify, translate
from tests.support import policies

#: A node policy, with /usr and /etc read-only and /tmp writable.
BASE: dict[str, Any] = {
    **policies.node_spec(),
    "filesystem": {"readOnly": ["/usr", "/etc"], "readWrite": ["/tmp"]},
}


def change(old: dict[str, Any], new: dict[str, Any]) -> classify.ChangeClass:
    return classify.classify_change(
        translate.to_sandbox_policy(old), translate.to_sandbox_policy(new)
    )


def fields(verdict: classify.ChangeClass) -> list[str]:
    return [blocker.field for blocker in verdict.blockers]


def test_no_change_is_live() -> None:
    verdict = change(BASE, BASE)

    assert verdict.live
    assert verdict.blockers == ()


def test_network_changes_are_live() -> None:
    pypi = policies.pypi_rule()

    assert change(BASE, {**BASE, "network": [*BASE["network"], pypi]}).live
    assert change(BASE, {**BASE, "network": []}).live
    assert change(BASE, {**BASE, "network": [pypi]}).live


def test_middlewares_are_live() -> None:
    old = translate.to_sandbox_policy(BASE)
    new = translate.to_sandbox_policy(BASE)
    new.network_middlewares["audit"].name = "audit"

    assert classify.classify_change(old, new).live


def test_adding_filesystem_paths_is_live() -> None:
    new = {
        **BASE,
        "filesystem": {"readOnly": ["/usr", "/etc", "/opt"], "readWrite": ["/tmp", "/data"]},
    }

    assert change(BASE, new).live


def test_removing_a_read_only_path_is_blocked_naming_the_path() -> None:
    verdict = change(BASE, {**BASE, "filesystem": {"readOnly": ["/usr"], "readWrite": ["/tmp"]}})

    assert not verdict.live
    (blocker,) = verdict.blockers
    assert blocker.field == "filesystem.read_only"
    assert "'/etc'" in blocker.reason
    assert str(blocker).startswith("filesystem.read_only: path '/etc' removed")


def test_moving_a_path_from_read_write_to_read_only_removes_it_from_read_write() -> None:
    verdict = change(BASE, {**BASE, "filesystem": {"readOnly": ["/usr", "/etc", "/tmp"]}})

    assert fields(verdict) == ["filesystem.read_write"]
    assert "'/tmp'" in verdict.blockers[0].reason


def test_include_workdir_is_fixed() -> None:
    new = {**BASE, "filesystem": {**BASE["filesystem"], "includeWorkdir": False}}

    assert fields(change(BASE, new)) == ["filesystem.include_workdir"]


def test_landlock_must_stay_identical() -> None:
    verdict = change(BASE, {**BASE, "landlock": {"compatibility": "hard_requirement"}})

    assert fields(verdict) == ["landlock.compatibility"]
    assert "'best_effort' to 'hard_requirement'" in verdict.blockers[0].reason


def test_process_identity_must_stay_identical() -> None:
    assert fields(
        change(BASE, {**BASE, "process": {"runAsUser": "1001", "runAsGroup": "1000"}})
    ) == ["process.run_as_user"]
    assert fields(change(BASE, {**BASE, "process": {"runAsUser": "1000"}})) == [
        "process.run_as_group"
    ]
    assert fields(change(BASE, {**BASE, "process": {}})) == [
        "process.run_as_user",
        "process.run_as_group",
    ]


def test_raw_tcp_endpoints_are_live_even_the_first() -> None:
    """The gateway has no rule against a first endpoint without inspection on a live
    sandbox (../shared/OPENSHELL-RULES.md), so neither does the classifier."""
    ssh = policies.rule("git-ssh", policies.endpoint("github.com", 22))
    tcp = policies.rule("db", policies.endpoint("db.example.com", 5432, protocol="tcp"))
    with_ssh = {**BASE, "network": [*BASE["network"], ssh]}

    assert change(BASE, with_ssh).live
    assert change(with_ssh, {**with_ssh, "network": [*with_ssh["network"], tcp]}).live


def test_every_blocker_is_reported() -> None:
    new = {
        **BASE,
        "filesystem": {"includeWorkdir": False},
        "landlock": {"compatibility": "hard_requirement"},
        "process": {"runAsUser": "2000", "runAsGroup": "2000"},
        "network": [policies.rule("ssh", policies.endpoint("github.com", 22))],
    }

    assert fields(change(BASE, new)) == [
        "filesystem.include_workdir",
        "filesystem.read_only",
        "filesystem.read_only",
        "filesystem.read_write",
        "landlock.compatibility",
        "process.run_as_user",
        "process.run_as_group",
    ]


def test_the_schema_version_is_not_content() -> None:
    old = translate.to_sandbox_policy(BASE)
    new = sandbox_pb2.SandboxPolicy()
    new.CopyFrom(old)
    new.version = 2

    assert classify.classify_change(old, new).live
