"""ops/prometheus with promtool: every rule file checks, every unit-test file passes, every
alert has a firing and a quiet case, and a rule with its short window removed fails its test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pytest_spark.probes import alert_rules

PROMETHEUS_OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RULES = PROMETHEUS_OPS / "rules"
TESTS = PROMETHEUS_OPS / "tests"
PROMTOOL_TIMEOUT_S = 60
RULE_FILES = sorted(p for p in RULES.glob("*.yml") if "tests" not in yaml.safe_load(p.read_text()))
TEST_FILES = sorted(TESTS.glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (Debian package prometheus); scripts/bootstrap.sh"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S, check=False
    )


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_checks(rule_file: Path) -> None:
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_has_a_firing_and_a_quiet_case(rule_file: Path) -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in TEST_FILES:
        for alert, cases in alert_rules.cases_by_alert(test_file).items():
            if cases.firing:
                firing.add(alert)
            if cases.quiet:
                quiet.add(alert)
    alerts = {d.alert for d in alert_rules.alert_definitions(RULES) if d.file == rule_file}
    assert alerts, f"{rule_file.name} defines no alert"
    assert not alerts - firing, f"no firing case in {TESTS.name}/: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"no quiet case in {TESTS.name}/: {sorted(alerts - quiet)}"


def test_the_burn_rate_tests_fail_without_the_short_window(tmp_path: Path) -> None:
    """The quiet cases are not vacuous: a page on the long window alone fires in them."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    rules = (RULES / "slo-burn.yml").read_text()
    long_only, removed = re.subn(
        r"\n\s*and\n\s*spark_api:slo_errors:ratio_rate(?:5m|30m)\{[^}]*\} > \([^)]*\)", "", rules
    )
    assert removed == 2
    (tmp_path / "rules" / "slo-burn.yml").write_text(long_only)
    shutil.copy(TESTS / "slo-burn.test.yml", tmp_path / "tests")
    result = promtool("test", "rules", str(tmp_path / "tests" / "slo-burn.test.yml"))
    assert result.returncode == 1, result.stdout + result.stderr
    for alert in ("SparkApiErrorBudgetBurnFast", "SparkApiErrorBudgetBurnSlow"):
        assert f"alertname: {alert}" in result.stdout + result.stderr
