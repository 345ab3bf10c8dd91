"""The "third-party" origin the web page loads a script and an image from.

Its responses carry ``Cross-Origin-Resource-Policy: cross-origin`` and CORS headers, which a
page under ``Cross-Origin-Embedder-Policy: require-corp`` needs to embed them.

Run: ``python -m uvicorn spark_sandbox.app.thirdparty:app --host 127.0.0.1 --port P``.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REGISTRY = CollectorRegistry()
ASSETS_SERVED = Counter(
    "spark_third_party_assets_served_total",
    "Third-party assets served.",
    ["asset"],
    registry=REGISTRY,
)

WIDGET_JS = b"""// Market-data partner widget: marks the page so a browser test can see it ran.
"use strict";
document.documentElement.dataset.thirdPartyWidget = "loaded";
"""

BADGE_SVG = b"""<svg xmlns="http://www.w3.org/2000/svg" width="88" height="31" viewBox="0 0 88 31">
<rect width="88" height="31" rx="4" fill="#0b5394"/>
<text x="44" y="20" font-family="sans-serif" font-size="11" fill="#fff" text-anchor="middle">
market data</text></svg>
"""

CROSS_ORIGIN_HEADERS = {
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Access-Control-Allow-Origin": "*",
    "Timing-Allow-Origin": "*",
    "Cache-Control": "no-store",
}


async def widget(request: Request) -> Response:
    ASSETS_SERVED.labels(asset="widget.js").inc()
    return Response(WIDGET_JS, media_type="text/javascript", headers=CROSS_ORIGIN_HEADERS)


async def badge(request: Request) -> Response:
    ASSETS_SERVED.labels(asset="badge.svg").inc()
    return Response(BADGE_SVG, media_type="image/svg+xml", headers=CROSS_ORIGIN_HEADERS)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


app = Starlette(
    routes=[
        Route("/widget.js", widget, methods=["GET"]),
        Route("/badge.svg", badge, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
)
