"""The async client of one OpenShell gateway: the only code in the operator that speaks gRPC.

Reconcilers get a narrow interface (create, get, list, delete, stop, start, watch, update
policy, policy status, logs, a sandbox's service endpoints: expose, get, list, delete, and
its providers: attach, detach) that takes and returns the value types of ``models`` and raises only
``errors.GatewayError``. Every sandbox call is scoped to one workspace: the gateway's
configured one unless the call names another (``workspace=``); the workspace calls
(create, get, list, delete) serve gateways that give each namespace its own. Every unary
call gets, in one place (``_call``):

- a deadline per attempt (``deadline_seconds``);
- bounded retries of transient codes with jittered exponential backoff (``retry``),
  honouring a server hint (``retry-after`` or google.rpc.RetryInfo) and never retrying a
  permanent error; one extra attempt after UNAUTHENTICATED with freshly read credentials;
- ``x-request-id`` (one per logical call, the same on every retry and copied into the
  request's own ``request_id`` field) and a W3C ``traceparent`` taken from the current
  OpenTelemetry span, so the gateway's spans join the operator's trace;
- ``authorization`` from the configured call credentials;
- a log record and an observer callback per attempt (rpc, code, attempt, latency,
  request id), never any metadata value;
- a failure translated once (``errors.from_rpc_error``), scrubbed of our credentials (and
  the one the attempt sent) and raised ``from None``; the span records that error by hand,
  never the raw gRPC one, whose texts echo whatever the gateway chose to echo.

Retrying CreateSandbox is safe but not transparent: OpenShell's create is not idempotent
by name, so when a response is lost and the retry finds the name taken the call raises
``GatewayAlreadyExists`` with ``attempts > 1``. The reconciler then adopts the sandbox by
name and labels (``get_sandbox``); a gateway that deduplicates by ``request_id`` answers
the retry with the original sandbox instead.

The service calls are retried like reads, and that is safe: ExposeService is an upsert
(the same name and arguments again leave the same endpoint) and DeleteService is sent with
``allow_missing`` (a second delete answers ALREADY_ABSENT). Their ``request_id`` lets a
gateway with mutation replay answer a retry with the first attempt's response. The
provider calls are retried too: attaching an attached provider or detaching a detached one
changes nothing. Sent with an ``expected_resource_version`` (compare-and-set), a call the
gateway refuses as stale (ABORTED) is not retried: it raises at once, for the caller to
read the sandbox again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self, cast

import grpc
from openshell._proto import openshell_pb2, openshell_pb2_grpc, sandbox_pb2
from opentelemetry import trace

from helmdeck_operator import __version__
from helmdeck_operator.gateway import convert, models, retry
from helmdeck_operator.gateway.auth import (
    CallCredentials,
    FileWatch,
    build_call_credentials,
    channel_credentials,
)
from helmdeck_operator.gateway.config import GatewayConfig
from helmdeck_operator.gateway.errors import (
    GatewayCredentialsError,
    GatewayError,
    GatewayInternal,
    GatewayNotFound,
    GatewayUnauthenticated,
    from_rpc_error,
)
from helmdeck_operator.ratelimit import TokenBucket

__all__ = ["PAGE_SIZE", "CallRecord", "GatewayClient", "new_traceparent"]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

_SERVICE = "openshell.v1.OpenShell"
#: Sandboxes per ListSandboxes page: big enough for few round trips (a cache relists
#: thousands), small enough that a page with full policies (a few KiB each) stays far below
#: the message size limit. A gateway may cap it lower; the token carries on from there.
PAGE_SIZE = 500
#: Inbound message limit; gRPC's default of 4 MiB is tight for pages of full policies.
MAX_RECEIVE_BYTES = 32 * 1024 * 1024
#: How long a replaced channel (after certificate rotation) may finish in-flight calls.
CHANNEL_CLOSE_GRACE = 30.0
#: Log lines fetched by ``get_sandbox_logs`` unless asked otherwise.
DEFAULT_LOG_LINES = 200


@dataclass(frozen=True)
class CallRecord:
    """One attempt of one RPC, as handed to observers (metrics) after it finished."""

    gateway: str
    rpc: str
    code: str
    """gRPC status code name; ``CREDENTIALS`` when no RPC was made for want of them."""
    attempt: int
    seconds: float
    request_id: str


Observer = Callable[[CallRecord], None]


def new_traceparent() -> str:
    """A W3C traceparent for the current span, or a fresh random (unsampled) one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return (
            f"00-{trace.format_trace_id(context.trace_id)}-"
            f"{trace.format_span_id(context.span_id)}-{int(context.trace_flags):02x}"
        )
    rng = random.SystemRandom()
    trace_id = rng.getrandbits(128) or 1  # all-zero ids are invalid
    span_id = rng.getrandbits(64) or 1
    return f"00-{trace.format_trace_id(trace_id)}-{trace.format_span_id(span_id)}-00"


