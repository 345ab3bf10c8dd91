"""POST /_sandbox/provider-state: data for contract verification, sandbox only."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from api_harness import Api


def test_an_order_exists_state_creates_a_reconciled_order(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    order_id = int(db.execute("SELECT coalesce(max(id), 0) + 1000 FROM orders").fetchone()[0])  # type: ignore[index]
    state = {"state": f"an order {order_id} exists", "params": {"account_id": account}}
    with api.client() as client:
        for _ in range(2):  # setup is idempotent
            assert client.post("/_sandbox/provider-state", json=state).status_code == 200
        order = client.get(f"/api/orders/{order_id}").json()
        teardown = client.post("/_sandbox/provider-state", json={**state, "action": "teardown"})
    assert teardown.status_code == 200
    assert order["id"] == order_id and order["account_id"] == account
    assert order["price"] == "285.25" and order["commission"] == "1.43"
    last_value, max_id = db.execute(
        "SELECT last_value, (SELECT max(id) FROM orders) FROM orders_id_seq"
    ).fetchone()  # type: ignore[misc]
    assert last_value >= max_id  # the explicit id did not leave the sequence behind
    fills = db.execute("SELECT sum(quantity) FROM fills WHERE account_id = %s", (account,))
    assert fills.fetchone() == (10,)


def test_an_open_position_state(api: Api, account: str) -> None:
    state = {
        "state": f"account {account} has an open position in THYAO",
        "params": {"quantity": 50},
    }
    with api.client() as client:
        assert client.post("/_sandbox/provider-state", json=state).status_code == 200
        positions = client.get("/api/positions", params={"account_id": account}).json()
    assert positions["positions"][0]["symbol"] == "THYAO"
    assert positions["positions"][0]["quantity"] == 50
    assert positions["positions"][0]["average_price"] == "285.2500"


def test_unknown_state_is_400_listing_the_known_ones(api: Api) -> None:
    with api.client() as client:
        answer = client.post("/_sandbox/provider-state", json={"state": "the moon is full"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "unknown_provider_state"
    assert "an order {order_id} exists" in answer.json()["detail"]


def test_provider_states_exist_only_in_the_sandbox(api_factory: Callable[..., Api]) -> None:
    production_like = api_factory(extra_env={"SPARK_SANDBOX": "0"})
    with production_like.client() as client:
        answer = client.post("/_sandbox/provider-state", json={"state": "market data is fresh"})
    assert answer.status_code == 404
