"""The scale benchmark's own apiserver traffic: bulk writes and one watch, over aiohttp.

kubectl per object costs a process start and a TLS handshake each (about 100 ms), and a
list every poll interval loads the apiserver with the very work being measured, so the
benchmark talks HTTP itself: one keep-alive connection pool, a fixed number of requests in
flight for bulk creates, status writes and deletes (`Kube.bulk`), and a single watch stream
per namespace (`SessionWatch`) whose events are timestamped on arrival.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

__all__ = ["GROUP", "ApiError", "Kube", "SessionWatch", "Tracker"]

GROUP = "/apis/helmdeck.dev/v1alpha1"
#: Failures worth retrying (the apiserver sheds load with 429 and 5xx answers).
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
RETRIES = 6
REQUEST_TIMEOUT_S = 120.0
#: Ask the apiserver to end the watch this often; it is resumed from the last
#: resourceVersion, so reconnects are routine (and counted) rather than a surprise.
WATCH_TIMEOUT_S = 300
LIST_PAGE = 500
#: One sample of the apiserver's request counter, with its labels.
REQUEST_SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="([^"]*)"')

T = TypeVar("T")
Obj = dict[str, Any]


class ApiError(RuntimeError):
    """An apiserver answer other than the expected success."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


class Kube:
    """Keep-alive HTTPS to the apiserver as an admin (token), JSON in and out."""

    def __init__(self, server: str, token: str, ca_file: Path) -> None:
        self.server = server
        self.token = token
        self.ssl = ssl.create_default_context(cafile=str(ca_file))
        self.retries = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        self._session = aiohttp.ClientSession(
            base_url=self.server,
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=100, keepalive_timeout=120),
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Kube as an async context manager"
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> Obj:
        """One call; retried on connection errors, 429 and 5xx. {} for a 404 if missing_ok."""
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in range(RETRIES):
            try:
                async with self.http.request(
                    method,
                    path,
                    data=data,
                    headers=headers,
                    params=params,
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                ) as resp:
                    text = await resp.text()
                    if resp.status < 300:
                        result: Obj = json.loads(text) if text else {}
                        return result
                    if resp.status == 404 and missing_ok:
                        return {}
                    if resp.status == 409 and method == "POST" and attempt > 0:
                        return {}  # an earlier attempt got through before its answer was lost
                    if resp.status not in RETRY_STATUS or attempt == RETRIES - 1:
                        raise ApiError(method, path, resp.status, text)
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt == RETRIES - 1:
                    raise
            self.retries += 1
            await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    async def bulk(
        items: Iterable[T], call: Callable[[T], Awaitable[None]], concurrency: int
    ) -> None:
        """`call(item)` for every item with at most `concurrency` in flight, in order."""
        iterator = iter(items)

        async def worker() -> None:
            for item in iterator:  # shared: each item is taken by exactly one worker
                await call(item)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    # -- paths and helpers ----------------------------------------------------------------

    @staticmethod
    def sessions(namespace: str, name: str = "", sub: str = "") -> str:
        path = f"{GROUP}/namespaces/{namespace}/helmdecksessions"
        return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    @staticmethod
    def policies(namespace: str, name: str = "") -> str:
        return f"{GROUP}/namespaces/{namespace}/sidecarpolicies" + (f"/{name}" if name else "")

    async def request_counts(self) -> collections.Counter[str]:
        """Requests the apiserver has served so far (`apiserver_request_total` from its
        /metrics), summed by "VERB resource[/subresource]": the difference over a phase shows
        what the operator asked of the apiserver, write by write."""
        async with self.http.get("/metrics", headers={"Accept": "text/plain"}) as resp:
            if resp.status != 200:
                raise ApiError("GET", "/metrics", resp.status, await resp.text())
            text = await resp.text()
        counts: collections.Counter[str] = collections.Counter()
        for labels, value in REQUEST_SAMPLE.findall(text):
            tags = dict(LABEL.findall(labels))
            what = tags.get("resource", "") + (
                f"/{tags['subresource']}" if tags.get("subresource") else ""
            )
            counts[f"{tags.get('verb', '?')} {what}"] += int(float(value))
        return counts

    async def list_all(self, path: str) -> tuple[list[Obj], str]:
        """Every item of a collection (paged) and the list's resourceVersion."""
        items: list[Obj] = []
        params = {"limit": str(LIST_PAGE)}
        while True:
            page = await self.request("GET", path, params=params)
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            params = {"limit": str(LIST_PAGE), "continue": str(meta["continue"])}

    async def count_at_most_one(self, path: str) -> int:
        """0 when the collection is empty, else 1: a cheap emptiness check."""
        page = await self.request("GET", path, params={"limit": "1"})
        return len(page.get("items") or [])

    async def wait_empty(self, path: str, timeout_s: float, poll: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout_s
        while await self.count_at_most_one(path):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(poll)
        return True

    async def wait_gone(self, path: str, timeout_s: float, poll: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout_s
        while await self.request("GET", path, missing_ok=True):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(poll)
        return True


class Tracker:
    """When each of `names` met `predicate`: first time (`first`), and since when it has met
    it without interruption (`since`, None while it does not)."""

    def __init__(self, predicate: Callable[[Obj], bool], names: Iterable[str]) -> None:
        self.predicate = predicate
        self.names = set(names)
        self.first: dict[str, float] = {}
        self.since: dict[str, float | None] = dict.fromkeys(self.names)
        self.all_first = asyncio.Event()
        self.all_now = asyncio.Event()
        self._meeting = 0
        if not self.names:
            self.all_first.set()
            self.all_now.set()

    def observe(self, name: str, obj: Obj | None, at: float) -> None:
        if name not in self.names:
            return
        ok = obj is not None and self.predicate(obj)
        if ok and name not in self.first:
            self.first[name] = at
            if len(self.first) == len(self.names):
                self.all_first.set()
        was = self.since[name] is not None
        if ok and not was:
            self.since[name] = at
            self._meeting += 1
        elif not ok and was:
            self.since[name] = None
            self._meeting -= 1
        if self._meeting == len(self.names):
            self.all_now.set()
        else:
            self.all_now.clear()


class SessionWatch:
    """One watch on a namespace's HelmdeckSessions, resumed from the last resourceVersion
    whenever it ends; keeps each session's latest object and feeds registered trackers."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.path = Kube.sessions(namespace)
        self.objects: dict[str, Obj] = {}
        self.uids: dict[str, str] = {}
        self.deleted_at: dict[str, float] = {}
        self.events = 0
        self.reconnects = 0
        self.relists = 0
        self.errors: list[str] = []
        self.resource_version = ""
        self.established = asyncio.Event()
        self._trackers: list[Tracker] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        """List once (the namespace is expected to be empty), then open the watch and
        return once the apiserver has answered it."""
        await self._relist()
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.established.wait(), timeout_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def track(self, predicate: Callable[[Obj], bool], names: Iterable[str]) -> Tracker:
        """A tracker fed by every later event, primed with the current objects."""
        tracker = Tracker(predicate, names)
        now = time.monotonic()
        for name in tracker.names:
            tracker.observe(name, self.objects.get(name), now)
        self._trackers.append(tracker)
        return tracker

    def untrack(self, tracker: Tracker) -> None:
        with contextlib.suppress(ValueError):
            self._trackers.remove(tracker)

    async def _relist(self) -> None:
        items, self.resource_version = await self.kube.list_all(self.path)
        now = time.monotonic()
        listed = {item["metadata"]["name"]: item for item in items}
        for name in list(self.objects):
            if name not in listed:
                self._apply("DELETED", self.objects[name], now)
        for item in items:
            self._apply("MODIFIED", item, now)

    def _apply(self, kind: str, obj: Obj, at: float) -> None:
        meta = obj.get("metadata") or {}
        self.resource_version = str(meta.get("resourceVersion") or self.resource_version)
        if kind == "BOOKMARK":
            return
        name = str(meta["name"])
        self.events += 1
        if kind == "DELETED":
            self.objects.pop(name, None)
            self.deleted_at.setdefault(name, at)
            current: Obj | None = None
        else:
            self.objects[name] = obj
            self.uids[name] = str(meta.get("uid", ""))
            self.deleted_at.pop(name, None)  # a name reused after deletion
            current = obj
        for tracker in self._trackers:
            tracker.observe(name, current, at)

    async def _run(self) -> None:
        while True:
            try:
                await self._stream()
            except _Expired:
                self.relists += 1
                await self._relist()
                continue
            except (aiohttp.ClientError, TimeoutError, ApiError) as err:
                self.errors.append(f"{type(err).__name__}: {err}")
                await asyncio.sleep(0.5)
            self.reconnects += 1

    async def _stream(self) -> None:
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            "timeoutSeconds": str(WATCH_TIMEOUT_S),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
        async with self.kube.http.get(self.path, params=params, timeout=timeout) as resp:
            if resp.status == 410:
                raise _Expired
            if resp.status != 200:
                raise ApiError("WATCH", self.path, resp.status, await resp.text())
            self.established.set()
            buffer = b""
            async for chunk in resp.content.iter_any():
                at = time.monotonic()  # arrival, before any parsing
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._event(json.loads(line), at)

    def _event(self, event: Obj, at: float) -> None:
        kind, obj = str(event.get("type")), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired
            self.errors.append(f"watch ERROR event: {obj.get('message')}")
            return
        self._apply(kind, obj, at)


class _Expired(Exception):
    """The resourceVersion to resume from is too old: list again."""
