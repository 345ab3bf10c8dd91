"""B8 Alertmanager: silences over release alerts, and where each release alert is routed.

An alert that fires but is silenced, or routed to a receiver with no integration (no webhook,
no PagerDuty, nothing), pages nobody, and nothing in Prometheus shows it. So the running
Alertmanager is asked for its active silences (``/api/v2/silences``) and its loaded
configuration (``/api/v2/status``: the YAML it actually runs), and its route tree is
evaluated here with each release alert's labels, the way Alertmanager itself does: depth
first, the first matching child wins unless it says ``continue: true``, and a node none of
whose children match takes the alert itself.

G07 Alert delivery: a synthetic page posted to ``/api/v2/alerts`` (labelled with a unique
``gate_run``), then read back from the on-call receiver's side as the notifications it got,
and resolved by posting it again with ``endsAt`` now.

Pure logic apart from the fetches and posts at the end.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

HTTP_TIMEOUT_S = 5.0
# `name op value` of a route's `matchers:` entry; the value may be quoted.
MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


# --- matchers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        """A missing label reads as the empty string, as in Alertmanager."""
        actual = labels.get(self.name, "")
        hit = (
            re.fullmatch(self.value, actual) is not None if self.is_regex else actual == self.value
        )
        return hit == self.is_equal

    def describe(self) -> str:
        op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
        return f'{self.name}{op[(self.is_regex, self.is_equal)]}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """One entry of a route's ``matchers:`` list, e.g. ``severity="page"`` or ``team=~"a|b"``."""
    found = MATCHER.match(text)
    if not found:
        raise ValueError(f"not an Alertmanager matcher: {text!r}")
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = json.loads(value)
    return Matcher(name, value, is_regex=op in ("=~", "!~"), is_equal=op in ("=", "=~"))


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


# --- the route tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    receiver: str
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    routes: tuple[Route, ...] = field(default_factory=tuple)


def parse_route(raw: Mapping[str, Any], parent_receiver: str = "") -> Route:
    """A route node with its children; a child without ``receiver`` inherits its parent's.
    ``match`` / ``match_re`` (deprecated) and ``matchers`` all apply."""
    matchers = [Matcher(str(k), str(v)) for k, v in (raw.get("match") or {}).items()]
    matchers += [
        Matcher(str(k), str(v), is_regex=True) for k, v in (raw.get("match_re") or {}).items()
    ]
    matchers += [parse_matcher(str(m)) for m in raw.get("matchers") or []]
    receiver = str(raw.get("receiver") or parent_receiver)
    return Route(
        receiver=receiver,
        matchers=tuple(matchers),
        continue_=bool(raw.get("continue", False)),
        routes=tuple(parse_route(child, receiver) for child in raw.get("routes") or []),
    )


def _matching(route: Route, labels: Mapping[str, str]) -> list[Route]:
    if not matches_all(route.matchers, labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        matched = _matching(child, labels)
        found.extend(matched)
        if matched and not child.continue_:
            break
    return found or [route]


def receivers_for(root: Route, labels: Mapping[str, str]) -> list[str]:
    """The receivers an alert with ``labels`` is delivered to (the root matches everything)."""
    root = Route(root.receiver, (), root.continue_, root.routes)
    names: list[str] = []
    for route in _matching(root, labels):
        if route.receiver not in names:
            names.append(route.receiver)
    return names


def integrations(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Receiver name -> its integrations (``webhook_configs``, ``pagerduty_configs``...) that
    have at least one entry."""
    found: dict[str, list[str]] = {}
    for receiver in config.get("receivers") or []:
        name = str(receiver.get("name", ""))
        found[name] = sorted(
            key for key, value in receiver.items() if key.endswith("_configs") and value
        )
    return found


@dataclass(frozen=True)
class RoutingFinding:
    alert: str
    receivers: tuple[str, ...]
    problem: str


def routing_findings(
    config: Mapping[str, Any], alerts: Mapping[str, Mapping[str, str]]
) -> list[RoutingFinding]:
    """For each alert (name -> labels): a finding when a receiver it reaches has no
    integration or is not defined at all."""
    root = parse_route(config.get("route") or {})
    wired = integrations(config)
    findings = []
    for alert, labels in alerts.items():
        reached = receivers_for(root, {"alertname": alert, **labels})
        for receiver in reached:
            if receiver not in wired:
                problem = f"routes to receiver {receiver!r}, which is not defined"
            elif not wired[receiver]:
                problem = f"routes to receiver {receiver!r}, which has no integration"
            else:
                continue
            findings.append(RoutingFinding(alert, tuple(reached), problem))
    return findings


def describe_routes(
    config: Mapping[str, Any], alerts: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """One line per alert: where it goes and through what."""
    root = parse_route(config.get("route") or {})
    wired = integrations(config)
    lines = []
    for alert, labels in sorted(alerts.items()):
        reached = receivers_for(root, {"alertname": alert, **labels})
        via = "; ".join(f"{r} ({', '.join(wired.get(r, [])) or 'no integration'})" for r in reached)
        lines.append(f"{alert} -> {via}")
    return lines


# --- silences --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Silence:
    id: str
    state: str
    matchers: tuple[Matcher, ...]
    created_by: str
    comment: str
    ends_at: str

    def describe(self) -> str:
        matchers = ", ".join(m.describe() for m in self.matchers)
        return (
            f"silence {self.id} {{{matchers}}} by {self.created_by!r} until {self.ends_at} "
            f"({self.comment!r})"
        )


def parse_silences(body: Sequence[Mapping[str, Any]]) -> list[Silence]:
    return [
        Silence(
            id=str(s.get("id", "")),
            state=str(s.get("status", {}).get("state", "")),
            matchers=tuple(
                Matcher(
                    str(m["name"]),
                    str(m["value"]),
                    is_regex=bool(m.get("isRegex", False)),
                    is_equal=bool(m.get("isEqual", True)),
                )
                for m in s.get("matchers", [])
            ),
            created_by=str(s.get("createdBy", "")),
            comment=str(s.get("comment", "")),
            ends_at=str(s.get("endsAt", "")),
        )
        for s in body
    ]


def silencing(
    silences: Iterable[Silence], alerts: Mapping[str, Mapping[str, str]]
) -> list[tuple[Silence, str]]:
    """(active silence, alert name) for each active silence that mutes a release alert.

    An alert is judged by the labels its rule gives it; a silence on a label the rule does not
    set (say ``instance``) is not counted, since it mutes only some of the alert's series.
    """
    hits = []
    for silence in silences:
        if silence.state != "active":
            continue
        for alert, labels in sorted(alerts.items()):
            if matches_all(silence.matchers, {"alertname": alert, **labels}):
                hits.append((silence, alert))
    return hits


# --- synthetic delivery (G07) ----------------------------------------------------------------

DELIVERY_PROBE_ALERT = "SparkGateDeliveryProbe"


@dataclass(frozen=True)
class SyntheticAlert:
    """A page only the gate sends: its ``gate_run`` label tells this run's notifications apart
    from any other's, and its annotation tells whoever it pages that nothing is wrong."""

    labels: Mapping[str, str]
    starts_at: datetime

    @property
    def gate_run(self) -> str:
        return self.labels["gate_run"]

    def postable(self, ends_at: datetime | None = None) -> dict[str, Any]:
        """The API v2 ``postableAlert``; with ``ends_at`` it resolves the alert then."""
        body: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": {
                "summary": "Synthetic page of the Spark release gate (G07); resolves itself.",
            },
            "startsAt": self.starts_at.isoformat(),
        }
        if ends_at is not None:
            body["endsAt"] = ends_at.isoformat()
        return body


