"""The Spark API as the checks talk to it: one client, one answer type.

Orders go in as :class:`Ticket` under an Idempotency-Key; every answer comes back as an
:class:`Answer` with its body bytes kept (a replay is compared byte for byte) and parsed with
exact decimals (a JSON number is kept as written, never rounded through a float). Reads of the
market, orders, positions, flags, the clock and ``/metrics`` go through the same
:class:`SparkApi`, so every call has the timeout it was given and one connection is reused.

Two submissions need connections of their own and are functions: :func:`submit_burst` (N at
once, so they overlap on the server) and :func:`submit_while_held` (the sandbox's hook that
holds a keyed order in flight). Not imported by ``pytest_spark.plugin`` (httpx).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

import httpx

from pytest_spark.probes import clock, flags, money

PRECISION_ERRORS = "spark_decimal_precision_errors_total"
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Ticket:
    """One limit order as the client sends it."""

    account_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal

    def body(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "price": str(self.price),
        }

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "buy" else -self.quantity

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity

    def describe(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price} ({self.account_id})"


def new_key() -> str:
    return str(uuid.uuid4())


def new_account(purpose: str) -> str:
    """A fresh account per run and purpose, so a rerun never joins an earlier position."""
    return f"{purpose}-{uuid.uuid4().hex[:12]}"


class UnexpectedAnswer(RuntimeError):
    """The API answered with a status the caller cannot go on from."""


@dataclass(frozen=True)
class Answer:
    """The API's answer to one request, its body bytes kept for byte-for-byte comparison."""

    status: int
    content: bytes
    replayed: bool = False
    content_type: str = ""

    @cached_property
    def body(self) -> Any:
        try:
            return money.loads_exact(self.content.decode())
        except ValueError:
            return None

    @property
    def code(self) -> str | None:
        """The RFC 7807 problem's ``code``, when the body is one."""
        code = self.body.get("code") if isinstance(self.body, Mapping) else None
        return None if code is None else str(code)

    def field(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, Mapping) else None

    def describe(self) -> str:
        if self.status in (200, 201):
            return f"{self.status}{' replayed' if self.replayed else ''}"
        detail = self.field("detail") or self.content[:160].decode(errors="replace")
        return f"{self.status} {self.code}: {detail}"

    def expect(self, *statuses: int, what: str = "the request") -> Any:
        """The parsed body when the status is one of ``statuses``; else UnexpectedAnswer."""
        if self.status not in statuses:
            raise UnexpectedAnswer(
                f"{what} answered {self.describe()}, expected {' or '.join(map(str, statuses))}"
            )
        return self.body


def _answer(response: httpx.Response) -> Answer:
    return Answer(
        response.status_code,
        response.content,
        response.headers.get("idempotent-replayed", "").lower() == "true",
        response.headers.get("content-type", ""),
    )


