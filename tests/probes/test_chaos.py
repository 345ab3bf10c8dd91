"""The chaos machinery's logic without services: the interlock, the fault's removal in every
case (against an in-memory Toxiproxy behind httpx's MockTransport), the sweep of leftovers,
the steady-state findings, the journal's shape and the timeline's SVG."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_spark.config import load_target
from pytest_spark.probes import chaos
from pytest_spark.probes.chaos import FaultSpec, Journal, Scenario, SteadyState
from pytest_spark.probes.chaos_load import Shot, probe_address, send_orders
from pytest_spark.probes.spark_api import Ticket
from pytest_spark.probes.toxiproxy import ToxiproxyClient, ToxiproxyError
from pytest_spark.targets import target_from_wire, target_to_wire

LOOPBACK = {
    "toxiproxy_url": "http://127.0.0.1:8474",
    "api_url": "http://localhost:8000",
    "postgres_dsn": "host=127.0.0.1 port=5432 dbname=spark user=gate",
}
REMOTE = {**LOOPBACK, "api_url": "https://spark-staging.internal.example"}


# --- the interlock ---------------------------------------------------------------------------


def test_loopback_targets_need_no_opt_in() -> None:
    assert chaos.refusal(LOOPBACK, {}, ["spark_db"]) is None


@pytest.mark.parametrize(
    "endpoints",
    [
        REMOTE,
        {**LOOPBACK, "toxiproxy_url": "http://toxiproxy.staging.example:8474"},
        {**LOOPBACK, "postgres_dsn": "host=db.staging.example port=5432 dbname=spark"},
        {**LOOPBACK, "postgres_dsn": "postgresql://gate@10.0.0.7:5432/spark"},
    ],
)
def test_a_remote_target_without_opt_in_is_refused_naming_the_way_out(
    endpoints: dict[str, str],
) -> None:
    refused = chaos.refusal(endpoints, {}, ["spark_db"])
    assert refused is not None
    assert "not on loopback" in refused and "chaos_allowed = true" in refused


def test_opt_in_must_name_every_proxy_the_scenario_faults() -> None:
    opt_in: dict[str, object] = {"chaos_allowed": True, "proxies": ["spark_api"]}
    refused = chaos.refusal(REMOTE, opt_in, ["spark_db"])
    assert refused is not None and "['spark_db']" in refused
    assert chaos.refusal(REMOTE, {**opt_in, "proxies": ["spark_db"]}, ["spark_db"]) is None


def test_opt_in_must_be_true_not_truthy() -> None:
    assert chaos.refusal(REMOTE, {"chaos_allowed": "yes", "proxies": ["spark_db"]}, ["spark_db"])


def test_a_target_file_opts_in_with_its_chaos_table(tmp_path: Path) -> None:
    (tmp_path / "staging.toml").write_text(
        '[target]\nname = "staging"\nkind = "deployment"\n'
        '[endpoints]\napi_url = "https://spark-staging.internal.example"\n'
        '[chaos]\nchaos_allowed = true\nproxies = ["spark_db", "spark_consumer"]\n'
    )
    target = load_target("staging.toml", tmp_path)
    assert target.chaos == {"chaos_allowed": True, "proxies": ["spark_db", "spark_consumer"]}
    # Workers under -n get the same opt-in as the controller.
    assert target_from_wire(target_to_wire(target), target).chaos == target.chaos


# --- an in-memory Toxiproxy -------------------------------------------------------------------


class FakeToxiproxy:
    """Proxies and their toxics, served as the Toxiproxy REST API does."""

    def __init__(self, *names: str) -> None:
        self.toxics: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        self.fail_deletes = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if request.method == "GET" and parts == ["proxies"]:
            return httpx.Response(200, json={n: self._proxy(n) for n in self.toxics})
        if parts[0] == "proxies" and len(parts) >= 3 and parts[2] == "toxics":
            proxy = parts[1]
            if request.method == "GET":
                return httpx.Response(200, json=self.toxics[proxy])
            if request.method == "POST":
                toxic = json.loads(request.content)
                self.toxics[proxy].append(toxic)
                return httpx.Response(200, json=toxic)
            if request.method == "DELETE":
                if self.fail_deletes:
                    self.fail_deletes -= 1
                    return httpx.Response(500, json={"error": "busy"})
                before = len(self.toxics[proxy])
                self.toxics[proxy] = [t for t in self.toxics[proxy] if t["name"] != parts[3]]
                return httpx.Response(204 if len(self.toxics[proxy]) < before else 404)
        if request.method == "GET" and parts[0] == "proxies":
            return httpx.Response(200, json=self._proxy(parts[1]))
        return httpx.Response(404, json={"error": "not found"})

    def _proxy(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "listen": "127.0.0.1:7000",
            "upstream": "127.0.0.1:6432",
            "enabled": True,
            "toxics": self.toxics[name],
        }


@pytest.fixture
def fake() -> FakeToxiproxy:
    return FakeToxiproxy("spark_db", "spark_consumer")


@pytest.fixture
def client(fake: FakeToxiproxy) -> Iterator[ToxiproxyClient]:
    with ToxiproxyClient("http://127.0.0.1:8474") as real:
        real._http = httpx.Client(
            base_url=real.base_url, transport=httpx.MockTransport(fake.handle)
        )
        yield real


LATENCY = FaultSpec("C1", "spark_db", "latency", {"latency": 1500, "jitter": 0})


def test_a_fault_is_named_with_the_prefix_read_back_and_journalled(
    client: ToxiproxyClient, fake: FakeToxiproxy
) -> None:
    scenario = Scenario(client, Journal("C1", "C1 DB latency", "h"))
    with scenario.fault(LATENCY) as read_back:
        assert read_back
        assert [t["name"] for t in fake.toxics["spark_db"]] == ["spark-chaos-c1-latency"]
    assert fake.toxics["spark_db"] == []
    doc = scenario.journal.to_json()
    assert doc["run"][0]["status"] == "succeeded"
    assert doc["run"][0]["output"]["read_back"]["attributes"] == {"latency": 1500, "jitter": 0}
    assert doc["rollbacks"][-1]["status"] == "succeeded"


@pytest.mark.parametrize("interruption", [AssertionError, RuntimeError, KeyboardInterrupt])
def test_the_fault_is_removed_in_every_case(
    client: ToxiproxyClient, fake: FakeToxiproxy, interruption: type[BaseException]
) -> None:
    scenario = Scenario(client, Journal("C1", "C1", "h"))
    with pytest.raises(interruption), scenario.fault(LATENCY):
        raise interruption("mid-scenario")
    assert fake.toxics["spark_db"] == []
    assert scenario.journal.run[0].status == "failed"
    assert scenario.journal.rollbacks[-1].output == "removed; read back absent"


def test_a_removal_that_keeps_failing_is_raised_and_journalled_as_failed(
    client: ToxiproxyClient, fake: FakeToxiproxy
) -> None:
    fake.fail_deletes = 10
    scenario = Scenario(client, Journal("C1", "C1", "h"))
    with pytest.raises(ToxiproxyError, match="still active"), scenario.fault(LATENCY):
        pass
    assert scenario.journal.rollbacks[-1].status == "failed"


def test_a_fault_the_proxy_does_not_read_back_as_asked_is_not_active(
    client: ToxiproxyClient, fake: FakeToxiproxy
) -> None:
    original = fake.handle

    def altered(request: httpx.Request) -> httpx.Response:
        response = original(request)
        for toxic in fake.toxics["spark_db"]:
            toxic["attributes"] = {"latency": 0}
        return response

    client._http = httpx.Client(base_url=client.base_url, transport=httpx.MockTransport(altered))
    with Scenario(client, Journal("C1", "C1", "h")).fault(LATENCY) as read_back:
        assert not read_back


def test_the_sweep_removes_only_prefixed_toxics_and_says_which(
    client: ToxiproxyClient, fake: FakeToxiproxy
) -> None:
    left = {"name": "spark-chaos-c4-reset_peer", "type": "reset_peer", "stream": "upstream",
            "toxicity": 1.0, "attributes": {"timeout": 0}}  # fmt: skip
    theirs = {"name": "ops-latency", "type": "latency", "stream": "downstream",
              "toxicity": 1.0, "attributes": {"latency": 5}}  # fmt: skip
    fake.toxics["spark_consumer"] = [left, theirs]
    scenario = Scenario(client, Journal("C4", "C4", "h"))
    removed = scenario.sweep()
    assert removed == ["spark-chaos-c4-reset_peer (reset_peer) on proxy spark_consumer"]
    assert fake.toxics["spark_consumer"] == [theirs]
    assert "previous run left behind" in scenario.journal.notes[0]
    assert chaos.sweep_leftovers(client) == []


# --- steady state, journal, timeline ----------------------------------------------------------


def shot(latency_ms: float | None, status: int | None, at: float = 1000.0) -> Shot:
    return Shot("k", at, latency_ms, status)


def findings(shots: list[Shot], pending: int | None) -> list[str]:
    return chaos.steady_state_findings(
        shots, pending, p95_limit_ms=200, server_errors_limit=1, pending_limit=1
    )


def test_a_healthy_steady_state_has_no_findings() -> None:
    assert findings([shot(20.0, 201)] * 20, 0) == []


def test_slow_failing_or_backed_up_steady_states_say_why() -> None:
    slow = findings([shot(20.0, 201)] * 18 + [shot(900.0, 201)] * 2, 0)
    assert len(slow) == 1 and "p95 900 ms" in slow[0]
    failing = findings([shot(20.0, 201)] * 19 + [shot(None, None)], 0)
    assert len(failing) == 1 and "1 of 20 orders answered 5xx" in failing[0]
    assert findings([shot(20.0, 201)] * 20, 3) == [
        "outbox events pending after the probe settled: 3"
    ]
    assert "no answered order" in findings([shot(None, 503)], 0)[0]


def test_the_journal_has_chaos_toolkits_shape() -> None:
    journal = Journal("C4", "C4 Broker outage", "orders still accepted")
    journal.before = SteadyState([shot(20.0, 201)], 0, [])
    journal.after = SteadyState([shot(20.0, 201)], 2, ["pending 2"])
    with journal.activity("send orders", "action") as entry:
        entry.output = {"orders": 1}
    journal.finish("completed")
    doc = json.loads(journal.dumps())
    assert {"status", "deviated", "steady_states", "run", "rollbacks", "start", "end",
            "duration"} <= set(doc)  # fmt: skip
    assert doc["status"] == "completed" and doc["deviated"] is True
    assert doc["steady_states"]["before"]["steady_state_met"] is True
    assert doc["run"][0]["activity"] == {"type": "action", "name": "send orders"}
    assert {"start", "end", "duration", "status", "output"} <= set(doc["run"][0])


def test_the_timeline_is_one_self_contained_svg_of_three_charts() -> None:
    shots = [shot(20.0 + n, 201 if n % 5 else 503, at=1000.0 + n / 4) for n in range(40)]
    svg = chaos.timeline_svg(
        'C1 "latency"', shots, ("DB round trip", "ms", [(1002.0, 1500.0)]), (1001.0, 1008.0), 200
    )
    root = ET.fromstring(svg)
    assert len([e for e in root if e.tag.endswith("svg")]) == 3
    assert "script" not in svg and "href" not in svg


def test_a_wildcard_listen_address_is_probed_on_the_toxiproxy_host() -> None:
    assert probe_address("0.0.0.0:26379", "http://toxiproxy.example:8474") == (
        "toxiproxy.example",
        26379,
    )
    assert probe_address("127.0.0.1:7000", "http://ignored:8474") == ("127.0.0.1", 7000)


# --- keyed orders at a fixed rate, against a stand-in API -------------------------------------


class StandIn(BaseHTTPRequestHandler):
    """201 with an id; a key ending in 'busy' gets 503 + Retry-After; 'slow' answers late."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["Idempotency-Key"].strip('"')
        if key.endswith("slow"):
            time.sleep(1.0)
        status, body = (503, b"{}") if key.endswith("busy") else (201, b'{"id": 7}')
        with contextlib.suppress(OSError):  # the slow one's client has gone by then
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_orders_go_out_open_loop_and_every_one_is_accounted_for(stand_in: str) -> None:
    ticket = Ticket("acct", "THYAO", "buy", 1, Decimal("287.25"))
    keys = [f"k{n}" for n in range(8)] + ["k-busy", "k-slow"]
    started = time.monotonic()
    shots = send_orders(stand_in, [(ticket, k) for k in keys], rate_per_s=20, timeout_s=0.5)
    took = time.monotonic() - started
    assert [s.key for s in shots] == keys
    assert all(s.status == 201 and s.order_id == 7 for s in shots[:8])
    assert (shots[8].status, shots[8].retry_after) == (503, "1")
    assert shots[9].status is None and shots[9].server_error  # timed out: no answer
    # Bounded: the schedule (0.5 s) plus one timeout plus the grace, not a request after another.
    assert took < 10 / 20 + 0.5 + 1.0 + 0.5
