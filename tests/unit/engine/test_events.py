"""The Event recorder: posts in the background, correlates repeats into counts, filters
per-object spam, bounds its backlog; all without ever blocking the caller."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from helmdeck_operator import events as events_module
from helmdeck_operator.core.plan import EventSpec
from helmdeck_operator.events import EventRecorder, ObjectRef
from helmdeck_operator.kube import Kube

REF = ObjectRef("HelmdeckSession", "helmdeck.dev/v1alpha1", "team", "s1", "uid-1")
READY = EventSpec("Normal", "Ready", "sandbox hd-x is ready")


class ApiEdge:
    """Stands in for the Kubernetes edge: records the Event writes it is asked for."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, int]] = []

    async def create_event(self, namespace: str, body: Any) -> str:
        self.created.append(dict(body))
        return f"{body['involvedObject']['name']}.{len(self.created)}"

    async def patch_event(self, namespace: str, name: str, count: int, last: str) -> None:
        self.patched.append((name, count))


def recorder(api: ApiEdge, **limits: Any) -> EventRecorder:
    settings = {"qps": 0, "burst": 1, "backlog": 100}
    settings.update(limits)
    return EventRecorder(cast(Kube, api), **settings)


async def drain(rec: EventRecorder) -> None:
    rec.start()
    for _ in range(50):
        await asyncio.sleep(0.01)
    await rec.close()


async def test_an_event_is_created_with_its_object_reference() -> None:
    api = ApiEdge()
    rec = recorder(api)
    rec.post(REF, READY)
    await drain(rec)

    [body] = api.created
    assert body["involvedObject"] == {
        "kind": "HelmdeckSession",
        "apiVersion": "helmdeck.dev/v1alpha1",
        "namespace": "team",
        "name": "s1",
        "uid": "uid-1",
    }
    assert (body["type"], body["reason"], body["message"], body["count"]) == (
        "Normal",
        "Ready",
        "sandbox hd-x is ready",
        1,
    )
    assert body["source"] == {"component": "helmdeck-operator"}


async def test_repeats_become_a_count_on_one_event(monkeypatch: Any) -> None:
    monkeypatch.setattr(events_module, "SERIES_FLUSH_S", 0.0)
    api = ApiEdge()
    rec = recorder(api)
    rec.post(REF, READY)
    rec.start()
    await asyncio.sleep(0.05)
    for _ in range(4):
        rec.post(REF, READY)
    await asyncio.sleep(0.1)
    await rec.close()

    assert len(api.created) == 1
    assert api.patched[-1] == ("s1.1", 5)


async def test_each_object_may_start_only_so_many_events(monkeypatch: Any) -> None:
    monkeypatch.setattr(events_module, "STORM_BURST", 1000)  # the per-object filter alone
    api = ApiEdge()
    rec = recorder(api)
    for i in range(events_module.PER_OBJECT_BURST + 5):
        rec.post(REF, EventSpec("Warning", "PolicyDenied", f"denial {i}"))
    other = ObjectRef("HelmdeckSession", "helmdeck.dev/v1alpha1", "team", "s2", "uid-2")
    rec.post(other, READY)
    await drain(rec)

    assert len(api.created) == events_module.PER_OBJECT_BURST + 1
    assert rec.dropped == 5


async def test_a_full_backlog_drops_and_counts_instead_of_growing() -> None:
    dropped: list[str] = []
    api = ApiEdge()
    rec = EventRecorder(cast(Kube, api), qps=0, burst=1, backlog=3, on_drop=dropped.append)
    for i in range(5):
        ref = ObjectRef("HelmdeckSession", "helmdeck.dev/v1alpha1", "team", f"s{i}", f"u{i}")
        rec.post(ref, READY)
    await drain(rec)

    assert len(api.created) == 3
    assert dropped == ["Ready", "Ready"]


async def test_post_never_waits_for_the_api() -> None:
    class Slow(ApiEdge):
        async def create_event(self, namespace: str, body: Any) -> str:
            await asyncio.sleep(10)
            return "never"

    rec = recorder(Slow())
    rec.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(100):
        rec.post(REF, EventSpec("Normal", "Ready", f"m{i}"))
    assert loop.time() - started < 0.05
    await rec.close()


async def test_long_messages_are_shortened_in_the_middle() -> None:
    api = ApiEdge()
    rec = recorder(api)
    rec.post(REF, EventSpec("Warning", "SandboxError", "x" * 600 + "y" * 600))
    await drain(rec)

    message = api.created[0]["message"]
    assert len(message) <= events_module.MAX_MESSAGE
    assert message.startswith("x")
    assert message.endswith("y")
    assert "..." in message


async def test_a_storm_across_objects_is_folded_into_one_summary_on_the_namespace(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(events_module, "STORM_WINDOW_S", 0.2)
    monkeypatch.setattr(events_module, "TICK_S", 0.05)
    api = ApiEdge()
    rec = recorder(api)
    rec.start()
    for i in range(40):
        ref = ObjectRef("HelmdeckSession", "helmdeck.dev/v1alpha1", "team", f"s{i:02d}", f"u{i}")
        rec.post(ref, EventSpec("Normal", "Ready", f"sandbox hd-{i} is ready"))
    rec.post(REF, EventSpec("Warning", "SandboxError", "exit 1"))  # another reason: its own
    await asyncio.sleep(0.5)
    await rec.close()

    individual = [b for b in api.created if b["involvedObject"]["kind"] == "HelmdeckSession"]
    summaries = [b for b in api.created if b["involvedObject"]["kind"] == "Namespace"]
    assert len([b for b in individual if b["reason"] == "Ready"]) == events_module.STORM_BURST
    assert [b["reason"] for b in individual if b["reason"] != "Ready"] == ["SandboxError"]
    [summary] = summaries
    assert summary["involvedObject"] == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "namespace": "team",
        "name": "team",
        "uid": "",
    }
    assert (summary["type"], summary["reason"]) == ("Normal", "Ready")
    assert summary["message"].startswith(
        "30 more HelmdeckSessions: Ready (s10, s11, s12, s13, s14 and 25 more)"
    )
    assert "the first said: sandbox hd-10 is ready" in summary["message"]


async def test_closing_right_after_a_post_returns() -> None:
    """A post wakes the recorder's wait in the same loop turn as its cancellation: close()
    must still end (asyncio.wait_for in Python 3.11 could swallow that cancellation)."""
    for turns in range(4):
        api = ApiEdge()
        rec = recorder(api)
        rec.start()
        await asyncio.sleep(0.01)  # the recorder is waiting for work
        rec.post(REF, READY)
        for _ in range(turns):
            await asyncio.sleep(0)
        closing = asyncio.create_task(rec.close())
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert closing in done, f"close() still waiting {turns} loop turns after a post"
