"""T01–T14 rollback triggers as tested, live alert rules.

A trigger passes only if its promtool cases (a firing one, one just under its threshold, one
just short of its ``for:``) pass; its rule's comparisons and ``for:`` equal
``rollback-triggers.toml`` and its labels say who acts on it; the live Prometheus runs that same
rule, healthy and recently evaluated; and every series it reads exists on the target now (a
rule over a misspelt or renamed metric is quiet forever, which is fail-open).
"""

from __future__ import annotations

import pytest

from pytest_spark import CheckEvidence, Reach, RollbackTriggers, RuleSettings, Trigger
from pytest_spark.probes import alert_rules, prometheus
from pytest_spark.probes.waiting import wait_until
from suites.rollback.conftest import TRIGGERS, RuleArtefacts

# What the rollback automation and Alertmanager's routing key on.
REQUIRED_LABELS = {"severity": "page", "rollback": "auto"}
REQUIRED_ANNOTATIONS = ("summary", "runbook_url")


def _spec(rollback_triggers: RollbackTriggers, trigger: str) -> Trigger:
    spec = rollback_triggers.trigger.get(trigger)
    if spec is None:
        pytest.fail(f"rollback-triggers.toml has no [trigger.{trigger}]", pytrace=False)
    return spec


def present_series(
    url: str, selectors: list[str], settings: RuleSettings
) -> dict[str, alert_rules.SeriesPresence]:
    """Each selector's series, on every scrape target of its job; a Prometheus that has just
    started gets ``series_wait_s`` to scrape the targets once (discovery ticks every 5 s)."""

    def presence(_: float) -> dict[str, alert_rules.SeriesPresence]:
        lookback = settings.series_lookback_s
        return {s: alert_rules.series_presence(url, s, lookback) for s in selectors}

    waited = wait_until(
        settings.series_wait_s,
        "every series the rule reads present on every target",
        presence,
        lambda found: not any(p.missing for p in found.values()),
    )
    return waited.value


def drift(trigger: str, spec: Trigger, rule: alert_rules.AlertRule | None) -> list[str]:
    """How the rule file's rule differs from what rollback-triggers.toml declares."""
    if rule is None:
        return [f"the rule file has no alert {spec.alert}"]
    found: list[str] = []
    wanted = [alert_rules.parse_comparison(c) for c in spec.compare]
    written = alert_rules.comparisons(rule.expr)
    if not alert_rules.same_comparisons(written, wanted):
        found.append(
            f"compares {alert_rules.describe(written)}, declared {alert_rules.describe(wanted)}"
        )
    declared_for = prometheus.parse_duration(spec.for_)
    if rule.for_s != declared_for:
        found.append(f"for: {rule.for_s:g} s, declared {declared_for:g} s")
    for key, value in {"trigger": trigger, **REQUIRED_LABELS}.items():
        if rule.labels.get(key) != value:
            found.append(f"label {key}={rule.labels.get(key)!r}, must be {value!r}")
    found += [f"no {a} annotation" for a in REQUIRED_ANNOTATIONS if not rule.annotations.get(a)]
    return found


def live_problems(
    rule: alert_rules.AlertRule, live: list[prometheus.LoadedRule], max_age_s: float
) -> list[str]:
    """Why the live Prometheus is not running the release's rule (empty when it is)."""
    loaded = [r for r in live if r.kind == "alerting" and r.name == rule.alert]
    if not loaded:
        return [f"{rule.alert} is not loaded"]
    problems = []
    for r in loaded:
        reason = alert_rules.not_running(r, max_age_s)
        if reason:
            problems.append(reason)
        if not alert_rules.same_comparisons(
            alert_rules.comparisons(r.query), alert_rules.comparisons(rule.expr)
        ) or alert_rules.selectors(r.query) != alert_rules.selectors(rule.expr):
            problems.append(f"the loaded rule is not the release's: {r.query}")
    return problems


def promtool_failures(
    run: alert_rules.PromtoolRun | None,
    cases: alert_rules.AlertCases,
    rule: alert_rules.AlertRule | None,
) -> list[str]:
    """Why the rule's promtool cases do not prove it: a failed run, no firing case, or fewer
    quiet cases than one under the threshold plus one short of ``for:`` (none for ``for: 0s``)."""
    quiet_needed = 2 if rule is None or rule.for_s > 0 else 1
    failures = [] if run and run.passed else [run.output if run else "no promtool run"]
    if not cases.firing:
        failures.append("no firing case")
    if cases.quiet < quiet_needed:
        failures.append(
            f"{cases.quiet} quiet case(s), {quiet_needed} needed (under the threshold, short "
            "of for:)"
        )
    return failures


@pytest.mark.parametrize(
    "trigger", [pytest.param(t, marks=pytest.mark.rollback(t), id=t) for t in TRIGGERS]
)
def test_rollback_trigger(
    trigger: str,
    rollback_triggers: RollbackTriggers,
    rule_artefacts: RuleArtefacts,
    promtool_runs: dict[str, alert_rules.PromtoolRun],
    reach: Reach,
    spark_evidence: CheckEvidence,
) -> None:
    settings = rollback_triggers.rules
    spec = _spec(rollback_triggers, trigger)
    rule = rule_artefacts.rules.get(spec.alert)
    spark_evidence.note(f"{trigger}: {spec.alert} {', '.join(spec.compare)} for {spec.for_}")
    if rule is not None:
        spark_evidence.note(f"rule ({rule.file.name}): {rule.expr.strip()} for {rule.for_s:g} s")

    differences = drift(trigger, spec, rule)
    spark_evidence.check(
        "rule_drift",
        len(differences),
        limit=settings.rule_drift,
        unit="differences",
        why="the rule is not the trigger rollback-triggers.toml declares: "
        + "; ".join(differences),
    )

    run = promtool_runs.get(spec.alert)
    cases = rule_artefacts.cases.get(spec.alert, alert_rules.AlertCases())
    failures = promtool_failures(run, cases, rule)
    spark_evidence.note(
        f"promtool {rule_artefacts.test_file.name}: {cases.firing} firing and {cases.quiet} quiet "
        f"case(s) for {spec.alert}: {'passed' if run and run.passed else 'FAILED'}"
    )
    if run and not run.passed:
        spark_evidence.attach(f"promtool-{trigger}.txt", run.output)
    spark_evidence.check(
        "promtool_failures",
        len(failures),
        limit=settings.promtool_failures,
        unit="failures",
        why="the rule's unit tests do not prove it fires over its threshold and stays quiet "
        f"under it: {'; '.join(failures)}",
    )

    with reach("prometheus_url") as [url]:
        live = alert_rules.evaluated_rules(url, settings.rules_evaluated_wait_s)
        selectors = alert_rules.selectors(rule.expr) if rule else []
        counts = present_series(url, selectors, settings)
    problems = live_problems(rule, live, settings.evaluation_age_s) if rule else ["no rule"]
    spark_evidence.check(
        "rule_not_loaded",
        1 if problems else 0,
        limit=settings.rule_not_loaded,
        why=f"Prometheus at {url} does not run the release's rule: {'; '.join(problems)}",
    )
    spark_evidence.note(
        "series: " + ", ".join(f"{s} → {p.describe()}" for s, p in counts.items())
        if counts
        else "no series"
    )
    missing = (
        [f"{s} ({p.describe()})" for s, p in counts.items() if p.missing]
        if rule
        else ["no rule to read"]
    )
    spark_evidence.check(
        "series_missing",
        len(missing),
        limit=settings.series_missing,
        unit="selectors",
        why=f"the rule reads series the target does not have, so it can never fire: {missing}",
    )
