"""Reading alert rules: comparisons and selectors from the PromQL syntax tree, promtool cases
per alert (with the real promtool), evaluation age."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_spark.probes import alert_rules
from pytest_spark.probes.prometheus import LoadedRule

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("x > 0.4", [(">", 0.4)]),
        ("0.4 < x", [(">", 0.4)]),
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 0.4", [(">", 0.4)]),
        ("a > 5 and on () (b / c > 0.01)", [(">", 5.0), (">", 0.01)]),
        ("max(a) > 120 and on () max(b) == 1", [(">", 120.0), ("==", 1.0)]),
        ("a / clamp_min(b, 1) > 0.1", [(">", 0.1)]),
        ("sum(rate(a[5m])) * 60 > 50", [(">", 50.0)]),
        ("a > bool 3", [(">", 3.0)]),
        ("a > b", []),
        ("a > (2)", [(">", 2.0)]),
    ],
)
def test_comparisons_in_the_order_written(expr: str, expected: list[tuple[str, float]]) -> None:
    assert alert_rules.comparisons(expr) == expected


def test_selectors_are_sorted_deduplicated_and_skip_absent() -> None:
    expr = (
        'sum(rate(a{job="x",route!~"/m"}[5m])) / sum(rate(a{route!~"/m",job="x"}[5m])) > 1 '
        'and on () max(b offset 30m) > 2 or absent(c{job="x"}) or absent_over_time(d[5m])'
    )
    assert alert_rules.selectors(expr) == ['a{job="x",route!~"/m"}', "b{}"]


def test_parse_and_compare_declared_comparisons() -> None:
    assert alert_rules.parse_comparison("> 0.4") == (">", 0.4)
    assert alert_rules.parse_comparison(">= 2.68435456e8") == (">=", 268435456.0)
    with pytest.raises(ValueError, match="not a comparison"):
        alert_rules.parse_comparison("above 0.4")
    assert alert_rules.same_comparisons([(">", 0.1 + 0.2)], [(">", 0.3)])
    assert not alert_rules.same_comparisons([(">", 0.4)], [(">=", 0.4)])
    assert not alert_rules.same_comparisons([(">", 0.4)], [(">", 0.4), ("==", 1)])


def test_the_release_rules_parse_with_their_triggers() -> None:
    rules = alert_rules.load_alert_rules(REPO / "ops/prometheus/rules/rollback.yml")
    triggers = sorted(r.labels["trigger"] for r in rules.values() if "trigger" in r.labels)
    assert triggers == [f"T{n:02d}" for n in range(1, 15)]
    assert rules["SparkRollbackApiLatencyP95"].for_s == 300


def _rule_and_cases(tmp_path: Path, threshold: str, exp_alerts: str) -> Path:
    (tmp_path / "rules.yml").write_text(
        textwrap.dedent(f"""\
            groups:
              - name: g
                rules:
                  - alert: High
                    expr: x > {threshold}
                    for: 1m
                  - alert: Other
                    expr: y > 1
            """)
    )
    tests = tmp_path / "rules.test.yml"
    tests.write_text(
        textwrap.dedent(f"""\
            rule_files: [rules.yml]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: x
                    values: 5+0x10
                alert_rule_test:
                  - eval_time: 5m
                    alertname: High
                    exp_alerts: {exp_alerts}
                  - eval_time: 5m
                    alertname: High
                    exp_alerts: []
              - interval: 1m
                input_series:
                  - series: y
                    values: 0+0x10
                alert_rule_test:
                  - eval_time: 5m
                    alertname: Other
                    exp_alerts: []
            """)
    )
    return tests


def test_promtool_runs_one_alerts_cases_alone(tmp_path: Path) -> None:
    # The second High case expects silence while x stays above 4: it fails, but only High's.
    tests = _rule_and_cases(tmp_path, "4", "[{exp_labels: {}}]")
    work = tmp_path / "work"
    work.mkdir()
    assert alert_rules.cases_by_alert(tests) == {
        "High": alert_rules.AlertCases(firing=1, quiet=1),
        "Other": alert_rules.AlertCases(firing=0, quiet=1),
    }
    high = alert_rules.run_promtool_cases(tests, "High", work, timeout_s=30)
    other = alert_rules.run_promtool_cases(tests, "Other", work, timeout_s=30)
    assert not high.passed and "High" in high.output
    assert other.passed, other.output
    missing = alert_rules.run_promtool_cases(tests, "Nobody", work, timeout_s=30)
    assert not missing.passed and "no case for Nobody" in missing.output


def test_promtool_that_is_not_installed_fails_with_a_message(tmp_path: Path) -> None:
    tests = _rule_and_cases(tmp_path, "4", "[]")
    run = alert_rules.run_promtool_cases(
        tests, "High", tmp_path, promtool="promtool-not-installed", timeout_s=5
    )
    assert not run.passed and "not found" in run.output


def test_a_broken_test_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "bad.test.yml"
    bad.write_text("rule_files: [x]\n")
    with pytest.raises(alert_rules.RuleFileError, match=r"bad\.test\.yml"):
        alert_rules.cases_by_alert(bad)


def _loaded(last_evaluation: str) -> LoadedRule:
    return LoadedRule("A", "alerting", "x > 1", "g", "f", "ok", "", last_evaluation)


def test_evaluation_age_reads_nanosecond_timestamps() -> None:
    now = datetime(2026, 11, 29, 12, 0, 10, tzinfo=UTC)
    assert alert_rules.evaluation_age_s(_loaded("2026-11-29T12:00:00.123456789Z"), now) == (
        pytest.approx(9.876544)
    )
    assert alert_rules.evaluation_age_s(_loaded("0001-01-01T00:00:00Z"), now) is None
    assert alert_rules.evaluation_age_s(_loaded(""), now) is None


def test_not_running_names_health_and_a_stale_evaluation() -> None:
    now = datetime(2026, 11, 29, 12, 1, 0, tzinfo=UTC)
    fresh = _loaded("2026-11-29T12:00:30Z")
    assert alert_rules.not_running(fresh, 60, now) is None
    assert alert_rules.not_running(fresh, 10, now) == "A: last evaluated 30 s ago"
    never = _loaded("0001-01-01T00:00:00Z")
    assert alert_rules.not_running(never, 60, now) == "A: last evaluated never"
    broken = LoadedRule("A", "alerting", "x > 1", "g", "f", "err", "bad query", "")
    assert alert_rules.not_running(broken, 60, now) == "A: health err bad query"


def test_alert_definitions_of_the_repo_rules_skip_promtool_tests(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yml").write_text(
        "groups:\n- name: g\n  rules:\n  - record: x\n    expr: up\n"
        "  - alert: A\n    expr: up == 0\n    labels: {severity: page}\n"
    )
    (rules / "a.test.yml").write_text("rule_files: [a.yml]\ntests: []\n")
    [only] = alert_rules.alert_definitions(rules)
    assert (only.alert, only.file.name, dict(only.labels)) == ("A", "a.yml", {"severity": "page"})
    names = {d.alert for d in alert_rules.alert_definitions(REPO / "ops/prometheus/rules")}
    assert {"SparkApiErrorBudgetBurnFast", "SparkApiErrorBudgetBurnSlow"} <= names
