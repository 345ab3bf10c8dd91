"""Every seeded defect gives NO-GO on exactly the items its registry entry names, and within
them exactly the sub-checks it lists; every other item the run measures PASSED.

One parametrized case per defect and gate group that measures one of its items: a separate
gate run (``python -m pytest``) of the group's suites against a sandbox started with the
defect, read back from the signed bundle's ``verdict.json`` and ``checks.jsonl``. This is the
proof that each check can fail (a check that cannot fail is no check). The healthy runs and
the cases no registry defect reaches are in the other modules of this folder.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gate_runner import REPO, GateOutcome, gate

from spark_sandbox.defects import DEFECTS, TRIGGERS, Defect


@dataclass(frozen=True)
class GateGroup:
    """Suites measured together in one gate run, and the items they measure."""

    suites: tuple[str, ...]
    marker: str
    items: tuple[str, ...]


BLIND_SPOTS = "suites/blind_spots"
CANARY_GROUP = "canary"
CANARY_ITEMS = tuple(f"S{n}" for n in range(1, 8))
GROUPS = {
    "b1-b3": GateGroup(
        (
            f"{BLIND_SPOTS}/test_b1_time.py",
            f"{BLIND_SPOTS}/test_b2_migrations.py",
            f"{BLIND_SPOTS}/test_b3_pgbouncer.py",
        ),
        "blind_spot",
        ("B1", "B2", "B3"),
    ),
    "b4-b9": GateGroup(
        (f"{BLIND_SPOTS}/test_b4_decimal.py", f"{BLIND_SPOTS}/test_b9_supply_chain.py"),
        "blind_spot",
        ("B4", "B9"),
    ),
    "b5-b7": GateGroup(
        (f"{BLIND_SPOTS}/test_b5_csp.py", f"{BLIND_SPOTS}/test_b7_flags.py"),
        "blind_spot",
        ("B5", "B7"),
    ),
    "b6-b8": GateGroup(
        (f"{BLIND_SPOTS}/test_b6_observability.py", f"{BLIND_SPOTS}/test_b8_burn_alerts.py"),
        "blind_spot",
        ("B6", "B8"),
    ),
    "money": GateGroup(("suites/money",), "money", ("M1", "M2", "M3", "M4")),
    # G03 alone: it requires M1–M4, which are MISSING in this run, so it is judged here by
    # its own sub-checks and tests.
    "g03": GateGroup(("suites/release/test_g03_order_integrity.py",), "go_nogo", ("G03",)),
    "g04": GateGroup(("suites/release/test_g04_backups.py",), "go_nogo", ("G04",)),
    "g07": GateGroup(("suites/release/test_g07_alert_delivery.py",), "go_nogo", ("G07",)),
    "g05": GateGroup(("suites/release/test_g05_rollback.py",), "go_nogo", ("G05",)),
    "g09": GateGroup(("suites/release/test_g09_outbox.py",), "go_nogo", ("G09",)),
    "contract": GateGroup(("suites/contract",), "contract", ("K1", "K2")),
    # T01–T14 with G06, which requires them: a broken trigger fails G06 as well.
    "rollback": GateGroup(("suites/rollback",), "go_nogo", (*TRIGGERS, "G06")),
    "g08-g10": GateGroup(
        ("suites/release/test_g08_baseline.py", "suites/release/test_g10_canary_plan.py"),
        "go_nogo",
        ("G08", "G10"),
    ),
    # The chaos scenarios written so far. C2, C3, C5 and C6 have no scenario yet and stay
    # MISSING, so the chaos gate is NO-GO even on the healthy sandbox; a case here is judged
    # on the items the group measures.
    "chaos": GateGroup(("suites/chaos",), "chaos", ("C1", "C4")),
    # A canary stage builds on the bundles of the stages before it: its cases run in
    # test_canary_gate.py, on top of a healthy rollout's evidence.
    CANARY_GROUP: GateGroup(("suites/canary",), "canary", CANARY_ITEMS),
}
# Groups that judge latency (G08's baseline p95 < 200 ms, the chaos steady state's p95) run
# alone, after the parallel tests.
SOLO_GROUPS = frozenset({"g08-g10", "chaos"})
CASES = [
    pytest.param(
        defect,
        name,
        id=f"{defect.name}-{name}",
        marks=[pytest.mark.solo] if name in SOLO_GROUPS else [],
    )
    for defect in DEFECTS.values()
    for name, group in GROUPS.items()
    if set(defect.items) & set(group.items) and name != CANARY_GROUP
]


def registry_items() -> list[dict[str, Any]]:
    with (REPO / "ops" / "checklist.toml").open("rb") as handle:
        return tomllib.load(handle)["item"]  # type: ignore[no-any-return]


def registry_sub_checks() -> dict[str, frozenset[str]]:
    return {item["id"]: frozenset(item.get("sub_checks", ())) for item in registry_items()}


def failing_composites(broken: set[str], items: tuple[str, ...]) -> set[str]:
    """The group's composite items that require a broken item: they fail with it."""
    requires = {item["id"]: set(item.get("requires", ())) for item in registry_items()}
    return {item for item in items if requires.get(item, set()) & broken}


def test_every_defect_names_measured_items_and_their_registry_sub_checks() -> None:
    measured = {item for group in GROUPS.values() for item in group.items}
    declared = registry_sub_checks()
    for defect in DEFECTS.values():
        assert defect.breaks, f"{defect.name} declares nothing it breaks"
        for item, sub_checks in defect.breaks.items():
            assert item in measured, f"{defect.name}: no gate group here measures {item}"
            assert sub_checks and sub_checks <= declared[item], (
                f"{defect.name}: {sorted(sub_checks - declared[item])} are not sub-checks of "
                f"{item} in ops/checklist.toml"
            )


@pytest.mark.parametrize(("defect", "group_name"), CASES)
def test_defect_breaks_exactly_its_sub_checks(
    defect: Defect, group_name: str, tmp_path: Path
) -> None:
    group = GROUPS[group_name]
    run = gate(list(group.suites), group.marker, defect.name, tmp_path)
    assert_breaks_exactly(run, defect, group)


def assert_breaks_exactly(run: GateOutcome, defect: Defect, group: GateGroup) -> None:
    """NO-GO; within the group, the defect's items end as it says (FAILED on exactly its
    sub-checks, or INCONCLUSIVE) with the composites that require them; the rest PASSED."""
    expected = {item: subs for item, subs in defect.breaks.items() if item in group.items}
    assert run.code == 1, f"{defect.name}: exit code {run.code}, expected NO-GO:\n{run.tail}"
    if defect.expect != "FAILED":
        for item in group.items:
            wanted = defect.expect if item in expected else "PASSED"
            status = run.items[item]["status"]
            assert status == wanted, f"{defect.name}: {item} {run.items[item]}\n{run.tail}"
        return
    assert run.broken(group.items) == expected, (
        f"{defect.name}: sub-checks not within limits {run.broken(group.items)}, expected "
        f"{expected}:\n{run.tail}"
    )
    # What failed belongs to the broken items only.
    assert run.items_of_failed_tests() <= set(expected), f"{run.failed()}\n{run.tail}"
    failing = set(expected) | failing_composites(set(expected), group.items)
    for item in group.items:
        status = run.items[item]["status"]
        wanted = "FAILED" if item in failing else "PASSED"
        assert status == wanted, f"{defect.name}: {item} {run.items[item]}\n{run.tail}"
