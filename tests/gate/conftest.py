"""A tiny checklist registry and helpers for running the gate inside pytester."""

from __future__ import annotations

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
id = "A1"
title = "first measured item"
gates = ["tiny"]
waivable = true
evidence = ["scan", "sbom"]

[[item]]
id = "A2"
title = "unwaivable money item"
gates = ["tiny"]
waivable = false

[[item]]
id = "A3"
title = "composite of A1 and A2"
gates = ["tiny"]
waivable = true
requires = ["A1", "A2"]

[[item]]
id = "A4"
title = "only with a broker"
gates = ["tiny"]
waivable = true
required_when = "pact_broker"

[[item]]
id = "Z1"
title = "in another gate"
gates = ["side"]
waivable = true
"""

PASSING_SUITE = """
import pytest

@pytest.mark.go_nogo("A1")
def test_a1(spark_evidence):
    spark_evidence.measure("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.money("A2")
def test_a2():
    pass
"""


@pytest.fixture
def gate_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the tiny registry and a passing suite."""
    pytester.makefile(".toml", **{"ops/checklist": TINY_CHECKLIST})
    pytester.makepyfile(test_suite=PASSING_SUITE)
    return pytester


def latest_bundle(pytester: pytest.Pytester) -> Path:
    bundles = sorted((pytester.path / "reports").glob("*/*/verdict.json"))
    assert bundles, "no bundle was written"
    return bundles[-1].parent


def read_verdict(pytester: pytest.Pytester) -> dict[str, object]:
    return json.loads((latest_bundle(pytester) / "verdict.json").read_text())


def waiver_toml(
    item: str,
    *,
    author: str = "ayse",
    approver: str = "mehmet",
    expires: str = "2099-01-01T00:00:00Z",
) -> str:
    return f"""
[[waiver]]
item = "{item}"
reason = "known issue, fix in flight"
ticket = "SPARK-101"
author = "{author}"
approver = "{approver}"
expires = {expires}
"""
