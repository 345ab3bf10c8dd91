"""Item outcomes + coverage + waivers -> the gate's verdict. Pure logic, no I/O.

Fail closed: an item is PASSED only when at least one test claiming it ran and passed and
none failed, errored, skipped, xfailed or came back inconclusive; a composite item also needs
every item it requires to be PASSED or validly WAIVED. Anything else is not-passed, and a
single not-passed item (or a session-level blocker) makes the verdict NO-GO.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_spark.checklist import Checklist
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
class CheckOutcome:
    """What one test did for the items it claims."""

    nodeid: str
    items: tuple[str, ...]
    outcome: str
    message: str = ""


@dataclass(frozen=True)
class ItemResult:
    id: str
    title: str
    status: str
    reason: str
    nodeids: tuple[str, ...] = ()
    waiver: Mapping[str, str] | None = None

    @property
    def satisfied(self) -> bool:
        return self.status in SATISFIED

    def to_json(self) -> dict[str, object]:
        return {
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "nodeids": list(self.nodeids),
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
    not_run: Mapping[str, str] | None = None,
) -> Verdict:
    """The verdict of ``gate`` for one run.

    ``conditions`` are the target facts that make conditional items required (e.g.
    ``pact_broker``); ``blockers`` are session-level reasons for NO-GO (interrupted run,
    collection errors, a dev-signed bundle for a real target); ``not_run`` explains, per item,
    why its tests did not run (deselected, session stopped early).
    """
    not_run = not_run or {}
    by_item: dict[str, list[CheckOutcome]] = {}
    for result in results:
        for item_id in result.items:
            by_item.setdefault(item_id, []).append(result)
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
            own = by_item.get(item_id, [])
            status, reason = _own_status(item_id, own, bool(item.requires), not_run)
            unmet = [evaluate(r) for r in item.requires if not evaluate(r).satisfied]
            if status == PASSED and unmet:
                worst = min(unmet, key=lambda r: _rank(r.status))
                status = worst.status if worst.status in SEVERITY else FAILED
                reason = "requires " + "; ".join(f"{r.id} {r.status}" for r in unmet)
            result = ItemResult(item_id, item.title, status, reason, tuple(r.nodeid for r in own))
            result = _apply_waiver(result, waiver_of.get(item_id), checklist, now)
        decided[item_id] = result
        return result

    for item_id in evaluated:
        evaluate(item_id)
    for w in waivers:
        problem = w.problem(checklist, now)
        # A waiver that could never be granted is a process violation, whatever the item did.
        if problem and "expired" not in problem:
            all_blockers.append(f"waiver for {w.item} ({w.ticket}) refused: {problem}")
    items = {i: decided[i] for i in evaluated}
    go = not all_blockers and all(r.satisfied for r in items.values())
    applied = tuple(r.waiver for r in items.values() if r.waiver is not None and r.status == WAIVED)
    return Verdict(gate, release, GO if go else NO_GO, items, tuple(all_blockers), applied)


def _rank(status: str) -> int:
    return SEVERITY.index(status) if status in SEVERITY else len(SEVERITY)


def _own_status(
    item_id: str, own: list[CheckOutcome], composite: bool, not_run: Mapping[str, str]
) -> tuple[str, str]:
    if not own:
        if composite:
            return PASSED, "every required item passed"
        why = not_run.get(item_id, "no test claiming it was collected")
        return MISSING, f"no test for {item_id} ran: {why}"
    worst = min(own, key=lambda r: _rank(OUTCOME_STATUS.get(r.outcome, ERROR)))
    status = OUTCOME_STATUS.get(worst.outcome, ERROR)
    if status == PASSED:
        return PASSED, f"{len(own)} test(s) passed"
    detail = f": {worst.message}" if worst.message else ""
    return status, f"{worst.outcome} {worst.nodeid}{detail}"


def _apply_waiver(
    result: ItemResult, waiver: Waiver | None, checklist: Checklist, now: dt.datetime
) -> ItemResult:
    if waiver is None or result.satisfied:
        return result
    problem = waiver.problem(checklist, now)
    record = {**waiver.to_json(), "refused": problem or ""}
    if problem is None:
        reason = f"waived by {waiver.approver} ({waiver.ticket}): {result.reason}"
        return ItemResult(result.id, result.title, WAIVED, reason, result.nodeids, record)
    status = WAIVER_EXPIRED if "expired" in problem else WAIVER_INVALID
    reason = f"waiver {waiver.ticket} refused ({problem}); {result.status}: {result.reason}"
    return ItemResult(result.id, result.title, status, reason, result.nodeids, record)
