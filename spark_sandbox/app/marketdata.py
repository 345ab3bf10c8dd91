"""Last price per symbol from the market-data feed, rebroadcast to WebSocket clients.

The feed speaks newline-delimited JSON ticks over TCP. The link is kept up by one background
task that reconnects with capped exponential backoff and full jitter, so a feed restart does
not get a thundering herd of API replicas at the same instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from spark_sandbox.app import metrics
from spark_sandbox.app.instruments import INSTRUMENTS
from spark_sandbox.app.money import InvalidMoney, parse_money

STALE_AFTER_S = 5.0
CONNECT_TIMEOUT_S = 2.0
# A silent link is dropped and redialled; the feed sends ticks far more often than this.
READ_TIMEOUT_S = 10.0
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
MAX_LINE_BYTES = 4096
SUBSCRIBER_QUEUE = 256

log = logging.getLogger("spark.marketdata")


@dataclass(frozen=True)
class Tick:
    symbol: str
    price: Decimal
    feed_ts_ms: int
    received_monotonic: float


class MarketData:
    """``lost``: symbol -> seconds it had already gone without a tick when this process
    started; its ticks are dropped as they arrive (the ``stale_feed_symbol`` defect)."""

    def __init__(self, lost: Mapping[str, float] | None = None) -> None:
        self.last: dict[str, Tick] = {}
        self.connected = False
        self._started = time.monotonic()
        self._lost = dict(lost or {})
        self._subscribers: set[asyncio.Queue[Tick]] = set()

    def age_s(self, symbol: str) -> float | None:
        tick = self.last.get(symbol)
        return None if tick is None else time.monotonic() - tick.received_monotonic

    def is_stale(self, symbol: str) -> bool:
        age = self.age_s(symbol)
        return age is None or age > STALE_AFTER_S

    def publish(self, tick: Tick) -> None:
        if tick.symbol in self._lost:
            return
        self.last[tick.symbol] = tick
        for queue in list(self._subscribers):
            if queue.full():
                # A slow client loses its oldest tick rather than growing the server's memory.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(tick)

    def subscribe(self) -> asyncio.Queue[Tick]:
        queue: asyncio.Queue[Tick] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Tick]) -> None:
        self._subscribers.discard(queue)

    def export_staleness(self) -> None:
        now = time.monotonic()
        for symbol in INSTRUMENTS:
            tick = self.last.get(symbol)
            since = tick.received_monotonic if tick else self._started - self._lost.get(symbol, 0)
            metrics.FEED_STALENESS.labels(symbol=symbol).set(now - since)


def parse_tick(line: bytes, received: float) -> Tick | None:
    """A tick from one feed line; malformed lines and unknown symbols are skipped."""
    try:
        doc = json.loads(line)
        symbol = doc["symbol"]
        price = parse_money(doc["price"])
        ts = int(doc["ts"])
    except (ValueError, KeyError, TypeError, InvalidMoney):
        return None
    if symbol not in INSTRUMENTS:
        return None
    return Tick(symbol, price, ts, received)


async def follow_feed(market: MarketData, host: str, port: int) -> None:
    """Keep a link to the feed until cancelled; each drop is followed by a jittered redial."""
    backoff = BACKOFF_MIN_S
    while True:
        metrics.FEED_RECONNECTS.inc()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE_BYTES)
        except (OSError, TimeoutError) as exc:
            log.info("feed %s:%s unreachable: %s", host, port, exc)
        else:
            market.connected = True
            metrics.FEED_CONNECTED.set(1)
            backoff = BACKOFF_MIN_S
            try:
                await _read_ticks(market, reader)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                log.info("feed link dropped: %s", exc)
            finally:
                market.connected = False
                metrics.FEED_CONNECTED.set(0)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        await asyncio.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, BACKOFF_MAX_S)


async def _read_ticks(market: MarketData, reader: asyncio.StreamReader) -> None:
    while True:
        async with asyncio.timeout(READ_TIMEOUT_S):
            line = await reader.readline()
        if not line:
            return
        tick = parse_tick(line, time.monotonic())
        if tick is not None:
            market.publish(tick)
