"""How long the money gate takes: ``pytest suites/money -m money``, median of N runs.

Run: ``.venv/bin/python bench/money_gate.py [--runs 3] [--reuse]``

Each run is a separate ``python -m pytest`` process timed with a monotonic clock. By default
every run starts its own sandbox (its own state dir, so a running one is never reused), which
is what a gate run on a fresh machine costs; with ``--reuse`` the runs measure the suite alone
against the sandbox named by ``$SPARK_SANDBOX_STATE_DIR`` (start it with ``spark_sandbox
sandbox up``). The verdict of every run is printed too: a timing of a NO-GO run is no figure.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300.0
STOP_GRACE_S = 30.0
VERDICT = re.compile(r"SPARK GATE money: (GO|NO-GO)")


def one_run(reuse: bool) -> tuple[float, str]:
    """Wall seconds of one gate run and its verdict."""
    with tempfile.TemporaryDirectory(prefix="spark-bench-money-") as scratch:
        env = dict(os.environ)
        if not reuse:
            env["SPARK_SANDBOX_STATE_DIR"] = str(Path(scratch) / "state")
        argv = [sys.executable, "-m", "pytest", "suites/money", "-m", "money"]
        argv += ["--spark-evidence-dir", str(Path(scratch) / "reports"), "-p", "no:cacheprovider"]
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
            # SIGINT first, so the run tears its sandbox down.
            proc.send_signal(signal.SIGINT)
            try:
                output, _ = proc.communicate(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate(timeout=STOP_GRACE_S)
            return time.monotonic() - began, f"overran {RUN_TIMEOUT_S:g} s"
        elapsed = time.monotonic() - began
    match = VERDICT.search(output)
    return elapsed, match.group(1) if match else f"no verdict (exit {proc.returncode})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="measure against the running sandbox")
    args = parser.parse_args()
    times: list[float] = []
    for number in range(1, args.runs + 1):
        elapsed, verdict = one_run(args.reuse)
        times.append(elapsed)
        print(f"run {number}: {elapsed:.2f} s, {verdict}", flush=True)
    what = "suite against a running sandbox" if args.reuse else "sandbox start + suite + stop"
    print(
        f"money gate ({what}): median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} runs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
