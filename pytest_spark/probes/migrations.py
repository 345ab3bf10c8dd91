"""B2 Prisma Migrate: the migration folders on disk against ``_prisma_migrations``.

``prisma migrate status`` does not report migrations edited after they were applied ("only
relevant when using dev"), so the gate compares checksums itself: Prisma stores the SHA-256 of
``migration.sql`` as 64 lowercase hex characters and tolerates CRLF vs LF when matching.

Row states (prisma-engines schema-engine ARCHITECTURE.md): ``finished_at`` is written only at
the end of a successful migration; ``rolled_back_at`` (set by ``migrate resolve``) makes the
row ignored; "started_at without finished_at nor rolled_back_at is the error state".

Pure logic first (checksums, findings, ``schema.prisma`` datasource parsing), then the read of
the migration folders; the rows are read by :mod:`pytest_spark.probes.postgres`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIGRATION_FILE = "migration.sql"
SCHEMA_FILE = "schema.prisma"


# --- checksums -------------------------------------------------------------------------------


def migration_checksum(script: bytes) -> str:
    """Prisma's checksum: SHA-256 of the script bytes as 64 lowercase hex characters."""
    return hashlib.sha256(script).hexdigest()


def accepted_checksums(script: bytes) -> frozenset[str]:
    """Checksums that count as "unchanged": the bytes as they are, LF-only and CRLF forms.

    A checkout with ``core.autocrlf`` turns LF into CRLF (or back) without anyone editing the
    migration; Prisma accepts that, so the gate does too.
    """
    lf = script.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    return frozenset(migration_checksum(form) for form in (script, lf, crlf))


# --- findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskMigration:
    """A migration folder; ``checksums`` is empty when it has no ``migration.sql``."""

    name: str
    checksum: str | None
    checksums: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MigrationRow:
    """One row of ``_prisma_migrations``."""

    migration_name: str
    checksum: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    rolled_back_at: dt.datetime | None
    logs: str | None = None

    @property
    def rolled_back(self) -> bool:
        return self.rolled_back_at is not None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None and not self.rolled_back

    @property
    def failed(self) -> bool:
        return self.finished_at is None and not self.rolled_back


@dataclass(frozen=True)
class MigrationFindings:
    """What is wrong with the history; each list holds ``(migration, detail)`` pairs."""

    pending: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    modified: list[tuple[str, str]] = field(default_factory=list)
    missing_on_disk: list[tuple[str, str]] = field(default_factory=list)


def migration_findings(
    on_disk: Sequence[DiskMigration], rows: Iterable[MigrationRow]
) -> MigrationFindings:
    """Grade the history the way ``migrate deploy`` would meet it.

    - pending: on disk, never started (a failed one is reported only as failed, so that one
      broken migration is named by one sub-check);
    - failed: a row started but neither finished nor rolled back;
    - modified: a finished row whose checksum matches none of the file's accepted forms;
    - missing_on_disk: a finished or failed row whose folder is not on disk.
    Rolled-back rows are ignored, as Prisma ignores them.
    """
    live = [r for r in rows if not r.rolled_back]
    disk = {m.name: m for m in on_disk}
    findings = MigrationFindings()
    for row in live:
        if row.failed:
            started = row.started_at.isoformat() if row.started_at else "?"
            logs = (row.logs or "no logs").strip().splitlines()
            findings.failed.append(
                (row.migration_name, f"started {started}, never finished: {logs[0][:200]}")
            )
        if row.migration_name not in disk:
            findings.missing_on_disk.append(
                (row.migration_name, "applied in the database but its folder is not on disk")
            )
            continue
        on_file = disk[row.migration_name]
        if row.finished and row.checksum.lower() not in on_file.checksums:
            findings.modified.append(
                (
                    row.migration_name,
                    f"stored checksum {row.checksum} != {MIGRATION_FILE} {on_file.checksum}",
                )
            )
    started_names = {r.migration_name for r in live}
    for migration in on_disk:
        if migration.checksum is None:
            findings.pending.append((migration.name, f"folder has no {MIGRATION_FILE}"))
        elif migration.name not in started_names:
            findings.pending.append((migration.name, "on disk but not applied"))
    return findings


# --- schema.prisma ---------------------------------------------------------------------------

BLOCK = re.compile(r"\b(datasource|generator|model|enum|view|type)\s+(\w+)\s*\{", re.MULTILINE)
SETTING = re.compile(r"^\s*(\w+)\s*=\s*(.+?)\s*$", re.MULTILINE)


