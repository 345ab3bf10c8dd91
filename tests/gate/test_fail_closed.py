"""The fail-closed matrix: every way an item can be not-passed is NO-GO with its reason."""

from __future__ import annotations

import pytest

from .conftest import read_verdict, waiver_toml


def run_gate(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = pytester.runpytest("-m", "tiny", "-p", "no:cacheprovider", *args)
    return result, read_verdict(pytester)


def item(verdict: dict, item_id: str) -> dict:
    return verdict["items"][item_id]  # type: ignore[index,no-any-return]


def test_all_passed_is_go_exit_0(gate_project: pytest.Pytester) -> None:
    result, verdict = run_gate(gate_project)
    assert result.ret == 0
    assert verdict["verdict"] == "GO"
    assert {i: v["status"] for i, v in verdict["items"].items()} == {
        "G1": "PASSED",
        "M2": "PASSED",
        "G3": "PASSED",
        "K4": "NOT-REQUIRED",
    }
    result.stdout.fnmatch_lines(["*SPARK GATE tiny: GO*"])
    assert "SPARK GATE tiny: GO" in result.stdout.lines[-1]


NOT_PASSED = {
    "failed": ("assert 1 == 2", "FAILED"),
    "setup_error": ("", "ERROR"),
    "skipped": ("pytest.skip('no NTP server configured')", "SKIPPED"),
    "xfailed": ("pytest.xfail('known drift')", "FAILED"),
    "inconclusive": ("spark_evidence.inconclusive('zero traffic in the window')", "INCONCLUSIVE"),
    "nan_measurement": (
        "spark_evidence.check('p95_ms', float('nan'), limit=200)",
        "INCONCLUSIVE",
    ),
    "out_of_bounds": ("spark_evidence.check('p95_ms', 250, limit=200)", "FAILED"),
}


@pytest.mark.parametrize("case", sorted(NOT_PASSED))
def test_each_not_passed_outcome_is_no_go(gate_project: pytest.Pytester, case: str) -> None:
    body, status = NOT_PASSED[case]
    fixture = "broken" if case == "setup_error" else "spark_evidence"
    gate_project.makepyfile(
        test_suite=f"""
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("target unreachable: 127.0.0.1:1")

@pytest.mark.go_nogo("G1")
def test_a1({fixture}):
    {body or "pass"}

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
    )
    result, verdict = run_gate(gate_project)
    assert result.ret == 1
    assert verdict["verdict"] == "NO-GO"
    assert item(verdict, "G1")["status"] == status
    assert item(verdict, "M2")["status"] == "PASSED"
    # the composite names the requirement that let it down
    assert item(verdict, "G3")["status"] == status
    assert "G1" in item(verdict, "G3")["reason"]
    assert "SPARK GATE tiny: NO-GO" in result.stdout.lines[-1]


def test_no_test_for_an_item_is_missing(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_suite="""
import pytest

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
    )
    result, verdict = run_gate(gate_project)
    assert result.ret == 1
    assert item(verdict, "G1")["status"] == "MISSING"
    assert "no test claiming G1 was collected" in item(verdict, "G1")["reason"]


def test_deselected_by_k_is_missing(gate_project: pytest.Pytester) -> None:
    result, verdict = run_gate(gate_project, "-k", "not test_a1")
    assert result.ret == 1
    assert item(verdict, "G1")["status"] == "MISSING"
    assert "deselected" in item(verdict, "G1")["reason"]


def test_left_unrun_by_x_is_missing(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_suite="""
import pytest

@pytest.mark.money("M2")
def test_a2_first():
    assert False, "money property broken"

@pytest.mark.go_nogo("G1")
def test_a1_second(spark_evidence):
    spark_evidence.check("offset_ms", 1, limit=100)
"""
    )
    result, verdict = run_gate(gate_project, "-x")
    assert result.ret == 1
    assert item(verdict, "M2")["status"] == "FAILED"
    assert item(verdict, "G1")["status"] == "MISSING"
    assert "never ran" in item(verdict, "G1")["reason"]


def test_pytest_exit_is_no_go(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_suite="""
import pytest

@pytest.mark.money("M2")
def test_a2():
    pytest.exit("operator aborted the gate")

@pytest.mark.go_nogo("G1")
def test_a1():
    pass
"""
    )
    result, verdict = run_gate(gate_project)
    assert result.ret == 1
    assert verdict["verdict"] == "NO-GO"
    assert item(verdict, "G1")["status"] == "MISSING"
    assert any("ended early: pytest.exit" in b for b in verdict["blockers"])


def test_collection_error_is_no_go(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_broken="import not_a_module_anywhere\n")
    result, verdict = run_gate(gate_project)
    assert result.ret == 1
    assert verdict["verdict"] == "NO-GO"
    assert any("collection error" in b for b in verdict["blockers"])


FAILING_A1 = """
import pytest

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    spark_evidence.check("offset_ms", 1, limit=100)
    assert False, "NTP offset 140 ms"

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
    assert False, "half-up rounding"
"""


@pytest.mark.parametrize(
    ("waiver", "a1_status", "blocker"),
    [
        (waiver_toml("G1", expires="2020-01-01T00:00:00Z"), "WAIVER-EXPIRED", None),
        (waiver_toml("G1", author="ayse", approver="Ayse"), "WAIVER-INVALID", "own author"),
    ],
    ids=["expired", "approver_is_author"],
)
def test_invalid_waiver_is_no_go(
    gate_project: pytest.Pytester, waiver: str, a1_status: str, blocker: str | None
) -> None:
    gate_project.makepyfile(test_suite=FAILING_A1.replace('assert False, "half-up rounding"', ""))
    gate_project.makefile(".toml", **{"ops/waivers": waiver})
    result, verdict = run_gate(gate_project)
    assert result.ret == 1
    assert item(verdict, "G1")["status"] == a1_status
    if blocker:
        assert any(blocker in b for b in verdict["blockers"])


def test_waiver_on_unwaivable_item_is_no_go(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite=FAILING_A1.replace('assert False, "NTP offset 140 ms"', ""))
    gate_project.makefile(".toml", **{"ops/waivers": waiver_toml("M2")})
    result, verdict = run_gate(gate_project)
    assert result.ret == 1
    assert item(verdict, "M2")["status"] == "WAIVER-INVALID"
    assert any("unwaivable" in b for b in verdict["blockers"])


def test_valid_waiver_on_failing_waivable_item_is_go(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite=FAILING_A1.replace('assert False, "half-up rounding"', ""))
    gate_project.makefile(".toml", **{"ops/waivers": waiver_toml("G1")})
    result, verdict = run_gate(gate_project)
    assert result.ret == 0
    assert verdict["verdict"] == "GO"
    assert item(verdict, "G1")["status"] == "WAIVED"
    assert item(verdict, "G3")["status"] == "PASSED"
    assert verdict["waivers"][0]["ticket"] == "SPARK-101"
    result.stdout.fnmatch_lines(["*waiver: G1 SPARK-101 approved by mehmet*"])


def test_malformed_waivers_file_is_a_usage_error(gate_project: pytest.Pytester) -> None:
    gate_project.makefile(".toml", **{"ops/waivers": '[[waiver]]\nitem = "G1"\n'})
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*waivers.toml*lacks reason*"])


def test_unknown_item_in_marker_is_a_usage_error(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_other="""
import pytest

@pytest.mark.blind_spot("B42")
def test_x():
    pass
"""
    )
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*B42*not in*checklist.toml*"])


def test_implied_gate_markers_select_before_deselection(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_other="""
import pytest

@pytest.mark.chaos("C1")
def test_side():
    pass
"""
    )
    # Tests only carry claim markers (go_nogo, money, chaos); `-m tiny` still selects G1/M2.
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, deselected=1)


