"""Orders end to end: the answer's shape, the transaction's rows, positions and the outbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal

import httpx
import psycopg
from api_harness import Api, new_key, place, ticket

from spark_sandbox.services.pgbouncer import APP_POOL, start_pgbouncer
from spark_sandbox.services.postgres import Postgres, postgres_run_dir, remove_run_dir


def test_accepted_order_is_one_transaction_with_its_fill_position_and_event(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    db.execute("LISTEN outbox_events")
    with api.client() as client:
        answer = place(client, ticket(account, "THYAO", "285.25", 10))
    assert answer.status_code == 201, answer.text
    order = answer.json()
    assert set(order) == {
        "id", "account_id", "symbol", "side", "quantity", "price", "commission", "status",
        "created_at",
    }  # fmt: skip
    assert isinstance(order["id"], int)
    assert order["price"] == "285.25"
    assert order["commission"] == "1.43"  # 2852.50 × 5 bps = 1.42625
    assert order["created_at"].endswith("Z")

    fills = db.execute(
        "SELECT quantity, price, commission FROM fills WHERE order_id = %s", (order["id"],)
    ).fetchall()
    assert fills == [(10, Decimal("285.25"), Decimal("1.43"))]
    position = db.execute(
        "SELECT quantity, average_price FROM positions WHERE account_id = %s AND status = 'open'",
        (account,),
    ).fetchall()
    assert position == [(10, Decimal("285.2500"))]
    outbox_id, event_type, payload = db.execute(
        "SELECT id, event_type, payload FROM outbox_events WHERE aggregate_id = %s",
        (order["id"],),
    ).fetchone()  # type: ignore[misc]
    assert event_type == "order.accepted"
    assert set(payload) == {
        "event_id", "order_id", "account_id", "symbol", "side", "quantity", "price",
        "commission", "created_at",
    }  # fmt: skip
    assert payload["account_id"] == account
    assert payload["price"] == "285.25"

    notice = next((n for n in db.notifies(timeout=5) if n.payload == str(outbox_id)), None)
    assert notice is not None and notice.channel == "outbox_events"


def test_get_order_and_positions_return_money_as_strings(api: Api, account: str) -> None:
    with api.client() as client:
        first = place(client, ticket(account, "GARAN", "128.40", 7)).json()
        assert place(client, ticket(account, "GARAN", "128.50", 1)).status_code == 201
        fetched = client.get(f"/api/orders/{first['id']}")
        positions = client.get("/api/positions", params={"account_id": account}).json()
        missing = client.get("/api/orders/999999999")
    assert fetched.status_code == 200
    assert fetched.content == json.dumps(first, separators=(",", ":")).encode()
    [garan] = positions["positions"]
    assert garan["quantity"] == 8
    # (7 × 128.40 + 128.50) / 8 = 128.4125
    assert garan["average_price"] == "128.4125"
    assert isinstance(garan["realised_pnl"], str)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "order_not_found"


def test_orders_work_through_pgbouncer_transaction_pooling(
    database: Postgres, api_factory: Callable[..., Api], account: str
) -> None:
    run_dir = postgres_run_dir("spark-api-bouncer-")
    bouncer_proc = None
    try:
        bouncer_proc, bouncer = start_pgbouncer(run_dir, database)
        assert bouncer.pool_modes[APP_POOL] == "transaction"
        pooled = api_factory(dsn=bouncer.dsn(APP_POOL))
        # More identical statements than psycopg's default auto-prepare threshold (5): with
        # prepared statements on, transaction pooling fails on a server without them.
        with pooled.client() as client:
            answers = [place(client, ticket(account, "SASA", "4.58", 1)) for _ in range(8)]
            order_id = answers[-1].json()["id"]
            fetched = [client.get(f"/api/orders/{order_id}").status_code for _ in range(8)]
    finally:
        if bouncer_proc is not None:
            bouncer_proc.stop()
        remove_run_dir(run_dir)
    assert [a.status_code for a in answers] == [201] * 8
    assert fetched == [200] * 8


async def _alternating_burst(api: Api, account: str, orders: int) -> list[int]:
    """``orders`` submissions at once, buys and sells of one share in turn, each with its key."""
    limits = httpx.Limits(max_connections=orders, max_keepalive_connections=orders)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=15, limits=limits) as client:
        await asyncio.gather(*(client.get("/health") for _ in range(orders)))
        answers = await asyncio.gather(
            *(
                client.post(
                    "/api/orders",
                    json=ticket(account, quantity=1, side=("buy", "sell")[n % 2]),
                    headers={"Idempotency-Key": new_key()},
                )
                for n in range(orders)
            )
        )
    return [answer.status_code for answer in answers]


def test_orders_that_close_a_position_under_each_other_all_fill(
    api: Api, account: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A sell that flattens the position while another order waits for its row lock closes
    the row that order was about to update: it must open the position again, not fail."""
    statuses: list[int] = []
    for _ in range(5):
        statuses += asyncio.run(_alternating_burst(api, account, 16))
    assert set(statuses) == {201}, sorted(statuses)
    fills = db.execute(
        "SELECT coalesce(sum(CASE side WHEN 'buy' THEN quantity ELSE -quantity END), 0)"
        " FROM fills WHERE account_id = %s",
        (account,),
    ).fetchone()
    held = db.execute(
        "SELECT coalesce(sum(quantity), 0) FROM positions"
        " WHERE account_id = %s AND status = 'open'",
        (account,),
    ).fetchone()
    assert fills == held == (0,)
