"""Every ``spark_*`` series the API exports; docs/metrics-contract.md lists them for the rules.

Series that describe database state (outbox backlog, live idempotency keys) are gauges set
right before each scrape, see ``scrape.py``. The default registry also carries
prometheus_client's process collector (process_resident_memory_bytes, process_cpu_seconds_total).
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram, Info

from spark_sandbox.app.settings import installed_version

REQUEST_DURATION = Histogram(
    "spark_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status code.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)
REQUESTS = Counter(
    "spark_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
# Unlabelled so the series exists at 0 from the start; the histogram has the per-route split.
SERVER_ERRORS = Counter("spark_http_server_errors_total", "HTTP answers with a 5xx status.")
ORDERS_ACCEPTED = Counter(
    "spark_orders_accepted_total", "Orders accepted and filled.", ["symbol", "side"]
)
RISK_BLOCKS = Counter(
    "spark_risk_blocks_total", "Orders refused by the pre-trade risk checks.", ["reason"]
)
IDEMPOTENCY_REQUESTS = Counter(
    "spark_idempotency_requests_total",
    "Order submissions by what their Idempotency-Key led to.",
    ["outcome"],
)
IDEMPOTENCY_CONFLICTS = Counter(
    "spark_idempotency_conflicts_total",
    "Idempotency-Key conflicts: 409 key in flight, 422 key reused with another payload.",
    ["status"],
)
IDEMPOTENCY_KEYS_LIVE = Gauge(
    "spark_idempotency_keys_live", "Idempotency keys stored and not yet expired."
)
IDEMPOTENCY_KEYS_EXPIRED = Gauge(
    "spark_idempotency_keys_expired", "Expired idempotency keys the GC has not deleted yet."
)
IDEMPOTENCY_GC_DELETED = Counter(
    "spark_idempotency_gc_deleted_total", "Expired idempotency keys deleted by the GC."
)
OUTBOX_PENDING = Gauge("spark_outbox_pending_events", "Outbox events not yet published.")
OUTBOX_OLDEST_AGE = Gauge(
    "spark_outbox_oldest_pending_age_seconds",
    "Age of the oldest unpublished outbox event; 0 when none is pending.",
)
DB_POOL_IN_USE = Gauge("spark_db_pool_connections_in_use", "Database connections checked out.")
DB_POOL_SIZE = Gauge("spark_db_pool_size", "Maximum database connections of the API's pool.")
DB_POOL_TIMEOUTS = Counter(
    "spark_db_pool_timeouts_total", "Requests refused because no connection freed up in time."
)
DB_ERRORS = Counter(
    "spark_db_errors_total", "Database errors and timeouts answered with 503.", ["kind"]
)
FEED_CONNECTED = Gauge("spark_feed_connected", "1 while the market-data feed link is up.")
FEED_RECONNECTS = Counter("spark_feed_reconnects_total", "Market-data feed connection attempts.")
FEED_STALENESS = Gauge(
    "spark_feed_staleness_seconds",
    "Seconds since the last feed tick per symbol (since start-up when none arrived).",
    ["symbol"],
)
WS_CONNECTS = Counter("spark_ws_connects_total", "WebSocket price-stream connections accepted.")
# The seeded defect `ws_metric_renamed` ships this counter under another name while the
# release's T13 rule still reads the old one: the rollback gate's series check must see it.
# Read from the environment here, not from Settings, because the series is registered at import.
_RENAMED = "ws_metric_renamed" in os.environ.get("SPARK_DEFECTS", "").split(",")
WS_DISCONNECTS = Counter(
    "spark_ws_disconnections_total" if _RENAMED else "spark_ws_disconnects_total",
    "WebSocket price-stream disconnections.",
)
WS_CLIENTS = Gauge("spark_ws_clients", "WebSocket price-stream clients connected now.")
DECIMAL_PRECISION_ERRORS = Counter(
    "spark_decimal_precision_errors_total",
    "Amounts that needed rounding beyond their scale unexpectedly, or floats in money code.",
    ["site"],
)
CSP_VIOLATIONS = Counter(
    "spark_csp_violations_total",
    "CSP violation reports received, by effective directive.",
    ["directive"],
)
# T03 counts feed staleness only during the trading session. The sandbox's market never
# closes (it serves a continuous session around the clock), so the gauge is 1 from start-up.
MARKET_OPEN = Gauge("spark_market_open", "1 while the BIST continuous trading session is open.")
MARKET_OPEN.set(1)
BUILD_INFO = Info("spark_build", "The build serving: its version.")
BUILD_INFO.info({"version": installed_version()})


def announce_build(version: str) -> None:
    """Serve ``version`` in spark_build_info (``SPARK_BUILD_VERSION``: the sandbox's stable
    track runs this code as the previous release)."""
    BUILD_INFO.info({"version": version})


# Labelled series exist from the first scrape at 0, so rules see "no increase" rather than
# "no data" (which the canary treats as inconclusive).
for _reason in ("stale_market_data", "notional_limit", "position_limit"):
    RISK_BLOCKS.labels(reason=_reason)
for _status in ("409", "422"):
    IDEMPOTENCY_CONFLICTS.labels(status=_status)
for _outcome in ("created", "replayed", "in_use", "reused", "missing"):
    IDEMPOTENCY_REQUESTS.labels(outcome=_outcome)
for _site in ("commission", "average_price", "notional", "realised_pnl"):
    DECIMAL_PRECISION_ERRORS.labels(site=_site)
# The order route's request series too: T01, T02, T07 and T08 read them, and a rule over a
# series that appears only with the first order can be neither checked nor fired before it.
REQUEST_DURATION.labels(route="/api/orders", method="POST", status="201")
REQUESTS.labels(route="/api/orders", method="POST", status="201")
# And its 5xx answers (500 unexpected, 503 database): S2's numerator selects status=~"5..",
# which without them is "no data" (INCONCLUSIVE) on a track that answered no 5xx, not 0.
for _status in ("500", "503"):
    REQUESTS.labels(route="/api/orders", method="POST", status=_status)
