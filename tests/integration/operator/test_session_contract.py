"""The session contract a consumer codes against (docs/helmdeck.md), end to end: endpoints
for each family's ports and custom ones, ports changed live, idle expiry both ways,
renewals and sandbox activity that keep a session alive, lease extensions bounded by the
maximum lifetime, and labels carried to the sandbox.

The operator runs as a subprocess against the real apiserver, the gateway is the emulator
over gRPC; a renewal is what a consumer sends: a merge patch of the status subresource.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helmdeck_dev.emulator_process import EmulatorProcess
from helmdeck_dev.objects import condition, phase, session
from helmdeck_dev.operator_process import write_config

pytestmark = pytest.mark.usefixtures("operator")

#: The configured bound of lease extensions, counted from creation.
MAX_LIFETIME_S = 300
#: The idle timeout of the idle tests: short, so three windows pass in half a minute.
IDLE_S = 10


@pytest.fixture(scope="module")
def operator_config(gateway: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(
        tmp_path_factory.mktemp("operator") / "config.yaml",
        gateway.address,
        sessions={"max_lifetime_seconds": MAX_LIFETIME_S},
    )


def sandbox_of(gateway: EmulatorProcess, namespace: str, name: str) -> dict[str, Any] | None:
    for s in gateway.snapshot()["sandboxes"]:
        if s["annotations"].get("helmdeck.dev/session") == f"{namespace}/{name}":
            return dict(s)
    return None


def services(sandbox: dict[str, Any] | None) -> dict[str, str]:
    """The sandbox's endpoints on the gateway: name -> URL."""
    return {s["name"]: s["url"] for s in (sandbox or {}).get("services", [])}


def when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def renew(kube: Any, name: str, **lease: str) -> None:
    """What a consumer sends: one merge patch of the status subresource."""
    patch = json.dumps({"status": {"lease": lease}})
    kube.run("patch", "hds", name, "--subresource=status", "--type=merge", "-p", patch)


def ready(kube: Any, eventually: Any, *names: str) -> dict[str, dict[str, Any]]:
    eventually(lambda: all(phase(kube.get("hds", n)) == "Ready" for n in names), f"{names} Ready")
    return {n: kube.get("hds", n) for n in names}


