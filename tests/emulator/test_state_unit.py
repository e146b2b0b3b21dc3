"""The state machine without gRPC, driven by a manual clock: timing is exact here."""

from __future__ import annotations

import pytest
from openshell._proto import openshell_pb2 as pb

from helmdeck_operator.emulator.clock import ManualClock
from helmdeck_operator.emulator.errors import Code, GatewayError
from helmdeck_operator.emulator.state import Gateway, GatewaySettings
from tests.support.policies import base_policy, rest_rule


def gateway() -> tuple[Gateway, ManualClock]:
    clock = ManualClock()
    settings = GatewaySettings(ready_delay=1.0, load_delay=0.5, delete_delay=2.0)
    return Gateway(settings, clock), clock


def booted(name: str) -> tuple[Gateway, ManualClock]:
    """A gateway whose sandbox `name` has booted (READY) on base_policy()."""
    gw, clock = gateway()
    gw.create("", name, pb.SandboxSpec(policy=base_policy()))
    clock.advance(1.0)
    gw.tick()
    return gw, clock


def test_transitions_happen_exactly_when_due() -> None:
    gw, clock = gateway()
    gw.create("", "a", pb.SandboxSpec(policy=base_policy()))
    assert gw.next_due() == clock.monotonic() + 1.0
    clock.advance(0.999)
    gw.tick()
    assert gw.get("", "a").phase == pb.SANDBOX_PHASE_PROVISIONING
    clock.advance(0.001)
    gw.tick()
    record = gw.get("", "a")
    assert record.phase == pb.SANDBOX_PHASE_READY
    assert record.current_policy_version == 1


def test_hot_reload_load_waits_for_load_delay_and_keeps_boots() -> None:
    gw, clock = booted("b")
    rev = gw.update_policy("", "b", base_policy(gh=rest_rule("api.github.com")), {})
    clock.advance(0.4)
    gw.tick()
    assert rev.status == pb.POLICY_STATUS_PENDING
    clock.advance(0.1)
    gw.tick()
    assert rev.status == pb.POLICY_STATUS_LOADED
    assert gw.get("", "b").boots == 1


def test_pending_revision_on_a_stopped_sandbox_loads_at_next_boot() -> None:
    gw, clock = booted("c")
    gw.stop("", "c")
    clock.advance(1.0)
    gw.tick()
    rev = gw.update_policy("", "c", base_policy(gh=rest_rule("api.github.com")), {})
    clock.advance(5.0)
    gw.tick()
    assert rev.status == pb.POLICY_STATUS_PENDING
    gw.start("", "c")
    clock.advance(1.0)
    gw.tick()
    assert rev.status == pb.POLICY_STATUS_LOADED
    assert gw.get("", "c").boots == 2


def test_watch_listener_hears_changes_and_deletion() -> None:
    gw, clock = gateway()
    record = gw.create("", "d", pb.SandboxSpec())
    heard: list[str] = []
    gw.subscribe(record.id, lambda event: heard.append(event.kind))
    clock.advance(1.0)
    gw.tick()
    gw.delete("", "d", allow_missing=False)
    clock.advance(2.0)
    gw.tick()
    assert heard[-1] == "deleted"
    assert "sandbox" in heard


def test_deleting_sandbox_refuses_config_updates() -> None:
    gw, _ = gateway()
    gw.create("", "e", pb.SandboxSpec(policy=base_policy()))
    gw.delete("", "e", allow_missing=False)
    with pytest.raises(GatewayError) as caught:
        gw.update_policy("", "e", base_policy(), {})
    assert caught.value.code == Code.FAILED_PRECONDITION
