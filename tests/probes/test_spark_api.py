"""The Spark API client: tickets and answers, a burst that really overlaps on a local server,
and telling a target without the sandbox's hold hook apart."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pytest_spark.probes import spark_api
from pytest_spark.probes.spark_api import Answer, Ticket


def test_ticket_body_carries_price_as_a_decimal_string() -> None:
    ticket = Ticket("acct", "THYAO", "sell", 3, Decimal("285.25"))
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


def test_answer_keeps_bytes_and_reads_problem_fields() -> None:
    problem = Answer(
        422, b'{"code":"idempotency_key_reused","detail":"other payload","status":422}'
    )
    assert problem.code == "idempotency_key_reused"
    assert problem.describe() == "422 idempotency_key_reused: other payload"
    order = Answer(201, b'{"id":7,"commission":"0.14"}', replayed=True)
    assert order.field("commission") == "0.14" and order.code is None
    assert order.describe() == "201 replayed"
    # Money read with exact decimals: a JSON number is kept as written, not as a float.
    assert Answer(201, b'{"price":1.10}').field("price") == Decimal("1.10")
    assert Answer(502, b"<html>bad gateway</html>").body is None


def stand_in(routes: dict[str, httpx.Response], seen: list[httpx.Request]) -> spark_api.SparkApi:
    """A SparkApi whose requests are answered from ``routes`` (by path) and recorded."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return routes.get(request.url.path, httpx.Response(404, json={"code": "not_found"}))

    return spark_api.SparkApi("http://api.test/", 2.0, transport=httpx.MockTransport(handle))


def test_submit_sends_the_key_as_an_sf_string_and_the_ticket_as_json() -> None:
    seen: list[httpx.Request] = []
    order = httpx.Response(201, content=b'{"id":7,"price":"285.25"}')
    with stand_in({"/api/orders": order}, seen) as api:
        answer = api.submit(Ticket("acct", "THYAO", "buy", 1, Decimal("285.25")), "k-1")
        api.submit({"symbol": "THYAO"}, "web-1", as_sf_string=False)
        api.submit(Ticket("acct", "THYAO", "buy", 1, Decimal("1")), None, content=b"{ }")
    assert answer.status == 201 and answer.field("price") == "285.25"
    assert [r.headers.get("idempotency-key") for r in seen] == ['"k-1"', "web-1", None]
    assert json.loads(seen[0].content)["price"] == "285.25"
    assert seen[2].content == b"{ }"


def test_reads_of_market_positions_clock_and_metrics() -> None:
    seen: list[httpx.Request] = []
    routes = {
        "/api/market/THYAO": httpx.Response(200, content=b'{"base_price":"285.25","tick":"0.25"}'),
        "/api/positions": httpx.Response(
            200, content=b'{"positions":[{"symbol":"THYAO","average_price":1.10}]}'
        ),
        "/api/time": httpx.Response(200, json={"epoch_ms": 1_700_000_000_123}),
        "/metrics": httpx.Response(200, text="up 1\n"),
    }
    with stand_in(routes, seen) as api:
        assert api.instrument("THYAO") == spark_api.money.Instrument(
            "THYAO", Decimal("285.25"), Decimal("0.25")
        )
        # Exact decimals: a JSON number in a position is kept as written, not as a float.
        assert api.position("acct", "THYAO")["average_price"] == Decimal("1.10")
        assert api.position("acct", "SASA") == {}
        assert api.clock_seconds() == pytest.approx(1_700_000_000.123)
        assert api.metrics() == "up 1\n"
    assert seen[1].url.params["account_id"] == "acct"


def test_unusable_answers_raise_naming_what_was_asked() -> None:
    routes = {
        "/api/market/SASA": httpx.Response(200, json={"symbol": "SASA"}),
        "/api/time": httpx.Response(200, json={"now": 1}),
    }
    with stand_in(routes, []) as api:
        with pytest.raises(spark_api.money.MoneyFormatError, match="no base_price/tick"):
            api.instrument("SASA")
        with pytest.raises(spark_api.clock.ClockProbeError, match="expected epoch_ms"):
            api.clock_seconds()
        with pytest.raises(httpx.HTTPStatusError):
            api.market("NOPE")
    refused = Answer(422, b'{"code":"idempotency_key_reused","detail":"other payload"}')
    with pytest.raises(spark_api.UnexpectedAnswer, match="placing it answered 422"):
        refused.expect(201, what="placing it")
    assert Answer(201, b'{"id":1}').expect(201) == {"id": 1}


def test_flag_fetch_is_timed_and_keeps_a_broken_body_as_its_error() -> None:
    routes = {"/api/flags": httpx.Response(200, text="<html>not json</html>")}
    with stand_in(routes, []) as api:
        fetch = api.fetch_flags()
    assert fetch.status == 200 and fetch.document is None
    assert "not JSON" in fetch.error and fetch.latency_ms >= 0


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
    tickets = [Ticket("acct", "SASA", "buy", q, Decimal("4.58")) for q in range(1, 6)]
    replies = spark_api.submit_burst(url, [(t, f"k{t.quantity}") for t in tickets], timeout_s=10)
    assert [r.status for r in replies] == [201] * 5
    assert [r.field("quantity") for r in replies] == [1, 2, 3, 4, 5]
    assert replies[0].field("key") == '"k1"'  # sent as an sf-string


def test_burst_is_bounded_by_its_timeout(order_desk: tuple[str, type[OrderDesk]]) -> None:
    url, desk = order_desk
    desk.barrier = threading.Barrier(1, timeout=5)
    ticket = Ticket("acct", "SASA", "buy", 1, Decimal("4.58"))
    # Whichever bound fires first: the burst's own deadline or the per-request timeout.
    with pytest.raises((TimeoutError, httpx.TimeoutException)):
        spark_api.submit_burst(url, [(ticket, "k")], timeout_s=0.5)


def answer(status: int, code: str | None = None, replayed: bool = False) -> Answer:
    body = json.dumps({"code": code} if code else {"id": 1}).encode()
    return Answer(status, body, replayed)


@pytest.mark.parametrize(
    ("statuses", "kind"),
    [
        (
            [answer(201), answer(409, "idempotency_key_in_use"), answer(201, replayed=True)],
            "refused",
        ),
        ([answer(201), answer(201)], "placed_again"),
        ([answer(201), answer(201, replayed=True), answer(201, replayed=True)], "no_overlap"),
        ([answer(201), answer(409, "something_else")], "no_overlap"),
        ([answer(503, "service_unavailable")], "no_overlap"),
    ],
    ids=["refused", "placed-again", "replays-only", "other-409", "nothing-placed"],
)
def test_a_burst_shows_whether_the_in_flight_answer_was_exercised(
    statuses: list[Answer], kind: str
) -> None:
    assert spark_api.classify_burst(statuses) == kind


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
        ticket = Ticket("acct", "SASA", "buy", 1, Decimal("4.58"))
        assert spark_api.submit_while_held(url, ticket, "k", timeout_s=5) is None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert posted == [spark_api.HOLDS_PATH]
