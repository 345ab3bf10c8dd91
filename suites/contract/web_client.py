"""The web UI's use of the Spark API, as a client: what K1's consumer tests exercise.

It reads exactly what the order ticket, blotter, positions, market and flags panels need, and
holds money the way the UI does: a decimal string parsed into ``Decimal``, never a float. A
response that breaks those expectations raises :class:`ContractBreach`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

MONEY = r"^-?\d+\.\d{2}$"
AVERAGE_PRICE = r"^-?\d+\.\d{4}$"
ISO_8601 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
TIMEOUT_S = 5.0


class ContractBreach(ValueError):
    """The API answered in a shape the web UI cannot use."""


@dataclass(frozen=True)
class ApiProblem(Exception):
    """An RFC 7807 refusal the UI shows to the trader (``code`` picks the message)."""

    status: int
    code: str
    detail: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Order:
    id: int
    account_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal
    commission: Decimal
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: int
    average_price: Decimal
    realised_pnl: Decimal
    opened_at: datetime


@dataclass(frozen=True)
class MarketSnapshot:
    symbol: str
    base_price: Decimal
    last_price: Decimal
    stale: bool
    tick: Decimal
    lower: Decimal
    upper: Decimal


@dataclass(frozen=True)
class Flag:
    name: str
    default: bool
    risky: bool
    rollout_percent: int


def _field(doc: Mapping[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ContractBreach(f"{name} should be a {kind.__name__}, got {value!r}")
    return value


def _decimal(doc: Mapping[str, Any], name: str, pattern: str = MONEY) -> Decimal:
    value = doc.get(name)
    # A JSON number has already been through binary floating point somewhere: refuse it.
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ContractBreach(f"{name} should be a decimal string like '285.25', got {value!r}")
    return Decimal(value)


def _moment(doc: Mapping[str, Any], name: str) -> datetime:
    value = doc.get(name)
    if not isinstance(value, str) or not re.fullmatch(ISO_8601, value):
        raise ContractBreach(f"{name} should be an ISO-8601 timestamp, got {value!r}")
    return datetime.fromisoformat(value)


def parse_order(doc: Mapping[str, Any]) -> Order:
    return Order(
        id=_field(doc, "id", int),
        account_id=_field(doc, "account_id", str),
        symbol=_field(doc, "symbol", str),
        side=_field(doc, "side", str),
        quantity=_field(doc, "quantity", int),
        price=_decimal(doc, "price"),
        commission=_decimal(doc, "commission"),
        status=_field(doc, "status", str),
        created_at=_moment(doc, "created_at"),
    )


class WebClient:
    """The calls the web UI makes, against ``base_url`` (the API, or a pact mock server)."""

    def __init__(self, base_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self._http = httpx.Client(base_url=str(base_url).rstrip("/"), timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            doc = response.json()
            raise ApiProblem(
                status=_field(doc, "status", int),
                code=_field(doc, "code", str),
                detail=_field(doc, "detail", str),
                fields=doc,
            )
        if response.status_code >= 400:
            raise ContractBreach(f"HTTP {response.status_code} without a problem document")
        return response.json()

    def place_order(self, ticket: Mapping[str, Any], key: str | None) -> tuple[Order, bool]:
        """Submit the ticket; the order and whether it is a replay of an earlier submission
        (the UI retries a lost answer under the same key and must see the same order)."""
        headers = {"Idempotency-Key": key} if key is not None else {}
        response = self._http.post("/api/orders", json=dict(ticket), headers=headers)
        order = parse_order(self._json(response))
        if response.status_code != 201:
            raise ContractBreach(f"an accepted order should be 201, got {response.status_code}")
        return order, response.headers.get("idempotent-replayed") == "true"

    def order(self, order_id: int) -> Order:
        return parse_order(self._json(self._http.get(f"/api/orders/{order_id}")))

    def positions(self, account_id: str) -> list[Position]:
        doc = self._json(self._http.get("/api/positions", params={"account_id": account_id}))
        return [
            Position(
                symbol=_field(p, "symbol", str),
                quantity=_field(p, "quantity", int),
                average_price=_decimal(p, "average_price", AVERAGE_PRICE),
                realised_pnl=_decimal(p, "realised_pnl"),
                opened_at=_moment(p, "opened_at"),
            )
            for p in _field(doc, "positions", list)
        ]

    def market(self, symbol: str) -> MarketSnapshot:
        doc = self._json(self._http.get(f"/api/market/{symbol}"))
        band = _field(doc, "band", dict)
        return MarketSnapshot(
            symbol=_field(doc, "symbol", str),
            base_price=_decimal(doc, "base_price"),
            last_price=_decimal(doc, "last_price"),
            stale=_field(doc, "stale", bool),
            tick=_decimal(doc, "tick"),
            lower=_decimal(band, "lower"),
            upper=_decimal(band, "upper"),
        )

    def flags(self) -> list[Flag]:
        doc = self._json(self._http.get("/api/flags"))
        return [
            Flag(
                name=_field(f, "name", str),
                default=_field(f, "default", bool),
                risky=_field(f, "risky", bool),
                rollout_percent=_field(f, "rollout_percent", int),
            )
            for f in _field(doc, "flags", list)
        ]
