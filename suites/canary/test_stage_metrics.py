"""S1–S6: the six stage metrics of the canary track over the stage's window, each within its
threshold (S6: the signed baseline's CSP rate + 10 %), and, where the target also runs a stable
track with its own minimum sample, not worse than stable beyond the plan's tolerance.

Too little traffic is INCONCLUSIVE, never a pass: the stage's minimum sample applies to the
requests the canary track answered in the window.
"""

from __future__ import annotations

import json

import pytest

from pytest_spark import (
    CanaryPlan,
    CheckEvidence,
    SparkConfig,
    Stage,
    StageMetric,
    find_bundle,
    line_chart,
)
from suites.canary_window import Readings, Window

STAGE_METRICS = ("S1", "S2", "S3", "S4", "S5", "S6")
# The value S6 compares against, as G08 writes it into the GO/NO-GO bundle.
BASELINE_KEY = "csp_violations_per_min"


@pytest.mark.parametrize(
    "item", [pytest.param(i, marks=pytest.mark.canary(i), id=i) for i in STAGE_METRICS]
)
def test_stage_metric_within_threshold(
    item: str,
    canary_plan: CanaryPlan,
    stage: Stage | None,
    stage_window: Window,
    stage_readings: Readings | None,
    spark_config: SparkConfig,
    signer_public_pem: bytes | None,
    spark_evidence: CheckEvidence,
) -> None:
    metric = canary_plan.metrics.get(item)
    if metric is None:
        pytest.fail(f"{item} has no [metric.{item}] in the canary plan", pytrace=False)
    if stage is None or stage_readings is None:
        spark_evidence.inconclusive(stage_window.problem or "the stage is not in the plan")
    spark_evidence.note(stage_window.describe())
    if stage_window.traffic is not None:
        spark_evidence.attach("traffic.json", json.dumps(stage_window.traffic, indent=2))
    requests = stage_readings.requests.get("canary")
    spark_evidence.measure("canary_requests", requests, unit="requests")
    if requests is None or requests < stage.min_requests:
        spark_evidence.inconclusive(
            f"the canary track answered {requests or 0:.0f} requests in the window, under the "
            f"stage's minimum sample of {stage.min_requests}: too little traffic to judge "
            f"{metric.title} (one error in so few requests says nothing either way)"
        )
    baseline = None
    if metric.from_baseline:
        baseline = _signed_baseline(spark_config, signer_public_pem, spark_evidence)
        spark_evidence.measure(f"baseline_{BASELINE_KEY}", baseline, unit=metric.unit)
    limit = metric.limit(baseline)
    readings = stage_readings.values[item]
    canary = readings["canary"]
    spark_evidence.attach(
        f"{metric.name}.svg",
        line_chart(
            f"{item} {metric.title}, stage {stage.percent} %",
            metric.unit,
            {track: reading.points for track, reading in readings.items()},
            limit,
        ),
    )
    spark_evidence.check(
        metric.name,
        canary.value,
        limit=limit,
        unit=metric.unit,
        why=_why(metric, limit, baseline),
    )
    _compare_with_stable(metric, canary_plan, stage, stage_readings, item, spark_evidence)


def _why(metric: StageMetric, limit: float | None, baseline: float | None) -> str:
    if baseline is not None:
        return (
            f"{metric.title} on the canary must stay below the baseline ({baseline:g} "
            f"{metric.unit}) + {metric.over_baseline:.0%}, at least {metric.floor:g}: limit "
            f"{limit:g} {metric.unit}; look at the CSP reports the canary's pages send"
        )
    trigger = f"; its rollback trigger {metric.trigger} is looser" if metric.trigger else ""
    return f"{metric.title} on the canary track must stay below {limit:g} {metric.unit}{trigger}"


def _compare_with_stable(
    metric: StageMetric,
    plan: CanaryPlan,
    stage: Stage,
    readings: Readings,
    item: str,
    spark_evidence: CheckEvidence,
) -> None:
    """Canary against stable (as Kayenta and Argo Rollouts' analyses do): judged only where
    the stable track answered its own minimum sample in the same window."""
    stable = readings.values[item].get("stable")
    stable_requests = readings.requests.get("stable")
    if stable is None or stable.value is None:
        spark_evidence.note("no stable track with data in the window: absolute threshold only")
        return
    if stable_requests is None or stable_requests < stage.min_requests:
        spark_evidence.note(
            f"stable track answered {stable_requests or 0:.0f} requests, under the minimum "
            f"sample of {stage.min_requests}: not compared with the canary"
        )
        return
    tolerance = plan.plan.tolerance
    limit = stable.value * (1 + tolerance) + metric.slack
    spark_evidence.check(
        f"{metric.name}_vs_stable",
        readings.values[item]["canary"].value,
        limit=limit,
        unit=metric.unit,
        why=(
            f"the canary's {metric.title} is worse than stable's ({stable.value:.4g} "
            f"{metric.unit}) by more than {tolerance:.0%} + {metric.slack:g} {metric.unit}: "
            "the release, not the load, moved it"
        ),
    )


def _signed_baseline(
    spark: SparkConfig, public_pem: bytes | None, spark_evidence: CheckEvidence
) -> float:
    """S6's baseline: the CSP rate G08 measured, from the newest verified GO/NO-GO bundle of
    this release. Missing or unsigned is INCONCLUSIVE: a made-up baseline is no baseline."""
    search = find_bundle(
        spark.evidence_dir / spark.release,
        gate="go_nogo",
        public_pem=public_pem,
        checklist=spark.checklist_path,
    )
    if search.found is None:
        spark_evidence.inconclusive(
            "no signed baseline to compare CSP violations with: "
            + search.why_none(f"the GO/NO-GO gate for release {spark.release}")
            + "; run `pytest -m go_nogo` for this release first"
        )
    name = f"baseline_metrics_{spark.release}.json"
    try:
        data = json.loads((search.found.path / name).read_text(encoding="utf-8"))
        value = float(data["metrics"][BASELINE_KEY])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        spark_evidence.inconclusive(
            f"the GO/NO-GO bundle {search.found.path.name} has no usable {name}: {exc} "
            "(G08 writes it)"
        )
    spark_evidence.note(f"baseline from the signed bundle {search.found.path.name}")
    return value
