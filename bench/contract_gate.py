"""How long the pull-request gate takes: ``pytest suites/contract -m contract``, sandbox start
included, median of N runs.

Run: ``.venv/bin/python bench/contract_gate.py [--runs 3] [--workers N]``

Each run is a separate ``python -m pytest`` with its own sandbox state dir (so a sandbox left
running with ``sandbox up`` is never reused) and its own evidence dir, timed with a monotonic
clock; the run's verdict must be GO, or the figure would time a different path.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300.0
VERDICT = re.compile(r"SPARK GATE contract: (GO|NO-GO)")
PYTEST_SECONDS = re.compile(r" in ([0-9.]+)s")


def one_run(workdir: Path, workers: int) -> tuple[float, float | None, str]:
    """Wall seconds of the whole run, pytest's own session seconds, and the verdict."""
    argv = [sys.executable, "-m", "pytest", "suites/contract", "-m", "contract"]
    if workers:
        argv += ["-n", str(workers)]
    argv += ["--spark-evidence-dir", str(workdir / "evidence"), "-p", "no:cacheprovider"]
    env = {**os.environ, "SPARK_SANDBOX_STATE_DIR": str(workdir / "state")}
    began = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGINT first so the plugin tears its sandbox down, then the whole group.
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate(timeout=30)
        raise SystemExit(
            f"the contract gate overran {RUN_TIMEOUT_S:g} s:\n{output[-3000:]}"
        ) from None
    wall = time.monotonic() - began
    verdict = VERDICT.search(output)
    session = [float(s) for s in PYTEST_SECONDS.findall(output)]
    return wall, (session[-1] if session else None), verdict.group(1) if verdict else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="pytest-xdist workers (0: none)")
    args = parser.parse_args()
    walls: list[float] = []
    sessions: list[float] = []
    for number in range(1, args.runs + 1):
        workdir = Path(tempfile.mkdtemp(prefix="spark-bench-contract-"))
        try:
            wall, session, verdict = one_run(workdir, args.workers)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if verdict != "GO":
            print(f"run {number}: verdict {verdict}, not timed", file=sys.stderr)
            return 1
        walls.append(wall)
        if session is not None:
            sessions.append(session)
        shown = f"{session:.2f} s" if session is not None else "?"
        print(f"run {number}: {wall:.2f} s wall, pytest session {shown}, {verdict}", flush=True)
    print()
    print(f"{'measure':<36} {'median s':>9} {'min s':>7} {'max s':>7}")
    rows = [("pytest suites/contract -m contract", walls)]
    if sessions:
        rows.append(("  of which pytest's session", sessions))
    for label, values in rows:
        print(
            f"{label:<36} {statistics.median(values):>9.2f} {min(values):>7.2f} {max(values):>7.2f}"
        )
    print(f"\nruns: {args.runs}, xdist workers: {args.workers or 'none'} (sandbox start included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
