"""B6 Prometheus / Grafana: dashboard defaults, panels with data, scrape targets as expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_spark import CheckEvidence, Reach, Target
from pytest_spark.probes import grafana, prometheus
from pytest_spark.probes.waiting import wait_until
from suites.limits import Limits

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
    awaited: str = "every scrape target scraped once",
) -> Targets:
    """Active targets once ``until`` holds or the wait runs out: Prometheus applies discovered
    targets a few seconds after it starts, and a target never scraped is neither up nor down."""
    with reach("prometheus_url") as [url]:
        waited = wait_until(
            limits.b6.targets_wait_s,
            f"{awaited} at {url}",
            lambda _: prometheus.fetch_targets(url),
            until,
        )
    spark_evidence.note(
        f"{waited.describe()}; {len(waited.value)} active targets at {url}/api/v1/targets: "
        + "; ".join(prometheus.describe_target(t) for t in waited.value)
    )
    return waited.value


def test_every_dashboard_variable_has_a_default(
    spark_target: Target, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    missing: list[str] = []
    for path in _dashboards(spark_target):
        found = grafana.variables(grafana.load_dashboard(path))
        spark_evidence.note(
            f"{path.name}: variables "
            + (", ".join(f"{v.name}={v.default}" for v in found) or "none")
        )
        missing += [f"{path.name}: ${v.name} ({v.kind})" for v in grafana.without_default(found)]
    spark_evidence.check(
        "variables_without_default",
        len(missing),
        limit=limits.b6.variables_without_default,
        why=f"{len(missing)} dashboard variables have no default (current value): "
        + "; ".join(missing)
        + " — the dashboard opens with nothing to query; save each variable with a value",
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
    limits: Limits,
) -> None:
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
    _targets(reach, limits, spark_evidence)
    with reach("prometheus_url") as [url]:
        waited = wait_until(
            limits.b6.panel_data_wait_s,
            "every panel query with data",
            lambda _: _run_panel_queries(url, runnable),
            _settled,
        )
    spark_evidence.note(waited.describe())
    results = waited.value
    for query in runnable:
        result = results[query.where]
        expr = " ".join(query.expr.split())
        if isinstance(result, str):
            empty.append(f"{query.where}: {result}")
            continue
        spark_evidence.note(f"{query.where}: {result.series} series for {expr}")
        if result.empty:
            empty.append(f"{query.where}: no data for {expr}")
    spark_evidence.measure("panel_queries", len(queries))
    spark_evidence.check(
        "empty_panel_queries",
        len(empty),
        limit=limits.b6.empty_panel_queries,
        why=f"{len(empty)} of {len(queries)} panel queries return no data with the dashboard's "
        f"defaults (instant query at {url}), so the release dashboard shows 'No data': "
        + "; ".join(empty),
    )


def test_scrape_target_count_per_job(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    expected_file = Path(spark_target.require("ops_dir")) / "prometheus" / "targets.toml"
    expected = prometheus.load_expected_targets(expected_file)
    targets = _targets(reach, limits, spark_evidence)
    actual = prometheus.count_by_job(targets)
    mismatches = prometheus.count_mismatches(expected, targets)
    spark_evidence.note(f"expected per job ({expected_file.name}) {expected}; scraped {actual}")
    unexpected = sorted(set(actual) - set(expected))
    if unexpected:
        spark_evidence.note(f"jobs not in {expected_file.name} (not judged): {unexpected}")
    spark_evidence.check(
        "target_count_mismatches",
        len(mismatches),
        limit=limits.b6.target_count_mismatches,
        why=f"scrape target count differs from {expected_file}, so some instances are not "
        "monitored: "
        + "; ".join(
            f"job {j!r} expected {want}, Prometheus has {got}"
            for j, (want, got) in sorted(mismatches.items())
        )
        + " — check the scrape config / service discovery of those jobs",
    )


def test_all_scrape_targets_up(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    targets = _targets(
        reach, limits, spark_evidence, until=prometheus.all_up, awaited="every scrape target up"
    )
    assert targets, "Prometheus has no active scrape target at all"
    down = [t for t in targets if t.health != "up"]
    spark_evidence.check(
        "targets_down",
        len(down),
        limit=limits.b6.targets_down,
        why=f"{len(down)} of {len(targets)} scrape targets are not up after waiting "
        f"{limits.b6.targets_wait_s:g} s, so their alerts cannot fire: "
        + "; ".join(prometheus.describe_target(t) for t in down)
        + " — see Prometheus' Status > Targets page for the scrape error",
    )
