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
from gate_runner import assert_healthy, assert_only_broken, gate

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
    run = gate(MONEY, "money", None, tmp_path)
    assert_healthy(run, MONEY_ITEMS)
    assert run.code == 0 and run.verdict["verdict"] == "GO", f"exit {run.code}:\n{run.tail}"


def test_healthy_g03_passes_with_m1_to_m4(tmp_path: Path) -> None:
    run = gate([*MONEY, *G03], "go_nogo", None, tmp_path)
    # go_nogo is NO-GO while the other release items are MISSING in this partial run.
    assert run.code == 1, f"exit code {run.code}:\n{run.tail}"
    assert_healthy(run, ITEMS)


@pytest.mark.parametrize("defect", list(EXPECTED))
def test_defect_breaks_exactly_its_sub_checks(defect: str, tmp_path: Path) -> None:
    broken, sub_checks = EXPECTED[defect]
    if broken != "G03":
        run = gate(MONEY, "money", defect, tmp_path)
        assert_only_broken(run, defect, broken, sub_checks, MONEY_ITEMS)
        return
    run = gate(G03, "go_nogo", defect, tmp_path)
    # M1–M4 are MISSING in a G03-only run; G03's own tests are what this defect must fail.
    assert run.code == 1, f"{defect}: exit code {run.code}:\n{run.tail}"
    assert run.failed() == set(sub_checks), f"{defect}: failing {run.failed()}:\n{run.tail}"
    assert run.items["G03"]["status"] == "FAILED", f"G03: {run.items['G03']}\n{run.tail}"
