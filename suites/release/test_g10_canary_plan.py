"""G10 The canary plan, consistent with the rules, and the waivers the release goes out with.

The plan (``canary-plan.toml``) is held to the rollback rules it relies on: stages strictly
increasing to 100 %, each long enough for the slowest abort trigger to fire (its ``for:`` plus
two evaluation intervals), each stage threshold stricter than its rollback trigger's (a stage
must not promote what the trigger would roll back), every abort trigger and the absent-signal
alert present in the rule file. The waivers file holds no expired waiver and none on an
unwaivable item. The plan as judged is the ritual's ``canary_plan_<release>.txt``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from pytest_spark import (
    CanaryPlan,
    CheckEvidence,
    ChecklistError,
    OpsFileError,
    SparkConfig,
    WaiverFileError,
    load_checklist,
    load_plan,
    load_triggers,
    load_waivers,
    plan_problems,
)
from pytest_spark.probes import alert_rules, prometheus

pytestmark = pytest.mark.go_nogo("G10")


def test_canary_plan_consistent_with_the_rules(
    ops_dir: Path, spark_evidence: CheckEvidence
) -> None:
    try:
        plan = load_plan(ops_dir)
        triggers = load_triggers(ops_dir)
        rule_file = ops_dir / triggers.rules.file
        rules = alert_rules.load_alert_rules(rule_file)
    except (OpsFileError, alert_rules.RuleFileError) as exc:
        pytest.fail(f"the canary plan cannot be checked: {exc}", pytrace=False)
    interval_s = _evaluation_interval_s(rule_file, plan)
    for stage in plan.stages:
        spark_evidence.measure(
            f"stage_{stage.percent}",
            f"{stage.percent} % for {stage.duration}, at least {stage.min_requests} requests",
        )
    spark_evidence.measure("thresholds_every_stage", _thresholds(plan))
    spark_evidence.measure("abort_triggers", ", ".join(plan.abort.triggers))
    spark_evidence.measure("evaluation_interval_s", interval_s, unit="s")
    problems = plan_problems(plan, triggers, {a: r.for_s for a, r in rules.items()}, interval_s)
    for problem in problems:
        spark_evidence.note(problem)
    spark_evidence.check(
        "canary_plan_problems",
        len(problems),
        limit=1,
        unit="problems",
        why="the canary plan cannot be run as written: " + "; ".join(problems),
    )


def test_no_expired_or_unwaivable_waiver(
    spark_config: SparkConfig, spark_evidence: CheckEvidence
) -> None:
    try:
        checklist = load_checklist(spark_config.checklist_path)
        waivers = load_waivers(spark_config.waivers_path, checklist)
    except (WaiverFileError, ChecklistError) as exc:
        pytest.fail(f"the waivers cannot be read: {exc}", pytrace=False)
    now = dt.datetime.now(dt.UTC)
    expired = [w for w in waivers if w.expires <= now]
    unwaivable = [w for w in waivers if not checklist.items[w.item].waivable]
    spark_evidence.measure("waivers", len(waivers), unit="waivers")
    spark_evidence.check(
        "expired_waivers",
        len(expired),
        limit=1,
        unit="waivers",
        why="expired waivers in "
        + f"{spark_config.waivers_path.name}: "
        + ", ".join(f"{w.item} ({w.ticket}, {w.expires.isoformat()})" for w in expired)
        + "; renew with a new approval or remove them",
    )
    spark_evidence.check(
        "unwaivable_waivers",
        len(unwaivable),
        limit=1,
        unit="waivers",
        why="waivers on unwaivable items: "
        + ", ".join(f"{w.item} ({w.ticket})" for w in unwaivable)
        + "; money, idempotency, backups and contracts are fixed, never waived",
    )


def _thresholds(plan: CanaryPlan) -> str:
    """Each stage metric's limit, with the rollback trigger it must be stricter than."""
    shown = []
    for item, metric in sorted(plan.metrics.items()):
        if metric.below is not None:
            limit = f"< {metric.below:g} {metric.unit}"
        else:
            limit = (
                f"< baseline + {metric.over_baseline:.0%} (at least {metric.floor:g} {metric.unit})"
            )
        trigger = f" (trigger {metric.trigger})" if metric.trigger else ""
        shown.append(f"{item} {metric.title} {limit}{trigger}")
    return "; ".join(shown)


def _evaluation_interval_s(rule_file: Path, plan: CanaryPlan) -> float:
    """The rollback rules' evaluation interval: the longest group ``interval`` in the rule
    file, else the plan's default (Prometheus's own default, 1 m)."""
    document = yaml.safe_load(rule_file.read_text(encoding="utf-8")) or {}
    intervals = [
        prometheus.parse_duration(str(group["interval"]))
        for group in document.get("groups", [])
        if isinstance(group, dict) and group.get("interval")
    ]
    return max(intervals, default=prometheus.parse_duration(plan.plan.default_evaluation_interval))
