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
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ANNOTATION_INITIAL_POLICY",
    "ANNOTATION_POOL",
    "ANNOTATION_POOL_FALLBACK",
    "ANNOTATION_SESSION",
    "FINALIZER",
    "LABEL_FAMILY",
    "LABEL_MANAGED_BY",
    "LABEL_POOL_UID",
    "LABEL_SESSION_UID",
    "MAX_SANDBOX_NAME",
    "copied_labels",
    "pool_of",
    "pool_sandbox_annotations",
    "pool_sandbox_labels",
    "pool_sandbox_name",
    "sandbox_annotations",
    "sandbox_labels",
    "sandbox_name",
    "session_of",
]

#: OpenShell sandbox names are DNS-1123 labels of at most 19 characters (observed server rule).
MAX_SANDBOX_NAME = 19
_PREFIX = "hd-"
_POOL_PREFIX = "hp-"

#: On every HelmdeckSession: removed only once the gateway confirms its sandbox gone.
FINALIZER = "helmdeck.dev/sandbox-cleanup"

LABEL_MANAGED_BY = "helmdeck.dev/managed-by"
LABEL_SESSION_UID = "helmdeck.dev/session-uid"
LABEL_FAMILY = "helmdeck.dev/family"
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
