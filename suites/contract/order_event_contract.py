"""K2 consumer side: the order ledger's expectations of the ``order.accepted`` event.

The message is the delivery the outbox publisher POSTs to the ledger (envelope plus the payload
as stored). The consumer under test is the reference ledger's own parser
(``spark_sandbox.app.consumer.parse_event``), held to what a ledger row needs: every field.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from pact import Pact, match

from spark_sandbox.app.consumer import parse_event

from .web_client import ISO_8601, MONEY

CONSUMER = "order-ledger"
PROVIDER = "spark-outbox"
PACT_NAME = f"{CONSUMER}-{PROVIDER}"
DESCRIPTION = "an order.accepted event"
FRESH_MARKET = "market data is fresh"
UUID = r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
EVENT_ID = "6f1c2b9e-3d4a-4c5b-8e7f-9a0b1c2d3e4f"


def _moment() -> Any:
    return match.regex("2026-11-26T09:30:00.123456+00:00", regex=ISO_8601)


MESSAGE = {
    "event_id": match.regex(EVENT_ID, regex=UUID),
    "event_type": "order.accepted",
    "aggregate_id": match.int(1001),
    "created_at": _moment(),
    "payload": {
        "event_id": match.regex(EVENT_ID, regex=UUID),
        "order_id": match.int(1001),
        "account_id": match.str("acct-ledger"),
        "symbol": match.str("THYAO"),
        "side": match.regex("buy", regex="^(buy|sell)$"),
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


def record_in_ledger(body: str | bytes | None, metadata: dict[str, object]) -> None:
    """What the ledger does with a delivery, up to the database write: parse it, and refuse
    an entry it could not book in full."""
    if body is None:
        raise ValueError("empty delivery")
    event = parse_event(json.loads(body))
    entry = event.order
    assert entry is not None, "an order.accepted event must carry an order"
    missing = [name for name, value in vars(entry).items() if value is None]
    assert not missing, f"the ledger row would lack {missing}"
    assert isinstance(entry.price, Decimal) and entry.price > 0


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
