"""No secret in any trace or log: a gateway that echoes the caller's credentials in every error.

The echoing gateway is a generic gRPC handler on loopback that answers every method of the
OpenShell service with the failure a scenario sets: each status code the client maps
(errors.CODE_TO_ERROR; OK is no error status on the wire), a deadline it lets pass, and a
watch stream cut after its first event. Its details, its trailing metadata (a rich
google.rpc.Status included) and so the client's ``debug_error_string`` carry the
``authorization`` metadata it received, the token alone, the operator's OIDC client secret,
and credential-shaped strings of nobody in particular (a cookie, a bearer token, a
client_secret form field, a JWT).

The real GatewayClient, with OIDC credentials from a scripted token endpoint, runs every
public operation (found by introspection: an operation without a scenario fails the suite)
inside a reconcile span, traced to an in-memory exporter, with every log record captured at
DEBUG. No secret may appear in the raised error, in any exception of its chain, in its
formatted traceback, in any span (name, attributes, events, status) or in any log record.
The token endpoint gets the same treatment: refusing, it echoes the client secret.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from openshell._proto import openshell_pb2, openshell_pb2_grpc, sandbox_pb2
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helmdeck_operator.gateway import client as client_module
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.auth import OidcCredentials
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.config import GatewayConfig, OidcAuth
from helmdeck_operator.gateway.errors import (
    CODE_TO_ERROR,
    REDACTED,
    GatewayCredentialsError,
    GatewayError,
    GatewayTransient,
)
from helmdeck_operator.observability import tracing

SERVICE = openshell_pb2.DESCRIPTOR.services_by_name["OpenShell"]
CLIENT_SECRET = "cs-7Hq2-known-client-secret"
FOREIGN_COOKIE = "foreign-cookie-3e1b"
FOREIGN_BEARER = "foreign-bearer-9a7c5d"
FOREIGN_CLIENT_SECRET = "foreign-client-secret-4f2e"
FOREIGN_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzb21lb25lLWVsc2UifQ.Zm9yZWlnbi1zaWduYXR1cmU"
FOREIGN = (FOREIGN_COOKIE, FOREIGN_BEARER, FOREIGN_CLIENT_SECRET, FOREIGN_JWT)
#: Every error status a gateway can send; OK cannot be one.
CODES = [code for code in CODE_TO_ERROR if code is not grpc.StatusCode.OK]
#: Small and fixed: transient codes are retried once, quickly; UNAUTHENTICATED re-reads once.
RETRY = {"max_attempts": 2, "initial_backoff": 0.001, "max_backoff": 0.01}
#: The deadline of the client that meets a gateway letting it pass.
SHORT_DEADLINE = 0.1


@dataclass(frozen=True)
class Failure:
    """What the gateway does with every call: fail with ``code`` (echoing), let the deadline
    pass (``code`` None), or for a stream first send one event then fail (``cut``)."""

    code: grpc.StatusCode | None
    cut: bool = False

    def __str__(self) -> str:
        if self.code is None:
            return "deadline"
        return f"{self.code.name}{' after one event' if self.cut else ''}"


def echo(authorization: str) -> str:
    """The gateway's error text: everything it was sent, one item per line, so each is
    removed by its own rule (known value or credential shape)."""
    token = authorization.partition(" ")[2]
    return "\n".join(
        [
            f"token {token} is not valid here",
            f"client credentials {CLIENT_SECRET} were not expected",
            f"authorization: {authorization}",
            f"Cookie: sid={FOREIGN_COOKIE}; theme=dark",
            f"upstream said Bearer {FOREIGN_BEARER}",
            f"form client_secret={FOREIGN_CLIENT_SECRET}&grant_type=client_credentials",
            f"subject {FOREIGN_JWT}",
        ]
    )


def trailers(code: grpc.StatusCode, authorization: str, text: str) -> tuple[tuple[str, Any], ...]:
    """Trailing metadata echoing the credentials, a rich status among them (a BadRequest
    whose field and description echo, and a short RetryInfo the client honours)."""
    status = status_pb2.Status(code=code.value[0], message=text)
    status.details.add().Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=f"metadata[{authorization}]", description=text
                )
            ]
        )
    )
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay={"nanos": 1_000_000}))
    return (
        ("x-echo-authorization", authorization),
        ("x-echo-client-secret", CLIENT_SECRET),
        ("grpc-status-details-bin", status.SerializeToString()),
    )


class EchoingGateway(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
    """Every OpenShell method, answered with ``failure``; records the methods called."""

    def __init__(self) -> None:
        self.failure = Failure(grpc.StatusCode.INTERNAL)
        self.received: list[str] = []
        self.events_sent = 0
        self.address = ""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method.rsplit("/", 1)[-1]
        descriptor = SERVICE.methods_by_name.get(method)
        if descriptor is None:
            return None

        async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            await self._fail(method, context)
            return b""

        async def stream(
            request: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            if self.failure.cut and self.events_sent == 0:
                self.events_sent += 1
                yield openshell_pb2.SandboxStreamEvent(cursor="c-1").SerializeToString()
            await self._fail(method, context)

        if descriptor.server_streaming:
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(unary)

    async def _fail(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.received.append(method)
        authorization = dict(context.invocation_metadata() or ()).get("authorization", "")
        assert isinstance(authorization, str)
        code = self.failure.code
        if code is None:
            await asyncio.sleep(10 * SHORT_DEADLINE)  # cancelled when the client gives up
            code = grpc.StatusCode.DEADLINE_EXCEEDED
        text = echo(authorization)
        await context.abort(code, text, trailing_metadata=trailers(code, authorization, text))


@dataclass
class TokenEndpoint:
    """An OAuth token endpoint (httpx mock transport) issuing opaque tokens, new each time,
    or refusing with ``refusal`` (an HTTP status) and an error body that echoes the client
    secret (as the RFC 6749 error code itself, and in the description)."""

    issued: list[str] = field(default_factory=list)
    refusal: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.refusal:
            body = {"error": CLIENT_SECRET, "error_description": echo(f"Basic {CLIENT_SECRET}")}
            return httpx.Response(self.refusal, json=body)
        token = f"at-{len(self.issued) + 1}-opaque-access-value"
        self.issued.append(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": 600}
        return httpx.Response(200, json=body)


@dataclass(frozen=True)
class Op:
    """How a scenario calls one client operation, the RPC it reaches, and whether NOT_FOUND
    is an answer for it (None, False, ALREADY_ABSENT, the end of a watch) or an error."""

    rpc: str
    call: Callable[[GatewayClient], Awaitable[object]]
    not_found_answers: bool = False


async def _watch(client: GatewayClient) -> list[models.WatchEvent]:
    return [event async for event in client.watch_sandbox("s1", follow_logs=True)]


POLICY = sandbox_pb2.SandboxPolicy()
EXPOSURE = models.ServiceExposure("web", 8080)
OPS: dict[str, Op] = {
    "health": Op("Health", lambda c: c.health()),
    "whoami": Op("GetCurrentUser", lambda c: c.whoami()),
    "create_workspace": Op("CreateWorkspace", lambda c: c.create_workspace("tenant")),
    "get_workspace": Op(
        "GetWorkspace", lambda c: c.get_workspace("tenant"), not_found_answers=True
    ),
    "list_workspaces": Op("ListWorkspaces", lambda c: c.list_workspaces({"team": "a"})),
    "delete_workspace": Op("DeleteWorkspace", lambda c: c.delete_workspace("tenant")),
    "create_sandbox": Op("CreateSandbox", lambda c: c.create_sandbox("s1", policy=POLICY)),
    "get_sandbox": Op("GetSandbox", lambda c: c.get_sandbox("s1"), not_found_answers=True),
    "list_sandboxes": Op("ListSandboxes", lambda c: c.list_sandboxes({"app": "x"})),
    "delete_sandbox": Op("DeleteSandbox", lambda c: c.delete_sandbox("s1"), not_found_answers=True),
    "stop_sandbox": Op("StopSandbox", lambda c: c.stop_sandbox("s1")),
    "start_sandbox": Op("StartSandbox", lambda c: c.start_sandbox("s1")),
    "expose_service": Op("ExposeService", lambda c: c.expose_service("s1", EXPOSURE)),
    "get_service": Op("GetService", lambda c: c.get_service("s1", "web"), not_found_answers=True),
    "list_services": Op("ListServices", lambda c: c.list_services("s1")),
    "delete_service": Op(
        "DeleteService", lambda c: c.delete_service("s1", "web"), not_found_answers=True
    ),
    "attach_provider": Op("AttachSandboxProvider", lambda c: c.attach_provider("s1", "gh")),
    "detach_provider": Op("DetachSandboxProvider", lambda c: c.detach_provider("s1", "gh")),
    "update_policy": Op("UpdateConfig", lambda c: c.update_policy("s1", POLICY)),
    "get_policy_status": Op(
        "GetSandboxPolicyStatus", lambda c: c.get_policy_status("s1"), not_found_answers=True
    ),
    "get_sandbox_logs": Op("GetSandboxLogs", lambda c: c.get_sandbox_logs("s1")),
    "watch_sandbox": Op("WatchSandbox", _watch, not_found_answers=True),
}
#: The client's lifecycle, not operations on the gateway.
LIFECYCLE = {"start", "close"}


def operations() -> set[str]:
    """The client's public coroutine and async-generator methods: what it can ask a gateway."""
    return {
        name
        for name, member in inspect.getmembers(GatewayClient)
        if not name.startswith("_")
        and name not in LIFECYCLE
        and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
    }


