"""The canary plan (``ops/canary-plan.toml``) typed, and its consistency with the rollback rules.

One file says how a release is rolled out: the stages (weight, duration, minimum sample), the
six stage metrics (PromQL, threshold, direction), the rollback triggers that abort a stage and
the sandbox's traffic. The config reads its stage list (``--spark-stage``), B7 its first stage,
G10 checks it against ``rollback-triggers.toml`` and the rule file (:func:`plan_problems`),
and the canary gate measures each stage by it. Pure apart from reading files.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from pytest_spark.ops import load_ops, ops_key
from pytest_spark.triggers import RollbackTriggers

PLAN_FILE = "canary-plan.toml"
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as ``15m``, ``1h30m`` or ``0s``.

    Not ``probes.prometheus.parse_duration``: the plugin reads the plan at start-up (the
    stage list) and that module imports httpx, which loading the plugin must not."""
    parts = re.findall(r"(\d+)(ms|[smhd])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r} (write e.g. 15m, 90s, 1h)")
    return float(sum(int(n) * DURATION_UNITS[u] for n, u in parts))


@dataclass(frozen=True)
class PlanSettings:
    default_evaluation_interval: str
    tolerance: float
    traffic_routes: str
    requests_query: str

    def requests_promql(self, selector: str, window_s: float) -> str:
        return _substitute(self.requests_query, selector, window_s, self.traffic_routes)


@dataclass(frozen=True)
class Stage:
    percent: int
    duration: str
    min_requests: int

    @property
    def duration_s(self) -> float:
        return seconds(self.duration)


@dataclass(frozen=True)
class StageMetric:
    """One of S1–S6: its query, and the limit its value must stay below."""

    name: str
    title: str
    unit: str
    query: str
    slack: float
    below: float | None = None
    # S6: the limit is the baseline × (1 + over_baseline), and at least `floor`.
    over_baseline: float | None = None
    floor: float | None = None
    trigger: str = ""
    scale: float = 1.0

    @property
    def from_baseline(self) -> bool:
        return self.over_baseline is not None

    def limit(self, baseline: float | None = None) -> float | None:
        """The stage's limit; for a baseline metric None while the baseline is unknown."""
        if self.below is not None:
            return self.below
        if baseline is None or self.over_baseline is None:
            return None
        return max(baseline * (1 + self.over_baseline), self.floor or 0.0)

    def promql(self, selector: str, window_s: float, routes: str) -> str:
        """The query for one track (``track="canary"``) over a window of ``window_s``."""
        return _substitute(self.query, selector, window_s, routes)


def _substitute(query: str, selector: str, window_s: float, routes: str) -> str:
    whole = math.ceil(window_s)
    return Template(query).substitute(
        track=selector, window=f"{whole}s", window_seconds=str(whole), routes=routes
    )


@dataclass(frozen=True)
class Abort:
    triggers: tuple[str, ...]
    absent_signal_alert: str


@dataclass(frozen=True)
class Baseline:
    """G08: what the baseline is measured on and within which limits."""

    window: str
    min_requests: int
    csp_violations_per_min: float
    headroom_query: str
    headroom_below: float

    @property
    def window_s(self) -> float:
        return seconds(self.window)

    def headroom_promql(self, window_s: float) -> str:
        return Template(self.headroom_query).substitute(window=f"{math.ceil(window_s)}s")


@dataclass(frozen=True)
class SandboxTraffic:
    """How the gate loads the embedded sandbox, which has no users, during a stage."""

    window: str
    rate: float
    canary_rate: float
    max_in_flight: int
    replay_every: int
    page_loads: int
    symbols: tuple[str, ...]
    lead: str
    settle: str

    @property
    def window_s(self) -> float:
        return seconds(self.window)

    @property
    def lead_s(self) -> float:
        return seconds(self.lead)

    @property
    def settle_s(self) -> float:
        return seconds(self.settle)


