"""The sandbox's market-data feed: newline-delimited JSON ticks over plain TCP.

Every connected client gets one tick per listed instrument at once (so a fresh subscriber
never waits a whole interval for its first price), then one tick per instrument every
interval. Prices walk by whole ticks on the BIST grid and never leave the instrument's
±20 % band, so anything the API derives from the feed can be checked against the same rules.

Run: ``python -m spark_sandbox.app.feed --host 127.0.0.1 --port P [--interval-ms 200] [--seed N]
[--metrics-port M]``; with ``--metrics-port`` it also serves Prometheus metrics on 127.0.0.1:M.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from spark_sandbox.app.instruments import INSTRUMENTS, PRICE_MARGIN
from spark_sandbox.app.market_rules import MIN_PRICE, price_band, round_to_tick, tick_size

# A subscriber that lets this much pile up unread is not keeping up; dropping it keeps the
# feed's memory bounded when a client (or the fault proxy in front of it) stalls.
MAX_CLIENT_BACKLOG_BYTES = 1 << 20
# How long a stopping feed gives its subscribers to read what was already written.
SHUTDOWN_GRACE_SECONDS = 2.0


def tick_up(price: Decimal) -> Decimal:
    """The next price on the grid above ``price``; band edges are multiples of both ticks."""
    return price + tick_size(price)


def tick_down(price: Decimal) -> Decimal:
    """The next price on the grid below ``price``, using the tick of the band it lands in."""
    return price - tick_size(price - MIN_PRICE)


class FeedMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Counter(
            "spark_feed_ticks", "Ticks minted (one per symbol per round)", registry=self.registry
        )
        self.subscribers = Gauge(
            "spark_feed_subscribers", "Clients connected to the feed now", registry=self.registry
        )
        self.dropped = Counter(
            "spark_feed_dropped_subscribers",
            "Subscribers disconnected for falling too far behind",
            registry=self.registry,
        )


@dataclass
class Quote:
    symbol: str
    price: Decimal
    lower: Decimal
    upper: Decimal


class PriceWalk:
    """A seeded random walk of every instrument, one whole tick at a time, inside its band."""

    def __init__(self, instruments: Mapping[str, Decimal], seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.quotes: dict[str, Quote] = {}
        for symbol, base in instruments.items():
            lower, upper = price_band(base, PRICE_MARGIN)
            start = round_to_tick(base, ROUND_HALF_EVEN)
            self.quotes[symbol] = Quote(symbol, start, lower, upper)

    def step(self) -> None:
        for quote in self.quotes.values():
            move = self.rng.choice((-1, 0, 1))
            if move > 0:
                candidate = tick_up(quote.price)
            elif move < 0 and quote.price > MIN_PRICE:
                candidate = tick_down(quote.price)
            else:
                continue
            # At a limit the price simply stays put, as a limit-locked stock would.
            if quote.lower <= candidate <= quote.upper:
                quote.price = candidate


class TickFeed:
    """Fans the walk out to every subscriber; one global sequence number orders all ticks.

    The latest tick of each symbol is kept as sent, so a new subscriber's first lines repeat
    those ticks (same ``seq`` and ``ts``) instead of minting new ones: sequence numbers stay
    gap-free for everybody else, and ``ts`` stays the time the price was actually set.
    """

    def __init__(
        self, walk: PriceWalk, interval: float, metrics: FeedMetrics | None = None
    ) -> None:
        self.walk = walk
        self.interval = interval
        self.metrics = metrics or FeedMetrics()
        self.seq = 0
        self.subscribers: set[asyncio.StreamWriter] = set()
        self.latest: dict[str, bytes] = {}
        self.tick_round()

    def tick_round(self) -> bytes:
        """One line per instrument at the current prices, each with the next sequence number."""
        ts = time.time_ns() // 1_000_000
        for quote in self.walk.quotes.values():
            self.seq += 1
            tick = {"symbol": quote.symbol, "price": str(quote.price), "ts": ts, "seq": self.seq}
            self.latest[quote.symbol] = (json.dumps(tick, separators=(",", ":")) + "\n").encode()
        self.metrics.ticks.inc(len(self.walk.quotes))
        return self.snapshot()

    def snapshot(self) -> bytes:
        return b"".join(self.latest.values())

    def send(self, writer: asyncio.StreamWriter, payload: bytes) -> None:
        if writer.is_closing():
            self.subscribers.discard(writer)
            return
        if writer.transport.get_write_buffer_size() > MAX_CLIENT_BACKLOG_BYTES:
            self.subscribers.discard(writer)
            self.metrics.dropped.inc()
            writer.close()
            return
        writer.write(payload)

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.subscribers.add(writer)
        self.metrics.subscribers.inc()
        self.send(writer, self.snapshot())
        try:
            # Clients never send anything meaningful; reading only tells us when they leave.
            while await reader.read(4096):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self.metrics.subscribers.dec()
            self.subscribers.discard(writer)
            writer.close()

    async def publish_forever(self, stopping: asyncio.Event) -> None:
        next_at = time.monotonic()
        while not stopping.is_set():
            next_at += self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), max(0.0, next_at - time.monotonic()))
            if stopping.is_set():
                return
            self.walk.step()
            payload = self.tick_round()
            for writer in list(self.subscribers):
                self.send(writer, payload)

    async def close_subscribers(self) -> None:
        writers = list(self.subscribers)
        self.subscribers.clear()
        for writer in writers:
            writer.close()
        if writers:
            await asyncio.wait(
                [asyncio.ensure_future(w.wait_closed()) for w in writers],
                timeout=SHUTDOWN_GRACE_SECONDS,
            )


async def serve(
    host: str, port: int, interval: float, seed: int | None, metrics_port: int | None = None
) -> None:
    feed = TickFeed(PriceWalk(INSTRUMENTS, seed), interval)
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1", registry=feed.metrics.registry)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = await asyncio.start_server(feed.on_connect, host, port)
    print(f"market-data feed listening on {host}:{port}", flush=True)
    publisher = asyncio.create_task(feed.publish_forever(stopping))
    await stopping.wait()
    server.close()
    await publisher
    await feed.close_subscribers()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE_SECONDS)
    print("market-data feed stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spark_sandbox.app.feed", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval-ms", type=int, default=200, help="time between tick rounds")
    parser.add_argument("--seed", type=int, default=None, help="seed of the price walk")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    args = parser.parse_args(argv)
    if args.interval_ms <= 0:
        parser.error("--interval-ms must be positive")
    asyncio.run(serve(args.host, args.port, args.interval_ms / 1000, args.seed, args.metrics_port))


if __name__ == "__main__":
    main()
