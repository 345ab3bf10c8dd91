"""B8 probe logic: matchers, the route tree as Alertmanager walks it, receivers, silences;
G07's synthetic page and the read-back of its notifications, pure and through a real
Alertmanager running the release's routing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_spark.probes import alertmanager
from pytest_spark.probes.alertmanager import Matcher, Notification
from pytest_spark.probes.waiting import wait_until

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


# --- G07 synthetic delivery --------------------------------------------------------------------


def test_each_synthetic_page_has_its_own_gate_run() -> None:
    first, second = alertmanager.synthetic_page(), alertmanager.synthetic_page()
    assert first.labels == {
        "alertname": "SparkGateDeliveryProbe",
        "severity": "page",
        "gate_run": first.gate_run,
    }
    assert first.gate_run != second.gate_run


def test_the_postable_alert_resolves_only_with_an_end() -> None:
    page = alertmanager.synthetic_page()
    firing = page.postable()
    assert firing["labels"] == dict(page.labels)
    assert firing["startsAt"] == page.starts_at.isoformat()
    assert "endsAt" not in firing
    assert "synthetic" in firing["annotations"]["summary"].lower()
    end = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert page.postable(ends_at=end)["endsAt"] == "2026-11-29T12:00:00+00:00"


def test_notifications_are_read_from_stored_alerts_or_whole_webhook_payloads() -> None:
    run = {"alertname": "SparkGateDeliveryProbe", "gate_run": "r1"}
    stored = [
        {"status": "firing", "labels": run, "receiver": "spark-oncall", "receivedAt": "t1"},
        "not an alert",
    ]
    payloads = [
        {
            "receiver": "platform-queue",
            "status": "resolved",
            "alerts": [{"status": "resolved", "labels": run}, {"labels": {"gate_run": "r2"}}],
        }
    ]
    assert alertmanager.parse_notifications(stored) == [
        Notification("spark-oncall", "firing", run, "t1")
    ]
    assert alertmanager.parse_notifications(payloads) == [
        Notification("platform-queue", "resolved", run),
        Notification("platform-queue", "resolved", {"gate_run": "r2"}),
    ]
    with pytest.raises(ValueError, match="not a JSON list"):
        alertmanager.parse_notifications({"alerts": []})


def test_only_the_named_receiver_with_the_runs_label_and_status_counts() -> None:
    got = [
        Notification("platform-queue", "firing", {"gate_run": "r1"}),
        Notification("spark-oncall", "firing", {"gate_run": "r0"}),
        Notification("spark-oncall", "resolved", {"gate_run": "r1"}),
    ]
    assert alertmanager.delivered_to(got, "r1", "spark-oncall") is None
    assert alertmanager.delivered_to(got, "r1", "spark-oncall", "resolved") == got[2]
    assert alertmanager.delivered_to(got, "r1", "platform-queue") == got[0]
    assert alertmanager.of_run(got, "r1") == [got[0], got[2]]
    assert got[0].describe() == "firing via platform-queue"


@pytest.fixture(scope="module")
def release_alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real Alertmanager running ops/alertmanager.yml, every webhook pointed at an alert
    sink: (its URL, the sink's read-back URL)."""
    from spark_sandbox.services.alert_sink import start_alert_sink
    from spark_sandbox.services.prometheus import start_alertmanager
    from spark_sandbox.wiring import routed_to_sink

    run_dir = tmp_path_factory.mktemp("g07-alerting")
    sink_proc, sink = start_alert_sink(run_dir)
    try:
        routing = routed_to_sink((REPO / "ops" / "alertmanager.yml").read_text(), sink.webhook_url)
        am_proc, am = start_alertmanager(run_dir, sink.webhook_url, config_text=routing)
        try:
            yield am.url, sink.webhook_url
        finally:
            am_proc.stop()
    finally:
        sink_proc.stop()


def _delivered(readback_url: str, gate_run: str, receiver: str, status: str) -> bool:
    waited = wait_until(
        20,
        f"{status} notification of {gate_run} via {receiver}",
        lambda _: alertmanager.fetch_notifications(readback_url),
        lambda got: alertmanager.delivered_to(got, gate_run, receiver, status) is not None,
    )
    return waited.done


def test_a_page_is_delivered_to_the_on_call_receiver_then_resolved(
    release_alertmanager: tuple[str, str],
) -> None:
    am_url, readback_url = release_alertmanager
    page = alertmanager.synthetic_page()
    alertmanager.fire(am_url, page)
    assert _delivered(readback_url, page.gate_run, "spark-oncall", "firing")
    alertmanager.resolve(am_url, page)
    assert _delivered(readback_url, page.gate_run, "spark-oncall", "resolved")
    got = alertmanager.of_run(alertmanager.fetch_notifications(readback_url), page.gate_run)
    assert {n.receiver for n in got} == {"spark-oncall"}


def test_an_alert_that_is_not_a_page_reaches_the_queue_not_the_on_call(
    release_alertmanager: tuple[str, str],
) -> None:
    am_url, readback_url = release_alertmanager
    ticket = alertmanager.synthetic_page(severity="ticket")
    alertmanager.fire(am_url, ticket)
    try:
        assert _delivered(readback_url, ticket.gate_run, "platform-queue", "firing")
        got = alertmanager.fetch_notifications(readback_url)
        assert alertmanager.delivered_to(got, ticket.gate_run, "spark-oncall") is None
    finally:
        alertmanager.resolve(am_url, ticket)
