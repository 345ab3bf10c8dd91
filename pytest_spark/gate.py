"""Item outcomes + coverage + waivers -> the gate's verdict. Pure logic, no I/O.

Fail closed. An item is PASSED only when all of these hold in this run:

- every test collected for it was selected, ran its call phase (its body), and passed;
- every sub-check the registry declares for it was measured, with a value, within its limit
  (a file of tests that was never collected leaves its sub-checks unmeasured: MISSING);
- at least one of its tests recorded a measurement judged against a limit;
- every item it requires is PASSED, WAIVED or NOT-REQUIRED.

Anything else is not-passed and names why (ERROR, FAILED, INCONCLUSIVE, SKIPPED, MISSING,
WAIVER-EXPIRED, WAIVER-INVALID). A single not-passed item, or a session-level blocker
(interrupted run, collection error, refused waiver, ...), makes the verdict NO-GO.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_spark.checklist import Checklist, Item
from pytest_spark.waivers import Waiver

GO = "GO"
NO_GO = "NO-GO"

PASSED = "PASSED"
WAIVED = "WAIVED"
NOT_REQUIRED = "NOT-REQUIRED"
# Not-passed statuses, worst first: the order decides which reason an item reports.
ERROR = "ERROR"
FAILED = "FAILED"
INCONCLUSIVE = "INCONCLUSIVE"
SKIPPED = "SKIPPED"
MISSING = "MISSING"
WAIVER_EXPIRED = "WAIVER-EXPIRED"
WAIVER_INVALID = "WAIVER-INVALID"
SEVERITY = (ERROR, FAILED, INCONCLUSIVE, SKIPPED, MISSING)
SATISFIED = frozenset({PASSED, WAIVED, NOT_REQUIRED})

# pytest outcome of one test -> the item status it implies.
OUTCOME_STATUS = {
    "passed": PASSED,
    "failed": FAILED,
    "error": ERROR,
    "skipped": SKIPPED,
    "xfailed": FAILED,
    "xpassed": FAILED,
    "inconclusive": INCONCLUSIVE,
}


@dataclass(frozen=True)
class Judged:
    """One measurement a test recorded, as the verdict needs it."""

    name: str
    within: bool | None  # None: recorded without a limit, so it judges nothing
    missing: bool  # no value (None, NaN, infinity)
    shown: str  # "ntp_offset_ms = 12.3 ms (limit < 100)"


@dataclass(frozen=True)
class CheckOutcome:
    """What one test did for the items it claims."""

    nodeid: str
    items: tuple[str, ...]
    outcome: str
    message: str = ""
    # The test's body ran in this run: a passing setup (--setup-only) or a report fabricated
    # without running the call phase is not a pass.
    call_ran: bool = False
    measurements: tuple[Judged, ...] = ()


@dataclass(frozen=True)
class ItemResult:
    id: str
    title: str
    status: str
    reason: str
    nodeids: tuple[str, ...] = ()
    waiver: Mapping[str, str] | None = None
    # Declared sub-check -> what was measured for it ("... : ok", "not measured", ...).
    sub_checks: Mapping[str, str] = field(default_factory=dict)

    @property
    def satisfied(self) -> bool:
        return self.status in SATISFIED

    def to_json(self) -> dict[str, object]:
        return {
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "nodeids": list(self.nodeids),
            "sub_checks": dict(self.sub_checks),
            "waiver": dict(self.waiver) if self.waiver else None,
        }


@dataclass(frozen=True)
class Verdict:
    gate: str
    release: str
    verdict: str
    items: Mapping[str, ItemResult]
    blockers: tuple[str, ...] = ()
    waivers: tuple[Mapping[str, str], ...] = field(default=())

    @property
    def go(self) -> bool:
        return self.verdict == GO

    def not_passed(self) -> list[ItemResult]:
        return [r for r in self.items.values() if not r.satisfied]

    def to_json(self) -> dict[str, object]:
        return {
            "gate": self.gate,
            "release": self.release,
            "verdict": self.verdict,
            "blockers": list(self.blockers),
            "items": {k: v.to_json() for k, v in self.items.items()},
            "waivers": [dict(w) for w in self.waivers],
        }


def decide(
    checklist: Checklist,
    gate: str,
    release: str,
    results: Iterable[CheckOutcome],
    waivers: Sequence[Waiver] = (),
    *,
    now: dt.datetime,
    conditions: frozenset[str] = frozenset(),
    blockers: Sequence[str] = (),
    selected: Mapping[str, tuple[str, ...]] | None = None,
    deselected: Mapping[str, tuple[str, ...]] | None = None,
) -> Verdict:
    """The verdict of ``gate`` for one run.

    ``results`` are the tests that reported; ``selected`` maps every test collected and
    selected to run to the items it claims, ``deselected`` every collected test that ``-k``,
    ``-m`` or ``--deselect`` dropped. ``conditions`` are the target facts that make
    conditional items required (e.g. ``pact_broker``); ``blockers`` are session-level reasons
    for NO-GO (interrupted run, collection errors, a dev-signed bundle for a real target).
    """
    coverage = _Coverage(list(results), selected or {}, deselected or {})
    waiver_of = {w.item: w for w in waivers}
    evaluated = checklist.evaluated(gate)
    decided: dict[str, ItemResult] = {}
    all_blockers = list(blockers)

    def evaluate(item_id: str) -> ItemResult:
        if item_id in decided:
            return decided[item_id]
        item = checklist.items[item_id]
        if item.required_when and item.required_when not in conditions:
            result = ItemResult(
                item_id, item.title, NOT_REQUIRED, f"not required: no {item.required_when}"
            )
        else:
            findings, sub_checks = coverage.findings(item)
            unmet = [evaluate(r) for r in item.requires if not evaluate(r).satisfied]
            for r in unmet:
                status = r.status if r.status in SEVERITY else FAILED
                findings.append((status, f"requires {r.id} {r.status}"))
            if findings:
                findings.sort(key=lambda f: severity_rank(f[0]))
                status = findings[0][0]
                reason = "; ".join(text for _, text in findings)
            elif coverage.tests_of(item_id):
                status, reason = PASSED, f"{len(coverage.tests_of(item_id))} test(s) passed"
                if item.sub_checks:
                    reason += f", {len(item.sub_checks)} sub-check(s) within limits"
            else:
                status, reason = PASSED, "every required item passed"
            result = ItemResult(
                item_id,
                item.title,
                status,
                reason,
                tuple(r.nodeid for r in coverage.tests_of(item_id)),
                sub_checks=sub_checks,
            )
            result = _apply_waiver(result, waiver_of.get(item_id), checklist, now)
        decided[item_id] = result
        return result

    for item_id in evaluated:
        evaluate(item_id)
    for w in waivers:
        refused = w.refusal(checklist, now)
        # A waiver that could never be granted is a process violation, whatever the item did.
        if refused is not None and refused.kind.never_grantable:
            all_blockers.append(f"waiver for {w.item} ({w.ticket}) refused: {refused}")
    items = {i: decided[i] for i in evaluated}
    go = not all_blockers and all(r.satisfied for r in items.values())
    applied = tuple(r.waiver for r in items.values() if r.waiver is not None and r.status == WAIVED)
    return Verdict(gate, release, GO if go else NO_GO, items, tuple(all_blockers), applied)


class _Coverage:
    """Which tests were meant to measure each item, which ran, and what they measured."""

    def __init__(
        self,
        results: list[CheckOutcome],
        selected: Mapping[str, tuple[str, ...]],
        deselected: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.by_item: dict[str, list[CheckOutcome]] = {}
        for result in results:
            for item_id in result.items:
                self.by_item.setdefault(item_id, []).append(result)
        self.reported = {r.nodeid for r in results}
        self.selected = selected
        self.deselected = deselected

    def tests_of(self, item_id: str) -> list[CheckOutcome]:
        return self.by_item.get(item_id, [])

    def findings(self, item: Item) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """(status, why) for everything that keeps ``item`` from passing on its own tests,
        and the state of each declared sub-check."""
        own = self.tests_of(item.id)
        findings: list[tuple[str, str]] = []
        for result in own:
            status = OUTCOME_STATUS.get(result.outcome, ERROR)
            detail = f": {result.message}" if result.message else ""
            if status != PASSED:
                findings.append((status, f"{result.outcome} {result.nodeid}{detail}"))
            elif not result.call_ran:
                findings.append((MISSING, f"{result.nodeid} passed without running its body"))
        dropped = sorted(n for n, ids in self.deselected.items() if item.id in ids)
        if dropped:
            findings.append(
                (MISSING, f"{len(dropped)} of its tests were deselected: {', '.join(dropped)}")
            )
        unrun = sorted(
            n for n, ids in self.selected.items() if item.id in ids and n not in self.reported
        )
        if unrun:
            findings.append((MISSING, f"{len(unrun)} of its tests never ran: {', '.join(unrun)}"))
        if not own and not item.requires and not dropped and not unrun:
            findings.append((MISSING, f"no test claiming {item.id} was collected"))
        sub_checks: dict[str, str] = {}
        unmeasured: list[str] = []
        measured = [m for r in own for m in r.measurements]
        for name in item.sub_checks:
            status, shown = _sub_check(name, [m for m in measured if m.name == name])
            sub_checks[name] = shown
            if status == MISSING and shown.endswith(NOT_MEASURED):
                unmeasured.append(name)
            elif status != PASSED:
                findings.append((status, f"sub-check {shown}"))
        if unmeasured:
            findings.append((MISSING, f"sub-check(s) {', '.join(unmeasured)}{NOT_MEASURED}"))
        if own and not findings and not any(m.within is not None for m in measured):
            findings.append((MISSING, "its tests recorded no measurement against a limit"))
        return findings, sub_checks


NOT_MEASURED = ": not measured in this run"


def _sub_check(name: str, measured: list[Judged]) -> tuple[str, str]:
    if not measured:
        return MISSING, f"{name}{NOT_MEASURED}"
    shown = "; ".join(m.shown for m in measured)
    if any(m.within is False and not m.missing for m in measured):
        return FAILED, f"{shown}: OUT OF BOUNDS"
    if any(m.missing for m in measured):
        return INCONCLUSIVE, f"{shown}: no data"
    if any(m.within is None for m in measured):
        return MISSING, f"{shown}: recorded without a limit"
    return PASSED, f"{shown}: ok"


def severity_rank(status: str) -> int:
    """Worst first: ERROR, FAILED, INCONCLUSIVE, SKIPPED, MISSING, then anything else."""
    return SEVERITY.index(status) if status in SEVERITY else len(SEVERITY)


def _apply_waiver(
    result: ItemResult, waiver: Waiver | None, checklist: Checklist, now: dt.datetime
) -> ItemResult:
    if waiver is None or result.satisfied:
        return result
    refused = waiver.refusal(checklist, now)
    record = {**waiver.to_json(), "refused": str(refused) if refused else ""}
    if refused is None:
        reason = f"waived by {waiver.approver} ({waiver.ticket}): {result.reason}"
        status = WAIVED
    else:
        reason = f"waiver {waiver.ticket} refused ({refused}); {result.status}: {result.reason}"
        status = WAIVER_INVALID if refused.kind.never_grantable else WAIVER_EXPIRED
    return ItemResult(
        result.id, result.title, status, reason, result.nodeids, record, result.sub_checks
    )
