"""The Kubernetes edge: reading a resourceVersion from an answer without parsing it, the one
translation of apiserver errors, and how calls share the connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from lightkube import KubeConfig

from helmdeck_operator.kube import CONNECTIONS, KubeConflict, KubeError, _Http, _raise_for, _version

ANSWER = {
    "apiVersion": "helmdeck.dev/v1alpha1",
    "kind": "HelmdeckSession",
    "metadata": {
        "creationTimestamp": "2026-11-30T08:00:00Z",
        "finalizers": ["helmdeck.dev/sandbox-cleanup"],
        "generation": 1,
        "managedFields": [
            {
                "apiVersion": "helmdeck.dev/v1alpha1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:phase": {}}},
                "manager": "helmdeck-operator",
                "operation": "Update",
                "subresource": "status",
                "time": "2026-11-30T08:00:01Z",
            }
        ],
        "name": "s1",
        "namespace": "team",
        "resourceVersion": "48213",
        "uid": "6f1c2a9e-0d6b-4c1e-9a55-3b7f2e8d1c40",
    },
    "spec": {"family": "python"},
    "status": {"phase": "Ready", "policy": {"note": '"resourceVersion":"1"'}},
}


@pytest.mark.parametrize("spaced", [False, True])
def test_the_objects_own_resource_version_is_read_from_the_bytes(spaced: bool) -> None:
    raw = json.dumps(ANSWER, separators=(", ", ": ") if spaced else (",", ":")).encode()
    assert _version(raw) == "48213"


def test_no_answer_means_the_object_is_gone() -> None:
    assert _version(None) is None


def test_an_answer_without_the_field_is_parsed() -> None:
    assert _version(json.dumps({"metadata": {}}).encode()) == ""


def test_apiserver_errors_are_translated_once() -> None:
    _raise_for(404, "not found", "reading x", missing_ok=True)  # gone: no error
    with pytest.raises(KubeError, match="reading x: not found") as err:
        _raise_for(404, "not found", "reading x")
    assert not isinstance(err.value, KubeConflict)
    with pytest.raises(KubeConflict, match="writing x: changed"):
        _raise_for(409, "changed", "writing x")
    with pytest.raises(KubeConflict):
        _raise_for(422, "test failed", "removing", conflicts=(409, 422))
    with pytest.raises(KubeError, match="HTTP 500"):
        _raise_for(500, "", "writing x")


@contextlib.asynccontextmanager
async def apiserver(
    answer: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[_Http]:
    """An HTTP server answering every GET with `answer`, and the edge's client for it."""
    app = web.Application()
    app.router.add_get("/calls/{n}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    http = _Http(
        KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    try:
        yield http
    finally:
        await http.close()
        await runner.cleanup()


async def test_a_waiting_call_is_not_overtaken_by_newer_ones() -> None:
    """Every connection kept busy by callers that send their next call the moment the last
    one is answered, and one more call: it gets its turn within a round of answers. (A pool
    that hands a freed connection to whoever asks next starved such a call for its whole
    timeout at 5,000 sessions.) Never more than CONNECTIONS calls reach the apiserver."""
    in_flight = peak = 0

    async def answer(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        return web.json_response({"metadata": {"resourceVersion": "1"}})

    async with apiserver(answer) as http:
        stop = asyncio.Event()

        async def busy(n: int) -> int:
            calls = 0
            while not stop.is_set():
                await http.call("GET", f"/calls/{n}")
                calls += 1
            return calls

        callers = [asyncio.create_task(busy(n)) for n in range(CONNECTIONS)]
        await asyncio.sleep(0.3)
        try:
            status, _ = await asyncio.wait_for(http.call("GET", "/calls/late"), timeout=5)
        finally:
            stop.set()
            served = await asyncio.gather(*callers)
    assert status == 200
    assert min(served) > 0
    assert peak == CONNECTIONS
