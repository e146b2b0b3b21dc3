"""Named places where the operator can be made to die on purpose, for crash-safety tests.

The crash-safety promise (a restart at any point converges without a duplicate or a leak)
is only proven by killing the operator at the worst moments: right after a sandbox was
created and before its status was written, in the middle of a policy fan-out, between the
gateway's delete and the finalizer's removal. `HELMDECK_CRASHPOINTS` arms them:

    HELMDECK_CRASHPOINTS="after-create=3,mid-fanout=1"

kills the process with SIGKILL (no cleanup, as the kernel's OOM killer or a node loss would)
on the third time `after-create` is reached, or the first `mid-fanout`. Unset, which is
always the case in the Helm chart, `reached()` is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["AFTER_CLAIM", "AFTER_CREATE", "AFTER_DELETE", "MID_FANOUT", "reached"]

AFTER_CREATE = "after-create"
"""The gateway created the sandbox; the session status does not say so yet."""
MID_FANOUT = "mid-fanout"
"""A policy revision was pushed to one session's sandbox; others are still waiting."""
AFTER_CLAIM = "after-claim"
"""A pool recorded claims in its status; the sessions have not been told yet."""
AFTER_DELETE = "after-delete"
"""The gateway accepted the delete; the finalizer is still on the session."""


def _parse(text: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        armed[name] = int(count or 1)
    return armed


_armed = _parse(os.environ.get("HELMDECK_CRASHPOINTS", ""))


def reached(name: str) -> None:
    """Count a pass through `name`; die with SIGKILL when its armed count is reached."""
    if name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] <= 0:
        print(f"crashpoint {name} reached: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
