"""Every seeded B5/B7 defect breaks exactly its sub-checks, and the healthy sandbox passes.

Each case runs the B5 and B7 suites in a separate gate run (``python -m pytest``) against a
sandbox started with the defect, then reads the signed bundle's ``verdict.json`` and
``checks.jsonl``: the proof that each check can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gate_runner import assert_healthy, assert_only_broken, gate

from spark_sandbox.defects import DEFECTS

SUITES = ["suites/blind_spots/test_b5_csp.py", "suites/blind_spots/test_b7_flags.py"]
ITEMS = ("B5", "B7")
REPORT_POSTS = frozenset(
    {
        "test_report_endpoint_accepts[application/csp-report]",
        "test_report_endpoint_accepts[application/reports+json]",
    }
)

# defect -> (the item it breaks, the sub-checks (test names) that must fail and no others)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    # The browser sees no isolation, and the headers say why.
    "no_coep": ("B5", frozenset({"test_page_is_cross_origin_isolated", "test_isolation_headers"})),
    "unsafe_inline_csp": ("B5", frozenset({"test_policy_is_strict"})),
    # The page loads an unreviewed origin, and its CSP trusts it.
    "unlisted_third_party": (
        "B5",
        frozenset({"test_loaded_origins_on_allowlist", "test_csp_agrees_with_allowlist"}),
    ),
    "csp_report_500": ("B5", REPORT_POSTS),
    # A served flag that lost its default also no longer matches flags.toml; so does one
    # switched on for everyone.
    "implicit_flag_default": (
        "B7",
        frozenset({"test_every_flag_has_explicit_default", "test_served_flags_match_declared"}),
    ),
    "risky_flag_on": (
        "B7",
        frozenset({"test_risky_flags_start_off", "test_served_flags_match_declared"}),
    ),
}


def test_expected_table_matches_the_defect_registry() -> None:
    for name, (item, _) in EXPECTED.items():
        assert DEFECTS[name].breaks == (item,), name
    assert {d.name for d in DEFECTS.values() if set(d.breaks) & set(ITEMS)} == set(EXPECTED)


@pytest.mark.parametrize("defect", [None, *EXPECTED], ids=lambda d: d or "healthy")
def test_defect_breaks_exactly_its_sub_checks(defect: str | None, tmp_path: Path) -> None:
    run = gate(SUITES, "blind_spot", defect, tmp_path)
    # The other blind spots are MISSING in a run of these suites alone: NO-GO either way.
    assert run.code == 1, f"exit code {run.code}:\n{run.tail}"
    if defect is None:
        assert_healthy(run, ITEMS)
        return
    assert_only_broken(run, defect, *EXPECTED[defect], ITEMS)
