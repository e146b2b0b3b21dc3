"""The gRPC-to-GatewayError translation: every status code mapped, rich details decoded."""

from __future__ import annotations

import re

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from helmdeck_operator.gateway import errors
from helmdeck_operator.gateway.errors import (
    CODE_TO_ERROR,
    FieldViolation,
    GatewayAlreadyExists,
    GatewayCredentialsError,
    GatewayError,
    GatewayInternal,
    GatewayInvalid,
    GatewayNotFound,
    GatewayPermissionDenied,
    GatewayPreconditionFailed,
    GatewayTransient,
    GatewayUnauthenticated,
    from_rpc_error,
)

#: Kubernetes' rule for a condition reason.
K8S_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")

EXPECTED = {
    "OK": GatewayInternal,
    "CANCELLED": GatewayTransient,
    "UNKNOWN": GatewayInternal,
    "INVALID_ARGUMENT": GatewayInvalid,
    "DEADLINE_EXCEEDED": GatewayTransient,
    "NOT_FOUND": GatewayNotFound,
    "ALREADY_EXISTS": GatewayAlreadyExists,
    "PERMISSION_DENIED": GatewayPermissionDenied,
    "RESOURCE_EXHAUSTED": GatewayTransient,
    "FAILED_PRECONDITION": GatewayPreconditionFailed,
    "ABORTED": GatewayTransient,
    "OUT_OF_RANGE": GatewayInvalid,
    "UNIMPLEMENTED": GatewayInternal,
    "INTERNAL": GatewayInternal,
    "UNAVAILABLE": GatewayTransient,
    "DATA_LOSS": GatewayInternal,
    "UNAUTHENTICATED": GatewayUnauthenticated,
}


#: What a tenant never reads the gateway's words for: failures of the operator's identity.
WITHHELD = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


def rpc_error(
    code: grpc.StatusCode, details: str = "boom", trailing: tuple[tuple[str, object], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details
    )


def details_bin(*messages: object) -> bytes:
    status = status_pb2.Status(code=3, message="bad")
    for message in messages:
        status.details.add().Pack(message)
    data: bytes = status.SerializeToString()
    return data


def test_every_status_code_is_mapped() -> None:
    assert set(CODE_TO_ERROR) == set(grpc.StatusCode)
    assert {code.name: cls for code, cls in CODE_TO_ERROR.items()} == EXPECTED


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_translation_keeps_context(code: grpc.StatusCode) -> None:
    err = from_rpc_error("GetSandbox", rpc_error(code), request_id="rid-1", attempts=2)
    assert type(err) is EXPECTED[code.name]
    assert isinstance(err, GatewayError)
    assert (err.rpc, err.code, err.request_id, err.attempts) == (
        "GetSandbox",
        code.name,
        "rid-1",
        2,
    )
    assert err.detail == "boom"
    assert err.for_log() == f"GetSandbox: {code.name}: boom (request id rid-1)"
    assert err.is_transient is (EXPECTED[code.name] is GatewayTransient)
    assert K8S_REASON.match(err.reason)
    if code in WITHHELD:
        assert "boom" not in str(err)
    else:
        assert str(err) == f"GetSandbox: {code.name}: boom (request id rid-1)"


@pytest.mark.parametrize("code", sorted(WITHHELD, key=str), ids=lambda c: c.name)
def test_auth_failures_show_tenants_a_fixed_sentence_naming_the_gateway(
    code: grpc.StatusCode,
) -> None:
    words = "subject system:serviceaccount:helmdeck lacks role sandbox-admin at https://idp"
    err = from_rpc_error("CreateSandbox", rpc_error(code, words), gateway="pods")
    assert err.message.startswith("gateway 'pods' ")
    assert "platform team should check" in err.message
    assert "idp" not in str(err)
    assert "sandbox-admin" not in repr(err)
    assert words in err.for_log()
    anonymous = from_rpc_error("CreateSandbox", rpc_error(code, words))
    assert anonymous.message.startswith("the gateway ")


def test_reasons_are_camel_case_code_names() -> None:
    err = from_rpc_error("X", rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert err.reason == "GatewayDeadlineExceeded"
    assert from_rpc_error("X", rpc_error(grpc.StatusCode.NOT_FOUND)).reason == "GatewayNotFound"


def test_empty_details_fall_back_to_the_code() -> None:
    err = from_rpc_error("X", rpc_error(grpc.StatusCode.UNAVAILABLE, details=""))
    assert err.message == "unavailable"


def test_bad_request_field_violations_are_decoded() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="name", description="too long"),
            error_details_pb2.BadRequest.FieldViolation(field="spec.policy", description="bad"),
        ]
    )
    trailing = (("grpc-status-details-bin", details_bin(bad)),)
    err = from_rpc_error(
        "CreateSandbox", rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "x", trailing)
    )
    assert isinstance(err, GatewayInvalid)
    assert err.violations == (
        FieldViolation("name", "too long"),
        FieldViolation("spec.policy", "bad"),
    )
    assert "name: too long; spec.policy: bad" in str(err)


