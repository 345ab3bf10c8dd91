"""The live drill of the rollback triggers: T01, T02, T05, T06 and T13 page on-call from real
traffic, on the series the API and PgBouncer really export.

``ops/prometheus/tests/rollback.test.yml`` proves the rules on synthetic series; this drill
proves that the live deployment feeds them. One sandbox runs with every alerting rule's
``for:`` capped at a few seconds (``Sandbox(drill_alert_for=...)``, a copy of ``ops/``;
expressions and thresholds stay as released), and each test causes one trigger's condition on
loopback, waits until the alert sink has a firing notification labelled with the trigger
from the on-call receiver, then removes the cause:

- T01 p95 > 400 ms: latency on the API's database link, under a steady read of positions.
  Latency on the API link itself would not do: the API times its answers from the inside,
  so a slow network in front of it never reaches the histogram T01 reads.
- T02 5xx ratio > 3 %: the database link cut (every packet resets the connection); the API
  answers 503, which counts in ``spark_http_server_errors_total``.
- T05 idempotency conflicts > 5 %: each order is followed by its key reused with another
  payload (422).
- T06 PgBouncer saturation > 90 %: idle-in-transaction sessions hold server connections of
  the app pool, one more than 90 % of its size.
- T13 WebSocket disconnect storm: price-stream clients connect and leave, several a second.

The rate windows (``[5m]``, ``[2m]``) keep T01, T02, T05 and T13 true for minutes after their
cause is gone, so only T06 (a gauge) is also seen to resolve. T01 goes first: the fast answers
of the later drills would dilute the slow ones in its five-minute p95. T01 and T02 also check
that the API's scrapes never failed while its database was impaired (a failed scrape blinds
every trigger that reads the API). Two quick tests first check the cap itself.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from pytest_spark.probes import alertmanager, money, prometheus
from pytest_spark.probes.pgbouncer import console_rows
from pytest_spark.probes.prometheus import parse_duration
from pytest_spark.probes.spark_api import SparkApi, Ticket, new_account, new_key
from pytest_spark.probes.toxiproxy import ToxiproxyClient
from pytest_spark.probes.waiting import wait_until
from spark_sandbox import ops_defects
from spark_sandbox.app.instruments import INSTRUMENTS
from spark_sandbox.sandbox import Endpoints, Sandbox

# The tests share one sandbox and run in order: under xdist (`--dist loadgroup`) keep them on
# one worker rather than starting a second deployment.
pytestmark = pytest.mark.xdist_group("rollback_drill")

# Every `for:` of the drill's rules: long enough that one stray evaluation does not page, short
# enough that five triggers fire within the module's budget.
DRILL_FOR = "3s"
ONCALL = "spark-oncall"
FIRING_DEADLINE_S = 60.0
RESOLVED_DEADLINE_S = 30.0
RECOVERY_DEADLINE_S = 30.0
# Traffic is bounded three ways: a per-request timeout, a pause, and a total count.
REQUEST_TIMEOUT_S = 5.0
TRAFFIC_LIMIT = 5000
JOIN_S = 10.0
# T01: a database round trip this slow puts every read in the (0.4 s, 0.5 s] bucket or above.
DB_LATENCY_MS = 450
LATENCY_READERS = 2
# T06: the app pool's name in PgBouncer (ops/rollback-triggers.toml `app_pool`) and the
# threshold of its rule; the sessions hold server connections at most this long in any case.
APP_POOL = "spark"
SATURATION_LIMIT = 0.9
HOLD_AT_MOST = "90s"


def public_run_root() -> Path:
    """A run root the postgres user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="spark-sandbox-drill-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def drill() -> Iterator[Endpoints]:
    root = public_run_root()
    sandbox = Sandbox(run_root=root, drill_alert_for=DRILL_FOR)
    try:
        endpoints = sandbox.start()
        # rate() needs scraped samples of every job before a cause can show in it.
        sandbox.await_first_scrapes()
        yield endpoints
    finally:
        sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- reading what fired -----------------------------------------------------------------------


