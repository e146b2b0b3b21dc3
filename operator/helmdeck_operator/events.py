"""Kubernetes Events, posted the way client-go's recorder posts them: never a storm.

kopf posts every event as a new object, one after another, in the order they come; its own
docstring leaves aggregation and rate limits to the client. At a thousand sessions that is
thousands of writes competing with the status writes that matter. This recorder:

- **posts in the background**: `post` never waits; reconcile passes do not slow down for
  Events, and Events never delay a status write;
- **correlates repeats**: the same (object, type, reason, message) within
  `SERIES_WINDOW_S` is one Event whose `count` and `lastTimestamp` are patched at most
  every `SERIES_FLUSH_S`, as `kubectl describe` shows (`x12 over 5m`);
- **filters spam per object**: each object may start `PER_OBJECT_BURST` new Events, then
  one per `PER_OBJECT_REFILL_S` (client-go's defaults: 25, then one per 5 minutes);
- **folds storms across objects**: of the Events with one reason about objects of one
  kind in one namespace, the first `STORM_BURST` of each `STORM_WINDOW_S` are posted as
  they are, the rest become one summary Event on the Namespace at the end of the window
  ("990 more HelmdeckSessions: Ready (s0010, s0011, ... and 985 more)"). A thousand
  sessions applied at once post a few dozen Events, not two thousand; each session's
  status and conditions still say everything about it;
- **bounds the rate and the backlog**: all Event writes share one token bucket
  (`qps`, `burst`), and at most `backlog` wait; beyond that they are dropped and counted
  (helmdeck_events_dropped_total), as client-go drops on a full broadcaster.

What is posted is decided elsewhere (the reconcile passes); see docs/reconcile.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from helmdeck_operator.core.conditions import format_time
from helmdeck_operator.core.plan import EventSpec
from helmdeck_operator.kube import Kube, KubeError
from helmdeck_operator.ratelimit import TokenBucket
from helmdeck_operator.tasks import cancel_and_wait
from helmdeck_operator.vocabulary import EventReason, EventType, Reason

__all__ = ["STORM_BURST", "STORM_WINDOW_S", "EventRecorder", "ObjectRef"]

logger = logging.getLogger(__name__)

#: A repeat within this long counts on the existing Event instead of making a new one.
SERIES_WINDOW_S = 600.0
#: A counted repeat is written at most this often per Event.
SERIES_FLUSH_S = 30.0
#: client-go's spam filter: new Events an object may start at once, then one per refill.
PER_OBJECT_BURST = 25
PER_OBJECT_REFILL_S = 300.0
#: A storm: more new Events than this with one (namespace, kind, type, reason) in one
#: window; the rest of the window is one summary Event on the namespace.
STORM_BURST = 10
STORM_WINDOW_S = 10.0
#: Object names a storm summary lists before "and N more".
STORM_NAMES = 5
#: How often the poster looks for storm windows to close.
TICK_S = 1.0
#: Objects (and series) remembered; the least recently used are forgotten beyond these.
MAX_OBJECTS = 20000
MAX_SERIES = 20000
#: Kubernetes refuses longer messages.
MAX_MESSAGE = 1024
COMPONENT = "helmdeck-operator"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about (`involvedObject`)."""

    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str


@dataclass(slots=True)
class _Series:
    name: str = ""
    """The Event object's name once created ('' while its create is queued)."""
    namespace: str = ""
    count: int = 1
    written: int = 1
    """The count the API holds."""
    first: datetime = field(default_factory=lambda: datetime.now(UTC))
    last: datetime = field(default_factory=lambda: datetime.now(UTC))
    flushed: float = 0.0


@dataclass(slots=True)
class _Storm:
    started: float
    posted: int = 0
    folded: int = 0
    names: list[str] = field(default_factory=list)
    sample: str = ""


@dataclass(slots=True)
class _Tokens:
    tokens: float
    stamp: float


@dataclass(frozen=True, slots=True)
class _Write:
    ref: ObjectRef
    event: EventSpec
    series: _Series
    create: bool


