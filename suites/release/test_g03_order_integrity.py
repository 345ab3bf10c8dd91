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
from decimal import Decimal

import pytest

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import orders
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.spark_api import (
    Answer,
    HeldSubmission,
    SparkApi,
    Ticket,
    classify_burst,
    new_account,
    new_key,
    submit_burst,
    submit_while_held,
)
from suites.limits import Limits

pytestmark = pytest.mark.go_nogo("G03")


def _db(dsn: str, limits: Limits) -> Postgres:
    return Postgres(dsn, limits.market.db_connect_timeout_s)


def _statuses(replies: list[Answer]) -> str:
    counts = Counter(
        f"{r.status} {r.code or ('replayed' if r.replayed else 'created')}" for r in replies
    )
    return ", ".join(f"{n}× {status}" for status, n in sorted(counts.items()))


def test_missing_key_is_refused_with_400(
    reach: Reach,
    spark_api: SparkApi,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    ticket = Ticket(new_account("g03-nokey"), tradable[0], "buy", 1, tradable[1])
    with reach("api_url", "postgres_dsn") as [_, dsn], _db(dsn, limits) as db:
        reply = spark_api.submit(ticket, None)
        booked = db.booked_orders(ticket.account_id)
    spark_evidence.note(f"POST /api/orders without Idempotency-Key: {reply.describe()}")
    spark_evidence.check(
        "orders_without_key",
        len(booked),
        limit=limits.g03.orders_without_key,
        unit="orders",
        why=f"the refused order was booked anyway (orders {[o.id for o in booked]}): a client "
        "cannot retry an order it sent without a key",
    )
    assert reply.status == 400 and reply.code == "idempotency_key_missing", (
        f"an order without Idempotency-Key answered {reply.describe()}; the draft says 400 "
        "(code idempotency_key_missing), so a client can never place an order it cannot retry"
    )


def test_replay_returns_the_stored_response_byte_for_byte(
    reach: Reach,
    spark_api: SparkApi,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    ticket = Ticket(new_account("g03-replay"), tradable[0], "buy", 1, tradable[1])
    key = new_key()
    # The same payload, keys reordered and spaced differently: canonically equal.
    resent = json.dumps(dict(reversed(ticket.body().items())), indent=1).encode()
    with reach("api_url", "postgres_dsn") as [_, dsn], _db(dsn, limits) as db:
        first = spark_api.submit(ticket, key)
        replay = spark_api.submit(ticket, key, content=resent)
        booked = db.booked_orders(ticket.account_id)
    spark_evidence.note(
        f"key {key}: first {first.describe()} {first.content!r}; replay {replay.describe()} "
        f"{replay.content!r}"
    )
    same = (replay.status, replay.content) == (first.status, first.content)
    mismatched = [] if same and replay.replayed else [replay]
    spark_evidence.check(
        "replay_mismatches",
        len(mismatched),
        limit=1,
        unit="replays",
        why=f"the replay of key {key} with its own payload answered {replay.describe()} "
        f"{replay.content!r}{'' if replay.replayed else ' without Idempotent-Replayed: true'}, "
        f"not the stored {first.status} {first.content!r} byte for byte: a client retrying "
        "after a lost reply cannot learn its order's outcome",
    )
    spark_evidence.check(
        "replayed_orders_per_key",
        len(booked),
        limit=limits.g03.replayed_orders_per_key,
        at_least=limits.g03.replayed_orders_per_key_at_least,
        unit="orders",
        why=f"key {key} submitted twice with one payload booked {len(booked)} orders: a "
        "client's retry must never place (or lose) an order",
    )
    assert first.status == 201, f"the first submission answered {first.describe()}, expected 201"
    assert (replay.status, replay.content) == (first.status, first.content), (
        f"the replay of key {key} answered {replay.status} {replay.content!r}, not the stored "
        f"{first.status} {first.content!r} byte for byte"
    )
    assert replay.replayed, "the replay lacks the `Idempotent-Replayed: true` header"


def test_same_key_with_another_payload_is_refused_with_422(
    reach: Reach,
    spark_api: SparkApi,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    ticket = Ticket(new_account("g03-reuse"), tradable[0], "buy", 1, tradable[1])
    other = Ticket(ticket.account_id, ticket.symbol, "buy", 2, ticket.price)
    key = new_key()
    with reach("api_url", "postgres_dsn") as [_, dsn], _db(dsn, limits) as db:
        first = spark_api.submit(ticket, key)
        reused = spark_api.submit(other, key)
        booked = db.booked_orders(ticket.account_id)
    spark_evidence.note(
        f"key {key}: {ticket.describe()} → {first.describe()}; then {other.describe()} → "
        f"{reused.describe()}"
    )
    refused = reused.status == 422 and reused.code == "idempotency_key_reused"
    spark_evidence.check(
        "reused_key_not_refused",
        int(not refused),
        limit=limits.g03.reused_key_not_refused,
        unit="answers",
        why=f"the same key with another quantity answered {reused.describe()}; the draft says "
        "422 (idempotency_key_reused): answering the stored order would tell the client its "
        "second order was placed",
    )
    assert first.status == 201, f"the first submission answered {first.describe()}, expected 201"
    assert len(booked) == 1, f"key {key} booked {len(booked)} orders"


def _burst_one_key(
    api_url: str, tradable: tuple[str, Decimal], purpose: str, limits: Limits
) -> tuple[Ticket, str, list[Answer]]:
    ticket = Ticket(new_account(purpose), tradable[0], "buy", 1, tradable[1])
    key = new_key()
    burst = [(ticket, key)] * limits.g03.concurrent_submissions
    return ticket, key, submit_burst(api_url, burst, limits.g03.burst_timeout_s)


def test_key_in_flight_is_refused_with_409(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    """409 needs two submissions of one key to overlap on the server. The sandbox holds the
    first in flight until the second is in (deterministic); a real target without that hook
    gets bounded bursts, and a run in which none ever overlapped is INCONCLUSIVE, not a pass
    or a failure by luck."""
    g03 = limits.g03
    ticket = Ticket(new_account("g03-inflight"), tradable[0], "buy", 1, tradable[1])
    key = new_key()
    with reach("api_url") as [api_url]:
        held = submit_while_held(api_url, ticket, key, g03.burst_timeout_s)
    if held is not None:
        _judge_held_submission(key, held, spark_evidence, limits)
        return

    seen, kinds = [], []
    with reach("api_url") as [api_url]:
        for _ in range(g03.in_flight_attempts):
            _, key, replies = _burst_one_key(api_url, tradable, "g03-inflight", limits)
            kinds.append(classify_burst(replies))
            seen.append(f"key {key}: {_statuses(replies)} ({kinds[-1]})")
            if kinds[-1] != "no_overlap":
                break
    spark_evidence.note("no hold hook on the target; bursts of one key: " + "; ".join(seen))
    if set(kinds) == {"no_overlap"}:
        spark_evidence.inconclusive(
            f"{len(seen)} bursts of {g03.concurrent_submissions} simultaneous submissions of "
            "one key never overlapped on the server (one order, every other answer a replay), "
            "so the in-flight answer was not exercised: " + "; ".join(seen)
        )
    spark_evidence.check(
        "bursts_with_409",
        kinds.count("refused"),
        at_least=g03.bursts_with_409_at_least,
        unit="bursts",
        why="submissions of one key overlapped and each placed its own order instead of being "
        "answered 409 idempotency_key_in_use while the first was in flight: "
        + "; ".join(seen)
        + " (a key must be claimed before the order is placed)",
    )


def _judge_held_submission(
    key: str, held: HeldSubmission, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    during = held.during.describe() if held.during is not None else "not sent"
    spark_evidence.note(
        f"key {key} held in flight by the sandbox: resubmitted while held → {during}; the "
        f"held submission then → {held.first.describe()}"
    )
    if held.during is None:
        spark_evidence.inconclusive(
            f"the held submission of key {key} never reached the point where its key is "
            f"claimed (it answered {held.first.describe()}), so nothing was in flight"
        )
    spark_evidence.check(
        "bursts_with_409",
        int(held.refused_in_flight),
        at_least=limits.g03.bursts_with_409_at_least,
        unit="bursts",
        why=f"key {key} resubmitted while its first submission was in flight answered {during}; "
        "the draft says 409 idempotency_key_in_use (a key must be claimed before the order is "
        "placed, and a second request under it refused until the first completes)",
    )


def test_concurrent_submissions_of_one_key_create_one_order(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    g03 = limits.g03
    with reach("api_url", "postgres_dsn") as [api_url, dsn], _db(dsn, limits) as db:
        ticket, key, replies = _burst_one_key(api_url, tradable, "g03-burst", limits)
        booked = db.booked_orders(ticket.account_id)
        events = db.outbox_events_per_order([o.id for o in booked])
    spark_evidence.note(
        f"{len(replies)} simultaneous submissions of key {key} ({ticket.describe()}): "
        f"{_statuses(replies)}; orders booked {[o.id for o in booked]}, outbox events {events}"
    )
    created = [r for r in replies if r.status in (200, 201)]
    odd = [r.describe() for r in replies if r.status not in (200, 201, 409)]
    different = {r.content for r in created}
    spark_evidence.check(
        "orders_per_key",
        len(booked),
        limit=g03.orders_per_key,
        at_least=g03.orders_per_key_at_least,
        unit="orders",
        why=f"{len(replies)} simultaneous submissions of one key booked {len(booked)} orders "
        f"(expected exactly 1): {_statuses(replies)}; check that the key is claimed atomically "
        "(INSERT … ON CONFLICT DO NOTHING) before the order transaction",
    )
    # The key's events across whatever it booked: one submission must reach the ledger once,
    # so N duplicate orders with an event each break this as well as orders_per_key.
    spark_evidence.check(
        "outbox_events_per_order",
        sum(events.values()),
        limit=g03.outbox_events_per_order,
        at_least=g03.outbox_events_per_order_at_least,
        unit="events",
        why=f"key {key} produced order.accepted outbox events {events} (order id -> events; "
        "expected exactly 1 for its one order): the ledger would book the trade "
        f"{sum(events.values())} times",
    )
    assert not odd, f"answers other than the order or 409: {odd}"
    assert len(different) == 1, (
        f"the {len(created)} successful answers differ: every replay must be the stored "
        f"response byte for byte; got {sorted(different)[:2]}"
    )


def test_parallel_orders_keep_one_open_position(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    g03 = limits.g03
    ticket = Ticket(new_account("g03-position"), tradable[0], "buy", 1, tradable[1])
    submissions = [(ticket, new_key()) for _ in range(g03.concurrent_submissions)]
    with reach("api_url", "postgres_dsn") as [api_url, dsn], _db(dsn, limits) as db:
        replies = submit_burst(api_url, submissions, g03.burst_timeout_s)
        rows = db.open_position_rows(ticket.account_id)
    accepted = sum(r.status == 201 for r in replies)
    spark_evidence.note(
        f"{len(replies)} parallel orders (own keys) of {ticket.describe()}: {_statuses(replies)}; "
        f"open positions {rows}"
    )
    spark_evidence.check(
        "open_positions_per_symbol",
        len(rows),
        limit=g03.open_positions_per_symbol,
        at_least=g03.open_positions_per_symbol_at_least,
        unit="positions",
        why=f"{len(replies)} parallel orders for one account and symbol left {len(rows)} open "
        f"positions {rows} (expected 1); check open_position_index and the position upsert",
    )
    if len(rows) == 1:
        assert rows[0][1] == accepted * ticket.quantity, (
            f"the open position holds {rows[0][1]} shares after {accepted} accepted orders of "
            f"{ticket.quantity}: {_statuses(replies)}"
        )


def test_open_position_index_exists(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    with reach("postgres_dsn") as [dsn], _db(dsn, limits) as db:
        indexdefs = db.position_indexes()
    spark_evidence.attach("g03_position_indexes", "".join(f"{d}\n" for d in indexdefs))
    finding = orders.open_position_index_finding(indexdefs)
    spark_evidence.check(
        "open_position_index_findings",
        int(finding is not None),
        limit=limits.g03.open_position_index_findings,
        why=f"{finding}: without it two parallel orders can open two positions for one account "
        "and symbol; see attachment g03_position_indexes",
    )


def test_open_position_index_is_enforced(
    reach: Reach,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("g03-index")
    with reach("postgres_dsn") as [dsn], _db(dsn, limits) as db:
        error = db.second_open_position_error(account, tradable[0])
    spark_evidence.note(
        f"two open positions for {account} {tradable[0]} in a rolled-back transaction: "
        f"{error or 'both inserted'}"
    )
    spark_evidence.check(
        "second_open_positions_accepted",
        int(error is None),
        limit=limits.g03.second_open_positions_accepted,
        unit="positions",
        why=f"a second open position for {account} {tradable[0]} was inserted without a "
        "unique_violation: the database does not enforce one open position per account and "
        "symbol (the transaction was rolled back)",
    )
