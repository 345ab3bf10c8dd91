"""The reference Spark API: a Starlette app configured from ``SPARK_*`` at start-up.

Run: ``python -m uvicorn spark_sandbox.app.main:app --host 127.0.0.1 --port P``.
docs/reference-api.md describes the endpoints, docs/metrics-contract.md the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from spark_sandbox.app import (
    holds,
    market_rules,
    metrics,
    orders,
    provider_state,
    reads,
    settings,
    web,
)
from spark_sandbox.app.context import AppContext
from spark_sandbox.app.db import ConnectionPool, PoolTimeout
from spark_sandbox.app.flags import load_flags
from spark_sandbox.app.instruments import INSTRUMENTS
from spark_sandbox.app.marketdata import MarketData, follow_feed
from spark_sandbox.app.money import Rounding, render
from spark_sandbox.app.observability import RequestMetrics
from spark_sandbox.app.order_rules import MAX_ORDER_ID, band, unstorable_text
from spark_sandbox.app.prices_ws import stream_prices
from spark_sandbox.app.problems import Problem, service_unavailable

STATIC_DIR = Path(__file__).with_name("static")
MAX_ORDER_BODY_BYTES = 16 * 1024
MAX_SANDBOX_BODY_BYTES = 16 * 1024
# The app_clock_skew defect: /api/time runs this far ahead of the host clock.
CLOCK_SKEW_MS = 2000
# The stale_feed_symbol defect: the feed handler drops every tick of a symbol the canary's
# traffic does not trade (orders in it would all be risk-blocked, breaking S4 as well), and
# the symbol went stale in the previous session, this long before the process started. Dated
# back because S3 reads max_over_time(staleness) over the stage's window, 15 s in the sandbox:
# a symbol stale only since start-up would stay under S3's 30 s for a whole stage.
STALE_FEED_SYMBOL = "FROTO"
STALE_BEFORE_START_S = 60.0


def context(request: Request | WebSocket) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def submit_order(request: Request) -> Response:
    ctx = context(request)
    raw = await request.body()
    if len(raw) > MAX_ORDER_BODY_BYTES:
        raise Problem(413, "invalid_order", f"an order body is at most {MAX_ORDER_BODY_BYTES} B")
    answer = await orders.submit(ctx, request.headers.getlist("idempotency-key"), raw)
    media = "application/problem+json" if answer.status >= 400 else "application/json"
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return Response(answer.body, status_code=answer.status, media_type=media, headers=headers)


async def get_order(request: Request) -> Response:
    ctx = context(request)
    order_id = request.path_params["order_id"]
    doc = await reads.get_order(ctx, order_id) if 0 < order_id <= MAX_ORDER_ID else None
    if doc is None:
        raise Problem(404, "order_not_found", f"there is no order {order_id}")
    return JSONResponse(doc)


async def get_positions(request: Request) -> Response:
    ctx = context(request)
    account_id = request.query_params.get("account_id")
    if not account_id:
        raise Problem(400, "invalid_request", "account_id is a required query parameter")
    if unstorable_text(account_id) is not None:
        raise Problem(400, "invalid_request", "account_id must not hold a NUL character")
    return JSONResponse(
        {"account_id": account_id, "positions": await reads.open_positions(ctx, account_id)}
    )


async def get_market(request: Request) -> Response:
    ctx = context(request)
    symbol = request.path_params["symbol"].upper()
    if symbol not in INSTRUMENTS:
        raise Problem(404, "unknown_symbol", f"{symbol!r} is not a listed instrument")
    as_float = ctx.defect("float_money")
    tick = ctx.market.last.get(symbol)
    age = ctx.market.age_s(symbol)
    lower, upper = band(symbol, outward=ctx.defect("band_rounded_outward"))
    base = INSTRUMENTS[symbol]
    return JSONResponse(
        {
            "symbol": symbol,
            "base_price": render(base, as_float=as_float),
            "last_price": render(tick.price, as_float=as_float) if tick else None,
            "last_tick_ts": tick.feed_ts_ms if tick else None,
            "last_tick_age_ms": None if age is None else round(age * 1000),
            "stale": ctx.market.is_stale(symbol),
            "tick": str(market_rules.tick_size(tick.price if tick else base)),
            "band": {
                "lower": render(lower, as_float=as_float),
                "upper": render(upper, as_float=as_float),
            },
        }
    )


async def get_flags(request: Request) -> Response:
    ctx = context(request)
    return JSONResponse(load_flags(ctx.settings.flags_file, ctx.settings.defects))


async def get_time(request: Request) -> Response:
    ctx = context(request)
    epoch_ms = time.time_ns() // 1_000_000
    if ctx.defect("app_clock_skew"):
        epoch_ms += CLOCK_SKEW_MS
    return JSONResponse({"epoch_ms": epoch_ms})


async def health(request: Request) -> Response:
    ctx = context(request)
    database = "ok"
    try:
        async with asyncio.timeout(1.0), ctx.pool.connection() as conn:
            await conn.execute("SELECT 1")
    except (psycopg.Error, PoolTimeout, TimeoutError, OSError):
        database = "unavailable"
    doc = {
        "status": "ok" if database == "ok" else "degraded",
        "database": database,
        "feed_connected": ctx.market.connected,
        "track": ctx.settings.track,
    }
    return JSONResponse(doc, status_code=200 if database == "ok" else 503)


async def scrape(request: Request) -> Response:
    ctx = context(request)
    ctx.market.export_staleness()
    await reads.refresh_database_gauges(ctx)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def page(request: Request) -> Response:
    return web.render_page(context(request), request)


async def csp_report(request: Request) -> Response:
    return await web.receive_csp_report(context(request), request)


async def sandbox_json(request: Request, what: str) -> object:
    """The body of a sandbox-only route; 404 outside the sandbox, 400 when it is not JSON."""
    if not context(request).settings.sandbox:
        raise Problem(404, "not_found", f"{what} exist only in the sandbox")
    raw = await request.body()
    if len(raw) > MAX_SANDBOX_BODY_BYTES:
        raise Problem(413, "invalid_request", f"the body is at most {MAX_SANDBOX_BODY_BYTES} B")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise Problem(400, "invalid_request", "the body is not valid UTF-8 JSON") from None
    if (where := unstorable_text(doc)) is not None:
        raise Problem(400, "invalid_request", f"{where} holds a NUL or an unpaired surrogate")
    return doc


async def sandbox_provider_state(request: Request) -> Response:
    ctx = context(request)
    doc = await sandbox_json(request, "provider states")
    if not isinstance(doc, dict) or not isinstance(doc.get("state"), str):
        raise Problem(400, "invalid_request", 'expected {"state": str, "params": {}, "action"}')
    params = doc.get("params") or {}
    action = doc.get("action", "setup")
    if not isinstance(params, dict) or action not in ("setup", "teardown"):
        raise Problem(400, "invalid_request", "params must be an object, action setup|teardown")
    return JSONResponse(await provider_state.apply(ctx, doc["state"], params, action))


async def sandbox_hold(request: Request) -> Response:
    key, timeout_s = holds.parse_hold(await sandbox_json(request, "holds"))
    context(request).holds.arm(key, timeout_s)
    return JSONResponse({"key": key, "timeout_s": timeout_s}, status_code=201)


async def sandbox_hold_await(request: Request) -> Response:
    key, timeout_s = holds.parse_hold(await sandbox_json(request, "holds"))
    held = await context(request).holds.wait_reached(key, timeout_s)
    return JSONResponse({"key": key, "held": held})


async def sandbox_hold_release(request: Request) -> Response:
    key, _ = holds.parse_hold(await sandbox_json(request, "holds"))
    if not context(request).holds.release(key):
        raise Problem(404, "hold_not_found", "no hold is armed on this key")
    return JSONResponse({"key": key, "released": True})


async def price_stream(ws: WebSocket) -> None:
    await stream_prices(context(ws), ws)


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def on_database_failure(request: Request, exc: Exception) -> Response:
    # Anything database-shaped that escaped a handler is still a 503, never a 500.
    return service_unavailable(f"database unavailable ({type(exc).__name__})").response()


async def on_unexpected(request: Request, exc: Exception) -> Response:
    return Problem(500, "internal_error", "unexpected server error").response()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    config = settings.from_env()
    if config.build_version is not None:
        metrics.announce_build(config.build_version)
    stale_symbol = "stale_feed_symbol" in config.defects
    lost = {STALE_FEED_SYMBOL: STALE_BEFORE_START_S} if stale_symbol else {}
    ctx = AppContext(
        settings=config,
        pool=ConnectionPool(config.app_dsn, size=config.pool_size),
        market=MarketData(lost=lost),
        rounding=Rounding(half_up="half_up_rounding" in config.defects),
    )
    app.state.ctx = ctx
    tasks = [asyncio.create_task(reads.collect_expired_keys(ctx), name="idempotency-gc")]
    if config.feed_addr is not None:
        tasks.append(asyncio.create_task(follow_feed(ctx.market, *config.feed_addr), name="feed"))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ctx.pool.close()


routes = [
    Route("/", page, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/metrics", scrape, methods=["GET"]),
    Route("/api/orders", submit_order, methods=["POST"]),
    Route("/api/orders/{order_id:int}", get_order, methods=["GET"]),
    Route("/api/positions", get_positions, methods=["GET"]),
    Route("/api/market/{symbol}", get_market, methods=["GET"]),
    Route("/api/flags", get_flags, methods=["GET"]),
    Route("/api/time", get_time, methods=["GET"]),
    Route("/csp-report", csp_report, methods=["POST"]),
    Route("/_sandbox/provider-state", sandbox_provider_state, methods=["POST"]),
    Route("/_sandbox/holds", sandbox_hold, methods=["POST"]),
    Route("/_sandbox/holds/await", sandbox_hold_await, methods=["POST"]),
    Route("/_sandbox/holds/release", sandbox_hold_release, methods=["POST"]),
    WebSocketRoute("/ws/prices", price_stream),
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]

app = Starlette(
    routes=routes,
    middleware=[Middleware(RequestMetrics)],
    exception_handlers={
        Problem: on_problem,
        psycopg.Error: on_database_failure,
        PoolTimeout: on_database_failure,
        TimeoutError: on_database_failure,
        Exception: on_unexpected,
    },
    lifespan=lifespan,
)