def failures(op: Op) -> list[Failure]:
    streaming = SERVICE.methods_by_name[op.rpc].server_streaming
    extra = Failure(grpc.StatusCode.UNAVAILABLE, cut=True) if streaming else Failure(None)
    return [*(Failure(code) for code in CODES), extra]


# -- where a secret could end up ----------------------------------------------------------


def error_texts(err: BaseException) -> list[str]:
    """The error as anything may render it: its traceback and every exception it chains."""
    texts = ["".join(traceback.format_exception(err))]
    pending: list[BaseException] = [err]
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(vars(exc))]
        if isinstance(exc, GatewayError):
            texts.append(exc.for_log())
        pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return texts


def span_texts(span: ReadableSpan) -> list[str]:
    texts = [span.name, repr(dict(span.attributes or {})), span.status.description or ""]
    for event in span.events:
        texts += [event.name, repr(dict(event.attributes or {}))]
    return texts


def record_texts(record: logging.LogRecord) -> list[str]:
    texts = [record.getMessage(), repr(vars(record))]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
async def gateway() -> AsyncIterator[EchoingGateway]:
    handler = EchoingGateway()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    handler.address = f"127.0.0.1:{port}"
    yield handler
    await server.stop(None)


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    # The global provider can be set once per process (tests/integration/test_tracing.py
    # does), so the two modules' tracers are pointed at a provider of this test's own.
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(client_module, "_tracer", provider.get_tracer("client"))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("operator"))
    return memory


