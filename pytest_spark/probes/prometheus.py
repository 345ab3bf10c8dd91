"""B6 / B8 Prometheus: scrape targets, loaded rules, instant queries, burn-rate windows.

A thin httpx client of the Prometheus HTTP API (``/api/v1/targets``, ``/api/v1/rules``,
``/api/v1/query``) and the pure logic that judges what it returns: target counts per job
against the release's expectation, and which alerting rules are multiwindow burn-rate alerts.

A burn-rate alert is recognised by its windows, not its name: the range selectors of its
expression, followed through the recording rules it reads (``…:ratio_rate1h`` is a recording
rule over ``[1h]``). A rule renamed or rewritten keeps being found; a rule called "BurnRate"
over the wrong windows does not pass.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HTTP_TIMEOUT_S = 5.0
NEVER_EVALUATED = "0001-01-01T00:00:00Z"
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
# A range selector or subquery: `[5m]`, `[1h30m]`, `[1h:1m]`; the range is what counts.
RANGE = re.compile(r"\[\s*((?:\d+(?:ms|[smhdwy]))+)\s*(?::[^\]]*)?\]")
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


class PrometheusAPIError(RuntimeError):
    """Prometheus answered, but not with ``"status": "success"``."""


# --- HTTP ------------------------------------------------------------------------------------


def api_get(base_url: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    """``data`` of a Prometheus API answer; httpx errors propagate for ``reach`` to report."""
    response = httpx.get(f"{base_url.rstrip('/')}{path}", params=params, timeout=HTTP_TIMEOUT_S)
    try:
        body = response.json()
    except ValueError:
        response.raise_for_status()
        raise PrometheusAPIError(f"GET {path}: answer is not JSON: {response.text[:200]}") from None
    if body.get("status") != "success":
        raise PrometheusAPIError(
            f"GET {path} {dict(params or {})}: {body.get('errorType')}: {body.get('error')}"
        )
    return body["data"]


def exposition_total(text: str, metric: str) -> float | None:
    """The sum of ``metric``'s samples over all label sets in a Prometheus text exposition
    (``/metrics``); None when the exposition does not declare it at all. A labelled counter
    that is declared but has no child yet counts 0: nothing has been counted."""
    from prometheus_client.parser import text_string_to_metric_families

    # The parser names a counter's family without its _total suffix.
    names = {metric, metric.removesuffix("_total")}
    total, declared = 0.0, False
    for family in text_string_to_metric_families(text):
        if family.name not in names:
            continue
        declared = True
        total += sum(s.value for s in family.samples if s.name == metric)
    return total if declared else None


# --- scrape targets --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    instance: str
    health: str  # "up", "down" or "unknown" (not scraped yet)
    last_error: str
    scrape_url: str


def parse_targets(data: Mapping[str, Any]) -> list[ScrapeTarget]:
    """The active targets of ``/api/v1/targets``' ``data``."""
    return [
        ScrapeTarget(
            job=str(t.get("labels", {}).get("job") or t.get("scrapePool", "")),
            instance=str(t.get("labels", {}).get("instance", "")),
            health=str(t.get("health", "unknown")),
            last_error=str(t.get("lastError", "")),
            scrape_url=str(t.get("scrapeUrl", "")),
        )
        for t in data.get("activeTargets", [])
    ]


def fetch_targets(base_url: str) -> list[ScrapeTarget]:
    return parse_targets(api_get(base_url, "/api/v1/targets", {"state": "active"}))


def all_scraped(targets: Sequence[ScrapeTarget]) -> bool:
    """True once every target has been scraped at least once (up or down, not unknown)."""
    return bool(targets) and all(t.health != "unknown" for t in targets)


def all_up(targets: Sequence[ScrapeTarget]) -> bool:
    return bool(targets) and all(t.health == "up" for t in targets)


