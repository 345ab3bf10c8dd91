"""Every seeded contract defect breaks its pact verification, and the healthy sandbox is GO.

Each case runs only the contract suite (``-m contract``) in a separate gate run against a
sandbox started with the defect, then reads the bundle's ``verdict.json`` and ``checks.jsonl``.
Only the contract suite runs, so a defect that also breaks a money item (float_money, M3)
shows here as K1 alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gate_runner import assert_healthy, assert_only_broken, gate

from spark_sandbox.defects import DEFECTS

SUITES = ["suites/contract"]
ITEMS = ("K1", "K2")

# defect -> (the item it breaks, the sub-checks (test names) that must fail and no others)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    "contract_field_renamed": ("K1", frozenset({"test_web_pact_verified_against_provider"})),
    "float_money": ("K1", frozenset({"test_web_pact_verified_against_provider"})),
    "order_event_schema_changed": (
        "K2",
        frozenset({"test_order_event_pact_verified_against_provider"}),
    ),
}


def test_expected_table_matches_the_defect_registry() -> None:
    for name, (item, _) in EXPECTED.items():
        # float_money is an M3 defect too; only the contract suite runs here, so only K1 shows.
        assert item in DEFECTS[name].breaks, name
    contract_defects = {d.name for d in DEFECTS.values() if set(d.breaks) & {"K1", "K2", "K3"}}
    assert contract_defects == set(EXPECTED)


@pytest.mark.parametrize("defect", [None, *EXPECTED], ids=lambda d: d or "healthy")
def test_defect_breaks_exactly_its_sub_check(defect: str | None, tmp_path: Path) -> None:
    run = gate(SUITES, "contract", defect, tmp_path)
    # Without a broker K3 is NOT-REQUIRED and its checks do not run at all.
    assert not [c for c in run.checks if "K3" in c["items"]], run.tail
    assert run.items["K3"]["status"] == "NOT-REQUIRED", f"K3: {run.items['K3']}\n{run.tail}"
    if defect is None:
        assert_healthy(run, ITEMS)
        assert run.code == 0 and run.verdict["verdict"] == "GO", f"exit {run.code}:\n{run.tail}"
        return
    assert_only_broken(run, defect, *EXPECTED[defect], ITEMS)
