"""What a rollback reads of the deployment before and after it switches: the snapshot of the
stage metrics, the headroom and the triggers, and the confirmation that the previous release
serves again. Queries go to the target's Prometheus and to the deployment itself."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_spark.canary_plan import CanaryPlan, load_plan
from pytest_spark.probes import serving
from pytest_spark.probes.prometheus import api_get
from pytest_spark.probes.stage_metrics import value_at

if TYPE_CHECKING:
    from pytest_spark.rollback import Deployment

# Rollback triggers carry a `trigger` label (T01–T14); ALERTS holds those pending or firing.
TRIGGER_ALERTS = 'ALERTS{trigger!=""}'
POLL_S = 0.5
CONFIRM_READS = 40
CONFIRM_PATH = "/health"


def active_triggers(prometheus_url: str) -> list[str]:
    """``T01 SparkRollbackApiLatency firing``, for each trigger alert pending or firing now."""
    data = api_get(prometheus_url, "/api/v1/query", {"query": TRIGGER_ALERTS})
    return sorted(
        f"{m.get('trigger', '?')} {m.get('alertname', '?')} {m.get('alertstate', '?')}"
        for m in (r.get("metric", {}) for r in data.get("result", []))
    )


def _shown(value: float | None) -> str:
    return "no data" if value is None else f"{value:.6g}"


def snapshot_text(
    deployment: Deployment, ops_dir: Path, percent: int, when: str, release: str
) -> tuple[str, list[str]]:
    """The snapshot file's text, and what could not be read (a query that failed; no data is
    a reading: a track without traffic has none)."""
    plan = load_plan(ops_dir)
    stage = plan.stage(percent) or plan.stages[0]
    window_s = stage.duration_s
    now = time.time()
    problems: list[str] = []
    version = serving.serving_version(deployment.api_url)
    if version is None:
        problems.append(f"no serving version on {deployment.api_url}/metrics")
    lines = [
        f"# metrics {when} the rollback of {release}",
        f"taken: {dt.datetime.now(dt.UTC).isoformat()}",
        f"target: {deployment.name}",
        f"serving version: {version or 'unknown'}",
        f"window: {stage.duration} (stage {stage.percent} %)",
        "",
    ]
    tracks = (("canary", deployment.canary_selector), ("stable", deployment.stable_selector))
    for item, metric in plan.metrics.items():
        shown = []
        for track, selector in tracks:
            promql = metric.promql(selector, window_s, plan.plan.traffic_routes)
            try:
                shown.append(f"{track} {_shown(value_at(deployment.prometheus_url, promql, now))}")
            except Exception as exc:  # an unreadable metric is a problem of the snapshot
                problems.append(f"{item} on {track}: {exc}")
                shown.append(f"{track} query failed")
        limit = metric.limit()
        bound = f"limit < {limit:g}" if limit is not None else "limit from the baseline"
        lines.append(f"{item} {metric.name} ({metric.unit}): {', '.join(shown)}; {bound}")
    try:
        headroom = value_at(deployment.prometheus_url, plan.baseline.headroom_promql(window_s), now)
        lines.append(f"headroom: {_shown(headroom)} (limit < {plan.baseline.headroom_below:g})")
        triggers = active_triggers(deployment.prometheus_url)
        lines.append(f"triggers pending or firing: {', '.join(triggers) or 'none'}")
    except Exception as exc:
        problems.append(f"headroom or triggers: {exc}")
    if problems:
        lines += ["", "problems:", *(f"- {p}" for p in problems)]
    return "\n".join(lines) + "\n", problems


@dataclass
class Confirmation:
    problems: list[str] = field(default_factory=list)
    detail: str = ""
    confirmed_at: float = 0.0


def confirm(
    deployment: Deployment, plan: CanaryPlan, previous: str, deadline: float
) -> Confirmation:
    """Wait (until ``deadline``, monotonic) for the previous release to serve, healthy and
    with no trigger active, then judge a bounded burst of reads against S1's and S2's limits."""
    seen = ""
    while True:
        version = serving.serving_version(deployment.api_url)
        health = serving.health_status(deployment.api_url)
        triggers = active_triggers(deployment.prometheus_url)
        seen = f"serving {version or 'unknown'}, /health {health or 'unreachable'}, " + (
            f"triggers {', '.join(triggers)}" if triggers else "no trigger active"
        )
        if version == previous and health == 200 and not triggers:
            break
        if time.monotonic() >= deadline:
            return Confirmation([f"not confirmed by the deadline: {seen} (want {previous})"])
        time.sleep(POLL_S)
    confirmed_at = time.monotonic()
    burst = serving.read_burst(deployment.api_url, CONFIRM_PATH, CONFIRM_READS)
    problems = []
    p95_limit = plan.metrics["S1"].below
    ratio_limit = plan.metrics["S2"].below
    if burst.p95_ms is None or (p95_limit is not None and burst.p95_ms >= p95_limit):
        problems.append(f"{burst.describe()}: p95 not under S1's {p95_limit} ms")
    if burst.error_ratio is None or (ratio_limit is not None and burst.error_ratio >= ratio_limit):
        problems.append(f"{burst.describe()}: errors not under S2's {ratio_limit}")
    return Confirmation(problems, f"{seen}; {burst.describe()}", confirmed_at)
