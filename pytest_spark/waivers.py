"""Waivers (ops/waivers.toml): an approved, expiring exception for one checklist item.

A malformed file is a usage error before any test runs. A well-formed waiver can still be
invalid at verdict time (expired, self-approved, or on an unwaivable item): the gate then
refuses it and the item stays NO-GO, so such a waiver can never turn a failure into GO.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pytest_spark.checklist import Checklist

FIELDS = ("item", "reason", "ticket", "author", "approver", "expires")


class WaiverFileError(ValueError):
    """The waivers file is unreadable or an entry is malformed."""


@dataclass(frozen=True)
class Waiver:
    item: str
    reason: str
    ticket: str
    author: str
    approver: str
    expires: dt.datetime

    def problem(self, checklist: Checklist, now: dt.datetime) -> str | None:
        """Why the gate must refuse this waiver, or None when it is valid at ``now``."""
        if not checklist.items[self.item].waivable:
            return f"item {self.item} is unwaivable"
        if self.author.strip().casefold() == self.approver.strip().casefold():
            return f"approved by its own author ({self.author})"
        if self.expires <= now:
            return f"expired at {self.expires.isoformat()}"
        return None

    def to_json(self) -> dict[str, str]:
        return {
            "item": self.item,
            "reason": self.reason,
            "ticket": self.ticket,
            "author": self.author,
            "approver": self.approver,
            "expires": self.expires.isoformat(),
        }


def load(path: Path, checklist: Checklist) -> tuple[Waiver, ...]:
    """Parse the waivers file; a missing file means no waivers."""
    if not path.exists():
        return ()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WaiverFileError(f"waivers file {path} cannot be read: {exc}") from None
    waivers = []
    for n, entry in enumerate(raw.get("waiver", []), 1):
        waivers.append(_waiver(path, n, entry, checklist))
    seen: set[str] = set()
    for w in waivers:
        if w.item in seen:
            raise WaiverFileError(f"{path}: item {w.item} has more than one waiver; keep one")
        seen.add(w.item)
    return tuple(waivers)


def _waiver(path: Path, n: int, entry: object, checklist: Checklist) -> Waiver:
    where = f"{path}: [[waiver]] #{n}"
    if not isinstance(entry, dict):
        raise WaiverFileError(f"{where} is not a table")
    missing = [f for f in FIELDS if f not in entry]
    if missing:
        raise WaiverFileError(f"{where} lacks {', '.join(missing)} (needs {', '.join(FIELDS)})")
    for name in FIELDS[:-1]:
        if not isinstance(entry[name], str) or not entry[name].strip():
            raise WaiverFileError(f"{where}: {name} must be a non-empty string")
    if entry["item"] not in checklist.items:
        raise WaiverFileError(f"{where}: item {entry['item']!r} is not in {checklist.path}")
    expires = entry["expires"]
    if not isinstance(expires, dt.datetime) or expires.tzinfo is None:
        raise WaiverFileError(
            f"{where}: expires must be a TOML date-time with a UTC offset, "
            f"e.g. 2026-12-31T18:00:00Z (got {expires!r})"
        )
    return Waiver(
        item=entry["item"],
        reason=entry["reason"],
        ticket=entry["ticket"],
        author=entry["author"],
        approver=entry["approver"],
        expires=expires.astimezone(dt.UTC),
    )
