"""OCSF policy denials at fleet scale: one adaptive log poller per gateway.

OpenShell reports a sandbox's OCSF events as lines of its gateway log buffer; there is no
gateway-wide log stream, only per-sandbox calls. A stream per session (the first design)
costs a gRPC stream, its buffers and a task per session: at thousands of sessions that is
hundreds of MiB, and more streams than a gateway lets one connection hold. Instead, per
gateway, one task asks for the new lines of one sandbox at a time
(`GetSandboxLogs` since the last line seen, sandbox-sourced lines at level ERROR or OCSF
only), in order of due time:

- a sandbox is first asked `denial_poll_min_seconds` after it appears READY, and again
  after the same time while it keeps producing denials;
- each quiet answer doubles its interval, up to `denial_poll_max_seconds`;
- all of a gateway's calls share one token bucket (`denial_polls_per_second`), so the cost
  is bounded whatever the number of sessions, and memory is a few numbers per sandbox.

A busy sandbox is therefore watched closely and an idle one costs almost nothing; the
trade is latency for idle sandboxes (a denial after a long quiet spell is seen up to
`denial_poll_max_seconds` late, and the buffer must hold the lines until then). Each denial
counts in helmdeck_policy_denials_total at once; the first of a kind becomes a Warning
Event on the session, repeats one summary Event per window (`ocsf.Aggregator`).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from helmdeck_operator.core.naming import LABEL_FAMILY, session_of
from helmdeck_operator.core.plan import EventSpec
from helmdeck_operator.events import ObjectRef
from helmdeck_operator.gateway import models
from helmdeck_operator.gateway.errors import GatewayError
from helmdeck_operator.observability.ocsf import Aggregator, parse_denial
from helmdeck_operator.ratelimit import TokenBucket
from helmdeck_operator.runtime import Cache, Kind, Runtime
from helmdeck_operator.sandbox_cache import Ref
from helmdeck_operator.vocabulary import EventReason, EventType

__all__ = ["DenialPoller"]

logger = logging.getLogger(__name__)

#: Lines asked for per call: more than a quiet interval produces, bounded for a flood.
LINES_PER_POLL = 500
#: Only these lines can be denials: OCSF events come from the sandbox at level OCSF, which
#: no level filter removes; ERROR keeps the payload of a chatty sandbox small.
SOURCES = ("sandbox",)
MIN_LEVEL = "ERROR"


@dataclass(slots=True)
class _Sandbox:
    id: str
    ref: ObjectRef
    family: str
    interval: float
    since: datetime
    boundary: set[tuple[str, str]] = field(default_factory=set)
    """Lines at exactly `since` already seen (`since` is inclusive)."""


class DenialPoller:
    def __init__(self, rt: Runtime, cache: Cache) -> None:
        settings = rt.config.observability
        self.rt = rt
        self.cache = cache
        self._min = settings.denial_poll_min_seconds
        self._max = settings.denial_poll_max_seconds
        self._window = settings.denial_window_seconds
        self._bucket = TokenBucket(settings.denial_polls_per_second, 1)
        self._sandboxes: dict[Ref, _Sandbox] = {}
        self._due: list[tuple[float, Ref]] = []
        self._aggregators: dict[str, tuple[ObjectRef, Aggregator]] = {}
        self._started = False
        self._version = -1
        self.polls = 0

    async def run(self) -> None:
        refreshed = flushed = 0.0
        while True:
            now = time.monotonic()
            if now - refreshed >= self._min:
                refreshed = now
                self._refresh(now)
            if now - flushed >= self._window / 4:
                flushed = now
                self._flush(now)
            if not self._due or self._due[0][0] > now:
                wait = self._due[0][0] - now if self._due else self._min
                await asyncio.sleep(min(wait, self._min, self._window / 4))
                continue
            _, where = heapq.heappop(self._due)
            state = self._sandboxes.get(where)
            if state is None:
                continue  # gone since it was scheduled
            await self._bucket.take()
            await self._poll(where, state)
            heapq.heappush(self._due, (time.monotonic() + state.interval, where))

    def _refresh(self, now: float) -> None:
        """Start polling newly READY sandboxes of ours; stop for those that went."""
        if self.cache.version == self._version:
            return  # no sandbox came, went or changed phase since the last look
        self._version = self.cache.version
        present: set[Ref] = set()
        for sandbox in self.cache.sandboxes():
            if sandbox.phase is not models.SandboxPhase.READY or sandbox.deleting:
                continue
            owner = session_of(sandbox.labels, sandbox.annotations)
            if owner is None:
                continue
            where = (sandbox.workspace, sandbox.name)
            present.add(where)
            known = self._sandboxes.get(where)
            if known is not None and known.id == sandbox.id:
                continue
            namespace, name, uid = owner
            # A sandbox that was there before this process started may have had its
            # denials reported already: only what happens from now on is news. A new one's
            # lines count from its creation.
            since = sandbox.created_at if self._started else None
            self._sandboxes[where] = _Sandbox(
                id=sandbox.id,
                ref=self.rt.ref(Kind.SESSION, namespace, name, uid),
                family=sandbox.labels.get(LABEL_FAMILY, ""),
                interval=self._min,
                since=since or datetime.now(UTC),
            )
            heapq.heappush(self._due, (now + self._min, where))
        for gone in set(self._sandboxes) - present:
            del self._sandboxes[gone]
        self._started = self._started or self.cache.synced.is_set()

    async def _poll(self, where: Ref, state: _Sandbox) -> None:
        self.polls += 1
        workspace, name = where
        try:
            lines = await self.cache.client.get_sandbox_logs(
                name,
                lines=LINES_PER_POLL,
                sources=SOURCES,
                min_level=MIN_LEVEL,
                since=state.since,
                workspace=workspace,
            )
        except GatewayError as err:
            logger.debug("denials of %s/%s not read: %s", workspace, name, err)
            state.interval = min(self._max, state.interval * 2)
            return
        found = 0
        now = time.monotonic()
        for line in lines:
            if line.time is not None:
                mark = (line.time.isoformat(), line.message)
                if line.time < state.since or (line.time == state.since and mark in state.boundary):
                    continue
                if line.time > state.since:
                    state.since, state.boundary = line.time, set()
                state.boundary.add(mark)
            denial = parse_denial(line)
            if denial is None or denial.sandbox_id not in ("", state.id):
                continue
            found += 1
            ref, aggregator = self._aggregators.setdefault(
                state.ref.uid, (state.ref, Aggregator(window=self._window))
            )
            message = aggregator.add(denial, now)
            if message is not None:
                self.rt.events.post(
                    ref, EventSpec(EventType.WARNING, EventReason.POLICY_DENIED, message)
                )
        if found:
            self.rt.metrics.record_denials(state.ref.namespace, state.family, found)
            state.interval = self._min
        else:
            state.interval = min(self._max, state.interval * 2)

    def _flush(self, now: float) -> None:
        for uid, (ref, aggregator) in list(self._aggregators.items()):
            for summary in aggregator.flush(now):
                self.rt.events.post(
                    ref, EventSpec(EventType.WARNING, EventReason.POLICY_DENIED, summary)
                )
            if not aggregator.seen:
                del self._aggregators[uid]
