"""The remaining risks as the release notes read them: every field, an owner, a date that has
not passed while the risk is open. The notes from a whole canary rollout, and their refusals
of evidence that does not verify, are in tests/defects/test_canary_gate.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pytest_spark.release_notes import collect, load_risks

TODAY = dt.date(2026, 11, 30)
RISK = """
[[risk]]
id = "R1"
description = "the feed has one upstream"
owner = "market-data"
due = {due}
mitigation = "T03 pages on staleness"
status = "{status}"
"""


def _risks(tmp_path: Path, *entries: str) -> Path:
    path = tmp_path / "remaining-risks.toml"
    path.write_text("\n".join(entries))
    return path


def test_a_complete_risk_is_read(tmp_path: Path) -> None:
    risks, problems = load_risks(_risks(tmp_path, RISK.format(due="2026-12-31", status="open")),
                                 TODAY)  # fmt: skip
    assert problems == []
    assert [(r.id, r.owner, r.due) for r in risks] == [("R1", "market-data", dt.date(2026, 12, 31))]


def test_a_risk_without_owner_is_a_problem(tmp_path: Path) -> None:
    text = RISK.format(due="2026-12-31", status="open").replace('"market-data"', '""')
    risks, problems = load_risks(_risks(tmp_path, text), TODAY)
    assert risks == [] and problems == ["remaining-risks.toml risk R1: no owner"]


def test_an_open_risk_past_its_date_is_a_problem_a_mitigated_one_is_not(tmp_path: Path) -> None:
    _, overdue = load_risks(_risks(tmp_path, RISK.format(due="2026-11-01", status="open")), TODAY)
    assert overdue == [
        "remaining-risks.toml risk R1: open past its due date 2026-11-01 (owner market-data)"
    ]
    path = _risks(tmp_path, RISK.format(due="2026-11-01", status="mitigated"))
    assert load_risks(path, TODAY)[1] == []


def test_a_due_that_is_not_a_date_or_an_unknown_status_is_a_problem(tmp_path: Path) -> None:
    _, problems = load_risks(_risks(tmp_path, RISK.format(due='"soon"', status="open")), TODAY)
    assert problems and "due must be a date" in problems[0]
    _, problems = load_risks(_risks(tmp_path, RISK.format(due="2026-12-31", status="done")), TODAY)
    assert problems and "status 'done' is not one of" in problems[0]


def test_no_risks_file_and_no_release_dir_are_problems(tmp_path: Path) -> None:
    assert "cannot be read" in load_risks(tmp_path / "nope.toml", TODAY)[1][0]
    evidence = collect(tmp_path / "v9.9.9", None)
    assert evidence.problems == [f"{tmp_path / 'v9.9.9'}: no such directory: no evidence for "
                                 "the release"]  # fmt: skip


def test_the_shipped_risks_and_template_are_usable(tmp_path: Path) -> None:
    ops = Path(__file__).resolve().parents[2] / "ops"
    risks, problems = load_risks(ops / "remaining-risks.toml", TODAY)
    assert problems == [] and risks
    template = (ops / "release-notes-template.md").read_text()
    for name in ("release", "generated", "go_nogo", "stage_table", "stage_metrics", "rollbacks",
                 "risks", "evidence_files"):  # fmt: skip
        assert f"${name}" in template
