"""What a test's phase reports say about it: its outcome, its message, its measurements."""

from __future__ import annotations

import pytest

from pytest_spark.evidence.records import Measurement
from pytest_spark.gate import Judged

# Worst first: how several phases of one test combine into its outcome.
OUTCOME_ORDER = ("error", "failed", "inconclusive", "xpassed", "xfailed", "skipped", "passed")


def worst(a: str, b: str) -> str:
    return a if OUTCOME_ORDER.index(a) <= OUTCOME_ORDER.index(b) else b


def outcome_of(report: pytest.TestReport) -> str | None:
    """The outcome one phase implies; None for a passing teardown (it adds nothing)."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            return "xpassed" if xfail else "passed"
        if report.failed:
            return "inconclusive" if hasattr(report, "spark_inconclusive") else "failed"
        return "xfailed" if xfail else "skipped"
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "passed" if report.when == "setup" else None


def message_of(report: pytest.TestReport) -> str:
    """One line for the verdict's reason column: the skip reason or the crash message."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, lineno, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300] if crash.message else ""
    return str(longrepr).strip().splitlines()[-1][:300] if longrepr else ""


def judged_measurements(evidence: dict[str, object]) -> tuple[Judged, ...]:
    """The measurements of one test's evidence (as shipped on its report) for the verdict."""
    raw = evidence.get("measurements", [])
    judged = []
    for m in raw if isinstance(raw, list) else []:
        measurement = Measurement(
            str(m["name"]), m["value"], str(m.get("unit") or ""), m.get("limit"), m.get("at_least")
        )
        judged.append(
            Judged(
                measurement.name, measurement.within, measurement.missing, measurement.describe()
            )
        )
    return tuple(judged)
