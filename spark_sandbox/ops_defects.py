"""The ops artefacts a deployment serves, and the ``ops`` layer defects' work on them.

The gate reads the ops artefacts a deployment serves (``Endpoints.ops_dir``) and the live
Prometheus and Alertmanager. The defects of :mod:`spark_sandbox.defects` break them with:

- :func:`drop_6h_burn_alert` (``no_6h_burn_alert``): a copy of the ops dir whose Prometheus
  rules lack the 6 h / 30 m burn-rate alert, so Prometheus loads only the fast-burn page.
- :func:`drop_dashboard_variable_default` (``dashboard_variable_without_default``): a copy in
  which one Grafana template variable has lost its ``current`` value.
- :func:`silence_release_alert` (``silenced_release_alert``): an active Alertmanager silence
  on a release alert, created once Alertmanager is up.
- :func:`pend_trigger_in_stage` (``trigger_pending_in_stage``): a copy whose T01 rule compares
  against 0 and waits 1 h, so under any traffic it is pending through a whole canary stage.
- :func:`loosen_stage_threshold` (``loose_stage_threshold``) and :func:`thin_canary_traffic`
  (``thin_canary_traffic``): a copy of ``canary-plan.toml`` whose S1 threshold is looser than
  T01's, or whose sandbox traffic is far below a stage's minimum sample. Plan values are
  changed line by line, so the copy keeps the released comments and layout.
- :func:`empty_recovery_target` (``pitr_target_left_empty``): a copy of ``backup.toml`` whose
  restore runbook leaves ``recovery_target_time`` empty, so a restore replays to the end.

A defect whose artefact is missing is a :class:`OpsDefectError` naming the file it needs,
never a healthy-looking sandbox. ``$SPARK_SANDBOX_OPS_DIR`` replaces the repo's ``ops/`` as
the source (a candidate change of the artefacts, or a test's own).

Not a defect: :class:`AlertForCap`, the drill setting (``Sandbox(drill_alert_for="3s")``) that
caps every alerting rule's ``for:`` in the copy, so a drill sees rules fire in seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

OPS_DIR = Path(__file__).resolve().parent.parent / "ops"
# Serve another ops dir (a candidate change, or a test's own artefacts) instead of the repo's.
OPS_DIR_ENV = "SPARK_SANDBOX_OPS_DIR"

NO_6H_BURN_ALERT = "no_6h_burn_alert"
DASHBOARD_VARIABLE_WITHOUT_DEFAULT = "dashboard_variable_without_default"
SILENCED_RELEASE_ALERT = "silenced_release_alert"

ROLLBACK_RULES = Path("prometheus") / "rules" / "rollback.yml"
CANARY_PLAN = "canary-plan.toml"
BACKUP_RUNBOOK = "backup.toml"
# trigger_pending_in_stage: the trigger whose rule then holds under any traffic, and the
# `for:` that keeps it pending (never firing) through a stage.
PENDING_TRIGGER = "T01"
PENDING_FOR = "1h"
# loose_stage_threshold: S1's stage limit in ms, looser than T01's 400 ms.
LOOSE_S1_BELOW_MS = 500
# thin_canary_traffic: the sandbox's requests per second in all and to the canary; a 15 s
# window then carries about 30 canary requests, under every stage's minimum sample.
THIN_RATE = 4
THIN_CANARY_RATE = 2

# A 6 h window in PromQL: a range selector `[6h]` or a recording-rule name like `rate6h`.
SIX_HOUR_WINDOW = re.compile(r"\b6h\b|rate6h\b|_6h\b")
SILENCE_HOURS = 24


class OpsDefectError(RuntimeError):
    """An ops defect cannot be applied because the artefact it changes is not there."""


def rule_files(ops_dir: Path) -> list[Path]:
    """The Prometheus rule files a deployment of ``ops_dir`` loads, in a stable order.

    A promtool unit-test file (top-level ``tests:``) kept next to the rules is not a rule file:
    Prometheus would refuse to start on it.
    """
    import yaml

    found = []
    for path in sorted((ops_dir / "prometheus" / "rules").glob("*.yml")):
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            document = None  # Prometheus itself reports a broken rule file, with its line
        if not (isinstance(document, dict) and "tests" in document):
            found.append(path)
    return found


def dashboards(ops_dir: Path) -> list[Path]:
    """The Grafana dashboards (JSON models) of ``ops_dir``."""
    return sorted((ops_dir / "grafana").glob("*.json"))


def ops_source() -> Path:
    """The ops dir a healthy deployment serves: ``$SPARK_SANDBOX_OPS_DIR`` or the repo's."""
    override = os.environ.get(OPS_DIR_ENV)
    return Path(override).resolve() if override else OPS_DIR


class OpsChange(Protocol):
    """A change to a copy of the ops dir (an ``ops`` layer defect of the blueprint)."""

    def require(self, source: Path) -> None: ...

    def change_copy(self, ops_dir: Path) -> None: ...