class EventRecorder:
    def __init__(
        self,
        kube: Kube,
        *,
        qps: float,
        burst: int,
        backlog: int,
        on_drop: Callable[[str], None] = lambda reason: None,
        instance: str = COMPONENT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._bucket = TokenBucket(qps, burst, clock=clock)
        self._backlog: deque[_Write] = deque()
        self._limit = backlog
        self._on_drop = on_drop
        self._instance = instance
        self._clock = clock
        self._series: OrderedDict[tuple[str, EventType, str, str], _Series] = OrderedDict()
        self._objects: OrderedDict[str, _Tokens] = OrderedDict()
        self._storms: dict[tuple[str, str, EventType, EventReason | Reason], _Storm] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.posted = 0
        self.dropped = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-recorder")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    def post(self, ref: ObjectRef, event: EventSpec) -> None:
        """Record one Event about `ref`; returns at once."""
        message = _shorten(event.message)
        key = (ref.uid, event.type, event.reason, message)
        now = self._clock()
        series = self._series.get(key)
        if series is not None and (datetime.now(UTC) - series.first).total_seconds() < (
            SERIES_WINDOW_S
        ):
            series.count += 1
            series.last = datetime.now(UTC)
            self._series.move_to_end(key)
            if series.name and now - series.flushed >= SERIES_FLUSH_S:
                self._enqueue(_Write(ref, event, series, create=False))
            return
        if not self._spam_allows(ref.uid, now):
            self._drop(event.reason)
            return
        if self._folded(ref, event, message, now):
            return
        series = _Series()
        self._series[key] = series
        if len(self._series) > MAX_SERIES:
            self._series.popitem(last=False)
        self._enqueue(_Write(ref, EventSpec(event.type, event.reason, message), series, True))

    def forget(self, uid: str) -> None:
        """The object is gone: flush nothing more for it, free its memory."""
        self._objects.pop(uid, None)
        for key in [k for k in self._series if k[0] == uid]:
            del self._series[key]

    def _spam_allows(self, uid: str, now: float) -> bool:
        tokens = self._objects.get(uid)
        if tokens is None:
            tokens = _Tokens(PER_OBJECT_BURST, now)
            self._objects[uid] = tokens
            if len(self._objects) > MAX_OBJECTS:
                self._objects.popitem(last=False)
        else:
            self._objects.move_to_end(uid)
            tokens.tokens = min(
                PER_OBJECT_BURST, tokens.tokens + (now - tokens.stamp) / PER_OBJECT_REFILL_S
            )
            tokens.stamp = now
        if tokens.tokens < 1:
            return False
        tokens.tokens -= 1
        return True

    def _folded(self, ref: ObjectRef, event: EventSpec, message: str, now: float) -> bool:
        """Count the Event into its storm window; True when it is folded into the summary."""
        key = (ref.namespace, ref.kind, event.type, event.reason)
        storm = self._storms.get(key)
        if storm is None or now - storm.started >= STORM_WINDOW_S:
            if storm is not None:
                self._summarize(key, storm)
            storm = self._storms[key] = _Storm(now)
        if storm.posted < STORM_BURST:
            storm.posted += 1
            return False
        storm.folded += 1
        if len(storm.names) < STORM_NAMES:
            storm.names.append(ref.name)
        storm.sample = storm.sample or message
        return True

    def _close_storms(self, now: float) -> None:
        for key, storm in list(self._storms.items()):
            if now - storm.started >= STORM_WINDOW_S:
                del self._storms[key]
                self._summarize(key, storm)

    def _summarize(
        self, key: tuple[str, str, EventType, EventReason | Reason], storm: _Storm
    ) -> None:
        if not storm.folded:
            return
        namespace, kind, type_, reason = key
        names = ", ".join(storm.names)
        more = storm.folded - len(storm.names)
        listed = f"{names} and {more} more" if more > 0 else names
        message = (
            f"{storm.folded} more {kind}s: {reason} ({listed}) within {STORM_WINDOW_S:.0f}s; "
            f"the first said: {storm.sample}"
        )
        ref = ObjectRef("Namespace", "v1", namespace, namespace, "")
        series = _Series()
        self._enqueue(_Write(ref, EventSpec(type_, reason, _shorten(message)), series, True))

    def _enqueue(self, write: _Write) -> None:
        if len(self._backlog) >= self._limit:
            self._drop(write.event.reason)
            return
        self._backlog.append(write)
        self._ready.set()

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        self._on_drop(reason)

    async def _run(self) -> None:
        flushed = self._clock()
        while True:
            if not self._backlog:
                self._ready.clear()
                # asyncio.timeout, not wait_for: in Python 3.11 wait_for swallows a
                # cancellation that arrives as the event is set, and close() then hangs.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_S):
                        await self._ready.wait()
            now = self._clock()
            self._close_storms(now)
            if now - flushed >= SERIES_FLUSH_S:
                flushed = now
                self._flush_counts()
            while self._backlog:
                write = self._backlog.popleft()
                await self._bucket.take()
                await self._write(write)

    def _flush_counts(self) -> None:
        """Queue a count patch for every series with unwritten repeats."""
        for series in self._series.values():
            if series.name and series.count > series.written:
                self._backlog.append(_Write(_NO_REF, _NO_EVENT, series, create=False))

    async def _write(self, write: _Write) -> None:
        series, ref = write.series, write.ref
        try:
            if write.create:
                series.name = await self._kube.create_event(
                    ref.namespace,
                    {
                        "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
                        "involvedObject": {
                            "kind": ref.kind,
                            "apiVersion": ref.api_version,
                            "namespace": ref.namespace,
                            "name": ref.name,
                            "uid": ref.uid,
                        },
                        "type": write.event.type,
                        "reason": write.event.reason,
                        "message": write.event.message,
                        "count": series.count,
                        "firstTimestamp": format_time(series.first),
                        "lastTimestamp": format_time(series.last),
                        "source": {"component": COMPONENT},
                        "reportingComponent": COMPONENT,
                        "reportingInstance": self._instance,
                    },
                )
                series.namespace = ref.namespace
            elif series.count > series.written:
                await self._kube.patch_event(
                    series.namespace, series.name, series.count, format_time(series.last)
                )
            else:
                return  # already written by an earlier flush
            series.written = series.count
            series.flushed = self._clock()
            self.posted += 1
        except KubeError as err:
            # An Event is a courtesy: losing one is logged, never retried in a loop.
            if write.create:
                logger.info("could not post Event %s: %s", write.event.reason, err)
            else:
                logger.info("could not update the count of Event %s: %s", series.name, err)


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    half = MAX_MESSAGE // 2 - 2
    return f"{message[:half]}...{message[-half:]}"


_NO_REF = ObjectRef("", "", "", "", "")
#: What a count patch carries, never read: it writes only the count of an existing Event.
_NO_EVENT = EventSpec(EventType.NORMAL, EventReason.PROVISIONED, "")
