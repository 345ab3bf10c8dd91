"""The canary plan: typed from ops/, held to the rollback rules (G10's logic), and the source
of the stages --spark-stage accepts."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from pytest_spark.canary_plan import CanaryPlan, load_plan, plan_problems, seconds
from pytest_spark.config import _instant
from pytest_spark.probes.alert_rules import load_alert_rules
from pytest_spark.triggers import RollbackTriggers, load_triggers

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"


@pytest.fixture(scope="module")
def plan() -> CanaryPlan:
    return load_plan(OPS)


@pytest.fixture(scope="module")
def triggers() -> RollbackTriggers:
    return load_triggers(OPS)


@pytest.fixture(scope="module")
def rule_for_s(triggers: RollbackTriggers) -> dict[str, float]:
    rules = load_alert_rules(OPS / triggers.rules.file)
    return {alert: rule.for_s for alert, rule in rules.items()}


def test_the_release_plan_is_the_packages_canary(plan: CanaryPlan) -> None:
    assert plan.percents == (1, 5, 25, 50, 100)
    assert [s.duration for s in plan.stages] == ["15m", "15m", "15m", "15m", "30m"]
    assert {i: m.below for i, m in plan.metrics.items() if m.below is not None} == {
        "S1": 200,
        "S2": 0.01,
        "S3": 30,
        "S4": 0.5,
        "S5": 0.01,
    }
    assert plan.metrics["S6"].over_baseline == pytest.approx(0.10)
    assert plan.previous(1) is None and plan.previous(25).percent == 5  # type: ignore[union-attr]


def test_the_release_plan_is_consistent_with_its_rules(
    plan: CanaryPlan, triggers: RollbackTriggers, rule_for_s: dict[str, float]
) -> None:
    assert plan_problems(plan, triggers, rule_for_s, 60.0) == []


def _with_metric(plan: CanaryPlan, item: str, **change: object) -> CanaryPlan:
    metrics = {**plan.metrics, item: dataclasses.replace(plan.metrics[item], **change)}
    return dataclasses.replace(plan, metrics=metrics)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda p: _with_metric(p, "S1", below=500),
            "S1: the stage threshold 500 ms is not stricter",
        ),
        (lambda p: _with_metric(p, "S2", below=0.03), "S2: the stage threshold 0.03 ratio"),
        (lambda p: _with_metric(p, "S3", below=120), "S3: the stage threshold 120 s"),
        (lambda p: _with_metric(p, "S5", below=0.05), "S5: the stage threshold 0.05 ratio"),
        (
            lambda p: dataclasses.replace(p, stages=(p.stages[1], p.stages[0], *p.stages[2:])),
            "not strictly increasing",
        ),
        (
            lambda p: dataclasses.replace(p, stages=p.stages[:-1]),
            "the last stage is 50 %, not 100 %",
        ),
        (
            lambda p: dataclasses.replace(
                p, stages=(dataclasses.replace(p.stages[0], duration="6m"), *p.stages[1:])
            ),
            "stage 1 % lasts 6m, shorter than the longest abort trigger's for: (600 s)",
        ),
        (
            lambda p: dataclasses.replace(
                p, abort=dataclasses.replace(p.abort, triggers=(*p.abort.triggers, "T12"))
            ),
            "stage 1 % lasts 15m, shorter than the longest abort trigger's for: (900 s)",
        ),
        (
            lambda p: dataclasses.replace(p, abort=dataclasses.replace(p.abort, triggers=("T99",))),
            "abort trigger T99 is not declared",
        ),
        (
            lambda p: dataclasses.replace(
                p, abort=dataclasses.replace(p.abort, absent_signal_alert="Nope")
            ),
            "absent-signal alert Nope is not in the rule file",
        ),
        (
            lambda p: dataclasses.replace(
                p, metrics={k: v for k, v in p.metrics.items() if k != "S4"}
            ),
            "stage metrics ['S4'] are not in the plan",
        ),
        (lambda p: _with_metric(p, "S1", over_baseline=0.1), "S1: give exactly one of"),
    ],
)
def test_each_inconsistency_is_named(
    plan: CanaryPlan,
    triggers: RollbackTriggers,
    rule_for_s: dict[str, float],
    change,
    expected: str,
) -> None:
    problems = plan_problems(change(plan), triggers, rule_for_s, 60.0)
    assert any(expected in p for p in problems), problems


def test_an_abort_trigger_missing_from_the_rule_file_is_named(
    plan: CanaryPlan, triggers: RollbackTriggers, rule_for_s: dict[str, float]
) -> None:
    without_t01 = {a: s for a, s in rule_for_s.items() if a != triggers.trigger["T01"].alert}
    problems = plan_problems(plan, triggers, without_t01, 60.0)
    assert problems == ["abort trigger T01 (SparkRollbackApiLatencyP95) is not in the rule file"]


def test_s6_limit_is_the_baseline_plus_ten_percent_with_a_floor(plan: CanaryPlan) -> None:
    s6 = plan.metrics["S6"]
    assert s6.limit(None) is None
    assert s6.limit(20.0) == pytest.approx(22.0)
    assert s6.limit(0.0) == s6.floor  # a zero baseline gets the floor, not a limit of zero


def test_queries_name_the_track_and_window(plan: CanaryPlan) -> None:
    query = plan.metrics["S4"].promql('track="canary"', 900.2, plan.plan.traffic_routes)
    assert 'track="canary"' in query and "[901s]" in query and "* 60 / 901" in query
    assert "$" not in plan.plan.requests_promql('track="stable"', 15)


@pytest.mark.parametrize(("text", "expected"), [("15m", 900), ("1h30m", 5400), ("0s", 0)])
def test_durations(text: str, expected: float) -> None:
    assert seconds(text) == expected


@pytest.mark.parametrize("text", ["15", "15 m", "m", "1.5m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        seconds(text)


def test_stage_since_takes_utc_iso_or_unix_seconds() -> None:
    assert _instant("2026-11-29T10:15:00Z") == 1795947300.0
    assert _instant("1795947300") == 1795947300.0
    with pytest.raises(pytest.UsageError, match="with its zone"):
        _instant("2026-11-29T10:15:00")


def test_stage_option_is_checked_against_the_plan(pytester: pytest.Pytester) -> None:
    shutil.copytree(OPS, pytester.path / "ops")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--spark-stage", "30", "-m", "canary")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--spark-stage '30': a canary stage is one of 1, 5, 25, 50, 100*"]
    )
    bare = pytester.runpytest("-m", "canary")
    assert bare.ret == pytest.ExitCode.USAGE_ERROR
    bare.stderr.fnmatch_lines(["*the canary gate judges one stage: add --spark-stage N*"])
    since = pytester.runpytest("--spark-stage-since", "1795947300")
    assert since.ret == pytest.ExitCode.USAGE_ERROR
    since.stderr.fnmatch_lines(["*--spark-stage-since needs --spark-stage*"])
