"""The canary traffic generator against a stand-in API on loopback (not the sandbox): the split,
the mix, open loop (a slow API sheds requests instead of slowing the schedule), the deadline,
the loopback-only rule, and page loads in Chromium that make the browser post CSP reports."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_spark.probes import money, traffic
from pytest_spark.probes.traffic import (
    READ,
    REPLAY,
    RemoteTargetRefused,
    Track,
    TrafficError,
    TrafficPlan,
    run_traffic,
    slot_kind,
    split,
)

BASE_PRICES = {"AKBNK": "43.50", "THYAO": "287.25"}
PAGE = (
    b"<!doctype html><title>spark</title><p>order book</p>"
    b"<script>document.title = 'inline';</script>"
)
# The inline script is refused; report-uri makes the browser POST each violation at once.
PAGE_CSP = "default-src 'self'; script-src 'self'; report-uri /csp-report"


class StandInApi(ThreadingHTTPServer):
    """Just enough of the Spark API: market reads, keyed orders with replays, a page with a
    CSP the page itself violates, and the report collector. Orders answer after
    ``order_delay_s`` (cut short when the test ends)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, order_delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.order_delay_s = order_delay_s
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.orders: dict[str, bytes] = {}
        self.submissions: list[tuple[str, dict[str, object]]] = []
        self.csp_reports = 0
        self.hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: StandInApi

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the test reads what the stand-in recorded, not its log

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        with self.server.lock:
            self.server.hits += 1
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/page":
            self.answer(200, PAGE, Content_Type="text/html", Content_Security_Policy=PAGE_CSP)
            return
        symbol = self.path.removeprefix("/api/market/")
        if symbol not in BASE_PRICES:
            self.answer(404, b'{"code": "unknown_symbol"}')
            return
        body = {"symbol": symbol, "base_price": BASE_PRICES[symbol], "tick": "0.05"}
        self.answer(200, json.dumps(body).encode())

    def do_POST(self) -> None:
        content = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/csp-report":
            with self.server.lock:
                self.server.csp_reports += 1
            self.answer(204, b"")
            return
        self.server.released.wait(self.server.order_delay_s)
        key = self.headers["Idempotency-Key"]
        with self.server.lock:
            self.server.submissions.append((key, json.loads(content)))
            first = self.server.orders.setdefault(key, content)
        if first != content:
            self.answer(422, b'{"code": "idempotency_key_reused"}')
        elif len([k for k, _ in self.server.submissions if k == key]) > 1:
            self.answer(200, b'{"id": 1}', Idempotent_Replayed="true")
        else:
            self.answer(201, b'{"id": 1}')


def stand_in(order_delay_s: float = 0.0) -> Iterator[StandInApi]:
    server = StandInApi(order_delay_s)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def api() -> Iterator[StandInApi]:
    yield from stand_in()


@pytest.fixture
def second_api() -> Iterator[StandInApi]:
    yield from stand_in()


@pytest.fixture
def slow_api() -> Iterator[StandInApi]:
    yield from stand_in(order_delay_s=0.5)


@pytest.fixture
def hung_api() -> Iterator[StandInApi]:
    yield from stand_in(order_delay_s=60.0)


def plan(**fields: object) -> TrafficPlan:
    defaults: dict[str, object] = {
        "duration_s": 1.0,
        "canary_rps": 40.0,
        "stable_rps": 0.0,
        "max_in_flight": 8,
        "replay_every": 10,
        "symbols": tuple(BASE_PRICES),
        "request_timeout_s": 2.0,
        "grace_s": 1.0,
    }
    return TrafficPlan(**{**defaults, **fields})  # type: ignore[arg-type]


# --- the split and the mix -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "expected"),
    [(1, (36, 36)), (5, (36, 36)), (25, (36, 36)), (50, (36, 36)), (75, (54, 18)), (100, (72, 0))],
)
def test_split_of_the_readiness_stages(weight: int, expected: tuple[float, float]) -> None:
    assert split(weight, 72, 36) == pytest.approx(expected)


@pytest.mark.parametrize("weight", [1, 5, 25, 50, 75, 100])
@pytest.mark.parametrize(("rate", "canary_rate"), [(72, 36), (10, 36), (1000, 5)])
def test_split_rules(weight: int, rate: float, canary_rate: float) -> None:
    canary, stable = split(weight, rate, canary_rate)
    assert canary >= canary_rate
    assert canary + stable <= max(rate, canary_rate) + 1e-9
    assert stable <= canary * (100 - weight) / weight + 1e-9  # never more than its weight
    if weight == 100:
        assert stable == 0


