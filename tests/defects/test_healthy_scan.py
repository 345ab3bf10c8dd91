"""The whole blind-spot scan on a healthy sandbox is GO, run after run (no flakes).

The defect matrices prove each check can fail; this proves the scan as operators run it
(`pytest -m blind_spot`, every B item at once, one sandbox) passes, more than once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gate_runner import assert_healthy, gate

BLIND_SPOTS = tuple(f"B{n}" for n in range(1, 10))


@pytest.mark.parametrize("attempt", [1, 2])
def test_healthy_blind_spot_scan_is_go(attempt: int, tmp_path: Path) -> None:
    run = gate(["suites/blind_spots"], "blind_spot", None, tmp_path)
    assert_healthy(run, BLIND_SPOTS)
    assert run.code == 0 and run.verdict["verdict"] == "GO", f"run {attempt}:\n{run.tail}"
    scan = (run.bundle / "blind_spots_scan_dev.txt").read_text()
    assert "9/9 items passed" in scan, scan
