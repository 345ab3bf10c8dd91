"""G09 Outbox: a probe order's event is applied exactly once end to end within 10 s; over the
window no event is stuck, lost or applied twice, and the p99 publish lag stays under 10 s.

The outbox is at-least-once by design (a publisher retries until the consumer answers 2xx, the
consumer dedupes by event id), so the gate looks where each half could break it: an event the
consumer keeps refusing sits pending (stuck), an event marked published without a 2xx never
reaches the consumer (missing), a dedupe that fails applies an order twice. Everything is read
where it lands (``postgres_dsn``: ``outbox_events``, ``consumed_events``, ``order_ledger``),
and the lag also from the publisher's histogram in Prometheus (``prometheus_url``): both must
be under the limit. Thresholds: ``ops/go_nogo.toml`` [G09].
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import outbox
from pytest_spark.probes.outbox import EventDelivery
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.spark_api import SparkApi, Ticket, new_account, new_key
from pytest_spark.probes.stage_metrics import value_at
from pytest_spark.probes.waiting import Deadline, wait_until
from suites.limits import G09Limits, Limits

pytestmark = pytest.mark.go_nogo("G09")

POLL_S = 0.2


def _place(spark_api: SparkApi, ticket: Ticket) -> int:
    reply = spark_api.submit(ticket, new_key())
    body = reply.expect(201, what=f"the probe order {ticket.describe()}")
    return int(body["id"])


def _db(dsn: str, limits: Limits) -> Postgres:
    return Postgres(dsn, limits.market.db_connect_timeout_s)


def test_probe_event_is_applied_exactly_once(
    reach: Reach,
    spark_api: SparkApi,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    g09 = limits.g09
    ticket = Ticket(new_account("g09-probe"), tradable[0], "buy", 1, tradable[1])
    with reach("api_url", "postgres_dsn") as [_, dsn], _db(dsn, limits) as db:
        placed = time.monotonic()
        order_id = _place(spark_api, ticket)
        waited = wait_until(
            Deadline.after(g09.probe_delivery_s),
            f"the consumer applying order {order_id}'s event",
            lambda _: db.outbox_delivery(order_id),
            lambda seen: seen is not None and seen.applied >= 1,
            pause_s=POLL_S,
        )
        seconds = time.monotonic() - placed
    seen: EventDelivery | None = waited.value
    if seen is None:
        spark_evidence.inconclusive(
            f"order {order_id} was accepted but has no order.accepted event in outbox_events: "
            "nothing to follow end to end (is the outbox written in the order's transaction?)"
        )
    spark_evidence.note(f"probe {ticket.describe()}: {seen.describe()}; {waited.describe()}")
    spark_evidence.measure("probe_event_applied_s", round(seconds, 3) if waited.done else None,
                           unit="s")  # fmt: skip
    spark_evidence.check(
        "probe_event_deliveries",
        seen.applied,
        limit=g09.probe_event_deliveries,
        at_least=g09.probe_event_deliveries_at_least,
        unit="applications",
        why=f"{seen.describe()} within {g09.probe_delivery_s:g} s of the order: an event must "
        "reach the consumer's effect exactly once (never: look for it as published but not in "
        "consumed_events; twice: the consumer's dedupe by event_id failed)",
    )


def _settled(ours: list[EventDelivery | None], limits: G09Limits) -> bool:
    """Every order the check placed is published, or pending after enough refusals to be
    stuck: nothing more will change by waiting."""
    return all(
        d is not None and (d.published or d.attempts >= limits.stuck_after_attempts) for d in ours
    )


def test_outbox_window_is_delivered_once_and_in_time(
    reach: Reach,
    spark_api: SparkApi,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    g09 = limits.g09
    account = new_account("g09-window")
    sides = ("buy", "sell")
    tickets = [
        Ticket(account, tradable[0], sides[n % 2], 1, tradable[1]) for n in range(g09.window_orders)
    ]
    with (
        reach("api_url", "postgres_dsn", "prometheus_url") as [_, dsn, prometheus_url],
        _db(dsn, limits) as db,
    ):
        # The histogram's increase counts only what was published after its first scrape, so
        # the orders go in once the publisher's series is in Prometheus.
        baseline = wait_until(
            Deadline.after(g09.settle_s),
            "the publisher's histogram scraped once before this check's orders",
            lambda _: value_at(prometheus_url, outbox.published_count_query(), time.time()),
            lambda count: count is not None,
            pause_s=POLL_S,
        )
        scraped_before = baseline.value or 0
        order_ids = [_place(spark_api, t) for t in tickets]
        settled = wait_until(
            Deadline.after(g09.settle_s),
            f"the {len(order_ids)} orders of this check published (or refused into stuck)",
            lambda _: [db.outbox_delivery(o) for o in order_ids],
            lambda ours: _settled(ours, g09),
            pause_s=POLL_S,
        )
        published_here = sum(1 for d in settled.value if d is not None and d.published)
        # The histogram's p99 needs this check's events scraped, and two samples in the
        # window at least (a series scraped once has no increase yet).
        scraped = wait_until(
            Deadline.after(g09.settle_s),
            f"Prometheus scraping the publisher's histogram past {published_here} new event(s)",
            lambda _: (
                value_at(prometheus_url, outbox.published_count_query(), time.time()),
                value_at(prometheus_url, outbox.lag_p99_query(g09.window_s), time.time()),
            ),
            lambda seen: (seen[0] or 0) >= scraped_before + published_here and seen[1] is not None,
            pause_s=POLL_S,
        )
        histogram_p99 = scraped.value[1]
        window = db.outbox_window(g09.window_s, g09.stuck_after_s, g09.stuck_after_attempts)
    spark_evidence.note(f"{baseline.describe()}; {settled.describe()}; {scraped.describe()}")
    spark_evidence.note(f"window: {window.describe()}")
    spark_evidence.measure("window_events", window.events, unit="events")
    spark_evidence.check(
        "stuck_events",
        len(window.stuck),
        limit=g09.stuck_events,
        unit="events",
        why=f"pending longer than {g09.stuck_after_s:g} s or refused "
        f"{g09.stuck_after_attempts}+ times: "
        f"{outbox.sample([s.describe() for s in window.stuck])}. The publisher retries them "
        "forever; look at the consumer's answer to them (a 4xx means it cannot take the event)",
    )
    spark_evidence.check(
        "events_missing",
        len(window.missing),
        limit=g09.events_missing,
        unit="events",
        why=f"marked published but never consumed: {outbox.sample(list(window.missing))}. "
        "The publisher must set published_at only after the consumer's 2xx",
    )
    spark_evidence.check(
        "events_applied_twice",
        len(window.applied_twice),
        limit=g09.events_applied_twice,
        unit="orders",
        why="orders applied more than once (order id, times): "
        f"{outbox.sample([f'{o} {n}×' for o, n in window.applied_twice])}. The consumer must "
        "dedupe by event_id in the same transaction as the effect",
    )
    if window.events < g09.window_events_at_least:
        spark_evidence.inconclusive(
            f"only {window.events} outbox event(s) in the last {g09.window_s:g} s (at least "
            f"{g09.window_events_at_least:g} needed): a p99 lag over so few means nothing"
        )
    spark_evidence.check(
        "outbox_lag_p99_s",
        window.lag_p99_s,
        limit=g09.outbox_lag_p99_s,
        unit="s",
        why=f"from the database: p99 of published_at - created_at over the "
        f"{window.published} event(s) published in the window; a slow or backing-off "
        "publisher shows here first",
    )
    spark_evidence.check(
        "outbox_lag_p99_s",
        histogram_p99,
        limit=g09.outbox_lag_p99_s,
        unit="s",
        why=f"from the publisher's histogram: {outbox.lag_p99_query(g09.window_s)}",
    )
