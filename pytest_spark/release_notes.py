"""``spark-gate release-notes``: a release's notes, rendered only from evidence that verifies.

Reads every directory under ``<bundles>/<release>/``: the gate's bundles (the GO/NO-GO run and
one per canary stage) and the signed rollback records. Renders ``ops/release-notes-template.md``
with the canary stage table (stage, traffic, window, status, n/6), the six metrics of each
stage against their limits, the rollback events, the remaining risks of
``ops/remaining-risks.toml`` and every evidence file with its sha256.

It fails closed and writes nothing when anything is not as it must be: a directory that does
not verify, a stage of the plan with no bundle and no rollback to explain it, a risk without an
owner or open past its due date, a dev-signed bundle of a real target.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from pytest_spark.canary_plan import CanaryPlan
from pytest_spark.gate import GO, INCONCLUSIVE, PASSED
from pytest_spark.signing import DEV_SIGNED
from pytest_spark.verify import ROLLBACK_RECORD, Verification, verify_bundle

TEMPLATE = "release-notes-template.md"
RISKS = "remaining-risks.toml"
STAGE_ITEMS = ("S1", "S2", "S3", "S4", "S5", "S6")
RISK_FIELDS = ("id", "description", "owner", "due", "mitigation", "status")
RISK_STATUSES = ("open", "mitigated", "accepted")
SANDBOX = "sandbox"


class ReleaseNotesError(Exception):
    """Why no notes were written: every problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Risk:
    id: str
    description: str
    owner: str
    due: dt.date
    mitigation: str
    status: str