def test_split_sends_the_weight_when_the_rate_allows_it() -> None:
    canary, stable = split(5, 1000, 5)
    assert canary / (canary + stable) == pytest.approx(0.05)


@pytest.mark.parametrize("weight", [0, 101, -5])
def test_split_refuses_a_weight_outside_1_to_100(weight: int) -> None:
    with pytest.raises(ValueError, match="1–100 %"):
        split(weight, 72, 36)


def test_mix_is_orders_with_a_tenth_replays_and_a_tenth_reads() -> None:
    kinds = [slot_kind(i, 10) for i in range(1000)]
    assert kinds.count(REPLAY) == 100
    assert kinds.count(READ) == 100
    assert [slot_kind(i, 0) for i in range(100)].count(REPLAY) == 0


def test_a_tracks_request_budget_is_rate_times_duration_rounded_up() -> None:
    stage = plan(duration_s=15.0, canary_rps=36.0, stable_rps=36.0)
    assert stage.requests_at_most(36) == 540
    assert stage.requests_at_most(0.1) == 2  # ceil(1.5)
    assert stage.requests_at_most(0) == 0


@pytest.mark.parametrize(
    "broken",
    [{"duration_s": 0}, {"max_in_flight": 0}, {"replay_every": 1}, {"symbols": ()}],
)
def test_plan_refuses_what_cannot_be_sent(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="TrafficPlan"):
        plan(**broken)


def test_percentile_is_nearest_rank() -> None:
    assert traffic.percentile([], 0.95) is None
    assert traffic.percentile([float(v) for v in range(1, 101)], 0.95) == 95
    assert traffic.percentile([3.0], 0.5) == 3


# --- loopback only -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://192.0.2.10:8080", "https://spark.example.com", "http://localhost.example.com"],
)
def test_refuses_a_remote_target_before_any_request(url: str, api: StandInApi) -> None:
    started = time.monotonic()
    with pytest.raises(RemoteTargetRefused, match="loopback"):
        run_traffic(plan(stable_rps=10.0), Track("canary", api.url), Track("stable", url))
    with pytest.raises(RemoteTargetRefused):
        run_traffic(plan(), Track("canary", api.url, web_url=url))
    assert time.monotonic() - started < 0.5
    assert api.hits == 0  # not even the loopback track got a request


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "127.0.0.1", "127.8.9.1", "::1"])
def test_loopback_hosts(host: str) -> None:
    assert traffic.is_loopback(host)


def test_a_plan_for_stable_needs_a_stable_track(api: StandInApi) -> None:
    with pytest.raises(ValueError, match="no stable track"):
        run_traffic(plan(stable_rps=10.0), Track("canary", api.url))


def test_no_price_for_a_symbol_is_an_error_naming_it(api: StandInApi) -> None:
    with pytest.raises(TrafficError, match="no tradable price for NOPE"):
        run_traffic(plan(symbols=("AKBNK", "NOPE")), Track("canary", api.url))


# --- open loop, bounded -----------------------------------------------------------------------


def test_sends_each_tracks_share_on_schedule(api: StandInApi, second_api: StandInApi) -> None:
    # Room for every request in flight at once: a loaded machine slows the stand-ins, and
    # shedding is another test's subject (a slow API sheds requests).
    report = run_traffic(
        plan(canary_rps=40.0, stable_rps=20.0, max_in_flight=64),
        Track("canary", api.url),
        Track("stable", second_api.url),
    )
    canary, stable = report.tracks["canary"], report.tracks["stable"]
    assert (canary.scheduled, stable.scheduled) == (40, 20)
    assert (canary.sent, canary.shed, stable.sent, stable.shed) == (40, 0, 20, 0)
    assert canary.replays == 4 and canary.reads == 4 and canary.orders == 32
    assert canary.replays_confirmed == canary.replays
    assert canary.statuses == {201: 32, 200: 8}
    assert canary.transport_errors == {} and canary.unanswered == 0
    assert canary.first_send_unix and canary.last_send_unix
    # Spread over the window on schedule, never sent as one burst (a send is never early;
    # how late a loaded machine makes one is no property of the schedule).
    assert canary.last_send_unix - canary.first_send_unix >= 0.9
    json.dumps(report.to_json())  # the evidence is JSON


