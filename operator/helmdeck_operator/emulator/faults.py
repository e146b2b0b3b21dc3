"""Fault injection for the emulated gateway, settable at start-up and at run time.

Tests of the operator need a gateway that is slow, flaky, down, or that loses sandboxes and
fails policy loads, on demand and reproducibly. One `Faults` object holds every knob; the
servicer asks it before each RPC (`before_rpc`) and the state machine asks it when a
sandbox boots or a policy loads. The JSON shape accepted by `apply` is the same one the
admin endpoint (`POST /faults`) and the CLI's `--fault` flags produce, so all three agree.
Randomness comes from a seeded `random.Random`: the same seed gives the same failures.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from helmdeck_operator.emulator.clock import Clock, SystemClock
from helmdeck_operator.emulator.errors import Code, GatewayError

__all__ = ["Faults", "RpcFault", "parse_fault_spec"]

#: The key in `latency` / `errors` that applies to every RPC without its own entry.
ALL_RPCS = "*"


@dataclass
class RpcFault:
    """Fail an RPC with `code`, with probability `rate`, at most `count` times (None: always)."""

    code: Code
    rate: float = 1.0
    count: int | None = None
    message: str = "injected fault"


class Faults:
    """Every fault knob of one emulator; cheap to consult, safe to change between RPCs."""

    def __init__(self, clock: Clock | None = None, seed: int | None = None) -> None:
        self._clock = clock or SystemClock()
        self._seed = seed
        self._random = random.Random(seed)
        self.latency: dict[str, float] = {}
        self.errors: dict[str, RpcFault] = {}
        self.outage_until: float | None = None
        self.load_failures_next = 0
        self.load_failure_message = "injected policy load failure"
        self.load_failures_for: dict[tuple[str, str], str] = {}
        self.boot_failures_next = 0
        self.boot_failure_message = "main process exited with code 1"
        self.boot_seconds: float | None = None
        """While set, sandboxes created or started take this long to become READY."""

    # -- consulted by the servicer and the state machine ------------------------------

    def outage_active(self) -> bool:
        if self.outage_until is None:
            return False
        if self._clock.monotonic() >= self.outage_until:
            self.outage_until = None
            return False
        return True

    def before_rpc(self, method: str) -> tuple[float, GatewayError | None]:
        """The delay to add to `method` and the error to fail it with (None: proceed)."""
        delay = self.latency.get(method, self.latency.get(ALL_RPCS, 0.0))
        if self.outage_active():
            return delay, GatewayError(Code.UNAVAILABLE, "gateway unavailable (injected outage)")
        key = method if method in self.errors else ALL_RPCS
        fault = self.errors.get(key)
        if fault is None or self._random.random() >= fault.rate:
            return delay, None
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                del self.errors[key]
        return delay, GatewayError(fault.code, fault.message)

    def take_load_failure(self, workspace: str, name: str) -> str | None:
        """The load error for this sandbox's next policy load, or None for a clean load."""
        if (workspace, name) in self.load_failures_for:
            return self.load_failures_for[(workspace, name)]
        if self.load_failures_next > 0:
            self.load_failures_next -= 1
            return self.load_failure_message
        return None

    def boot_delay(self, default: float) -> float:
        """How long a sandbox created or started now takes to become READY."""
        return default if self.boot_seconds is None else self.boot_seconds

    def take_boot_failure(self) -> str | None:
        """The error for the next sandbox that would become READY, or None."""
        if self.boot_failures_next > 0:
            self.boot_failures_next -= 1
            return self.boot_failure_message
        return None

    # -- configured from CLI / admin JSON ---------------------------------------------

    def clear(self, sections: list[str] | None = None) -> None:
        """Reset the named sections (all when None) to "no fault"."""
        every = [
            "latency",
            "errors",
            "outage",
            "policy_load_failures",
            "boot_failures",
            "slow_boots",
        ]
        for section in sections or every:
            if section == "latency":
                self.latency.clear()
            elif section == "errors":
                self.errors.clear()
            elif section == "outage":
                self.outage_until = None
            elif section == "policy_load_failures":
                self.load_failures_next = 0
                self.load_failures_for.clear()
            elif section == "boot_failures":
                self.boot_failures_next = 0
            elif section == "slow_boots":
                self.boot_seconds = None
            else:
                raise ValueError(f"unknown fault section {section!r}")

    def apply(self, spec: Mapping[str, Any]) -> None:
        """Merge a fault spec (the `POST /faults` JSON, documented in docs/emulator.md)."""
        if "clear" in spec:
            clear = spec["clear"]
            self.clear(None if clear is True else list(clear))
        if "seed" in spec:
            self._seed = int(spec["seed"])
            self._random = random.Random(self._seed)
        for method, seconds in dict(spec.get("latency", {})).items():
            self.latency[str(method)] = float(seconds)
        for method, raw in dict(spec.get("errors", {})).items():
            self.errors[str(method)] = RpcFault(
                code=Code(str(raw.get("code", "UNAVAILABLE")).upper()),
                rate=float(raw.get("rate", 1.0)),
                count=None if raw.get("count") is None else int(raw["count"]),
                message=str(raw.get("message", "injected fault")),
            )
        if "outage" in spec:
            outage = spec["outage"]
            if outage is None or outage is False:
                self.outage_until = None
            elif outage is True or outage.get("until_cleared"):
                self.outage_until = math.inf
            else:
                self.outage_until = self._clock.monotonic() + float(outage["seconds"])
        loads = spec.get("policy_load_failures")
        if loads:
            self.load_failures_next += int(loads.get("next", 0))
            self.load_failure_message = str(loads.get("message", self.load_failure_message))
            for item in loads.get("sandboxes", []):
                key = (str(item.get("workspace", "default")), str(item["name"]))
                self.load_failures_for[key] = str(item.get("message", self.load_failure_message))
        boots = spec.get("boot_failures")
        if boots:
            self.boot_failures_next += int(boots.get("next", 0))
            self.boot_failure_message = str(boots.get("message", self.boot_failure_message))
        if "slow_boots" in spec:
            slow = spec["slow_boots"]
            self.boot_seconds = None if not slow else float(slow["seconds"])

    def to_dict(self) -> dict[str, Any]:
        """The current knobs as JSON-ready data (for `GET /faults` and snapshots)."""
        outage: dict[str, Any] | None = None
        if self.outage_active() and self.outage_until is not None:
            remaining = self.outage_until - self._clock.monotonic()
            outage = {"until_cleared": True} if math.isinf(remaining) else {"seconds": remaining}
        return {
            "seed": self._seed,
            "latency": dict(self.latency),
            "errors": {
                m: {"code": f.code.value, "rate": f.rate, "count": f.count, "message": f.message}
                for m, f in self.errors.items()
            },
            "outage": outage,
            "policy_load_failures": {
                "next": self.load_failures_next,
                "message": self.load_failure_message,
                "sandboxes": [
                    {"workspace": ws, "name": n, "message": msg}
                    for (ws, n), msg in sorted(self.load_failures_for.items())
                ],
            },
            "boot_failures": {"next": self.boot_failures_next},
            "slow_boots": None if self.boot_seconds is None else {"seconds": self.boot_seconds},
        }


