"""Every seeded money and order-integrity defect breaks exactly its M1–M4 / G03 sub-checks, and
the healthy sandbox passes: ``pytest suites/money -m money`` is GO, and G03 with M1–M4 passes.

Each case is a separate gate run (``python -m pytest``) against a sandbox started with the
defect. Money defects run the money suite (``-m money``); order-integrity defects run only the
G03 suite (``-m go_nogo``), where G03 cannot pass because M1–M4 are MISSING, so those cases
assert on G03's own tests in ``checks.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gate_runner import failed_sub_checks, read_bundle, run_gate

from spark_sandbox.defects import DEFECTS

MONEY = ["suites/money"]
G03 = ["suites/release/test_g03_order_integrity.py"]
MONEY_ITEMS = ("M1", "M2", "M3", "M4")
ITEMS = (*MONEY_ITEMS, "G03")

# defect -> (the item it breaks, the sub-checks (test names) that must fail and no others)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    # Half-up shows in every computed amount: commission and the position's average price.
    "half_up_rounding": (
        "M1",
        frozenset({"test_commission_rounds_half_even", "test_position_amounts_round_half_even"}),
    ),
    "tick_misaligned_accepted": (
        "M2",
        frozenset({"test_only_prices_on_the_tick_grid_are_accepted"}),
    ),
    # The outward band is both published by /api/market and enforced on orders.
    "band_rounded_outward": (
        "M2",
        frozenset({"test_market_bands_rounded_inward", "test_orders_at_the_band_limits"}),
    ),
    "float_money": (
        "M3",
        frozenset({"test_order_money_is_a_decimal_string_equal_to_the_database"}),
    ),
    "reconciliation_drift": ("M4", frozenset({"test_positions_equal_the_sum_of_fills"})),
    "idempotency_replay_mismatch_200": (
        "G03",
        frozenset({"test_same_key_with_another_payload_is_refused_with_422"}),
    ),
    # Without a claim no submission ever sees the key in flight, and each places its order.
    "duplicate_order_under_concurrency": (
        "G03",
        frozenset(
            {
                "test_key_in_flight_is_refused_with_409",
                "test_concurrent_submissions_of_one_key_create_one_order",
            }
        ),
    ),
}


def test_expected_table_matches_the_defect_registry() -> None:
    for name, (item, _) in EXPECTED.items():
        assert item in DEFECTS[name].breaks, name
        # Other items a defect breaks (B4 for the rounding and tick defects) are not ours.
        assert not (set(DEFECTS[name].breaks) - {item}) & set(ITEMS), name
    assert {d.name for d in DEFECTS.values() if set(d.breaks) & set(ITEMS)} == set(EXPECTED)


def test_healthy_money_gate_is_go(tmp_path: Path) -> None:
    code, output = run_gate(MONEY, "money", None, tmp_path)
    verdict, checks = read_bundle(tmp_path)
    tail = output[-4000:]
    assert failed_sub_checks(checks) == set(), f"healthy sandbox failed:\n{tail}"
    assert code == 0 and verdict["verdict"] == "GO", f"exit {code}, {verdict['verdict']}:\n{tail}"


def test_healthy_g03_passes_with_m1_to_m4(tmp_path: Path) -> None:
    code, output = run_gate([*MONEY, *G03], "go_nogo", None, tmp_path)
    verdict, checks = read_bundle(tmp_path)
    items = verdict["items"]
    assert isinstance(items, dict)
    tail = output[-4000:]
    assert failed_sub_checks(checks) == set(), f"healthy sandbox failed:\n{tail}"
    assert code == 1, f"exit code {code} (go_nogo is NO-GO while other items are MISSING)"
    for item in ITEMS:
        assert items[item]["status"] == "PASSED", f"{item}: {items[item]}\n{tail}"


@pytest.mark.parametrize("defect", list(EXPECTED))
def test_defect_breaks_exactly_its_sub_checks(defect: str, tmp_path: Path) -> None:
    broken, sub_checks = EXPECTED[defect]
    suites, marker = (G03, "go_nogo") if broken == "G03" else (MONEY, "money")
    code, output = run_gate(suites, marker, defect, tmp_path)
    tail = output[-4000:]
    verdict, checks = read_bundle(tmp_path)
    items = verdict["items"]
    assert isinstance(items, dict)
    failed = failed_sub_checks(checks)
    assert code == 1, f"{defect}: exit code {code}, expected NO-GO:\n{tail}"
    assert failed == set(sub_checks), f"{defect}: failing sub-checks {failed}:\n{tail}"
    if broken == "G03":
        # M1–M4 are MISSING in a G03-only run; G03's own tests are what this defect must fail.
        assert items["G03"]["status"] != "PASSED", f"G03: {items['G03']}\n{tail}"
        return
    assert items[broken]["status"] == "FAILED", f"{broken}: {items[broken]}\n{tail}"
    reason = str(items[broken]["reason"])
    assert any(f"::{name}" in reason for name in sub_checks), f"{broken} reason: {reason}"
    for item in set(MONEY_ITEMS) - {broken}:
        assert items[item]["status"] == "PASSED", f"{item}: {items[item]}\n{tail}"
