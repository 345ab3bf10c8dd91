"""Every seeded B1–B3 defect breaks exactly its sub-check, and the healthy sandbox passes.

Each case runs the B1–B3 suites in a separate gate run (``python -m pytest``) against a sandbox
started with the defect, then reads the signed bundle's ``verdict.json`` and ``checks.jsonl``.
This is the proof that each check can fail (a check that cannot fail is no check).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gate_runner import assert_healthy, assert_only_broken, gate

from spark_sandbox.defects import DEFECTS

SUITES = [
    "suites/blind_spots/test_b1_time.py",
    "suites/blind_spots/test_b2_migrations.py",
    "suites/blind_spots/test_b3_pgbouncer.py",
]
ITEMS = ("B1", "B2", "B3")

# defect -> (the item it breaks, the sub-checks (test names) that must fail and no others)
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    "app_clock_skew": ("B1", frozenset({"test_app_db_clock_difference"})),
    "ntp_offset": ("B1", frozenset({"test_ntp_offset"})),
    "sequence_behind": ("B1", frozenset({"test_sequences_not_behind"})),
    "pending_migration": ("B2", frozenset({"test_every_migration_applied"})),
    "modified_migration": ("B2", frozenset({"test_no_migration_modified_since_applied"})),
    "failed_migration": ("B2", frozenset({"test_no_failed_migration"})),
    "pool_mode_session": ("B3", frozenset({"test_app_pool_is_transaction_mode"})),
    # LISTEN on a transaction pool breaks the mode check and, as a consequence, the round trip.
    "listen_on_transaction_pool": (
        "B3",
        frozenset(
            {"test_listen_pool_is_session_mode", "test_notify_round_trip_through_listen_pool"}
        ),
    ),
    "long_running_query": ("B3", frozenset({"test_no_long_idle_transaction"})),
}


def test_expected_table_matches_the_defect_registry() -> None:
    for name, (item, _) in EXPECTED.items():
        assert DEFECTS[name].breaks == (item,), name
    assert {d.name for d in DEFECTS.values() if set(d.breaks) & set(ITEMS)} == set(EXPECTED)


@pytest.mark.parametrize("defect", [None, *EXPECTED], ids=lambda d: d or "healthy")
def test_defect_breaks_exactly_its_sub_check(defect: str | None, tmp_path: Path) -> None:
    run = gate(SUITES, "blind_spot", defect, tmp_path)
    # The other blind spots are MISSING in a run of these suites alone: NO-GO either way.
    assert run.code == 1, f"exit code {run.code}:\n{run.tail}"
    if defect is None:
        assert_healthy(run, ITEMS)
        return
    assert_only_broken(run, defect, *EXPECTED[defect], ITEMS)
