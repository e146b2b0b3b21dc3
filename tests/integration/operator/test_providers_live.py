"""Providers changed on a running session, end to end: spec.providers is attached and
detached on the live sandbox (AttachSandboxProvider / DetachSandboxProvider), never by a
recreate, and a provider the gateway refuses is a condition while the session serves on.

The operator runs as a subprocess against the real apiserver, the gateway is the emulator
over gRPC, knowing the providers github and openai.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, session

pytestmark = pytest.mark.usefixtures("operator")


class Phases:
    """Every phase a session shows while it is looked at, read in a thread (4 per second)."""

    def __init__(self, kube: Any, name: str) -> None:
        self.seen: set[str | None] = set()
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(0.25):
                self.seen.add(phase(kube.get("hds", name)))

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> set[str | None]:
        self._stop.set()
        self._thread.join()
        return self.seen


def on_gateway(gateway: EmulatorProcess, namespace: str, name: str) -> dict[str, Any]:
    [found] = [
        s
        for s in gateway.snapshot()["sandboxes"]
        if s["annotations"].get("helmdeck.dev/session") == f"{namespace}/{name}"
    ]
    return dict(found)


def calls(gateway: EmulatorProcess, method: str, code: str = "OK") -> int:
    return sum(
        1 for r in gateway.snapshot()["requests"] if r["method"] == method and r["code"] == code
    )


def set_providers(kube: Any, name: str, providers: list[str]) -> None:
    patch = json.dumps({"spec": {"providers": providers}})
    kube.run("patch", "hds", name, "--type=merge", "-p", patch)


def attached(kube: Any, eventually: Any, name: str, generation: int) -> dict[str, Any]:
    """The session once it reports its providers attached for `generation`."""

    def done(obj: dict[str, Any]) -> bool:
        found = condition(obj, "ProvidersAttached")
        return found.get("status") == "True" and found.get("observedGeneration") == generation

    return dict(eventually(kube.when("hds", name, done), f"providers of generation {generation}"))


def test_providers_added_and_removed_keep_the_sandbox_and_the_session_ready(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(session("live", "python", providers=["github"]))
    first = eventually(kube.in_phase("live", "Ready"), "live Ready")
    sandbox_id = first["status"]["sandbox"]["id"]
    assert first["status"]["sandbox"]["providers"] == ["github"]
    assert on_gateway(gateway, kube.namespace, "live")["spec"]["providers"] == ["github"]
    attaches = calls(gateway, "AttachSandboxProvider")
    detaches = calls(gateway, "DetachSandboxProvider")

    phases = Phases(kube, "live")
    try:
        steps = [["github", "openai"], ["openai"], []]
        for generation, wanted in enumerate(steps, start=2):
            set_providers(kube, "live", wanted)
            now = attached(kube, eventually, "live", generation)
            record = on_gateway(gateway, kube.namespace, "live")
            print(f"generation {generation}: {now['status']['sandbox'].get('providers')}")
            assert sorted(record["spec"].get("providers", [])) == wanted  # the gateway's record
            assert now["status"]["sandbox"].get("providers", []) == wanted
            assert now["status"]["sandbox"]["id"] == sandbox_id  # the same sandbox
            assert record["boots"] == 1  # never restarted
    finally:
        seen = phases.stop()
    print(f"phases seen meanwhile: {seen}")
    assert seen == {"Ready"}
    assert calls(gateway, "AttachSandboxProvider") - attaches == 1  # openai
    assert calls(gateway, "DetachSandboxProvider") - detaches == 2  # github, then openai
    assert ("Normal", "Recreating") not in kube.events("live")


def test_an_unknown_provider_is_a_condition_and_the_session_serves_on(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(session("keeps", "python"))
    first = eventually(kube.in_phase("keeps", "Ready"), "keeps Ready")
    sandbox_id = first["status"]["sandbox"]["id"]

    set_providers(kube, "keeps", ["github", "bogus"])
    refused = eventually(
        kube.when(
            "hds", "keeps", lambda s: condition(s, "ProvidersAttached").get("status") == "False"
        ),
        "ProvidersAttached False",
    )
    found = condition(refused, "ProvidersAttached")
    print(f"refused: {found['reason']}: {found['message']}")
    assert found["reason"] == "GatewayFailedPrecondition"
    assert "provider 'bogus' not found" in found["message"]
    assert phase(refused) == "Ready"  # it serves on with the providers it had
    assert condition(refused, "Ready")["status"] == "True"
    assert refused["status"]["sandbox"]["id"] == sandbox_id
    eventually(lambda: ("Warning", "ProviderFailed") in kube.events("keeps"), "the Warning")

    before = calls(gateway, "AttachSandboxProvider", "FAILED_PRECONDITION")
    time.sleep(4)  # longer than the resync interval: a retry loop would show here
    assert calls(gateway, "AttachSandboxProvider", "FAILED_PRECONDITION") == before

    set_providers(kube, "keeps", ["github"])  # the fix: a new generation
    fixed = attached(kube, eventually, "keeps", 3)
    assert fixed["status"]["sandbox"]["providers"] == ["github"]
    assert fixed["status"]["sandbox"]["id"] == sandbox_id
    assert phase(fixed) == "Ready"