def pages(endpoints: Endpoints, trigger: str, status: str, since: datetime) -> list[str]:
    """When the on-call receiver got ``trigger``'s alert with ``status``, since ``since``."""
    return [
        n.received_at
        for n in alertmanager.fetch_notifications(f"{endpoints.alert_sink_url}/alerts")
        if n.labels.get("trigger") == trigger
        and n.receiver == ONCALL
        and n.status == status
        and datetime.fromisoformat(n.received_at) >= since
    ]


def firing_in_prometheus(endpoints: Endpoints, trigger: str) -> list[str]:
    query = f'ALERTS{{trigger="{trigger}",alertstate="firing"}}'
    data = prometheus.api_get(endpoints.prometheus_url, "/api/v1/query", {"query": query})
    return [str(r["metric"].get("alertname")) for r in data["result"]]


def failed_api_scrapes(endpoints: Endpoints, since: datetime) -> int:
    """Scrapes of the API that failed since ``since``, over both its tracks: while they fail,
    every rule that reads the API is blind, so a cause that fails them hides itself."""
    window = f"{max(1, round((datetime.now(UTC) - since).total_seconds()))}s"
    up = f'up{{job="spark-api"}}[{window}]'
    query = f"sum(count_over_time({up}) - sum_over_time({up}))"
    data = prometheus.api_get(endpoints.prometheus_url, "/api/v1/query", {"query": query})
    return round(float(data["result"][0]["value"][1])) if data["result"] else 0


def all_notifications(endpoints: Endpoints) -> str:
    seen = alertmanager.fetch_notifications(f"{endpoints.alert_sink_url}/alerts")
    return "; ".join(
        f"{n.labels.get('trigger') or n.labels.get('alertname')} {n.describe()}" for n in seen
    )


# -- traffic ----------------------------------------------------------------------------------


