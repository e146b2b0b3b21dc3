"""The emulated OpenShell gateway as a plain-Python state machine.

Everything the gateway decides lives here: workspaces (the settings' ones exist from the
start, the first being the default; others are created and deleted by request), sandbox
records keyed by (workspace, name), the name rule, phases and their timed transitions,
deletion outcomes, policy revisions and the live-change rules, settings, service endpoints,
log buffers, and change notifications for watchers. No gRPC: calls either return records
or raise `GatewayError`; `servicer.py` adapts this to the wire.

Time is injected (`Clock`) and nothing happens on its own: timed transitions are due at a
monotonic instant and applied by `tick()`, which the server's driver task calls when the
next transition is due (and the servicer calls before each RPC). Unit tests can therefore
drive it with a `ManualClock` and no event loop. It is single-threaded by design: the server
runs every caller on one asyncio loop.
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from openshell._proto import openshell_pb2, sandbox_pb2

from helmdeck_operator.emulator import policy_rules, query, validation
from helmdeck_operator.emulator.clock import Clock, SystemClock
from helmdeck_operator.emulator.errors import Code, GatewayError, invalid_field
from helmdeck_operator.emulator.faults import Faults
from helmdeck_operator.emulator.model import (
    ProviderReceipt,
    Revision,
    SandboxRecord,
    ServiceRecord,
    WorkspaceRecord,
    phase_name,
    service_url,
    timestamp,
)
from helmdeck_operator.emulator.query import log_matches
from helmdeck_operator.emulator.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "WatchEvent", "log_matches"]

P = openshell_pb2  # phases and statuses are module-level enum values in the stubs

#: DNS-1123 label, at most MAX_ROUTABLE_NAME_LEN: the name is part of service URL hosts.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME_LEN = validation.MAX_ROUTABLE_NAME_LEN
#: Namespace of the emulated providers' ids: the same name in the same workspace keeps its id.
_PROVIDER_IDS = uuid.UUID("5d6f1c1e-9a0b-4e43-8f57-7c1d0b2a6e31")


def _provider_id(workspace: str, provider: str) -> str:
    return str(uuid.uuid5(_PROVIDER_IDS, f"{workspace}/{provider}"))


def _canonical_uuid(value: str) -> bool:
    """A receipt id as the gateway accepts it: a UUID in its canonical spelling, not nil."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return parsed.int != 0 and str(parsed) == value


@dataclass(frozen=True)
class WatchEvent:
    """A change a watcher hears about: a new sandbox snapshot, a log line, or deletion."""

    kind: str  # "sandbox" | "log" | "deleted"
    cursor: int
    sandbox: openshell_pb2.Sandbox | None = None
    log: openshell_pb2.SandboxLogLine | None = None


Listener = Callable[[WatchEvent], None]


@dataclass
class _Subscribers:
    by_id: dict[str, list[Listener]] = field(default_factory=dict)


