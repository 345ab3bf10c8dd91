"""One claim vocabulary (a marker claims items of its own family, each marker is registered
once) and one judgement per check (``spark_evidence.check``)."""

from __future__ import annotations

import pytest

from pytest_spark.claims import FAMILIES, family_of

from .conftest import read_verdict


@pytest.mark.parametrize(
    ("marker", "item", "right"),
    [("money", "G1", "go_nogo"), ("chaos", "M2", "money"), ("blind_spot", "G1", "go_nogo")],
)
def test_a_marker_claims_only_its_own_family(
    gate_project: pytest.Pytester, marker: str, item: str, right: str
) -> None:
    gate_project.makepyfile(
        test_wrong=f"""
import pytest

@pytest.mark.{marker}("{item}")
def test_claim(spark_evidence):
    spark_evidence.check("offset_ms", 1, limit=100)
"""
    )
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*@pytest.mark.{marker}('{item}')*@pytest.mark.{right}('{item}')*"]
    )


def test_every_family_has_one_prefix() -> None:
    prefixes = [prefix for prefix, _ in FAMILIES.values()]
    assert len(prefixes) == len(set(prefixes))
    assert [family_of(i) for i in ("B3", "G05", "M1", "K2", "T14", "S6", "C2", "X1")] == [
        "blind_spot", "go_nogo", "money", "contract", "rollback", "canary", "chaos", None,
    ]  # fmt: skip


def test_each_marker_is_registered_once(gate_project: pytest.Pytester) -> None:
    result = gate_project.runpytest("--markers", "-p", "no:cacheprovider")
    lines = result.stdout.lines
    for name in [*FAMILIES, "tiny", "side"]:
        registered = [line for line in lines if line.startswith(f"@pytest.mark.{name}")]
        assert len(registered) == 1, (name, registered)


CHECKS = """
import pytest

@pytest.mark.go_nogo("G1")
def test_g1(spark_evidence):
    spark_evidence.check("offset_ms", {offset}, limit=100, unit="ms",
                         why="order timestamps drift apart; check chronyc tracking")
    spark_evidence.check("extra_ms", {extra}, at_least=1, why="the probe saw no reply")

@pytest.mark.money("M2")
def test_m2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1, why="money rule broken")
"""


def test_every_failing_check_is_listed_with_its_why(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite=CHECKS.format(offset=140, extra=0))
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    verdict = read_verdict(gate_project)
    reason = verdict["items"]["G1"]["reason"]
    assert result.ret == 1
    assert verdict["items"]["G1"]["status"] == "FAILED"
    assert "offset_ms = 140 ms (limit < 100): order timestamps drift apart" in reason
    assert "extra_ms = 0 (limit >= 1): the probe saw no reply" in reason
    assert verdict["items"]["G1"]["sub_checks"]["offset_ms"].endswith("OUT OF BOUNDS")


def test_checks_within_their_limits_pass_without_an_assert(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite=CHECKS.format(offset=12, extra=3))
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert read_verdict(gate_project)["items"]["G1"]["status"] == "PASSED"


def test_a_check_without_a_limit_is_a_mistake(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_suite="""
import pytest

@pytest.mark.go_nogo("G1")
def test_g1(spark_evidence):
    spark_evidence.check("offset_ms", 12)
"""
    )
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == 1
    assert "needs a limit or at_least" in read_verdict(gate_project)["items"]["G1"]["reason"]


def test_a_chart_a_check_draws_is_shown_in_the_report(gate_project: pytest.Pytester) -> None:
    """An ``.svg`` attachment (a canary metric over its window) is embedded in report.html
    with its test, and kept in the bundle."""
    gate_project.makepyfile(
        test_suite="""
import pytest

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><title>p95</title></svg>'

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    spark_evidence.attach("canary_p95_ms.svg", SVG)
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
    )
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()[-2000:]
    [bundle] = {p.parent for p in (gate_project.path / "reports").glob("*/*/verdict.json")}
    html = (bundle / "report.html").read_text()
    assert "data:image/svg+xml;base64," in html
    assert list(bundle.glob("attachments/*/canary_p95_ms.svg"))
