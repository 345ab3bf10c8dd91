"""Every seeded contract defect breaks its pact verification, and the healthy sandbox is GO.

Each case runs only the contract suite (``-m contract``) in a separate gate run against a
sandbox started with the defect, then reads the bundle's ``verdict.json`` and ``checks.jsonl``.
Only the contract suite runs, so a defect that also breaks a money item (float_money, M3)
shows here as K1 alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gate_runner import failed_sub_checks, read_bundle, run_gate

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
    code, output = run_gate(SUITES, "contract", defect, tmp_path)
    tail = output[-4000:]
    verdict, checks = read_bundle(tmp_path)
    items = verdict["items"]
    assert isinstance(items, dict)
    # Without a broker K3's checks skip and the item is NOT-REQUIRED; they are no failure.
    k3 = [c for c in checks if "K3" in c["items"]]
    assert all(c["outcome"] == "skipped" for c in k3), k3
    assert items["K3"]["status"] == "NOT-REQUIRED", f"K3: {items['K3']}\n{tail}"
    failed = failed_sub_checks([c for c in checks if c not in k3])
    if defect is None:
        assert failed == set(), f"healthy sandbox failed {failed}:\n{tail}"
        for item in ITEMS:
            assert items[item]["status"] == "PASSED", f"{item}: {items[item]}\n{tail}"
        assert code == 0 and verdict["verdict"] == "GO", f"exit {code}:\n{tail}"
        return
    broken, sub_checks = EXPECTED[defect]
    assert code == 1, f"{defect}: exit code {code}, expected NO-GO:\n{tail}"
    assert failed == set(sub_checks), f"{defect}: failing sub-checks {failed}:\n{tail}"
    assert items[broken]["status"] == "FAILED", f"{broken}: {items[broken]}\n{tail}"
    reason = str(items[broken]["reason"])
    assert any(f"::{name}" in reason for name in sub_checks), f"{broken} reason: {reason}"
    for item in set(ITEMS) - {broken}:
        assert items[item]["status"] == "PASSED", f"{item}: {items[item]}\n{tail}"
