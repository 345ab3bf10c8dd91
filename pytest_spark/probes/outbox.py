"""What G09 reads of the transactional outbox: one order's event end to end, and a window of
events judged for lag, stuck, lost and doubly applied events.

The tables are the platform's (``outbox_events`` written with the order, ``consumed_events``
and ``order_ledger`` written by the consumer in one transaction per event), read through
:class:`pytest_spark.probes.postgres.Postgres`; the publisher's own view is its lag histogram
``spark_outbox_publish_lag_seconds`` in Prometheus. Both clocks of a lag (created_at,
published_at) are the database's, so host clock skew cannot bend it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LAG_HISTOGRAM = "spark_outbox_publish_lag_seconds"


@dataclass(frozen=True)
class EventDelivery:
    """One order's ``order.accepted`` event as the outbox and the consumer saw it."""

    order_id: int
    event_id: str
    published: bool
    attempts: int  # deliveries the publisher saw fail
    deliveries: int  # deliveries the consumer received (0: never consumed)
    applied: int  # times the consumer applied the order (order_ledger.applied_count)

    def describe(self) -> str:
        state = "published" if self.published else "pending"
        return (
            f"order {self.order_id} event {self.event_id}: {state}, {self.attempts} failed "
            f"attempt(s), {self.deliveries} delivery(ies) received, applied {self.applied}×"
        )


@dataclass(frozen=True)
class StuckEvent:
    event_id: str
    aggregate_id: int
    event_type: str
    attempts: int
    age_s: float

    def describe(self) -> str:
        return (
            f"{self.event_type} {self.event_id} (aggregate {self.aggregate_id}) pending for "
            f"{self.age_s:.1f} s after {self.attempts} failed attempt(s)"
        )


@dataclass(frozen=True)
class OutboxWindow:
    """The events created in the last ``window_s`` seconds, and every stuck event."""

    window_s: float
    events: int
    published: int
    lag_p99_s: float | None  # over the published events; None when none was published
    stuck: tuple[StuckEvent, ...]
    # Published (the consumer answered 2xx, or so the publisher believed) but never consumed.
    missing: tuple[str, ...]
    # (order id, times applied) for orders the consumer applied more than once.
    applied_twice: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        lag = "no published event" if self.lag_p99_s is None else f"p99 {self.lag_p99_s:.3f} s"
        return (
            f"last {self.window_s:g} s: {self.events} event(s), {self.published} published "
            f"({lag}); {len(self.stuck)} stuck, {len(self.missing)} missing, "
            f"{len(self.applied_twice)} applied twice"
        )


# --- the reads, made by :meth:`pytest_spark.probes.postgres.Postgres.outbox_window` -------------

DELIVERY_SQL = """
SELECT o.event_id::text, o.published_at IS NOT NULL, o.attempts,
       coalesce(c.deliveries, 0), coalesce(l.applied_count, 0)
  FROM outbox_events o
  LEFT JOIN consumed_events c ON c.event_id = o.event_id
  LEFT JOIN order_ledger l ON l.order_id = o.aggregate_id
 WHERE o.aggregate_id = %s AND o.event_type = 'order.accepted'
 ORDER BY o.id DESC LIMIT 1
"""

_IN_WINDOW = "o.created_at > clock_timestamp() - make_interval(secs => %(window)s)"

WINDOW_SQL = f"""
SELECT count(*), count(o.published_at),
       percentile_cont(0.99) WITHIN GROUP (
           ORDER BY extract(epoch FROM o.published_at - o.created_at)::float8
       ) FILTER (WHERE o.published_at IS NOT NULL)
  FROM outbox_events o
 WHERE {_IN_WINDOW}
"""

STUCK_SQL = """
SELECT o.event_id::text, o.aggregate_id, o.event_type, o.attempts,
       extract(epoch FROM clock_timestamp() - o.created_at)::float8
  FROM outbox_events o
 WHERE o.published_at IS NULL
   AND (o.created_at < clock_timestamp() - make_interval(secs => %(after)s)
        OR o.attempts >= %(attempts)s)
 ORDER BY o.id
"""

MISSING_SQL = f"""
SELECT o.event_id::text
  FROM outbox_events o LEFT JOIN consumed_events c ON c.event_id = o.event_id
 WHERE o.published_at IS NOT NULL AND c.event_id IS NULL AND {_IN_WINDOW}
 ORDER BY o.id
"""

APPLIED_TWICE_SQL = f"""
SELECT l.order_id, l.applied_count
  FROM order_ledger l JOIN outbox_events o ON o.event_id = l.event_id
 WHERE l.applied_count > 1 AND {_IN_WINDOW}
 ORDER BY l.order_id
"""


def lag_p99_query(window_s: float) -> str:
    """The publisher's p99 publish lag over the window, from its histogram's buckets."""
    window = f"{math.ceil(window_s)}s"
    return f"histogram_quantile(0.99, sum by (le) (increase({LAG_HISTOGRAM}_bucket[{window}])))"


def published_count_query() -> str:
    """Events the publisher has counted into its histogram so far, as last scraped."""
    return f"sum({LAG_HISTOGRAM}_count)"


def sample(texts: Sequence[str], shown: int = 5) -> str:
    """The first few of ``texts`` for a note, and how many more there are."""
    more = len(texts) - shown
    return "; ".join(texts[:shown]) + (f" and {more} more" if more > 0 else "")
