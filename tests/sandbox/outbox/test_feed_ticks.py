"""The market-data feed: every symbol at once on connect, whole BIST ticks, inside the band."""

from __future__ import annotations

import json
import socket
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from outbox_harness import Services, metric_value, scrape, wait_until

from spark_sandbox.app.feed import PriceWalk, TickFeed, tick_down, tick_up
from spark_sandbox.app.instruments import INSTRUMENTS, PRICE_MARGIN
from spark_sandbox.app.market_rules import is_tick_aligned, price_band
from spark_sandbox.services.ports import free_port, is_listening

READ_DEADLINE_SECONDS = 10.0


def read_ticks(port: int, count: int) -> list[dict[str, Any]]:
    """The first ``count`` ticks a new subscriber receives, read under one deadline."""
    deadline = time.monotonic() + READ_DEADLINE_SECONDS
    ticks: list[dict[str, Any]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=READ_DEADLINE_SECONDS) as sock:
        buffer = b""
        while len(ticks) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"feed on port {port} sent {len(ticks)} of {count} ticks in time")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                pytest.fail(f"feed on port {port} closed the connection after {len(ticks)} ticks")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            ticks.extend(json.loads(line, parse_float=Decimal) for line in lines if line)
    return ticks[:count]


def assert_on_grid_and_in_band(tick: dict[str, Any]) -> None:
    assert isinstance(tick["price"], str), f"price must be a decimal string: {tick}"
    price = Decimal(tick["price"])
    lower, upper = price_band(INSTRUMENTS[tick["symbol"]], PRICE_MARGIN)
    assert is_tick_aligned(price), f"{tick['symbol']} {price} is off the BIST tick grid"
    assert lower <= price <= upper, f"{tick['symbol']} {price} outside [{lower}, {upper}]"
    assert isinstance(tick["ts"], int) and isinstance(tick["seq"], int)


def test_subscriber_gets_every_symbol_first_then_aligned_ticks(feed_services: Services) -> None:
    _, port = feed_services.feed("--interval-ms", "20", "--seed", "7")
    rounds = 30
    ticks = read_ticks(port, len(INSTRUMENTS) * rounds)

    first_round = ticks[: len(INSTRUMENTS)]
    assert {t["symbol"] for t in first_round} == set(INSTRUMENTS)
    for tick in ticks:
        assert_on_grid_and_in_band(tick)
    seqs = [t["seq"] for t in ticks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers have gaps"
    moved = {t["symbol"] for t in ticks if Decimal(t["price"]) != INSTRUMENTS[t["symbol"]]}
    assert moved, "no price moved in 30 rounds"


def test_two_subscribers_see_the_same_sequence(feed_services: Services) -> None:
    _, port = feed_services.feed("--interval-ms", "20")
    first = read_ticks(port, len(INSTRUMENTS) * 3)
    second = read_ticks(port, len(INSTRUMENTS) * 3)
    # Joining later repeats the latest ticks instead of minting new sequence numbers.
    assert second[0]["seq"] > first[0]["seq"]
    for ticks in (first, second):
        assert len({t["seq"] for t in ticks}) == len(ticks)


def test_sigterm_stops_the_feed_cleanly(feed_services: Services) -> None:
    proc, port = feed_services.feed("--interval-ms", "50")
    read_ticks(port, len(INSTRUMENTS))
    child = proc.proc
    assert child is not None
    child.terminate()
    assert child.wait(10) == 0
    wait_until(lambda: not is_listening(port), f"feed port {port} closing")


@pytest.mark.parametrize(
    ("price", "up", "down"),
    [
        ("19.99", "20.00", "19.98"),
        ("20.00", "20.02", "19.99"),
        ("250.00", "250.25", "249.90"),
        ("249.90", "250.00", "249.80"),
        ("2500.00", "2502.50", "2499.00"),
        ("0.02", "0.03", "0.01"),
    ],
)
def test_one_tick_moves_across_band_edges(price: str, up: str, down: str) -> None:
    assert tick_up(Decimal(price)) == Decimal(up)
    assert tick_down(Decimal(price)) == Decimal(down)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(1, 400))
def test_price_walk_stays_on_grid_inside_band(seed: int, steps: int) -> None:
    walk = PriceWalk(INSTRUMENTS, seed)
    for _ in range(steps):
        walk.step()
    for quote in walk.quotes.values():
        assert is_tick_aligned(quote.price), quote
        assert quote.lower <= quote.price <= quote.upper, quote


def test_walk_reaches_a_limit_and_stays_inside() -> None:
    # A narrow band around a cheap symbol: a long walk must touch a limit and never cross it.
    walk = PriceWalk({"SASA": Decimal("4.58")}, seed=3)
    seen = set()
    for _ in range(20000):
        walk.step()
        seen.add(walk.quotes["SASA"].price)
    lower, upper = price_band(Decimal("4.58"), PRICE_MARGIN)
    assert min(seen) >= lower and max(seen) <= upper
    assert lower in seen or upper in seen


def test_snapshot_lines_are_decimal_strings() -> None:
    feed = TickFeed(PriceWalk(INSTRUMENTS, seed=1), interval=1.0)
    lines = feed.snapshot().decode().splitlines()
    assert len(lines) == len(INSTRUMENTS)
    for line in lines:
        assert_on_grid_and_in_band(json.loads(line))


def test_feed_metrics_count_subscribers_and_ticks(feed_services: Services) -> None:
    metrics_port = free_port()
    _, port = feed_services.feed("--interval-ms", "20", "--metrics-port", str(metrics_port))
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    wait_until(lambda: is_listening(metrics_port), "the feed's metrics port opening")

    def subscribers() -> float:
        return float(metric_value(scrape(metrics_url), "spark_feed_subscribers"))

    with socket.create_connection(("127.0.0.1", port), timeout=READ_DEADLINE_SECONDS) as sock:
        sock.recv(1024)
        wait_until(lambda: subscribers() == 1, "the subscriber gauge showing one client")
    wait_until(lambda: subscribers() == 0, "the subscriber gauge returning to 0")
    assert metric_value(scrape(metrics_url), "spark_feed_ticks_total") >= len(INSTRUMENTS)
