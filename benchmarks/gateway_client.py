"""Round-trip latency of the gateway client against an in-process emulator.

Measures what the client adds on top of a gateway that answers at once: request
building, metadata, the gRPC round trip over loopback, response translation. Run:

    .venv/bin/python benchmarks/gateway_client.py [--calls N]

and read p50/p99 per operation and sequential calls per second. Loopback only; the
emulator runs with zero transition delays in the same process and event loop, so the
numbers include the server's share of the CPU too.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from openshell._proto import sandbox_pb2

from helmdeck_operator.emulator.server import EmulatorConfig, start_emulator
from helmdeck_operator.emulator.state import GatewaySettings
from helmdeck_operator.gateway.client import GatewayClient
from helmdeck_operator.gateway.config import GatewayConfig
from helmdeck_operator.gateway.models import SandboxSpec

__all__ = ["main"]

#: Upper bound on --calls: the emulator keeps every sandbox and revision in memory.
MAX_CALLS = 20_000
#: Calls made and thrown away first, so connection set-up does not count.
WARMUP = 20


def policy(n: int) -> sandbox_pb2.SandboxPolicy:
    """A policy differing per ``n`` in a live-changeable part, so every update is new."""
    endpoint = sandbox_pb2.NetworkEndpoint(host=f"api{n}.example.com", port=443)
    rule = sandbox_pb2.NetworkPolicyRule(name="egress", endpoints=[endpoint])
    return sandbox_pb2.SandboxPolicy(version=1, network_policies={"egress": rule})


async def measure(calls: int, operation: Callable[[int], Awaitable[object]]) -> list[float]:
    latencies = []
    for n in range(calls):
        started = time.perf_counter()
        await operation(n)
        latencies.append(time.perf_counter() - started)
    return latencies


def report(name: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    rate = len(ordered) / sum(ordered)
    return f"{name:<14} {len(ordered):>7} {p50:>9.3f} {p99:>9.3f} {rate:>10.0f}"


async def run(calls: int) -> None:
    zero = GatewaySettings(ready_delay=0, load_delay=0, delete_delay=0, stop_delay=0, start_delay=0)
    emulator = await start_emulator(EmulatorConfig(gateway=zero))
    config = GatewayConfig(name="bench", endpoint=emulator.address, plaintext=True)
    try:
        async with GatewayClient(config) as client:
            await client.create_sandbox("warm", policy=policy(0))
            for n in range(WARMUP):
                await client.get_sandbox("warm")
                await client.update_policy("warm", policy(n + 1))
            spec = SandboxSpec(image="ghcr.io/helmdeck/python:1")
            create = await measure(
                calls, lambda n: client.create_sandbox(f"bench-{n}", spec, policy=policy(0))
            )
            get = await measure(calls, lambda n: client.get_sandbox(f"bench-{n}"))
            update = await measure(
                calls, lambda n: client.update_policy(f"bench-{n}", policy(n + 1))
            )
    finally:
        await emulator.stop()
    print(f"{'operation':<14} {'calls':>7} {'p50 ms':>9} {'p99 ms':>9} {'calls/s':>10}")
    for name, latencies in (("create", create), ("get", get), ("update_policy", update)):
        print(report(name, latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per operation")
    args = parser.parse_args()
    if not 1 <= args.calls <= MAX_CALLS:
        parser.error(f"--calls must be between 1 and {MAX_CALLS}")
    asyncio.run(run(args.calls))


if __name__ == "__main__":
    main()
