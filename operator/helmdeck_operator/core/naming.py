"""How sandboxes are named and labelled on the gateway.

A session's own sandbox is named by a pure function of the session UID, so a restart at any
point finds the same sandbox instead of creating a second one; the labels bind the sandbox
to its session and to this operator instance, which is how the orphan sweep recognises what
it owns. A pool's sandbox gets a random name instead (a name the pool used is never used
again, so a session that recorded one can never be handed a different sandbox of that
name) and the pool's labels: nothing relabels a sandbox, so the session that claims it is
recorded on the Kubernetes side (`core.pool`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from helmdeck_operator.gateway.config import GatewayConfig, WorkspaceMode

__all__ = [
    "ANNOTATION_INITIAL_POLICY",
    "ANNOTATION_POOL",
    "ANNOTATION_POOL_FALLBACK",
    "ANNOTATION_SESSION",
    "CLUSTER_ID_NAMESPACE",
    "FINALIZER",
    "LABEL_FAMILY",
    "LABEL_MANAGED_BY",
    "LABEL_NAMESPACE",
    "LABEL_POOL_UID",
    "LABEL_SESSION_UID",
    "MAX_SANDBOX_NAME",
    "MAX_WORKSPACE_NAME",
    "allowed_workspaces",
    "copied_labels",
    "derived_instance",
    "home_workspace",
    "in_its_workspace",
    "namespace_workspace",
    "pool_of",
    "pool_sandbox_annotations",
    "pool_sandbox_labels",
    "pool_sandbox_name",
    "sandbox_annotations",
    "sandbox_labels",
    "sandbox_name",
    "session_of",
    "workspace_labels",
]

#: OpenShell sandbox names are DNS-1123 labels of at most 19 characters (observed server rule).
MAX_SANDBOX_NAME = 19
_PREFIX = "hd-"
_POOL_PREFIX = "hp-"

#: OpenShell workspace names are routable like sandbox names (the first part of endpoint
#: hosts): DNS-1123 labels of at most 19 characters without `--` (the gateway's rule).
MAX_WORKSPACE_NAME = 19
#: Base32 characters of the namespace's hash at least in a shortened workspace name (30
#: bits): a shortened name stays unique however many long namespaces share a beginning.
_WORKSPACE_HASH = 6

#: On every HelmdeckSession: removed only once the gateway confirms its sandbox gone.
FINALIZER = "helmdeck.dev/sandbox-cleanup"

LABEL_MANAGED_BY = "helmdeck.dev/managed-by"
LABEL_SESSION_UID = "helmdeck.dev/session-uid"
LABEL_FAMILY = "helmdeck.dev/family"
#: On a workspace the operator created: the namespace it is for (with LABEL_MANAGED_BY).
LABEL_NAMESPACE = "helmdeck.dev/namespace"
#: On a pool's sandboxes instead of the session UID: the SessionPool's UID.
LABEL_POOL_UID = "helmdeck.dev/pool-uid"
#: namespace/name of the pool a sandbox was booted for.
ANNOTATION_POOL = "helmdeck.dev/pool"
#: On a cold sandbox of a session that named a pool: why it was not claimed (a Reason), so
#: a restart between the create and the status write still reports it.
ANNOTATION_POOL_FALLBACK = "helmdeck.dev/pool-fallback"
#: namespace/name of the owning session; an annotation because names may exceed label limits.
ANNOTATION_SESSION = "helmdeck.dev/session"
#: The policy revision (sha256:...) the sandbox was created with: its policy version 1, the
#: baseline OpenShell's live-change rules compare with. Nothing relabels a sandbox, and this
#: never changes, so it tells the gateway cache the hash of version 1 without asking.
ANNOTATION_INITIAL_POLICY = "helmdeck.dev/initial-policy"


#: The Namespace whose UID stands for the cluster: every cluster has one, created with it and
#: never renamed, and its UID changes only if the cluster is rebuilt (Kubernetes has no
#: cluster id of its own; this is the de-facto one).
CLUSTER_ID_NAMESPACE = "kube-system"
_INSTANCE_PREFIX = "hd-"
#: Hex digits of the derived instance: 48 bits, so among a thousand installations sharing one
#: gateway two collide with a chance of about one in 500 million.
_INSTANCE_DIGITS = 12


def derived_instance(cluster_uid: str, release: str) -> str:
    """The instance of an installation that does not set one: `hd-` and 12 hex digits of
    SHA-256 of the cluster's identity (the UID of `CLUSTER_ID_NAMESPACE`) and the
    installation's `release` (namespace/name, unique within the cluster). Stable across
    restarts, upgrades and re-renders; distinct for every installation on every cluster, so
    two installations sharing a gateway never sweep each other's sandboxes."""
    digest = hashlib.sha256(f"{cluster_uid}\n{release}".encode()).hexdigest()
    return _INSTANCE_PREFIX + digest[:_INSTANCE_DIGITS]


def sandbox_name(session_uid: str) -> str:
    """`hd-` and 16 base32 characters (80 bits) of SHA-256 of the UID: 19 characters."""
    return _PREFIX + _base32(hashlib.sha256(session_uid.encode()).digest())


