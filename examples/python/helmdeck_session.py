"""Walk one HelmdeckSession through helmdeck's session runtime with the official `kubernetes`
client: provision, wait Ready, read the endpoints, renew, extend the lifetime, terminate.
Each step is one request to the Kubernetes API (docs/helmdeck.md).

    python helmdeck_session.py --namespace demo --name research --family browser
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

# The HelmdeckSession API: group helmdeck.dev, version v1alpha1.
GROUP, VERSION, PLURAL = "helmdeck.dev", "v1alpha1", "helmdecksessions"
#: How much later than its current end the example asks the session to expire.
EXTENSION = timedelta(minutes=30)

Session = dict[str, Any]


def main() -> int:
    parser = argparse.ArgumentParser(description="Walk one HelmdeckSession through its life.")
    parser.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--namespace", help="namespace of the session (default: the context's)")
    parser.add_argument("--name", default="helmdeck-example", help="name of the HelmdeckSession")
    parser.add_argument("--family", default="browser", help="browser, python, node or vision")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for Ready")
    parser.add_argument("--keep", action="store_true", help="leave the session running at the end")
    args = parser.parse_args()

    # The usual kubeconfig rules, as kubectl applies them; a flag wins over the context.
    config.load_kube_config(config_file=args.kubeconfig)
    _, context = config.list_kube_config_contexts(args.kubeconfig)
    namespace = args.namespace or context["context"].get("namespace", "default")
    api = client.CustomObjectsApi()

    # Provision: create the session. Without spec.ports it gets its family's default ports
    # (browser: cdp 9222 and mcp 8931). It expires an hour after creation and is suspended
    # after 15 minutes without a renewal.
    session = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HelmdeckSession",
        "metadata": {"name": args.name},
        "spec": {
            "family": args.family,
            "lifetime": {"ttl": "1h", "idleTimeout": "15m", "onIdle": "Suspend"},
        },
    }
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, session)
    try:
        use(api, namespace, args.name, args.timeout)
    except (ApiException, RuntimeError, TimeoutError) as error:
        print(f"helmdeck_session: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            # Terminate: the session's finalizer deletes the sandbox on the gateway.
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
            print(f"deleted: {args.name}")
    return 0


def use(api: client.CustomObjectsApi, namespace: str, name: str, timeout: float) -> None:
    """Wait for the session, print its sandbox and endpoints, renew it and extend it."""
    session = wait_ready(api, namespace, name, timeout)
    status = session["status"]

    # Endpoints: status.endpoints maps each exposed port's name to the URL the gateway
    # returned. The sandbox name is what OpenShell's CLI wants to read the sandbox's logs.
    print(f"sandbox: {status.get('sandbox', {}).get('name', '')}")
    for port, url in sorted(status.get("endpoints", {}).items()):
        print(f"{port} endpoint: {url}")

    # Renew: "in use now" resets the idle clock (and resumes a session suspended as idle).
    now = rfc3339(datetime.now(UTC))
    patch_lease(api, namespace, name, renewTime=now)
    print(f"renewed: {now}")

    # Extend: ask for a later end than status.expiresAt. The operator grants it (expiresAt
    # moves, condition LifetimeExtended True) unless it passes the maximum lifetime.
    expires = status.get("expiresAt")
    end = datetime.fromisoformat(expires) if expires else datetime.now(UTC)
    expire_time = rfc3339(end + EXTENSION)
    patch_lease(api, namespace, name, expireTime=expire_time)
    print(f"extension requested: {expire_time}")


def patch_lease(api: client.CustomObjectsApi, namespace: str, name: str, **lease: str) -> None:
    """Merge-patch status.lease through the status subresource: one PATCH that needs nothing
    but the verb patch on helmdecksessions/status (a dict body goes as a JSON merge patch)."""
    body = {"status": {"lease": lease}}
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)


def wait_ready(api: client.CustomObjectsApi, namespace: str, name: str, timeout: float) -> Session:
    """The session once its Ready condition is True. It lists the session by name, then
    watches it from that list's resourceVersion; when the watch ends (at its timeout, or
    410 Gone for a resourceVersion too old) it lists again, until `timeout` seconds passed."""
    by_name = f"metadata.name={name}"
    deadline = time.monotonic() + timeout
    last: Session = {}  # the latest state seen, to say why on a timeout
    while (remaining := deadline - time.monotonic()) > 0:
        listing = cast(
            Session,
            api.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, field_selector=by_name
            ),
        )
        events = [{"type": "ADDED", "object": item} for item in listing["items"]]
        try:
            stream = watch.Watch().stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                field_selector=by_name,
                resource_version=listing["metadata"]["resourceVersion"],
                timeout_seconds=max(1, int(remaining)),
            )
            for event in itertools.chain(events, stream):
                last = event["object"]
                if event["type"] == "DELETED":
                    raise RuntimeError(f"session {name} was deleted while waiting for it")
                if ready(last):
                    return last
        except ApiException as error:
            if error.status != 410:  # 410 Gone: the resourceVersion is too old, list again
                raise
    ready_ = condition(last, "Ready")
    why = "no Ready condition yet: is the operator running?"
    if ready_:
        why = f"Ready {ready_['status']}, {ready_['reason']}: {ready_['message']}"
    raise TimeoutError(f"session {name} not Ready in {timeout:.0f}s ({why})")


def ready(session: Session) -> bool:
    """Whether the session's Ready condition is True; a Failed session is an error."""
    ready_ = condition(session, "Ready")
    if session.get("status", {}).get("phase") == "Failed":
        raise RuntimeError(f"session failed: {ready_.get('reason')}: {ready_.get('message')}")
    return ready_.get("status") == "True"


def condition(session: Session, type_: str) -> dict[str, str]:
    """The session's condition of that type, {} when it has none yet."""
    for found in session.get("status", {}).get("conditions", []):
        if found["type"] == type_:
            return cast(dict[str, str], found)
    return {}


def rfc3339(moment: datetime) -> str:
    """UTC, to the second, as the Kubernetes API writes times: 2026-01-02T15:04:05Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    sys.exit(main())