def prepare_ops_dir(
    changes: Sequence[OpsChange], run_dir: Path, source: Path | None = None
) -> Path:
    """The ops dir this deployment serves: ``source`` (default: the repo's ``ops/``) itself,
    or a copy in ``run_dir`` with the ``changes`` made to it."""
    source = source or ops_source()
    if not changes:
        return source
    # Checked on the source, so that the error names the artefact missing from the repo.
    for change in changes:
        change.require(source)
    copy = run_dir / "ops"
    shutil.copytree(source, copy)
    for change in changes:
        change.change_copy(copy)
    return copy


@dataclass(frozen=True)
class AlertForCap:
    """A drill setting, not a defect: every alerting rule's ``for:`` in the served copy is
    capped at ``at_most``, so that a drill sees a rule fire from live traffic in seconds
    instead of the minutes a release waits. Expressions and thresholds stay as released; the
    rate windows (``[5m]``) need no change, since with 1 s scrapes ``rate()`` has a value
    after two samples."""

    at_most: str

    def __post_init__(self) -> None:
        from pytest_spark.probes.prometheus import parse_duration

        parse_duration(self.at_most)  # a bad duration fails the start, before anything runs

    def require(self, source: Path) -> None:
        if not rule_files(source):
            raise OpsDefectError(
                f"a cap on alert durations needs rule files in {source / 'prometheus/rules'}"
            )

    def change_copy(self, ops_dir: Path) -> None:
        cap_alert_for(ops_dir, self.at_most)


def cap_alert_for(ops_dir: Path, at_most: str) -> list[str]:
    """Set every alerting rule's ``for:`` longer than ``at_most`` to ``at_most``; returns the
    alerts changed. Files are rewritten only when something changed (comments are lost)."""
    import yaml

    from pytest_spark.probes.prometheus import parse_duration

    cap = parse_duration(at_most)
    changed: list[str] = []
    for path in rule_files(ops_dir):
        document = yaml.safe_load(path.read_text()) or {}
        before = len(changed)
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule and parse_duration(str(rule.get("for", "0s"))) > cap:
                    rule["for"] = at_most
                    changed.append(str(rule["alert"]))
        if len(changed) > before:
            path.write_text(yaml.safe_dump(document, sort_keys=False))
    return changed


def drop_6h_burn_alert(ops_dir: Path) -> list[str]:
    """Remove every alerting rule whose expression uses a 6 h window; returns their names."""
    import yaml

    files = rule_files(ops_dir)
    if not files:
        raise OpsDefectError(
            f"{NO_6H_BURN_ALERT} needs Prometheus rule files in {ops_dir / 'prometheus/rules'}"
        )
    removed: list[str] = []
    for path in files:
        document = yaml.safe_load(path.read_text()) or {}
        changed = False
        for group in document.get("groups", []):
            kept = []
            for rule in group.get("rules", []):
                if "alert" in rule and SIX_HOUR_WINDOW.search(str(rule.get("expr", ""))):
                    removed.append(str(rule["alert"]))
                    changed = True
                else:
                    kept.append(rule)
            group["rules"] = kept
        if changed:
            path.write_text(yaml.safe_dump(document, sort_keys=False))
    if not removed:
        raise OpsDefectError(
            f"{NO_6H_BURN_ALERT}: no alerting rule with a 6h window in "
            f"{', '.join(p.name for p in files)}"
        )
    return removed


def drop_dashboard_variable_default(ops_dir: Path) -> str:
    """Remove the ``current`` default of the first template variable that has one."""
    found = dashboards(ops_dir)
    if not found:
        raise OpsDefectError(
            f"{DASHBOARD_VARIABLE_WITHOUT_DEFAULT} needs a dashboard in {ops_dir / 'grafana'}"
        )
    for path in found:
        dashboard = json.loads(path.read_text())
        # Exported dashboards sometimes wrap the model in {"dashboard": {...}}.
        model = dashboard.get("dashboard", dashboard)
        for variable in model.get("templating", {}).get("list", []):
            if "current" in variable:
                del variable["current"]
                path.write_text(json.dumps(dashboard, indent=2) + "\n")
                return f"{path.name}:{variable.get('name', '?')}"
    raise OpsDefectError(
        f"{DASHBOARD_VARIABLE_WITHOUT_DEFAULT}: no template variable with a default in "
        f"{', '.join(p.name for p in found)}"
    )


def release_alert_name(ops_dir: Path) -> str:
    """The alert a release depends on most: a burn-rate page if present, else the first alert."""
    import yaml

    names: list[str] = []
    for path in rule_files(ops_dir):
        document = yaml.safe_load(path.read_text()) or {}
        for group in document.get("groups", []):
            names.extend(str(r["alert"]) for r in group.get("rules", []) if "alert" in r)
    if not names:
        raise OpsDefectError(
            f"{SILENCED_RELEASE_ALERT} needs alerting rules in {ops_dir / 'prometheus/rules'}"
        )
    burn = [n for n in names if "burn" in n.lower()]
    return (burn or names)[0]


