"""Every seeded B4 and B9 defect breaks exactly its sub-checks, and the healthy sandbox passes.

Each case runs the B4 and B9 suites in a separate gate run (``python -m pytest``) against a
sandbox started with the defect, then reads the signed bundle's ``verdict.json`` and
``checks.jsonl``. This is the proof that each check can fail (a check that cannot fail is no
check).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gate_runner import assert_healthy, assert_only_broken, gate

from spark_sandbox.defects import DEFECTS

SUITES = [
    "suites/blind_spots/test_b4_decimal.py",
    "suites/blind_spots/test_b9_supply_chain.py",
]
ITEMS = ("B4", "B9")

# defect -> (the item it breaks, the sub-checks (test names) that must fail and no others)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    # Half-up rounding shows in every half-way case the API computes: commission and average.
    "half_up_rounding": (
        "B4",
        frozenset({"test_commission_rounds_half_even", "test_average_price_rounds_half_even"}),
    ),
    "tick_misaligned_accepted": (
        "B4",
        frozenset({"test_misaligned_prices_rejected_naming_the_tick"}),
    ),
    "denied_license": ("B9", frozenset({"test_every_licence_known_and_allowed"})),
}


def test_expected_table_matches_the_defect_registry() -> None:
    for name, (item, _) in EXPECTED.items():
        assert item in DEFECTS[name].breaks, name
        # Other items a defect breaks (M1, M2) are not measured by these suites.
        assert not set(DEFECTS[name].breaks) & (set(ITEMS) - {item}), name
    assert {d.name for d in DEFECTS.values() if set(d.breaks) & set(ITEMS)} == set(EXPECTED)


@pytest.mark.parametrize("defect", [None, *EXPECTED], ids=lambda d: d or "healthy")
def test_defect_breaks_exactly_its_sub_checks(defect: str | None, tmp_path: Path) -> None:
    run = gate(SUITES, "blind_spot", defect, tmp_path)
    # The other blind spots are MISSING in a run of these suites alone: NO-GO either way.
    assert run.code == 1, f"exit code {run.code}:\n{run.tail}"
    if defect is None:
        assert_healthy(run, ITEMS)
        for ritual in ("sbom_dev.json", "build_provenance_dev.json"):
            assert (run.bundle / ritual).is_file(), f"{ritual} missing from the bundle:\n{run.tail}"
        return
    assert_only_broken(run, defect, *EXPECTED[defect], ITEMS)
