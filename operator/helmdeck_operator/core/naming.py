"""How a session's sandbox is named and labelled on the gateway.

The name is a pure function of the session UID, so a restart at any point finds the same
sandbox instead of creating a second one; the labels bind the sandbox to its session and to
this operator instance, which is how the orphan sweep recognises what it owns.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

__all__ = [
    "ANNOTATION_INITIAL_POLICY",
    "ANNOTATION_SESSION",
    "FINALIZER",
    "LABEL_FAMILY",
    "LABEL_MANAGED_BY",
    "LABEL_SESSION_UID",
    "MAX_SANDBOX_NAME",
    "sandbox_annotations",
    "sandbox_labels",
    "sandbox_name",
    "session_of",
]

#: OpenShell sandbox names are DNS-1123 labels of at most 19 characters (observed server rule).
MAX_SANDBOX_NAME = 19
_PREFIX = "hd-"

#: On every HelmdeckSession: removed only once the gateway confirms its sandbox gone.
FINALIZER = "helmdeck.dev/sandbox-cleanup"

LABEL_MANAGED_BY = "helmdeck.dev/managed-by"
LABEL_SESSION_UID = "helmdeck.dev/session-uid"
LABEL_FAMILY = "helmdeck.dev/family"
#: namespace/name of the owning session; an annotation because names may exceed label limits.
ANNOTATION_SESSION = "helmdeck.dev/session"
#: The policy revision (sha256:...) the sandbox was created with: its policy version 1, the
#: baseline OpenShell's live-change rules compare with. Nothing relabels a sandbox, and this
#: never changes, so it tells the gateway cache the hash of version 1 without asking.
ANNOTATION_INITIAL_POLICY = "helmdeck.dev/initial-policy"


def sandbox_name(session_uid: str) -> str:
    """`hd-` and 16 base32 characters (80 bits) of SHA-256 of the UID: 19 characters."""
    digest = hashlib.sha256(session_uid.encode()).digest()
    encoded = base64.b32encode(digest).decode().lower().rstrip("=")
    return _PREFIX + encoded[: MAX_SANDBOX_NAME - len(_PREFIX)]


def sandbox_labels(*, session_uid: str, family: str, instance: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: instance, LABEL_SESSION_UID: session_uid, LABEL_FAMILY: family}


def sandbox_annotations(*, namespace: str, name: str) -> dict[str, str]:
    return {ANNOTATION_SESSION: f"{namespace}/{name}"}


def session_of(
    labels: Mapping[str, str], annotations: Mapping[str, str]
) -> tuple[str, str, str] | None:
    """(namespace, name, uid) of the session a sandbox belongs to, or None if it is not ours."""
    uid = labels.get(LABEL_SESSION_UID)
    namespace, _, name = annotations.get(ANNOTATION_SESSION, "").partition("/")
    if not uid or not namespace or not name:
        return None
    return namespace, name, uid
