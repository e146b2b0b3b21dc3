"""A small HTTP JSON control surface for an emulator running in another process.

Integration tests run the emulator as a subprocess (so it outlives operator restarts, as a
real gateway would) and still need to read its state and inject faults. This is that
side door; it is not part of OpenShell's API. Routes are documented in docs/emulator.md.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from helmdeck_operator.emulator.errors import GatewayError
from helmdeck_operator.emulator.state import Gateway

__all__ = ["build_admin_app"]

_GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
_REQUESTS: web.AppKey[Any] = web.AppKey("requests", object)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


def _gateway_error(error: GatewayError) -> web.Response:
    status = 404 if error.code.value == "NOT_FOUND" else 400
    return _json({"code": error.code.value, "message": error.message}, status)


async def snapshot(request: web.Request) -> web.Response:
    data = request.app[_GATEWAY].snapshot()
    data["requests"] = list(request.app[_REQUESTS])
    return _json(data)


async def get_faults(request: web.Request) -> web.Response:
    return _json(request.app[_GATEWAY].faults.to_dict())


async def post_faults(request: web.Request) -> web.Response:
    faults = request.app[_GATEWAY].faults
    try:
        faults.apply(await _body(request))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return _json({"message": f"bad fault spec: {exc}"}, 400)
    return _json(faults.to_dict())


async def delete_faults(request: web.Request) -> web.Response:
    faults = request.app[_GATEWAY].faults
    faults.clear()
    return _json(faults.to_dict())


async def post_logs(request: web.Request) -> web.Response:
    gateway = request.app[_GATEWAY]
    ws, name = request.match_info["workspace"], request.match_info["name"]
    body = await _body(request)
    lines = body.get("lines") or [body]
    try:
        for line in lines:
            gateway.append_log(
                ws,
                name,
                str(line.get("message", "")),
                level=str(line.get("level", "INFO")),
                target=str(line.get("target", "")),
                source=str(line.get("source", "sandbox")),
                fields={str(k): str(v) for k, v in dict(line.get("fields", {})).items()},
            )
    except GatewayError as error:
        return _gateway_error(error)
    return _json({"appended": len(lines)})


async def post_vanish(request: web.Request) -> web.Response:
    try:
        record = request.app[_GATEWAY].vanish(
            request.match_info["workspace"], request.match_info["name"]
        )
    except GatewayError as error:
        return _gateway_error(error)
    return _json({"vanished": record.id})


async def post_error(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        record = request.app[_GATEWAY].force_error(
            request.match_info["workspace"],
            request.match_info["name"],
            message=str(body.get("message", "main process exited")),
            exit_code=int(body.get("exit_code", 1)),
        )
    except GatewayError as error:
        return _gateway_error(error)
    return _json(record.to_dict())


async def healthz(_: web.Request) -> web.Response:
    return _json({"ok": True})


def build_admin_app(gateway: Gateway, requests: Any) -> web.Application:
    """The admin app over one gateway; `requests` is the servicer's request log."""
    app = web.Application()
    app[_GATEWAY] = gateway
    app[_REQUESTS] = requests
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/snapshot", snapshot)
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", post_faults)
    app.router.add_delete("/faults", delete_faults)
    base = "/sandboxes/{workspace}/{name}"
    app.router.add_post(f"{base}/logs", post_logs)
    app.router.add_post(f"{base}/vanish", post_vanish)
    app.router.add_post(f"{base}/error", post_error)
    return app
