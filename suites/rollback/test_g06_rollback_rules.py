"""G06 Rollback triggers and burn-rate alerts: T01–T14 (each judged by the rollback suite,
which G06 requires), both multiwindow burn-rate pages, and the absent-signal alert that pages
when the triggers go blind, each loaded in the live Prometheus, healthy and recently evaluated.
"""

from __future__ import annotations

import pytest

from pytest_spark import CheckEvidence, Reach, RollbackTriggers
from pytest_spark.probes import alert_rules, prometheus
from suites.limits import Limits
from suites.rollback.conftest import RuleArtefacts

pytestmark = pytest.mark.go_nogo("G06")

# The label that marks an alert as the release's absent-signal page (rules/rollback.yml).
ABSENT_SIGNAL = ("signal", "absent")


def test_burn_rate_pages_loaded_and_healthy(
    reach: Reach,
    rollback_triggers: RollbackTriggers,
    limits: Limits,
    spark_evidence: CheckEvidence,
) -> None:
    settings, b8 = rollback_triggers.rules, limits.b8
    pages = {
        "fast": (b8.fast_long_window_s, b8.fast_short_window_s, b8.fast_burn_factor),
        "slow": (b8.slow_long_window_s, b8.slow_short_window_s, b8.slow_burn_factor),
    }
    with reach("prometheus_url") as [url]:
        live = alert_rules.evaluated_rules(url, settings.rules_evaluated_wait_s)
    problems = []
    for speed, (long_s, short_s, factor) in pages.items():
        found = [
            c for c in prometheus.burn_rate_alerts(live, long_s, short_s, factor) if c.has_factor
        ]
        reasons = [alert_rules.not_running(c.rule, settings.evaluation_age_s) for c in found]
        spark_evidence.note(
            f"{speed} burn-rate page ({prometheus.describe_windows([long_s, short_s])}, "
            f"{factor:g}x): {[c.rule.name for c in found] or 'none loaded'}"
        )
        if not found:
            problems.append(f"no {speed} burn-rate page loaded")
        elif all(reasons):
            problems += [r for r in reasons if r]
    spark_evidence.check(
        "burn_rate_rules_unhealthy",
        len(problems),
        limit=settings.burn_rate_rules_unhealthy,
        unit="pages",
        why=f"an SLO burn-rate page cannot fire at {url}: {'; '.join(problems)}",
    )


def test_absent_signal_alert_loaded_healthy_and_tested(
    reach: Reach,
    rollback_triggers: RollbackTriggers,
    rule_artefacts: RuleArtefacts,
    promtool_runs: dict[str, alert_rules.PromtoolRun],
    spark_evidence: CheckEvidence,
) -> None:
    settings = rollback_triggers.rules
    key, value = ABSENT_SIGNAL
    defined = [r for r in rule_artefacts.rules.values() if r.labels.get(key) == value]
    with reach("prometheus_url") as [url]:
        live = alert_rules.evaluated_rules(url, settings.rules_evaluated_wait_s)
    problems = [] if defined else [f"{rule_artefacts.rule_file.name} has no {key}={value} alert"]
    for rule in defined:
        loaded = [r for r in prometheus.alerting(live) if r.name == rule.alert]
        reasons = [alert_rules.not_running(r, settings.evaluation_age_s) for r in loaded]
        run = promtool_runs.get(rule.alert)
        cases = rule_artefacts.cases.get(rule.alert, alert_rules.AlertCases())
        spark_evidence.note(
            f"{rule.alert}: {rule.expr.strip()} for {rule.for_s:g} s; loaded {len(loaded)}; "
            f"promtool {cases.firing} firing / {cases.quiet} quiet: "
            f"{'passed' if run and run.passed else 'FAILED'}"
        )
        if not loaded:
            problems.append(f"{rule.alert} is not loaded")
        problems += [r for r in reasons if r]
        if not (run and run.passed and cases.firing and cases.quiet):
            problems.append(f"{rule.alert}: promtool cases missing or failing")
            if run:
                spark_evidence.attach(f"promtool-{rule.alert}.txt", run.output)
    spark_evidence.check(
        "absent_signal_rules_unhealthy",
        len(problems),
        limit=settings.absent_signal_rules_unhealthy,
        unit="problems",
        why="when the API's series disappear every trigger goes quiet, and nothing pages "
        f"about it: {'; '.join(problems)}",
    )