@dataclass
class Harness:
    gateway: EchoingGateway
    token_endpoint: TokenEndpoint
    client: GatewayClient
    deadline_client: GatewayClient
    exporter: InMemorySpanExporter
    caplog: pytest.LogCaptureFixture

    def secrets(self) -> list[str]:
        return [*self.token_endpoint.issued, CLIENT_SECRET, *FOREIGN]

    async def run(self, op: Op, failure: Failure) -> GatewayError | None:
        """One call in a reconcile span; the error that escaped it, if any."""
        self.gateway.failure = failure
        self.gateway.received.clear()
        self.gateway.events_sent = 0
        self.exporter.clear()
        self.caplog.clear()
        client = self.deadline_client if failure.code is None else self.client
        try:
            with tracing.reconcile_span("session", "tenant", "s1", "uid-1"):
                await op.call(client)
        except GatewayError as err:
            return err
        return None

    def assert_no_secret(self, where: str, err: GatewayError | None) -> None:
        texts = {
            "error": error_texts(err) if err is not None else [],
            "spans": [t for s in self.exporter.get_finished_spans() for t in span_texts(s)],
            "logs": [t for r in self.caplog.records for t in record_texts(r)],
        }
        for sink, found in texts.items():
            for secret in self.secrets():
                leaks = [text for text in found if secret in text]
                assert not leaks, f"{where}: {secret!r} in {sink}: {leaks[0][:300]!r}"


@pytest.fixture
async def harness(
    gateway: EchoingGateway,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    caplog.set_level(logging.DEBUG)
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET)
    auth = OidcAuth(
        token_url="https://idp.example/oauth/token",
        client_id="helmdeck",
        client_secret_file=secret_file,
    )
    token_endpoint = TokenEndpoint()
    http = httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint))
    credentials = OidcCredentials(auth, http=http)

    def config(**fields: Any) -> GatewayConfig:
        base = {
            "name": "echo",
            "endpoint": gateway.address,
            "plaintext": True,
            "auth": auth,
            "deadline_seconds": 2.0,
            "retry": RETRY,
        }
        return GatewayConfig.model_validate({**base, **fields})

    async with (
        GatewayClient(config(), credentials=credentials) as client,
        GatewayClient(
            config(deadline_seconds=SHORT_DEADLINE), credentials=credentials
        ) as deadline_client,
    ):
        yield Harness(gateway, token_endpoint, client, deadline_client, exporter, caplog)
    await http.aclose()


