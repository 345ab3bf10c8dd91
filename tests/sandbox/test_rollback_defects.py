"""The rollback-trigger defects change exactly one rule's threshold in a copy of the ops dir."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from pytest_spark.probes import alert_rules
from spark_sandbox import ops_defects
from spark_sandbox.defect_kinds import weakened
from spark_sandbox.defects import DEFECTS, TRIGGERS, Blueprint

REPO = Path(__file__).resolve().parents[2]
RULES = "prometheus/rules/rollback.yml"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("x > 0.4", "x > 4"),
        ("max(a) > 120\nand on () b == 1", "max(a) > 1200\nand on () b == 1"),
        ("sum(increase(a[5m])) > 0", "sum(increase(a[5m])) > 10"),
        ("a > 268435456", "a > 2684354560"),
    ],
)
def test_weakened_moves_the_first_threshold(expr: str, expected: str) -> None:
    assert weakened(expr) == expected


def test_weakened_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="no threshold"):
        weakened("absent(up)")


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_each_weakened_rule_changes_only_its_trigger(trigger: str, tmp_path: Path) -> None:
    defect = DEFECTS[f"weakened_{trigger.lower()}_rule"]
    copy = ops_defects.prepare_ops_dir(Blueprint.of([defect.name]).ops_changes, tmp_path)
    before = alert_rules.load_alert_rules(REPO / "ops" / RULES)
    after = alert_rules.load_alert_rules(copy / RULES)
    changed = {
        rule.labels.get("trigger")
        for name, rule in before.items()
        if alert_rules.comparisons(after[name].expr) != alert_rules.comparisons(rule.expr)
    }
    assert changed == {trigger}
    diff = difflib.unified_diff(
        (REPO / "ops" / RULES).read_text().splitlines(), (copy / RULES).read_text().splitlines()
    )
    assert len([line for line in diff if line.startswith("+ ")]) == 1


def test_a_weakened_trigger_missing_from_the_rules_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "ops"
    (source / "prometheus/rules").mkdir(parents=True)
    (source / RULES).write_text("groups: []\n")
    with pytest.raises(ops_defects.OpsDefectError, match="trigger=T01"):
        ops_defects.prepare_ops_dir(
            Blueprint.of(["weakened_t01_rule"]).ops_changes, tmp_path / "run", source
        )
