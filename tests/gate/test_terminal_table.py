"""The verdict as the terminal and the report's first line say it: one line of why, and a table
whose reasons wrap at the terminal's width instead of being cut."""

from __future__ import annotations

from pytest_spark.gate import ItemResult, Verdict
from pytest_spark.report import headline, id_ranges, terminal_lines


def _verdict(*items: tuple[str, str, str], verdict: str = "NO-GO") -> Verdict:
    results = {i: ItemResult(i, f"title of {i}", status, reason) for i, status, reason in items}
    return Verdict("go_nogo", "v1.4.0", verdict, results)


def test_headline_counts_each_unsatisfied_status_worst_first() -> None:
    verdict = _verdict(
        ("B5", "FAILED", "sub-check cross_origin_isolated 0 < 1: OUT OF BOUNDS"),
        ("G03", "PASSED", "3 test(s) passed"),
        *((f"T{n:02d}", "MISSING", "no test claiming it") for n in range(1, 15)),
        ("G04", "MISSING", "no test"),
        ("K3", "NOT-REQUIRED", "no pact_broker"),
    )
    assert headline(verdict) == "NO-GO: 1 item FAILED (B5); 15 items MISSING (T01–T14, G04)"


def test_headline_of_a_go_counts_what_is_satisfied() -> None:
    verdict = _verdict(("B1", "PASSED", "ok"), ("K3", "NOT-REQUIRED", "-"), verdict="GO")
    assert headline(verdict) == "GO: 2 items satisfied"


def test_id_ranges_join_runs_of_three_or_more() -> None:
    assert id_ranges(["T01", "T02", "T03", "G04", "G05", "G07", "S1", "C1"]) == (
        "T01–T03, G04, G05, G07, S1, C1"
    )


def test_reasons_wrap_at_80_columns_and_nothing_is_cut() -> None:
    reason = (
        "sub-check(s) burn_rate_rules_unhealthy, absent_signal_rules_unhealthy: not measured "
        "in this run; 14 of its tests never ran"
    )
    lines = terminal_lines(_verdict(("G06", "MISSING", reason)), width=80)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[1].startswith("G06    MISSING         sub-check(s)")
    # Continuation lines stay in the reason column, and every word of the reason is there.
    table = lines[1 : lines.index(next(li for li in lines if li.startswith("NO-GO")))]
    assert all(line.startswith(" " * 23) for line in table[1:])
    assert " ".join(" ".join(line[23:].split()) for line in table) == reason
    assert "…" not in "".join(lines)
    # The table ends with the one-line reason.
    assert lines[-1] == "NO-GO: 1 item MISSING (G06)"
