"""Follow one session's sandbox log stream and surface OCSF policy denials.

Runs beside the session's reconcile daemon for the session's whole life: one gateway
watch stream with logs, joined to the session by the sandbox id recorded in its status
(a recreated sandbox has a new id; lines of the old one are ignored). Each denial counts in
helmdeck_policy_denials_total; the first of a kind becomes a Warning Event at once, repeats
become one summary Event per window (`ocsf.Aggregator`), so a chatty sandbox cannot flood
the API. The number of streams is bounded by `observability.max_followers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from helmdeck_operator.core.naming import sandbox_name
from helmdeck_operator.gateway import GatewayError
from helmdeck_operator.observability.ocsf import Aggregator, parse_denial
from helmdeck_operator.runtime import Runtime

__all__ = ["follow_denials"]

logger = logging.getLogger(__name__)

Post = Callable[[str, str, str], None]
"""Post a Kubernetes Event on the session: (type, reason, message)."""
REASON = "PolicyDenied"


async def follow_denials(rt: Runtime, body: Mapping[str, Any], post: Post) -> None:
    """Until cancelled: follow the sandbox's logs and report its denials."""
    settings = rt.config.observability
    if not settings.follow_denials:
        return
    meta = body["metadata"]
    if rt.followers.locked():
        logger.warning(
            "not following %s/%s: %d log streams already (observability.max_followers)",
            meta["namespace"],
            meta["name"],
            settings.max_followers,
        )
        return
    async with rt.followers:
        aggregator = Aggregator(window=settings.denial_window_seconds)
        flusher = asyncio.create_task(_flush(aggregator, post))
        try:
            await _follow(rt, body, aggregator, post)
        finally:
            flusher.cancel()


async def _flush(aggregator: Aggregator, post: Post) -> None:
    while True:
        await asyncio.sleep(aggregator.window / 4)
        for summary in aggregator.flush(time.monotonic()):
            post("Warning", REASON, summary)


async def _follow(rt: Runtime, body: Mapping[str, Any], aggregator: Aggregator, post: Post) -> None:
    meta = body["metadata"]
    family = str((body.get("spec") or {}).get("family", ""))
    name = sandbox_name(meta["uid"])
    while True:
        recorded = (body.get("status") or {}).get("sandbox") or {}
        sandbox_id, client = recorded.get("id"), rt.gateways.get(str(recorded.get("gateway")))
        if not sandbox_id or client is None:
            await asyncio.sleep(rt.config.intervals.pending_seconds)
            continue
        try:
            stream = client.watch_sandbox(name, follow_logs=True)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if event.log is None:
                        continue
                    denial = parse_denial(event.log)
                    if denial is None or denial.sandbox_id not in ("", sandbox_id):
                        continue
                    rt.metrics.record_denials(meta["namespace"], family, 1)
                    message = aggregator.add(denial, time.monotonic())
                    if message is not None:
                        post("Warning", REASON, message)
        except GatewayError as err:
            logger.info("log stream of %s ended: %s", name, err)
        # The stream ends when the sandbox goes (deleted, recreated): look again shortly.
        await asyncio.sleep(rt.config.intervals.pending_seconds)
