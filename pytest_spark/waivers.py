"""Waivers (ops/waivers.toml): an approved, expiring exception for one checklist item.

A malformed file is a usage error before any test runs. A well-formed waiver can still be
refused at verdict time, and the refusal is typed (never found by searching its text):

- ``EXPIRED``: it ran out; the item it covered is WAIVER-EXPIRED.
- ``UNWAIVABLE``, ``SELF_APPROVED``, ``BEYOND_HORIZON``: it could never have been granted, a
  process violation that blocks the release whatever the item did.

Either way the item stays not-passed, so a refused waiver can never turn a failure into GO.
"""

from __future__ import annotations

import datetime as dt
import enum
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from pytest_spark.checklist import Checklist


class Refusal(enum.Enum):
    EXPIRED = "expired"
    UNWAIVABLE = "unwaivable"
    SELF_APPROVED = "self-approved"
    BEYOND_HORIZON = "beyond-horizon"

    @property
    def never_grantable(self) -> bool:
        return self is not Refusal.EXPIRED


@dataclass(frozen=True)
class Refused:
    kind: Refusal
    detail: str

    def __str__(self) -> str:
        return self.detail


def identity(person: str) -> str:
    """The person a name or address stands for, so that ``Ayse``, ``ayse@bank.example``,
    ``ayse+waivers@bank.example`` and a full-width ``ａｙｓｅ`` compare equal."""
    text = unicodedata.normalize("NFKC", person).strip().casefold()
    local = text.split("@", 1)[0] if "@" in text else text
    return local.split("+", 1)[0].strip()


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

    def refusal(self, checklist: Checklist, now: dt.datetime) -> Refused | None:
        """Why the gate must refuse this waiver at ``now``, or None when it is valid."""
        if not checklist.items[self.item].waivable:
            return Refused(Refusal.UNWAIVABLE, f"item {self.item} is unwaivable")
        if identity(self.author) == identity(self.approver):
            return Refused(
                Refusal.SELF_APPROVED,
                f"approved by its own author ({self.author!r} and {self.approver!r} are the "
                "same person)",
            )
        if self.expires <= now:
            return Refused(Refusal.EXPIRED, f"expired at {self.expires.isoformat()}")
        horizon = dt.timedelta(days=checklist.waiver_horizon_days)
        if self.expires - now > horizon:
            return Refused(
                Refusal.BEYOND_HORIZON,
                f"expires {self.expires.isoformat()}, more than {checklist.waiver_horizon_days} "
                f"days from now ([waiver_policy] max_days in {checklist.path.name})",
            )
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