def strip_comments(schema: str) -> str:
    """Drop ``//`` and ``///`` comments, leaving ``//`` inside string literals alone."""
    out = []
    for line in schema.splitlines():
        in_string = False
        cut = len(line)
        for i, char in enumerate(line):
            if char == '"' and (i == 0 or line[i - 1] != "\\"):
                in_string = not in_string
            elif char == "/" and not in_string and line[i : i + 2] == "//":
                cut = i
                break
        out.append(line[:cut])
    return "\n".join(out)


def datasources(schema: str) -> dict[str, dict[str, str]]:
    """``datasource NAME { key = value }`` blocks of a Prisma schema, keys to raw values."""
    text = strip_comments(schema)
    found: dict[str, dict[str, str]] = {}
    for match in BLOCK.finditer(text):
        if match.group(1) != "datasource":
            continue
        end = text.find("}", match.end())
        body = text[match.end() : end if end >= 0 else len(text)]
        found[match.group(2)] = {m.group(1): m.group(2) for m in SETTING.finditer(body)}
    return found


def shadow_database_findings(schema: str) -> list[tuple[str, str]]:
    """Datasources that set ``shadowDatabaseUrl``: ``migrate dev`` would erase that database,
    and production deploys never need one."""
    return [
        (name, f"shadowDatabaseUrl = {settings['shadowDatabaseUrl']}")
        for name, settings in datasources(schema).items()
        if "shadowDatabaseUrl" in settings
    ]


def schema_path(configured: str | None, migrations_dir: Path) -> tuple[Path | None, str]:
    """Where the production ``schema.prisma`` is, and how it was found.

    A configured path wins; otherwise Prisma's own layout puts it beside ``migrations/``.
    ``None`` means there is none: the target deploys its migrations without a schema file.
    """
    if configured:
        return Path(configured), "configured as prisma_schema"
    if not migrations_dir.is_dir():
        # Absence of a schema proves nothing when the folder it would sit beside is missing.
        raise FileNotFoundError(f"migrations_dir {migrations_dir} is not a directory")
    beside = migrations_dir.parent / SCHEMA_FILE
    if beside.exists():
        return beside, "found beside migrations_dir (Prisma's layout)"
    return None, f"no prisma_schema configured and no {SCHEMA_FILE} beside {migrations_dir}"


# --- I/O -------------------------------------------------------------------------------------


def read_disk_migrations(migrations_dir: Path) -> list[DiskMigration]:
    """Migration folders in name order; plain files (``migration_lock.toml``) are not ones."""
    if not migrations_dir.is_dir():
        raise FileNotFoundError(f"migrations_dir {migrations_dir} is not a directory")
    found = []
    for folder in sorted(p for p in migrations_dir.iterdir() if p.is_dir()):
        script_path = folder / MIGRATION_FILE
        if not script_path.is_file():
            found.append(DiskMigration(folder.name, None))
            continue
        script = script_path.read_bytes()
        found.append(
            DiskMigration(folder.name, migration_checksum(script), accepted_checksums(script))
        )
    return found


def describe_history(on_disk: Sequence[DiskMigration], rows: Sequence[MigrationRow]) -> str:
    """The raw inputs for the evidence: each folder's checksum and each row's state."""
    lines = ["on disk:"]
    lines += [f"  {m.name} sha256={m.checksum or 'NO migration.sql'}" for m in on_disk]
    lines.append("_prisma_migrations:")
    for r in rows:
        state = "rolled back" if r.rolled_back else "finished" if r.finished else "FAILED"
        lines.append(f"  {r.migration_name} checksum={r.checksum} {state} started={r.started_at}")
    return "\n".join(lines)


# --- rollback: what the previous release's code would meet ----------------------------------

# Statements a rollback cannot survive: the previous release's code still reads what they
# drop, rename or retype, or writes what a new constraint refuses (expand/contract: the
# contracting half ships only once no release that needs the old shape can come back).
DESTRUCTIVE = re.compile(
    r"\b(DROP\s+(TABLE|COLUMN|TYPE|SCHEMA|VIEW)|RENAME\b|ALTER\s+COLUMN\s+\S+\s+"
    r"(SET\s+DATA\s+TYPE|TYPE|SET\s+NOT\s+NULL)|TRUNCATE|DELETE\s+FROM)\b",
    re.IGNORECASE,
)
SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def non_additive_since(migrations_dir: Path, since: str) -> list[str]:
    """Each migration folder newer than ``since`` (names sort by their timestamp) with a
    statement the previous release's code could not run against, as "folder: statement"."""
    findings = []
    for migration in read_disk_migrations(migrations_dir):
        if migration.name <= since:
            continue
        script = (migrations_dir / migration.name / MIGRATION_FILE).read_text(encoding="utf-8")
        for match in DESTRUCTIVE.finditer(SQL_COMMENT.sub(" ", script)):
            findings.append(f"{migration.name}: {' '.join(match.group(0).split())}")
    return findings
