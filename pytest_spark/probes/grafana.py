"""B6 Grafana dashboards: template variables with defaults, each panel's PromQL as it is sent.

A dashboard opens with each variable at its saved ``current`` value. A variable without one
leaves its panels with nothing to query (or with whatever option Grafana happens to list
first), so the release dashboard may show "No data" exactly when someone needs it. Here the
dashboard JSON model is read, each variable's default resolved, and every panel target's
expression rendered with the defaults, the way Grafana interpolates it for a Prometheus
data source; the caller then runs the queries.

Pure logic only; :func:`load_dashboard` is the one file read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALL = "$__all"
# Grafana's built-in variables, given the values a dashboard opened at "now-6h" would use
# closely enough for an instant query: any window that holds two scrapes returns data.
BUILTINS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
}
# $var, ${var}, ${var:format} and the deprecated [[var]] / [[var:format]].
VARIABLE_REFERENCE = re.compile(
    r"\$(?P<plain>\w+)|\$\{(?P<braced>\w+)(?::(?P<fmt>[^}]+))?\}|\[\[(?P<old>\w+)(?::(?P<oldfmt>[^\]]+))?\]\]"
)
# Prometheus' regex metacharacters, escaped the way Grafana does for a multi-value variable.
REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str
    default: tuple[str, ...] | None  # None: no saved default
    all_value: str | None
    options: tuple[str, ...]
    include_all: bool

    @property
    def has_default(self) -> bool:
        return self.default is not None and any(v != "" for v in self.default)


@dataclass(frozen=True)
class PanelQuery:
    """One visible target of a panel, rendered with the variables' defaults."""

    dashboard: str
    panel: str
    ref_id: str
    template: str
    expr: str
    unresolved: tuple[str, ...] = field(default_factory=tuple)

    @property
    def where(self) -> str:
        return f"{self.dashboard}: panel {self.panel!r} target {self.ref_id}"


def load_dashboard(path: Path) -> dict[str, Any]:
    """The dashboard model of a JSON file; an export wrapped in ``{"dashboard": ...}`` too."""
    document = json.loads(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a dashboard must be a JSON object")
    model = document.get("dashboard", document)
    if not isinstance(model, dict):
        raise ValueError(f"{path}: 'dashboard' must be a JSON object")
    return model


def _values(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, list):
        return tuple(str(v) for v in raw)
    return (str(raw),)


def variables(model: Mapping[str, Any]) -> list[Variable]:
    """The template variables, each with its saved default (``current.value``) if any."""
    found = []
    for raw in model.get("templating", {}).get("list", []) or []:
        current = raw.get("current")
        default = _values(current.get("value")) if isinstance(current, Mapping) else None
        if default is None and raw.get("type") == "constant" and raw.get("query"):
            default = (str(raw["query"]),)  # a constant's value is its query
        options = tuple(
            str(o.get("value"))
            for o in raw.get("options", []) or []
            if isinstance(o, Mapping) and o.get("value") not in (None, ALL)
        )
        found.append(
            Variable(
                name=str(raw.get("name", "")),
                kind=str(raw.get("type", "")),
                default=default,
                all_value=raw.get("allValue") or None,
                options=options,
                include_all=bool(raw.get("includeAll")),
            )
        )
    return found


def without_default(found: Sequence[Variable]) -> list[Variable]:
    """Variables that open with no value."""
    return [v for v in found if not v.has_default]


def _escape(value: str) -> str:
    return REGEX_SPECIAL.sub(r"\\\1", value)


def format_value(variable: Variable, values: Sequence[str]) -> str | None:
    """A variable's value as Grafana writes it into PromQL; None when there is none to write.

    ``All`` becomes ``allValue`` (or every option as a regex alternation); several values
    become ``(a|b)`` with regex metacharacters escaped; one value is written as it is.
    """
    if ALL in values:
        if variable.all_value is not None:
            return variable.all_value
        values = list(variable.options)
        if not values:
            return None
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return "(" + "|".join(_escape(v) for v in values) + ")"


def default_values(found: Sequence[Variable]) -> dict[str, str]:
    """Variable name -> its default as written into PromQL; variables without one are left out."""
    values: dict[str, str] = {}
    for variable in found:
        if variable.default is None or not variable.has_default:
            continue
        written = format_value(variable, variable.default)
        if written is not None:
            values[variable.name] = written
    return values


def render(template: str, values: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """``template`` with every variable reference replaced; the names that had no value.

    Built-ins (``$__rate_interval``...) take :data:`BUILTINS` unless ``values`` names them.
    """
    known = {**BUILTINS, **values}
    unresolved: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name = match.group("plain") or match.group("braced") or match.group("old")
        if name in known:
            return known[name]
        if name not in unresolved:
            unresolved.append(name)
        return match.group(0)

    return VARIABLE_REFERENCE.sub(substitute, template), tuple(unresolved)


def _panels(panels: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels", []) or [])
        else:
            yield panel


def panel_queries(model: Mapping[str, Any], name: str) -> list[PanelQuery]:
    """Each visible PromQL target of each panel, rendered with the variables' defaults."""
    values = default_values(variables(model))
    queries = []
    for panel in _panels(model.get("panels", []) or []):
        title = str(panel.get("title") or f"id {panel.get('id', '?')}")
        for target in panel.get("targets", []) or []:
            template = target.get("expr")
            if not template or target.get("hide"):
                continue
            expr, unresolved = render(str(template), values)
            queries.append(
                PanelQuery(name, title, str(target.get("refId", "?")), template, expr, unresolved)
            )
    return queries


def panel_count(model: Mapping[str, Any]) -> int:
    return sum(1 for _ in _panels(model.get("panels", []) or []))
