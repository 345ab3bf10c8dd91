"""Apply a Prisma Migrate folder and record it in ``_prisma_migrations`` exactly as Prisma does.

Call::

    applied = apply_migrations(pg.app_dsn(), MIGRATIONS_DIR)            # -> ["2026..._init", ...]
    applied = apply_migrations(dsn, MIGRATIONS_DIR, skip_last=True)     # pending_migration defect

Layout: ``<migrations_dir>/<YYYYMMDDHHMMSS>_<name>/migration.sql``, applied in name order. Like
``prisma migrate deploy``: the table DDL is Prisma's, the row is inserted before the script
runs, ``checksum`` is the lowercase sha256 hex of the file's bytes, and ``finished_at`` plus
``applied_steps_count = 1`` are written only when the script succeeded. A failing script leaves
its row started but neither finished nor rolled back (Prisma's "failed" state, error in
``logs``) and raises :class:`MigrationError`; a later run refuses to go on, as Prisma (P3009).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "prisma" / "migrations"
MIGRATION_FILE = "migration.sql"
# Prisma takes this advisory lock so that two deploys never interleave.
PRISMA_ADVISORY_LOCK = 72707369
LOCK_TIMEOUT = "10s"

# Verbatim from prisma-engines (sql-schema-connector, flavour/postgres.rs).
PRISMA_MIGRATIONS_DDL = """\
CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);
"""


class MigrationError(RuntimeError):
    """A migration could not be applied; the message names it and carries the database error."""


@dataclass(frozen=True)
class MigrationFile:
    name: str
    path: Path

    @property
    def script(self) -> bytes:
        return self.path.read_bytes()

    @property
    def checksum(self) -> str:
        return migration_checksum(self.script)


def migration_checksum(script: bytes) -> str:
    """Prisma's checksum: SHA-256 of the script bytes as 64 lowercase hex characters."""
    return hashlib.sha256(script).hexdigest()


def list_migrations(migrations_dir: Path) -> list[MigrationFile]:
    """Migration folders in name order; files such as ``migration_lock.toml`` are not migrations."""
    if not migrations_dir.is_dir():
        raise MigrationError(f"migrations directory {migrations_dir} does not exist")
    return [
        MigrationFile(folder.name, folder / MIGRATION_FILE)
        for folder in sorted(migrations_dir.iterdir(), key=lambda p: p.name)
        if (folder / MIGRATION_FILE).is_file()
    ]


def apply_migrations(dsn: str, migrations_dir: Path, *, skip_last: bool = False) -> list[str]:
    """Apply every migration not yet applied; return the names applied by this call.

    ``skip_last`` leaves the newest migration unapplied (the ``pending_migration`` defect).
    """
    import psycopg

    migrations = list_migrations(migrations_dir)
    if skip_last:
        migrations = migrations[:-1]
    applied: list[str] = []
    # autocommit: each migration gets its own explicit transaction below, and the bookkeeping
    # row must survive a failing script. Use a direct DSN, not a transaction pool: the
    # advisory lock is held by the session.
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Like Prisma, wait at most 10 s for another deploy; the scripts themselves may wait.
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute("SELECT pg_advisory_lock(%s)", (PRISMA_ADVISORY_LOCK,))
        conn.execute("RESET lock_timeout")
        try:
            ensure_migrations_table(conn)
            done = finished_migrations(conn)
            for migration in migrations:
                if migration.name in done:
                    continue
                apply_one(conn, migration)
                applied.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (PRISMA_ADVISORY_LOCK,))
    return applied


def ensure_migrations_table(conn: Connection[tuple[object, ...]]) -> None:
    row = conn.execute("SELECT to_regclass('_prisma_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        conn.execute(PRISMA_MIGRATIONS_DDL)


def finished_migrations(conn: Connection[tuple[object, ...]]) -> set[str]:
    """Names applied successfully; a failed row (started, not finished, not rolled back) stops
    the deploy, as Prisma's P3009 does, because its schema changes are in an unknown state."""
    rows = conn.execute(
        "SELECT migration_name, finished_at IS NOT NULL FROM _prisma_migrations "
        "WHERE rolled_back_at IS NULL ORDER BY started_at"
    ).fetchall()
    failed = [str(name) for name, finished in rows if not finished]
    if failed:
        raise MigrationError(
            f"migrate found failed migrations in the target database: {', '.join(failed)}; "
            "resolve them (mark rolled back or applied) before applying new migrations"
        )
    return {str(name) for name, _ in rows}


def apply_one(conn: Connection[tuple[object, ...]], migration: MigrationFile) -> None:
    script = migration.script
    row_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at) "
        "VALUES (%s, %s, %s, now())",
        (row_id, migration_checksum(script), migration.name),
    )
    try:
        with conn.transaction():
            # No parameters: psycopg sends the script as one simple query, so a file with
            # several statements runs as Prisma runs it.
            conn.execute(script.decode("utf-8"))
            conn.execute(
                "UPDATE _prisma_migrations SET finished_at = now(), applied_steps_count = 1 "
                "WHERE id = %s",
                (row_id,),
            )
    except Exception as exc:
        conn.execute("UPDATE _prisma_migrations SET logs = %s WHERE id = %s", (str(exc), row_id))
        raise MigrationError(f"migration {migration.name} failed to apply: {exc}") from exc
