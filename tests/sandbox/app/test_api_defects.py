"""Every app-layer defect shows its broken property directly on a freshly started API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from api_harness import (
    UNLISTED_ORIGIN,
    Api,
    FakeFeed,
    new_key,
    place,
    start_api,
    submit_concurrently,
    ticket,
)

from spark_sandbox.defects import DEFECTS
from spark_sandbox.services.postgres import Postgres

Db = psycopg.Connection[tuple[object, ...]]


def clock_skew(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        epoch_ms = client.get("/api/time").json()["epoch_ms"]
    assert epoch_ms - time.time() * 1000 > 1500


def half_up_rounding(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        order = place(client, ticket(account, "SASA", "5.00", 2)).json()
    assert order["commission"] == "0.01"  # 0.005 rounded half-up; half-even gives 0.00


def tick_misaligned_accepted(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        answer = place(client, ticket(account, "THYAO", "285.30", 1))  # grid is 0.25 here
    assert answer.status_code == 201


def band_rounded_outward(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        answer = place(client, ticket(account, "THYAO", "342.50", 1))  # inward limit: 342.25
        band = client.get("/api/market/THYAO").json()["band"]
    assert answer.status_code == 201
    assert band == {"lower": "228.20", "upper": "342.50"}


def no_coep(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        headers = client.get("/").headers
    assert "cross-origin-embedder-policy" not in headers
    assert headers["cross-origin-opener-policy"] == "same-origin"


def unsafe_inline_csp(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        policy = client.get("/").headers["content-security-policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert "'unsafe-inline'" in script_src


def unlisted_third_party(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        page = client.get("/")
    assert f'src="{UNLISTED_ORIGIN}/widget.js"' in page.text
    assert UNLISTED_ORIGIN in page.headers["content-security-policy"]


def csp_report_500(api: Api, db: Db, account: str) -> None:
    report = {"csp-report": {"document-uri": "http://127.0.0.1/", "effective-directive": "img-src"}}
    with api.client() as client:
        answer = client.post("/csp-report", content=json.dumps(report),
                             headers={"Content-Type": "application/csp-report"})  # fmt: skip
    assert answer.status_code == 500


def implicit_flag_default(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        flags = client.get("/api/flags").json()["flags"]
    assert [f["name"] for f in flags if "default" not in f] == [flags[0]["name"]]


def risky_flag_on(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        flags = client.get("/api/flags").json()["flags"]
    on = [f for f in flags if f["risky"] and f["default"] and f["rollout_percent"] == 100]
    assert len(on) == 1


def float_money(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        order = place(client, ticket(account)).json()
    assert isinstance(order["price"], float) and isinstance(order["commission"], float)


def reconciliation_drift(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        assert place(client, ticket(account, "AKBNK", "62.15", 10)).status_code == 201
        [position] = client.get("/api/positions", params={"account_id": account}).json()[
            "positions"
        ]
    filled = db.execute("SELECT sum(quantity) FROM fills WHERE account_id = %s", (account,))
    assert position["quantity"] == 11
    assert filled.fetchone() == (10,)


def replay_mismatch_200(api: Api, db: Db, account: str) -> None:
    key = new_key()
    with api.client() as client:
        first = place(client, ticket(account, quantity=10), key)
        other = place(client, ticket(account, quantity=11), key)
    assert other.status_code == 200
    assert other.content == first.content


def duplicate_order_under_concurrency(api: Api, db: Db, account: str) -> None:
    statuses = submit_concurrently(api, ticket(account), new_key(), 20)
    orders = db.execute("SELECT count(*) FROM orders WHERE account_id = %s", (account,))
    count = orders.fetchone()
    assert count is not None and count[0] > 1, statuses


def contract_field_renamed(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        order = place(client, ticket(account)).json()
        fetched = client.get(f"/api/orders/{order['id']}").json()
    for doc in (order, fetched):
        assert "price" not in doc and doc["px"] == "285.25"


def order_event_schema_changed(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        order = place(client, ticket(account)).json()
    payload = db.execute(
        "SELECT payload FROM outbox_events WHERE aggregate_id = %s", (order["id"],)
    ).fetchone()
    assert payload is not None and "account_id" not in payload[0]
    assert order["account_id"] == account  # the API response itself is unchanged


def ws_metric_renamed(api: Api, db: Db, account: str) -> None:
    with api.client() as client:
        exposition = client.get("/metrics").text
    assert "spark_ws_disconnections_total" in exposition
    assert "spark_ws_disconnects_total" not in exposition


BROKEN_PROPERTY: dict[str, Callable[[Api, Db, str], None]] = {
    "app_clock_skew": clock_skew,
    "half_up_rounding": half_up_rounding,
    "tick_misaligned_accepted": tick_misaligned_accepted,
    "band_rounded_outward": band_rounded_outward,
    "no_coep": no_coep,
    "unsafe_inline_csp": unsafe_inline_csp,
    "unlisted_third_party": unlisted_third_party,
    "csp_report_500": csp_report_500,
    "implicit_flag_default": implicit_flag_default,
    "risky_flag_on": risky_flag_on,
    "float_money": float_money,
    "reconciliation_drift": reconciliation_drift,
    "idempotency_replay_mismatch_200": replay_mismatch_200,
    "duplicate_order_under_concurrency": duplicate_order_under_concurrency,
    "contract_field_renamed": contract_field_renamed,
    "order_event_schema_changed": order_event_schema_changed,
    "ws_metric_renamed": ws_metric_renamed,
}


def test_every_app_layer_defect_has_a_check_here() -> None:
    app_defects = {name for name, d in DEFECTS.items() if d.layer == "app"}
    assert app_defects == set(BROKEN_PROPERTY)


# Defects whose properties do not overlap share one API process, which keeps this module fast
# on two cores; no check here can be satisfied or spoiled by another defect of its group.
GROUPS: tuple[tuple[str, ...], ...] = (
    ("app_clock_skew", "no_coep", "unsafe_inline_csp", "unlisted_third_party", "csp_report_500",
     "implicit_flag_default", "risky_flag_on", "contract_field_renamed", "ws_metric_renamed"),
    ("half_up_rounding", "reconciliation_drift", "order_event_schema_changed",
     "tick_misaligned_accepted", "band_rounded_outward"),
    ("float_money", "idempotency_replay_mismatch_200", "duplicate_order_under_concurrency"),
)  # fmt: skip


def test_every_app_layer_defect_is_in_exactly_one_group() -> None:
    grouped = [name for group in GROUPS for name in group]
    assert sorted(grouped) == sorted(BROKEN_PROPERTY)


@pytest.fixture(scope="module")
def defect_apis(
    database: Postgres, feed: FakeFeed, log_dir: Path
) -> Iterator[dict[tuple[str, ...], Api]]:
    started: dict[tuple[str, ...], Api] = {}
    try:
        yield started
    finally:
        for server in started.values():
            server.process.stop()


@pytest.mark.parametrize("defect", sorted(BROKEN_PROPERTY))
def test_defect_breaks_its_property(
    defect_apis: dict[tuple[str, ...], Api],
    database: Postgres,
    feed: FakeFeed,
    log_dir: Path,
    db: Db,
    account: str,
    defect: str,
) -> None:
    group = next(g for g in GROUPS if defect in g)
    if group not in defect_apis:
        defect_apis[group] = start_api(
            database.app_dsn(), log_dir, feed_addr=feed.addr, defects=group
        )
    BROKEN_PROPERTY[defect](defect_apis[group], db, account)
