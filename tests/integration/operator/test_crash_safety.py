"""Kill the operator with SIGKILL at its worst moments, twenty times in a row, with work in
flight; after the last restart every session converges, and the gateway holds exactly one
sandbox per live session and none for deleted ones."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev.controlplane import ControlPlane
from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import phase, policy, session
from helmdeck_dev.operator_process import OperatorProcess
from helmdeck_operator import crashpoints
from helmdeck_operator.policy import revision, translate
from tests.support import policies

ROUNDS = 20
POINTS = [crashpoints.AFTER_CREATE, crashpoints.MID_FANOUT, crashpoints.AFTER_DELETE]
#: A round whose crash point is never reached ends after this long with a plain SIGKILL.
ROUND_TIMEOUT_S = 15.0


def spec_for(round_: int) -> dict[str, Any]:
    """The shared policy as of a round: one more hot-reloadable rule per round."""
    return {
        "network": [
            policies.rule(f"r{i}", policies.rest(f"api{i}.example.com")) for i in range(round_ + 1)
        ]
    }


@pytest.fixture
def process(cluster: ControlPlane, operator_config: Path, tmp_path: Path) -> OperatorProcess:
    """An operator of this test's own, to kill and restart (started by the test)."""
    return OperatorProcess(operator_config, cluster.kubeconfig, tmp_path / "operator.log")


def test_twenty_sigkills_at_injected_points_converge_without_duplicates_or_leaks(
    namespace: str, kube: Any, eventually: Any, gateway: EmulatorProcess, process: OperatorProcess
) -> None:
    live: list[str] = []
    deleted: set[str] = set()
    counter = itertools.count()
    kube.apply(policy("shared", **spec_for(0)))
    crashed = Counter[str]()
    try:
        for round_ in range(ROUNDS):
            point = POINTS[round_ % len(POINTS)]
            # Work in flight for every kind of crash point: new sessions, a policy edit that
            # fans out to the live ones, and deletions.
            fresh = [f"s{next(counter):03d}" for _ in range(2)]
            kube.apply(*(session(name, "python", policyRef={"name": "shared"}) for name in fresh))
            kube.apply(policy("shared", **spec_for(round_)))
            if len(live) > 4:
                victim = live.pop(0)
                kube.run("delete", "hds", victim, "--wait=false")
                deleted.add(victim)
            live.extend(fresh)

            process.start(env={"HELMDECK_CRASHPOINTS": f"{point}={1 + round_ % 3}"})
            code = process.wait_exit(ROUND_TIMEOUT_S)
            if code is None:
                process.kill()
            else:
                assert code == -9, process.log_tail()
                crashed[point] += 1

        print(f"SIGKILLed at crash points: {dict(crashed)} of {ROUNDS} rounds")
        assert sum(crashed.values()) >= ROUNDS // 2, f"crash points rarely reached: {crashed}"
        assert set(crashed) == set(POINTS), f"every crash point fired at least once: {crashed}"

        process.start()
        final = revision.revision(translate.to_sandbox_policy(spec_for(ROUNDS - 1)))

        def converged() -> list[dict[str, Any]] | None:
            items = kube.list("hds")
            names = {s["metadata"]["name"] for s in items}
            ok = names == set(live) and all(
                phase(s) == "Ready" and s["status"]["policy"].get("revision") == final
                for s in items
            )
            return items if ok else None

        items = eventually(converged, "all live sessions Ready on the final revision", timeout=180)
        uids = {s["metadata"]["uid"] for s in items}

        def gateway_matches() -> bool:
            owners = Counter(
                s["labels"].get("helmdeck.dev/session-uid")
                for s in gateway.snapshot()["sandboxes"]
                if s["annotations"].get("helmdeck.dev/session", "").startswith(namespace + "/")
            )
            return set(owners) == uids and set(owners.values()) == {1}

        eventually(gateway_matches, "exactly one sandbox per live session, none for deleted ones")
        kube.run("delete", "hds", "--all", "--wait=true", "--timeout=120s")
    finally:
        process.stop()


BURST = 300


def test_a_sigkill_in_the_middle_of_a_burst_leaves_one_sandbox_per_session_and_no_leak(
    namespace: str, kube: Any, eventually: Any, gateway: EmulatorProcess, process: OperatorProcess
) -> None:
    process.start()
    try:
        kube.apply(*(session(f"b{i:03d}", "python") for i in range(BURST)))

        def ours() -> list[dict[str, Any]]:
            return [
                s
                for s in gateway.snapshot()["sandboxes"]
                if s["annotations"].get("helmdeck.dev/session", "").startswith(namespace + "/")
            ]

        # Mid-burst: some sandboxes made, most not, statuses partly written.
        made = eventually(lambda: len(found := ours()) >= BURST // 4 and found, "a quarter made")
        process.kill()
        print(f"SIGKILLed with {len(made)} of {BURST} sandboxes made")
        assert len(made) < BURST, "the burst was over before the kill"
        # While the operator is down: a tenth of the sessions are deleted (finalizers hold
        # them), and the burst keeps its unfinished work.
        victims = [f"b{i:03d}" for i in range(0, BURST, 10)]
        kube.run("delete", "hds", *victims, "--wait=false")

        process.start()
        live = {f"b{i:03d}" for i in range(BURST)} - set(victims)

        def converged() -> list[dict[str, Any]] | None:
            items = kube.list("hds")
            ok = {s["metadata"]["name"] for s in items} == live and all(
                phase(s) == "Ready" for s in items
            )
            return items if ok else None

        items = eventually(converged, f"{len(live)} sessions Ready, {len(victims)} gone", 300)
        uids = {s["metadata"]["uid"] for s in items}

        def one_each() -> bool:
            owners = Counter(s["labels"].get("helmdeck.dev/session-uid") for s in ours())
            return set(owners) == uids and set(owners.values()) == {1}

        eventually(one_each, "exactly one sandbox per live session, none for deleted ones")
        # Leave nothing behind for the next test's operator to finalize.
        kube.run("delete", "hds", "--all", "--wait=true", "--timeout=120s")
    finally:
        process.stop()