def load_risks(path: Path, today: dt.date) -> tuple[list[Risk], list[str]]:
    """The risks of ``path`` and what is wrong with them (a missing file is one problem)."""
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("risk", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [], [f"{path}: cannot be read ({exc})"]
    risks: list[Risk] = []
    problems: list[str] = []
    for n, entry in enumerate(entries, 1):
        where = f"{path.name} risk {entry.get('id') or f'#{n}'}"
        missing = [f for f in RISK_FIELDS if not str(entry.get(f) or "").strip()]
        if missing:
            problems.append(f"{where}: no {', '.join(missing)}")
            continue
        due = entry["due"]
        if not isinstance(due, dt.date) or isinstance(due, dt.datetime):
            problems.append(f"{where}: due must be a date such as 2026-12-31, got {due!r}")
            continue
        if entry["status"] not in RISK_STATUSES:
            problems.append(f"{where}: status {entry['status']!r} is not one of {RISK_STATUSES}")
            continue
        risk = Risk(
            str(entry["id"]), str(entry["description"]), str(entry["owner"]), due,
            str(entry["mitigation"]), str(entry["status"]),
        )  # fmt: skip
        if risk.status == "open" and risk.due < today:
            problems.append(f"{where}: open past its due date {risk.due} (owner {risk.owner})")
        risks.append(risk)
    return risks, problems


@dataclass(frozen=True)
class Signed:
    """A directory that verified, with what the notes read of it."""

    path: Path
    verification: Verification

    @property
    def files(self) -> list[tuple[str, str]]:
        subjects = self.verification.statement.get("subject")
        found = []
        for s in subjects if isinstance(subjects, list) else []:
            digest = s.get("digest", {}).get("sha256") if isinstance(s, dict) else None
            if isinstance(digest, str):
                found.append((f"{self.path.name}/{s['name']}", digest))
        return found

    def measurements(self) -> dict[str, dict[str, object]]:
        """name -> measurement, from the bundle's checks.jsonl (its digest is signed)."""
        found: dict[str, dict[str, object]] = {}
        checks = self.path / "checks.jsonl"
        for line in checks.read_text(encoding="utf-8").splitlines() if checks.is_file() else []:
            for m in json.loads(line).get("measurements", []):
                found.setdefault(str(m.get("name")), m)
        return found

    def window(self) -> str:
        checks = self.path / "checks.jsonl"
        for line in checks.read_text(encoding="utf-8").splitlines() if checks.is_file() else []:
            for note in json.loads(line).get("notes", []):
                if str(note).startswith("window "):
                    return str(note).split(" (", 1)[0]
        return "-"


@dataclass
class Evidence:
    release: str
    go_nogo: Signed | None = None
    stages: dict[int, Signed] = field(default_factory=dict)
    rollbacks: list[Signed] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def signed(self) -> list[Signed]:
        return [*([self.go_nogo] if self.go_nogo else []), *self.stages.values(), *self.rollbacks]


def collect(release_dir: Path, public_pem: bytes | None) -> Evidence:
    """Every directory of the release, verified; the newest bundle per gate and stage."""
    evidence = Evidence(release_dir.name)
    if not release_dir.is_dir():
        evidence.problems.append(f"{release_dir}: no such directory: no evidence for the release")
        return evidence
    # Run ids and record names start with the UTC time: sorted, the newest comes last.
    for folder in sorted(p for p in release_dir.iterdir() if p.is_dir()):
        result = verify_bundle(folder, public_pem, release=release_dir.name)
        if not result.ok:
            evidence.problems.append(f"{folder.name} does not verify: {result.problems[0]}")
            continue
        signed = Signed(folder, result)
        target = result.fact("target")
        if result.signing_mode == DEV_SIGNED and target != SANDBOX:
            evidence.problems.append(f"{folder.name} is dev-signed but measured {target}")
        gate = result.fact("gate")
        if gate == ROLLBACK_RECORD:
            evidence.rollbacks.append(signed)
        elif gate == "canary" and isinstance(result.spark.get("stage"), int):
            evidence.stages[int(str(result.spark["stage"]))] = signed
        elif gate == "go_nogo":
            evidence.go_nogo = signed
    return evidence


def _record(signed: Signed) -> dict[str, object]:
    record = signed.verification.predicate.get("rollback")
    return record if isinstance(record, dict) else {}


def _stage_status(signed: Signed, rolled_back: bool) -> tuple[str, int]:
    items = signed.verification.spark.get("items")
    items = items if isinstance(items, dict) else {}
    statuses = [str((items.get(i) or {}).get("status", "?")) for i in STAGE_ITEMS]
    passed = statuses.count(PASSED)
    if rolled_back:
        return "ROLLED BACK", passed
    if signed.verification.fact("verdict") == GO:
        return "GO", passed
    return ("INCONCLUSIVE" if INCONCLUSIVE in statuses else "NO-GO"), passed


def render(release_dir: Path, ops_dir: Path, plan: CanaryPlan, public_pem: bytes | None,
           today: dt.date) -> str:  # fmt: skip
    """The notes' Markdown; ReleaseNotesError (listing every problem) when they cannot be."""
    evidence = collect(release_dir, public_pem)
    risks, risk_problems = load_risks(ops_dir / RISKS, today)
    problems = [*evidence.problems, *risk_problems]
    real = [r for r in evidence.rollbacks if not _record(r).get("dry_run")]
    rolled_at = {int(str(_record(r).get("stage"))) for r in real
                 if _record(r).get("outcome") == "ROLLED BACK"}  # fmt: skip
    rows, metrics = [], []
    for stage in plan.stages:
        signed = evidence.stages.get(stage.percent)
        earlier = [p for p in rolled_at if p <= stage.percent]
        if signed is None:
            if not earlier:
                problems.append(f"stage {stage.percent} % has no verified bundle and no "
                                "rollback explains it")  # fmt: skip
            why = f"MISSING (rolled back at {max(earlier)} %)" if earlier else "MISSING"
            rows.append(f"| {stage.percent} % | {stage.duration} | - | {why} | - |")
            continue
        status, passed = _stage_status(signed, stage.percent in rolled_at)
        rows.append(f"| {stage.percent} % | {stage.duration} | {signed.window()} | {status} "
                    f"| {passed}/{len(STAGE_ITEMS)} |")  # fmt: skip
        measured = signed.measurements()
        for item in STAGE_ITEMS:
            metric = plan.metrics[item]
            m = measured.get(metric.name, {})
            value = "no data" if m.get("value") is None else f"{m['value']:g}"
            limit = "-" if m.get("limit") is None else f"< {m['limit']:g}"
            metrics.append(f"| {stage.percent} % | {item} {metric.title} | {value} {metric.unit} "
                           f"| {limit} |")  # fmt: skip
    if problems:
        raise ReleaseNotesError(problems)
    events = [_event_row(r) for r in evidence.rollbacks]
    risk_rows = [f"| {r.id} | {r.description} | {r.owner} | {r.due} | {r.mitigation} | "
                 f"{r.status} |" for r in risks]  # fmt: skip
    files = [f"| `{name}` | `{digest}` |" for s in evidence.signed for name, digest in s.files]
    go, go_line = evidence.go_nogo, "no GO/NO-GO bundle"
    if go is not None:
        go_line = f"{go.verification.fact('verdict')} (`{go.path.name}`, "
        go_line += f"{go.verification.signing_mode})"
    template = Template((ops_dir / TEMPLATE).read_text(encoding="utf-8"))
    return template.substitute(
        release=evidence.release,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        go_nogo=go_line,
        stage_table="\n".join(rows),
        stage_metrics="\n".join(metrics) or "| - | - | - | - |",
        rollbacks="\n".join(events) or "| - | - | - | none | - | - |",
        risks="\n".join(risk_rows) or "| - | none | - | - | - | - |",
        evidence_files="\n".join(files),
    )


def _event_row(signed: Signed) -> str:
    r = _record(signed)
    recovery = r.get("recovery_s")
    shown = f"{recovery:.1f} s" if isinstance(recovery, int | float) else "-"
    what = f"{'rehearsal' if r.get('dry_run') else 'rollback'}: {r.get('outcome', '?')}"
    return (
        f"| {r.get('started', '?')} | {r.get('stage', '?')} % | {r.get('reason', '?')} | "
        f"{what} | {shown} | `{signed.path.name}/` |"
    )