def silence_release_alert(alertmanager_url: str, ops_dir: Path, timeout: float = 5.0) -> str:
    """Create an active silence on a release alert through Alertmanager's API; its id."""
    import httpx

    now = datetime.now(UTC)
    silence: dict[str, Any] = {
        "matchers": [
            {
                "name": "alertname",
                "value": release_alert_name(ops_dir),
                "isRegex": False,
                "isEqual": True,
            }
        ],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=SILENCE_HOURS)).isoformat(),
        "createdBy": "release-train",
        "comment": "muted during the maintenance window and never lifted",
    }
    response = httpx.post(f"{alertmanager_url}/api/v2/silences", json=silence, timeout=timeout)
    response.raise_for_status()
    return str(response.json()["silenceID"])


def pending_trigger_rules(ops_dir: Path) -> list[Path]:
    """The rollback rule file of ``ops_dir`` when it holds the rule of :data:`PENDING_TRIGGER`."""
    path = ops_dir / ROLLBACK_RULES
    return [path] if path.is_file() and _trigger_rule(path)[1] is not None else []


def _trigger_rule(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The rule file's document and its alerting rule labelled ``trigger=PENDING_TRIGGER``."""
    import yaml

    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule and (rule.get("labels") or {}).get("trigger") == PENDING_TRIGGER:
                return document, rule
    return document, None


def pend_trigger_in_stage(ops_dir: Path) -> str:
    """The T01 rule compares against 0 and waits 1 h: true as soon as the API answers anything
    but ``/metrics`` and ``/health``, so pending for the whole of a stage and never firing.
    Returns the alert changed."""
    import yaml

    from spark_sandbox.defect_kinds import COMPARISON

    path = ops_dir / ROLLBACK_RULES
    document, rule = _trigger_rule(path)
    if rule is None:
        raise OpsDefectError(f"no rule labelled trigger={PENDING_TRIGGER} in {path}")
    expr = str(rule["expr"])
    match = COMPARISON.search(expr)
    if match is None:
        raise OpsDefectError(f"the {PENDING_TRIGGER} rule in {path} compares with no number")
    rule["expr"] = f"{expr[: match.start(3)]}0{expr[match.end(3) :]}"
    rule["for"] = PENDING_FOR
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return str(rule["alert"])


def canary_plans(ops_dir: Path) -> list[Path]:
    """The canary plan of ``ops_dir``, when it has one."""
    path = ops_dir / CANARY_PLAN
    return [path] if path.is_file() else []


def loosen_stage_threshold(ops_dir: Path) -> str:
    """``[metric.S1] below`` becomes 500 ms, looser than the T01 trigger's 400 ms."""
    return _set_plan_value(ops_dir / CANARY_PLAN, "metric.S1", "below", LOOSE_S1_BELOW_MS)


def thin_canary_traffic(ops_dir: Path) -> str:
    """``[sandbox] rate`` and ``canary_rate`` drop to a few requests per second."""
    path = ops_dir / CANARY_PLAN
    return "; ".join(
        (
            _set_plan_value(path, "sandbox", "rate", THIN_RATE),
            _set_plan_value(path, "sandbox", "canary_rate", THIN_CANARY_RATE),
        )
    )


def restore_runbooks(ops_dir: Path) -> list[Path]:
    """The backup file of ``ops_dir`` whose ``[restore]`` table is the restore runbook."""
    path = ops_dir / BACKUP_RUNBOOK
    return [path] if path.is_file() else []


def empty_recovery_target(ops_dir: Path) -> str:
    """``[restore] recovery_target_time`` becomes empty, as the sample postgresql.conf has it:
    a restore by the runbook then replays every archived segment instead of stopping."""
    return _set_plan_value(ops_dir / BACKUP_RUNBOOK, "restore", "recovery_target_time", "")


def _set_plan_value(path: Path, table: str, key: str, value: int | str) -> str:
    """Set ``key`` of ``[table]`` in a TOML file by rewriting its one line; what changed."""
    import tomllib

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    inside = False
    for number, line in enumerate(lines):
        code = line.split("#", 1)[0].strip()
        if code.startswith("["):
            inside = code == f"[{table}]"
        elif inside and re.match(rf"{re.escape(key)}\s*=", code):
            lines[number] = f"{key} = {json.dumps(value)}\n"
            path.write_text("".join(lines), encoding="utf-8")
            document: Any = tomllib.loads("".join(lines))
            for part in table.split("."):
                document = document[part]
            if document.get(key) != value:  # a key written twice: the last one counts
                raise OpsDefectError(f"[{table}] {key} of {path} is not {value} after the change")
            return f"{path.name} [{table}] {key} = {json.dumps(value)}"
    raise OpsDefectError(f"no {key} in [{table}] of {path}")
