"""Order-probe logic: settings, tickets and answers, realised P&L, bounded properties,
reconciliation, money columns, the open-position index, the precision counter, and a burst
that really overlaps on a local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pytest_spark.probes import orders

REPO = Path(__file__).resolve().parents[2]


def test_repository_settings_load() -> None:
    settings = orders.load_settings(REPO / "ops" / "money.toml")
    assert settings["hypothesis"]["seed"] == int(settings["hypothesis"]["seed"])
    assert "THYAO" in settings["market"]["symbols"]
    assert settings["G03"]["concurrent_submissions"] >= 20


@pytest.mark.parametrize(
    "text",
    ["seed = 1\n", '[M1]\nlimit = "one"\n', "[M1]\nlimit = true\n", "[market]\nsymbols = [1]\n"],
)
def test_bad_settings_name_the_key(text: str, tmp_path: Path) -> None:
    path = tmp_path / "money.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)):
        orders.load_settings(path)


def test_ticket_body_carries_price_as_a_decimal_string() -> None:
    ticket = orders.Ticket("acct", "THYAO", "sell", 3, Decimal("285.25"))
    assert ticket.body() == {
        "account_id": "acct",
        "symbol": "THYAO",
        "side": "sell",
        "quantity": 3,
        "price": "285.25",
    }
    assert ticket.signed_quantity == -3
    assert ticket.notional == Decimal("855.75")
    assert ticket.describe() == "sell 3 THYAO @ 285.25 (acct)"


def test_reply_keeps_bytes_and_reads_problem_fields() -> None:
    problem = orders.Reply(
        422, b'{"code":"idempotency_key_reused","detail":"other payload","status":422}'
    )
    assert problem.code == "idempotency_key_reused"
    assert problem.describe() == "422 idempotency_key_reused: other payload"
    order = orders.Reply(201, b'{"id":7,"commission":"0.14"}', replayed=True)
    assert order.field("commission") == "0.14" and order.code is None
    assert order.describe() == "201 replayed"
    # Money read with exact decimals: a JSON number is kept as written, not as a float.
    assert orders.Reply(201, b'{"price":1.10}').field("price") == Decimal("1.10")
    assert orders.Reply(502, b"<html>bad gateway</html>").body is None


@pytest.mark.parametrize(
    ("average", "price", "closed", "direction", "expected"),
    [
        (Decimal("285.3750"), Decimal("285.25"), 1, 1, Decimal("-0.12")),  # -0.125: even is -0.12
        (Decimal("285.3650"), Decimal("285.25"), 1, 1, Decimal("-0.12")),  # -0.115: even is -0.12
        (Decimal("10.0050"), Decimal("10.00"), 1, -1, Decimal("0.00")),  # short: +0.005 -> 0.00
        (Decimal("10.0000"), Decimal("10.50"), 4, 1, Decimal("2.00")),
    ],
)
def test_realised_pnl_rounds_half_even(
    average: Decimal, price: Decimal, closed: int, direction: int, expected: Decimal
) -> None:
    assert orders.realised_pnl(average, price, closed, direction) == expected


@pytest.mark.parametrize(
    ("value", "places", "signed", "problem"),
    [
        ("285.2500", 4, False, None),
        ("-0.12", 2, True, None),
        ("285.25", 4, False, "has 2 decimals"),
        (285.25, 2, False, "decimal string"),
        ("1e2", 2, False, "not a plain decimal"),
        ("-0.12", 2, False, "negative"),
    ],
)
def test_scale_finding(value: object, places: int, signed: bool, problem: str | None) -> None:
    finding = orders.scale_finding("price", value, places, signed=signed)
    if problem is None:
        assert finding is None
    else:
        assert finding is not None and problem in finding


def test_budget_answers_replays_from_memory_and_stops_at_its_limit() -> None:
    budget = orders.OrderBudget(max_orders=3)
    asked: list[str] = []

    def check(case: str) -> str | None:
        asked.append(case)
        return "wrong" if case == "b" else None

    assert budget.run("a", 2, lambda: check("a")) is None
    assert budget.run("a", 2, lambda: check("a")) is None  # a replay costs nothing
    with pytest.raises(orders.BudgetSpent):
        budget.run("b", 2, lambda: check("b"))
    assert budget.run("b", 1, lambda: check("b")) == "wrong"
    assert asked == ["a", "b"] and budget.placed == 3
    assert budget.findings() == {"b": "wrong"}


def test_positions_reconcile_with_the_net_of_fills() -> None:
    fills = [
        orders.Fill("THYAO", "buy", 10, Decimal("285.25"), Decimal("1.43")),
        orders.Fill("THYAO", "sell", 4, Decimal("285.50"), Decimal("0.57")),
        orders.Fill("SASA", "sell", 3, Decimal("4.58"), Decimal("0.01")),
        orders.Fill("GARAN", "buy", 2, Decimal("128.40"), Decimal("0.13")),
        orders.Fill("GARAN", "sell", 2, Decimal("128.40"), Decimal("0.13")),
    ]
    net = orders.net_quantities(fills)
    assert net == {"THYAO": 6, "SASA": -3, "GARAN": 0}
    assert orders.position_findings(net, {"THYAO": 6, "SASA": -3}, "API") == []
    assert orders.position_findings(net, {"THYAO": 7, "SASA": -3}, "API") == [
        "THYAO: API position 7 shares, fills net 6"
    ]
    assert orders.position_findings(net, {"THYAO": 6}, "database") == [
        "SASA: database position 0 shares, fills net -3"
    ]
    assert orders.sum_amounts(f.commission for f in fills) == Decimal("2.27")
    assert str(orders.sum_amounts([])) == "0.00"


def test_float_money_columns_are_found_by_name_and_type() -> None:
    columns = [
        orders.Column("public", "orders", "price", "numeric"),
        orders.Column("public", "fills", "commission", "double precision"),
        orders.Column("public", "positions", "average_price", "real"),
        orders.Column("public", "metrics", "latency_seconds", "double precision"),
        orders.Column("public", "positions", "realised_pnl", "numeric"),
    ]
    assert [c.name for c in orders.float_money_columns(columns)] == ["commission", "average_price"]
    assert orders.is_money_column("base_price") and orders.is_money_column("realised_pnl")
    assert not orders.is_money_column("quantity") and not orders.is_money_column("priceless")


OPEN_INDEX = (
    "CREATE UNIQUE INDEX open_position_index ON public.positions USING btree "
    "(account_id, symbol) WHERE (status = 'open'::text)"
)


def test_open_position_index_is_recognised_from_pg_indexes() -> None:
    parsed = orders.parse_index(OPEN_INDEX)
    assert parsed == orders.IndexDef(
        "open_position_index", True, ("account_id", "symbol"), "(status = 'open'::text)"
    )
    primary = "CREATE UNIQUE INDEX positions_pkey ON public.positions USING btree (id)"
    assert orders.open_position_index_finding([primary, OPEN_INDEX]) is None


@pytest.mark.parametrize(
    "indexdef",
    [
        OPEN_INDEX.replace("UNIQUE ", ""),
        OPEN_INDEX.split(" WHERE")[0],
        OPEN_INDEX.replace("'open'", "'closed'"),
        OPEN_INDEX.replace("(account_id, symbol)", "(account_id)"),
    ],
    ids=["not-unique", "not-partial", "other-status", "account-only"],
)
def test_near_misses_are_not_the_open_position_index(indexdef: str) -> None:
    finding = orders.open_position_index_finding([indexdef])
    assert finding is not None and indexdef in finding


EXPOSITION = """\
# HELP spark_decimal_precision_errors_total Amounts that needed rounding.
# TYPE spark_decimal_precision_errors_total counter
spark_decimal_precision_errors_total{site="commission"} 0.0
spark_decimal_precision_errors_total{site="average_price"} 2.0
spark_decimal_precision_errors_created{site="commission"} 1.79e+09
"""


def test_precision_error_counter_sums_every_site() -> None:
    assert orders.counter_total(EXPOSITION, orders.PRECISION_ERRORS) == 2.0
    assert orders.counter_total("# nothing here\n", orders.PRECISION_ERRORS) is None


class OrderDesk(BaseHTTPRequestHandler):
    """Answers an order only once every order of the burst has arrived (a barrier): a client
    that sends them one after another gets 503s instead."""

    barrier: threading.Barrier
    release = threading.Event()

    def do_GET(self) -> None:
        self._answer(200, b"{}")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            self._answer(503, b'{"code":"service_unavailable"}')
            return
        self.release.wait(timeout=5)
        key = self.headers["Idempotency-Key"]
        self._answer(201, json.dumps({"quantity": body["quantity"], "key": key}).encode())

    def _answer(self, status: int, content: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def order_desk() -> Iterator[tuple[str, type[OrderDesk]]]:
    class Desk(OrderDesk):
        release = threading.Event()  # its own, so one test's desk never releases another's

    server = ThreadingHTTPServer(("127.0.0.1", 0), Desk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Desk
    finally:
        Desk.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_burst_submissions_overlap_and_answer_in_order(
    order_desk: tuple[str, type[OrderDesk]],
) -> None:
    url, desk = order_desk
    desk.barrier = threading.Barrier(5, timeout=5)
    desk.release.set()
    tickets = [orders.Ticket("acct", "SASA", "buy", q, Decimal("4.58")) for q in range(1, 6)]
    replies = orders.submit_burst(url, [(t, f"k{t.quantity}") for t in tickets], timeout_s=10)
    assert [r.status for r in replies] == [201] * 5
    assert [r.field("quantity") for r in replies] == [1, 2, 3, 4, 5]
    assert replies[0].field("key") == '"k1"'  # sent as an sf-string


def test_burst_is_bounded_by_its_timeout(order_desk: tuple[str, type[OrderDesk]]) -> None:
    url, desk = order_desk
    desk.barrier = threading.Barrier(1, timeout=5)
    ticket = orders.Ticket("acct", "SASA", "buy", 1, Decimal("4.58"))
    # Whichever bound fires first: the burst's own deadline or the per-request timeout.
    with pytest.raises((TimeoutError, httpx.TimeoutException)):
        orders.submit_burst(url, [(ticket, "k")], timeout_s=0.5)


def reply(status: int, code: str | None = None, replayed: bool = False) -> orders.Reply:
    body = json.dumps({"code": code} if code else {"id": 1}).encode()
    return orders.Reply(status, body, replayed)


@pytest.mark.parametrize(
    ("statuses", "kind"),
    [
        ([reply(201), reply(409, "idempotency_key_in_use"), reply(201, replayed=True)], "refused"),
        ([reply(201), reply(201)], "placed_again"),
        ([reply(201), reply(201, replayed=True), reply(201, replayed=True)], "no_overlap"),
        ([reply(201), reply(409, "something_else")], "no_overlap"),
        ([reply(503, "service_unavailable")], "no_overlap"),
    ],
    ids=["refused", "placed-again", "replays-only", "other-409", "nothing-placed"],
)
def test_a_burst_shows_whether_the_in_flight_answer_was_exercised(
    statuses: list[orders.Reply], kind: str
) -> None:
    assert orders.classify_burst(statuses) == kind


def test_a_target_without_the_hold_hook_is_told_apart() -> None:
    """A real deployment answers 404 (or 401/403/405) to the sandbox's hold route: the probe
    says so (None) and places no order, so the check can fall back to bursts."""
    posted: list[str] = []

    class RealTarget(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), RealTarget)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ticket = orders.Ticket("acct", "SASA", "buy", 1, Decimal("4.58"))
        assert orders.submit_while_held(url, ticket, "k", timeout_s=5) is None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert posted == [orders.HOLDS_PATH]
