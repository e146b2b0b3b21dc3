"""What the operator knows about one gateway's sandboxes: one `SandboxCache` per gateway.

Reconcile passes read sandboxes from here instead of asking the gateway, and a sandbox that
changes wakes exactly its session. The cache is kept current three ways:

- **Snapshots**: a paginated `ListSandboxes`, filtered by this instance's managed-by label
  (across all workspaces when the gateway gives each namespace its own; a sandbox in a
  workspace it cannot belong to is not admitted: see `admits`), at start-up (nothing is
  reconciled on a gateway before its first snapshot) and every `resync_seconds`. A
  snapshot is how drift is caught (a sandbox deleted or failed behind the operator's
  back), batched per gateway: one call for all sandboxes, never one per session. Only
  sandboxes whose `resource_version` moved wake their session.
- **Watches for sandboxes in transition**: a pass that waits on the gateway (provisioning,
  a policy loading, stopping, starting, deleting) asks to `follow` its sandbox; the cache
  opens a `WatchSandbox` status stream for it, so READY or LOADED is seen when it happens,
  not a poll later, and closes it when the pass no longer waits (`unfollow`). At most
  `max_watches` streams are open per gateway (a gateway caps concurrent streams per
  connection); sandboxes beyond that are observed by a snapshot every `pending_seconds`
  while any is waiting.
- **Action results**: a create, stop, start, delete or policy push records what the gateway
  answered (`put`, `put_revision`, `mark_deleting`, `drop`), so the next pass sees it even
  before a stream reports it.

Sandboxes are known by (workspace, name): a name is unique only within its workspace.

The cache also knows whether its gateway answers. A failed snapshot, a stream cut for
good, or a worker's call failing with an outage code marks it **down**: passes then report
the gateway's error without calling it, failing keys are `park`ed here instead of backing
off on their own, sessions are told after `outage_grace_seconds` (so their Ready turns
Unknown), and a snapshot is retried every `pending_seconds`. The first one that succeeds
marks it up again and wakes everything parked and every session with a sandbox here at
once (the controller bounds the rate): recovery is driven by the gateway coming back, not
by each session's back-off running out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from helmdeck_operator.core.observation import loaded_pair
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.errors import GatewayCredentialsError, GatewayError
from helmdeck_operator.tasks import cancel_and_wait

__all__ = ["OUTAGE_CODES", "Ref", "SandboxCache", "is_outage"]

logger = logging.getLogger(__name__)

#: While followed sandboxes wait for a stream, the gateway is listed this often, as a share
#: of `pending_seconds`: a load or a boot is seen within a quarter second by default.
TRANSITION_LISTING_SHARE = 0.25
#: ... but a listing starts at most every LISTING_DUTY times as long as the last one took:
#: with thousands of sandboxes in a fan-out, listing never takes more than a fifth of the time.
LISTING_DUTY = 5.0
#: gRPC codes that mean "the gateway cannot be reached", as opposed to an answer.
OUTAGE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})

K = TypeVar("K", bound=Hashable)
Ref = tuple[str, str]
"""(workspace, name): where a sandbox is, since a name is unique only within a workspace."""


def is_outage(err: GatewayError) -> bool:
    """The gateway did not answer (or we could not even authenticate to ask it)."""
    return err.code in OUTAGE_CODES or isinstance(err, GatewayCredentialsError)


@dataclass(slots=True)
class _Entry:
    sandbox: models.Sandbox
    seen: float
    """Monotonic time of the last report; a snapshot started later may remove the entry."""
    loaded: tuple[int, str] | None
    """The last (version, hash) seen accepted: names the loaded revision after a newer one
    is stored on top of it."""
    service_urls: Mapping[str, str] | None
    """Endpoint URLs by port name, known from the create's answer or the operator's own
    service calls (the gateway's other sandbox responses do not carry them)."""
    exposed: str | None = None
    """The ports digest those endpoints match (`core.session.ports_digest`), when known."""


def _observable(sandbox: models.Sandbox) -> tuple[object, ...]:
    """What a reconcile reads of a sandbox: a change of anything else wakes nobody."""
    admission = sandbox.admission
    return (
        sandbox.id,
        sandbox.phase,
        sandbox.deleting,
        sandbox.current_policy_version,
        None
        if admission is None
        else (admission.state, admission.policy_version, admission.policy_hash, admission.error),
        sandbox.restart_count,
        sandbox.exit_code,
        tuple(c.message for c in sandbox.conditions),
        tuple(sorted(sandbox.annotations.items())),
        sandbox.providers,
    )


class SandboxCache(Generic[K]):
    """`K`: the reconcile key type; `key_of` gives a sandbox's session key (None: not one
    of ours), `notify` queues one key, `wake_many` many at a bounded rate. With
    `all_workspaces` the snapshots list every workspace (one call, a platform admin's
    right); `admits` keeps out what a listing returns that cannot be ours."""

    def __init__(
        self,
        client: GatewayClient,
        *,
        selector: Mapping[str, str],
        key_of: Callable[[models.Sandbox], K | None],
        notify: Callable[[K], None],
        wake_many: Callable[[Iterable[K]], None],
        resync_seconds: float,
        pending_seconds: float,
        max_watches: int,
        outage_grace_seconds: float,
        group_label: str | None = None,
        all_workspaces: bool = False,
        admits: Callable[[models.Sandbox], bool] = lambda _: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._selector = dict(selector)
        self._all_workspaces = all_workspaces
        self._admits = admits
        self._key_of = key_of
        self._notify = notify
        self._wake_many = wake_many
        self._resync = resync_seconds
        self._pending = pending_seconds
        self._max_watches = max_watches
        self._grace = outage_grace_seconds
        self._clock = clock
        self._entries: dict[Ref, _Entry] = {}
        self._group_label = group_label
        self._groups: dict[str, set[Ref]] = {}
        """Sandboxes by the value of `group_label` (a pool's sandboxes by its UID)."""
        self._wanted: set[Ref] = set()
        self._watches: dict[Ref, asyncio.Task[None]] = {}
        self._waiting: dict[Ref, None] = {}
        """Followed sandboxes without a stream (no slot, or the gateway is down), in order."""
        self._parked: set[K] = set()
        self._kick = asyncio.Event()
        self._lister: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        self.up = True
        self.error: GatewayError | None = None
        self._down_since = 0.0
        self._announced = False
        self.snapshots = 0
        self._last_listing = 0.0
        self.version = 0
        """Moves whenever a sandbox appears, goes or changes in what a reconcile reads: a
        reader that went over all sandboxes need not again until it moves."""

    @property
    def name(self) -> str:
        return self.client.name

    # -- life -------------------------------------------------------------------------

    def start(self) -> None:
        if self._lister is None:
            self._lister = asyncio.create_task(self._run(), name=f"sandbox-cache-{self.name}")

    async def close(self) -> None:
        await cancel_and_wait(t for t in (self._lister, *self._watches.values()) if t is not None)
        self._watches.clear()

    # -- reading ----------------------------------------------------------------------

    def get(self, workspace: str, name: str) -> models.Sandbox | None:
        entry = self._entries.get((workspace, name))
        return entry.sandbox if entry is not None else None

    def locate(self, workspaces: Iterable[str], name: str) -> str | None:
        """The first of `workspaces` that holds a sandbox `name`, if any."""
        return next((w for w in workspaces if (w, name) in self._entries), None)

    def remembered_load(self, workspace: str, name: str) -> tuple[int, str] | None:
        entry = self._entries.get((workspace, name))
        return entry.loaded if entry is not None else None

    def service_urls(self, workspace: str, name: str) -> Mapping[str, str] | None:
        """The sandbox's endpoint URLs, or None when not known here."""
        entry = self._entries.get((workspace, name))
        return entry.service_urls if entry is not None else None

    def exposed(self, workspace: str, name: str) -> str | None:
        """The ports digest the sandbox's endpoints are known to match, if known here."""
        entry = self._entries.get((workspace, name))
        return entry.exposed if entry is not None else None

    def sandboxes(self) -> list[models.Sandbox]:
        return [entry.sandbox for entry in self._entries.values()]

    def group(self, value: str) -> list[models.Sandbox]:
        """The sandboxes whose `group_label` is `value`, without going over all of them."""
        return [self._entries[ref].sandbox for ref in self._groups.get(value, ())]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def watches(self) -> int:
        return len(self._watches)

    # -- what only the gateway can tell, asked once -------------------------------------

    async def lookup_revision_hash(self, workspace: str, name: str, version: int) -> str | None:
        """The hash of one stored policy version (versions never change, so it is kept)."""
        found = await self.client.get_policy_status(name, version, workspace=workspace)
        if found is None:
            return None
        entry = self._entries.get((workspace, name))
        if entry is not None and entry.sandbox.current_policy_version == version:
            self._entries[(workspace, name)] = replace(entry, loaded=(version, found.revision.hash))
        return found.revision.hash

    # -- what the operator's own actions reported --------------------------------------

    def put(self, sandbox: models.Sandbox) -> None:
        """Record an action's answer; it does not wake the session (its pass acted)."""
        self._update(sandbox, notify=False)

    def put_services(
        self, workspace: str, name: str, urls: Mapping[str, str], exposed: str | None
    ) -> None:
        """The sandbox's endpoints are `urls`, matching the ports digest `exposed`."""
        entry = self._entries.get((workspace, name))
        if entry is not None:
            entry.service_urls, entry.exposed = dict(urls), exposed

    def put_revision(self, workspace: str, name: str, revision: models.PolicyRevision) -> None:
        """A policy push was stored as `revision`: the sandbox is now loading it."""
        entry = self._entries.get((workspace, name))
        if entry is None:
            return
        admission = entry.sandbox.admission
        if admission is not None and admission.policy_version == revision.version:
            return  # an identical policy: the gateway kept the version it had
        pending = models.PolicyAdmission(
            models.AdmissionState.PENDING, revision.version, revision.hash
        )
        self._entries[(workspace, name)] = replace(
            entry, sandbox=replace(entry.sandbox, admission=pending), seen=self._clock()
        )
        self.version += 1

    def mark_deleting(self, workspace: str, name: str) -> None:
        entry = self._entries.get((workspace, name))
        if entry is not None:
            self._entries[(workspace, name)] = replace(
                entry, sandbox=replace(entry.sandbox, deleting=True), seen=self._clock()
            )
            self.version += 1

    def deleted(self, workspace: str, name: str, gone: bool) -> None:
        """The operator's delete was answered: the sandbox is `gone`, or the gateway
        accepted it and shows it DELETING until its driver confirms."""
        if gone:
            self.drop(workspace, name)
        else:
            self.mark_deleting(workspace, name)

    def drop(self, workspace: str, name: str) -> None:
        """The gateway confirmed the sandbox gone."""
        if self._remove((workspace, name)) is not None:
            self.version += 1

    def _remove(self, ref: Ref) -> _Entry | None:
        entry = self._entries.pop(ref, None)
        value = entry.sandbox.labels.get(self._group_label or "") if entry else None
        group = self._groups.get(value) if value else None
        if value and group is not None:
            group.discard(ref)
            if not group:
                del self._groups[value]
        return entry

    # -- transitions ------------------------------------------------------------------

    def follow(self, workspace: str, name: str) -> None:
        """Watch the sandbox until `unfollow`: its changes wake its session when they happen."""
        ref = (workspace, name)
        if ref in self._wanted:
            return
        self._wanted.add(ref)
        self._waiting[ref] = None
        self._promote()

    def unfollow(self, workspace: str, name: str) -> None:
        ref = (workspace, name)
        self._wanted.discard(ref)
        self._waiting.pop(ref, None)
        task = self._watches.pop(ref, None)
        if task is not None:
            task.cancel()
            self._promote()

    def following(self, workspace: str, name: str) -> bool:
        return (workspace, name) in self._wanted

    def _promote(self) -> None:
        """Give free stream slots to waiting sandboxes, while few wait: a stream is seen at
        once but costs a call and a teardown each, while one listing serves any number. So
        when more sandboxes wait than there are slots (a burst, a fan-out), none are
        promoted and the listings at the transition pace see them all."""
        while (
            self.up
            and self._waiting
            and len(self._watches) < self._max_watches
            and len(self._waiting) <= self._max_watches
        ):
            ref = next(iter(self._waiting))
            del self._waiting[ref]
            self._watches[ref] = asyncio.create_task(
                self._watch(ref), name=f"watch-{ref[0]}/{ref[1]}"
            )
        if self._waiting:
            self._kick.set()

    async def _watch(self, ref: Ref) -> None:
        opened = self._clock()
        sandbox_id = ""
        task = asyncio.current_task()
        workspace, name = ref
        try:
            stream = self.client.watch_sandbox(name, workspace=workspace)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if event.sandbox is not None:
                        sandbox_id = event.sandbox.id
                        self._update(event.sandbox)
            self._vanished(ref, sandbox_id, opened)
        except GatewayError as err:
            # The client already retried; the stream is lost until the gateway answers.
            logger.info("gateway %s: watch of %s/%s ended: %s", self.name, workspace, name, err)
            self.report(err)
            if ref in self._wanted:
                self._waiting[ref] = None
        finally:
            if self._watches.get(ref) is task:
                del self._watches[ref]
                self._promote()

    def _vanished(self, ref: Ref, sandbox_id: str, since: float) -> None:
        """A watch ended: the gateway removed the sandbox (or never had it)."""
        self._wanted.discard(ref)
        entry = self._entries.get(ref)
        if entry is None:
            return
        if entry.sandbox.id == sandbox_id or (not sandbox_id and entry.seen < since):
            self._remove(ref)
            self.version += 1
            key = self._key_of(entry.sandbox)
            if key is not None:
                self._notify(key)

    # -- the gateway's health ---------------------------------------------------------

    def report(self, err: GatewayError) -> None:
        """A call failed; an outage marks the gateway down until a snapshot succeeds."""
        if is_outage(err):
            self._mark_down(err)

    def park(self, key: K) -> None:
        """Wake `key` when the gateway answers again (or when the first snapshot lands)."""
        self._parked.add(key)

    def _mark_down(self, err: GatewayError) -> None:
        self.error = err
        if self.up:
            logger.warning("gateway %s is not answering: %s", self.name, err)
            self.up = False
            self._down_since = self._clock()
            self._announced = False
            self._kick.set()

    def _mark_up(self) -> None:
        was_down, announced = not self.up, self._announced
        self.up, self.error, self._announced = True, None, False
        if was_down:
            logger.info("gateway %s answers again", self.name)
        # What waited with work to do (creates, deletes) first, then the sessions that only
        # have to say the gateway answers again.
        woken: list[K] = list(self._parked)
        if announced:
            woken += [key for key in self._keys() if key not in self._parked]
        self._parked.clear()
        if woken:
            self._wake_many(woken)
        self._promote()

    def _keys(self) -> set[K]:
        keys = (self._key_of(entry.sandbox) for entry in self._entries.values())
        return {key for key in keys if key is not None}

    # -- snapshots --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            began = self._clock()
            if await self._snapshot():
                self.synced.set()
                self._mark_up()
            elif not self._announced and self._clock() - self._down_since >= self._grace:
                # Down long enough to tell every session that its gateway is not answering.
                self._announced = True
                self._wake_many(self._keys() | self._parked)
            await self._pace(began)

    async def _pace(self, began: float) -> None:
        """Wait until the next snapshot is due, measured from the start of the last one: a
        resync when all is quiet, sooner while sandboxes in transition have no stream, the
        gateway is down or not listed yet. A kick (the state changed) recomputes the pace."""
        while True:
            if not self.up or not self.synced.is_set():
                wait = self._pending
            elif self._waiting:
                # At the transition pace, but never listing more than a fifth of the time.
                wait = max(
                    self._pending * TRANSITION_LISTING_SHARE,
                    LISTING_DUTY * self._last_listing,
                )
            else:
                wait = self._resync
            left = began + wait - self._clock()
            if left <= 0:
                return
            self._kick.clear()
            try:
                async with asyncio.timeout(left):  # not wait_for: see EventRecorder._run
                    await self._kick.wait()
            except TimeoutError:
                return

    async def _snapshot(self) -> bool:
        started = self._clock()
        try:
            listed = await self.client.list_sandboxes(
                self._selector, known=self._known, all_workspaces=self._all_workspaces
            )
        except GatewayError as err:
            self._mark_down(err)  # a gateway the cache cannot list cannot be observed
            return False
        self._last_listing = self._clock() - started
        self.snapshots += 1
        refs = set()
        for sandbox in listed:
            refs.add((sandbox.workspace, sandbox.name))
            self._update(sandbox)
        for ref, entry in list(self._entries.items()):
            if ref not in refs and entry.seen < started:
                self._remove(ref)
                self.version += 1
                key = self._key_of(entry.sandbox)
                if key is not None:
                    self._notify(key)
        return True

    def _known(
        self, workspace: str, name: str, sandbox_id: str, resource_version: int
    ) -> models.Sandbox | None:
        """The cached sandbox when it is the listed one at the listed version."""
        entry = self._entries.get((workspace, name))
        if (
            entry is not None
            and entry.sandbox.id == sandbox_id
            and entry.sandbox.resource_version == resource_version
        ):
            return entry.sandbox
        return None

    def _update(self, sandbox: models.Sandbox, *, notify: bool = True) -> None:
        if not self._admits(sandbox):
            return
        now = self._clock()
        ref = (sandbox.workspace, sandbox.name)
        entry = self._entries.get(ref)
        same = entry is not None and entry.sandbox.id == sandbox.id
        if entry is not None and same:
            if entry.sandbox.resource_version > sandbox.resource_version:
                return  # an older report than the one we hold
            if entry.sandbox.resource_version == sandbox.resource_version:
                entry.seen = now  # the same report again: nothing new, nothing allocated
                return
        loaded = loaded_pair(sandbox) or (entry.loaded if entry is not None and same else None)
        urls, exposed = (entry.service_urls, entry.exposed) if same and entry else (None, None)
        if entry is not None and not same:
            self._remove(ref)  # another sandbox of that name: maybe another group
        self._entries[ref] = _Entry(sandbox, now, loaded, urls, exposed)
        if self._group_label is not None and (value := sandbox.labels.get(self._group_label)):
            self._groups.setdefault(value, set()).add(ref)
        if entry is not None and _observable(entry.sandbox) == _observable(sandbox):
            return  # a new version, but nothing a reconcile reads has changed
        self.version += 1
        if notify:
            key = self._key_of(sandbox)
            if key is not None:
                self._notify(key)
