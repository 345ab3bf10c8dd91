"""K1 consumer side: the web UI's expectations of the API as pact interactions.

Each :class:`WebInteraction` adds one interaction to a pact and exercises it with the web
client, so a consumer test can check one interaction alone and the session fixture can write
the whole pact (``web-spark-api.json``) that the provider check replays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pact import Pact, match

from .web_client import (
    AVERAGE_PRICE,
    ISO_8601,
    MONEY,
    ApiProblem,
    WebClient,
)

CONSUMER = "web"
PROVIDER = "spark-api"
PACT_NAME = f"{CONSUMER}-{PROVIDER}"

# Provider states the target's hook knows (spark_sandbox/app/provider_state.py documents them).
FRESH_MARKET = "market data is fresh"
ORDER_42 = "an order 42 exists"
POSITION_A_THYAO = "account A has an open position in THYAO"
# Set up by the gate itself through the public API (place the order under the key), so it
# works on any target: a replay needs an earlier submission, not a back door.
ORDER_PLACED = "an order was placed under an Idempotency-Key"

TICKET = {"account_id": "acct-web", "symbol": "THYAO", "side": "buy", "price": "285.25"}
NEW_ORDER = {**TICKET, "quantity": 10}
REPLAYED_ORDER = {**TICKET, "quantity": 20}
KEYLESS_ORDER = {**TICKET, "quantity": 5}
OFF_TICK_ORDER = {**TICKET, "quantity": 10, "price": "285.27"}
NEW_ORDER_KEY = "web-order-0001"
REPLAY_KEY = "web-replay-0001"
OFF_TICK_KEY = "web-off-tick-0001"


def money(example: str) -> Any:
    return match.regex(example, regex=MONEY)


def moment(example: str = "2026-11-26T09:30:00.123456Z") -> Any:
    return match.regex(example, regex=ISO_8601)


def strings_only(*paths: str) -> dict[str, Any]:
    """Type rules for the money paths: a regex rule alone accepts the JSON number 285.25 (the
    verifier matches a number's text), so a float would pass as money without these."""
    rule = {"combine": "AND", "matchers": [{"match": "type"}]}
    return {"body": {path: rule for path in paths}}


def order_body(**exact: Any) -> dict[str, Any]:
    """An order as the API returns it; ``exact`` fields must equal the example."""
    body = {
        "id": match.int(1001),
        "account_id": match.str("acct-web"),
        "symbol": match.str("THYAO"),
        "side": match.regex("buy", regex="^(buy|sell)$"),
        "quantity": match.int(10),
        "price": money("285.25"),
        "commission": money("1.43"),
        "status": match.str("filled"),
        "created_at": moment(),
    }
    return {**body, **exact}


ORDER_MONEY = ("$.price", "$.commission")


def problem_body(code: str, status: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": match.str("https://spark.example/problems/example"),
        "title": match.str("Example"),
        "status": status,
        "code": code,
        "detail": match.str("what was wrong"),
        **extra,
    }


@dataclass(frozen=True)
class WebInteraction:
    """One thing the web UI does: how it is declared, and how the UI performs it."""

    name: str
    declare: Callable[[Pact], None]
    perform: Callable[[WebClient], None]


def declare_new_order(pact: Pact) -> None:
    (
        pact.upon_receiving("a new limit order")
        .given(FRESH_MARKET)
        .with_request("POST", "/api/orders")
        .with_header("Idempotency-Key", NEW_ORDER_KEY)
        .with_body(NEW_ORDER, content_type="application/json")
        .will_respond_with(201)
        .with_body(order_body(), content_type="application/json")
        .with_matching_rules(strings_only(*ORDER_MONEY), "Response")
    )


def perform_new_order(client: WebClient) -> None:
    order, _ = client.place_order(NEW_ORDER, NEW_ORDER_KEY)
    assert order.price == Decimal("285.25") and order.commission == Decimal("1.43")


def declare_replay(pact: Pact) -> None:
    (
        pact.upon_receiving("the same order resubmitted under its Idempotency-Key")
        .given(FRESH_MARKET)
        .given(ORDER_PLACED, idempotency_key=REPLAY_KEY, order=REPLAYED_ORDER)
        .with_request("POST", "/api/orders")
        .with_header("Idempotency-Key", REPLAY_KEY)
        .with_body(REPLAYED_ORDER, content_type="application/json")
        .will_respond_with(201)
        .with_header("Idempotent-Replayed", "true")
        # The replay is the stored order: the ticket's fields come back unchanged.
        .with_body(
            order_body(account_id="acct-web", symbol="THYAO", side="buy", quantity=20),
            content_type="application/json",
        )
        .with_matching_rules(strings_only(*ORDER_MONEY), "Response")
    )


def perform_replay(client: WebClient) -> None:
    order, replayed = client.place_order(REPLAYED_ORDER, REPLAY_KEY)
    assert replayed, "a resubmission under the same key must be marked Idempotent-Replayed"
    assert (order.account_id, order.quantity) == ("acct-web", 20)


def declare_missing_key(pact: Pact) -> None:
    (
        pact.upon_receiving("an order without an Idempotency-Key")
        .with_request("POST", "/api/orders")
        .with_body(KEYLESS_ORDER, content_type="application/json")
        .will_respond_with(400)
        .with_body(
            problem_body("idempotency_key_missing", 400),
            content_type="application/problem+json",
        )
    )


def perform_missing_key(client: WebClient) -> None:
    try:
        client.place_order(KEYLESS_ORDER, None)
    except ApiProblem as problem:
        assert (problem.status, problem.code) == (400, "idempotency_key_missing")
    else:
        raise AssertionError("an order without a key must be refused")


def declare_off_tick(pact: Pact) -> None:
    (
        pact.upon_receiving("an order priced off the tick grid")
        .given(FRESH_MARKET)
        .with_request("POST", "/api/orders")
        .with_header("Idempotency-Key", OFF_TICK_KEY)
        .with_body(OFF_TICK_ORDER, content_type="application/json")
        .will_respond_with(400)
        .with_body(
            problem_body("tick_misaligned", 400, tick=money("0.25")),
            content_type="application/problem+json",
        )
        .with_matching_rules(strings_only("$.tick"), "Response")
    )


def perform_off_tick(client: WebClient) -> None:
    try:
        client.place_order(OFF_TICK_ORDER, OFF_TICK_KEY)
    except ApiProblem as problem:
        assert problem.code == "tick_misaligned"
        # The ticket suggests the nearest valid prices from the step the API names.
        assert Decimal(problem.fields["tick"]) == Decimal("0.25")
    else:
        raise AssertionError("an off-grid price must be refused")


def declare_order_by_id(pact: Pact) -> None:
    (
        pact.upon_receiving("an order by its id")
        .given(ORDER_42, order_id=42)
        .with_request("GET", "/api/orders/42")
        .will_respond_with(200)
        .with_body(order_body(id=42), content_type="application/json")
        .with_matching_rules(strings_only(*ORDER_MONEY), "Response")
    )


def perform_order_by_id(client: WebClient) -> None:
    assert client.order(42).id == 42


def declare_positions(pact: Pact) -> None:
    position = {
        "symbol": match.str("THYAO"),
        "quantity": match.int(100),
        "average_price": match.regex("285.2500", regex=AVERAGE_PRICE),
        "realised_pnl": money("0.00"),
        "opened_at": moment(),
        "updated_at": moment(),
    }
    (
        pact.upon_receiving("the open positions of an account")
        .given(POSITION_A_THYAO, account_id="A", symbol="THYAO")
        .with_request("GET", "/api/positions")
        .with_query_parameter("account_id", "A")
        .will_respond_with(200)
        .with_body(
            {"account_id": "A", "positions": match.each_like(position, min=1)},
            content_type="application/json",
        )
        .with_matching_rules(
            strings_only("$.positions[*].average_price", "$.positions[*].realised_pnl"),
            "Response",
        )
    )


def perform_positions(client: WebClient) -> None:
    [position] = client.positions("A")
    assert position.symbol == "THYAO" and position.average_price == Decimal("285.25")


def declare_market(pact: Pact) -> None:
    (
        pact.upon_receiving("the market snapshot of a symbol")
        .given(FRESH_MARKET)
        .with_request("GET", "/api/market/THYAO")
        .will_respond_with(200)
        .with_body(
            {
                "symbol": "THYAO",
                "base_price": money("285.25"),
                "last_price": money("285.50"),
                "last_tick_ts": match.int(1795691730893),
                "last_tick_age_ms": match.int(120),
                "stale": match.bool(False),
                "tick": money("0.25"),
                "band": {"lower": money("228.20"), "upper": money("342.25")},
            },
            content_type="application/json",
        )
        .with_matching_rules(
            strings_only("$.base_price", "$.last_price", "$.tick", "$.band.lower", "$.band.upper"),
            "Response",
        )
    )


def perform_market(client: WebClient) -> None:
    snapshot = client.market("THYAO")
    assert snapshot.lower <= snapshot.last_price <= snapshot.upper


def declare_flags(pact: Pact) -> None:
    flag = {
        "name": match.str("order_ticket_v2"),
        "description": match.str("New order ticket layout on the web UI"),
        "default": match.bool(False),
        "risky": match.bool(False),
        "rollout_percent": match.int(0),
        "owner": match.str("web"),
    }
    (
        pact.upon_receiving("the feature flags")
        .with_request("GET", "/api/flags")
        .will_respond_with(200)
        .with_body(
            {"version": match.int(1), "flags": match.each_like(flag, min=1)},
            content_type="application/json",
        )
    )


def perform_flags(client: WebClient) -> None:
    assert [f.name for f in client.flags()] == ["order_ticket_v2"]


INTERACTIONS = (
    WebInteraction("new_order", declare_new_order, perform_new_order),
    WebInteraction("replay", declare_replay, perform_replay),
    WebInteraction("missing_key", declare_missing_key, perform_missing_key),
    WebInteraction("off_tick", declare_off_tick, perform_off_tick),
    WebInteraction("order_by_id", declare_order_by_id, perform_order_by_id),
    WebInteraction("positions", declare_positions, perform_positions),
    WebInteraction("market", declare_market, perform_market),
    WebInteraction("flags", declare_flags, perform_flags),
)


def new_pact() -> Pact:
    return Pact(CONSUMER, PROVIDER).with_specification("V4")


def exercise(pact: Pact, interactions: tuple[WebInteraction, ...]) -> None:
    """Run the web client against pact's mock server; a request the pact does not describe,
    or an interaction never requested, fails on leaving the ``with``."""
    with pact.serve(addr="127.0.0.1") as server, WebClient(str(server.url)) as client:
        for interaction in interactions:
            interaction.perform(client)


def write_pact(directory: Path) -> Path:
    """Declare and exercise every interaction, then write the pact file into ``directory``."""
    pact = new_pact()
    for interaction in INTERACTIONS:
        interaction.declare(pact)
    exercise(pact, INTERACTIONS)
    pact.write_file(directory, overwrite=True)
    return directory / f"{PACT_NAME}.json"
