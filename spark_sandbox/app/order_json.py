"""The order's JSON shape, shared by POST /api/orders, GET /api/orders/{id} and replays."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spark_sandbox.app.money import render


def order_document(
    row: tuple[int, str, str, str, int, Decimal, Decimal, str, datetime],
    *,
    float_money: bool = False,
    price_field: str = "price",
) -> dict[str, Any]:
    """``price_field`` is "px" under the contract_field_renamed defect."""
    order_id, account_id, symbol, side, quantity, price, commission, status, created_at = row
    return {
        "id": order_id,
        "account_id": account_id,
        "symbol": symbol,
        "side": side,
        "quantity": quantity,
        price_field: render(price, as_float=float_money),
        "commission": render(commission, as_float=float_money),
        "status": status,
        "created_at": iso8601(created_at),
    }


def iso8601(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


ORDER_COLUMNS = "id, account_id, symbol, side, quantity, price, commission, status, created_at"