def load_expected_targets(path: Path) -> dict[str, int]:
    """``[jobs]`` of ``targets.toml``: job name -> number of targets expected."""
    with path.open("rb") as handle:
        document = tomllib.load(handle)
    unknown = sorted(set(document) - {"jobs"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; it takes [jobs] only")
    jobs = document.get("jobs")
    if not isinstance(jobs, Mapping) or not jobs:
        raise ValueError(f"{path}: expected a non-empty [jobs] table of job = count")
    expected = {}
    for job, count in jobs.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{path}: [jobs] {job} = {count!r} must be a whole number >= 1")
        expected[str(job)] = count
    return expected


def count_by_job(targets: Iterable[ScrapeTarget]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for target in targets:
        counts[target.job] = counts.get(target.job, 0) + 1
    return counts


def count_mismatches(
    expected: Mapping[str, int], targets: Iterable[ScrapeTarget]
) -> dict[str, tuple[int, int]]:
    """Job -> (expected, actual) for each expected job whose target count differs."""
    actual = count_by_job(targets)
    return {
        job: (want, actual.get(job, 0))
        for job, want in expected.items()
        if actual.get(job, 0) != want
    }


def describe_target(target: ScrapeTarget) -> str:
    error = f": {target.last_error}" if target.last_error else ""
    return f"{target.job} {target.scrape_url or target.instance} is {target.health}{error}"


# --- instant queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    result_type: str
    series: int  # samples in a vector, 1 for a scalar/string, series in a matrix

    @property
    def empty(self) -> bool:
        return self.series == 0


def parse_query(data: Mapping[str, Any]) -> QueryResult:
    kind = str(data.get("resultType", ""))
    result = data.get("result")
    if kind in ("scalar", "string"):
        return QueryResult(kind, 1 if result else 0)
    return QueryResult(kind, len(result or []))


def instant_query(base_url: str, promql: str) -> QueryResult:
    return parse_query(api_get(base_url, "/api/v1/query", {"query": promql}))


# --- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRule:
    """A rule as the live Prometheus reports it in ``/api/v1/rules``."""

    name: str
    kind: str  # "alerting" or "recording"
    query: str
    group: str
    file: str
    health: str
    last_error: str
    last_evaluation: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        return bool(self.last_evaluation) and self.last_evaluation != NEVER_EVALUATED

    @property
    def healthy(self) -> bool:
        return self.health == "ok" and not self.last_error and self.evaluated


def parse_rules(data: Mapping[str, Any]) -> list[LoadedRule]:
    rules = []
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            rules.append(
                LoadedRule(
                    name=str(rule.get("name", "")),
                    kind=str(rule.get("type", "")),
                    query=str(rule.get("query", "")),
                    group=str(group.get("name", "")),
                    file=str(group.get("file", "")),
                    health=str(rule.get("health", "unknown")),
                    last_error=str(rule.get("lastError", "")),
                    last_evaluation=str(rule.get("lastEvaluation", "")),
                    labels={str(k): str(v) for k, v in (rule.get("labels") or {}).items()},
                    annotations={
                        str(k): str(v) for k, v in (rule.get("annotations") or {}).items()
                    },
                )
            )
    return rules


def fetch_rules(base_url: str) -> list[LoadedRule]:
    return parse_rules(api_get(base_url, "/api/v1/rules"))


def alerting(rules: Iterable[LoadedRule]) -> list[LoadedRule]:
    return [r for r in rules if r.kind == "alerting"]


# --- windows and burn-rate alerts ------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration (``5m``, ``1h30m``, ``500ms``)."""
    parts = DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        size = DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _code(expr: str) -> str:
    """The expression without its string literals (a regex matcher may contain brackets)."""
    return STRING_LITERAL.sub('""', expr)


def range_windows(expr: str) -> set[float]:
    """The range windows (seconds) an expression selects directly."""
    return {parse_duration(m) for m in RANGE.findall(_code(expr))}


def expanded_windows(expr: str, recordings: Mapping[str, str]) -> set[float]:
    """Range windows of ``expr`` and of every recording rule it reads, transitively."""
    windows: set[float] = set()
    seen: set[str] = set()
    pending = [expr]
    while pending:
        current = pending.pop()
        windows |= range_windows(current)
        for name in METRIC_NAME.findall(_code(current)):
            if name in recordings and name not in seen:
                seen.add(name)
                pending.append(recordings[name])
    return windows


def numbers(expr: str) -> set[float]:
    """Numeric literals of an expression (thresholds and factors), outside strings and ranges."""
    code = RANGE.sub("", _code(expr))
    return {float(n) for n in NUMBER.findall(code)}


@dataclass(frozen=True)
class BurnRateAlert:
    rule: LoadedRule
    windows: frozenset[float]
    has_factor: bool


def burn_rate_alerts(
    rules: Sequence[LoadedRule], long_s: float, short_s: float, factor: float
) -> list[BurnRateAlert]:
    """Alerting rules that read both ``long_s`` and ``short_s`` windows; whether each compares
    against the burn ``factor`` (a literal of the alert's own expression)."""
    recordings = {r.name: r.query for r in rules if r.kind == "recording"}
    found = []
    for rule in alerting(rules):
        windows = expanded_windows(rule.query, recordings)
        if long_s in windows and short_s in windows:
            found.append(BurnRateAlert(rule, frozenset(windows), factor in numbers(rule.query)))
    return found


def describe_windows(windows: Iterable[float]) -> str:
    return ", ".join(format_duration(w) for w in sorted(windows)) or "none"
