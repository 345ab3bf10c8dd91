"""A tiny checklist registry and helpers for running the gate inside pytester."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

TINY_CHECKLIST = """
[gates]
tiny = "a tiny gate"
side = "another gate"

[evidence]
scan = "scan_<release>.txt"
sbom = "sbom_<release>.json"

[[item]]
id = "G1"
title = "first measured item"
gates = ["tiny"]
waivable = true
evidence = ["scan", "sbom"]
sub_checks = ["offset_ms"]

[[item]]
id = "M2"
title = "unwaivable money item"
gates = ["tiny"]
waivable = false
sub_checks = ["money_findings"]

[[item]]
id = "G3"
title = "composite of G1 and M2"
gates = ["tiny"]
waivable = true
requires = ["G1", "M2"]

[[item]]
id = "K4"
title = "only with a broker"
gates = ["tiny"]
waivable = true
required_when = "pact_broker"
sub_checks = ["broker_answers"]

[[item]]
id = "C1"
title = "in another gate"
gates = ["side"]
waivable = true
sub_checks = ["side_findings"]
"""

PASSING_SUITE = """
import pytest

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""


@pytest.fixture
def gate_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the tiny registry and a passing suite."""
    pytester.makefile(".toml", **{"ops/checklist": TINY_CHECKLIST})
    with_canary_plan(pytester)
    pytester.makepyfile(test_suite=PASSING_SUITE)
    return pytester


def with_canary_plan(pytester: pytest.Pytester) -> None:
    """The release's canary plan, whose stages --spark-stage accepts."""
    plan = Path(__file__).resolve().parents[2] / "ops" / "canary-plan.toml"
    pytester.makefile(".toml", **{"ops/canary-plan": plan.read_text()})


def latest_bundle(pytester: pytest.Pytester) -> Path:
    bundles = sorted((pytester.path / "reports").glob("*/*/verdict.json"))
    assert bundles, "no bundle was written"
    return bundles[-1].parent


def read_verdict(pytester: pytest.Pytester) -> dict[str, object]:
    return json.loads((latest_bundle(pytester) / "verdict.json").read_text())


def in_days(days: int) -> str:
    """A TOML UTC date-time ``days`` from now (waivers may run at most 90 days)."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def waiver_toml(
    item: str,
    *,
    author: str = "ayse",
    approver: str = "mehmet",
    expires: str | None = None,
) -> str:
    expires = expires or in_days(30)
    return f"""
[[waiver]]
item = "{item}"
reason = "known issue, fix in flight"
ticket = "SPARK-101"
author = "{author}"
approver = "{approver}"
expires = {expires}
"""
