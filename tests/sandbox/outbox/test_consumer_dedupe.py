"""The outbox consumer: each event's effect applied once, duplicates acknowledged and counted."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from outbox_harness import Services, metric_value, scrape

from spark_sandbox.app.consumer import EventRejected, parse_event


def order_event(order_id: int, *, price: str = "285.25") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "order.accepted",
        "aggregate_id": order_id,
        "created_at": "2026-11-26T10:00:00+00:00",
        "payload": {
            "order_id": order_id,
            "account_id": "acc-7",
            "symbol": "THYAO",
            "side": "sell",
            "quantity": 12,
            "price": price,
        },
    }


def post(url: str, body: Any) -> httpx.Response:
    return httpx.post(url + "/events", json=body, timeout=5.0, trust_env=False)


def test_duplicate_delivery_is_acknowledged_without_a_second_effect(services: Services) -> None:
    _, url = services.consumer()
    db = services.database()
    event = order_event(41, price="128.40")

    first = post(url, event)
    again = post(url, event)

    assert first.status_code == 200 and first.json()["duplicate"] is False
    assert again.status_code == 200 and again.json() == {
        "event_id": event["event_id"],
        "duplicate": True,
        "deliveries": 2,
    }
    ledger = db.query(
        "SELECT order_id, event_id::text, account_id, symbol, side, quantity, price, applied_count"
        " FROM order_ledger"
    )
    assert ledger == [(41, event["event_id"], "acc-7", "THYAO", "sell", 12, Decimal("128.40"), 1)]
    status = httpx.get(f"{url}/events/{event['event_id']}", timeout=5.0, trust_env=False)
    assert status.status_code == 200
    assert status.json()["consumed"] is True and status.json()["deliveries"] == 2
    metrics = scrape(url)
    assert metric_value(metrics, "spark_consumer_duplicates_total") == 1
    assert 'spark_consumer_events_total{event_type="order.accepted"} 1.0' in metrics
    assert metric_value(metrics, "spark_consumer_apply_seconds_count") == 2


def test_concurrent_duplicates_apply_once(services: Services) -> None:
    _, url = services.consumer()
    event = order_event(7)
    with (
        httpx.Client(timeout=5.0, trust_env=False) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        replies = list(pool.map(lambda _: client.post(url + "/events", json=event), range(16)))
    assert {r.status_code for r in replies} == {200}
    assert sum(not r.json()["duplicate"] for r in replies) == 1
    db = services.database()
    assert db.query("SELECT applied_count FROM order_ledger") == [(1,)]
    assert db.scalar("SELECT deliveries FROM consumed_events") == 16


def test_unknown_event_is_404_and_malformed_ones_are_refused(services: Services) -> None:
    _, url = services.consumer()
    unknown = httpx.get(f"{url}/events/{uuid.uuid4()}", timeout=5.0, trust_env=False)
    assert unknown.status_code == 404 and unknown.json()["consumed"] is False

    bad_id = {**order_event(1), "event_id": "not-a-uuid"}
    assert post(url, bad_id).status_code == 422
    not_json = httpx.post(
        url + "/events",
        content=b"{nope",
        headers={"content-type": "application/json"},
        timeout=5.0,
        trust_env=False,
    )
    assert not_json.status_code == 400
    assert services.database().scalar("SELECT count(*) FROM consumed_events") == 0


def test_other_event_types_are_recorded_without_ledger_effect(services: Services) -> None:
    _, url = services.consumer()
    event = {**order_event(5), "event_type": "order.cancelled"}
    assert post(url, event).status_code == 200
    db = services.database()
    assert db.scalar("SELECT count(*) FROM consumed_events") == 1
    assert db.scalar("SELECT count(*) FROM order_ledger") == 0


def test_parse_event_keeps_money_exact() -> None:
    event = parse_event({**order_event(3), "payload": {"order_id": 3, "price": Decimal("1.10")}})
    assert event.order is not None and event.order.price == Decimal("1.10")
    assert str(event.order.price) == "1.10"


@pytest.mark.parametrize(
    "change",
    [
        {"event_type": ""},
        {"payload": []},
        {"created_at": "yesterday"},
        {"aggregate_id": "1.5"},
        {"aggregate_id": None, "payload": {"symbol": "THYAO"}},
    ],
)
def test_parse_event_rejects_malformed_deliveries(change: dict[str, Any]) -> None:
    with pytest.raises(EventRejected):
        parse_event({**order_event(3), **change})