def parse_fault_spec(text: str) -> dict[str, Any]:
    """One CLI `--fault` flag as a fault spec for `Faults.apply`.

    Forms: `latency=0.2`, `latency:GetSandbox=0.5`, `error:CreateSandbox=UNAVAILABLE`,
    `error:*=UNAVAILABLE@0.3` (rate), `error:GetSandbox=INTERNAL@1x2` (rate and count),
    `outage=10` (seconds) or `outage=on`, `fail-loads=2`, `fail-loads:default/sbx1=msg`,
    `fail-boots=1`, `slow-boots=5` (seconds to READY), `seed=42`.
    """
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"fault {text!r}: expected KEY=VALUE")
    kind, _, target = key.partition(":")
    if kind == "latency":
        return {"latency": {target or ALL_RPCS: float(value)}}
    if kind == "error":
        code, _, tail = value.partition("@")
        rate_text, _, count_text = tail.partition("x")
        entry: dict[str, Any] = {"code": code, "rate": float(rate_text or 1.0)}
        if count_text:
            entry["count"] = int(count_text)
        return {"errors": {target or ALL_RPCS: entry}}
    if kind == "outage":
        return {"outage": {"until_cleared": True} if value == "on" else {"seconds": float(value)}}
    if kind == "fail-loads":
        if target:
            ws, _, name = target.rpartition("/")
            item = {"workspace": ws or "default", "name": name, "message": value}
            return {"policy_load_failures": {"sandboxes": [item]}}
        return {"policy_load_failures": {"next": int(value)}}
    if kind == "fail-boots":
        return {"boot_failures": {"next": int(value)}}
    if kind == "slow-boots":
        return {"slow_boots": {"seconds": float(value)}}
    if kind == "seed":
        return {"seed": int(value)}
    raise ValueError(f"fault {text!r}: unknown kind {kind!r}")
