"""Builders and accessors for HelmdeckSession, SessionPool and SidecarPolicy objects in tests
and demos."""

from __future__ import annotations

from typing import Any

__all__ = ["condition", "phase", "policy", "pool", "session"]


def session(name: str, family: str = "browser", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "helmdeck.dev/v1alpha1",
        "kind": "HelmdeckSession",
        "metadata": {"name": name},
        "spec": {"family": family, **spec},
    }


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "helmdeck.dev/v1alpha1",
        "kind": "SidecarPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def pool(name: str, family: str = "browser", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "helmdeck.dev/v1alpha1",
        "kind": "SessionPool",
        "metadata": {"name": name},
        "spec": {"family": family, **spec},
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}


def phase(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")