@dataclass(frozen=True)
class CanaryPlan:
    plan: PlanSettings
    stages: tuple[Stage, ...] = field(metadata=ops_key("stage"))
    metrics: dict[str, StageMetric] = field(metadata=ops_key("metric"))
    baseline: Baseline
    abort: Abort
    sandbox: SandboxTraffic

    @property
    def percents(self) -> tuple[int, ...]:
        return tuple(s.percent for s in self.stages)

    def stage(self, percent: int) -> Stage | None:
        return next((s for s in self.stages if s.percent == percent), None)

    def previous(self, percent: int) -> Stage | None:
        """The stage before ``percent``; None for the first (its predecessor is GO/NO-GO)."""
        for before, stage in itertools.pairwise(self.stages):
            if stage.percent == percent:
                return before
        return None


def load_plan(ops_dir: Path) -> CanaryPlan:
    """``<ops_dir>/canary-plan.toml`` typed; OpsFileError names a broken key."""
    return load_ops(ops_dir / PLAN_FILE, CanaryPlan)


def plan_problems(
    plan: CanaryPlan,
    triggers: RollbackTriggers,
    rule_for_s: Mapping[str, float],
    evaluation_interval_s: float,
) -> list[str]:
    """What makes the plan unusable with the release's rules (G10), one line each.

    ``rule_for_s``: alert name -> its ``for:`` in seconds, as the rule file has it;
    ``evaluation_interval_s``: how often Prometheus evaluates the rollback rules.
    """
    problems: list[str] = []
    percents = plan.percents
    if not percents:
        return ["the plan has no [[stage]]"]
    if any(b <= a for a, b in itertools.pairwise(percents)) or percents[0] <= 0:
        problems.append(f"stages {list(percents)} are not strictly increasing from above 0")
    if percents[-1] != 100:
        problems.append(f"the last stage is {percents[-1]} %, not 100 %")
    aborting = {}
    for trigger_id in plan.abort.triggers:
        trigger = triggers.trigger.get(trigger_id)
        if trigger is None:
            problems.append(f"abort trigger {trigger_id} is not declared in rollback-triggers.toml")
        elif trigger.alert not in rule_for_s:
            problems.append(f"abort trigger {trigger_id} ({trigger.alert}) is not in the rule file")
        else:
            aborting[trigger_id] = rule_for_s[trigger.alert]
    if plan.abort.absent_signal_alert not in rule_for_s:
        problems.append(
            f"absent-signal alert {plan.abort.absent_signal_alert} is not in the rule file"
        )
    longest_for = max(aborting.values(), default=0.0)
    needed = longest_for + 2 * evaluation_interval_s
    for stage in plan.stages:
        if stage.duration_s < needed:
            problems.append(
                f"stage {stage.percent} % lasts {stage.duration}, shorter than the longest abort "
                f"trigger's for: ({longest_for:g} s) plus two evaluation intervals "
                f"({evaluation_interval_s:g} s each): {needed:g} s"
            )
        if stage.min_requests <= 0:
            problems.append(f"stage {stage.percent} %: min_requests must be above 0")
    for item, metric in sorted(plan.metrics.items()):
        problems += _metric_problems(item, metric, triggers)
    missing = sorted({f"S{n}" for n in range(1, 7)} - set(plan.metrics))
    if missing:
        problems.append(f"stage metrics {missing} are not in the plan")
    return problems


def _metric_problems(item: str, metric: StageMetric, triggers: RollbackTriggers) -> list[str]:
    if (metric.below is None) == (metric.over_baseline is None):
        return [f"{item}: give exactly one of `below` or `over_baseline`"]
    if not metric.trigger:
        return []
    trigger = triggers.trigger.get(metric.trigger)
    if trigger is None or not trigger.compare:
        return [f"{item}: its trigger {metric.trigger} is not declared with a comparison"]
    operator, threshold = trigger.compare[0].split()
    if operator not in (">", ">=") or metric.below is None:
        return [f"{item}: cannot compare with {metric.trigger}'s `{trigger.compare[0]}`"]
    stage_limit = metric.below * metric.scale
    if stage_limit >= float(threshold):
        return [
            f"{item}: the stage threshold {metric.below:g} {metric.unit} is not stricter than "
            f"rollback trigger {metric.trigger} ({trigger.compare[0]} in its unit, the stage's is "
            f"{stage_limit:g}): a stage would promote what the trigger rolls back"
        ]
    return []
