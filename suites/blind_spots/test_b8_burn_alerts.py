"""B8 SLO burn alerts: both multiwindow burn-rate pages loaded and healthy, no silence over a
release alert, and every release alert has a severity, a runbook and a receiver that notifies.

Release alerts are the alerting rules of the deployment's ops dir
(``ops_dir/prometheus/rules``); each is judged as the live Prometheus and Alertmanager run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from pytest_spark import CheckEvidence, Reach, Target
from pytest_spark.probes import alert_rules, alertmanager, prometheus
from pytest_spark.probes.waiting import wait_until
from suites.limits import Limits

pytestmark = pytest.mark.blind_spot("B8")

RUNBOOK_KEYS = ("runbook_url", "runbook")


def _release_alert_names(spark_target: Target) -> set[str]:
    rules_dir = Path(spark_target.require("ops_dir")) / "prometheus" / "rules"
    names = {d.alert for d in alert_rules.alert_definitions(rules_dir)}
    assert names, f"no alerting rule in {rules_dir}: the release defines no alert to page on"
    return names


def _release_alerts(
    reach: Reach, spark_target: Target, spark_evidence: CheckEvidence
) -> list[prometheus.LoadedRule]:
    """The release alerts as the live Prometheus loaded them."""
    names = _release_alert_names(spark_target)
    with reach("prometheus_url") as [url]:
        loaded = [r for r in prometheus.alerting(prometheus.fetch_rules(url)) if r.name in names]
    spark_evidence.note(
        f"release alerts loaded at {url}: {sorted(r.name for r in loaded)}; "
        f"defined in ops: {sorted(names)}"
    )
    assert loaded, (
        f"none of the release alerts {sorted(names)} is loaded in Prometheus at {url}; "
        "check its rule_files"
    )
    return loaded


def _labels(rules: list[prometheus.LoadedRule]) -> dict[str, Mapping[str, str]]:
    return {r.name: r.labels for r in rules}


@pytest.mark.parametrize("speed", ["fast", "slow"], ids=["fast_1h_5m", "slow_6h_30m"])
def test_burn_rate_alert_loaded_and_healthy(
    speed: str, reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    b8 = limits.b8
    long_s, short_s, factor = (
        (b8.fast_long_window_s, b8.fast_short_window_s, b8.fast_burn_factor)
        if speed == "fast"
        else (b8.slow_long_window_s, b8.slow_short_window_s, b8.slow_burn_factor)
    )
    windows = prometheus.describe_windows([long_s, short_s])

    def candidates(rules: list[prometheus.LoadedRule]) -> list[prometheus.BurnRateAlert]:
        return prometheus.burn_rate_alerts(rules, long_s, short_s, factor)

    with reach("prometheus_url") as [url]:
        # A rule file loaded a moment ago is listed but not evaluated yet (health "unknown");
        # one that is not listed at all was never loaded, and waiting will not change that.
        waited = wait_until(
            b8.rules_evaluated_wait_s,
            f"the {windows} burn-rate rules evaluated",
            lambda _: prometheus.fetch_rules(url),
            lambda rs: not candidates(rs) or any(c.rule.healthy for c in candidates(rs)),
        )
    rules = waited.value
    found = candidates(rules)
    alerts = prometheus.alerting(rules)
    spark_evidence.note(
        f"{len(alerts)} alerting rules loaded at {url}; reading both {windows}: "
        + (
            "; ".join(
                f"{c.rule.name} (windows {prometheus.describe_windows(c.windows)}, "
                f"factor {factor:g} {'present' if c.has_factor else 'absent'}, "
                f"health {c.rule.health}{', ' + c.rule.last_error if c.rule.last_error else ''})"
                for c in found
            )
            or "none"
        )
    )
    with_factor = [c for c in found if c.has_factor]
    healthy = [c for c in with_factor if c.rule.healthy]
    if not found:
        why = (
            f"no alerting rule in Prometheus at {url} reads both the {windows} windows (the "
            f"{factor:g}x multiwindow burn-rate page); loaded alerts: "
            + (", ".join(r.name for r in alerts) or "none")
            + " — check ops/prometheus/rules and Prometheus' rule_files"
        )
    elif not with_factor:
        why = (
            f"{', '.join(c.rule.name for c in found)} read the {windows} windows but none "
            f"compares against the {factor:g}x burn rate"
        )
    else:
        why = f"the {windows} burn-rate alert is loaded but not healthy: " + "; ".join(
            f"{c.rule.name} in {c.rule.file} health={c.rule.health} "
            f"lastError={c.rule.last_error!r} lastEvaluation={c.rule.last_evaluation}"
            for c in with_factor
        )
    spark_evidence.check(
        f"{speed}_burn_alerts_loaded",
        len(healthy),
        at_least=b8.burn_alerts_loaded_at_least,
        why=f"{why} (without it the error budget burns with nobody paged)",
    )


def test_no_active_silence_matches_a_release_alert(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    alerts = _labels(_release_alerts(reach, spark_target, spark_evidence))
    with reach("alertmanager_url") as [url]:
        silences = alertmanager.fetch_silences(url)
    active = [s for s in silences if s.state == "active"]
    spark_evidence.note(
        f"{len(silences)} silences at {url}, {len(active)} active: "
        + ("; ".join(s.describe() for s in active) or "none")
    )
    hits = alertmanager.silencing(silences, alerts)
    spark_evidence.check(
        "silenced_release_alerts",
        len(hits),
        limit=limits.b8.silenced_release_alerts,
        why=f"{len(hits)} active silences mute release alerts, which would fire unseen: "
        + "; ".join(f"{alert} muted by {s.describe()}" for s, alert in hits)
        + f" — expire them (DELETE {url}/api/v2/silence/<id>) before the release",
    )


def test_every_release_alert_has_severity_and_runbook(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    loaded = _release_alerts(reach, spark_target, spark_evidence)
    missing = []
    for rule in loaded:
        gaps = []
        if not rule.labels.get("severity"):
            gaps.append("severity label")
        if not any(rule.annotations.get(k) or rule.labels.get(k) for k in RUNBOOK_KEYS):
            gaps.append("runbook_url annotation")
        if gaps:
            missing.append(f"{rule.name} ({rule.file}): no {' and no '.join(gaps)}")
    spark_evidence.check(
        "alerts_without_severity_or_runbook",
        len(missing),
        limit=limits.b8.alerts_without_severity_or_runbook,
        why=f"{len(missing)} of {len(loaded)} release alerts cannot be triaged by whoever is "
        "paged: " + "; ".join(missing),
    )


def test_every_release_alert_routes_to_a_receiver_with_an_integration(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    alerts = _labels(_release_alerts(reach, spark_target, spark_evidence))
    with reach("alertmanager_url") as [url]:
        config = alertmanager.fetch_config(url)
    spark_evidence.note(
        f"routing per {url}/api/v2/status: "
        + "; ".join(alertmanager.describe_routes(config, alerts))
    )
    findings = alertmanager.routing_findings(config, alerts)
    spark_evidence.check(
        "unrouted_alerts",
        len(findings),
        limit=limits.b8.unrouted_alerts,
        why=f"{len(findings)} release alerts would notify nobody: "
        + "; ".join(f"{f.alert} {f.problem}" for f in findings)
        + " — fix the route tree or the receiver in alertmanager.yml",
    )
