"""T01–T14 / G06 alert rules: what a rule file defines, what its expression compares and reads,
whether its promtool cases pass, and whether the live Prometheus runs it on series that exist.

Expressions are read through their syntax tree (promql-parser, the Rust PromQL parser's Python
binding), not with regular expressions: a threshold is a comparison with a number literal
(``… > 0.4``), and the series a rule reads are its vector selectors, except those under
``absent()``/``absent_over_time()``, whose point is that the series may be gone.

promtool runs each alert's cases alone (a copy of the test file keeping only the groups that
test it), so a failure names the trigger it belongs to: Prometheus 2.42's ``promtool test
rules`` has no filter of its own.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_spark.probes.prometheus import (
    LoadedRule,
    alerting,
    api_get,
    fetch_rules,
    parse_duration,
)
from pytest_spark.probes.waiting import wait_until

COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
# The mirror of a comparison whose number is on the left: `0.4 < x` is `x > 0.4`.
MIRRORED = {"==": "==", "!=": "!=", ">": "<", "<": ">", ">=": "<=", "<=": ">="}
COMPARISON_TEXT = re.compile(r"^\s*(==|!=|>=|<=|>|<)\s*(\S+)\s*$")
# Functions whose argument is expected to be missing: their selectors need not exist.
ABSENCE_FUNCTIONS = {"absent", "absent_over_time"}
# Prometheus reports times with nanoseconds; Python's ISO parser takes microseconds.
FRACTION = re.compile(r"(\.\d{6})\d+")

# The job a selector names (`job="spark-api"`), whose scrape targets must each have its series.
JOB_MATCHER = re.compile(r'\bjob="([^"]+)"')


class RuleFileError(ValueError):
    """A rule or promtool test file that cannot be read; names the file."""


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule as the release's rule file defines it."""

    alert: str
    expr: str
    for_s: float
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    file: Path


