"""B6 / B8 probe logic: targets per job, query results, rule parsing, burn-rate windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_spark.probes import prometheus

REPO = Path(__file__).resolve().parents[2]


def target(job: str, health: str = "up", instance: str = "127.0.0.1:1") -> dict[str, Any]:
    return {
        "labels": {"job": job, "instance": instance},
        "scrapePool": job,
        "health": health,
        "lastError": "" if health == "up" else "connection refused",
        "scrapeUrl": f"http://{instance}/metrics",
    }


def rule(name: str, query: str, kind: str = "alerting", **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "query": query,
        "type": kind,
        "health": "ok",
        "lastError": "",
        "lastEvaluation": "2026-11-26T11:00:00Z",
    }
    return {**body, **extra}


def loaded(*rules: dict[str, Any]) -> list[prometheus.LoadedRule]:
    return prometheus.parse_rules({"groups": [{"name": "g", "file": "/r.yml", "rules": rules}]})


def test_target_counts_and_mismatches_per_job() -> None:
    targets = prometheus.parse_targets(
        {"activeTargets": [target("api"), target("api", instance="b:1"), target("pgb", "down")]}
    )
    assert prometheus.count_by_job(targets) == {"api": 2, "pgb": 1}
    assert prometheus.count_mismatches({"api": 1, "pgb": 1, "outbox": 1}, targets) == {
        "api": (1, 2),
        "outbox": (1, 0),
    }
    assert not prometheus.all_up(targets)
    assert prometheus.all_scraped(targets)
    assert prometheus.describe_target(targets[2]) == (
        "pgb http://127.0.0.1:1/metrics is down: connection refused"
    )


def test_unscraped_targets_and_no_targets_are_not_judged_up() -> None:
    unknown = prometheus.parse_targets({"activeTargets": [target("api", "unknown")]})
    assert not prometheus.all_scraped(unknown)
    assert not prometheus.all_up([])
    assert not prometheus.all_scraped([])


def test_expected_targets_file(tmp_path: Path) -> None:
    assert (
        prometheus.load_expected_targets(REPO / "ops" / "prometheus" / "targets.toml")["spark-api"]
        == 2
    )
    bad = tmp_path / "targets.toml"
    bad.write_text("[jobs]\napi = 0\n")
    with pytest.raises(ValueError, match="api = 0 must be a whole number"):
        prometheus.load_expected_targets(bad)
    bad.write_text("[jobs]\n")
    with pytest.raises(ValueError, match="non-empty \\[jobs\\]"):
        prometheus.load_expected_targets(bad)
    bad.write_text("[jobs]\napi = 1\n[job]\nx = 1\n")
    with pytest.raises(ValueError, match=r"unknown key.*job;"):
        prometheus.load_expected_targets(bad)


@pytest.mark.parametrize(
    ("data", "series"),
    [
        ({"resultType": "vector", "result": []}, 0),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}] * 3}, 3),
        ({"resultType": "scalar", "result": [0, "1"]}, 1),
        ({"resultType": "matrix", "result": []}, 0),
    ],
)
def test_query_result_size(data: dict[str, Any], series: int) -> None:
    result = prometheus.parse_query(data)
    assert result.series == series
    assert result.empty is (series == 0)


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("6h", 21600)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert prometheus.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1h 5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        prometheus.parse_duration(text)


def test_range_windows_ignore_brackets_inside_label_matchers() -> None:
    expr = 'sum(rate(x{route=~"[0-9]m"}[5m])) / sum(rate(x[1h:1m])) + max_over_time(y[60m])'
    assert prometheus.range_windows(expr) == {300, 3600}


def test_windows_are_followed_through_recording_rules() -> None:
    recordings = {
        "slo:ratio_rate1h": "sum(rate(err[1h])) / sum(rate(req[1h]))",
        "slo:ratio_rate5m": "sum(rate(err[5m])) / sum(rate(req[5m]))",
        "slo:loop": "slo:loop + 1",
    }
    expr = "slo:ratio_rate1h > 14.4 * 0.001 and slo:ratio_rate5m > 14.4 * 0.001 or slo:loop"
    assert prometheus.expanded_windows(expr, recordings) == {300, 3600}


def test_numbers_are_literals_outside_names_strings_and_ranges() -> None:
    expr = 'ratio_rate5m{slo="99.9"} > (14.4 * 0.001) and other[30m] > 6'
    assert prometheus.numbers(expr) == {14.4, 0.001, 6}


def test_burn_rate_alerts_are_found_by_windows_not_by_name() -> None:
    rules = loaded(
        rule("r:rate6h", "sum(rate(e[6h])) / sum(rate(r[6h]))", kind="recording"),
        rule("r:rate30m", "sum(rate(e[30m])) / sum(rate(r[30m]))", kind="recording"),
        rule("PageSlow", "r:rate6h > (6 * 0.001) and r:rate30m > (6 * 0.001)"),
        rule("BurnRateSlow", "r:rate6h > (6 * 0.001)"),  # long window only
        rule("WrongFactor", "r:rate6h > 0.5 and r:rate30m > 0.5"),
    )
    found = prometheus.burn_rate_alerts(rules, 21600, 1800, 6)
    assert [(a.rule.name, a.has_factor) for a in found] == [
        ("PageSlow", True),
        ("WrongFactor", False),
    ]
    assert prometheus.describe_windows(found[0].windows) == "30m, 6h"


def test_rule_health_needs_an_evaluation_and_no_error() -> None:
    ok, unknown, failing = loaded(
        rule("a", "up"),
        rule("b", "up", health="unknown", lastEvaluation=prometheus.NEVER_EVALUATED),
        rule("c", "up", health="err", lastError="many-to-many matching not allowed"),
    )
    assert (ok.healthy, unknown.healthy, failing.healthy) == (True, False, False)
    assert ok.file == "/r.yml"


EXPOSITION = """\
# HELP spark_decimal_precision_errors_total Amounts that needed rounding.
# TYPE spark_decimal_precision_errors_total counter
spark_decimal_precision_errors_total{site="commission"} 0.0
spark_decimal_precision_errors_total{site="average_price"} 2.0
spark_decimal_precision_errors_created{site="commission"} 1.79e+09
# HELP spark_csp_violations_total Reports received.
# TYPE spark_csp_violations_total counter
"""


def test_exposition_total_sums_every_label_set() -> None:
    metric = "spark_decimal_precision_errors_total"
    assert prometheus.exposition_total(EXPOSITION, metric) == 2.0
    # Declared with no child yet: nothing has been counted, which is a measurement of 0.
    assert prometheus.exposition_total(EXPOSITION, "spark_csp_violations_total") == 0.0
    assert prometheus.exposition_total("# nothing here\n", metric) is None
    assert prometheus.exposition_total("x_total 3\n", "x_total") == 3.0  # untyped
