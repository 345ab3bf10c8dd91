"""B6 / B8 sub-checks no registry defect reaches (target count, severity and runbook, routing)
fail together through the gate when the sandbox serves a candidate ops dir with those three
mistakes (``$SPARK_SANDBOX_OPS_DIR``): the changed artefacts are what a release would ship.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from gate_runner import gate

from spark_sandbox.ops_defects import OPS_DIR, OPS_DIR_ENV

SUITES = [
    "suites/blind_spots/test_b6_observability.py",
    "suites/blind_spots/test_b8_burn_alerts.py",
]


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
    expected.write_text(expected.read_text().replace("spark-api = 2", "spark-api = 3"))
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
