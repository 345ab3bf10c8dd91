"""An item passes only when every test that claims it ran its body and passed, and every
sub-check the registry declares for it was measured within its limit in this run.

Each case shrinks, skips or fakes part of an item in another way; each must be NO-GO with
the item not-passed and a reason that says what is missing.
"""

from __future__ import annotations

import pytest

from .conftest import read_verdict

# Two tests measure G1's one sub-check; M2's test measures its own.
TWO_FILES = {
    "test_a1_offset": """
import pytest

@pytest.mark.go_nogo("G1")
def test_offset(spark_evidence):
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.go_nogo("G1")
def test_isolation(spark_evidence):
    spark_evidence.note("a second check of G1")
""",
    "test_a2_money": """
import pytest

@pytest.mark.money("M2")
def test_money(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
""",
}

SWALLOWING_PLUGIN = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if "offset" in item.name:
        return True  # never runs the test, never reports it
"""

FABRICATING_PLUGIN = """
import pytest
from _pytest.reports import TestReport

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if "offset" not in item.name:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for when in ("setup", "call", "teardown"):
        report = TestReport(item.nodeid, item.location, {}, "passed", None, when, [])
        report.spark_items = ["G1"]
        report.spark_call_ran = True
        item.ihook.pytest_runtest_logreport(report=report)
    return True
"""

BODY_SKIPPING_PLUGIN = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if "offset" in pyfuncitem.name:
        return True  # the call phase "passes" without running the function
"""


@pytest.fixture
def two_files(gate_project: pytest.Pytester) -> pytest.Pytester:
    (gate_project.path / "test_suite.py").unlink()
    gate_project.makepyfile(**TWO_FILES)
    return gate_project


def a1(pytester: pytest.Pytester, *args: str) -> tuple[int, dict[str, str], list[str]]:
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    verdict = read_verdict(pytester)
    assert verdict["verdict"] == ("GO" if result.ret == 0 else "NO-GO")
    return int(result.ret), verdict["items"]["G1"], list(verdict["blockers"])


def test_the_whole_item_is_go(two_files: pytest.Pytester) -> None:
    code, item, _ = a1(two_files, "-m", "tiny")
    assert (code, item["status"]) == (0, "PASSED"), item
    assert item["sub_checks"]["offset_ms"].endswith(": ok")


SHRUNK = {
    "k_deselects_one": (["-k", "not isolation"], "deselected"),
    "deselect_option": (["--deselect", "test_a1_offset.py::test_isolation"], "deselected"),
    "m_narrowed": (["-m", "tiny and not slow"], None),  # nothing dropped: still GO
    "file_not_given": (["test_a2_money.py"], "offset_ms: not measured"),
    "file_ignored": (["--ignore", "test_a1_offset.py"], "offset_ms: not measured"),
    "k_drops_the_measuring_test": (["-k", "not offset"], "deselected"),
    "setup_only": (["--setup-only"], "without running its body"),
    "setup_plan": (["--setup-plan"], "without running its body"),
}


@pytest.mark.parametrize("case", sorted(SHRUNK))
def test_a_shrunk_item_is_missing(two_files: pytest.Pytester, case: str) -> None:
    args, reason = SHRUNK[case]
    marker = [] if "-m" in args else ["-m", "tiny"]
    code, item, blockers = a1(two_files, *marker, *args)
    if reason is None:
        assert (code, item["status"]) == (0, "PASSED"), item
        return
    assert code == 1
    assert item["status"] == "MISSING", item
    assert reason in item["reason"], item["reason"]
    if case.startswith("setup"):
        assert any("no test body runs" in b for b in blockers), blockers


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("pass", "offset_ms: not measured"),
        ("spark_evidence.measure('offset_ms', 3)", "recorded without a limit"),
        ("spark_evidence.check('latency_ms', 3, limit=10)", "offset_ms: not measured"),
        ("spark_evidence.check('offset_ms', None, limit=100)", "no data"),
    ],
    ids=["empty_body", "no_limit", "other_name", "no_value"],
)
def test_a_test_that_does_not_measure_the_sub_check_proves_nothing(
    gate_project: pytest.Pytester, body: str, reason: str
) -> None:
    gate_project.makepyfile(
        test_suite=f"""
import pytest

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    {body}

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
    )
    code, item, _ = a1(gate_project, "-m", "tiny")
    assert code == 1
    assert item["status"] in ("MISSING", "INCONCLUSIVE"), item
    assert reason in item["reason"], item["reason"]


@pytest.mark.parametrize(
    "plugin",
    [SWALLOWING_PLUGIN, FABRICATING_PLUGIN, BODY_SKIPPING_PLUGIN],
    ids=["swallows_the_protocol", "fabricates_reports", "skips_the_body"],
)
def test_a_plugin_that_bypasses_a_test_cannot_pass_its_item(
    two_files: pytest.Pytester, plugin: str
) -> None:
    two_files.makeconftest(plugin)
    code, item, _ = a1(two_files, "-m", "tiny")
    assert code == 1
    assert item["status"] == "MISSING", item


@pytest.mark.parametrize("path", ["ops/checklist.toml", "ops/waivers.toml", "ops/limits.toml"])
def test_an_input_edited_during_the_run_blocks_the_verdict(
    gate_project: pytest.Pytester, path: str
) -> None:
    gate_project.makefile(".toml", **{"ops/limits": "[G1]\noffset_ms = 100\n"})
    gate_project.makepyfile(
        test_edit=f"""
import pathlib
import pytest

@pytest.mark.go_nogo("G1")
def test_weaken(spark_evidence):
    edited = pathlib.Path("{path}")
    edited.write_text((edited.read_text() if edited.exists() else "") + "\\n# loosened\\n")
    spark_evidence.check("offset_ms", 1, limit=100)
"""
    )
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    verdict = read_verdict(gate_project)
    assert result.ret == 1
    assert any(
        f"inputs changed while the run was going on: {path}" in b for b in verdict["blockers"]
    )
