"""The registry file, and the verdict logic on its own (no pytest run needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pytest_spark.checklist import ChecklistError, load
from pytest_spark.gate import CheckOutcome, Judged, decide
from pytest_spark.waivers import Waiver

from .conftest import TINY_CHECKLIST

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
REPO_CHECKLIST = Path(__file__).parents[2] / "ops" / "checklist.toml"


SUB_CHECK = {"G1": "offset_ms", "M2": "money_findings"}


def ran(nodeid: str, item: str, outcome: str = "passed", message: str = "") -> CheckOutcome:
    """A test whose body ran and judged its item's sub-check within its limit."""
    within = Judged(SUB_CHECK[item], True, False, f"{SUB_CHECK[item]} = 0 (limit < 1)")
    return CheckOutcome(nodeid, (item,), outcome, message, call_ran=True, measurements=(within,))


def tiny(tmp_path: Path, text: str = TINY_CHECKLIST) -> Path:
    path = tmp_path / "checklist.toml"
    path.write_text(text)
    return path


def test_the_project_registry_has_every_readiness_item() -> None:
    checklist = load(REPO_CHECKLIST)
    expected = (
        [f"B{n}" for n in range(1, 10)]
        + [f"G{n:02d}" for n in range(1, 11)]
        + [f"M{n}" for n in range(1, 5)]
        + [f"K{n}" for n in range(1, 4)]
        + [f"T{n:02d}" for n in range(1, 15)]
        + [f"S{n}" for n in range(1, 8)]  # S7: the stage's integrity
        + [f"C{n}" for n in range(1, 7)]
    )
    assert sorted(checklist.items) == sorted(expected)
    go_nogo = set(checklist.evaluated("go_nogo"))
    assert {"B1", "G10", "M4", "K2", "T14"} <= go_nogo
    assert not {"S1", "C1"} & go_nogo
    unwaivable = {i for i, item in checklist.items.items() if not item.waivable}
    assert {"M1", "M2", "M3", "M4", "K1", "K2", "K3", "G02", "G03", "G04", "B4"} <= unwaivable
    assert checklist.items["G01"].requires == tuple(f"B{n}" for n in range(1, 10))
    assert checklist.gates_selecting("B3") == ("blind_spot", "go_nogo")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('id = "M2"', 'id = "G1"'), "defined twice"),
        (lambda t: t.replace('requires = ["G1", "M2"]', 'requires = ["A9"]'), "unknown item"),
        (lambda t: t.replace('gates = ["side"]', 'gates = ["nowhere"]'), "must name gates"),
        (lambda t: t.replace("waivable = false", 'waivable = "no"'), "waivable must be"),
        (lambda t: t.replace('id = "K4"', 'id = "a4"'), "must look like"),
        (
            lambda t: t.replace('evidence = ["scan", "sbom"]', 'evidence = ["x"]'),
            "not in [evidence]",
        ),
        (
            lambda t: (
                t + '\n[[item]]\nid = "A5"\ntitle = "x"\ngates = ["tiny"]\nwaivable = true\n'
                'requires = ["A6"]\n[[item]]\nid = "A6"\ntitle = "y"\ngates = ["tiny"]\n'
                'waivable = true\nrequires = ["A5"]\n'
            ),
            "cycle",
        ),
        (lambda t: "[gates", "cannot be read"),
        (lambda t: t.replace('sub_checks = ["offset_ms"]\n', ""), "declare the item's sub_checks"),
        (lambda t: t.replace('["offset_ms"]', '["Offset-ms"]'), "measurement names"),
        (lambda t: t.replace('["offset_ms"]', '["offset_ms", "offset_ms"]'), "twice"),
        (
            lambda t: t.replace("waivable = false", 'waivable = false\nsub_check = "x"'),
            "unknown key",
        ),
        (lambda t: t + "\n[waiver_policy]\nmax_days = 0\n", "max_days"),
        (lambda t: t + "\n[waivers]\n", "unknown table"),
    ],
)
def test_bad_registry_is_rejected_with_the_reason(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(ChecklistError, match=message.replace("[", r"\[")):
        load(tiny(tmp_path, change(TINY_CHECKLIST)))


def test_composite_is_not_passed_when_a_requirement_is(tmp_path: Path) -> None:
    checklist = load(tiny(tmp_path))
    results = [ran("t::a1", "G1"), ran("t::a2", "M2", "error")]
    verdict = decide(checklist, "tiny", "v1", results, now=NOW)
    assert verdict.verdict == "NO-GO"
    assert (verdict.items["G3"].status, verdict.items["G3"].reason) == (
        "ERROR",
        "requires M2 ERROR",
    )


def test_one_passing_and_one_failing_test_of_an_item_is_failed(tmp_path: Path) -> None:
    checklist = load(tiny(tmp_path))
    results = [
        ran("t::a1_ok", "G1"),
        ran("t::a1_bad", "G1", "failed", "offset 140 ms"),
        ran("t::a2", "M2"),
    ]
    verdict = decide(checklist, "tiny", "v1", results, now=NOW)
    assert verdict.items["G1"].status == "FAILED"
    assert "offset 140 ms" in verdict.items["G1"].reason


def test_waived_requirement_satisfies_the_composite(tmp_path: Path) -> None:
    checklist = load(tiny(tmp_path))
    waiver = Waiver("G1", "known", "SPARK-1", "ayse", "mehmet", NOW + dt.timedelta(days=1))
    results = [ran("t::a1", "G1", "failed"), ran("t::a2", "M2")]
    verdict = decide(checklist, "tiny", "v1", results, [waiver], now=NOW)
    assert verdict.verdict == "GO"
    assert verdict.items["G1"].status == "WAIVED"
    assert verdict.items["G3"].status == "PASSED"


def test_blockers_alone_make_no_go(tmp_path: Path) -> None:
    checklist = load(tiny(tmp_path))
    results = [ran("t::a1", "G1"), ran("t::a2", "M2")]
    verdict = decide(checklist, "tiny", "v1", results, now=NOW, blockers=["interrupted"])
    assert all(r.satisfied for r in verdict.items.values())
    assert verdict.verdict == "NO-GO"
