"""Earlier runs' evidence bundles as later gates rely on them: found, verified, read.

The canary gate builds on earlier verdicts: S7 wants the previous stage's bundle GO (the first
stage's predecessor is the GO/NO-GO run), S6 reads the baseline the GO/NO-GO run measured.
Only what a bundle's signature covers is believed: a candidate is picked by its unsigned
``verdict.json`` (cheap), then verified, and its gate, stage and verdict are read again from
the signed statement. A bundle that does not verify is skipped and the reason kept, so the
check can say why nothing usable was found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pytest_spark.gate import GO
from pytest_spark.signing import sha256_file
from pytest_spark.verify import Verification, verify_bundle


@dataclass(frozen=True)
class FoundBundle:
    path: Path
    verification: Verification

    @property
    def verdict(self) -> str:
        return self.verification.fact("verdict")

    @property
    def go(self) -> bool:
        return self.verdict == GO

    @property
    def run_id(self) -> str:
        return self.verification.fact("run_id")


@dataclass
class Search:
    """The newest verified bundle that matched, or None, and why others were passed over."""

    found: FoundBundle | None = None
    passed_over: list[str] = field(default_factory=list)

    def why_none(self, wanted: str) -> str:
        if not self.passed_over:
            return f"no bundle of {wanted} in the evidence dir"
        return f"no verified bundle of {wanted}: " + "; ".join(self.passed_over[:5])


def find_bundle(
    release_dir: Path,
    *,
    gate: str,
    stage: int | None = None,
    public_pem: bytes | None = None,
    checklist: Path | None = None,
    exclude: Path | None = None,
) -> Search:
    """The newest bundle under ``release_dir`` (``<evidence dir>/<release>``) signed for
    ``gate`` (and canary ``stage``), verified with ``public_pem`` when given (else with the
    key it carries, which proves integrity only) and, with ``checklist``, decided with that
    very checklist file (by digest): a stage builds on a verdict of the same rules."""
    digest = sha256_file(checklist) if checklist is not None else None
    search = Search()
    if not release_dir.is_dir():
        return search
    # Run ids start with the UTC time, so names sort by age.
    for bundle in sorted((p for p in release_dir.iterdir() if p.is_dir()), reverse=True):
        if exclude is not None and bundle.resolve() == exclude.resolve():
            continue
        claimed = _claimed(bundle)
        if claimed.get("gate") != gate or (stage is not None and claimed.get("stage") != stage):
            continue
        verification = verify_bundle(
            bundle, public_pem, release=release_dir.name, checklist_sha256=digest
        )
        if not verification.ok:
            search.passed_over.append(f"{bundle.name}: {verification.problems[0]}")
            continue
        signed_stage = verification.spark.get("stage")
        if verification.fact("gate") != gate or (stage is not None and signed_stage != stage):
            search.passed_over.append(f"{bundle.name}: signed for another gate or stage")
            continue
        search.found = FoundBundle(bundle, verification)
        return search
    return search


def _claimed(bundle: Path) -> dict[str, object]:
    """What the bundle's verdict.json says of itself, unverified: only a pre-filter."""
    try:
        data = json.loads((bundle / "verdict.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
