"""B2 probe logic: Prisma checksums (CRLF tolerant), history findings, schema.prisma parsing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pytest_spark.probes import migrations as mg

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
SCRIPT = b"CREATE TABLE orders (id SERIAL PRIMARY KEY);\nCREATE INDEX o ON orders (id);\n"


def test_checksum_is_prismas_test_vector() -> None:
    # prisma-engines checksum.rs: render_checksum("hello")
    assert mg.migration_checksum(b"hello") == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )


def test_crlf_and_lf_forms_are_both_accepted() -> None:
    crlf = SCRIPT.replace(b"\n", b"\r\n")
    accepted_lf = mg.accepted_checksums(SCRIPT)
    accepted_crlf = mg.accepted_checksums(crlf)
    assert mg.migration_checksum(crlf) in accepted_lf
    assert mg.migration_checksum(SCRIPT) in accepted_crlf
    assert mg.migration_checksum(SCRIPT + b"-- edited\n") not in accepted_lf


def disk(name: str, script: bytes = SCRIPT) -> mg.DiskMigration:
    return mg.DiskMigration(name, mg.migration_checksum(script), mg.accepted_checksums(script))


def row(
    name: str,
    script: bytes = SCRIPT,
    *,
    finished: bool = True,
    rolled_back: bool = False,
    logs: str | None = None,
) -> mg.MigrationRow:
    return mg.MigrationRow(
        name,
        mg.migration_checksum(script),
        T0,
        T0 if finished else None,
        T0 if rolled_back else None,
        logs,
    )


def test_healthy_history_has_no_findings() -> None:
    found = mg.migration_findings([disk("1_init"), disk("2_more")], [row("1_init"), row("2_more")])
    assert found == mg.MigrationFindings()


def test_pending_migration() -> None:
    found = mg.migration_findings([disk("1_init"), disk("2_more")], [row("1_init")])
    assert [name for name, _ in found.pending] == ["2_more"]
    assert not found.failed and not found.modified and not found.missing_on_disk


def test_failed_migration_is_reported_once_as_failed() -> None:
    rows = [row("1_init"), row("2_more", finished=False, logs="ERROR: timeout\nmore")]
    found = mg.migration_findings([disk("1_init"), disk("2_more")], rows)
    assert found.failed == [("2_more", f"started {T0.isoformat()}, never finished: ERROR: timeout")]
    assert found.pending == []


def test_rolled_back_rows_are_ignored() -> None:
    # `migrate resolve --rolled-back`, then never re-applied: the migration is pending again.
    rows = [row("1_init"), row("2_more", finished=False, rolled_back=True)]
    found = mg.migration_findings([disk("1_init"), disk("2_more")], rows)
    assert found.failed == []
    assert [name for name, _ in found.pending] == ["2_more"]


def test_resolve_applied_leaves_a_rolled_back_and_a_finished_row() -> None:
    rows = [
        row("1_init", b"old", finished=False, rolled_back=True),
        row("1_init"),
    ]
    assert mg.migration_findings([disk("1_init")], rows) == mg.MigrationFindings()


def test_modified_migration() -> None:
    found = mg.migration_findings([disk("1_init", SCRIPT + b"-- edited\n")], [row("1_init")])
    assert [name for name, _ in found.modified] == ["1_init"]
    assert mg.migration_checksum(SCRIPT) in found.modified[0][1]


def test_crlf_checkout_is_not_a_modification() -> None:
    on_disk = [disk("1_init", SCRIPT.replace(b"\n", b"\r\n"))]
    assert mg.migration_findings(on_disk, [row("1_init")]).modified == []


def test_applied_migration_missing_on_disk() -> None:
    found = mg.migration_findings([disk("1_init")], [row("1_init"), row("3_hotfix")])
    assert [name for name, _ in found.missing_on_disk] == ["3_hotfix"]


def test_folder_without_script_is_pending() -> None:
    found = mg.migration_findings([mg.DiskMigration("2_empty", None)], [])
    assert found.pending == [("2_empty", "folder has no migration.sql")]


def test_read_disk_migrations(tmp_path: Path) -> None:
    for name in ("20261101000100_b", "20261101000000_a"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "migration.sql").write_bytes(SCRIPT)
    (tmp_path / "migration_lock.toml").write_text('provider = "postgresql"\n')
    (tmp_path / "20261102000000_empty").mkdir()
    found = mg.read_disk_migrations(tmp_path)
    assert [m.name for m in found] == [
        "20261101000000_a",
        "20261101000100_b",
        "20261102000000_empty",
    ]
    assert found[0].checksum == mg.migration_checksum(SCRIPT)
    assert found[2].checksum is None


SCHEMA = """
// production schema
generator client {
  provider = "prisma-client-js"
}

datasource db {
  provider          = "postgresql"
  url               = env("DATABASE_URL") // "//" inside a comment
  shadowDatabaseUrl = env("SHADOW_DATABASE_URL")
}

model Order {
  id Int @id @default(autoincrement())
  note String @default("http://example")
}
"""


def test_shadow_database_url_is_found() -> None:
    assert mg.datasources(SCHEMA)["db"]["url"] == 'env("DATABASE_URL")'
    assert mg.shadow_database_findings(SCHEMA) == [
        ("db", 'shadowDatabaseUrl = env("SHADOW_DATABASE_URL")')
    ]


def test_commented_out_shadow_database_url_is_not_a_finding() -> None:
    schema = SCHEMA.replace("  shadowDatabaseUrl", "  // shadowDatabaseUrl")
    assert mg.shadow_database_findings(schema) == []
    assert "db" in mg.datasources(schema)


def test_schema_path(tmp_path: Path) -> None:
    migrations_dir = tmp_path / "prisma" / "migrations"
    migrations_dir.mkdir(parents=True)
    assert mg.schema_path(None, migrations_dir)[0] is None
    (tmp_path / "prisma" / "schema.prisma").write_text(SCHEMA)
    assert mg.schema_path(None, migrations_dir)[0] == tmp_path / "prisma" / "schema.prisma"
    assert mg.schema_path("/elsewhere/schema.prisma", migrations_dir)[0] == Path(
        "/elsewhere/schema.prisma"
    )


def test_missing_migrations_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="migrations_dir"):
        mg.read_disk_migrations(tmp_path / "nope")


def test_schema_absence_is_not_judged_without_the_migrations_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="migrations_dir"):
        mg.schema_path(None, tmp_path / "missing")
