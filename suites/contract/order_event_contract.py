"""K2 consumer side: the order ledger's expectations of the ``order.accepted`` event.

The message is the delivery the outbox publisher POSTs to the ledger (envelope plus the payload
as stored). The ledger's side of the contract is written here, as the expectations a ledger row
has of the event (:func:`ledger_entry`): every field present, with the type and form the row
stores. It is exercised over the declared message when the pact is written, and the provider's
real messages are verified against the pact; no consumer code of the target is imported, so the
same contract holds a staging deployment to it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pact import Pact, match

from .web_client import ISO_8601, MONEY

CONSUMER = "order-ledger"
PROVIDER = "spark-outbox"
PACT_NAME = f"{CONSUMER}-{PROVIDER}"
DESCRIPTION = "an order.accepted event"
EVENT_TYPE = "order.accepted"
FRESH_MARKET = "market data is fresh"
UUID = r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
SIDE = r"^(buy|sell)$"
EVENT_ID = "6f1c2b9e-3d4a-4c5b-8e7f-9a0b1c2d3e4f"


def _moment() -> Any:
    return match.regex("2026-11-26T09:30:00.123456+00:00", regex=ISO_8601)


MESSAGE = {
    "event_id": match.regex(EVENT_ID, regex=UUID),
    "event_type": EVENT_TYPE,
    "aggregate_id": match.int(1001),
    "created_at": _moment(),
    "payload": {
        "event_id": match.regex(EVENT_ID, regex=UUID),
        "order_id": match.int(1001),
        "account_id": match.str("acct-ledger"),
        "symbol": match.str("THYAO"),
        "side": match.regex("buy", regex=SIDE),
        "quantity": match.int(10),
        "price": match.regex("285.25", regex=MONEY),
        "commission": match.regex("1.43", regex=MONEY),
        "created_at": _moment(),
    },
}
# A regex rule alone accepts a JSON number's text; money must also be a string.
MONEY_RULES = {
    "body": {
        path: {"combine": "AND", "matchers": [{"match": "type"}]}
        for path in ("$.payload.price", "$.payload.commission")
    }
}


class LedgerRefusal(ValueError):
    """The ledger could not book the event; the message names the field and what it needs."""


@dataclass(frozen=True)
class LedgerEntry:
    """One ``order_ledger`` row as the ledger books an accepted order: every column filled."""

    event_id: uuid.UUID
    order_id: int
    account_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal
    commission: Decimal
    created_at: datetime


def ledger_entry(delivery: Mapping[str, Any]) -> LedgerEntry:
    """The row the ledger books for one delivery, or LedgerRefusal naming what it lacks."""
    if delivery.get("event_type") != EVENT_TYPE:
        raise LedgerRefusal(
            f"event_type must be {EVENT_TYPE!r}, got {delivery.get('event_type')!r}"
        )
    payload = delivery.get("payload")
    if not isinstance(payload, Mapping):
        raise LedgerRefusal("payload must be a JSON object")
    event_id = _text(delivery, "event_id", UUID)
    if _text(payload, "event_id", UUID) != event_id:
        raise LedgerRefusal("payload.event_id must repeat the envelope's event_id")
    order_id = _whole(payload, "order_id")
    if _whole(delivery, "aggregate_id") != order_id:
        raise LedgerRefusal("aggregate_id must be the order's id (payload.order_id)")
    quantity = _whole(payload, "quantity")
    price = Decimal(_text(payload, "price", MONEY))
    if quantity <= 0 or price <= 0:
        raise LedgerRefusal(f"an accepted order has a positive quantity and price: {payload}")
    _text(delivery, "created_at", ISO_8601)
    return LedgerEntry(
        event_id=uuid.UUID(event_id),
        order_id=order_id,
        account_id=_text(payload, "account_id", r".+"),
        symbol=_text(payload, "symbol", r"[A-Z0-9.]+"),
        side=_text(payload, "side", SIDE),
        quantity=quantity,
        price=price,
        commission=Decimal(_text(payload, "commission", MONEY)),
        created_at=datetime.fromisoformat(_text(payload, "created_at", ISO_8601)),
    )


def _text(document: Mapping[str, Any], name: str, pattern: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise LedgerRefusal(f"{name} must be a string matching {pattern}, got {value!r}")
    return value


def _whole(document: Mapping[str, Any], name: str) -> int:
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LedgerRefusal(f"{name} must be a JSON integer, got {value!r}")
    return value


def record_in_ledger(body: str | bytes | None, metadata: dict[str, object]) -> None:
    """What the ledger does with a delivery, up to the database write: book it in full, or
    refuse it."""
    if body is None:
        raise LedgerRefusal("empty delivery")
    ledger_entry(json.loads(body))


def declare(pact: Pact) -> None:
    (
        pact.upon_receiving(DESCRIPTION, "Async")
        .given(FRESH_MARKET)
        .with_body(MESSAGE, content_type="application/json")
        .with_matching_rules(MONEY_RULES)
        .with_metadata({"contentType": "application/json"})
    )


def new_pact() -> Pact:
    return Pact(CONSUMER, PROVIDER).with_specification("V4")


def write_pact(directory: Path) -> Path:
    """Declare the message, run the ledger's handling over it, and write the pact file."""
    pact = new_pact()
    declare(pact)
    pact.verify(record_in_ledger, "Async")
    pact.write_file(directory, overwrite=True)
    return directory / f"{PACT_NAME}.json"
