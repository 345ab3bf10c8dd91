"""Waivers are refused by type, never by searching their text, and people are compared as
people: case, Unicode compatibility forms and an e-mail's local part do not make a second
person. A waiver that could never have been granted blocks the release on its own."""

from __future__ import annotations

import pytest

from pytest_spark.waivers import identity

from .conftest import in_days, read_verdict, waiver_toml

FAILING_A1 = """
import pytest

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    spark_evidence.check("offset_ms", 140, unit="ms", limit=100)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""

# case -> (waiver kwargs, G1 status, blocker fragment or None)
WAIVERS = {
    "valid": ({}, "WAIVED", None),
    "expired": ({"expires": in_days(-1)}, "WAIVER-EXPIRED", None),
    # The author's name contains "expired": the refusal is typed, not read from text.
    "self_approved_named_expired": (
        {"author": "expired.bob", "approver": "expired.bob"},
        "WAIVER-INVALID",
        "approved by its own author",
    ),
    "self_approved_case": ({"author": "Ayse", "approver": "ayse"}, "WAIVER-INVALID", "own author"),
    "self_approved_email": (
        {"author": "ayse", "approver": "Ayse@bank.example"},
        "WAIVER-INVALID",
        "own author",
    ),
    "self_approved_plus_address": (
        {"author": "ayse+waivers@bank.example", "approver": "AYSE@bank.example"},
        "WAIVER-INVALID",
        "own author",
    ),
    "self_approved_fullwidth": (
        {"author": "ａｙｓｅ", "approver": "ayse"},
        "WAIVER-INVALID",
        "own author",
    ),
    "self_approved_spaces": (
        {"author": " ayse ", "approver": "ayse"},
        "WAIVER-INVALID",
        "own author",
    ),
    "beyond_horizon": ({"expires": in_days(200)}, "WAIVER-INVALID", "more than 90 days"),
}


@pytest.mark.parametrize("case", sorted(WAIVERS))
def test_waiver_matrix(gate_project: pytest.Pytester, case: str) -> None:
    kwargs, status, blocker = WAIVERS[case]
    gate_project.makepyfile(test_suite=FAILING_A1)
    gate_project.makefile(".toml", **{"ops/waivers": waiver_toml("G1", **kwargs)})
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    verdict = read_verdict(gate_project)
    assert verdict["items"]["G1"]["status"] == status, verdict["items"]["G1"]
    go = case == "valid"
    assert (result.ret, verdict["verdict"]) == ((0, "GO") if go else (1, "NO-GO"))
    blockers = verdict["blockers"]
    if blocker is None:
        assert not blockers, blockers
    else:
        assert any(blocker in b for b in blockers), blockers


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"author": "mehmet", "approver": "MEHMET@bank.example"}, "own author"),
        ({"expires": in_days(365)}, "more than 90 days"),
    ],
)
def test_a_never_grantable_waiver_blocks_a_passing_item(
    gate_project: pytest.Pytester, kwargs: dict[str, str], fragment: str
) -> None:
    gate_project.makefile(".toml", **{"ops/waivers": waiver_toml("G1", **kwargs)})
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    verdict = read_verdict(gate_project)
    assert verdict["items"]["G1"]["status"] == "PASSED"
    assert result.ret == 1
    assert any(fragment in b for b in verdict["blockers"]), verdict["blockers"]


def test_the_horizon_comes_from_the_checklist(gate_project: pytest.Pytester) -> None:
    checklist = gate_project.path / "ops" / "checklist.toml"
    checklist.write_text(checklist.read_text() + "\n[waiver_policy]\nmax_days = 400\n")
    gate_project.makepyfile(test_suite=FAILING_A1)
    gate_project.makefile(".toml", **{"ops/waivers": waiver_toml("G1", expires=in_days(365))})
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert read_verdict(gate_project)["items"]["G1"]["status"] == "WAIVED"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Ayse", "ayse"),
        ("ayse@bank.example", "AYSE"),
        ("ayse+w@bank.example", "ayse@other.example"),
        ("ａｙｓｅ", "ayse"),
        ("\tayse ", "ayse"),
    ],
)
def test_identity_names_one_person(a: str, b: str) -> None:
    assert identity(a) == identity(b)


def test_identity_keeps_two_people_apart() -> None:
    assert identity("ayse") != identity("mehmet")
    assert identity("ayse.k@bank.example") != identity("ayse@bank.example")
