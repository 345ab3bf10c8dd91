"""The Toxiproxy 2.x REST API over a ProxyCollection, as a Starlette application.

Starlette on uvicorn rather than a hand-written HTTP handler: request parsing, keep-alive,
chunked bodies and malformed requests are the HTTP server's job, and both libraries are
already sandbox dependencies. Routes, status codes and the error body
``{"error": ..., "status": ...}`` are Toxiproxy's, so its clients work unchanged.

With a token (the sandbox passes a fresh one per run), every route except ``/health`` and
``/metrics`` requires ``Authorization: Bearer <token>``: the API listens on loopback, where
any local process could otherwise inject faults into the gate's target. Toxiproxy itself has
no authentication; a client of a real Toxiproxy simply sends no token.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from spark_sandbox.chaosproxy.collection import ProxyCollection
from spark_sandbox.chaosproxy.metrics import exposition, metrics_registry
from spark_sandbox.chaosproxy.model import ApiError, bad_request, parse_toxic

VERSION = "2.12.0-spark"
# Readiness and the Prometheus scrape: read-only, and they reveal no proxy or toxic.
OPEN_PATHS = frozenset({"/health", "/metrics"})


def build_app(collection: ProxyCollection, token: str | None = None) -> Starlette:
    registry = metrics_registry(collection)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "proxies": len(collection.proxies)})

    async def metrics(request: Request) -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE_LATEST)

    async def version(request: Request) -> Response:
        return Response(
            json.dumps({"version": VERSION}) + "\n",
            media_type="application/json;charset=utf-8",
        )

    async def proxy_index(request: Request) -> Response:
        return JSONResponse({name: p.to_json() for name, p in collection.proxies.items()})

    async def proxy_create(request: Request) -> Response:
        proxy = await collection.create(await _body(request))
        return JSONResponse(proxy.to_json(), status_code=201)

    async def populate(request: Request) -> Response:
        proxies = await collection.populate(await _body(request))
        return JSONResponse({"proxies": [p.to_json() for p in proxies]}, status_code=201)

    async def proxy_show(request: Request) -> Response:
        return JSONResponse(collection.get(request.path_params["proxy"]).to_json())

    async def proxy_update(request: Request) -> Response:
        proxy = await collection.update(request.path_params["proxy"], await _body(request))
        return JSONResponse(proxy.to_json())

    async def proxy_delete(request: Request) -> Response:
        await collection.remove(request.path_params["proxy"])
        return Response(status_code=204)

    async def reset(request: Request) -> Response:
        await collection.reset()
        return Response(status_code=204)

    async def toxic_index(request: Request) -> Response:
        proxy = collection.get(request.path_params["proxy"])
        return JSONResponse([t.to_json() for t in proxy.ordered_toxics()])

    async def toxic_create(request: Request) -> Response:
        proxy = collection.get(request.path_params["proxy"])
        toxic = proxy.add_toxic(parse_toxic(await _body(request)))
        return JSONResponse(toxic.to_json())

    async def toxic_show(request: Request) -> Response:
        proxy = collection.get(request.path_params["proxy"])
        return JSONResponse(proxy.get_toxic(request.path_params["toxic"]).to_json())

    async def toxic_update(request: Request) -> Response:
        proxy = collection.get(request.path_params["proxy"])
        toxic = proxy.update_toxic(request.path_params["toxic"], await _body(request))
        return JSONResponse(toxic.to_json())

    async def toxic_delete(request: Request) -> Response:
        proxy = collection.get(request.path_params["proxy"])
        proxy.remove_toxic(request.path_params["toxic"])
        return Response(status_code=204)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    routes = [
        Route("/version", version, methods=["GET"]),
        # Not in Toxiproxy's API: the sandbox's readiness probe and Prometheus scrape.
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/populate", populate, methods=["POST"]),
        Route("/proxies", proxy_index, methods=["GET"]),
        Route("/proxies", proxy_create, methods=["POST"]),
        Route("/proxies/{proxy}", proxy_show, methods=["GET"]),
        Route("/proxies/{proxy}", proxy_update, methods=["POST", "PATCH"]),
        Route("/proxies/{proxy}", proxy_delete, methods=["DELETE"]),
        Route("/proxies/{proxy}/toxics", toxic_index, methods=["GET"]),
        Route("/proxies/{proxy}/toxics", toxic_create, methods=["POST"]),
        Route("/proxies/{proxy}/toxics/{toxic}", toxic_show, methods=["GET"]),
        Route("/proxies/{proxy}/toxics/{toxic}", toxic_update, methods=["POST", "PATCH"]),
        Route("/proxies/{proxy}/toxics/{toxic}", toxic_delete, methods=["DELETE"]),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: api_error})
    if token:
        app.add_middleware(RequireToken, token=token)
    app.add_middleware(RefuseBrowsers)
    return app


class RequireToken:
    """401 unless the request carries ``Authorization: Bearer <token>`` (constant-time check)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = {"error": "missing or wrong bearer token", "status": 401}
                answer = JSONResponse(
                    body, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="chaosproxy"'}
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RefuseBrowsers:
    """Toxiproxy answers 403 to browsers so a web page cannot drive the fault API (CSRF)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            agent = dict(scope["headers"]).get(b"user-agent", b"")
            if agent.startswith(b"Mozilla/"):
                await Response("User agent not allowed\n", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
