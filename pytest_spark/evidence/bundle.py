"""The evidence bundle on disk: atomic, redacted writes and the ritual's files.

Every file is written to a temporary name and renamed, so a reader never sees half a file;
the signature (signing.py) is written last, which is what makes a bundle complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_spark.checklist import Checklist
from pytest_spark.evidence.redact import Redactor
from pytest_spark.gate import Verdict


def new_run_id(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class CheckRecord:
    """One test as the bundle tells it (a line of checks.jsonl)."""

    nodeid: str
    items: tuple[str, ...]
    outcome: str = "passed"
    duration: float = 0.0
    message: str = ""
    call_ran: bool = False  # its body ran (the call phase), not only setup and teardown
    evidence: dict[str, object] = field(default_factory=dict)

    def to_json(self, bundle: Path) -> dict[str, object]:
        evidence = dict(self.evidence)
        attachments = evidence.get("attachments", {})
        if isinstance(attachments, dict):
            evidence["attachments"] = {
                name: _relative(Path(str(path)), bundle) for name, path in attachments.items()
            }
        return {
            "nodeid": self.nodeid,
            "items": list(self.items),
            "outcome": self.outcome,
            "duration_s": round(self.duration, 6),
            "call_ran": self.call_ran,
            "message": self.message,
            **evidence,
        }


def _relative(path: Path, bundle: Path) -> str:
    try:
        return path.resolve().relative_to(bundle.resolve()).as_posix()
    except ValueError:
        return path.name


class Bundle:
    def __init__(self, root: Path, redactor: Redactor) -> None:
        self.root = root
        self.redactor = redactor

    @property
    def attachments_dir(self) -> Path:
        return self.root / "attachments"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, self.redactor.text(text).encode())

    def write_json(self, name: str, value: object) -> Path:
        text = json.dumps(self.redactor.value(value), indent=2, sort_keys=False) + "\n"
        return self.write_bytes(name, text.encode())

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def redact_in_place(self, name: str) -> None:
        """Scrub a file another plugin wrote (report.html, junit.xml) before it is signed.

        Those plugins escape what they embed (pytest-html: HTML-escaped JSON in an attribute;
        junitxml: XML entities), and the Redactor matches each secret's escaped forms too.
        Everything this bundle writes itself is masked before it is serialised instead.
        """
        path = self.root / name
        if path.exists():
            self.write_bytes(name, self.redactor.text(path.read_text("utf-8")).encode())

    def adopt(self, source: Path, name: str) -> None:
        """Copy a file written elsewhere (a user-chosen --html/--junitxml path) into the bundle.

        The source is scrubbed where it stands as well: a user-chosen report is a file of
        this run like the bundle's copy, and is read (and archived by CI) just the same.
        """
        if not source.exists():
            return
        text = source.read_text("utf-8")
        redacted = self.redactor.text(text)
        if redacted != text:
            tmp = source.with_name(f".tmp-{source.name}")
            tmp.write_bytes(redacted.encode())
            os.replace(tmp, source)
        self.write_bytes(name, redacted.encode())


def git_state(rootdir: Path) -> tuple[str, bool | None]:
    """(commit, dirty) of the checkout the gate runs from; ('unknown', None) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=rootdir, capture_output=True, text=True, timeout=5
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=rootdir,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown", None
    if commit.returncode != 0:
        return "unknown", None
    return commit.stdout.strip(), bool(status.stdout.strip())


def release_tag(release: str, gate: str, target: str, rootdir: Path, now: dt.datetime) -> str:
    commit, dirty = git_state(rootdir)
    return (
        f"release: {release}\n"
        f"git_commit: {commit}\n"
        f"git_dirty: {'unknown' if dirty is None else str(dirty).lower()}\n"
        f"gate: {gate}\n"
        f"target: {target}\n"
        f"created_utc: {now.isoformat(timespec='seconds')}\n"
    )


def ritual_files(
    checklist: Checklist,
    verdict: Verdict,
    records: Iterable[CheckRecord],
    signing: Mapping[str, str],
    now: dt.datetime,
) -> dict[str, str | Path]:
    """The readiness package's evidence files for the items that ran: name -> text or source.

    Text files are rendered from the measured records; the SBOM and provenance are the
    artefacts the B9 check produced (attachments named ``sbom`` and ``build_provenance``).
    """
    records = list(records)
    ran = {i for r in records for i in r.items}
    families: dict[str, list[str]] = {}
    for item_id in verdict.items:
        for family in checklist.items[item_id].evidence:
            families.setdefault(family, []).append(item_id)
    files: dict[str, str | Path] = {}
    for family, item_ids in families.items():
        if not ran.intersection(item_ids) and family != "go_nogo_signed":
            continue
        name = checklist.evidence_name(family, verdict.release)
        if name.endswith(".json"):
            produced = _attachment(records, family)
            if produced is not None:
                files[name] = produced
            continue
        if family == "go_nogo_signed" and verdict.gate != "go_nogo":
            continue
        files[name] = _render_sheet(family, item_ids, checklist, verdict, records, signing, now)
    return files


def _attachment(records: list[CheckRecord], name: str) -> Path | None:
    for record in records:
        attachments = record.evidence.get("attachments", {})
        if isinstance(attachments, dict) and name in attachments:
            return Path(str(attachments[name]))
    return None


def _render_sheet(
    family: str,
    item_ids: list[str],
    checklist: Checklist,
    verdict: Verdict,
    records: list[CheckRecord],
    signing: Mapping[str, str],
    now: dt.datetime,
) -> str:
    title = family.replace("_", " ").upper()
    lines = [
        f"{title} — release {verdict.release}",
        f"gate: {verdict.gate}   verdict: {verdict.verdict}   "
        f"at: {now.isoformat(timespec='seconds')}",
        "",
    ]
    passed = sum(1 for i in item_ids if verdict.items[i].satisfied)
    lines.append(f"{passed}/{len(item_ids)} items passed")
    lines.append("")
    for item_id in item_ids:
        result = verdict.items[item_id]
        lines.append(f"[{result.status}] {item_id} {checklist.items[item_id].title}")
        lines.append(f"    {result.reason}")
        for record in records:
            if item_id not in record.items:
                continue
            lines.append(f"    - {record.nodeid}: {record.outcome}")
            measurements = record.evidence.get("measurements", [])
            for m in measurements if isinstance(measurements, list) else []:
                lines.append("        " + _measurement_line(m))
    if family == "go_nogo_signed":
        lines += ["", "blockers:"] + [f"  - {b}" for b in verdict.blockers or ["none"]]
        lines += [
            "",
            f"signed: {signing.get('mode', '')} key {signing.get('key_fingerprint', '')}",
            "the signature is attestation.dsse.json in this bundle; check it with "
            "`spark-gate verify <bundle>`",
        ]
    return "\n".join(lines) + "\n"


def _measurement_line(m: Mapping[str, object]) -> str:
    raw = m.get("value")
    shown = f"{raw:.6g}" if isinstance(raw, float) else str(raw)
    value = "no data" if m.get("missing") else f"{shown} {m.get('unit') or ''}".strip()
    bounds = []
    if m.get("at_least") is not None:
        bounds.append(f">= {m['at_least']:g}")
    if m.get("limit") is not None:
        bounds.append(f"< {m['limit']:g}")
    verdict = {True: "ok", False: "OUT OF BOUNDS", None: "recorded"}[m.get("within")]  # type: ignore[index]
    limit = f" (limit {' and '.join(bounds)})" if bounds else ""
    return f"{m.get('name')} = {value}{limit}: {verdict}"
