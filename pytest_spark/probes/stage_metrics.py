"""A canary stage read from Prometheus: each metric's value over the stage window per track,
its series for the report's chart, and which alerts were pending or firing in the window.

Values are instant queries evaluated at the window's end (``time=end``), so a stage is judged
over exactly the window it names, however long after the gate runs. A query that returns no
sample, or NaN (``0/0`` when a track had no requests), is None: no data, never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_spark.probes.prometheus import api_get

# Points per chart: enough to see a stage's shape, few enough for a small SVG.
CHART_POINTS = 60


def value_at(prometheus_url: str, promql: str, at: float) -> float | None:
    """The single value of ``promql`` at ``at`` (Unix seconds); None without a finite one."""
    data = api_get(prometheus_url, "/api/v1/query", {"query": promql, "time": f"{at:.3f}"})
    return single_value(data)


def single_value(data: Mapping[str, Any]) -> float | None:
    """The value of a one-sample vector or a scalar answer; None when empty or not finite."""
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        raw = result[1]
    elif isinstance(result, list) and len(result) == 1:
        raw = result[0]["value"][1]
    else:
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def series(prometheus_url: str, promql: str, start: float, end: float) -> list[tuple[float, float]]:
    """``promql`` evaluated across [start, end] (``query_range``), finite points only."""
    step = max(1.0, (end - start) / CHART_POINTS)
    data = api_get(
        prometheus_url,
        "/api/v1/query_range",
        {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
    )
    points: list[tuple[float, float]] = []
    for stream in data.get("result", [])[:1]:
        for stamp, raw in stream.get("values", []):
            value = float(raw)
            if math.isfinite(value):
                points.append((float(stamp), value))
    return points


@dataclass(frozen=True)
class AlertSighting:
    alert: str
    state: str  # pending or firing
    labels: Mapping[str, str]

    def describe(self) -> str:
        trigger = self.labels.get("trigger")
        return f"{self.alert}{f' ({trigger})' if trigger else ''} {self.state}"


def alerts_in_window(
    prometheus_url: str, alerts: Iterable[str], end: float, window_s: float
) -> list[AlertSighting]:
    """Every named alert that was pending or firing at any evaluation in the window: the
    ``ALERTS`` series Prometheus writes at each evaluation while an alert is active."""
    names = sorted(set(alerts))
    if not names:
        return []
    matcher = "|".join(names)
    promql = (
        f'max by (alertname, alertstate, trigger) (max_over_time(ALERTS{{alertname=~"{matcher}"}}'
        f"[{math.ceil(window_s)}s]))"
    )
    data = api_get(prometheus_url, "/api/v1/query", {"query": promql, "time": f"{end:.3f}"})
    return sightings(data.get("result", []))


def sightings(result: Sequence[Mapping[str, Any]]) -> list[AlertSighting]:
    found = []
    for sample in result:
        labels = {str(k): str(v) for k, v in sample.get("metric", {}).items()}
        found.append(
            AlertSighting(labels.get("alertname", "?"), labels.get("alertstate", "?"), labels)
        )
    return sorted(found, key=lambda s: (s.alert, s.state))
