"""Wire-to-value translation: stable under enum values a newer gateway may add."""

from __future__ import annotations

import pytest
from openshell._proto import openshell_pb2

from helmdeck_operator.gateway import convert, models


def test_unknown_enum_values_do_not_fail() -> None:
    message = openshell_pb2.Sandbox()
    message.status.phase = 99  # type: ignore[assignment]
    message.status.configuration_admission.state = 42  # type: ignore[assignment]
    sandbox = convert.sandbox(message)
    assert sandbox.phase is models.SandboxPhase.UNKNOWN
    assert sandbox.admission is not None
    assert sandbox.admission.state is models.AdmissionState.UNSPECIFIED
    outcome = convert.delete_outcome(openshell_pb2.DeleteSandboxResponse(outcome=7))  # type: ignore[arg-type]
    assert outcome.state is models.DeletionState.UNSPECIFIED


def test_absent_parts_are_absent() -> None:
    sandbox = convert.sandbox(openshell_pb2.Sandbox())
    assert sandbox.admission is None
    assert sandbox.created_at is None
    assert not sandbox.deleting
    assert sandbox.phase is models.SandboxPhase.UNSPECIFIED


def test_every_phase_has_a_name_of_ours() -> None:
    for name, _number in openshell_pb2.SandboxPhase.items():
        status = openshell_pb2.SandboxStatus(phase=name)
        phase = convert.sandbox(openshell_pb2.Sandbox(status=status)).phase
        assert name == f"SANDBOX_PHASE_{phase.value}"


def test_spec_translation() -> None:
    spec = convert.sandbox_spec(
        models.SandboxSpec(image="i", restart_policy=models.RestartPolicy.ALWAYS), None
    )
    assert spec.restart_policy == openshell_pb2.SANDBOX_RESTART_POLICY_ALWAYS
    assert not spec.HasField("policy")
    assert not spec.HasField("resource_requirements")
    assert not spec.template.HasField("resources")


def test_label_selector_is_sorted_and_checked() -> None:
    assert convert.label_selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert convert.label_selector(None) == ""
    with pytest.raises(ValueError, match="selector"):
        convert.label_selector({"a": "x=y"})


def test_payloads_we_do_not_consume_still_carry_the_cursor() -> None:
    event = convert.watch_event(
        openshell_pb2.SandboxStreamEvent(
            cursor="17", draft_policy_update=openshell_pb2.DraftPolicyUpdate()
        )
    )
    assert event == models.WatchEvent(cursor="17")
    warning = convert.watch_event(
        openshell_pb2.SandboxStreamEvent(
            cursor="18", warning=openshell_pb2.SandboxStreamWarning(message="lagging")
        )
    )
    assert warning.warning == "lagging"
    platform = convert.watch_event(
        openshell_pb2.SandboxStreamEvent(
            event=openshell_pb2.PlatformEvent(reason="Pulled", message="image pulled")
        )
    )
    assert platform.event is not None
    assert platform.event.reason == "Pulled"


def test_service_modes_the_client_does_not_know_read_as_strip() -> None:
    for number in (0, 9):  # UNSPECIFIED (a legacy endpoint) and a mode newer than the stubs
        endpoint = openshell_pb2.ServiceEndpoint(name="web", authorization_mode=number)  # type: ignore[arg-type]
        response = openshell_pb2.ServiceEndpointResponse(endpoint=endpoint)
        assert convert.service_endpoint(response).authorization is models.ServiceAuthorization.STRIP


def test_every_service_authorization_is_sent_by_its_gateway_name() -> None:
    for ours in models.ServiceAuthorization:
        number = convert.service_authorization_mode(ours)
        assert openshell_pb2.ServiceAuthorizationMode.Name(number) == (
            f"SERVICE_AUTHORIZATION_MODE_{ours.value}"
        )
