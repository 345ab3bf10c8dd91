"""Run the gate on the sandbox, with or without a seeded defect, and read its bundle.

Shared by the defect matrix: each case is a separate gate run (``python -m pytest``) of the
suites that measure the items under test, against a sandbox started with the defect (the
sandbox plugin's ``--spark-sandbox-defect``).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# A sandbox start (~7 s) plus the slowest deliberate waits of a suite fit with room to spare.
RUN_TIMEOUT_S = 240.0
STOP_GRACE_S = 30.0


def run_gate(
    suites: Sequence[str],
    marker: str,
    defect: str | None,
    evidence_dir: Path,
    extra_args: Sequence[str] = (),
) -> tuple[int, str]:
    """The suites as a gate run; stopped with SIGINT (so the sandbox is torn down) when it
    overruns, then killed."""
    argv = [sys.executable, "-m", "pytest", *suites, "-m", marker]
    if defect:
        argv += ["--spark-sandbox-defect", defect]
    argv += [*extra_args, "--spark-evidence-dir", str(evidence_dir), "-p", "no:cacheprovider"]
    # Its own state dir: a sandbox someone left running with `sandbox up` is never reused.
    env = {**os.environ, "SPARK_SANDBOX_STATE_DIR": str(evidence_dir / "state")}
    env.pop("PYTEST_XDIST_WORKER", None)
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
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate(timeout=STOP_GRACE_S)
        pytest.fail(f"gate run with defect {defect} overran {RUN_TIMEOUT_S:g} s:\n{output[-4000:]}")
    return proc.returncode, output


def gate_as_typed(command: str, evidence_dir: Path) -> GateOutcome:
    """A gate command exactly as the README gives it (``pytest -m go_nogo``), run from the
    repository root with this venv's pytest; only where bundles and sandbox state go differ,
    through the environment (SPARK_EVIDENCE_DIR, SPARK_SANDBOX_STATE_DIR)."""
    argv = shlex.split(command)
    assert argv[0] == "pytest", command
    argv[0] = str(Path(sys.executable).with_name("pytest"))
    env = {
        **os.environ,
        "SPARK_EVIDENCE_DIR": str(evidence_dir),
        "SPARK_SANDBOX_STATE_DIR": str(evidence_dir / "state"),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    verdict, checks = read_bundle(evidence_dir)
    bundle = next(evidence_dir.glob("dev/*/verdict.json")).parent
    return GateOutcome(proc.returncode, verdict, checks, proc.stdout + proc.stderr, bundle)


def read_bundle(evidence_dir: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    [verdict_path] = evidence_dir.glob("dev/*/verdict.json")
    checks = [
        json.loads(line)
        for line in (verdict_path.parent / "checks.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return json.loads(verdict_path.read_text()), checks


def failed_sub_checks(checks: list[dict[str, object]]) -> set[str]:
    """Test function names (parameters included) that did not pass."""
    return {str(c["nodeid"]).rpartition("::")[2] for c in checks if c.get("outcome") != "passed"}


def broken_sub_checks(verdict: dict[str, Any], items: Iterable[str]) -> dict[str, frozenset[str]]:
    """Item -> its sub-checks that were not judged within their limits (failed, missing, no
    data), for the items that have any."""
    broken = {}
    for item in items:
        shown = verdict["items"][item].get("sub_checks", {})
        bad = frozenset(name for name, text in shown.items() if not text.endswith(": ok"))
        if bad:
            broken[item] = bad
    return broken


@dataclass
class GateOutcome:
    """One gate run as its bundle tells it."""

    code: int
    verdict: dict[str, Any]
    checks: list[dict[str, Any]]
    output: str
    bundle: Path

    @property
    def items(self) -> dict[str, dict[str, Any]]:
        return self.verdict["items"]  # type: ignore[no-any-return]

    @property
    def tail(self) -> str:
        return self.output[-4000:]

    def failed(self) -> set[str]:
        return failed_sub_checks(self.checks)

    def broken(self, items: Iterable[str]) -> dict[str, frozenset[str]]:
        return broken_sub_checks(self.verdict, items)

    def items_of_failed_tests(self) -> set[str]:
        return {i for c in self.checks if c.get("outcome") != "passed" for i in c["items"]}


def gate(
    suites: Sequence[str],
    marker: str,
    defect: str | None,
    evidence_dir: Path,
    extra_args: Sequence[str] = (),
) -> GateOutcome:
    code, output = run_gate(suites, marker, defect, evidence_dir, extra_args)
    verdict, checks = read_bundle(evidence_dir)
    bundle = next(evidence_dir.glob("dev/*/verdict.json")).parent
    return GateOutcome(code, verdict, checks, output, bundle)


def assert_healthy(run: GateOutcome, items: Iterable[str]) -> None:
    """No sub-check failed and every item measured here PASSED."""
    assert run.failed() == set(), f"healthy sandbox failed {run.failed()}:\n{run.tail}"
    for item in items:
        assert run.items[item]["status"] == "PASSED", f"{item}: {run.items[item]}\n{run.tail}"


def assert_only_broken(
    run: GateOutcome, defect: str, broken: str, sub_checks: Iterable[str], items: Iterable[str]
) -> None:
    """Exactly the defect's sub-checks failed; its item is NO-GO naming one; the rest PASSED."""
    sub_checks = set(sub_checks)
    assert run.code == 1, f"{defect}: exit code {run.code}, expected NO-GO:\n{run.tail}"
    assert run.failed() == sub_checks, f"{defect}: failing sub-checks {run.failed()}:\n{run.tail}"
    assert run.items[broken]["status"] == "FAILED", f"{broken}: {run.items[broken]}\n{run.tail}"
    reason = str(run.items[broken]["reason"])
    assert any(f"::{name}" in reason for name in sub_checks), f"{broken} reason: {reason}"
    for item in set(items) - {broken}:
        assert run.items[item]["status"] == "PASSED", f"{item}: {run.items[item]}\n{run.tail}"
