"""The pure parts of G09's outbox reads: the histogram's PromQL and what the evidence says."""

from __future__ import annotations

import pytest

from pytest_spark.probes import outbox
from spark_sandbox.defects import switches


def test_lag_query_reads_the_publishers_histogram_over_the_whole_window() -> None:
    assert outbox.lag_p99_query(900.0) == (
        "histogram_quantile(0.99, sum by (le) "
        "(increase(spark_outbox_publish_lag_seconds_bucket[900s])))"
    )
    # A fractional window is rounded up, never shortened.
    assert "[901s]" in outbox.lag_p99_query(900.2)


def test_window_description_names_every_kind_of_finding() -> None:
    window = outbox.OutboxWindow(
        window_s=900,
        events=21,
        published=20,
        lag_p99_s=0.25,
        stuck=(outbox.StuckEvent("e1", 7, "order.accepted", 4, 12.5),),
        missing=("e2", "e3"),
        applied_twice=((9, 2),),
    )
    assert window.describe() == (
        "last 900 s: 21 event(s), 20 published (p99 0.250 s); 1 stuck, 2 missing, 1 applied twice"
    )
    assert "pending for 12.5 s after 4 failed attempt(s)" in window.stuck[0].describe()
    empty = outbox.OutboxWindow(900, 0, 0, None, (), (), ())
    assert "no published event" in empty.describe()


def test_sample_shows_a_few_and_counts_the_rest() -> None:
    assert outbox.sample([]) == ""
    assert outbox.sample(["a", "b"]) == "a; b"
    assert outbox.sample([str(n) for n in range(8)], shown=3) == "0; 1; 2 and 5 more"


def test_outbox_switches_are_read_by_layer_and_typos_fail() -> None:
    names = "consumer_rejects_sells, half_up_rounding"
    assert switches(names, "outbox") == {"consumer_rejects_sells"}
    assert switches(names, "app") == {"half_up_rounding"}
    assert switches("", "outbox") == frozenset()
    with pytest.raises(ValueError, match="unknown sandbox defect 'consumer_rejects_sell'"):
        switches("consumer_rejects_sell", "outbox")
