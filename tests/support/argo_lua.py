"""Run the Argo CD health checks in argocd/health/ the way Argo CD runs them.

Argo CD evaluates `resource.customizations.health.<group>_<kind>` with gopher-lua, a Lua 5.1
implementation, in a state where only the base, table, package and a "safe" os library are
open (string, math, io, debug and coroutine are not, and strings have no methods). The
object is decoded into the global `obj` (JSON arrays become 1-based tables, null becomes
nil), and the script's returned table must carry a valid health status.

Here the scripts run in real Lua 5.1 (lupa's `lua51` module), with the libraries Argo CD
does not open removed, so a script that leans on `string.find` or `("x"):upper()` fails
here as it would in Argo CD. The `os` library is removed too: these scripts need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lupa import lua51

from tests.support.repo import REPO_ROOT

HEALTH_DIR = REPO_ROOT / "argocd" / "health"
#: What Argo CD accepts from a health script (anything else becomes Unknown).
ARGO_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
#: Globals Argo CD does not provide to custom health checks (plus lupa's own `python`).
_NOT_IN_ARGO = ("string", "math", "io", "debug", "coroutine", "os", "python")

__all__ = ["ARGO_STATUSES", "HEALTH_DIR", "Health", "assess", "script_path"]


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def script_path(kind: str) -> Path:
    """The health check file for `kind`, named as its argocd-cm key suffix."""
    return HEALTH_DIR / f"helmdeck.dev_{kind}.lua"


def assess(obj: dict[str, Any]) -> Health:
    """The health Argo CD would report for `obj` (a HelmdeckSession, SessionPool or
    SidecarPolicy)."""
    runtime = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    # Strings lose their methods, then the libraries Argo CD does not open go.
    runtime.execute('debug.setmetatable("", nil)')
    lua_globals = runtime.globals()
    for name in _NOT_IN_ARGO:
        lua_globals[name] = None
    before = set(_keys(lua_globals))
    lua_globals.obj = _decode(runtime, obj)
    result = runtime.execute(script_path(obj["kind"]).read_text())

    leaked = set(_keys(lua_globals)) - before - {"obj"}
    assert not leaked, f"the script sets globals {sorted(leaked)}; use locals"
    assert lua51.lua_type(result) == "table", f"expected a table, got {result!r}"
    status, message = result["status"], result["message"]
    assert status in ARGO_STATUSES, f"invalid health status {status!r}"
    assert isinstance(message, str), f"message must be a string, got {message!r}"
    assert set(_keys(result)) <= {"status", "message"}, list(_keys(result))
    return Health(status, message)


def _keys(table: Any) -> list[Any]:
    return list(table.keys())


def _decode(runtime: Any, value: Any) -> Any:
    """Argo CD's decodeValue: maps and lists become tables, null becomes nil."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _decode(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = _decode(runtime, item)
        return table
    return value
