"""What the rollback suite reads: the target's ``rollback-triggers.toml`` (thresholds and
``for:`` of T01–T14), its rule and promtool test files, and each alert's promtool run.

All of them come from the target's ``ops_dir``: the artefacts the release deploys, which for
the sandbox are the repository's ``ops/`` (or a copy a seeded defect changed).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_spark import OpsFileError, RollbackTriggers, load_triggers
from pytest_spark.probes import alert_rules

# The triggers the release declares, one test each: adding [trigger.Tnn] to the repository's
# rollback-triggers.toml (with its rule and promtool cases) adds its test, nothing else.
DECLARED = Path(__file__).resolve().parents[2] / "ops" / "rollback-triggers.toml"
with DECLARED.open("rb") as _declared:
    TRIGGERS = tuple(tomllib.load(_declared)["trigger"])
# promtool runs are independent processes; a few at once keep a 2-core machine busy.
PROMTOOL_WORKERS = 4


@dataclass(frozen=True)
class RuleArtefacts:
    """The release's rollback rules as files: the rules by alert name, their promtool cases."""

    rule_file: Path
    test_file: Path
    rules: dict[str, alert_rules.AlertRule]
    cases: dict[str, alert_rules.AlertCases]


@pytest.fixture(scope="session")
def rollback_triggers(ops_dir: Path) -> RollbackTriggers:
    """``rollback-triggers.toml`` typed: ``rollback_triggers.trigger["T01"].compare``."""
    try:
        return load_triggers(ops_dir)
    except OpsFileError as exc:
        pytest.fail(f"the rollback triggers cannot be read: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def rule_artefacts(ops_dir: Path, rollback_triggers: RollbackTriggers) -> RuleArtefacts:
    settings = rollback_triggers.rules
    rule_file, test_file = ops_dir / settings.file, ops_dir / settings.tests
    try:
        rules = alert_rules.load_alert_rules(rule_file)
        cases = alert_rules.cases_by_alert(test_file)
    except alert_rules.RuleFileError as exc:
        pytest.fail(str(exc), pytrace=False)
    return RuleArtefacts(rule_file, test_file, rules, cases)


@pytest.fixture(scope="session")
def promtool_runs(
    rule_artefacts: RuleArtefacts,
    rollback_triggers: RollbackTriggers,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, alert_rules.PromtoolRun]]:
    """Each alert of the rule file run through its own promtool cases, once per session."""
    workdir = tmp_path_factory.mktemp("promtool")
    timeout_s = rollback_triggers.rules.promtool_timeout_s

    def run(alert: str) -> alert_rules.PromtoolRun:
        return alert_rules.run_promtool_cases(
            rule_artefacts.test_file, alert, workdir, timeout_s=timeout_s
        )

    with ThreadPoolExecutor(PROMTOOL_WORKERS) as pool:
        yield {r.alert: r for r in pool.map(run, sorted(rule_artefacts.rules))}
