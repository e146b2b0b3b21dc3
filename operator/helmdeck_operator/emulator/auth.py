"""Who may call the emulated gateway, and what they may do.

The real gateway authenticates with mTLS client certificates or an OIDC bearer JWT and
authorizes by workspace role and scope. The emulator keeps the observable contract: a
configured set of opaque bearer tokens, each mapped to a principal with scopes; a missing
or unknown token gives UNAUTHENTICATED (except for Health), a token without the scope an
RPC needs gives PERMISSION_DENIED. Token values are compared, never logged or stored in
request records.

Workspaces as the gateway's workspace_authz.rs has them: a platform admin (every caller
when no tokens are configured, the gateway's auth-only mode) may use any workspace, address
all of them at once (`all_workspaces`) and create or delete them; any other principal only
the workspaces it is a member of. Creating a workspace makes nobody a member of it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from helmdeck_operator.emulator.errors import Code, GatewayError

__all__ = [
    "ALL_SCOPES",
    "READ_SCOPES",
    "AuthSettings",
    "Principal",
    "authorize",
    "authorize_workspace",
    "require_platform_admin",
    "required_scope",
]

READ_SCOPES = frozenset({"sandbox:read", "config:read"})
ALL_SCOPES = READ_SCOPES | {"sandbox:write", "config:write"}

#: RPCs that change things, and the scope each needs (everything else needs sandbox:read).
_WRITE_SCOPES = {
    "CreateSandbox": "sandbox:write",
    "DeleteSandbox": "sandbox:write",
    "StopSandbox": "sandbox:write",
    "StartSandbox": "sandbox:write",
    "ExposeService": "sandbox:write",
    "DeleteService": "sandbox:write",
    "AttachSandboxProvider": "sandbox:write",
    "DetachSandboxProvider": "sandbox:write",
    "UpdateConfig": "config:write",
    # The gateway asks a platform admin for these (its coarse scope for them is not a
    # sandbox one); the emulator's table asks its write scope, and `require_platform_admin`.
    "CreateWorkspace": "sandbox:write",
    "DeleteWorkspace": "sandbox:write",
}
#: RPCs anyone may call, even without credentials.
_PUBLIC = frozenset({"Health"})


@dataclass(frozen=True)
class Principal:
    """The caller as the gateway sees it (`GetCurrentUser`)."""

    subject: str
    scopes: frozenset[str] = ALL_SCOPES
    roles: tuple[str, ...] = ("workspace-admin",)
    identity_provider: str = "emulator"
    platform_admin: bool = True
    """Bypasses workspace membership (the gateway's admin role or admin subjects)."""
    workspaces: frozenset[str] = frozenset()
    """The workspaces a principal that is not a platform admin is a member of."""

    def may_use(self, workspace: str) -> bool:
        return self.platform_admin or workspace in self.workspaces


@dataclass(frozen=True)
class AuthSettings:
    """Bearer tokens the emulator accepts; empty means no bearer auth is required."""

    tokens: Mapping[str, Principal] = field(default_factory=dict)


ANONYMOUS = Principal(subject="anonymous", identity_provider="none")


def required_scope(method: str) -> str | None:
    if method in _PUBLIC:
        return None
    return _WRITE_SCOPES.get(method, "sandbox:read")


def _match(presented: str, tokens: Mapping[str, Principal]) -> Principal | None:
    for token, principal in tokens.items():
        # Constant-time comparison: the emulator should not teach timing leaks by example.
        if hmac.compare_digest(token.encode(), presented.encode()):
            return principal
    return None


def authorize(
    method: str, authorization: str | None, settings: AuthSettings, cert_subject: str = ""
) -> Principal:
    """The principal calling `method`, or GatewayError UNAUTHENTICATED / PERMISSION_DENIED."""
    scope = required_scope(method)
    if not settings.tokens:
        return (
            Principal(subject=cert_subject, identity_provider="mtls") if cert_subject else ANONYMOUS
        )
    if scope is None:
        return ANONYMOUS
    if not authorization:
        raise GatewayError(Code.UNAUTHENTICATED, "missing authorization: expected a bearer token")
    kind, _, token = authorization.partition(" ")
    principal = _match(token.strip(), settings.tokens) if kind.lower() == "bearer" else None
    if principal is None:
        raise GatewayError(Code.UNAUTHENTICATED, "invalid bearer token")
    if scope not in principal.scopes:
        raise GatewayError(
            Code.PERMISSION_DENIED, f"{principal.subject} lacks scope {scope} for {method}"
        )
    return principal


def require_platform_admin(principal: Principal) -> None:
    """What `all_workspaces` and creating or deleting a workspace need."""
    if not principal.platform_admin:
        raise GatewayError(
            Code.PERMISSION_DENIED, "platform admin role required for cross-workspace operations"
        )


def authorize_workspace(principal: Principal, workspace: str) -> None:
    """PERMISSION_DENIED unless the principal may use `workspace` (checked before the
    gateway looks the workspace up: a non-member learns nothing about what exists)."""
    if principal.may_use(workspace):
        return
    raise GatewayError(
        Code.PERMISSION_DENIED,
        f"not a member of workspace '{workspace}'; ask a platform admin to run: openshell "
        f"workspace member add --workspace '{workspace}' --subject '{principal.subject}' "
        "--role user",
    )