def test_orders_are_valid_tickets_and_replays_repeat_key_and_body(api: StandInApi) -> None:
    run_traffic(plan(canary_rps=40.0), Track("canary", api.url))
    first: dict[str, dict[str, object]] = {}
    for key, body in api.submissions:
        assert first.setdefault(key, body) == body
        price = Decimal(str(body["price"]))
        base = Decimal(BASE_PRICES[str(body["symbol"])])
        lower, upper = money.price_band(base)
        assert money.is_tick_aligned(price) and lower <= price <= upper
        assert body["quantity"] == 1
    assert len(first) == 32 and len(api.submissions) == 36
    accounts = {body["account_id"] for _, body in api.submissions}
    assert len(accounts) == 1
    sides = [first[k]["side"] for k in first]
    assert sides.count("buy") == sides.count("sell")  # the position nets to zero


def test_a_slow_api_sheds_requests_instead_of_slowing_the_schedule(slow_api: StandInApi) -> None:
    started = time.monotonic()
    report = run_traffic(plan(canary_rps=40.0, max_in_flight=2), Track("canary", slow_api.url))
    elapsed = time.monotonic() - started
    canary = report.tracks["canary"]
    assert canary.scheduled == 40
    assert canary.shed > 0
    assert canary.sent + canary.shed == canary.scheduled
    # The schedule ran to its end whatever the answers did: a closed loop of two connections
    # at 0.5 s an order would have needed about 8 s for the 32 orders.
    assert elapsed < 2.5
    assert canary.unanswered == 0


def test_the_deadline_cancels_what_is_still_outstanding(hung_api: StandInApi) -> None:
    started = time.monotonic()
    report = run_traffic(
        plan(duration_s=0.5, grace_s=0.5, request_timeout_s=30.0), Track("canary", hung_api.url)
    )
    elapsed = time.monotonic() - started
    canary = report.tracks["canary"]
    assert elapsed < 1.6
    assert canary.unanswered > 0
    assert canary.unanswered == canary.orders  # reads answered; orders hang
    assert report.ended_at - report.started_at < 1.2


def test_a_request_past_its_timeout_is_a_transport_error(hung_api: StandInApi) -> None:
    report = run_traffic(
        plan(duration_s=0.5, grace_s=1.0, request_timeout_s=0.3), Track("canary", hung_api.url)
    )
    canary = report.tracks["canary"]
    assert canary.transport_errors == {"timeout": canary.orders}
    assert canary.unanswered == 0


# --- page loads --------------------------------------------------------------------------------


def test_page_loads_beside_the_traffic_post_the_pages_csp_reports(api: StandInApi) -> None:
    pytest.importorskip("playwright.sync_api")
    page = f"{api.url}/page"
    started = time.monotonic()
    report = run_traffic(
        plan(duration_s=3.0, canary_rps=5.0, page_loads=2), Track("canary", api.url, page)
    )
    assert report.pages is not None
    assert report.pages.errors == []
    assert report.pages.loads == {page: 2}
    assert api.csp_reports >= 2  # one refused inline script per load, posted by Chromium
    assert report.tracks["canary"].sent == 15
    assert time.monotonic() - started < 10


def test_no_page_load_starts_after_the_window(api: StandInApi) -> None:
    pytest.importorskip("playwright.sync_api")
    page = f"{api.url}/page"
    # Four rounds due within 1 s, each load waiting 1 s for reports: only the first fits.
    report = run_traffic(plan(duration_s=1.0, page_loads=4), Track("canary", api.url, page))
    assert report.pages is not None
    assert report.pages.loads == {page: 1}
    assert report.pages.errors == [f"{page}: not loaded, the window had ended"] * 3


def test_a_browser_that_cannot_start_neither_holds_nor_stops_the_traffic(
    api: StandInApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("SPARK_CHROMIUM", str(tmp_path / "no-chromium"))
    started = time.monotonic()
    report = run_traffic(
        plan(duration_s=1.0, canary_rps=10.0, page_loads=2), Track("canary", api.url, api.url)
    )
    assert time.monotonic() - started < 3.0
    assert report.pages is not None and report.pages.loads == {api.url: 0}
    assert any("Chromium" in error for error in report.pages.errors)
    assert report.tracks["canary"].sent == 10