class Gateway:
    """One emulated gateway: all sandboxes of all workspaces, and their policies."""

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        clock: Clock | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.settings = settings or GatewaySettings()
        self.clock = clock or SystemClock()
        self.faults = faults or Faults(self.clock)
        self._sandboxes: dict[tuple[str, str], SandboxRecord] = {}
        #: The records with a transition scheduled (what `tick` looks at).
        self._timed: dict[tuple[str, str], SandboxRecord] = {}
        #: Sequence numbers of the records, ascending (creation order): a page is found by
        #: bisection, not by sorting every record for every page.
        self._seqs: list[int] = []
        self._by_seq: dict[int, SandboxRecord] = {}
        self._seq = 0
        #: Service endpoints are numbered across the gateway: the order ListServices uses.
        self._service_seq = 0
        self._cursor = 0
        self._subs = _Subscribers()
        #: Every lifecycle event, kept after sandboxes are gone: proof of (no) restarts.
        self.events: list[dict[str, Any]] = []
        #: Called whenever a new transition is scheduled, so a driver can wake up early.
        self.on_schedule: Callable[[], None] | None = None
        self._workspaces: dict[str, WorkspaceRecord] = {}
        self._workspace_seq = 0
        for workspace in self.settings.workspaces:
            self._put_workspace(workspace, {})

    # -- time -------------------------------------------------------------------------

    def _schedule(self, record: SandboxRecord, delay: float) -> float:
        """The instant `delay` from now, at which `record` has a transition due."""
        self._timed[(record.workspace, record.name)] = record
        if self.on_schedule is not None:
            self.on_schedule()
        return self.clock.monotonic() + delay

    def next_due(self) -> float | None:
        """The earliest monotonic instant at which `tick` has something to do."""
        dues = [r.phase_due for r in self._timed.values() if r.phase_due is not None]
        dues += [
            rev.load_due
            for r in self._timed.values()
            for rev in r.revisions
            if rev.load_due is not None
        ]
        return min(dues, default=None)

    def tick(self) -> None:
        """Apply every transition that is due now (only records with one scheduled are
        looked at: a gateway with thousands of settled sandboxes ticks as fast as one)."""
        now = self.clock.monotonic()
        for key, record in list(self._timed.items()):
            if record.phase_due is not None and record.phase_due <= now:
                record.phase_due = None
                self._finish_transition(record)
            for rev in record.revisions:
                if rev.load_due is not None and rev.load_due <= now:
                    rev.load_due = None
                    if (
                        rev.status == P.POLICY_STATUS_PENDING
                        and record.phase == P.SANDBOX_PHASE_READY
                    ):
                        self._load(record, rev)
            settled = record.phase_due is None and all(
                rev.load_due is None for rev in record.revisions
            )
            if (settled or self._sandboxes.get(key) is not record) and self._timed.get(
                key
            ) is record:
                del self._timed[key]

    def _finish_transition(self, record: SandboxRecord) -> None:
        phase = record.phase
        if phase == P.SANDBOX_PHASE_DELETING:
            self._remove(record, "deleted")
        elif phase in (P.SANDBOX_PHASE_PROVISIONING, P.SANDBOX_PHASE_STARTING):
            failure = self.faults.take_boot_failure()
            if failure is not None:
                record.error_message, record.exit_code = failure, 1
                self._set_phase(record, P.SANDBOX_PHASE_ERROR, "error")
                return
            record.boots += 1
            self._set_phase(record, P.SANDBOX_PHASE_READY, "ready")
            latest = record.latest()
            if latest is not None and latest.status == P.POLICY_STATUS_PENDING:
                self._load(record, latest)  # the supervisor loads the newest policy at boot
        elif phase == P.SANDBOX_PHASE_STOPPING:
            self._set_phase(record, P.SANDBOX_PHASE_STOPPED, "stopped")

    # -- notifications and bookkeeping ------------------------------------------------

    def subscribe(self, sandbox_id: str, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change of this sandbox; returns the unsubscribe function."""
        self._subs.by_id.setdefault(sandbox_id, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._subs.by_id.get(sandbox_id, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._subs.by_id.pop(sandbox_id, None)

        return unsubscribe

    def _notify(self, record: SandboxRecord, kind: str, log: Any = None) -> None:
        self._cursor += 1
        if not self._subs.by_id.get(record.id):
            return  # nobody watches: no snapshot to build
        event = WatchEvent(
            kind=kind,
            cursor=self._cursor,
            sandbox=record.to_proto() if kind != "log" else None,
            log=log,
        )
        for listener in list(self._subs.by_id.get(record.id, [])):
            listener(event)

    def _event(self, record: SandboxRecord, event: str, **extra: Any) -> None:
        entry = {
            "time": self.clock.wall(),
            "workspace": record.workspace,
            "name": record.name,
            "id": record.id,
            "event": event,
            **extra,
        }
        record.history.append(entry)
        self.events.append(entry)

    def _changed(self, record: SandboxRecord) -> None:
        record.resource_version += 1
        record.updated = self.clock.wall()
        self._notify(record, "sandbox")

    def _set_phase(
        self, record: SandboxRecord, phase: openshell_pb2.SandboxPhase, event: str
    ) -> None:
        record.phase = phase
        self._event(record, event)
        self._gateway_log(record, f"sandbox phase {phase_name(phase)}")
        self._changed(record)

    def _remove(self, record: SandboxRecord, event: str) -> None:
        del self._sandboxes[(record.workspace, record.name)]
        del self._seqs[bisect.bisect_left(self._seqs, record.seq)]
        del self._by_seq[record.seq]
        self._event(record, event)
        self._notify(record, "deleted")

    # -- lookups ----------------------------------------------------------------------

    @property
    def default_workspace(self) -> str:
        """What a request that names no workspace addresses (the gateway's `default`)."""
        return self.settings.workspaces[0]

    def workspace(self, name: str, *, active: bool = False) -> str:
        """The workspace a single-workspace request addresses (the default when unnamed);
        NOT_FOUND when it does not exist. `active`: a call that creates something in it,
        refused while the workspace is being deleted."""
        name = name or self.default_workspace
        record = self._workspaces.get(name)
        if record is None:
            raise GatewayError(Code.NOT_FOUND, f"workspace '{name}' not found")
        if active and record.deleting:
            raise GatewayError(Code.FAILED_PRECONDITION, f"workspace '{name}' is being deleted")
        return name

    def workspace_names(self) -> list[str]:
        """Every workspace, in creation order (what `all_workspaces` addresses)."""
        return list(self._workspaces)

    def get(self, workspace: str, name: str) -> SandboxRecord:
        if not name:
            raise invalid_field("name", "sandbox name is required")
        record = self._sandboxes.get((self.workspace(workspace), name))
        if record is None:
            raise GatewayError(Code.NOT_FOUND, f"sandbox '{name}' not found")
        return record

    def find(self, workspace: str, name: str) -> SandboxRecord | None:
        return self._sandboxes.get((workspace, name))

    # -- workspaces -------------------------------------------------------------------

    def _put_workspace(self, name: str, labels: Mapping[str, str]) -> WorkspaceRecord:
        self._workspace_seq += 1
        record = WorkspaceRecord(
            name=name,
            id=str(uuid.uuid4()),
            seq=self._workspace_seq,
            labels=dict(labels),
            created=self.clock.wall(),
        )
        self._workspaces[name] = record
        return record

    def create_workspace(self, name: str, labels: Mapping[str, str]) -> WorkspaceRecord:
        """A new, empty workspace; ALREADY_EXISTS when the name is taken (even by one being
        deleted). Nobody becomes its member: platform admins reach every workspace."""
        validation.check_workspace_name(name)
        if name in self._workspaces:
            raise GatewayError(Code.ALREADY_EXISTS, "workspace already exists")
        return self._put_workspace(name, labels)

    def get_workspace(self, name: str) -> WorkspaceRecord:
        if not name:
            raise GatewayError(Code.INVALID_ARGUMENT, "name is required")
        record = self._workspaces.get(name)
        if record is None:
            raise GatewayError(Code.NOT_FOUND, "workspace not found")
        return record

    def list_workspaces(
        self,
        visible: Callable[[str], bool],
        label_selector: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[WorkspaceRecord], str]:
        """One page, in creation order, of the workspaces `visible` to the caller (a
        platform admin sees all, anyone else those it is a member of) whose labels match
        the equality selector; returns the next token."""
        selector = query.parse_selector(label_selector)
        request = ("ListWorkspaces", label_selector)
        size = query.page_size(page_size)
        after = query.decode_token(page_token, request)
        page, more = query.take_page(
            (
                record
                for record in self._workspaces.values()
                if record.seq > after
                and visible(record.name)
                and all(record.labels.get(k) == v for k, v in selector.items())
            ),
            size,
        )
        token = query.encode_token(page[-1].seq, request) if more else ""
        return page, token

    def delete_workspace(self, name: str, allow_missing: bool) -> openshell_pb2.DeletionOutcome:
        """Delete an empty workspace. As the gateway does, it is marked TERMINATING first
        and stays so when resources in it refuse the delete; the default one never goes."""
        if not name:
            raise GatewayError(Code.INVALID_ARGUMENT, "name is required")
        if name == self.default_workspace:
            raise GatewayError(Code.FAILED_PRECONDITION, "the default workspace cannot be deleted")
        record = self._workspaces.get(name)
        if record is None:
            if allow_missing:
                return P.DELETION_OUTCOME_ALREADY_ABSENT
            raise GatewayError(Code.NOT_FOUND, f"workspace '{name}' not found")
        if not record.deleting:
            record.deleting = True
            record.resource_version += 1
        held = [r for r in self._sandboxes.values() if r.workspace == name]
        blocking = ["sandbox"] if held else []
        if any(r.services for r in held):
            blocking.append("service")
        if blocking:
            raise GatewayError(
                Code.FAILED_PRECONDITION,
                f"workspace '{name}' still contains resources: {', '.join(blocking)}",
            )
        del self._workspaces[name]
        return P.DELETION_OUTCOME_COMPLETED

    # -- sandboxes --------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if len(name) > _MAX_NAME_LEN:
            raise invalid_field(
                "name", f"must be at most {_MAX_NAME_LEN} characters (got {len(name)})"
            )
        if not _NAME_RE.match(name):
            raise invalid_field(
                "name",
                "must be a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit",
            )

    def create(
        self,
        workspace: str,
        name: str,
        spec: openshell_pb2.SandboxSpec,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        exposures: Sequence[openshell_pb2.SandboxServiceExposure] = (),
    ) -> SandboxRecord:
        """Store a new sandbox in PROVISIONING; its policy (if any) becomes version 1 and its
        exposures its first service endpoints. A refused request stores nothing."""
        ws = self.workspace(workspace, active=True)
        exposed = validation.check_service_exposures(exposures)
        name = name or f"sandbox-{uuid.uuid4().hex[:8]}"
        self._check_name(name)
        validation.check_sandbox_spec(spec)
        for provider in spec.providers:
            if provider not in self.settings.providers:
                raise GatewayError(
                    Code.FAILED_PRECONDITION, f"provider '{provider}' not found in workspace '{ws}'"
                )
        if (ws, name) in self._sandboxes:
            raise GatewayError(Code.ALREADY_EXISTS, f"sandbox '{name}' already exists")
        self._seq += 1
        now = self.clock.wall()
        record = SandboxRecord(
            workspace=ws,
            name=name,
            id=str(uuid.uuid4()),
            seq=self._seq,
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            spec=openshell_pb2.SandboxSpec(),
            created=now,
            updated=now,
        )
        record.spec.CopyFrom(spec)
        record.logs = type(record.logs)(maxlen=self.settings.log_buffer)
        if spec.HasField("policy"):
            self._store_revision(record, spec.policy, {})
        for service, port, mode in exposed:
            self._put_service(record, service, port, mode)
        record.phase_due = self._schedule(record, self.faults.boot_delay(self.settings.ready_delay))
        self._sandboxes[(ws, name)] = record
        self._seqs.append(record.seq)  # sequence numbers only grow: the list stays sorted
        self._by_seq[record.seq] = record
        self._event(record, "created")
        self._gateway_log(record, "sandbox created")
        return record

    def list_sandboxes(
        self,
        workspaces: Iterable[str],
        label_selector: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[SandboxRecord], str]:
        """One page in creation order, filtered by an equality selector; returns next token."""
        wanted = set(workspaces)
        selector = query.parse_selector(label_selector)
        request = ("ListSandboxes", label_selector, *sorted(wanted))
        size = query.page_size(page_size)
        after = query.decode_token(page_token, request)
        following = (
            self._by_seq[seq] for seq in self._seqs[bisect.bisect_right(self._seqs, after) :]
        )
        page, more = query.take_page(
            (
                record
                for record in following
                if record.workspace in wanted
                and all(record.labels.get(k) == v for k, v in selector.items())
            ),
            size,
        )
        token = query.encode_token(page[-1].seq, request) if more else ""
        return page, token

    def delete(
        self, workspace: str, name: str, allow_missing: bool
    ) -> tuple[openshell_pb2.DeletionOutcome, str]:
        """Start deleting; returns (DeletionOutcome, sandbox id)."""
        ws = self.workspace(workspace)
        record = self._sandboxes.get((ws, name))
        if record is None:
            if allow_missing:
                return P.DELETION_OUTCOME_ALREADY_ABSENT, ""
            raise GatewayError(Code.NOT_FOUND, f"sandbox '{name}' not found")
        if record.phase == P.SANDBOX_PHASE_DELETING:
            return P.DELETION_OUTCOME_ACCEPTED, record.id
        if self.settings.delete_delay <= 0:
            self._remove(record, "deleted")
            return P.DELETION_OUTCOME_COMPLETED, record.id
        record.deletion_time = self.clock.wall()
        record.phase_due = self._schedule(record, self.settings.delete_delay)
        self._set_phase(record, P.SANDBOX_PHASE_DELETING, "deleting")
        return P.DELETION_OUTCOME_ACCEPTED, record.id

    def stop(self, workspace: str, name: str) -> SandboxRecord:
        record = self.get(workspace, name)
        if record.phase in (P.SANDBOX_PHASE_STOPPING, P.SANDBOX_PHASE_STOPPED):
            return record  # repeating a stop is a no-op
        if record.phase != P.SANDBOX_PHASE_READY:
            raise GatewayError(
                Code.FAILED_PRECONDITION,
                f"sandbox '{name}' cannot be stopped in phase {phase_name(record.phase)}",
            )
        record.phase_due = self._schedule(record, self.settings.stop_delay)
        self._set_phase(record, P.SANDBOX_PHASE_STOPPING, "stopping")
        return record

    def start(self, workspace: str, name: str) -> SandboxRecord:
        record = self.get(workspace, name)
        if record.phase in (P.SANDBOX_PHASE_STARTING, P.SANDBOX_PHASE_READY):
            return record  # repeating a start is a no-op
        if record.phase != P.SANDBOX_PHASE_STOPPED:
            raise GatewayError(
                Code.FAILED_PRECONDITION,
                f"sandbox '{name}' cannot be started in phase {phase_name(record.phase)}",
            )
        record.phase_due = self._schedule(record, self.faults.boot_delay(self.settings.start_delay))
        self._set_phase(record, P.SANDBOX_PHASE_STARTING, "starting")
        return record

    # -- faults acting on sandboxes ---------------------------------------------------

    def vanish(self, workspace: str, name: str) -> SandboxRecord:
        """Remove a sandbox behind the client's back (no DELETING phase, no request)."""
        record = self.get(workspace, name)
        self._remove(record, "vanished")
        return record

    def force_error(
        self, workspace: str, name: str, message: str = "main process exited", exit_code: int = 1
    ) -> SandboxRecord:
        """Put a sandbox in ERROR as if its main process had exited."""
        record = self.get(workspace, name)
        if record.phase == P.SANDBOX_PHASE_DELETING:
            raise GatewayError(Code.FAILED_PRECONDITION, f"sandbox '{name}' is being deleted")
        record.phase_due = None
        record.error_message, record.exit_code = message, exit_code
        self._set_phase(record, P.SANDBOX_PHASE_ERROR, "error")
        return record

    # -- policy and settings ----------------------------------------------------------

    def _store_revision(
        self, record: SandboxRecord, policy: sandbox_pb2.SandboxPolicy, annotations: dict[str, str]
    ) -> Revision:
        for older in record.revisions:
            if older.status == P.POLICY_STATUS_PENDING:
                older.status, older.load_due = P.POLICY_STATUS_SUPERSEDED, None
        stored = sandbox_pb2.SandboxPolicy()
        stored.CopyFrom(policy)
        rev = Revision(
            version=len(record.revisions) + 1,
            policy=stored,
            policy_hash=policy_rules.policy_hash(stored),
            annotations=annotations,
            created=self.clock.wall(),
        )
        record.revisions.append(rev)
        if record.phase == P.SANDBOX_PHASE_READY:
            rev.load_due = self._schedule(record, self.settings.load_delay)
        return rev

    def _load(self, record: SandboxRecord, rev: Revision) -> None:
        error = self.faults.take_load_failure(record.workspace, record.name)
        if error is not None:
            rev.status, rev.load_error = P.POLICY_STATUS_FAILED, error
            self._event(record, "policy-failed", version=rev.version)
        else:
            rev.status, rev.loaded = P.POLICY_STATUS_LOADED, self.clock.wall()
            record.current_policy_version = rev.version
            self._event(record, "policy-loaded", version=rev.version)
            self.append_log(
                record.workspace,
                record.name,
                f"CONFIG:LOADED [INFO] policy version {rev.version} loaded "
                f"[policy_hash:{rev.policy_hash}]",
                level="OCSF",
                target="ocsf",
                source="sandbox",
                fields={"class_uid": "5019", "policy_version": str(rev.version)},
            )
        self._changed(record)

    def update_policy(
        self,
        workspace: str,
        name: str,
        policy: sandbox_pb2.SandboxPolicy,
        annotations: Mapping[str, str],
        expected_resource_version: int = 0,
    ) -> Revision:
        """Store `policy` as the next revision, or return the latest if identical."""
        record = self._updatable(workspace, name, expected_resource_version)
        validation.check_policy(policy)
        baseline = record.revision(1)
        policy_rules.check_live_change(baseline.policy if baseline else None, policy)
        latest = record.latest()
        digest = policy_rules.policy_hash(policy)
        if (
            latest is not None
            and latest.policy_hash == digest
            and latest.annotations == dict(annotations)
            and latest.status != P.POLICY_STATUS_FAILED
        ):
            return latest
        rev = self._store_revision(record, policy, dict(annotations))
        self._event(record, "policy-stored", version=rev.version)
        self._changed(record)
        return rev

    def merge_policy(
        self,
        workspace: str,
        name: str,
        operations: Iterable[openshell_pb2.PolicyMergeOperation],
        annotations: Mapping[str, str],
        expected_resource_version: int = 0,
    ) -> Revision:
        record = self._updatable(workspace, name, expected_resource_version)
        latest = record.latest()
        base = latest.policy if latest else sandbox_pb2.SandboxPolicy(version=1)
        merged = policy_rules.apply_merge_operations(base, operations)
        return self.update_policy(workspace, name, merged, annotations, expected_resource_version)

    def update_setting(
        self,
        workspace: str,
        name: str,
        key: str,
        value: sandbox_pb2.SettingValue,
        delete: bool,
    ) -> tuple[int, bool]:
        """Set or delete one sandbox setting; returns (settings_revision, deleted)."""
        record = self._updatable(workspace, name, 0)
        deleted = False
        if delete:
            deleted = record.settings.pop(key, None) is not None
        else:
            stored = sandbox_pb2.SettingValue()
            stored.CopyFrom(value)
            record.settings[key] = stored
        record.settings_revision += 1
        self._changed(record)
        return record.settings_revision, deleted

    def _updatable(self, workspace: str, name: str, expected: int) -> SandboxRecord:
        record = self.get(workspace, name)
        if record.phase == P.SANDBOX_PHASE_DELETING:
            raise GatewayError(Code.FAILED_PRECONDITION, f"sandbox '{name}' is being deleted")
        self._compare(record, expected, "update config")
        return record

    def policy_status(self, workspace: str, name: str, version: int) -> tuple[Revision, int]:
        """(the revision asked for, or the latest when 0; the active version)."""
        record = self.get(workspace, name)
        rev = record.latest() if version == 0 else record.revision(version)
        if rev is None:
            what = "no policy revision" if version == 0 else f"policy version {version}"
            raise GatewayError(Code.NOT_FOUND, f"{what} found for sandbox '{name}'")
        return rev, record.current_policy_version

    # -- service endpoints --------------------------------------------------------------

    def _service_sandbox(self, workspace: str, sandbox: str) -> SandboxRecord:
        """The sandbox a service or provider call names, in any phase. The gateway answers
        a missing sandbox and one the caller may not see alike, so the message names neither."""
        if not sandbox:
            raise GatewayError(Code.INVALID_ARGUMENT, "sandbox is required")
        record = self._sandboxes.get((self.workspace(workspace), sandbox))
        if record is None:
            raise GatewayError(Code.NOT_FOUND, "sandbox not found")
        return record

    def _put_service(
        self,
        record: SandboxRecord,
        name: str,
        port: int,
        mode: openshell_pb2.ServiceAuthorizationMode,
    ) -> ServiceRecord:
        """Create or replace the endpoint `name` of `record` (the sandbox is unchanged)."""
        old = record.services.get(name)
        if old is not None:
            service = replace(
                old, port=port, authorization=mode, resource_version=old.resource_version + 1
            )
        else:
            self._service_seq += 1
            service = ServiceRecord(
                workspace=record.workspace,
                sandbox=record.name,
                sandbox_id=record.id,
                name=name,
                port=port,
                authorization=mode,
                url=service_url(self.settings.url_domain, record.workspace, record.name, name),
                id=str(uuid.uuid4()),
                seq=self._service_seq,
                created=self.clock.wall(),
            )
        record.services[name] = service
        return service

    def expose_service(
        self, workspace: str, sandbox: str, name: str, port: int, mode: int
    ) -> ServiceRecord:
        """Create or replace (same name) a service endpoint; no phase is required."""
        record = self._service_sandbox(workspace, sandbox)
        stored = validation.check_service_exposure(name, port, mode)
        return self._put_service(record, name, port, stored)

    def get_service(self, workspace: str, sandbox: str, name: str) -> ServiceRecord:
        record = self._service_sandbox(workspace, sandbox)
        validation.check_endpoint_name("service", name)
        service = record.services.get(name)
        if service is None:
            raise GatewayError(Code.NOT_FOUND, "service endpoint not found")
        return service

    def delete_service(
        self, workspace: str, sandbox: str, name: str, allow_missing: bool
    ) -> openshell_pb2.DeletionOutcome:
        record = self._service_sandbox(workspace, sandbox)
        validation.check_endpoint_name("service", name)
        if record.services.pop(name, None) is not None:
            return P.DELETION_OUTCOME_COMPLETED
        if allow_missing:
            return P.DELETION_OUTCOME_ALREADY_ABSENT
        raise GatewayError(Code.NOT_FOUND, "service endpoint not found")

    def list_services(
        self, workspace: str | None, sandbox: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[list[ServiceRecord], str]:
        """One page of endpoints in creation order, of one sandbox or of the workspace
        (`workspace` None: of every workspace); returns the next token."""
        if sandbox:
            validation.check_endpoint_name("sandbox", sandbox)
            if workspace is None:
                raise GatewayError(
                    Code.INVALID_ARGUMENT, "sandbox filter is not supported with all_workspaces"
                )
            owner = self._service_sandbox(workspace, sandbox)
            scope, candidates = owner.workspace, list(owner.services.values())
        else:
            wanted = tuple(self._workspaces) if workspace is None else (self.workspace(workspace),)
            scope = "*" if workspace is None else wanted[0]
            candidates = sorted(
                (
                    service
                    for record in self._sandboxes.values()
                    if record.workspace in wanted
                    for service in record.services.values()
                ),
                key=lambda service: service.seq,
            )
        request = ("ListServices", sandbox, scope)
        size = query.page_size(page_size)
        after = query.decode_token(page_token, request)
        page, more = query.take_page((s for s in candidates if s.seq > after), size)
        token = query.encode_token(page[-1].seq, request) if more else ""
        return page, token

    # -- providers on a live sandbox ----------------------------------------------------

    def attach_provider(
        self, workspace: str, sandbox: str, provider: str, expected_resource_version: int
    ) -> tuple[SandboxRecord, bool, ProviderReceipt]:
        """Add `provider` to the sandbox's providers: (the sandbox, whether this call added
        it, its receipt). Checked in the gateway's order: sandbox, name, provider known,
        the 32-provider limit, then the compare-and-set."""
        record = self._service_sandbox(workspace, sandbox)
        validation.check_provider_name(provider)
        if provider not in self.settings.providers:
            raise GatewayError(Code.FAILED_PRECONDITION, f"provider '{provider}' not found")
        providers = record.spec.providers
        if len(providers) >= validation.MAX_PROVIDERS and provider not in providers:
            raise GatewayError(
                Code.INVALID_ARGUMENT,
                f"providers list exceeds maximum ({validation.MAX_PROVIDERS})",
            )
        self._compare(record, expected_resource_version, "attach sandbox provider")
        mutation = str(uuid.uuid4())
        attached = provider not in providers
        if attached:
            providers.append(provider)
        self._provider_mutation(record, mutation, attached)
        kind = P.PROVIDER_MUTATION_KIND_ATTACH
        return record, attached, self._receipt(record, provider, kind, mutation)

    def detach_provider(
        self, workspace: str, sandbox: str, provider: str, expected_resource_version: int
    ) -> tuple[SandboxRecord, bool, ProviderReceipt]:
        """Remove `provider` from the sandbox's providers: (the sandbox, whether this call
        removed it, its receipt). Detaching one not attached (or unknown) is no error."""
        record = self._service_sandbox(workspace, sandbox)
        validation.check_provider_name(provider)
        self._compare(record, expected_resource_version, "detach sandbox provider")
        mutation = str(uuid.uuid4())
        kept = [name for name in record.spec.providers if name != provider]
        detached = len(kept) != len(record.spec.providers)
        if detached:
            del record.spec.providers[:]
            record.spec.providers.extend(kept)
        self._provider_mutation(record, mutation, detached)
        kind = P.PROVIDER_MUTATION_KIND_DETACH
        return record, detached, self._receipt(record, provider, kind, mutation)

    def provider_status(
        self, workspace: str, sandbox: str, provider: str, receipt_id: str
    ) -> tuple[
        ProviderReceipt, openshell_pb2.ProviderReadinessState, openshell_pb2.ProviderReadinessReason
    ]:
        """(receipt, state, reason) of a receipt, or of a new OBSERVE receipt of `provider`'s
        present attachment when no receipt is named."""
        record = self._service_sandbox(workspace, sandbox)
        if len(provider) > validation.MAX_NAME_LEN:
            raise GatewayError(Code.INVALID_ARGUMENT, "provider exceeds maximum length")
        if not receipt_id:
            if not provider:
                raise GatewayError(Code.INVALID_ARGUMENT, "provider or receipt_id is required")
            if provider not in self.settings.providers:
                raise GatewayError(Code.NOT_FOUND, "provider not found")
            kind = P.PROVIDER_MUTATION_KIND_OBSERVE
            receipt = self._receipt(record, provider, kind, str(uuid.uuid4()))
        else:
            if not _canonical_uuid(receipt_id):
                raise GatewayError(Code.INVALID_ARGUMENT, "invalid readiness instance identity")
            found = record.receipts.get(receipt_id)
            if found is None or (provider and found.provider != provider):
                raise GatewayError(Code.NOT_FOUND, "provider receipt not found")
            receipt = found
        return (receipt, *self._readiness(record, receipt))

    def _compare(self, record: SandboxRecord, expected: int, operation: str) -> None:
        """The compare-and-set of a provider call: 0 takes the current version."""
        if expected and expected != record.resource_version:
            raise GatewayError(
                Code.ABORTED,
                f"{operation} failed due to concurrent modification "
                f"(current resource_version: {record.resource_version})",
            )

    def _provider_mutation(self, record: SandboxRecord, mutation: str, changed: bool) -> None:
        """A change of the provider set takes a new attachment epoch (the first call sets
        one in any case); the record is written, and its version moves, either way."""
        if changed or not record.spec.provider_attachment_epoch:
            record.spec.provider_attachment_epoch = mutation
        if changed:
            self._event(record, "providers", providers=list(record.spec.providers))
        self._changed(record)

    def _receipt(
        self,
        record: SandboxRecord,
        provider: str,
        kind: openshell_pb2.ProviderMutationKind,
        mutation: str,
    ) -> ProviderReceipt:
        attached = provider in record.spec.providers
        receipt = ProviderReceipt(
            receipt_id=str(uuid.uuid4()),
            mutation_id=mutation,
            provider=provider,
            workspace=record.workspace,
            kind=kind,
            sandbox_id=record.id,
            sandbox=record.name,
            attachment_epoch=record.spec.provider_attachment_epoch,
            provider_id=_provider_id(record.workspace, provider) if attached else "",
            provider_resource_version=1 if attached else 0,
            persisted=self.clock.wall(),
        )
        record.receipts[receipt.receipt_id] = receipt
        return receipt

    def _readiness(
        self, record: SandboxRecord, receipt: ProviderReceipt
    ) -> tuple[openshell_pb2.ProviderReadinessState, openshell_pb2.ProviderReadinessReason]:
        """The gateway's evaluation, with a supervisor that installs what it is given at
        once: superseded by a later change of the provider set, pending while the sandbox
        is not READY, failed without a gateway policy, else ready (revoked for a detach)."""
        attached = receipt.provider in record.spec.providers
        current = (
            record.spec.provider_attachment_epoch,
            _provider_id(record.workspace, receipt.provider) if attached else "",
        )
        if current != (receipt.attachment_epoch, receipt.provider_id):
            return P.PROVIDER_READINESS_STATE_SUPERSEDED, (
                P.PROVIDER_READINESS_REASON_DESIRED_STATE_CHANGED
            )
        if not record.revisions:
            return P.PROVIDER_READINESS_STATE_FAILED, P.PROVIDER_READINESS_REASON_LOCAL_POLICY
        if record.phase != P.SANDBOX_PHASE_READY:
            return P.PROVIDER_READINESS_STATE_PENDING, (
                P.PROVIDER_READINESS_REASON_SUPERVISOR_DISCONNECTED
            )
        state = P.PROVIDER_READINESS_STATE_READY if attached else P.PROVIDER_READINESS_STATE_REVOKED
        return state, P.PROVIDER_READINESS_REASON_UNSPECIFIED

    # -- logs -------------------------------------------------------------------------

    def append_log(
        self,
        workspace: str,
        name: str,
        message: str,
        level: str = "INFO",
        target: str = "",
        source: str = "sandbox",
        fields: Mapping[str, str] | None = None,
    ) -> openshell_pb2.SandboxLogLine:
        record = self.get(workspace, name)
        line = openshell_pb2.SandboxLogLine(
            sandbox_id=record.id,
            event_time=timestamp(self.clock.wall()),
            level=level,
            target=target,
            message=message,
            source=source,
            fields=dict(fields or {}),
        )
        record.logs.append(line)
        self._notify(record, "log", line)
        return line

    def _gateway_log(self, record: SandboxRecord, message: str) -> None:
        if (record.workspace, record.name) in self._sandboxes:
            self.append_log(record.workspace, record.name, message, source="gateway")

    def logs(
        self,
        workspace: str,
        name: str,
        lines: int = 0,
        since: float | None = None,
        sources: Iterable[str] = (),
        min_level: str = "",
    ) -> tuple[list[openshell_pb2.SandboxLogLine], int]:
        """Buffered lines matching the filters (the last `lines` when > 0), and the total."""
        record = self.get(workspace, name)
        selected = [line for line in record.logs if log_matches(line, since, sources, min_level)]
        if lines > 0:
            selected = selected[-lines:]
        return selected, len(record.logs)

    # -- snapshots --------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """All sandboxes, revisions and lifecycle events as plain data, for assertions."""
        self.tick()
        return {
            "sandboxes": [
                r.to_dict() for r in sorted(self._sandboxes.values(), key=lambda r: r.seq)
            ],
            "workspaces": [w.to_dict() for w in self._workspaces.values()],
            "events": list(self.events),
            "faults": self.faults.to_dict(),
        }