def test_required_when_condition_makes_item_required(gate_project: pytest.Pytester) -> None:
    gate_project.makefile(
        ".toml",
        **{
            "targets/staging": '[target]\nname = "staging"\n[endpoints]\n'
            'pact_broker_url = "http://127.0.0.1:9"\n'
        },
    )
    result, verdict = run_gate(gate_project, "--spark-target", "targets/staging.toml")
    assert result.ret == 1
    assert item(verdict, "K4")["status"] == "MISSING"


def test_tests_of_a_not_required_item_do_not_run(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_broker="""
import pytest

@pytest.mark.contract("K4")
def test_can_i_deploy():
    assert False, "would need a broker"
"""
    )
    result, verdict = run_gate(gate_project)
    assert result.ret == 0
    result.assert_outcomes(passed=2, deselected=1)
    assert item(verdict, "K4")["status"] == "NOT-REQUIRED"


def test_unclaimed_failure_in_a_gate_run_is_no_go(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_other="""
import pytest

@pytest.mark.tiny  # in the gate's selection, yet claiming no item
def test_helper_broke():
    assert False
"""
    )
    result, verdict = run_gate(gate_project)
    assert result.ret == 1
    assert any("outside any item" in b for b in verdict["blockers"])


def test_no_gate_in_play_leaves_pytest_alone(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite="def test_plain():\n    pass\n")
    result = gate_project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert not (gate_project.path / "reports").exists()
