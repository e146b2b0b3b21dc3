"""How an emulated gateway behaves: workspaces, providers and the timing of transitions.

A separate module so the CLI and fixtures can build settings without loading the state
machine; `state.GatewaySettings` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GatewaySettings"]


@dataclass(frozen=True)
class GatewaySettings:
    """How the emulated gateway behaves; delays are seconds and small so tests stay fast."""

    #: Workspaces that exist from the start (CreateWorkspace adds more); the first is the
    #: default: what a request that names none addresses, and never deleted.
    workspaces: tuple[str, ...] = ("default",)
    #: Provider names sandboxes may attach; any other gives FAILED_PRECONDITION.
    providers: frozenset[str] = frozenset({"github", "gitlab", "anthropic", "openai", "nvidia"})
    #: PROVISIONING -> READY (driver up and supervisor connected back).
    ready_delay: float = 0.05
    #: A policy revision stored on a READY sandbox -> LOADED (or FAILED).
    load_delay: float = 0.05
    #: DELETING -> record removed (driver reports the sandbox gone).
    delete_delay: float = 0.05
    #: READY -> STOPPING -> STOPPED, and STOPPED -> STARTING -> READY.
    stop_delay: float = 0.05
    start_delay: float = 0.05
    #: Log lines kept per sandbox (oldest dropped first).
    log_buffer: int = 1000
    #: Base domain of service endpoint URLs (`http://<workspace>--<sandbox>[--<service>].<it>/`),
    #: the gateway's first `service_routing.base_domains`.
    url_domain: str = "sandbox.local"
    version: str = "0.1.5-emulator"
    #: The compute driver `GetGatewayInfo` reports (one per gateway, as in OpenShell).
    driver: str = "kubernetes"