def pool_sandbox_name() -> str:
    """`hp-` and 16 random base32 characters (80 bits): never the same name twice."""
    return _POOL_PREFIX + _base32(secrets.token_bytes(10))


def _base32(raw: bytes) -> str:
    encoded = base64.b32encode(raw).decode().lower().rstrip("=")
    return encoded[: MAX_SANDBOX_NAME - len(_PREFIX)]


def sandbox_labels(
    *, session_uid: str, family: str, instance: str, copied: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The labels of a session's sandbox: the ones `copied` from the session, and the
    operator's own, which always win (they decide ownership and the orphan sweep)."""
    own = {LABEL_MANAGED_BY: instance, LABEL_SESSION_UID: session_uid, LABEL_FAMILY: family}
    return {**(copied or {}), **own}


def copied_labels(body: Mapping[str, Any], keys: Iterable[str]) -> dict[str, str]:
    """The labels among `keys` that the session object carries (sessions.copy_labels)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    return {key: str(labels[key]) for key in keys if key in labels}


def sandbox_annotations(*, namespace: str, name: str) -> dict[str, str]:
    return {ANNOTATION_SESSION: f"{namespace}/{name}"}


def pool_sandbox_labels(*, pool_uid: str, family: str, instance: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: instance, LABEL_POOL_UID: pool_uid, LABEL_FAMILY: family}


def pool_sandbox_annotations(*, namespace: str, name: str) -> dict[str, str]:
    return {ANNOTATION_POOL: f"{namespace}/{name}"}


def pool_of(
    labels: Mapping[str, str], annotations: Mapping[str, str]
) -> tuple[str, str, str] | None:
    """(namespace, name, uid) of the pool a sandbox was booted for, or None."""
    return _owner(labels.get(LABEL_POOL_UID), annotations.get(ANNOTATION_POOL))


def _owner(uid: str | None, where: str | None) -> tuple[str, str, str] | None:
    namespace, _, name = (where or "").partition("/")
    if not uid or not namespace or not name:
        return None
    return namespace, name, uid


def session_of(
    labels: Mapping[str, str], annotations: Mapping[str, str]
) -> tuple[str, str, str] | None:
    """(namespace, name, uid) of the session a sandbox belongs to, or None if it is not ours."""
    return _owner(labels.get(LABEL_SESSION_UID), annotations.get(ANNOTATION_SESSION))


def namespace_workspace(prefix: str, namespace: str) -> str:
    """The workspace of `namespace` on a gateway in mode PerNamespace: `prefix` and the
    namespace when that makes a valid workspace name shorter than MAX_WORKSPACE_NAME;
    otherwise `prefix`, the namespace's beginning (runs of `-` folded) and base32 of
    SHA-256 of the whole namespace, exactly MAX_WORKSPACE_NAME long. The two forms never
    meet (by length), and a shortened name changes only with its namespace."""
    plain = prefix + namespace
    if len(plain) < MAX_WORKSPACE_NAME and "--" not in plain:
        return plain
    keep = MAX_WORKSPACE_NAME - len(prefix) - 1 - _WORKSPACE_HASH
    head = re.sub("-+", "-", namespace)[:keep].strip("-")
    start = f"{prefix}{head}-" if head else prefix
    digest = base64.b32encode(hashlib.sha256(namespace.encode()).digest()).decode().lower()
    return start + digest[: MAX_WORKSPACE_NAME - len(start)]


def home_workspace(gateway: GatewayConfig, namespace: str) -> str:
    """Where a new sandbox of `namespace` goes on `gateway`."""
    if gateway.workspaces is WorkspaceMode.PER_NAMESPACE:
        return namespace_workspace(gateway.workspace_prefix, namespace)
    return gateway.workspace


def allowed_workspaces(gateway: GatewayConfig, namespace: str) -> tuple[str, str]:
    """The only workspaces a sandbox of `namespace` may be in, in either mode: its home
    first, then the other one (sandboxes stay where they were made when the mode
    changes). A sandbox labelled as ours anywhere else is not ours: in another namespace's
    workspace, it claims a session it cannot belong to."""
    own = namespace_workspace(gateway.workspace_prefix, namespace)
    if gateway.workspaces is WorkspaceMode.PER_NAMESPACE:
        return own, gateway.workspace
    return gateway.workspace, own


def in_its_workspace(
    gateway: GatewayConfig,
    workspace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> bool:
    """Whether a sandbox in `workspace` labelled as ours can be ours: in a workspace allowed
    for the namespace of the session or pool it names, or (naming none) in the gateway's
    own workspace, where the operator has always listed."""
    owner = session_of(labels, annotations) or pool_of(labels, annotations)
    if owner is None:
        return workspace == gateway.workspace
    return workspace in allowed_workspaces(gateway, owner[0])


def workspace_labels(*, instance: str, namespace: str) -> dict[str, str]:
    """The labels of a workspace the operator creates for `namespace`."""
    return {LABEL_MANAGED_BY: instance, LABEL_NAMESPACE: namespace}