def synthetic_page(severity: str = "page") -> SyntheticAlert:
    labels = {
        "alertname": DELIVERY_PROBE_ALERT,
        "severity": severity,
        "gate_run": uuid.uuid4().hex,
    }
    return SyntheticAlert(labels, datetime.now(UTC))


@dataclass(frozen=True)
class Notification:
    """One alert as a receiver got it: through which receiver, firing or resolved."""

    receiver: str
    status: str
    labels: Mapping[str, str]
    received_at: str = ""

    def describe(self) -> str:
        at = f" at {self.received_at}" if self.received_at else ""
        return f"{self.status} via {self.receiver or 'an unnamed receiver'}{at}"


def parse_notifications(body: object) -> list[Notification]:
    """A read-back's JSON list: alerts each carrying their ``receiver`` (the sandbox's alert
    sink stores them so), or whole Alertmanager webhook payloads (``receiver``, ``status``,
    ``alerts[]``), as a bridge that keeps what it was sent would list them."""
    if not isinstance(body, list):
        raise ValueError(f"the read-back answered {type(body).__name__}, not a JSON list")
    found = []
    for entry in body:
        if not isinstance(entry, Mapping):
            continue
        alerts = entry.get("alerts")
        for alert in alerts if isinstance(alerts, list) else [entry]:
            if isinstance(alert, Mapping):
                found.append(
                    Notification(
                        receiver=str(alert.get("receiver") or entry.get("receiver") or ""),
                        status=str(alert.get("status") or entry.get("status") or ""),
                        labels={str(k): str(v) for k, v in (alert.get("labels") or {}).items()},
                        received_at=str(alert.get("receivedAt") or ""),
                    )
                )
    return found


def of_run(notifications: Iterable[Notification], gate_run: str) -> list[Notification]:
    """The notifications of one synthetic alert, in the order the read-back lists them."""
    return [n for n in notifications if n.labels.get("gate_run") == gate_run]


def delivered_to(
    notifications: Iterable[Notification], gate_run: str, receiver: str, status: str = "firing"
) -> Notification | None:
    """The first notification of ``gate_run`` that ``receiver`` got with ``status``."""
    return next(
        (
            n
            for n in of_run(notifications, gate_run)
            if n.receiver == receiver and n.status == status
        ),
        None,
    )


# --- HTTP ------------------------------------------------------------------------------------


def fetch_silences(base_url: str) -> list[Silence]:
    response = httpx.get(f"{base_url.rstrip('/')}/api/v2/silences", timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    return parse_silences(response.json())


def fetch_config(base_url: str) -> dict[str, Any]:
    """The configuration the running Alertmanager loaded: ``/api/v2/status`` config.original."""
    import yaml

    response = httpx.get(f"{base_url.rstrip('/')}/api/v2/status", timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    config = yaml.safe_load(response.json()["config"]["original"])
    if not isinstance(config, dict):
        raise ValueError("Alertmanager's /api/v2/status carries no configuration")
    return config


def post_alerts(base_url: str, alerts: Sequence[Mapping[str, Any]]) -> None:
    response = httpx.post(
        f"{base_url.rstrip('/')}/api/v2/alerts", json=list(alerts), timeout=HTTP_TIMEOUT_S
    )
    response.raise_for_status()


def fire(base_url: str, alert: SyntheticAlert) -> None:
    post_alerts(base_url, [alert.postable()])


def resolve(base_url: str, alert: SyntheticAlert) -> None:
    """The same labels again with ``endsAt`` now: Alertmanager resolves it and, for receivers
    with ``send_resolved``, notifies that it is over."""
    post_alerts(base_url, [alert.postable(ends_at=datetime.now(UTC))])


def fetch_notifications(readback_url: str) -> list[Notification]:
    response = httpx.get(readback_url, timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    return parse_notifications(response.json())
