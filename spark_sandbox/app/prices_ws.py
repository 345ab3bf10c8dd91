"""WS /ws/prices: the last price of every symbol on connect, then each tick as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json

from starlette.websockets import WebSocket, WebSocketDisconnect

from spark_sandbox.app import metrics
from spark_sandbox.app.context import AppContext
from spark_sandbox.app.marketdata import Tick
from spark_sandbox.app.money import render


def tick_message(tick: Tick, *, float_money: bool) -> str:
    return json.dumps(
        {
            "symbol": tick.symbol,
            "price": render(tick.price, as_float=float_money),
            "ts": tick.feed_ts_ms,
        }
    )


async def stream_prices(ctx: AppContext, ws: WebSocket) -> None:
    await ws.accept()
    metrics.WS_CONNECTS.inc()
    metrics.WS_CLIENTS.inc()
    queue = ctx.market.subscribe()
    float_money = ctx.defect("float_money")

    async def push() -> None:
        for tick in list(ctx.market.last.values()):
            await ws.send_text(tick_message(tick, float_money=float_money))
        while True:
            tick = await queue.get()
            await ws.send_text(tick_message(tick, float_money=float_money))

    async def until_closed() -> None:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass

    tasks = {asyncio.create_task(push()), asyncio.create_task(until_closed())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await task
        ctx.market.unsubscribe(queue)
        metrics.WS_CLIENTS.dec()
        metrics.WS_DISCONNECTS.inc()
