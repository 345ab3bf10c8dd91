"""B7 probe logic: the flag document's shape, explicit defaults, risky flags, drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_spark.probes import flags

REPO_FLAGS = Path(flags.__file__).resolve().parents[2] / "ops" / "flags.toml"


def flag(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "default": False, "risky": False, "rollout_percent": 0, **fields}


def doc(*served: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "flags": list(served)}


def test_repo_flags_file_is_valid_and_clean() -> None:
    declared = flags.declared_document(REPO_FLAGS)
    assert flags.document_problems(declared) == []
    assert flags.implicit_defaults(declared) == []
    assert flags.risky_flags_on(declared, 1) == []
    assert any(f["risky"] for f in declared["flags"])


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "not an object"),
        ({"flags": []}, "version"),
        ({"version": 1}, "flags is missing"),
        (doc("nope"), "flags[0] is not an object"),  # type: ignore[arg-type]
        (doc({"default": True, "risky": False}), "name is missing"),
        (doc(flag("a"), flag("a")), "a: served twice"),
        (doc(flag("a", risky="no")), "risky = 'no' has the wrong type"),
        (doc(flag("a", rollout_percent=True)), "is a boolean"),
        (doc(flag("a", rollout_percent=150)), "outside 0..100"),
        (doc({"name": "a", "default": False}), "risky is missing"),
    ],
)
def test_document_problems(document: Any, problem: str) -> None:
    found = flags.document_problems(document)
    assert any(problem in p for p in found), found


def test_a_missing_default_is_not_a_shape_problem_but_an_implicit_default() -> None:
    served = doc({"name": "a", "risky": False}, flag("b", default="on"), flag("c"))
    assert flags.document_problems(served) == []
    assert [(f.flag, f.kind) for f in flags.implicit_defaults(served)] == [
        ("a", "implicit_default"),
        ("b", "implicit_default"),
    ]


@pytest.mark.parametrize(
    ("risky_flag", "on"),
    [
        (flag("r", risky=True), False),
        (flag("r", risky=True, rollout_percent=1), False),
        (flag("r", risky=True, rollout_percent=5), True),
        (flag("r", risky=True, default=True, rollout_percent=0), True),
        ({"name": "r", "risky": True, "rollout_percent": 0}, True),
        (flag("r", risky=False, default=True, rollout_percent=100), False),
    ],
)
def test_risky_flags_start_off(risky_flag: dict[str, Any], on: bool) -> None:
    assert bool(flags.risky_flags_on(doc(risky_flag), first_stage_percent=1)) is on


def test_drift_names_missing_unknown_and_changed_flags() -> None:
    declared = doc(flag("a"), flag("b", risky=True), flag("c", rollout_percent=25))
    served = doc(
        flag("a"), {"name": "b", "risky": True, "rollout_percent": 0}, flag("d"), flag("c")
    )
    found = {(f.flag, f.kind, f.detail) for f in flags.drift(served, declared)}
    assert found == {
        ("d", "undeclared", "served but not declared in flags.toml"),
        ("b", "differs", "default served '<absent>', declared False"),
        ("c", "differs", "rollout_percent served 0, declared 25"),
    }
    assert flags.drift(declared, declared) == []


def test_drift_sees_a_type_change() -> None:
    # 1 == True in Python; a flag served as 1 where the file says true is still drift.
    declared = doc(flag("a", default=True))
    served = doc(flag("a", default=1))
    assert [f.detail for f in flags.drift(served, declared)] == ["default served 1, declared True"]


def test_median_latency() -> None:
    fetches = [flags.FlagFetch(200, ms, "application/json", {}) for ms in (5, 900, 7, 6, 8)]
    assert flags.median_latency_ms(fetches) == 7


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("version = 1\n[flags.a]\ndefualt = false\nrisky = false\n", r"defualt in \[flags.a\]"),
        ("version = 1\nflag = {}\n", "flag in the top level"),
    ],
)
def test_declared_file_names_an_unknown_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "flags.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"unknown key.*{named}"):
        flags.declared_document(path)
