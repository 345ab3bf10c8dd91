"""B6 Prometheus / Grafana: dashboard defaults, panels with data, scrape targets as expected."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from pytest_spark.config import Target
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import grafana, prometheus

Limits = dict[str, dict[str, float]]
Reach = Callable[..., AbstractContextManager[list[str]]]

pytestmark = pytest.mark.blind_spot("B6")


def _dashboards(spark_target: Target) -> list[Path]:
    folder = Path(spark_target.require("ops_dir")) / "grafana"
    found = sorted(folder.glob("*.json"))
    assert found, f"no Grafana dashboard (*.json) in {folder}: the release dashboard is missing"
    return found


Targets = list[prometheus.ScrapeTarget]


def _targets(
    reach: Reach,
    limits: Limits,
    spark_evidence: CheckEvidence,
    until: Callable[[Targets], bool] = prometheus.all_scraped,
) -> Targets:
    """Active targets once ``until`` holds or the wait runs out: Prometheus applies discovered
    targets a few seconds after it starts, and a target never scraped is neither up nor down."""
    with reach("prometheus_url") as [url]:
        targets = prometheus.poll(
            lambda: prometheus.fetch_targets(url), until, limits["B6"]["targets_wait_s"]
        )
    spark_evidence.note(
        f"{len(targets)} active targets at {url}/api/v1/targets: "
        + "; ".join(prometheus.describe_target(t) for t in targets)
    )
    return targets


def test_every_dashboard_variable_has_a_default(
    spark_target: Target, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    missing: list[str] = []
    for path in _dashboards(spark_target):
        found = grafana.variables(grafana.load_dashboard(path))
        spark_evidence.note(
            f"{path.name}: variables "
            + (", ".join(f"{v.name}={v.default}" for v in found) or "none")
        )
        missing += [f"{path.name}: ${v.name} ({v.kind})" for v in grafana.without_default(found)]
    limit = blind_spot_limits["B6"]["variables_without_default"]
    spark_evidence.measure("variables_without_default", len(missing), limit=limit)
    assert len(missing) < limit, (
        f"{len(missing)} dashboard variables have no default (current value): "
        + "; ".join(missing)
        + " — the dashboard opens with nothing to query; save each variable with a value"
    )


def _run_panel_queries(
    url: str, queries: list[grafana.PanelQuery]
) -> dict[str, prometheus.QueryResult | str]:
    """Each query's result, or the error Prometheus rejected it with."""
    results: dict[str, prometheus.QueryResult | str] = {}
    for query in queries:
        try:
            results[query.where] = prometheus.instant_query(url, query.expr)
        except prometheus.PrometheusAPIError as exc:
            results[query.where] = f"query rejected: {exc}"
    return results


def _settled(results: dict[str, prometheus.QueryResult | str]) -> bool:
    """Nothing left that more scrapes could fill (a rejected query stays rejected)."""
    return all(isinstance(r, str) or not r.empty for r in results.values())


def test_every_panel_returns_data(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    limits = blind_spot_limits["B6"]
    queries: list[grafana.PanelQuery] = []
    for path in _dashboards(spark_target):
        queries += grafana.panel_queries(grafana.load_dashboard(path), path.name)
    assert queries, "the dashboards have no panel with a PromQL target"
    empty = [
        f"{q.where}: {', '.join('$' + n for n in q.unresolved)} has no default value to query with"
        for q in queries
        if q.unresolved
    ]
    runnable = [q for q in queries if not q.unresolved]
    # Judged once the targets have been scraped, and a rate() needs two scrapes in its window:
    # a panel still empty after the wait has a query that finds nothing.
    _targets(reach, blind_spot_limits, spark_evidence)
    with reach("prometheus_url") as [url]:
        results = prometheus.poll(
            lambda: _run_panel_queries(url, runnable), _settled, limits["panel_data_wait_s"]
        )
    for query in runnable:
        result = results[query.where]
        expr = " ".join(query.expr.split())
        if isinstance(result, str):
            empty.append(f"{query.where}: {result}")
            continue
        spark_evidence.note(f"{query.where}: {result.series} series for {expr}")
        if result.empty:
            empty.append(f"{query.where}: no data for {expr}")
    limit = limits["empty_panel_queries"]
    spark_evidence.measure("panel_queries", len(queries))
    spark_evidence.measure("empty_panel_queries", len(empty), limit=limit)
    assert len(empty) < limit, (
        f"{len(empty)} of {len(queries)} panel queries return no data with the dashboard's "
        f"defaults (instant query at {url}): " + "; ".join(empty)
    )


def test_scrape_target_count_per_job(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    expected_file = Path(spark_target.require("ops_dir")) / "prometheus" / "targets.toml"
    expected = prometheus.load_expected_targets(expected_file)
    targets = _targets(reach, blind_spot_limits, spark_evidence)
    actual = prometheus.count_by_job(targets)
    mismatches = prometheus.count_mismatches(expected, targets)
    spark_evidence.note(f"expected per job ({expected_file.name}) {expected}; scraped {actual}")
    unexpected = sorted(set(actual) - set(expected))
    if unexpected:
        spark_evidence.note(f"jobs not in {expected_file.name} (not judged): {unexpected}")
    limit = blind_spot_limits["B6"]["target_count_mismatches"]
    spark_evidence.measure("target_count_mismatches", len(mismatches), limit=limit)
    assert len(mismatches) < limit, (
        "scrape target count differs from "
        f"{expected_file}: "
        + "; ".join(
            f"job {j!r} expected {want}, Prometheus has {got}"
            for j, (want, got) in sorted(mismatches.items())
        )
        + " — check the scrape config / service discovery of those jobs"
    )


def test_all_scrape_targets_up(
    reach: Reach, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    limits = blind_spot_limits["B6"]
    targets = _targets(reach, blind_spot_limits, spark_evidence, until=prometheus.all_up)
    assert targets, "Prometheus has no active scrape target at all"
    down = [t for t in targets if t.health != "up"]
    spark_evidence.measure("targets_down", len(down), limit=limits["targets_down"])
    assert len(down) < limits["targets_down"], (
        f"{len(down)} of {len(targets)} scrape targets are not up after waiting "
        f"{limits['targets_wait_s']:g} s: "
        + "; ".join(prometheus.describe_target(t) for t in down)
        + " — see Prometheus' Status > Targets page for the scrape error"
    )
