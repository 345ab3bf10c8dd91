"""The release's rollback triggers (``ops/rollback-triggers.toml``) typed: each trigger's alert,
its comparisons and ``for:``, and the settings of the checks that hold the rules to them.

Read by the rollback suite (T01–T14, G06) and by the canary plan's check (G10), which holds
each stage threshold to be stricter than its trigger's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pytest_spark.ops import load_ops, ops_key

TRIGGERS_FILE = "rollback-triggers.toml"


@dataclass(frozen=True)
class RuleSettings:
    file: str
    tests: str
    evaluation_age_s: float
    rules_evaluated_wait_s: float
    series_lookback_s: float
    series_wait_s: float
    promtool_timeout_s: float
    promtool_failures: float
    rule_drift: float
    rule_not_loaded: float
    series_missing: float
    burn_rate_rules_unhealthy: float
    absent_signal_rules_unhealthy: float


@dataclass(frozen=True)
class Trigger:
    alert: str
    compare: tuple[str, ...]
    for_: str = field(metadata=ops_key("for"))


@dataclass(frozen=True)
class RollbackTriggers:
    rules: RuleSettings
    trigger: dict[str, Trigger]


def load_triggers(ops_dir: Path) -> RollbackTriggers:
    """``<ops_dir>/rollback-triggers.toml`` typed; OpsFileError names a broken key."""
    return load_ops(ops_dir / TRIGGERS_FILE, RollbackTriggers)
