"""The bundle's text files for a decided run: release tag, checks, the ritual's evidence
files (with the readiness package's names) and the verdict."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from pytest_spark.checklist import Checklist
from pytest_spark.evidence.bundle import Bundle, CheckRecord
from pytest_spark.gate import Verdict


def write_run_files(
    bundle: Bundle,
    checklist: Checklist,
    verdict: Verdict,
    records: Iterable[CheckRecord],
    run: Mapping[str, object],
    rootdir: Path,
    now: dt.datetime,
) -> None:
    """Everything but the reports other plugins write and the signature; ``run`` names the
    run (run id, target, signing, start time) in verdict.json."""
    records = list(records)
    signing = run.get("signing", {})
    bundle.create()
    bundle.write_text(
        "release_tag.txt",
        release_tag(verdict.release, verdict.gate, str(run["target"]), rootdir, now),
    )
    lines = [_check_line(bundle, r.to_json(bundle.root)) for r in records]
    bundle.write_bytes("checks.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
    ritual = ritual_files(
        checklist, verdict, records, signing if isinstance(signing, dict) else {}, now
    )
    for name, content in ritual.items():
        if isinstance(content, Path):
            bundle.adopt(content, name)
        else:
            bundle.write_text(name, content)
    bundle.write_json(
        "verdict.json",
        {**verdict.to_json(), **run, "finished_utc": now.isoformat(timespec="seconds")},
    )


def _check_line(bundle: Bundle, record: dict[str, object]) -> str:
    line = json.dumps(record, sort_keys=True)
    # Redacted before serialising (JSON escaping would hide a secret with a quote from a text
    # scrub); the cheap scrub of the line tells whether there is anything to redact at all.
    if bundle.redactor.text(line) == line:
        return line
    return json.dumps(bundle.redactor.value(record), sort_keys=True)


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
