"""B6 probe logic: dashboard variables, their defaults, panel queries rendered with them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.probes import grafana

REPO = Path(__file__).resolve().parents[2]
RELEASE_DASHBOARD = REPO / "ops" / "grafana" / "release.json"


def variable(name: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": name, "type": "custom", **extra}
    if value is not None:
        raw["current"] = {"text": value, "value": value}
    return raw


def dashboard(variables: list[dict[str, Any]], panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": "t", "templating": {"list": variables}, "panels": panels}


def panel(title: str, *exprs: str, **extra: Any) -> dict[str, Any]:
    targets = [{"refId": chr(65 + i), "expr": e} for i, e in enumerate(exprs)]
    return {"title": title, "type": "timeseries", "targets": targets, **extra}


def test_variables_with_and_without_a_saved_default() -> None:
    model = dashboard(
        [
            variable("job", "spark-api"),
            variable("route"),
            {"name": "env", "type": "constant", "query": "prod"},
            variable("empty", ""),
        ],
        [],
    )
    found = grafana.variables(model)
    assert [v.name for v in grafana.without_default(found)] == ["route", "empty"]
    assert grafana.default_values(found) == {"job": "spark-api", "env": "prod"}


def test_all_uses_all_value_or_every_option_as_an_alternation() -> None:
    with_all_value = grafana.Variable("s", "query", ("$__all",), ".*", ("A", "B"), True)
    assert grafana.format_value(with_all_value, ["$__all"]) == ".*"
    options_only = grafana.Variable("s", "custom", ("$__all",), None, ("THYAO", "GARAN.E"), True)
    assert grafana.format_value(options_only, ["$__all"]) == "(THYAO|GARAN\\.E)"
    nothing = grafana.Variable("s", "query", ("$__all",), None, (), True)
    assert grafana.format_value(nothing, ["$__all"]) is None


def test_multi_value_is_a_regex_alternation_and_single_value_is_literal() -> None:
    multi = grafana.Variable("route", "query", ("/a", "/b(x)"), None, (), False)
    assert grafana.format_value(multi, ["/a", "/b(x)"]) == "(/a|/b\\(x\\))"
    assert grafana.format_value(multi, ["/a"]) == "/a"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('up{job="$job"}', 'up{job="spark-api"}'),
        ('up{job="${job}"}', 'up{job="spark-api"}'),
        ('up{job="${job:raw}"}', 'up{job="spark-api"}'),
        ('up{job="[[job]]"}', 'up{job="spark-api"}'),
        ("rate(x[$__rate_interval])", "rate(x[1m])"),
        ("rate(x[$window])", "rate(x[5m])"),
    ],
)
def test_render_each_reference_syntax(template: str, expected: str) -> None:
    assert grafana.render(template, {"job": "spark-api", "window": "5m"}) == (expected, ())


def test_render_reports_references_without_a_value() -> None:
    expr, unresolved = grafana.render('x{a="$a", b="$b", c="${a}"}', {"b": "1"})
    assert unresolved == ("a",)
    assert expr == 'x{a="$a", b="1", c="${a}"}'


def test_panel_queries_include_rows_and_skip_hidden_targets() -> None:
    model = dashboard(
        [variable("job", "spark-api"), variable("route")],
        [
            panel("Requests", 'sum(rate(spark_http_requests_total{job="$job"}[5m]))'),
            {
                "type": "row",
                "title": "collapsed",
                "panels": [panel("By route", 'x{route=~"$route"}')],
            },
            {
                "title": "Hidden",
                "targets": [{"refId": "A", "expr": "up", "hide": True}, {"refId": "B"}],
            },
        ],
    )
    queries = grafana.panel_queries(model, "d.json")
    assert [(q.panel, q.ref_id, q.unresolved) for q in queries] == [
        ("Requests", "A", ()),
        ("By route", "A", ("route",)),
    ]
    assert queries[0].expr == 'sum(rate(spark_http_requests_total{job="spark-api"}[5m]))'
    assert queries[1].where == "d.json: panel 'By route' target A"


def test_wrapped_export_is_read(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"dashboard": dashboard([variable("job", "x")], [])}))
    assert [v.name for v in grafana.variables(grafana.load_dashboard(path))] == ["job"]


def test_the_release_dashboard_has_ten_panels_all_resolvable_with_defaults() -> None:
    model = grafana.load_dashboard(RELEASE_DASHBOARD)
    assert grafana.panel_count(model) == 10
    assert grafana.without_default(grafana.variables(model)) == []
    queries = grafana.panel_queries(model, RELEASE_DASHBOARD.name)
    assert queries and all(not q.unresolved for q in queries)
    assert all("$" not in q.expr for q in queries)


def test_release_dashboard_metrics_are_in_the_metrics_contract() -> None:
    contract = (REPO / "docs" / "metrics-contract.md").read_text()
    model = grafana.load_dashboard(RELEASE_DASHBOARD)
    for query in grafana.panel_queries(model, "release.json"):
        for metric in re.findall(r"\b(spark_[a-z_]+?)(?:_bucket)?\{", query.expr):
            assert f"`{metric}`" in contract, f"{query.where}: {metric} is not in the contract"
