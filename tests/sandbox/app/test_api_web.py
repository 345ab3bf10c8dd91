"""The page's security headers, CSP reports, static files, flags, time, metrics, WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from api_harness import THIRD_PARTY_ORIGIN, Api, place, ticket, wait_until
from websockets.sync.client import connect

from spark_sandbox.app import thirdparty


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def test_page_headers_isolate_the_page_and_lock_down_scripts(api: Api) -> None:
    with api.client() as client:
        page = client.get("/")
    assert page.status_code == 200
    headers = page.headers
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    policy = csp_directives(headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'", THIRD_PARTY_ORIGIN]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["report-uri"] == ["/csp-report"]
    assert policy["report-to"] == ["csp-endpoint"]
    every_source = [v for values in policy.values() for v in values]
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(
        every_source
    )
    assert headers["reporting-endpoints"] == f'csp-endpoint="{api.base_url}/csp-report"'
    assert '<script src="/static/app.js"' in page.text
    assert f'src="{THIRD_PARTY_ORIGIN}/widget.js"' in page.text
    assert "<script>" not in page.text  # nothing inline


def test_static_files_opt_in_to_same_origin_embedding(api: Api) -> None:
    with api.client() as client:
        script = client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["cross-origin-resource-policy"] == "same-origin"
    assert "securitypolicyviolation" in script.text


async def _third_party_answers() -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=thirdparty.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://third.party") as client:
        return [
            await client.get(path, headers={"Origin": "http://127.0.0.1:1"})
            for path in ("/widget.js", "/badge.svg", "/health")
        ]


def test_third_party_assets_may_be_embedded_cross_origin() -> None:
    widget, badge, health = asyncio.run(_third_party_answers())
    for asset in (widget, badge):
        assert asset.status_code == 200
        assert asset.headers["cross-origin-resource-policy"] == "cross-origin"
        assert asset.headers["access-control-allow-origin"] == "*"
    assert health.json() == {"status": "ok"}


LEGACY_REPORT = {
    "csp-report": {
        "document-uri": "http://127.0.0.1/",
        "blocked-uri": "inline",
        "effective-directive": "script-src-elem",
        "violated-directive": "script-src-elem",
        "original-policy": "default-src 'self'",
        "disposition": "enforce",
        "status-code": 200,
    }
}
REPORTING_API_REPORT = [
    {
        "age": 10,
        "type": "csp-violation",
        "url": "http://127.0.0.1/",
        "user_agent": "Chromium",
        "body": {
            "documentURL": "http://127.0.0.1/",
            "blockedURL": "http://evil.example/x.js",
            "effectiveDirective": "script-src-elem",
            "originalPolicy": "default-src 'self'",
            "disposition": "enforce",
            "statusCode": 200,
        },
    }
]


@pytest.mark.parametrize(
    ("media_type", "report"),
    [("application/csp-report", LEGACY_REPORT), ("application/reports+json", REPORTING_API_REPORT)],
)
def test_csp_reports_are_accepted_with_204_and_counted(
    api: Api, media_type: str, report: object
) -> None:
    with api.client() as client:
        before = _csp_count(client.get("/metrics").text)
        answer = client.post(
            "/csp-report", content=json.dumps(report), headers={"Content-Type": media_type}
        )
        after = _csp_count(client.get("/metrics").text)
    assert answer.status_code == 204
    assert after == before + 1


def _csp_count(exposition: str) -> float:
    prefix = 'spark_csp_violations_total{directive="script-src-elem"} '
    lines = [line for line in exposition.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


@pytest.mark.parametrize(
    ("media_type", "body"),
    [
        ("application/csp-report", "not json"),
        ("application/csp-report", json.dumps({"report": {}})),
        ("application/reports+json", json.dumps({"type": "csp-violation"})),
        ("application/reports+json", json.dumps([{"type": "csp-violation", "body": {}}])),
    ],
)
def test_malformed_csp_reports_are_400(api: Api, media_type: str, body: str) -> None:
    with api.client() as client:
        answer = client.post("/csp-report", content=body, headers={"Content-Type": media_type})
    assert answer.status_code == 400
    assert answer.json()["code"] == "csp_report_malformed"


def test_flags_document_has_explicit_defaults_and_risky_flags_off(api: Api) -> None:
    with api.client() as client:
        doc = client.get("/api/flags").json()
    assert len(doc["flags"]) >= 6
    for flag in doc["flags"]:
        assert isinstance(flag["default"], bool), flag
        assert isinstance(flag["risky"], bool)
        assert 0 <= flag["rollout_percent"] <= 100
        if flag["risky"]:
            assert flag["default"] is False and flag["rollout_percent"] == 0


def test_time_is_the_host_clock(api: Api) -> None:
    with api.client() as client:
        before = time.time() * 1000
        epoch_ms = client.get("/api/time").json()["epoch_ms"]
        after = time.time() * 1000
    assert isinstance(epoch_ms, int)
    assert before - 1 <= epoch_ms <= after + 1


EXPECTED_SERIES = [
    "spark_http_request_duration_seconds_bucket",
    "spark_http_requests_total",
    "spark_http_server_errors_total",
    "spark_orders_accepted_total",
    "spark_risk_blocks_total",
    "spark_idempotency_requests_total",
    "spark_idempotency_conflicts_total",
    "spark_idempotency_keys_live",
    "spark_idempotency_keys_expired",
    "spark_idempotency_gc_deleted_total",
    "spark_outbox_pending_events",
    "spark_outbox_oldest_pending_age_seconds",
    "spark_db_pool_connections_in_use",
    "spark_db_pool_size",
    "spark_db_pool_timeouts_total",
    "spark_feed_connected",
    "spark_feed_reconnects_total",
    "spark_feed_staleness_seconds",
    "spark_ws_connects_total",
    "spark_ws_disconnects_total",
    "spark_ws_clients",
    "spark_decimal_precision_errors_total",
    "spark_csp_violations_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
]


def test_metrics_are_served_at_exactly_metrics_with_every_contract_name(
    api: Api, account: str
) -> None:
    with api.client() as client:
        assert place(client, ticket(account)).status_code == 201
        client.post("/csp-report", content=json.dumps(LEGACY_REPORT),
                    headers={"Content-Type": "application/csp-report"})  # fmt: skip
        with connect(api.ws_url, open_timeout=5, close_timeout=2) as ws:
            ws.recv(timeout=5)
        answer = client.get("/metrics")
    assert answer.status_code == 200  # no redirect to /metrics/
    names = {line.split("{")[0].split(" ")[0] for line in answer.text.splitlines()
             if line and not line.startswith("#")}  # fmt: skip
    missing = [name for name in EXPECTED_SERIES if name not in names]
    assert not missing
    assert 'route="/api/orders",status="201"' in answer.text
    assert 'spark_feed_staleness_seconds{symbol="THYAO"}' in answer.text


def test_websocket_streams_prices_as_strings(api: Api) -> None:
    with connect(api.ws_url, open_timeout=5, close_timeout=2) as ws:
        first = json.loads(ws.recv(timeout=5))
        seen = {first["symbol"]}
        deadline = time.monotonic() + 5
        while len(seen) < 8 and time.monotonic() < deadline:
            seen.add(json.loads(ws.recv(timeout=5))["symbol"])
    assert isinstance(first["price"], str) and isinstance(first["ts"], int)
    assert len(seen) == 8


def test_database_down_answers_503_with_retry_after(
    api_factory: Callable[..., Api], account: str
) -> None:
    unreachable = api_factory(
        dsn="host=127.0.0.1 port=9 dbname=spark user=nobody", require_database=False
    )
    with unreachable.client() as client:
        order = place(client, ticket(account))
        health = client.get("/health")
    assert order.status_code == 503
    assert order.headers["retry-after"] == "1"
    assert order.json()["code"] == "service_unavailable"
    assert health.status_code == 503


def test_saturated_pool_fails_fast_with_503_and_recovers(
    api_factory: Callable[..., Api], db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    small = api_factory(extra_env={"SPARK_DB_POOL_SIZE": "1"})
    blocked_key = f"held-{account}"

    def claim_waits_on_lock() -> bool:
        # pg_stat_activity is a snapshot taken once per transaction: refresh it on every poll.
        db.execute("SELECT pg_stat_clear_snapshot()")
        waiting = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE 'INSERT INTO idempotency_keys%%'"
        ).fetchone()
        return waiting == (1,)

    with db.transaction():
        # An uncommitted insert of the same key makes the API's claim wait on the row lock,
        # holding the pool's only connection.
        db.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, status)"
            " VALUES (%s, 'x', 'in_progress')",
            (blocked_key,),
        )
        with ThreadPoolExecutor(1) as pool, small.client() as client:
            held = pool.submit(place, client, ticket(account), blocked_key)
            wait_until(claim_waits_on_lock, timeout=10, what="the API's claim on the held key")
            starved = place(client, ticket(account))
            held_answer = held.result(timeout=15)
    assert starved.status_code == 503
    assert starved.headers["retry-after"] == "1"
    assert "no database connection free" in starved.json()["detail"]
    assert held_answer.status_code == 503  # the claim gave up at the work deadline
    with small.client() as client:
        assert place(client, ticket(account)).status_code == 201
        metrics = client.get("/metrics").text
    assert "spark_db_pool_timeouts_total 1.0" in metrics
