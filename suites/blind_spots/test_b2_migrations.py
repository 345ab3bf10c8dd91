"""B2 Prisma Migrate: the history on disk against ``_prisma_migrations``, no shadow database."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_spark import CheckEvidence, Reach, Target
from pytest_spark.probes import migrations
from pytest_spark.probes.postgres import Postgres
from suites.limits import Limits

pytestmark = pytest.mark.blind_spot("B2")


def _findings(reach: Reach, spark_evidence: CheckEvidence) -> migrations.MigrationFindings:
    with reach("migrations_dir") as [folder]:
        migrations_dir = Path(folder)
        on_disk = migrations.read_disk_migrations(migrations_dir)
    with reach("postgres_dsn") as [dsn], Postgres(dsn) as db:
        rows = db.migration_rows()
    spark_evidence.note(migrations.describe_history(on_disk, rows))
    if not on_disk:
        spark_evidence.inconclusive(
            f"no migration folders in {migrations_dir}: nothing to compare; check migrations_dir"
        )
    return migrations.migration_findings(on_disk, rows)


def _check(
    spark_evidence: CheckEvidence,
    name: str,
    found: list[tuple[str, str]],
    *,
    limit: float,
    what: str,
    fix: str,
) -> None:
    listed = "; ".join(f"{migration}: {detail}" for migration, detail in found)
    spark_evidence.check(
        name,
        len(found),
        limit=limit,
        unit="migrations",
        why=f"{len(found)} migration(s) {what}: {listed}; {fix}",
    )


def test_every_migration_applied(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    found = _findings(reach, spark_evidence).pending
    _check(
        spark_evidence,
        "pending_migrations",
        found,
        limit=limits.b2.pending_migrations,
        what="on disk have no row in _prisma_migrations",
        fix="run `prisma migrate deploy` in the release pipeline before the app starts",
    )


def test_no_failed_migration(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    found = _findings(reach, spark_evidence).failed
    _check(
        spark_evidence,
        "failed_migrations",
        found,
        limit=limits.b2.failed_migrations,
        what="started but neither finished nor rolled back",
        fix="read the row's logs, repair the schema, then `prisma migrate resolve`",
    )


def test_no_migration_modified_since_applied(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    found = _findings(reach, spark_evidence).modified
    _check(
        spark_evidence,
        "modified_migrations",
        found,
        limit=limits.b2.modified_migrations,
        what="edited after they were applied (sha256 of migration.sql != stored checksum)",
        fix="restore the applied file from git and put the change in a new migration",
    )


def test_no_applied_migration_missing_on_disk(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    found = _findings(reach, spark_evidence).missing_on_disk
    _check(
        spark_evidence,
        "migrations_missing_on_disk",
        found,
        limit=limits.b2.migrations_missing_on_disk,
        what="applied in the database but missing from migrations_dir",
        fix="the release was built from a branch behind the database: rebase it",
    )


def test_no_shadow_database_url(
    spark_target: Target, reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    """A ``shadowDatabaseUrl`` in production lets ``migrate dev`` erase that database.

    The schema is the configured ``prisma_schema`` or, by Prisma's layout, the
    ``schema.prisma`` beside ``migrations_dir``. When neither exists, the target deploys plain
    migrations without a Prisma schema (the sandbox does): no datasource exists to carry the
    key, which is recorded as such. A schema that exists but cannot be read is INCONCLUSIVE.
    """
    configured = spark_target.endpoints.get("prisma_schema") or None
    with reach("migrations_dir") as [folder]:
        path, how = migrations.schema_path(configured, Path(folder))
    limit = limits.b2.shadow_database_urls
    if path is None:
        spark_evidence.note(f"no schema.prisma configured: {how}; no datasource to check")
        spark_evidence.check(
            "shadow_database_urls", 0, limit=limit, unit="datasources", why="no datasource"
        )
        return
    try:
        schema = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        spark_evidence.inconclusive(f"schema.prisma {path} ({how}) cannot be read: {exc}")
        raise  # inconclusive() already stopped the test; this keeps the flow explicit
    sources = migrations.datasources(schema)
    spark_evidence.note(f"{path} ({how}): datasources {sorted(sources)}")
    found = migrations.shadow_database_findings(schema)
    spark_evidence.check(
        "shadow_database_urls",
        len(found),
        limit=limit,
        unit="datasources",
        why=f"{path} sets shadowDatabaseUrl in {', '.join(n for n, _ in found)}, which lets "
        "`migrate dev` erase that database; remove it from the production schema (a shadow "
        "database is for `migrate dev` only)",
    )