@contextlib.contextmanager
def traffic(
    send: Callable[[], str], *, workers: int = 1, pause_s: float = 0.05
) -> Iterator[Counter[str]]:
    """``send()`` from ``workers`` threads, each pausing ``pause_s`` between calls, until the
    block ends or TRAFFIC_LIMIT calls were made; yields the outcomes counted so far."""
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run() -> None:
        while not stop.is_set():
            with lock:
                if outcomes.total() >= TRAFFIC_LIMIT:
                    return
            try:
                outcome = send()
            except (httpx.HTTPError, OSError, TimeoutError, WebSocketException) as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes[outcome] += 1
            stop.wait(pause_s)

    threads = [threading.Thread(target=run, name=f"drill-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_S)


def read_positions(api: httpx.Client) -> Callable[[], str]:
    account = new_account("drill-reader")

    def send() -> str:
        return str(api.get("/api/positions", params={"account_id": account}).status_code)

    return send


def warm_api_pool(api: httpx.Client, connections: int) -> None:
    """Let the API's database pool open ``connections`` while the database is fast: one more
    concurrent read per round, so no read waits for more than one new connection (a cold pool
    under latency would answer 503 and fire T02 as well)."""
    send = read_positions(api)
    for concurrent in range(1, connections + 1):
        threads = [threading.Thread(target=send) for _ in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT_S)


# -- the causes -------------------------------------------------------------------------------


def toxiproxy(endpoints: Endpoints) -> ToxiproxyClient:
    return ToxiproxyClient(endpoints.toxiproxy_url, token=endpoints.toxiproxy_token)


def database_link(proxies: ToxiproxyClient, endpoints: Endpoints) -> str:
    """The proxy the API's database traffic goes through (``app_dsn``'s port)."""
    port = int(str(conninfo_to_dict(endpoints.app_dsn)["port"]))
    for proxy in proxies.proxies().values():
        if proxy.listen_port == port:
            return proxy.name
    raise AssertionError(f"no fault-proxy proxy listens on the API's database port {port}")


@contextlib.contextmanager
def slow_database(endpoints: Endpoints) -> Iterator[Counter[str]]:
    with (
        toxiproxy(endpoints) as proxies,
        httpx.Client(base_url=endpoints.api_url, timeout=REQUEST_TIMEOUT_S) as api,
    ):
        warm_api_pool(api, LATENCY_READERS + 2)  # the readers and the scrape-time read
        link = database_link(proxies, endpoints)
        attributes = {"latency": DB_LATENCY_MS, "jitter": 0}
        with (
            proxies.toxic(link, type="latency", attributes=attributes, name="drill_t01"),
            traffic(read_positions(api), workers=LATENCY_READERS) as outcomes,
        ):
            yield outcomes


@contextlib.contextmanager
def database_cut(endpoints: Endpoints) -> Iterator[Counter[str]]:
    with (
        toxiproxy(endpoints) as proxies,
        httpx.Client(base_url=endpoints.api_url, timeout=REQUEST_TIMEOUT_S) as api,
    ):
        link = database_link(proxies, endpoints)
        with (
            proxies.toxic(
                link,
                type="reset_peer",
                attributes={"timeout": 0},
                stream="upstream",
                name="drill_t02",
            ),
            traffic(read_positions(api), workers=2) as outcomes,
        ):
            yield outcomes


@contextlib.contextmanager
def reused_keys(endpoints: Endpoints) -> Iterator[Counter[str]]:
    symbol = next(iter(INSTRUMENTS))
    with SparkApi(endpoints.api_url, REQUEST_TIMEOUT_S) as api:
        instrument = api.instrument(symbol)
        [price] = money.aligned_prices_near(instrument.base_price, instrument.band, 1)

        def order_then_reuse() -> str:
            key = new_key()
            ticket = Ticket(new_account("drill-t05"), symbol, "buy", 1, price)
            first = api.submit(ticket, key)
            again = api.submit(Ticket(ticket.account_id, symbol, "buy", 2, price), key)
            return f"{first.status} then {again.status}"

        with traffic(order_then_reuse, pause_s=0.1) as outcomes:
            yield outcomes


@contextlib.contextmanager
def saturated_app_pool(endpoints: Endpoints) -> Iterator[Counter[str]]:
    [row] = [
        r
        for r in console_rows(endpoints.pgbouncer_admin_dsn, "SHOW DATABASES")
        if r["name"] == APP_POOL
    ]
    held = int(SATURATION_LIMIT * int(row["pool_size"])) + 1
    sessions: list[psycopg.Connection[Any]] = []
    outcomes: Counter[str] = Counter()
    try:
        for _ in range(held):
            conn = psycopg.connect(endpoints.app_dsn, prepare_threshold=None, connect_timeout=5)
            sessions.append(conn)
            # An open transaction keeps its server connection linked (sv_active) in transaction
            # pooling; the server ends it by itself should this process die holding it.
            conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{HOLD_AT_MOST}'")
            outcomes["server connections held"] += 1
        outcomes["pool_size"] = int(row["pool_size"])
        yield outcomes
    finally:
        for conn in sessions:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            conn.close()


@contextlib.contextmanager
def disconnect_storm(endpoints: Endpoints) -> Iterator[Counter[str]]:
    url = endpoints.api_url.replace("http://", "ws://", 1) + "/ws/prices"

    def connect_and_leave() -> str:
        with ws_connect(url, open_timeout=REQUEST_TIMEOUT_S, close_timeout=2):
            return "connected and left"

    with traffic(connect_and_leave, pause_s=0.1) as outcomes:
        yield outcomes


# -- after the cause --------------------------------------------------------------------------


def api_answers_again(endpoints: Endpoints, trigger: str, since: datetime) -> None:
    """Later drills need the database back: the API's pool reconnects with a backoff."""

    def health(left: float) -> int:
        try:
            return httpx.get(
                f"{endpoints.api_url}/health", timeout=min(left, 2.0) or 0.1
            ).status_code
        except httpx.HTTPError:
            return 0

    waited = wait_until(
        RECOVERY_DEADLINE_S, "the API answers /health 200", health, lambda s: s == 200
    )
    assert waited.done, f"after the database link came back: {waited.describe()}"


def resolves(endpoints: Endpoints, trigger: str, since: datetime) -> None:
    waited = wait_until(
        RESOLVED_DEADLINE_S,
        f"{trigger} resolved to {ONCALL}",
        lambda left: pages(endpoints, trigger, "resolved", since),
    )
    assert waited.done, f"{waited.describe()}; notifications: {all_notifications(endpoints)}"


@dataclass(frozen=True)
class Drill:
    cause: Callable[[Endpoints], contextlib.AbstractContextManager[Counter[str]]]
    after: Callable[[Endpoints, str, datetime], None] | None = None
    # A database cause must not take the API's scrapes down with it: the API then answers
    # /metrics with its previous database gauges (docs/metrics-contract.md, scrape-time).
    scrapes_stay_up: bool = False


# In the order they run; see the module's docstring for why T01 is first.
DRILLS: dict[str, Drill] = {
    "T01": Drill(slow_database, scrapes_stay_up=True),
    "T02": Drill(database_cut, after=api_answers_again, scrapes_stay_up=True),
    "T05": Drill(reused_keys),
    "T06": Drill(saturated_app_pool, after=resolves),
    "T13": Drill(disconnect_storm),
}


def test_the_drill_caps_every_for_and_changes_nothing_else(tmp_path: Path) -> None:
    source = ops_defects.ops_source()
    served = ops_defects.prepare_ops_dir([ops_defects.AlertForCap(DRILL_FOR)], tmp_path)
    cap = parse_duration(DRILL_FOR)
    released_files, served_files = ops_defects.rule_files(source), ops_defects.rule_files(served)
    assert [p.name for p in served_files] == [p.name for p in released_files]
    for released_file, served_file in zip(released_files, served_files, strict=True):
        released = yaml.safe_load(released_file.read_text())
        drilled = yaml.safe_load(served_file.read_text())
        for group, drilled_group in zip(released["groups"], drilled["groups"], strict=True):
            for rule, drilled_rule in zip(group["rules"], drilled_group["rules"], strict=True):
                if "alert" in rule:
                    want = min(parse_duration(str(rule.get("for", "0s"))), cap)
                    assert parse_duration(str(drilled_rule.get("for", "0s"))) == want
                assert {k: v for k, v in drilled_rule.items() if k != "for"} == {
                    k: v for k, v in rule.items() if k != "for"
                }


def test_a_drill_duration_that_is_not_one_fails_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        Sandbox(run_root=Path(tempfile.gettempdir()), drill_alert_for="3 s")


@pytest.mark.parametrize("trigger", list(DRILLS))
def test_trigger_pages_oncall_from_live_traffic(drill: Endpoints, trigger: str) -> None:
    already = firing_in_prometheus(drill, trigger)
    assert not already, (
        f"{trigger} ({', '.join(already)}) was firing before its cause: the drill cannot show "
        "that this cause fires it (Alertmanager does not page again for an alert still firing)"
    )
    since = datetime.now(UTC)
    with DRILLS[trigger].cause(drill) as outcomes:
        paged = wait_until(
            FIRING_DEADLINE_S,
            f"{trigger} paged {ONCALL}",
            lambda left: pages(drill, trigger, "firing", since),
        )
        failed_scrapes = failed_api_scrapes(drill, since)
    removed = datetime.now(UTC)
    print(f"{paged.describe()}; traffic: {dict(outcomes)}; failed API scrapes: {failed_scrapes}")
    assert paged.done, (
        f"{paged.describe()}; the cause's traffic: {dict(outcomes)}; firing in Prometheus: "
        f"{firing_in_prometheus(drill, trigger)}; failed API scrapes: {failed_scrapes}; "
        f"notifications: {all_notifications(drill)}"
    )
    if DRILLS[trigger].scrapes_stay_up:
        assert failed_scrapes == 0, (
            f"{failed_scrapes} scrape(s) of the API failed while its database was impaired: "
            "for that long every rollback trigger reading the API was blind"
        )
    after = DRILLS[trigger].after
    if after is not None:
        after(drill, trigger, removed)
