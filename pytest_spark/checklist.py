"""The checklist registry (ops/checklist.toml): items, gates, waivability, evidence files.

A registry is loaded once per run and validated at the edge: any problem is a
``ChecklistError`` naming the file and the offending entry, which the plugin turns into a
usage error before a single test runs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ITEM_ID = re.compile(r"^[A-Z]+\d+$")
# A sub-check is named by the measurement that judges it (``spark_evidence.measure(name, ...)``).
SUB_CHECK = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_WAIVER_HORIZON_DAYS = 90


class ChecklistError(ValueError):
    """The checklist file is unreadable or inconsistent."""


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    gates: tuple[str, ...]
    waivable: bool
    evidence: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    # A condition of the target (e.g. "pact_broker") without which the item is not required.
    required_when: str | None = None
    # The measurements that must each be judged within their limit in a run for the item to
    # pass: a file of tests that was never collected leaves its sub-checks unmeasured.
    sub_checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Checklist:
    path: Path
    gates: Mapping[str, str]
    evidence_files: Mapping[str, str]
    items: Mapping[str, Item]
    # The longest a waiver may run from the moment it is used ([waiver_policy] max_days).
    waiver_horizon_days: int = DEFAULT_WAIVER_HORIZON_DAYS

    def members(self, gate: str) -> tuple[str, ...]:
        """Items that belong to ``gate`` directly, in registry order."""
        return tuple(i.id for i in self.items.values() if gate in i.gates)

    def evaluated(self, gate: str) -> tuple[str, ...]:
        """Members of ``gate`` plus everything they require, transitively, in registry order."""
        wanted: set[str] = set()
        stack = list(self.members(gate))
        while stack:
            item_id = stack.pop()
            if item_id not in wanted:
                wanted.add(item_id)
                stack.extend(self.items[item_id].requires)
        return tuple(i for i in self.items if i in wanted)

    def gates_selecting(self, item_id: str) -> tuple[str, ...]:
        """Every gate whose run must include a test of ``item_id`` (its marker set)."""
        return tuple(g for g in self.gates if item_id in self.evaluated(g))

    def evidence_name(self, key: str, release: str) -> str:
        return self.evidence_files[key].replace("<release>", release)


def load(path: Path) -> Checklist:
    """Read and validate a checklist file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChecklistError(f"checklist file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ChecklistError(f"checklist file {path} cannot be read: {exc}") from None

    unknown_tables = set(raw) - {"gates", "evidence", "item", "waiver_policy"}
    if unknown_tables:
        raise ChecklistError(
            f"{path}: unknown table(s) {sorted(unknown_tables)}; a checklist has [gates], "
            "[evidence], [waiver_policy] and [[item]]"
        )
    gates = raw.get("gates")
    if not isinstance(gates, dict) or not gates:
        raise ChecklistError(f"{path}: a [gates] table naming at least one gate is required")
    evidence_files = raw.get("evidence", {})
    items: dict[str, Item] = {}
    for n, entry in enumerate(raw.get("item", []), 1):
        items_entry = _item(path, n, entry, gates, evidence_files)
        if items_entry.id in items:
            raise ChecklistError(f"{path}: item {items_entry.id} is defined twice")
        items[items_entry.id] = items_entry
    if not items:
        raise ChecklistError(f"{path}: no [[item]] entries")
    for item in items.values():
        missing = [r for r in item.requires if r not in items]
        if missing:
            raise ChecklistError(f"{path}: item {item.id} requires unknown item(s) {missing}")
    checklist = Checklist(
        path, dict(gates), dict(evidence_files), items, _waiver_horizon(path, raw)
    )
    _reject_cycles(checklist)
    return checklist


def _waiver_horizon(path: Path, raw: Mapping[str, object]) -> int:
    policy = raw.get("waiver_policy", {})
    if not isinstance(policy, dict) or set(policy) - {"max_days"}:
        raise ChecklistError(f"{path}: [waiver_policy] takes one key, max_days")
    days = policy.get("max_days", DEFAULT_WAIVER_HORIZON_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ChecklistError(f"{path}: [waiver_policy] max_days must be a whole number >= 1")
    return days


def _item(
    path: Path, n: int, entry: object, gates: Mapping[str, str], evidence: Mapping[str, str]
) -> Item:
    where = f"{path}: [[item]] #{n}"
    if not isinstance(entry, dict):
        raise ChecklistError(f"{where} is not a table")
    item_id = entry.get("id")
    if not isinstance(item_id, str) or not ITEM_ID.match(item_id):
        raise ChecklistError(f"{where}: id {item_id!r} must look like B1 or G10")
    where = f"{path}: item {item_id}"
    title = entry.get("title")
    if not isinstance(title, str) or not title:
        raise ChecklistError(f"{where}: a title is required")
    item_gates = tuple(entry.get("gates", ()))
    if not item_gates or any(g not in gates for g in item_gates):
        raise ChecklistError(f"{where}: gates {list(item_gates)} must name gates of [gates]")
    waivable = entry.get("waivable")
    if not isinstance(waivable, bool):
        raise ChecklistError(f"{where}: waivable must be true or false")
    item_evidence = tuple(entry.get("evidence", ()))
    unknown_evidence = [e for e in item_evidence if e not in evidence]
    if unknown_evidence:
        raise ChecklistError(f"{where}: evidence {unknown_evidence} is not in [evidence]")
    required_when = entry.get("required_when")
    if required_when is not None and not isinstance(required_when, str):
        raise ChecklistError(f"{where}: required_when must be a string")
    unknown_keys = set(entry) - ITEM_KEYS
    if unknown_keys:
        raise ChecklistError(
            f"{where}: unknown key(s) {sorted(unknown_keys)}; an item takes {sorted(ITEM_KEYS)}"
        )
    requires = tuple(entry.get("requires", ()))
    sub_checks = entry.get("sub_checks", [])
    if not isinstance(sub_checks, list) or not all(
        isinstance(c, str) and SUB_CHECK.match(c) for c in sub_checks
    ):
        raise ChecklistError(
            f"{where}: sub_checks must be a list of measurement names such as "
            '"ntp_offset_ms" (lower case, digits, underscores)'
        )
    if len(set(sub_checks)) != len(sub_checks):
        raise ChecklistError(f"{where}: sub_checks lists a name twice")
    if not sub_checks and not requires:
        # Without declared sub-checks, a test whose body is `pass` would pass the item.
        raise ChecklistError(
            f"{where}: declare the item's sub_checks (the measurements that decide it), "
            "or the items it requires"
        )
    return Item(
        id=item_id,
        title=title,
        gates=item_gates,
        waivable=waivable,
        evidence=item_evidence,
        requires=requires,
        required_when=required_when,
        sub_checks=tuple(sub_checks),
    )


ITEM_KEYS = frozenset(
    {"id", "title", "gates", "waivable", "evidence", "requires", "required_when", "sub_checks"}
)


def _reject_cycles(checklist: Checklist) -> None:
    done: set[str] = set()

    def visit(item_id: str, trail: tuple[str, ...]) -> None:
        if item_id in trail:
            cycle = " -> ".join((*trail, item_id))
            raise ChecklistError(f"{checklist.path}: requires form a cycle: {cycle}")
        if item_id in done:
            return
        for req in checklist.items[item_id].requires:
            visit(req, (*trail, item_id))
        done.add(item_id)

    for item_id in checklist.items:
        visit(item_id, ())
