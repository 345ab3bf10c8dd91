"""G08 Baseline: the six canary metrics on production before the release (the stable track,
where the target runs one) under at least the plan's minimum sample, each within its stage
threshold, and PgBouncer's headroom in the app's pool.

What is measured becomes ``baseline_metrics_<release>.txt`` and, as data, the signed
``baseline_metrics_<release>.json`` that the canary gate's S6 compares CSP violations with.
No traffic is INCONCLUSIVE, never PASSED: a quiet system has no baseline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pytest_spark import CheckEvidence, OpsFileError, Reach, SparkConfig, Target, load_plan
from pytest_spark.probes import stage_metrics
from suites import canary_window

pytestmark = pytest.mark.go_nogo("G08")

# Stage metric -> the baseline sub-check (ops/checklist.toml) that records it.
SUB_CHECKS = {
    "S1": "baseline_p95_ms",
    "S2": "baseline_5xx_ratio",
    "S3": "baseline_ws_staleness_s",
    "S4": "baseline_risk_blocks_per_min",
    "S5": "baseline_idempotency_conflict_ratio",
    "S6": "baseline_csp_violations_per_min",
}


def test_baseline_under_traffic(
    reach: Reach,
    spark_target: Target,
    spark_config: SparkConfig,
    ops_dir: Path,
    spark_evidence: CheckEvidence,
) -> None:
    try:
        plan = load_plan(ops_dir)
    except OpsFileError as exc:
        pytest.fail(f"the canary plan cannot be read: {exc}", pytrace=False)
    baseline = plan.baseline
    selector = spark_target.endpoints.get("stable_selector") or spark_target.require(
        "canary_selector"
    )
    with reach("prometheus_url") as [url]:
        if spark_target.is_sandbox:
            window = canary_window.baseline_window(spark_target, plan)
        else:
            window = canary_window.recent_window(baseline.window_s, time.time())
        readings = canary_window.read_metrics(url, plan, window, {"baseline": selector})
        headroom = stage_metrics.value_at(url, baseline.headroom_promql(window.seconds), window.end)
    spark_evidence.note(f"measured on {selector}: {window.describe()}")
    if window.traffic is not None:
        spark_evidence.attach("traffic.json", json.dumps(window.traffic, indent=2))
    requests = readings.requests["baseline"]
    if requests is None or requests < baseline.min_requests:
        spark_evidence.inconclusive(
            f"{requests or 0:.0f} requests in the baseline window, under the minimum sample of "
            f"{baseline.min_requests}: no baseline without traffic"
        )
    spark_evidence.check(
        "baseline_requests",
        requests,
        at_least=baseline.min_requests,
        unit="requests",
        why="the baseline needs its minimum sample of traffic",
    )
    values: dict[str, float | None] = {}
    for item, sub_check in SUB_CHECKS.items():
        metric = plan.metrics[item]
        value = readings.values[item]["baseline"].value
        values[sub_check] = value
        limit = metric.below if metric.below is not None else baseline.csp_violations_per_min
        spark_evidence.check(
            sub_check,
            value,
            limit=limit,
            unit=metric.unit,
            why=f"production's {metric.title} is already over {limit:g} {metric.unit} before "
            "the release: a canary could not be told apart from it",
        )
    spark_evidence.check(
        "pgbouncer_headroom_ratio",
        headroom,
        limit=baseline.headroom_below,
        unit="ratio",
        why="the app's PgBouncer pool is nearly full before the release: a canary's extra "
        "connections would saturate it",
    )
    spark_evidence.attach(
        "baseline_json",
        json.dumps(
            {
                "release": spark_config.release,
                "measured_on": selector,
                "window": {"start": window.start, "end": window.end, "shortened": window.shortened},
                "requests": requests,
                "metrics": {
                    **values,
                    "csp_violations_per_min": values["baseline_csp_violations_per_min"],
                    "pgbouncer_headroom_ratio": headroom,
                },
            },
            indent=2,
        ),
    )
