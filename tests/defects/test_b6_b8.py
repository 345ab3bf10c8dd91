"""Every seeded B6 / B8 defect breaks exactly its sub-checks, and the healthy sandbox passes.

Each case runs the B6 and B8 suites in a separate gate run (``python -m pytest``) against a
sandbox started with the defect (the ``ops`` layer: a changed copy of the ops dir, a scrape job
pointed at a closed port, or an Alertmanager silence), then reads the signed bundle. The sub-checks
no registry defect reaches (target count, severity and runbook, routing) are broken by one
more run against a candidate ops dir (``$SPARK_SANDBOX_OPS_DIR``) with those three mistakes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from gate_runner import assert_healthy, assert_only_broken, gate

from spark_sandbox.defects import DEFECTS
from spark_sandbox.ops_defects import OPS_DIR, OPS_DIR_ENV

SUITES = [
    "suites/blind_spots/test_b6_observability.py",
    "suites/blind_spots/test_b8_burn_alerts.py",
]
ITEMS = ("B6", "B8")

# defect -> (the item it breaks, the sub-checks (test names) that must fail and no others)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    # The variable that loses its default is the job every panel filters on, so the panels
    # have nothing to query with either: the default check and the data check both fail.
    "dashboard_variable_without_default": (
        "B6",
        frozenset({"test_every_dashboard_variable_has_a_default", "test_every_panel_returns_data"}),
    ),
    "scrape_target_down": ("B6", frozenset({"test_all_scrape_targets_up"})),
    "no_6h_burn_alert": ("B8", frozenset({"test_burn_rate_alert_loaded_and_healthy[slow_6h_30m]"})),
    "silenced_release_alert": ("B8", frozenset({"test_no_active_silence_matches_a_release_alert"})),
}


def test_expected_table_matches_the_defect_registry() -> None:
    for name, (item, _) in EXPECTED.items():
        assert DEFECTS[name].breaks == (item,), name
    assert {d.name for d in DEFECTS.values() if set(d.breaks) & set(ITEMS)} == set(EXPECTED)


@pytest.mark.parametrize("defect", [None, *EXPECTED], ids=lambda d: d or "healthy")
def test_defect_breaks_exactly_its_sub_checks(defect: str | None, tmp_path: Path) -> None:
    run = gate(SUITES, "blind_spot", defect, tmp_path)
    # The other blind spots are MISSING in a run of these suites alone: NO-GO either way.
    assert run.code == 1, f"exit code {run.code}:\n{run.tail}"
    if defect is None:
        assert_healthy(run, ITEMS)
        return
    assert_only_broken(run, defect, *EXPECTED[defect], ITEMS)


# Sub-checks no registry defect reaches, broken together by a candidate ops dir in one run.
CHANGED_OPS_BREAKS = {
    "B6": frozenset({"test_scrape_target_count_per_job"}),
    "B8": frozenset(
        {
            "test_every_release_alert_has_severity_and_runbook",
            "test_every_release_alert_routes_to_a_receiver_with_an_integration",
        }
    ),
}


def changed_ops_dir(target: Path) -> Path:
    """The repo's ops dir with three quiet mistakes: one API target expected too many, the
    slow-burn page without severity and runbook, and the on-call receiver left with no
    integration (a common "blackhole" leftover)."""
    shutil.copytree(OPS_DIR, target)
    expected = target / "prometheus" / "targets.toml"
    expected.write_text(expected.read_text().replace("spark-api = 1", "spark-api = 2"))
    rules = target / "prometheus" / "rules" / "slo-burn.yml"
    text, n = re.subn(
        r"(- alert: SparkApiErrorBudgetBurnSlow\n(?:.*\n)*?)\s+labels:\n\s+severity: page\n",
        r"\1\n        labels:\n",
        rules.read_text(),
    )
    text, m = re.subn(r"\n\s+runbook_url: \S+#slow-burn", "", text)
    assert (n, m) == (1, 1)
    rules.write_text(text)
    routing = target / "alertmanager.yml"
    text, k = re.subn(
        r"(- name: spark-oncall\n)\s+webhook_configs:\n.*\n.*\n", r"\1", routing.read_text()
    )
    assert k == 1
    routing.write_text(text)
    return target


def test_changed_ops_artefacts_break_the_other_sub_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OPS_DIR_ENV, str(changed_ops_dir(tmp_path / "ops")))
    run = gate(SUITES, "blind_spot", None, tmp_path / "run")
    assert run.code == 1
    assert run.failed() == set().union(*CHANGED_OPS_BREAKS.values()), run.tail
    for item, sub_checks in CHANGED_OPS_BREAKS.items():
        assert run.items[item]["status"] == "FAILED", f"{item}: {run.items[item]}\n{run.tail}"
        reason = str(run.items[item]["reason"])
        assert any(f"::{name}" in reason for name in sub_checks), f"{item} reason: {reason}"
