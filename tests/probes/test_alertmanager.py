"""B8 probe logic: matchers, the route tree as Alertmanager walks it, receivers, silences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_spark.probes import alertmanager
from pytest_spark.probes.alertmanager import Matcher

REPO = Path(__file__).resolve().parents[2]
PAGE = {"severity": "page", "team": "spark-oncall"}

CONFIG: dict[str, Any] = yaml.safe_load(
    """
route:
  receiver: queue
  routes:
    - receiver: audit
      match: {team: spark-oncall}
      continue: true
    - receiver: oncall
      matchers: ['severity="page"']
      routes:
        - receiver: blackhole
          match_re: {alertname: "Noisy.*"}
    - receiver: tickets
      matchers: ['severity=~"ticket|info"']
    - matchers: ['severity="inherit"']
receivers:
  - name: queue
    webhook_configs: [{url: "http://q.invalid/"}]
  - name: audit
    webhook_configs: [{url: "http://a.invalid/"}]
  - name: oncall
    pagerduty_configs: [{routing_key: "<secret>"}]
    webhook_configs: [{url: "http://o.invalid/"}]
  - name: blackhole
  - name: tickets
    email_configs: []
"""
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('severity="page"', Matcher("severity", "page")),
        ("severity = page", Matcher("severity", "page")),
        ('team!="a"', Matcher("team", "a", is_equal=False)),
        ('alertname=~"Spark.*"', Matcher("alertname", "Spark.*", is_regex=True)),
        ('x!~"a|b"', Matcher("x", "a|b", is_regex=True, is_equal=False)),
        ('q="say \\"hi\\""', Matcher("q", 'say "hi"')),
    ],
)
def test_parse_matcher(text: str, expected: Matcher) -> None:
    assert alertmanager.parse_matcher(text) == expected


def test_parse_matcher_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an Alertmanager matcher"):
        alertmanager.parse_matcher("severity")


def test_regex_is_anchored_and_a_missing_label_is_empty() -> None:
    assert not Matcher("alertname", "Burn", is_regex=True).matches({"alertname": "BurnFast"})
    assert Matcher("alertname", "Burn.*", is_regex=True).matches({"alertname": "BurnFast"})
    assert Matcher("team", "", is_equal=True).matches({})
    assert Matcher("team", "x", is_equal=False).matches({})


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        # continue: true on the first match keeps walking: both audit and on-call get it.
        ({"alertname": "BurnFast", **PAGE}, ["audit", "oncall"]),
        ({"alertname": "BurnFast", "severity": "page"}, ["oncall"]),
        ({"alertname": "NoisyThing", "severity": "page"}, ["blackhole"]),
        ({"alertname": "Disk", "severity": "ticket"}, ["tickets"]),
        ({"alertname": "Other"}, ["queue"]),
        # A child without a receiver inherits its parent's.
        ({"alertname": "X", "severity": "inherit"}, ["queue"]),
    ],
)
def test_receivers_for_follow_alertmanagers_walk(
    labels: dict[str, str], receivers: list[str]
) -> None:
    root = alertmanager.parse_route(CONFIG["route"])
    assert alertmanager.receivers_for(root, labels) == receivers


def test_integrations_count_only_non_empty_configs() -> None:
    assert alertmanager.integrations(CONFIG) == {
        "queue": ["webhook_configs"],
        "audit": ["webhook_configs"],
        "oncall": ["pagerduty_configs", "webhook_configs"],
        "blackhole": [],
        "tickets": [],
    }


def test_routing_findings_name_the_alert_and_the_silent_receiver() -> None:
    alerts = {
        "BurnFast": PAGE,
        "NoisyThing": {"severity": "page"},
        "Disk": {"severity": "ticket"},
    }
    findings = alertmanager.routing_findings(CONFIG, alerts)
    assert [(f.alert, f.problem) for f in findings] == [
        ("NoisyThing", "routes to receiver 'blackhole', which has no integration"),
        ("Disk", "routes to receiver 'tickets', which has no integration"),
    ]
    undefined = {"route": {"receiver": "nobody"}, "receivers": []}
    [finding] = alertmanager.routing_findings(undefined, {"A": {}})
    assert finding.problem == "routes to receiver 'nobody', which is not defined"


def test_the_repo_routing_pages_reach_the_on_call_webhook() -> None:
    config = yaml.safe_load((REPO / "ops" / "alertmanager.yml").read_text())
    pages = {"SparkApiErrorBudgetBurnFast": PAGE, "Unlabelled": {}}
    assert alertmanager.routing_findings(config, pages) == []
    assert alertmanager.describe_routes(config, pages) == [
        "SparkApiErrorBudgetBurnFast -> spark-oncall (webhook_configs)",
        "Unlabelled -> platform-queue (webhook_configs)",
    ]


def silence(state: str, *matchers: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"s-{state}",
        "status": {"state": state},
        "matchers": list(matchers),
        "createdBy": "release-train",
        "comment": "maintenance",
        "endsAt": "2026-11-27T11:00:00Z",
    }


def test_only_active_silences_that_match_a_release_alert_count() -> None:
    by_name = {"name": "alertname", "value": "BurnFast", "isRegex": False, "isEqual": True}
    by_regex = {"name": "alertname", "value": "Burn.*", "isRegex": True, "isEqual": True}
    by_instance = {"name": "instance", "value": "a:1", "isRegex": False}
    not_page = {"name": "severity", "value": "page", "isRegex": False, "isEqual": False}
    silences = alertmanager.parse_silences(
        [
            silence("active", by_name),
            silence("expired", by_name),
            silence("pending", by_regex),
            silence("active", by_name, by_instance),
            silence("active", not_page),
        ]
    )
    alerts = {"BurnFast": PAGE, "BurnSlow": PAGE}
    hits = alertmanager.silencing(silences, alerts)
    assert [(s.state, name) for s, name in hits] == [("active", "BurnFast")]
    assert hits[0][0].describe() == (
        "silence s-active {alertname=\"BurnFast\"} by 'release-train' until "
        "2026-11-27T11:00:00Z ('maintenance')"
    )
    [wide] = alertmanager.silencing(
        alertmanager.parse_silences([silence("active", by_regex)]), {"BurnFast": PAGE}
    )
    assert wide[1] == "BurnFast"