class GatewayClient:
    """One gateway's client; use ``async with`` or ``start``/``close`` in the event loop.

    ``credentials`` replaces the ones the config's auth block would build (the caller
    then owns and closes them); ``observers`` are called with a ``CallRecord`` after
    every unary attempt (the metrics module hooks in here); ``rng`` seeds the jitter.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        credentials: CallCredentials | None = None,
        observers: Sequence[Observer] = (),
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._owns_credentials = credentials is None
        self._credentials = credentials or build_call_credentials(config)
        self._observers = tuple(observers)
        self._rng = rng or random.Random()
        tls = config.effective_tls
        files = [] if tls is None else [tls.ca_file, tls.cert_file, tls.key_file]
        self._tls_watch = FileWatch(*(f for f in files if f is not None))
        self._channel: Any = None
        self._stub: Any = None
        self._stream_channel: Any = None
        self._stream_stub: Any = None
        self._closing: set[asyncio.Task[None]] = set()
        self._limiter = TokenBucket(config.rate_limit.qps, config.rate_limit.burst)

    def __repr__(self) -> str:
        return f"GatewayClient(name={self.name!r}, endpoint={self._config.endpoint!r})"

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def config(self) -> GatewayConfig:
        return self._config

    async def start(self) -> None:
        """Open the channel (lazily connected); raises if TLS material is unreadable."""
        if self._channel is None:
            self._tls_watch.changed()
            self._open()

    async def close(self) -> None:
        if self._channel is not None:
            channels = (self._channel, self._stream_channel)
            self._channel = self._stub = self._stream_channel = self._stream_stub = None
            for channel in channels:
                await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._owns_credentials:
            await self._credentials.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- operations ---------------------------------------------------------------------

    async def health(self) -> models.Health:
        response = await self._call("Health", openshell_pb2.HealthRequest())
        return convert.health(response)

    async def whoami(self) -> models.Identity:
        """Who the gateway takes us for; proves the credentials work."""
        response = await self._call("GetCurrentUser", openshell_pb2.GetCurrentUserRequest())
        return convert.identity(response)

    async def create_workspace(
        self, name: str, *, labels: Mapping[str, str] | None = None
    ) -> models.Workspace:
        """Create a workspace (the gateway allows a platform admin only);
        ``GatewayAlreadyExists`` when the name is taken, also after a retry of a create
        whose answer was lost."""
        request = openshell_pb2.CreateWorkspaceRequest(name=name, labels=dict(labels or {}))
        response = await self._call("CreateWorkspace", request)
        return convert.workspace(response.workspace)

    async def get_workspace(self, name: str) -> models.Workspace | None:
        """The workspace, or None when the gateway does not know it."""
        try:
            response = await self._call(
                "GetWorkspace", openshell_pb2.GetWorkspaceRequest(name=name)
            )
        except GatewayNotFound:
            return None
        return convert.workspace(response.workspace)

    async def list_workspaces(
        self, label_selector: Mapping[str, str] | None = None
    ) -> list[models.Workspace]:
        """Every workspace the caller may see (all of them for a platform admin) whose
        labels include ``label_selector``, every page."""
        selector = convert.label_selector(label_selector)

        def request(token: str) -> openshell_pb2.ListWorkspacesRequest:
            return openshell_pb2.ListWorkspacesRequest(
                page_size=PAGE_SIZE, page_token=token, label_selector=selector
            )

        return [
            convert.workspace(item)
            async for page in self._pages("ListWorkspaces", request)
            for item in page.workspaces
        ]

    async def delete_workspace(
        self, name: str, *, allow_missing: bool = True
    ) -> models.DeleteOutcome:
        """Delete an empty workspace; ``GatewayPreconditionFailed`` while anything is in
        it (the gateway then keeps it TERMINATING: nothing can be created in it)."""
        request = openshell_pb2.DeleteWorkspaceRequest(name=name, allow_missing=allow_missing)
        response = await self._call("DeleteWorkspace", request)
        return models.DeleteOutcome(convert.deletion_state(response.outcome))

    async def create_sandbox(
        self,
        name: str,
        spec: models.SandboxSpec = models.SandboxSpec(),  # noqa: B008 - frozen, shared safely
        *,
        policy: sandbox_pb2.SandboxPolicy | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        exposures: Sequence[models.ServiceExposure] = (),
        workspace: str | None = None,
    ) -> models.Sandbox:
        """Create a sandbox; ``GatewayAlreadyExists`` if the name is taken (see module doc).

        ``exposures`` become its service endpoints, all or none; their URLs are in the
        answer's ``service_urls``, which only this call carries."""
        request = openshell_pb2.CreateSandboxRequest(
            workspace_scope=self._scope(workspace),
            name=name,
            spec=convert.sandbox_spec(spec, policy),
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            service_exposures=[convert.service_exposure(e) for e in exposures],
        )
        response = await self._call("CreateSandbox", request, sandbox=name)
        return convert.sandbox(response.sandbox, response.service_urls)

    async def get_sandbox(
        self, name: str, *, workspace: str | None = None
    ) -> models.Sandbox | None:
        """The sandbox, or None when the gateway does not know it."""
        request = openshell_pb2.GetSandboxRequest(workspace_scope=self._scope(workspace), name=name)
        try:
            response = await self._call("GetSandbox", request, sandbox=name)
        except GatewayNotFound:
            return None
        return convert.sandbox(response.sandbox, response.service_urls)

    async def list_sandboxes(
        self,
        label_selector: Mapping[str, str] | None = None,
        *,
        known: Callable[[str, str, str, int], models.Sandbox | None] | None = None,
        workspace: str | None = None,
        all_workspaces: bool = False,
    ) -> list[models.Sandbox]:
        """All sandboxes of the workspace (of every workspace with ``all_workspaces``, which
        the gateway allows a platform admin only) whose labels include ``label_selector``.

        ``known(workspace, name, id, resource_version)`` may return the caller's own copy of
        a sandbox it already holds at that version; it is used instead of converting the
        message again (a cache relisting thousands of unchanged sandboxes converts none).
        """
        selector = convert.label_selector(label_selector)
        scope = convert.every_workspace() if all_workspaces else self._scope(workspace)
        found: list[models.Sandbox] = []

        def request(token: str) -> openshell_pb2.ListSandboxesRequest:
            return openshell_pb2.ListSandboxesRequest(
                workspace_scope=scope,
                page_size=PAGE_SIZE,
                page_token=token,
                label_selector=selector,
            )

        async for page in self._pages("ListSandboxes", request):
            for item in page.sandboxes:
                meta = item.metadata
                same = (
                    known(meta.workspace, meta.name, meta.id, meta.resource_version)
                    if known
                    else None
                )
                found.append(same if same is not None else convert.sandbox(item))
        return found

    async def delete_sandbox(
        self, name: str, *, allow_missing: bool = True, workspace: str | None = None
    ) -> models.DeleteOutcome:
        """Delete a sandbox; with ``allow_missing`` a missing one is ALREADY_ABSENT."""
        request = openshell_pb2.DeleteSandboxRequest(
            workspace_scope=self._scope(workspace), name=name, allow_missing=allow_missing
        )
        try:
            response = await self._call("DeleteSandbox", request, sandbox=name)
        except GatewayNotFound:
            if not allow_missing:
                raise
            return models.DeleteOutcome(models.DeletionState.ALREADY_ABSENT)
        return convert.delete_outcome(response)

    async def stop_sandbox(self, name: str, *, workspace: str | None = None) -> models.Sandbox:
        request = openshell_pb2.StopSandboxRequest(
            workspace_scope=self._scope(workspace), name=name
        )
        response = await self._call("StopSandbox", request, sandbox=name)
        return convert.sandbox(response.sandbox, response.service_urls)

    async def start_sandbox(self, name: str, *, workspace: str | None = None) -> models.Sandbox:
        request = openshell_pb2.StartSandboxRequest(
            workspace_scope=self._scope(workspace), name=name
        )
        response = await self._call("StartSandbox", request, sandbox=name)
        return convert.sandbox(response.sandbox, response.service_urls)

    async def expose_service(
        self, sandbox: str, exposure: models.ServiceExposure, *, workspace: str | None = None
    ) -> models.ServiceEndpoint:
        """Expose a port of the sandbox, or change the endpoint of that name (an upsert);
        the sandbox may be in any phase. ``GatewayNotFound`` if there is no such sandbox."""
        request = openshell_pb2.ExposeServiceRequest(
            workspace_scope=self._scope(workspace),
            sandbox=sandbox,
            name=exposure.name,
            target_port=exposure.port,
            # Ignored by current gateways (always domain-routed); the oldest ones return a
            # URL only when asked for one.
            domain=True,
            authorization_mode=convert.service_authorization_mode(exposure.authorization),
        )
        response = await self._call("ExposeService", request, sandbox=sandbox)
        return convert.service_endpoint(response)

    async def get_service(
        self, sandbox: str, name: str, *, workspace: str | None = None
    ) -> models.ServiceEndpoint | None:
        """The endpoint, or None when the gateway knows no such endpoint or sandbox."""
        request = openshell_pb2.GetServiceRequest(
            workspace_scope=self._scope(workspace), sandbox=sandbox, name=name
        )
        try:
            response = await self._call("GetService", request, sandbox=sandbox)
        except GatewayNotFound:
            return None
        return convert.service_endpoint(response)

    async def list_services(
        self, sandbox: str, *, workspace: str | None = None
    ) -> list[models.ServiceEndpoint]:
        """Every endpoint of the sandbox (every page); ``GatewayNotFound`` without it."""
        scope = self._scope(workspace)

        def request(token: str) -> openshell_pb2.ListServicesRequest:
            return openshell_pb2.ListServicesRequest(
                workspace_scope=scope,
                sandbox=sandbox,
                page_size=PAGE_SIZE,
                page_token=token,
            )

        return [
            convert.service_endpoint(item)
            async for page in self._pages("ListServices", request, sandbox=sandbox)
            for item in page.services
        ]

    async def delete_service(
        self, sandbox: str, name: str, *, workspace: str | None = None
    ) -> bool:
        """Remove an endpoint: True when this call removed it, False when it was absent
        (a sandbox that is gone has none). After a lost response, a retry on a gateway
        without request replay finds it absent and says False."""
        request = openshell_pb2.DeleteServiceRequest(
            workspace_scope=self._scope(workspace), sandbox=sandbox, name=name, allow_missing=True
        )
        try:
            response = await self._call("DeleteService", request, sandbox=sandbox)
        except GatewayNotFound:
            return False
        return convert.deletion_state(response.outcome) is not models.DeletionState.ALREADY_ABSENT

    async def attach_provider(
        self,
        sandbox: str,
        provider: str,
        *,
        expected_resource_version: int = 0,
        workspace: str | None = None,
    ) -> models.Sandbox:
        """Attach a credential provider to a sandbox in any phase; the sandbox as the gateway
        wrote it (its resource version moves even when the provider was attached already).
        ``GatewayPreconditionFailed`` for a provider the workspace does not have; with
        ``expected_resource_version``, a sandbox changed since gives code ABORTED."""
        return await self._provider_call(
            "AttachSandboxProvider", sandbox, provider, expected_resource_version, workspace
        )

    async def detach_provider(
        self,
        sandbox: str,
        provider: str,
        *,
        expected_resource_version: int = 0,
        workspace: str | None = None,
    ) -> models.Sandbox:
        """Detach a provider (one not attached is no error); the sandbox as the gateway
        wrote it. ``expected_resource_version`` as for ``attach_provider``."""
        return await self._provider_call(
            "DetachSandboxProvider", sandbox, provider, expected_resource_version, workspace
        )

    async def _provider_call(
        self,
        method: str,
        sandbox: str,
        provider: str,
        expected_resource_version: int,
        workspace: str | None,
    ) -> models.Sandbox:
        """Attach and detach take the same request and answer the same sandbox."""
        request = getattr(openshell_pb2, f"{method}Request")(
            workspace_scope=self._scope(workspace),
            sandbox=sandbox,
            provider=provider,
            expected_resource_version=expected_resource_version,
        )
        response = await self._call(method, request, sandbox=sandbox)
        return convert.sandbox(response.sandbox)

    async def update_policy(
        self,
        sandbox: str,
        policy: sandbox_pb2.SandboxPolicy,
        *,
        annotations: Mapping[str, str] | None = None,
        expected_resource_version: int = 0,
        workspace: str | None = None,
    ) -> models.PolicyRevision:
        """Store a new policy revision; an identical policy returns the current version."""
        request = openshell_pb2.UpdateConfigRequest(
            workspace_scope=self._scope(workspace),
            sandbox=sandbox,
            policy=policy,
            annotations=dict(annotations or {}),
            expected_resource_version=expected_resource_version,
        )
        response = await self._call("UpdateConfig", request, sandbox=sandbox)
        return models.PolicyRevision(version=response.version, hash=response.policy_hash)

    async def get_policy_status(
        self, sandbox: str, version: int = 0, *, workspace: str | None = None
    ) -> models.PolicyStatus | None:
        """Load state of one revision (0: the latest); None when no revision exists."""
        request = openshell_pb2.GetSandboxPolicyStatusRequest(
            workspace_scope=self._scope(workspace), sandbox=sandbox, version=version
        )
        try:
            response = await self._call("GetSandboxPolicyStatus", request, sandbox=sandbox)
        except GatewayNotFound:
            return None
        return convert.policy_status(response)

    async def get_sandbox_logs(
        self,
        sandbox: str,
        *,
        lines: int = DEFAULT_LOG_LINES,
        sources: Sequence[str] = (),
        min_level: str = "",
        since: datetime | None = None,
        workspace: str | None = None,
    ) -> list[models.LogLine]:
        """Recent log lines of a sandbox (OCSF events included, ``level == "OCSF"``),
        only those at or after ``since`` when given."""
        request = openshell_pb2.GetSandboxLogsRequest(
            workspace_scope=self._scope(workspace),
            sandbox=sandbox,
            lines=lines,
            sources=list(sources),
            min_level=min_level,
        )
        if since is not None:
            request.since_time.FromDatetime(since)
        response = await self._call("GetSandboxLogs", request, sandbox=sandbox)
        return [convert.log_line(line) for line in response.logs]

    async def watch_sandbox(
        self,
        name: str,
        *,
        follow_logs: bool = False,
        follow_events: bool = False,
        resume_after: str = "",
        workspace: str | None = None,
    ) -> AsyncGenerator[models.WatchEvent, None]:
        """Snapshots (and optionally logs and events) of a sandbox as they happen.

        The first event carries a snapshot. The iterator ends when the gateway ends the
        stream (the sandbox was deleted) or does not know the sandbox. A transient cut
        (including the gateway dropping a slow reader) reconnects from the last cursor
        with the usual bounded backoff, the count reset by every received message. The
        stream itself has no deadline: it lives as long as the consumer iterates; wrap
        it in ``contextlib.aclosing`` to end the stream the moment the consumer stops.
        """
        cursor = resume_after
        request_id = _request_id()
        traceparent = new_traceparent()
        failures = 0
        while True:
            request = openshell_pb2.WatchSandboxRequest(
                workspace_scope=self._scope(workspace),
                sandbox=name,
                follow_status=True,
                follow_logs=follow_logs,
                follow_events=follow_events,
                resume_after_cursor=cursor,
            )
            await self._limiter.take()
            opened = time.monotonic()
            err: GatewayError
            try:
                metadata = await self._metadata(request_id, traceparent)
                call = self._current_stub(stream=True).WatchSandbox(request, metadata=metadata)
            except GatewayCredentialsError as exc:
                failures += 1
                err = exc.for_call(self.name, "WatchSandbox", request_id, failures)
            else:
                try:
                    async for message in call:
                        failures = 0
                        event = convert.watch_event(message)
                        cursor = event.cursor or cursor
                        yield event
                    self._log("WatchSandbox", "OK", 1, opened, request_id, logging.DEBUG)
                    return
                except grpc.aio.AioRpcError as rpc_error:
                    failures += 1
                    err = self._translate("WatchSandbox", rpc_error, request_id, failures, metadata)
                finally:
                    call.cancel()
            code = err.code or "CREDENTIALS"
            self._log("WatchSandbox", code, failures, opened, request_id, logging.INFO)
            if isinstance(err, GatewayNotFound):
                return
            delay = self._delay_after(err, failures)
            if delay is None:
                self._give_up(err)
                raise err from None  # the gRPC error's own texts are unscrubbed (errors.py)
            await asyncio.sleep(delay)

    # -- plumbing -----------------------------------------------------------------------

    def _scope(self, workspace: str | None) -> Any:
        """One workspace: the one named, else the gateway's configured one."""
        return convert.workspace_scope(workspace or self._config.workspace)

    def _open(self) -> None:
        """Open the channels: one for unary calls, one for watch streams.

        A gateway caps the streams one connection may hold open (HTTP/2
        MAX_CONCURRENT_STREAMS; hyper, under the real gateway, defaults to 200), and a
        client queues calls beyond the cap. Streams therefore get their own connection, so
        a create or an update never waits behind open watches.
        """
        self._channel, self._stub = self._new_channel("unary")
        self._stream_channel, self._stream_stub = self._new_channel("streams")

    def _new_channel(self, purpose: str) -> tuple[Any, Any]:
        target = self._config.endpoint
        options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", f"helmdeck-operator/{__version__}"),
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            # Distinct channel arguments keep gRPC from sharing one subchannel between them.
            ("helmdeck.channel", purpose),
        ]
        tls = self._config.effective_tls
        if tls is None:
            channel = grpc.aio.insecure_channel(target, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            channel = grpc.aio.secure_channel(target, channel_credentials(tls), options=options)
        # The generated stub is untyped; the cast keeps strict mypy honest about that.
        stub_class = cast(Callable[[Any], Any], openshell_pb2_grpc.OpenShellStub)
        return channel, stub_class(channel)

    def _current_stub(self, *, stream: bool = False) -> Any:
        """The stub, on new channels when the TLS files changed (certificate rotation)."""
        if self._channel is None:
            raise RuntimeError(f"{self!r} is not started")
        if self._tls_watch.changed():
            logger.info("gateway %s: TLS files changed, opening new channels", self.name)
            old = (self._channel, self._stream_channel)
            self._open()
            for channel in old:
                task = asyncio.create_task(channel.close(grace=CHANNEL_CLOSE_GRACE))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return self._stream_stub if stream else self._stub

    async def _metadata(self, request_id: str, traceparent: str) -> list[tuple[str, str]]:
        metadata = [("x-request-id", request_id), ("traceparent", traceparent)]
        authorization = await self._credentials.authorization()
        if authorization is not None:
            metadata.append(("authorization", authorization))
        return metadata

    def _translate(
        self,
        rpc: str,
        rpc_error: grpc.aio.AioRpcError,
        request_id: str,
        attempt: int,
        metadata: Sequence[tuple[str, str]],
    ) -> GatewayError:
        # The credential this attempt sent is scrubbed too: a concurrent refresh may have
        # replaced the one the credentials hold by now.
        sent = [
            value.partition(" ")[2] or value for key, value in metadata if key == "authorization"
        ]
        return from_rpc_error(
            rpc,
            rpc_error,
            gateway=self.name,
            request_id=request_id,
            attempts=attempt,
            redact=(*self._credentials.secrets(), *sent),
        )

    def _give_up(self, err: GatewayError) -> None:
        """Log a failure about to reach the caller when the log is the only place its full
        text goes: a transient one (the caller sees only the last attempt) or one whose text
        is withheld from tenants (errors.py)."""
        if err.is_transient or err.withheld is not None:
            logger.warning("gateway %s: giving up: %s", self.name, err.for_log())

    async def _pages(
        self, rpc: str, request: Callable[[str], Any], *, sandbox: str = ""
    ) -> AsyncIterator[Any]:
        """Every page of a list call, ``request(token)`` building each request: one request
        id for the whole listing; a token the gateway repeats would loop, so it is refused."""
        request_id = _request_id()
        seen_tokens: set[str] = set()
        token = ""
        while True:
            page = await self._call(rpc, request(token), sandbox=sandbox, request_id=request_id)
            yield page
            token = page.next_page_token
            if not token:
                return
            if token in seen_tokens:
                raise GatewayInternal(
                    "the gateway repeated a page token", rpc=rpc, request_id=request_id
                )
            seen_tokens.add(token)

    def _delay_after(self, err: GatewayError, attempt: int) -> float | None:
        if not err.is_transient:
            return None
        return retry.next_delay(attempt, self._config.retry, self._rng, err.retry_after)

    async def _call(
        self, rpc: str, request: Any, *, sandbox: str = "", request_id: str = ""
    ) -> Any:
        """One logical unary call: attempts, deadline, retries, metadata, logs, span."""
        request_id = request_id or _request_id()
        if "request_id" in request.DESCRIPTOR.fields_by_name:
            request.request_id = request_id
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": _SERVICE,
            "rpc.method": rpc,
            "openshell.gateway": self.name,
            "openshell.request_id": request_id,
        }
        if sandbox:
            attributes["openshell.sandbox.name"] = sandbox
        # A call made inside a traced operation (a reconcile pass) is a span of its trace;
        # the background reads (a cache's listings, the denial poller) are not: a root span
        # per read, several a second, would say nothing a metric does not.
        traced = trace.get_current_span().get_span_context().is_valid
        scope = (
            # Not recorded automatically: the SDK would format the exception's whole chain
            # and traceback. The scrubbed error is recorded by hand below.
            _tracer.start_as_current_span(
                f"{_SERVICE}/{rpc}",
                kind=trace.SpanKind.CLIENT,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )
            if traced
            else contextlib.nullcontext(trace.INVALID_SPAN)
        )
        with scope as span:
            traceparent = new_traceparent()
            attempt = 0
            reauthenticated = False
            while True:
                attempt += 1
                await self._limiter.take()
                started = time.monotonic()
                try:
                    metadata = await self._metadata(request_id, traceparent)
                    method = getattr(self._current_stub(), rpc)
                    response = await method(
                        request, timeout=self._config.deadline_seconds, metadata=metadata
                    )
                except grpc.aio.AioRpcError as rpc_error:
                    err = self._translate(rpc, rpc_error, request_id, attempt, metadata)
                except GatewayCredentialsError as exc:
                    err = exc.for_call(self.name, rpc, request_id, attempt)
                else:
                    self._record(rpc, "OK", attempt, started, request_id, logging.DEBUG)
                    span.set_attribute("rpc.grpc.status_code", 0)
                    return response
                # NOT_FOUND is an answer (get -> None), not a failure worth an INFO line.
                level = logging.DEBUG if isinstance(err, GatewayNotFound) else logging.INFO
                self._record(rpc, err.code or "CREDENTIALS", attempt, started, request_id, level)
                if (
                    isinstance(err, GatewayUnauthenticated)
                    and not reauthenticated
                    and attempt < self._config.retry.max_attempts
                ):
                    # Perhaps a rotated Secret or a revoked token: read afresh, once.
                    reauthenticated = True
                    self._credentials.invalidate()
                    continue
                delay = None if _stale(request, err) else self._delay_after(err, attempt)
                if delay is None:
                    self._give_up(err)
                    if err.code:
                        span.set_attribute(
                            "rpc.grpc.status_code", grpc.StatusCode[err.code].value[0]
                        )
                    span.set_status(trace.Status(trace.StatusCode.ERROR, err.reason))
                    span.record_exception(err)  # scrubbed, unchained, no traceback yet
                    raise err from None  # the gRPC error's own texts are unscrubbed (errors.py)
                await asyncio.sleep(delay)

    def _record(
        self,
        rpc: str,
        code: str,
        attempt: int,
        started: float,
        request_id: str,
        level: int,
    ) -> None:
        seconds = self._log(rpc, code, attempt, started, request_id, level)
        record = CallRecord(self.name, rpc, code, attempt, seconds, request_id)
        for observer in self._observers:
            observer(record)

    def _log(
        self, rpc: str, code: str, attempt: int, started: float, request_id: str, level: int
    ) -> float:
        """Log one finished attempt (for a stream: one connection) and return its duration."""
        seconds = time.monotonic() - started
        logger.log(
            level,
            "gateway %s rpc=%s code=%s attempt=%d latency_ms=%.1f request_id=%s",
            self.name,
            rpc,
            code,
            attempt,
            seconds * 1000,
            request_id,
            extra={
                "gateway": self.name,
                "rpc": rpc,
                "grpc_code": code,
                "attempt": attempt,
                "latency_ms": round(seconds * 1000, 1),
                "request_id": request_id,
            },
        )
        return seconds


def _request_id() -> str:
    return str(uuid.uuid4())


def _stale(request: Any, err: GatewayError) -> bool:
    """A compare-and-set the gateway refused (ABORTED) because the sandbox changed since the
    caller's view: the same request would fail the same way, so it goes back to the caller,
    to read again, instead of being retried."""
    expected = getattr(request, "expected_resource_version", 0)
    return err.code == grpc.StatusCode.ABORTED.name and bool(expected)