# -- tests ----------------------------------------------------------------------------------


def test_every_client_operation_has_a_scenario() -> None:
    missing = operations() - set(OPS)
    assert not missing, f"GatewayClient operations without an echo scenario: {sorted(missing)}"
    assert set(OPS) <= operations(), "scenarios for operations the client no longer has"


async def test_the_gateway_really_echoes_the_credentials(gateway: EchoingGateway) -> None:
    """The control: what the raw gRPC error holds, which the client must not pass on."""
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = openshell_pb2_grpc.OpenShellStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await stub.Health(
                openshell_pb2.HealthRequest(), metadata=(("authorization", "Bearer probe-1234"),)
            )
    assert "probe-1234" in str(raw.value)
    assert "probe-1234" in raw.value.debug_error_string()
    assert CLIENT_SECRET in str(raw.value)
    assert dict(raw.value.trailing_metadata())["x-echo-authorization"] == "Bearer probe-1234"


@pytest.mark.parametrize("name", sorted(OPS))
async def test_no_secret_escapes_any_error_path(harness: Harness, name: str) -> None:
    op = OPS[name]
    for failure in failures(op):
        where = f"{name} / {failure}"
        err = await harness.run(op, failure)
        assert op.rpc in harness.gateway.received, f"{where}: the gateway was not called"
        harness.assert_no_secret(where, err)
        if failure.code is grpc.StatusCode.NOT_FOUND and op.not_found_answers:
            assert err is None, where
            continue
        assert err is not None, f"{where}: no error raised"
        expected = CODE_TO_ERROR[failure.code or grpc.StatusCode.DEADLINE_EXCEEDED]
        assert isinstance(err, expected), f"{where}: {type(err).__name__}"
        assert err.__cause__ is None, where
        assert err.__suppress_context__ or err.__context__ is None, where
        if failure.code is not None:
            # The gateway's words were kept, minus the secrets: scrubbed, not dropped.
            assert REDACTED in err.for_log(), where
            assert "is not valid here" in err.for_log(), where
        if failure.cut:
            assert isinstance(err, GatewayTransient)
            assert harness.gateway.events_sent == 1, f"{where}: the stream was not cut mid-way"
        spans = {s.name: s for s in harness.exporter.get_finished_spans()}
        recorded = [e for s in spans.values() for e in s.events if e.name == "exception"]
        assert recorded, f"{where}: no span recorded the failure"
        assert spans["reconcile session"].status.description, where


async def test_a_reconcile_span_records_any_exception_scrubbed(
    exporter: InMemorySpanExporter,
) -> None:
    def fail() -> None:
        try:
            raise ValueError(f"cookie: sid={FOREIGN_COOKIE}")
        except ValueError as cause:
            raise RuntimeError(f"refused: Bearer {FOREIGN_BEARER}") from cause

    with pytest.raises(RuntimeError), tracing.reconcile_span("session", "tenant", "s1", "uid"):
        fail()
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "RuntimeError"
    assert attributes["exception.message"] == f"refused: Bearer {REDACTED}"
    stacktrace = str(attributes["exception.stacktrace"])
    assert "ValueError: cookie: " in stacktrace  # the chain is kept, scrubbed
    assert span.status.description == f"RuntimeError: refused: Bearer {REDACTED}"
    for text in span_texts(span):
        assert FOREIGN_COOKIE not in text
        assert FOREIGN_BEARER not in text


@pytest.mark.parametrize("refusal", [401, 503])
@pytest.mark.parametrize("name", ["health", "watch_sandbox"])
async def test_no_secret_escapes_a_token_endpoint_that_echoes(
    harness: Harness, name: str, refusal: int
) -> None:
    harness.token_endpoint.refusal = refusal  # the first token the client asks for
    err = await harness.run(OPS[name], Failure(grpc.StatusCode.INTERNAL))
    assert isinstance(err, GatewayCredentialsError)
    assert err.is_transient is (refusal == 503)
    assert harness.gateway.received == [], "no call without credentials"
    assert f"HTTP {refusal} ({REDACTED})" in err.for_log()
    harness.assert_no_secret(f"{name} / token endpoint {refusal}", err)