def load_alert_rules(path: Path) -> dict[str, AlertRule]:
    """The alerting rules of ``path`` by alert name."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleFileError(f"{path}: cannot be read as a rule file ({exc})") from None
    rules = {}
    for group in (document or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" not in rule:
                continue
            rules[str(rule["alert"])] = AlertRule(
                alert=str(rule["alert"]),
                expr=str(rule.get("expr", "")),
                for_s=parse_duration(str(rule.get("for", "0s"))),
                labels={str(k): str(v) for k, v in (rule.get("labels") or {}).items()},
                annotations={str(k): str(v) for k, v in (rule.get("annotations") or {}).items()},
                file=path,
            )
    return rules


def alert_definitions(rules_dir: Path) -> list[AlertRule]:
    """The alerting rules of every rule file in ``rules_dir`` (promtool test files, which have
    ``tests:`` and no ``groups:``, define none)."""
    files = sorted([*rules_dir.glob("*.yml"), *rules_dir.glob("*.yaml")])
    return [rule for path in files for rule in load_alert_rules(path).values()]


# --- reading an expression ------------------------------------------------------------------


def _children(node: Any) -> Iterator[Any]:
    for name in ("lhs", "expr", "vector_selector", "param", "rhs"):
        child = getattr(node, name, None)
        if child is not None and not isinstance(child, str | int | float):
            yield child
    yield from getattr(node, "args", None) or ()


def _number(node: Any) -> float | None:
    import promql_parser

    if isinstance(node, promql_parser.NumberLiteral):
        return float(node.val)
    if isinstance(node, promql_parser.ParenExpr):
        return _number(node.expr)
    return None


def comparisons(expr: str) -> list[tuple[str, float]]:
    """Every comparison of the expression with a number, in the order written: ``[(">",
    0.4)]``; a number on the left is turned around (``0.4 < x`` is ``(">", 0.4)``)."""
    import promql_parser

    found: list[tuple[str, float]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs)
            op = str(node.op)
            if op in COMPARISONS:
                right, left = _number(node.rhs), _number(node.lhs)
                if right is not None:
                    found.append((op, right))
                elif left is not None:
                    found.append((MIRRORED[op], left))
            visit(node.rhs)
            return
        for child in _children(node):
            visit(child)

    visit(promql_parser.parse(expr))
    return found


def selectors(expr: str) -> list[str]:
    """The series selectors the expression reads (``metric{label="v"}``, no offset or range),
    once each, in the order written; those under ``absent()`` are left out."""
    import promql_parser

    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.Call) and node.func.name in ABSENCE_FUNCTIONS:
            return
        if isinstance(node, promql_parser.VectorSelector):
            # Matchers sorted: Prometheus lists a loaded rule's matchers in its own order.
            matchers = sorted(str(m) for m in node.matchers.matchers)
            text = f"{node.name or ''}{{{','.join(matchers)}}}"
            if text not in found:
                found.append(text)
            return
        for child in _children(node):
            visit(child)

    visit(promql_parser.parse(expr))
    return found


def parse_comparison(text: str) -> tuple[str, float]:
    """``"> 0.4"`` -> ``(">", 0.4)``; a ValueError names what is wrong."""
    match = COMPARISON_TEXT.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a comparison such as '> 0.4'")
    return match.group(1), float(match.group(2))


def describe(found: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{op} {value:g}" for op, value in found) or "no comparison"


def same_comparisons(a: Sequence[tuple[str, float]], b: Sequence[tuple[str, float]]) -> bool:
    return len(a) == len(b) and all(
        x_op == y_op and math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0)
        for (x_op, x), (y_op, y) in zip(a, b, strict=True)
    )


# --- promtool --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertCases:
    """The promtool cases of one alert: how many expect it firing and how many quiet."""

    firing: int = 0
    quiet: int = 0


def _test_document(path: Path) -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleFileError(f"{path}: cannot be read as a promtool test file ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("tests"), list):
        raise RuleFileError(f"{path}: a promtool test file needs a `tests:` list")
    return document


def _alerts_tested(group: Mapping[str, Any]) -> set[str]:
    return {str(case.get("alertname")) for case in group.get("alert_rule_test") or []}


def cases_by_alert(test_file: Path) -> dict[str, AlertCases]:
    """Per alert name, its firing and quiet cases in a promtool test file."""
    counts: dict[str, AlertCases] = {}
    for group in _test_document(test_file)["tests"]:
        for case in group.get("alert_rule_test") or []:
            name = str(case.get("alertname"))
            seen = counts.get(name, AlertCases())
            if case.get("exp_alerts"):
                counts[name] = AlertCases(seen.firing + 1, seen.quiet)
            else:
                counts[name] = AlertCases(seen.firing, seen.quiet + 1)
    return counts


@dataclass(frozen=True)
class PromtoolRun:
    alert: str
    passed: bool
    output: str


def run_promtool_cases(
    test_file: Path, alert: str, workdir: Path, *, promtool: str = "promtool", timeout_s: float
) -> PromtoolRun:
    """``promtool test rules`` over the groups of ``test_file`` that test ``alert``, with the
    rule files resolved against the test file's folder (as promtool itself does)."""
    import yaml

    document = _test_document(test_file)
    groups = [g for g in document["tests"] if alert in _alerts_tested(g)]
    if not groups:
        return PromtoolRun(alert, False, f"{test_file.name} has no case for {alert}")
    alone = {
        **document,
        "rule_files": [
            str((test_file.parent / f).resolve()) for f in document.get("rule_files") or []
        ],
        "tests": groups,
    }
    path = workdir / f"{alert}.test.yml"
    path.write_text(yaml.safe_dump(alone, sort_keys=False), encoding="utf-8")
    try:
        done = subprocess.run(
            [promtool, "test", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        return PromtoolRun(alert, False, f"{promtool} not found: install Prometheus' promtool")
    except subprocess.TimeoutExpired:
        return PromtoolRun(alert, False, f"promtool did not finish within {timeout_s:g} s")
    return PromtoolRun(alert, done.returncode == 0, (done.stdout + done.stderr).strip())


# --- the live Prometheus ---------------------------------------------------------------------


def evaluation_age_s(rule: LoadedRule, now: datetime | None = None) -> float | None:
    """Seconds since the live rule was last evaluated; None if never."""
    if not rule.evaluated:
        return None
    stamp = FRACTION.sub(r"\1", rule.last_evaluation).replace("Z", "+00:00")
    try:
        evaluated = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return ((now or datetime.now(UTC)) - evaluated).total_seconds()


def evaluated_rules(base_url: str, wait_s: float) -> list[LoadedRule]:
    """The live rules once every loaded alert has been evaluated (a Prometheus that has just
    started lists its rules before their first evaluation), or as they are at the deadline."""
    waited = wait_until(
        wait_s,
        "every loaded alerting rule evaluated",
        lambda _: fetch_rules(base_url),
        lambda rules: all(r.evaluated for r in alerting(rules)),
    )
    return waited.value


def not_running(rule: LoadedRule, max_age_s: float, now: datetime | None = None) -> str | None:
    """Why a loaded rule cannot be trusted to fire (unhealthy, or not evaluated within
    ``max_age_s``), or None."""
    if rule.health != "ok" or rule.last_error:
        return f"{rule.name}: health {rule.health} {rule.last_error}".strip()
    age = evaluation_age_s(rule, now)
    if age is None or age > max_age_s:
        return f"{rule.name}: last evaluated {'never' if age is None else f'{age:.0f} s ago'}"
    return None


@dataclass(frozen=True)
class SeriesPresence:
    """A selector's series, and the scrape targets of its job that have none of them."""

    series: int
    targets_without: tuple[str, ...]

    @property
    def missing(self) -> bool:
        return self.series == 0 or bool(self.targets_without)

    def describe(self) -> str:
        absent = f", none on {', '.join(self.targets_without)}" if self.targets_without else ""
        return f"{self.series}{absent}"


def series_presence(base_url: str, selector: str, lookback_s: float) -> SeriesPresence:
    """``selector``'s series in the last ``lookback_s`` (``/api/v1/series``), per scrape
    target of the job it names: a job scraped from two
    tracks (canary and stable) where one no longer exports the series still has series, yet
    the rule is blind to that track, so each target of the job must have some."""
    found = _series(base_url, selector, lookback_s)
    job = JOB_MATCHER.search(selector)
    if job is None:
        return SeriesPresence(len(found), ())
    targets = {
        s.get("instance", "?") for s in _series(base_url, f'up{{job="{job[1]}"}}', lookback_s)
    }
    having = {s.get("instance", "?") for s in found}
    return SeriesPresence(len(found), tuple(sorted(targets - having)))


def _series(base_url: str, selector: str, lookback_s: float) -> list[dict[str, str]]:
    now = datetime.now(UTC).timestamp()
    data = api_get(
        base_url,
        "/api/v1/series",
        {"match[]": selector, "start": f"{now - lookback_s:.3f}", "end": f"{now:.3f}"},
    )
    return list(data)
