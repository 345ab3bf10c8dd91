"""ASGI middleware: request metrics by route template, and CORP on every response.

Pure ASGI rather than BaseHTTPMiddleware so WebSockets pass through untouched and the route
template is read from the scope the router filled in.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spark_sandbox.app import metrics


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cross-origin-resource-policy" for name, _ in headers):
                    # COEP require-corp on the page needs every same-origin subresource to opt in.
                    headers.append((b"cross-origin-resource-policy", b"same-origin"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            labels = {"route": template, "method": scope["method"], "status": str(status)}
            metrics.REQUEST_DURATION.labels(**labels).observe(time.perf_counter() - started)
            metrics.REQUESTS.labels(**labels).inc()
            if status >= 500:
                metrics.SERVER_ERRORS.inc()