def sf_string(key: str) -> str:
    """The key as an RFC 8941 sf-string, as the Idempotency-Key draft writes it."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _order_content(order: Ticket | Mapping[str, Any]) -> bytes:
    body = order.body() if isinstance(order, Ticket) else dict(order)
    return json.dumps(body).encode()


class SparkApi:
    """``with SparkApi(api_url, timeout_s) as api: api.submit(ticket, key)``."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        transport: httpx.BaseTransport | None = None,  # a stand-in API, for unit tests
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SparkApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- orders ---------------------------------------------------------------------------

    def submit(
        self,
        order: Ticket | Mapping[str, Any],
        key: str | None,
        *,
        content: bytes | None = None,
        as_sf_string: bool = True,
    ) -> Answer:
        """``POST /api/orders`` under ``key`` (no header when None), written as an sf-string
        unless ``as_sf_string`` is False (a pact's header, sent exactly as declared);
        ``content`` sends these exact body bytes instead of the order's canonical JSON."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = sf_string(key) if as_sf_string else key
        body = content if content is not None else _order_content(order)
        return _answer(self._http.post("/api/orders", headers=headers, content=body))

    def order(self, order_id: object) -> Any:
        return self.document(f"/api/orders/{order_id}")

    def positions(self, account_id: str) -> list[Any]:
        """``GET /api/positions``: the account's open positions as listed (one per symbol)."""
        doc = self.document("/api/positions", {"account_id": account_id})
        return list(doc.get("positions", []) if isinstance(doc, Mapping) else [])

    def position(self, account_id: str, symbol: str) -> dict[str, Any]:
        """The account's open position in ``symbol`` as listed; empty when it has none."""
        for position in self.positions(account_id):
            if isinstance(position, Mapping) and position.get("symbol") == symbol:
                return dict(position)
        return {}

    # --- market ---------------------------------------------------------------------------

    def market(self, symbol: str) -> Any:
        return self.document(f"/api/market/{symbol}")

    def instrument(self, symbol: str) -> money.Instrument:
        """``GET /api/market/{symbol}``: base price and tick."""
        body = self.market(symbol)
        base = money.as_decimal(body.get("base_price") if isinstance(body, Mapping) else None)
        tick = money.as_decimal(body.get("tick") if isinstance(body, Mapping) else None)
        if base is None or tick is None:
            raise money.MoneyFormatError(
                f"GET /api/market/{symbol} answered {str(body)[:200]!r}: no base_price/tick"
            )
        return money.Instrument(symbol, base, tick)

    # --- flags, clock, metrics --------------------------------------------------------------

    def fetch_flags(self) -> flags.FlagFetch:
        """``GET /api/flags`` timed from request to a fully read body. A body that is not JSON
        is kept as the error, not raised: it is a finding of the check."""
        started = time.perf_counter()
        response = self._http.get("/api/flags", headers={"Accept": "application/json"})
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            document: Any = response.json()
            error = ""
        except ValueError as exc:
            document, error = None, f"body is not JSON ({exc}): {response.text[:200]!r}"
        return flags.FlagFetch(
            response.status_code,
            latency_ms,
            response.headers.get("content-type", ""),
            document,
            error,
        )

    def clock_seconds(self) -> float:
        """The API's clock from ``GET /api/time`` -> ``{"epoch_ms": int}``, in Unix seconds."""
        doc = self.document("/api/time")
        epoch_ms = doc.get("epoch_ms") if isinstance(doc, Mapping) else None
        if not isinstance(epoch_ms, int | float | Decimal) or isinstance(epoch_ms, bool):
            raise clock.ClockProbeError(
                f"{self.base_url}/api/time answered {str(doc)[:200]!r}, expected epoch_ms"
            )
        return float(epoch_ms) / 1000.0

    def clock_samples(self, samples: int) -> list[clock.ClockSample]:
        """``samples`` readings of the API's clock, each bracketed by this host's clock."""
        self.clock_seconds()  # warms the connection: no TCP handshake inside a round trip
        return clock.sample_remote_clock("app", self.clock_seconds, samples)

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition."""
        response = self._http.get("/metrics")
        response.raise_for_status()
        return response.text

    # --- plumbing ---------------------------------------------------------------------------

    def document(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """A JSON document with exact decimals; a non-2xx answer raises httpx.HTTPStatusError."""
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return money.loads_exact(response.text)


# --- submissions that need connections of their own ---------------------------------------


def submit_burst(
    api_url: str, submissions: Sequence[tuple[Ticket, str]], timeout_s: float
) -> list[Answer]:
    """All ``(ticket, key)`` submissions at once, each on its own connection, so that they
    overlap on the server; answers in submission order. The whole burst is bounded by
    ``timeout_s`` (an overrun raises ``TimeoutError``)."""
    base = api_url.rstrip("/")

    async def burst() -> list[Answer]:
        limits = httpx.Limits(max_connections=len(submissions))
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(timeout=timeout_s, limits=limits) as client,
        ):
            # Connections first, so the orders leave together rather than staggered by handshakes.
            await asyncio.gather(*(client.get(f"{base}/health") for _ in submissions))
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"{base}/api/orders",
                        headers={"Idempotency-Key": sf_string(key)},
                        json=ticket.body(),
                    )
                    for ticket, key in submissions
                )
            )
        return [_answer(a) for a in answers]

    return asyncio.run(burst())


# The sandbox's test-only hook that holds a keyed order in flight (spark_sandbox/app/holds.py).
HOLDS_PATH = "/_sandbox/holds"
# The sandbox holds a request at most this long, well inside the key's lease.
HOLD_TIMEOUT_S = 5.0
# Answers of a target that has no hold hook (a real deployment).
NO_HOOK_STATUSES = frozenset({401, 403, 404, 405})


@dataclass(frozen=True)
class HeldSubmission:
    """One key submitted twice with a certain overlap: ``first`` was held in flight (key
    claimed, order not yet placed) while ``during`` was submitted under the same key.
    ``during`` is None when the first never reached the hold (refused before its claim)."""

    first: Answer
    during: Answer | None

    @property
    def refused_in_flight(self) -> bool:
        return self.during is not None and is_in_flight_refusal(self.during)


def is_in_flight_refusal(answer: Answer) -> bool:
    return answer.status == 409 and answer.code == "idempotency_key_in_use"


def classify_burst(answers: Sequence[Answer]) -> str:
    """What a burst of one key showed about the in-flight answer:

    - ``refused``: some submission was answered 409 while another was in flight;
    - ``placed_again``: more than one submission placed an order (none was refused in flight);
    - ``no_overlap``: one order, every other answer a replay of it: each later submission
      arrived after the first had completed, so the in-flight answer was never exercised.
    """
    if any(is_in_flight_refusal(a) for a in answers):
        return "refused"
    if sum(a.status in (200, 201) and not a.replayed for a in answers) > 1:
        return "placed_again"
    return "no_overlap"


def submit_while_held(
    api_url: str, ticket: Ticket, key: str, timeout_s: float
) -> HeldSubmission | None:
    """Submit ``key`` while an earlier submission of it is held in flight by the sandbox's
    hold hook; deterministic, unlike a burst. None when the target has no such hook."""
    base = api_url.rstrip("/")
    hold = {"key": key, "timeout_s": HOLD_TIMEOUT_S}

    async def post_order(client: httpx.AsyncClient) -> Answer:
        answer = await client.post(
            f"{base}/api/orders", headers={"Idempotency-Key": sf_string(key)}, json=ticket.body()
        )
        return _answer(answer)

    async def held() -> HeldSubmission | None:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=4)) as client,
        ):
            armed = await client.post(f"{base}{HOLDS_PATH}", json=hold)
            if armed.status_code in NO_HOOK_STATUSES:
                return None
            armed.raise_for_status()
            first = asyncio.create_task(post_order(client))
            during = None
            try:
                waited = await client.post(f"{base}{HOLDS_PATH}/await", json=hold)
                if waited.status_code == 200 and waited.json().get("held") is True:
                    during = await post_order(client)
            finally:
                # Released in every case, so the held order completes now rather than later.
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(f"{base}{HOLDS_PATH}/release", json={"key": key})
                first_reply = await first
            return HeldSubmission(first_reply, during)

    return asyncio.run(held())
