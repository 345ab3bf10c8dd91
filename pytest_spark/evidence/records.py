"""What a test records for the bundle: checks with their limits, measurements, notes and
attachments.

A check is judged once, by the plugin: one outside its limit fails the test (every failing
check is listed with its reason), and a value that could not be measured (None, NaN,
infinity) makes the item INCONCLUSIVE: the gate never counts what it did not measure as a pass.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from pytest_spark.evidence.redact import Redactor


class Inconclusive(Exception):
    """A check could not measure (no data, zero traffic, NaN): never a pass."""


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float | str | None
    unit: str = ""
    limit: float | None = None
    at_least: float | None = None
    why: str = ""  # what the limit protects and where to look when it is exceeded

    @property
    def missing(self) -> bool:
        return self.value is None or (
            isinstance(self.value, float) and not math.isfinite(self.value)
        )

    @property
    def within(self) -> bool | None:
        """True/False against the thresholds; None when there is nothing to compare."""
        if self.limit is None and self.at_least is None:
            return None
        if self.missing or not isinstance(self.value, float):
            return False
        below = self.limit is None or self.value < self.limit
        above = self.at_least is None or self.value >= self.at_least
        return below and above

    def describe(self) -> str:
        bounds = []
        if self.at_least is not None:
            bounds.append(f">= {self.at_least:g}")
        if self.limit is not None:
            bounds.append(f"< {self.limit:g}")
        value = f"{self.value:.6g}" if isinstance(self.value, float) else str(self.value)
        shown = "no data" if self.missing else f"{value}{self.unit and ' ' + self.unit}"
        return f"{self.name} = {shown}" + (f" (limit {' and '.join(bounds)})" if bounds else "")


@dataclass
class CheckEvidence:
    """The ``spark_evidence`` fixture: one per test, shipped to the controller on its report."""

    nodeid: str
    items: tuple[str, ...]
    attachments_dir: Path | None
    redactor: Redactor
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attachments: dict[str, str] = field(default_factory=dict)

    def check(
        self,
        name: str,
        value: float | None,
        *,
        limit: float | None = None,
        at_least: float | None = None,
        unit: str = "",
        why: str = "",
    ) -> bool:
        """Record a sub-check's measured value and judge it, once: ``value < limit`` and/or
        ``value >= at_least``.

        Returns whether it is within its limit; the plugin fails the test at its end, listing
        every check that is not with its ``why`` (what the limit protects, what to look at),
        so a test neither repeats the comparison in an assert nor stops at the first failure.
        A value of None, NaN or infinity makes the test INCONCLUSIVE.
        """
        if limit is None and at_least is None:
            raise ValueError(f"check {name!r} needs a limit or at_least: it would judge nothing")
        m = self._record(name, value, unit, limit, at_least, why)
        return bool(m.within)

    def measure(self, name: str, value: float | str | None, *, unit: str = "") -> Measurement:
        """Record a value for the evidence that judges nothing (context for the checks)."""
        return self._record(name, value, unit, None, None, "")

    def _record(
        self,
        name: str,
        value: float | str | None,
        unit: str,
        limit: float | None,
        at_least: float | None,
        why: str,
    ) -> Measurement:
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, str):
            value = self.redactor.text(value)
        m = Measurement(name, value, unit, limit, at_least, self.redactor.text(why))
        self.measurements.append(m)
        return m

    def note(self, text: str) -> None:
        self.notes.append(self.redactor.text(text))

    def attach(self, name: str, content: str | bytes | Path) -> Path | None:
        """Keep a raw input or produced artefact (e.g. ``sbom``) in the bundle, redacted."""
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
            raise ValueError(f"attachment name {name!r}: letters, digits, '.', '_', '-' only")
        if self.attachments_dir is None:
            return None
        data = content.read_bytes() if isinstance(content, Path) else content
        if isinstance(data, str):
            data = data.encode()
        with contextlib.suppress(UnicodeDecodeError):  # binary attachments are kept as they are
            data = self.redactor.text(data.decode("utf-8")).encode()
        folder = self.attachments_dir / re.sub(r"[^A-Za-z0-9._-]+", "_", self.nodeid)[-120:]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(data)
        self.attachments[name] = str(path)
        return path

    def inconclusive(self, reason: str) -> NoReturn:
        """Stop the test: it could not measure. The item becomes INCONCLUSIVE (NO-GO)."""
        raise Inconclusive(reason)

    def out_of_bounds(self) -> list[Measurement]:
        return [m for m in self.measurements if m.within is False and not m.missing]

    def missing(self) -> list[Measurement]:
        return [m for m in self.measurements if m.missing]

    def to_json(self) -> dict[str, object]:
        return {
            "measurements": [
                {
                    "name": m.name,
                    "value": m.value,
                    "unit": m.unit,
                    "limit": m.limit,
                    "at_least": m.at_least,
                    "why": m.why,
                    "within": m.within,
                    "missing": m.missing,
                }
                for m in self.measurements
            ],
            "notes": list(self.notes),
            "attachments": dict(self.attachments),
        }