def test_retry_info_and_retry_after_give_a_hint() -> None:
    info = error_details_pb2.RetryInfo(retry_delay={"seconds": 1, "nanos": 500_000_000})
    trailing = (("grpc-status-details-bin", details_bin(info)),)
    err = from_rpc_error("X", rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow", trailing))
    assert err.retry_after == pytest.approx(1.5)
    err = from_rpc_error(
        "X", rpc_error(grpc.StatusCode.UNAVAILABLE, trailing=(("retry-after", "2"),))
    )
    assert err.retry_after == 2.0


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_unusable_retry_after_is_ignored(value: str) -> None:
    err = from_rpc_error(
        "X", rpc_error(grpc.StatusCode.UNAVAILABLE, trailing=(("retry-after", value),))
    )
    assert err.retry_after is None


def test_malformed_status_details_do_not_hide_the_code() -> None:
    trailing = (("grpc-status-details-bin", b"\xff\x00not a proto"),)
    err = from_rpc_error("X", rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad", trailing))
    assert isinstance(err, GatewayInvalid)
    assert err.violations == ()


def test_known_secrets_are_redacted_from_messages() -> None:
    secret = "s3cr3t-token-value"
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="auth", description=f"got {secret}")
        ]
    )
    err = from_rpc_error(
        "X",
        rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"token {secret} rejected",
            (("grpc-status-details-bin", details_bin(bad)),),
        ),
        redact=[secret, ""],
    )
    for text in (str(err), repr(err), err.message, str(err.violations)):
        assert secret not in text
    assert errors.REDACTED in err.message


def test_long_messages_are_bounded() -> None:
    err = from_rpc_error("X", rpc_error(grpc.StatusCode.INTERNAL, "x" * 10_000))
    assert len(err.message) <= 1024


def test_credentials_errors_carry_their_own_transience() -> None:
    err = GatewayCredentialsError("token endpoint down", transient=True)
    tagged = err.for_call("pods", "GetSandbox", "rid", 3)
    assert tagged.is_transient
    assert not GatewayCredentialsError("x", transient=False).is_transient
    assert (tagged.gateway, tagged.rpc, tagged.request_id, tagged.attempts) == (
        "pods",
        "GetSandbox",
        "rid",
        3,
    )
    assert tagged.reason == "GatewayCredentialsUnavailable"
    assert tagged.for_log() == "GetSandbox: token endpoint down (request id rid)"
    assert str(tagged).startswith(
        "GetSandbox: the operator could not obtain credentials for gateway 'pods': "
    )
    assert "token endpoint down" not in str(tagged)


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJoZWxtZGVjayJ9.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"authorization: Bearer {JWT} for GetSandbox", "authorization: "),
        ('{"authorization": "Bearer opaque-0123456789", "grpc_status": 16}', '"grpc_status": 16'),
        ("cookie: sid=c00k1e-value; theme=dark\nnext line", "next line"),
        ("proxy said: Basic aGVsbWRlY2s6aHVudGVyMg== refused", "refused"),
        ("grant failed: client_secret=s3cr3t-value&grant_type=client_credentials", "grant_type"),
        ('{"access_token": "at-value-123", "token_type": "Bearer"}', "token_type"),
        (f"unknown issuer for {JWT}", "unknown issuer for"),
        ("key: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY----- end", "end"),
    ],
)
def test_credential_shaped_text_is_scrubbed_whoever_it_belongs_to(text: str, kept: str) -> None:
    scrubbed = errors.scrub(text)
    for secret in (
        JWT,
        "opaque-0123456789",
        "c00k1e",
        "aGVsbWRlY2s6",
        "s3cr3t",
        "at-value",
        "MHcC",
    ):
        assert secret not in scrubbed
    assert errors.REDACTED in scrubbed
    assert kept in scrubbed


def test_prose_about_credentials_is_left_alone() -> None:
    for text in ("the token endpoint issued a non-bearer token", "auditor lacks sandbox:write"):
        assert errors.scrub(text) == text


def test_a_secret_containing_another_is_scrubbed_whole() -> None:
    assert errors.scrub("got abcdef", ["abc", "abcdef"]) == f"got {errors.REDACTED}"


def test_field_violations_are_scrubbed_in_field_and_description() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="metadata[authorization=Bearer opaque-0123456789]", description="echo"
            )
        ]
    )
    trailing = (("grpc-status-details-bin", details_bin(bad)),)
    err = from_rpc_error("X", rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad", trailing))
    assert "opaque-0123456789" not in str(err)
    assert err.violations[0].description == "echo"