def test_each_familys_ports_and_custom_ones_get_the_gateways_endpoints(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    custom = [{"name": "app", "port": 3000, "authorization": "BearerPassthrough"}]
    kube.apply(
        session("b", "browser"),
        session("v", "vision"),
        session("p", "python"),
        session("n", "node", ports=custom),
    )
    found = ready(kube, eventually, "b", "v", "p", "n")

    expected = {"b": {"cdp", "mcp"}, "v": {"cdp", "vnc"}, "p": set(), "n": {"app"}}
    for name, names in expected.items():
        endpoints = found[name]["status"].get("endpoints", {})
        on_gateway = sandbox_of(gateway, kube.namespace, name)
        print(f"{name}: endpoints {endpoints}")
        assert set(endpoints) == names
        assert endpoints == services(on_gateway)  # the URLs the gateway returned
        assert condition(found[name], "EndpointsExposed")["status"] == "True"
    app = sandbox_of(gateway, kube.namespace, "n")
    assert app is not None
    assert app["services"] == [
        {
            "name": "app",
            "port": 3000,
            "authorization": "BEARER_PASSTHROUGH",
            "url": found["n"]["status"]["endpoints"]["app"],
        }
    ]
    wide = kube.run("get", "hds", "b", "-o", "wide")
    print(wide)
    assert found["b"]["status"]["endpoints"]["cdp"] in wide  # the Endpoints column


def test_ports_are_added_and_removed_on_the_live_sandbox(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(session("live", "browser"))
    first = ready(kube, eventually, "live")["live"]
    sandbox_id = first["status"]["sandbox"]["id"]
    assert set(first["status"]["endpoints"]) == {"cdp", "mcp"}

    ports = [{"name": "cdp", "port": 9222}, {"name": "extra", "port": 7000}]
    kube.run("patch", "hds", "live", "--type=merge", "-p", json.dumps({"spec": {"ports": ports}}))
    changed = eventually(
        kube.when(
            "hds", "live", lambda s: set(s["status"].get("endpoints", {})) == {"cdp", "extra"}
        ),
        "mcp removed, extra added",
    )
    assert set(services(sandbox_of(gateway, kube.namespace, "live"))) == {"cdp", "extra"}
    assert changed["status"]["sandbox"]["id"] == sandbox_id  # the same sandbox, no recreate
    assert phase(changed) == "Ready"

    kube.run("patch", "hds", "live", "--type=merge", "-p", '{"spec":{"ports":[]}}')
    emptied = eventually(
        kube.when("hds", "live", lambda s: s["status"].get("endpoints") == {}), "no endpoints"
    )
    assert services(sandbox_of(gateway, kube.namespace, "live")) == {}
    assert emptied["status"]["sandbox"]["id"] == sandbox_id
    print(f"live: {first['status']['endpoints']} -> {changed['status']['endpoints']} -> {{}}")


def test_a_port_the_gateway_refuses_is_a_condition_with_its_reason(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    kube.apply(session("refused", "node"))
    ready(kube, eventually, "refused")
    gateway.set_faults(
        {"errors": {"ExposeService": {"code": "INVALID_ARGUMENT", "message": "port not allowed"}}}
    )
    ports = json.dumps({"spec": {"ports": [{"name": "app", "port": 3000}]}})
    kube.run("patch", "hds", "refused", "--type=merge", "-p", ports)

    refused = eventually(
        kube.when(
            "hds", "refused", lambda s: condition(s, "EndpointsExposed").get("status") == "False"
        ),
        "EndpointsExposed False",
    )
    exposed = condition(refused, "EndpointsExposed")
    print(f"refused: {exposed['reason']}: {exposed['message']}")
    assert exposed["reason"] == "GatewayInvalidArgument"
    assert "port not allowed" in exposed["message"]
    assert phase(refused) == "Ready"  # the sandbox serves on: only the new port is missing
    eventually(lambda: ("Warning", "EndpointFailed") in kube.events("refused"), "the Warning")

    gateway.clear_faults()
    fixed = json.dumps({"spec": {"ports": [{"name": "app", "port": 3001}]}})
    kube.run("patch", "hds", "refused", "--type=merge", "-p", fixed)
    eventually(
        kube.when("hds", "refused", lambda s: set(s["status"].get("endpoints", {})) == {"app"}),
        "exposed after the fix",
    )


class Every:
    """Call `action` every `seconds` in a thread until stopped."""

    def __init__(self, seconds: float, action: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self.calls = 0

        def loop() -> None:
            while not self._stop.wait(seconds):
                action()
                self.calls += 1

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def background() -> Iterator[list[Every]]:
    started: list[Every] = []
    yield started
    for task in started:
        task.stop()


def test_idle_sessions_end_on_time_and_busy_ones_live_on(
    kube: Any, eventually: Any, gateway: EmulatorProcess, background: list[Every]
) -> None:
    idle = {"idleTimeout": f"{IDLE_S}s"}
    kube.apply(
        session("sleepy", "python", lifetime={**idle, "onIdle": "Suspend"}),
        session("doomed", "python", lifetime={**idle, "onIdle": "Delete"}),
        session("busy", "python", lifetime=idle),
        session("chatty", "python", lifetime=idle),
    )
    found = ready(kube, eventually, "sleepy", "doomed", "busy", "chatty")
    idle_at = {n: parse(s["status"]["idleAt"]) for n, s in found.items()}
    for name, obj in found.items():
        assert idle_at[name] == parse(obj["status"]["lastActivityAt"]) + timedelta(seconds=IDLE_S)
    chatty = found["chatty"]["status"]["sandbox"]["name"]
    background.append(Every(3, lambda: renew(kube, "busy", renewTime=when(datetime.now(UTC)))))
    background.append(
        Every(
            3,
            lambda: gateway.append_logs(
                "default", chatty, [{"message": "tool step done", "source": "sandbox"}]
            ),
        )
    )

    # Three idle windows and a half, watched every quarter second.
    end = time.time() + 3.5 * IDLE_S
    suspended_seen = deleted_seen = None
    while time.time() < end:
        for name in ("busy", "chatty"):
            assert phase(kube.get("hds", name)) == "Ready", f"{name} went idle while in use"
        # The time an answer came back: a change it shows happened no later than that, so a
        # change seen by an answer that came back before idleAt happened too early.
        sleepy, seen = kube.get("hds", "sleepy"), datetime.now(UTC)
        if suspended_seen is None and phase(sleepy) == "Suspended":
            suspended_seen = seen
            assert seen >= idle_at["sleepy"], "suspended before its idle time"
        doomed, seen = kube.get("hds", "doomed"), datetime.now(UTC)
        if deleted_seen is None and doomed is None:
            deleted_seen = seen
            assert seen >= idle_at["doomed"], "deleted before its idle time"
        time.sleep(0.25)
    assert suspended_seen is not None
    assert deleted_seen is not None
    print(
        f"sleepy suspended {(suspended_seen - idle_at['sleepy']).total_seconds():.1f}s after"
        f" its idleAt, doomed deleted {(deleted_seen - idle_at['doomed']).total_seconds():.1f}s"
        f" after; busy renewed {background[0].calls}x and chatty logged {background[1].calls}x"
        f" over {3.5 * IDLE_S:.0f}s ({IDLE_S}s idle timeout): both Ready throughout"
    )
    assert (suspended_seen - idle_at["sleepy"]).total_seconds() < 5
    assert (deleted_seen - idle_at["doomed"]).total_seconds() < 5
    sleepy = kube.get("hds", "sleepy")
    assert condition(sleepy, "Ready")["reason"] == "Idle"
    assert (sandbox_of(gateway, kube.namespace, "sleepy") or {}).get("phase") == "STOPPED"
    assert ("Normal", "Idle") in kube.events("sleepy")
    busy, chatty_now = kube.get("hds", "busy"), kube.get("hds", "chatty")
    assert parse(busy["status"]["lastActivityAt"]) > idle_at["busy"]
    assert parse(chatty_now["status"]["lastActivityAt"]) > idle_at["chatty"]

    # Renewals stop: the busy one goes idle too; a renewal wakes the sleepy one.
    for task in background:
        task.stop()
    background.clear()
    renew(kube, "sleepy", renewTime=when(datetime.now(UTC)))
    eventually(kube.in_phase("sleepy", "Ready"), "a renewal resumes the idle session")
    assert ("Normal", "Resumed") in kube.events("sleepy")
    eventually(kube.in_phase("busy", "Suspended"), "busy idles once nobody renews", timeout=30)


def test_a_lease_extends_the_lifetime_up_to_the_maximum_and_no_further(
    kube: Any, eventually: Any
) -> None:
    kube.apply(session("leased", "python", lifetime={"ttl": "2m"}))
    created = parse(ready(kube, eventually, "leased")["leased"]["metadata"]["creationTimestamp"])

    granted = when(created + timedelta(minutes=4))
    renew(kube, "leased", expireTime=granted)
    extended = eventually(
        kube.when("hds", "leased", lambda s: s["status"].get("expiresAt") == granted),
        "expiresAt moved to the granted end",
    )
    assert condition(extended, "LifetimeExtended")["status"] == "True"
    assert extended["status"]["extendedTo"] == granted

    renew(kube, "leased", expireTime=when(created + timedelta(seconds=MAX_LIFETIME_S + 60)))
    refused = eventually(
        kube.when(
            "hds", "leased", lambda s: condition(s, "LifetimeExtended").get("status") == "False"
        ),
        "the extension past the maximum refused",
    )
    verdict = condition(refused, "LifetimeExtended")
    print(f"leased: {verdict['reason']}: {verdict['message']}")
    assert verdict["reason"] == "ExtensionRefused"
    assert when(created + timedelta(seconds=MAX_LIFETIME_S)) in verdict["message"]
    assert refused["status"]["expiresAt"] == granted  # the end granted before stays
    assert phase(refused) == "Ready"


def test_configured_session_labels_reach_the_sandbox(
    kube: Any, eventually: Any, gateway: EmulatorProcess
) -> None:
    labelled = session("labelled", "python")
    labelled["metadata"]["labels"] = {"helmdeck.dev/run-id": "run-42", "team": "qa"}
    kube.apply(labelled)
    ready(kube, eventually, "labelled")

    on_gateway = sandbox_of(gateway, kube.namespace, "labelled")
    assert on_gateway is not None
    print(f"labelled: sandbox labels {on_gateway['labels']}")
    assert on_gateway["labels"]["helmdeck.dev/run-id"] == "run-42"
    assert "team" not in on_gateway["labels"]  # only the configured keys are copied
    assert on_gateway["labels"]["helmdeck.dev/managed-by"] == "helmdeck-test"
