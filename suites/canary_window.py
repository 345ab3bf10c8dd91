"""A window of live traffic on the target's tracks, and the six stage metrics read over it.

Shared by the canary gate (S1–S7, one stage's window) and G08 (the baseline's window). A real
target is only read: its window is the stage's planned duration ending now, and real users
are its traffic. The embedded sandbox has no users, so the gate sends the traffic itself
(open-loop, bounded, loopback only) split between the tracks by the stage's weight, over the
plan's shortened sandbox window, and says so in the evidence.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pytest_spark import CanaryPlan, StageMetric, Target
from pytest_spark.probes import stage_metrics, traffic
from pytest_spark.probes.waiting import wait_until

# Prometheus scrapes a new target within its 5 s discovery tick plus one 1 s interval.
OBSERVED_WAIT_S = 20.0


@dataclass(frozen=True)
class Window:
    """[start, end] in Unix seconds; ``problem`` says why it cannot be judged (INCONCLUSIVE)."""

    start: float
    end: float
    planned_s: float
    shortened: bool
    traffic: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def describe(self) -> str:
        ending = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.end))
        span = f"window {self.seconds:.0f} s ending {ending}"
        if self.shortened:
            span += (
                f" (window shortened to {self.seconds:.0f} s: the sandbox's traffic is the "
                "gate's own, sent for this run)"
            )
        return span


@dataclass(frozen=True)
class TrackReading:
    value: float | None
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Readings:
    """Every stage metric on each track over one window, and each track's sample size."""

    window: Window
    requests: dict[str, float | None]
    values: dict[str, dict[str, TrackReading]]  # item (S1..S6) -> track -> reading


def selectors(target: Target) -> dict[str, str]:
    """Track name -> PromQL label matcher, from the target (``canary_selector``, and
    ``stable_selector`` where the target runs a stable track beside the canary)."""
    found = {"canary": target.require("canary_selector")}
    stable = target.endpoints.get("stable_selector")
    if stable:
        found["stable"] = stable
    return found


def sandbox_window(target: Target, plan: CanaryPlan, weight_percent: int) -> Window:
    """Send the stage's traffic to the sandbox's tracks now, split by the stage's weight, and
    return the window it filled."""
    await_observed(target, plan, selectors(target).values())
    settings = plan.sandbox
    canary_rps, stable_rps = traffic.split(weight_percent, settings.rate, settings.canary_rate)
    canary = traffic.Track(
        "canary", target.require("canary_api_url"), target.endpoints.get("canary_web_url")
    )
    stable = None
    if stable_rps > 0:
        stable = traffic.Track(
            "stable", target.require("stable_api_url"), target.endpoints.get("stable_web_url")
        )
    return _drive(plan, canary, canary_rps, stable, stable_rps)


def baseline_window(target: Target, plan: CanaryPlan) -> Window:
    """The sandbox's production before the release: traffic to the stable track alone."""
    await_observed(target, plan, [target.require("stable_selector")])
    stable = traffic.Track(
        "stable", target.require("stable_api_url"), target.endpoints.get("stable_web_url")
    )
    return _drive(plan, stable, plan.sandbox.canary_rate, None, 0.0)


def await_observed(target: Target, plan: CanaryPlan, tracks: Iterable[str]) -> None:
    """A sandbox that has just started is not yet scraped (Prometheus applies its targets on
    a 5 s tick), and its absent-signal alert is pending until it is: the gate's own stage
    begins once every track is scraped up and that alert is quiet, as a deployed release's
    stage begins on a deployment already watched. A deadline, then the stage goes on (and
    S7 reports what was still missing)."""
    url = target.require("prometheus_url")
    absent = plan.abort.absent_signal_alert

    def observed(_: float) -> bool:
        now = time.time()
        up = [stage_metrics.value_at(url, f'min(up{{job="spark-api",{t}}})', now) for t in tracks]
        quiet = stage_metrics.value_at(url, f'count(ALERTS{{alertname="{absent}"}})', now)
        return all(u == 1 for u in up) and quiet is None

    wait_until(OBSERVED_WAIT_S, "every track scraped and the absent-signal alert quiet", observed)


def _drive(
    plan: CanaryPlan,
    first: traffic.Track,
    first_rps: float,
    second: traffic.Track | None,
    second_rps: float,
) -> Window:
    settings = plan.sandbox
    load = traffic.TrafficPlan(
        duration_s=settings.lead_s + settings.window_s,
        canary_rps=first_rps,
        stable_rps=second_rps,
        max_in_flight=settings.max_in_flight,
        replay_every=settings.replay_every,
        symbols=settings.symbols,
        page_loads=settings.page_loads,
    )
    report = traffic.run_traffic(load, first, second)
    # The last requests must be scraped (1 s interval) before the window is read.
    time.sleep(settings.settle_s)
    start = report.started_at + settings.lead_s
    return Window(
        start=start,
        end=start + settings.window_s,
        planned_s=settings.window_s,
        shortened=True,
        traffic=report.to_json(),
    )


def recent_window(planned_s: float, now: float) -> Window:
    """A real target's last ``planned_s`` seconds (its users are the traffic)."""
    return Window(start=now - planned_s, end=now, planned_s=planned_s, shortened=False)


def deployment_window(planned_s: float, since: float | None, now: float) -> Window:
    """A real target's window: the planned duration ending now, inside the stage."""
    window = Window(start=now - planned_s, end=now, planned_s=planned_s, shortened=False)
    if since is None:
        return _with_problem(
            window, "when the stage began is not known: pass --spark-stage-since (UTC ISO 8601)"
        )
    age = now - since
    if age < planned_s:
        return _with_problem(
            window,
            f"the stage is {age:.0f} s old, younger than its window of {planned_s:.0f} s: "
            "judge it when the window has passed",
        )
    return window


def _with_problem(window: Window, problem: str) -> Window:
    return Window(window.start, window.end, window.planned_s, window.shortened, None, problem)


def read_metrics(
    prometheus_url: str,
    plan: CanaryPlan,
    window: Window,
    tracks: dict[str, str],
    metrics: dict[str, StageMetric] | None = None,
) -> Readings:
    """Each metric's value over the window at its end, and its series for the chart."""
    routes = plan.plan.traffic_routes
    seconds = window.seconds
    requests = {
        track: stage_metrics.value_at(
            prometheus_url, plan.plan.requests_promql(selector, seconds), window.end
        )
        for track, selector in tracks.items()
    }
    values: dict[str, dict[str, TrackReading]] = {}
    # The chart's points each look back a fifth of the window: a curve, not one flat value.
    chart_window = max(3.0, seconds / 5)
    for item, metric in (metrics or plan.metrics).items():
        values[item] = {}
        for track, selector in tracks.items():
            value = stage_metrics.value_at(
                prometheus_url, metric.promql(selector, seconds, routes), window.end
            )
            points = stage_metrics.series(
                prometheus_url,
                metric.promql(selector, chart_window, routes),
                window.start,
                window.end,
            )
            values[item][track] = TrackReading(value, points)
    return Readings(window, requests, values)
