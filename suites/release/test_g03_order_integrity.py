"""G03 Money and order integrity: Idempotency-Key semantics, one order per key under
concurrency, and the open-position partial unique index.

The four answers follow the IETF Idempotency-Key draft (DOMAIN-FACTS §2): 400 without a key,
the stored response byte for byte on a replay, 422 for the same key with another payload, 409
while the first request is in flight. Effects are counted where they land, in ``orders``,
``outbox_events`` and ``positions`` (``postgres_dsn``). G03 also requires M1–M4 (the money
suite), which the registry enforces.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

import httpx
import pytest

from pytest_spark.config import Target
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import money, orders

Reach = Callable[..., AbstractContextManager[list[str]]]
Settings = dict[str, dict[str, Any]]

pytestmark = pytest.mark.go_nogo("G03")


@pytest.fixture
def tradable(
    reach: Reach, spark_target: Target, api_client: httpx.Client, order_settings: Settings
) -> tuple[str, Decimal]:
    """A listed symbol and a price inside its band on the tick grid (its base price)."""
    listed = spark_target.endpoints.get("market_symbols", "")
    symbol = (
        [s.strip() for s in listed.split(",") if s.strip()] or order_settings["market"]["symbols"]
    )[0]
    with reach("api_url") as [api_url]:
        instrument = money.read_instrument(api_client, api_url, symbol)
    return symbol, money.aligned_prices_near(instrument.base_price, instrument.band, 1)[0]


def _timeout(settings: Settings) -> float:
    return float(settings["market"]["db_connect_timeout_s"])


def _statuses(replies: list[orders.Reply]) -> str:
    counts = Counter(
        f"{r.status} {r.code or ('replayed' if r.replayed else 'created')}" for r in replies
    )
    return ", ".join(f"{n}× {status}" for status, n in sorted(counts.items()))


def test_missing_key_is_refused_with_400(
    reach: Reach,
    api_client: httpx.Client,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    order_settings: Settings,
) -> None:
    ticket = orders.Ticket(orders.new_account("g03-nokey"), tradable[0], "buy", 1, tradable[1])
    with reach("api_url", "postgres_dsn") as [api_url, dsn]:
        reply = orders.submit(api_client, api_url, ticket, None)
        booked = orders.booked_orders(dsn, ticket.account_id, _timeout(order_settings))
    spark_evidence.note(f"POST /api/orders without Idempotency-Key: {reply.describe()}")
    spark_evidence.measure("orders_without_key", len(booked), unit="orders", limit=1)
    assert reply.status == 400 and reply.code == "idempotency_key_missing", (
        f"an order without Idempotency-Key answered {reply.describe()}; the draft says 400 "
        "(code idempotency_key_missing), so a client can never place an order it cannot retry"
    )
    assert not booked, f"the refused order was booked anyway: orders {[o.id for o in booked]}"


def test_replay_returns_the_stored_response_byte_for_byte(
    reach: Reach,
    api_client: httpx.Client,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    order_settings: Settings,
) -> None:
    ticket = orders.Ticket(orders.new_account("g03-replay"), tradable[0], "buy", 1, tradable[1])
    key = orders.new_key()
    # The same payload, keys reordered and spaced differently: canonically equal.
    resent = json.dumps(dict(reversed(ticket.body().items())), indent=1).encode()
    with reach("api_url", "postgres_dsn") as [api_url, dsn]:
        first = orders.submit(api_client, api_url, ticket, key)
        replay = orders.submit(api_client, api_url, ticket, key, content=resent)
        booked = orders.booked_orders(dsn, ticket.account_id, _timeout(order_settings))
    spark_evidence.note(
        f"key {key}: first {first.describe()} {first.content!r}; replay {replay.describe()} "
        f"{replay.content!r}"
    )
    assert first.status == 201, f"the first submission answered {first.describe()}, expected 201"
    assert (replay.status, replay.content) == (first.status, first.content), (
        f"the replay of key {key} answered {replay.status} {replay.content!r}, not the stored "
        f"{first.status} {first.content!r} byte for byte"
    )
    assert replay.replayed, "the replay lacks the `Idempotent-Replayed: true` header"
    spark_evidence.measure(
        "replayed_orders_per_key", len(booked), unit="orders", limit=2, at_least=1
    )
    assert len(booked) == 1, f"key {key} submitted twice booked {len(booked)} orders"


def test_same_key_with_another_payload_is_refused_with_422(
    reach: Reach,
    api_client: httpx.Client,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    order_settings: Settings,
) -> None:
    ticket = orders.Ticket(orders.new_account("g03-reuse"), tradable[0], "buy", 1, tradable[1])
    other = orders.Ticket(ticket.account_id, ticket.symbol, "buy", 2, ticket.price)
    key = orders.new_key()
    with reach("api_url", "postgres_dsn") as [api_url, dsn]:
        first = orders.submit(api_client, api_url, ticket, key)
        reused = orders.submit(api_client, api_url, other, key)
        booked = orders.booked_orders(dsn, ticket.account_id, _timeout(order_settings))
    spark_evidence.note(
        f"key {key}: {ticket.describe()} → {first.describe()}; then {other.describe()} → "
        f"{reused.describe()}"
    )
    refused = reused.status == 422 and reused.code == "idempotency_key_reused"
    spark_evidence.measure("reused_key_not_refused", int(not refused), unit="answers", limit=1)
    assert first.status == 201, f"the first submission answered {first.describe()}, expected 201"
    assert refused, (
        f"the same key with another quantity answered {reused.describe()}; the draft says 422 "
        "(idempotency_key_reused): answering the stored order would tell the client its second "
        "order was placed"
    )
    assert len(booked) == 1, f"key {key} booked {len(booked)} orders"


def _burst_one_key(
    api_url: str, tradable: tuple[str, Decimal], purpose: str, settings: Settings
) -> tuple[orders.Ticket, str, list[orders.Reply]]:
    limits = settings["G03"]
    ticket = orders.Ticket(orders.new_account(purpose), tradable[0], "buy", 1, tradable[1])
    key = orders.new_key()
    replies = orders.submit_burst(
        api_url, [(ticket, key)] * int(limits["concurrent_submissions"]), limits["burst_timeout_s"]
    )
    return ticket, key, replies


def test_key_in_flight_is_refused_with_409(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    order_settings: Settings,
) -> None:
    """409 needs two submissions of one key to overlap on the server. The sandbox holds the
    first in flight until the second is in (deterministic); a real target without that hook
    gets bounded bursts, and a run in which none ever overlapped is INCONCLUSIVE, not a pass
    or a failure by luck."""
    limits = order_settings["G03"]
    ticket = orders.Ticket(orders.new_account("g03-inflight"), tradable[0], "buy", 1, tradable[1])
    key = orders.new_key()
    with reach("api_url") as [api_url]:
        held = orders.submit_while_held(api_url, ticket, key, limits["burst_timeout_s"])
    if held is not None:
        _judge_held_submission(key, held, spark_evidence)
        return

    attempts, seen, kinds = int(limits["in_flight_attempts"]), [], []
    with reach("api_url") as [api_url]:
        for _ in range(attempts):
            _, key, replies = _burst_one_key(api_url, tradable, "g03-inflight", order_settings)
            kinds.append(orders.classify_burst(replies))
            seen.append(f"key {key}: {_statuses(replies)} ({kinds[-1]})")
            if kinds[-1] != "no_overlap":
                break
    spark_evidence.note("no hold hook on the target; bursts of one key: " + "; ".join(seen))
    if set(kinds) == {"no_overlap"}:
        spark_evidence.measure("bursts_with_409", None, unit="bursts", at_least=1)
        spark_evidence.inconclusive(
            f"{len(seen)} bursts of {int(limits['concurrent_submissions'])} simultaneous "
            "submissions of one key never overlapped on the server (one order, every other "
            "answer a replay), so the in-flight answer was not exercised: " + "; ".join(seen)
        )
    in_flight = kinds.count("refused")
    spark_evidence.measure("bursts_with_409", in_flight, unit="bursts", at_least=1)
    assert in_flight, (
        "submissions of one key overlapped and each placed its own order instead of being "
        "answered 409 idempotency_key_in_use while the first was in flight: "
        + "; ".join(seen)
        + " (a key must be claimed before the order is placed)"
    )


def _judge_held_submission(
    key: str, held: orders.HeldSubmission, spark_evidence: CheckEvidence
) -> None:
    during = held.during.describe() if held.during is not None else "not sent"
    spark_evidence.note(
        f"key {key} held in flight by the sandbox: resubmitted while held → {during}; the "
        f"held submission then → {held.first.describe()}"
    )
    if held.during is None:
        spark_evidence.measure("bursts_with_409", None, unit="bursts", at_least=1)
        spark_evidence.inconclusive(
            f"the held submission of key {key} never reached the point where its key is "
            f"claimed (it answered {held.first.describe()}), so nothing was in flight"
        )
    spark_evidence.measure(
        "bursts_with_409", int(held.refused_in_flight), unit="bursts", at_least=1
    )
    assert held.refused_in_flight, (
        f"key {key} resubmitted while its first submission was in flight answered {during}; "
        "the draft says 409 idempotency_key_in_use (a key must be claimed before the order is "
        "placed, and a second request under it refused until the first completes)"
    )


def test_concurrent_submissions_of_one_key_create_one_order(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    order_settings: Settings,
) -> None:
    limits = order_settings["G03"]
    with reach("api_url", "postgres_dsn") as [api_url, dsn]:
        ticket, key, replies = _burst_one_key(api_url, tradable, "g03-burst", order_settings)
        booked = orders.booked_orders(dsn, ticket.account_id, _timeout(order_settings))
        events = orders.outbox_events_per_order(
            dsn, [o.id for o in booked], _timeout(order_settings)
        )
    spark_evidence.note(
        f"{len(replies)} simultaneous submissions of key {key} ({ticket.describe()}): "
        f"{_statuses(replies)}; orders booked {[o.id for o in booked]}, outbox events {events}"
    )
    created = [r for r in replies if r.status in (200, 201)]
    odd = [r.describe() for r in replies if r.status not in (200, 201, 409)]
    different = {r.content for r in created}
    spark_evidence.measure(
        "orders_per_key", len(booked), unit="orders", limit=limits["orders_per_key"], at_least=1
    )
    assert len(booked) == 1, (
        f"{len(replies)} simultaneous submissions of one key booked {len(booked)} orders "
        f"(expected exactly 1): {_statuses(replies)}; check that the key is claimed atomically "
        "(INSERT … ON CONFLICT DO NOTHING) before the order transaction"
    )
    most_events = max(events.values())
    spark_evidence.measure(
        "outbox_events_per_order",
        most_events,
        unit="events",
        limit=limits["outbox_events_per_order"],
        at_least=1,
    )
    assert most_events == 1, f"order {booked[0].id} has {most_events} order.accepted outbox events"
    assert not odd, f"answers other than the order or 409: {odd}"
    assert len(different) == 1, (
        f"the {len(created)} successful answers differ: every replay must be the stored "
        f"response byte for byte; got {sorted(different)[:2]}"
    )


def test_parallel_orders_keep_one_open_position(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    order_settings: Settings,
) -> None:
    limits = order_settings["G03"]
    ticket = orders.Ticket(orders.new_account("g03-position"), tradable[0], "buy", 1, tradable[1])
    submissions = [(ticket, orders.new_key()) for _ in range(int(limits["concurrent_submissions"]))]
    with reach("api_url", "postgres_dsn") as [api_url, dsn]:
        replies = orders.submit_burst(api_url, submissions, limits["burst_timeout_s"])
        rows = orders.open_position_rows(dsn, ticket.account_id, _timeout(order_settings))
    accepted = sum(r.status == 201 for r in replies)
    spark_evidence.note(
        f"{len(replies)} parallel orders (own keys) of {ticket.describe()}: {_statuses(replies)}; "
        f"open positions {rows}"
    )
    spark_evidence.measure(
        "open_positions_per_symbol",
        len(rows),
        unit="positions",
        limit=limits["open_positions_per_symbol"],
        at_least=1,
    )
    assert len(rows) == 1, (
        f"{len(replies)} parallel orders for one account and symbol left {len(rows)} open "
        f"positions {rows} (expected 1); check open_position_index and the position upsert"
    )
    assert rows[0][1] == accepted * ticket.quantity, (
        f"the open position holds {rows[0][1]} shares after {accepted} accepted orders of "
        f"{ticket.quantity}: {_statuses(replies)}"
    )


def test_open_position_index_exists(
    reach: Reach, spark_evidence: CheckEvidence, order_settings: Settings
) -> None:
    with reach("postgres_dsn") as [dsn]:
        indexdefs = orders.position_indexes(dsn, _timeout(order_settings))
    spark_evidence.attach("g03_position_indexes", "".join(f"{d}\n" for d in indexdefs))
    finding = orders.open_position_index_finding(indexdefs)
    spark_evidence.measure("open_position_index_findings", int(finding is not None), limit=1)
    assert finding is None, f"{finding}; see attachment g03_position_indexes"


def test_open_position_index_is_enforced(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    order_settings: Settings,
) -> None:
    account = orders.new_account("g03-index")
    with reach("postgres_dsn") as [dsn]:
        error = orders.second_open_position_error(
            dsn, account, tradable[0], _timeout(order_settings)
        )
    spark_evidence.note(
        f"two open positions for {account} {tradable[0]} in a rolled-back transaction: "
        f"{error or 'both inserted'}"
    )
    spark_evidence.measure(
        "second_open_positions_accepted", int(error is None), unit="positions", limit=1
    )
    assert error is not None, (
        f"a second open position for {account} {tradable[0]} was inserted without a "
        "unique_violation: the database does not enforce one open position per account and "
        "symbol (the transaction was rolled back)"
    )
