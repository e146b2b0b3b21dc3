"""The gRPC face of the emulated gateway: `OpenShellServicer` over `grpc.aio`.

A thin adapter: each RPC unpacks its request, calls the state machine (`state.Gateway`),
and packs the answer into the 0.1.5 response message. Around every call it does what the
gateway's transport layer does: echo `x-request-id`, apply injected faults, authenticate,
and turn a `GatewayError` into a status with a `grpc-status-details-bin` trailer
(google.rpc.Status carrying BadRequest field violations). RPCs not overridden here are
answered UNIMPLEMENTED by the generated base class.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc, sandbox_pb2

from helmdeck_operator.emulator import auth
from helmdeck_operator.emulator.errors import Code, GatewayError, invalid_field
from helmdeck_operator.emulator.model import SandboxRecord, timestamp
from helmdeck_operator.emulator.state import Gateway, WatchEvent, log_matches

__all__ = ["DEFAULT_WATCH_QUEUE", "EmulatorServicer", "status_details"]

T = TypeVar("T")
P = openshell_pb2

#: Requests remembered for tests (oldest dropped first).
REQUEST_LOG_SIZE = 2000
#: Events a watch stream may have queued before its reader counts as too slow.
DEFAULT_WATCH_QUEUE = 256
#: The caller of the RPC being served and the gateway's default workspace, set by `_enter`.
#: A context variable because grpc.aio serves each RPC in its own task (with its own copy of
#: the context): `_workspace` then checks the caller's right to the workspace a request
#: names in one place, for every RPC that names one.
_CALLER: ContextVar[tuple[auth.Principal, str]] = ContextVar("emulator_caller")


def status_details(error: GatewayError) -> bytes:
    """The `grpc-status-details-bin` trailer value: google.rpc.Status with BadRequest."""
    status = status_pb2.Status(
        code=grpc.StatusCode[error.code.value].value[0], message=error.message
    )
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad)
        status.details.append(detail)
    data: bytes = status.SerializeToString()
    return data


def _workspace(scope: datamodel_pb2.WorkspaceSelector) -> str:
    """The one workspace a request addresses ("": the default), once the caller may use it."""
    who, default = _CALLER.get()
    if scope.WhichOneof("selection") == "all_workspaces":
        auth.require_platform_admin(who)
        raise invalid_field("workspace_scope", "this call addresses a single workspace")
    auth.authorize_workspace(who, scope.workspace or default)
    return str(scope.workspace)


def _workspaces(gateway: Gateway, scope: datamodel_pb2.WorkspaceSelector) -> list[str]:
    """What a list call addresses: one workspace, or every one (a platform admin's right)."""
    if scope.WhichOneof("selection") == "all_workspaces":
        auth.require_platform_admin(_CALLER.get()[0])
        return gateway.workspace_names()
    return [gateway.workspace(_workspace(scope))]


def _response(
    record: SandboxRecord, service_urls: dict[str, str] | None = None
) -> openshell_pb2.SandboxResponse:
    """A sandbox answer; only CreateSandbox fills `service_urls` (the gateway's Get, Stop
    and Start leave the map empty: endpoints are read with GetService / ListServices)."""
    return openshell_pb2.SandboxResponse(sandbox=record.to_proto(), service_urls=service_urls)


class EmulatorServicer(openshell_pb2_grpc.OpenShellServicer):
    """Maps OpenShell RPCs onto one `Gateway`; holds the request log tests assert on."""

    def __init__(
        self,
        gateway: Gateway,
        auth_settings: auth.AuthSettings | None = None,
        watch_queue_size: int = DEFAULT_WATCH_QUEUE,
    ) -> None:
        self.gateway = gateway
        self.auth = auth_settings or auth.AuthSettings()
        self.watch_queue_size = watch_queue_size
        #: One dict per received RPC: method, x-request-id, traceparent, whether an
        #: authorization header was present (never its value), peer identity, result code.
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    # -- the transport layer ----------------------------------------------------------

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> auth.Principal:
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        request_id = metadata.get("x-request-id")
        cert_subject = ""
        auth_context = context.auth_context() or {}
        for cn in auth_context.get("x509_common_name", []):
            cert_subject = cn.decode() if isinstance(cn, bytes) else str(cn)
        self.requests.append(
            {
                "method": method,
                "x_request_id": request_id,
                "traceparent": metadata.get("traceparent"),
                "authorization": "authorization" in metadata,
                "client_cert_subject": cert_subject or None,
                "code": None,
            }
        )
        if request_id:
            await context.send_initial_metadata((("x-request-id", str(request_id)),))
        delay, fault = self.gateway.faults.before_rpc(method)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None:
            raise fault
        principal = auth.authorize(method, metadata.get("authorization"), self.auth, cert_subject)
        _CALLER.set((principal, self.gateway.default_workspace))
        self.gateway.tick()
        return principal

    async def _abort(self, context: grpc.aio.ServicerContext, error: GatewayError) -> NoReturn:
        if self.requests:
            self.requests[-1]["code"] = error.code.value
        await context.abort(
            grpc.StatusCode[error.code.value],
            error.message,
            trailing_metadata=(("grpc-status-details-bin", status_details(error)),),
        )
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        handler: Callable[[auth.Principal], T],
    ) -> T:
        try:
            principal = await self._enter(method, context)
            result = handler(principal)
        except GatewayError as error:
            await self._abort(context, error)
        if self.requests:
            self.requests[-1]["code"] = "OK"
        return result

    # -- gateway and identity ---------------------------------------------------------

    async def Health(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.HealthResponse:
            faults = self.gateway.faults
            degraded = bool(faults.errors or faults.latency)
            status = P.SERVICE_STATUS_DEGRADED if degraded else P.SERVICE_STATUS_HEALTHY
            return openshell_pb2.HealthResponse(
                status=status, version=self.gateway.settings.version
            )

        return await self._call("Health", context, handle)

    async def GetCurrentUser(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(who: auth.Principal) -> openshell_pb2.GetCurrentUserResponse:
            return openshell_pb2.GetCurrentUserResponse(
                subject=who.subject,
                display_name=who.subject,
                roles=list(who.roles),
                scopes=sorted(who.scopes),
                identity_provider=who.identity_provider,
            )

        return await self._call("GetCurrentUser", context, handle)

    async def GetGatewayInfo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.GetGatewayInfoResponse:
            settings = self.gateway.settings
            return openshell_pb2.GetGatewayInfoResponse(
                status=P.SERVICE_STATUS_HEALTHY,
                gateway_version=settings.version,
                compute_drivers=[openshell_pb2.ComputeDriverInfo(name=settings.driver)],
            )

        return await self._call("GetGatewayInfo", context, handle)

    # -- workspaces -------------------------------------------------------------------

    async def CreateWorkspace(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(who: auth.Principal) -> openshell_pb2.CreateWorkspaceResponse:
            auth.require_platform_admin(who)
            made = self.gateway.create_workspace(request.name, dict(request.labels))
            return openshell_pb2.CreateWorkspaceResponse(workspace=made.to_proto())

        return await self._call("CreateWorkspace", context, handle)

    async def GetWorkspace(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(who: auth.Principal) -> openshell_pb2.GetWorkspaceResponse:
            if request.name:
                auth.authorize_workspace(who, request.name)
            found = self.gateway.get_workspace(request.name)
            return openshell_pb2.GetWorkspaceResponse(workspace=found.to_proto())

        return await self._call("GetWorkspace", context, handle)

    async def ListWorkspaces(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(who: auth.Principal) -> openshell_pb2.ListWorkspacesResponse:
            page, token = self.gateway.list_workspaces(
                who.may_use,
                request.label_selector,
                request.page_size,
                request.page_token,
            )
            return openshell_pb2.ListWorkspacesResponse(
                workspaces=[w.to_proto() for w in page], next_page_token=token
            )

        return await self._call("ListWorkspaces", context, handle)

    async def DeleteWorkspace(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(who: auth.Principal) -> openshell_pb2.DeleteWorkspaceResponse:
            auth.require_platform_admin(who)
            outcome = self.gateway.delete_workspace(request.name, request.allow_missing)
            return openshell_pb2.DeleteWorkspaceResponse(outcome=outcome)

        return await self._call("DeleteWorkspace", context, handle)

    # -- sandboxes --------------------------------------------------------------------

    async def CreateSandbox(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.SandboxResponse:
            if not request.HasField("spec"):
                raise invalid_field("spec", "spec is required")
            record = self.gateway.create(
                _workspace(request.workspace_scope),
                request.name,
                request.spec,
                labels=dict(request.labels),
                annotations=dict(request.annotations),
                exposures=request.service_exposures,
            )
            urls = {service.name: service.url for service in record.services.values()}
            return _response(record, urls)

        return await self._call("CreateSandbox", context, handle)

    async def GetSandbox(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.SandboxResponse:
            return _response(self.gateway.get(_workspace(request.workspace_scope), request.name))

        return await self._call("GetSandbox", context, handle)

    async def ListSandboxes(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.ListSandboxesResponse:
            workspaces = _workspaces(self.gateway, request.workspace_scope)
            page, token = self.gateway.list_sandboxes(
                workspaces, request.label_selector, request.page_size, request.page_token
            )
            return openshell_pb2.ListSandboxesResponse(
                sandboxes=[r.to_proto() for r in page], next_page_token=token
            )

        return await self._call("ListSandboxes", context, handle)

    async def DeleteSandbox(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.DeleteSandboxResponse:
            outcome, sandbox_id = self.gateway.delete(
                _workspace(request.workspace_scope), request.name, request.allow_missing
            )
            return openshell_pb2.DeleteSandboxResponse(outcome=outcome, sandbox_id=sandbox_id)

        return await self._call("DeleteSandbox", context, handle)

    async def StopSandbox(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.SandboxResponse:
            return _response(self.gateway.stop(_workspace(request.workspace_scope), request.name))

        return await self._call("StopSandbox", context, handle)

    async def StartSandbox(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.SandboxResponse:
            return _response(self.gateway.start(_workspace(request.workspace_scope), request.name))

        return await self._call("StartSandbox", context, handle)

    # -- service endpoints ------------------------------------------------------------

    async def ExposeService(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.ServiceEndpointResponse:
            # `domain` is ignored: the gateway stores every endpoint as domain-routed.
            return self.gateway.expose_service(
                _workspace(request.workspace_scope),
                request.sandbox,
                request.name,
                request.target_port,
                request.authorization_mode,
            ).to_proto()

        return await self._call("ExposeService", context, handle)

    async def GetService(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.ServiceEndpointResponse:
            return self.gateway.get_service(
                _workspace(request.workspace_scope), request.sandbox, request.name
            ).to_proto()

        return await self._call("GetService", context, handle)

    async def ListServices(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.ListServicesResponse:
            scope = request.workspace_scope
            every = scope.WhichOneof("selection") == "all_workspaces"
            wanted = _workspaces(self.gateway, scope)  # the caller's right to them first
            page, token = self.gateway.list_services(
                None if every else wanted[0],
                request.sandbox,
                request.page_size,
                request.page_token,
            )
            return openshell_pb2.ListServicesResponse(
                services=[service.to_proto() for service in page], next_page_token=token
            )

        return await self._call("ListServices", context, handle)

    async def DeleteService(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.DeleteServiceResponse:
            outcome = self.gateway.delete_service(
                _workspace(request.workspace_scope),
                request.sandbox,
                request.name,
                request.allow_missing,
            )
            return openshell_pb2.DeleteServiceResponse(outcome=outcome)

        return await self._call("DeleteService", context, handle)

    # -- providers on a live sandbox ----------------------------------------------------

    async def AttachSandboxProvider(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.AttachSandboxProviderResponse:
            record, attached, receipt = self.gateway.attach_provider(
                _workspace(request.workspace_scope),
                request.sandbox,
                request.provider,
                request.expected_resource_version,
            )
            return openshell_pb2.AttachSandboxProviderResponse(
                sandbox=record.to_proto(), attached=attached, receipt=receipt.to_proto()
            )

        return await self._call("AttachSandboxProvider", context, handle)

    async def DetachSandboxProvider(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.DetachSandboxProviderResponse:
            record, detached, receipt = self.gateway.detach_provider(
                _workspace(request.workspace_scope),
                request.sandbox,
                request.provider,
                request.expected_resource_version,
            )
            return openshell_pb2.DetachSandboxProviderResponse(
                sandbox=record.to_proto(), detached=detached, receipt=receipt.to_proto()
            )

        return await self._call("DetachSandboxProvider", context, handle)

    async def GetSandboxProviderStatus(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.GetSandboxProviderStatusResponse:
            receipt, state, reason = self.gateway.provider_status(
                _workspace(request.workspace_scope),
                request.sandbox,
                request.provider,
                request.receipt_id,
            )
            status = openshell_pb2.ProviderReadinessStatus(
                receipt=receipt.to_proto(),
                state=state,
                reason=reason,
                evaluated_time=timestamp(self.gateway.clock.wall()),
            )
            return openshell_pb2.GetSandboxProviderStatusResponse(status=status)

        return await self._call("GetSandboxProviderStatus", context, handle)

    # -- configuration and policy -----------------------------------------------------

    async def UpdateConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.UpdateConfigResponse:
            if getattr(request, "global"):
                raise GatewayError(Code.UNIMPLEMENTED, "global configuration is not emulated")
            chosen = [
                name
                for name, present in (
                    ("policy", request.HasField("policy")),
                    ("setting_key", bool(request.setting_key)),
                    ("merge_operations", len(request.merge_operations) > 0),
                )
                if present
            ]
            if len(chosen) != 1:
                raise invalid_field(
                    "policy",
                    "exactly one of policy, setting_key or merge_operations must be set "
                    f"(got {', '.join(chosen) or 'none'})",
                )
            if not request.sandbox:
                raise invalid_field("sandbox", "sandbox name is required")
            ws = _workspace(request.workspace_scope)
            annotations = dict(request.annotations)
            if chosen[0] == "setting_key":
                revision, deleted = self.gateway.update_setting(
                    ws,
                    request.sandbox,
                    request.setting_key,
                    request.setting_value,
                    request.delete_setting,
                )
                return openshell_pb2.UpdateConfigResponse(
                    settings_revision=revision, deleted=deleted
                )
            if chosen[0] == "policy":
                rev = self.gateway.update_policy(
                    ws,
                    request.sandbox,
                    request.policy,
                    annotations,
                    request.expected_resource_version,
                )
            else:
                rev = self.gateway.merge_policy(
                    ws,
                    request.sandbox,
                    request.merge_operations,
                    annotations,
                    request.expected_resource_version,
                )
            return openshell_pb2.UpdateConfigResponse(
                version=rev.version, policy_hash=rev.policy_hash, annotations=rev.annotations
            )

        return await self._call("UpdateConfig", context, handle)

    async def GetSandboxPolicyStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.GetSandboxPolicyStatusResponse:
            rev, active = self.gateway.policy_status(
                _workspace(request.workspace_scope), request.sandbox, request.version
            )
            return openshell_pb2.GetSandboxPolicyStatusResponse(
                revision=rev.to_proto(), active_version=active
            )

        return await self._call("GetSandboxPolicyStatus", context, handle)

    async def ListSandboxPolicies(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.ListSandboxPoliciesResponse:
            record = self.gateway.get(_workspace(request.workspace_scope), request.sandbox)
            newest_first = [r.to_proto() for r in reversed(record.revisions)]
            return openshell_pb2.ListSandboxPoliciesResponse(revisions=newest_first)

        return await self._call("ListSandboxPolicies", context, handle)

    async def GetSandboxConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> sandbox_pb2.GetSandboxConfigResponse:
            record = self.gateway.get(_workspace(request.workspace_scope), request.name)
            response = sandbox_pb2.GetSandboxConfigResponse(
                settings_revision=record.settings_revision, workspace=record.workspace
            )
            for key, value in record.settings.items():
                response.settings[key].value.CopyFrom(value)
                response.settings[key].scope = sandbox_pb2.SETTING_SCOPE_SANDBOX
            latest = record.latest()
            if latest is not None:
                response.policy.CopyFrom(latest.policy)
                response.version = latest.version
                response.policy_hash = latest.policy_hash
            return response

        return await self._call("GetSandboxConfig", context, handle)

    # -- logs and watch ---------------------------------------------------------------

    async def GetSandboxLogs(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle(_: auth.Principal) -> openshell_pb2.GetSandboxLogsResponse:
            since = (
                request.since_time.ToNanoseconds() / 1e9 if request.HasField("since_time") else None
            )
            lines, total = self.gateway.logs(
                _workspace(request.workspace_scope),
                request.sandbox,
                request.lines,
                since,
                list(request.sources),
                request.min_level,
            )
            return openshell_pb2.GetSandboxLogsResponse(logs=lines, buffer_total=total)

        return await self._call("GetSandboxLogs", context, handle)

    async def WatchSandbox(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[openshell_pb2.SandboxStreamEvent]:
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue(maxsize=self.watch_queue_size)
        overflowed = False

        def listener(event: WatchEvent) -> None:
            nonlocal overflowed
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                overflowed = True  # the reader fell behind: the stream is cut below

        try:
            await self._enter("WatchSandbox", context)
            record = self.gateway.get(_workspace(request.workspace_scope), request.sandbox)
        except GatewayError as error:
            await self._abort(context, error)
        unsubscribe = self.gateway.subscribe(record.id, listener)
        sources, min_level = list(request.log_sources), request.log_min_level
        try:
            yield openshell_pb2.SandboxStreamEvent(sandbox=record.to_proto(), cursor="0")
            if request.follow_logs and request.log_tail_lines > 0:
                for line in list(record.logs)[-request.log_tail_lines :]:
                    if log_matches(line, None, sources, min_level):
                        yield openshell_pb2.SandboxStreamEvent(log=line, cursor="0")
            while True:
                event = await queue.get()
                if overflowed:
                    await self._abort(
                        context,
                        GatewayError(
                            Code.RESOURCE_EXHAUSTED, "watch consumer too slow; stream cut"
                        ),
                    )
                if event.kind == "deleted":
                    return
                cursor = str(event.cursor)
                if event.kind == "log" and request.follow_logs and event.log is not None:
                    if log_matches(event.log, None, sources, min_level):
                        yield openshell_pb2.SandboxStreamEvent(log=event.log, cursor=cursor)
                elif event.kind == "sandbox" and event.sandbox is not None:
                    if request.follow_status:
                        yield openshell_pb2.SandboxStreamEvent(sandbox=event.sandbox, cursor=cursor)
                    terminal = event.sandbox.status.phase in (
                        P.SANDBOX_PHASE_ERROR,
                        P.SANDBOX_PHASE_COMPLETED,
                    )
                    if request.stop_on_terminal and terminal:
                        return
        finally:
            unsubscribe()
