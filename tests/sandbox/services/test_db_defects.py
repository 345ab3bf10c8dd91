from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest
from services_support import assert_stopped

from spark_sandbox.defects import Blueprint
from spark_sandbox.services.db_defects import idle_in_transaction_seconds, migrate_with_defects
from spark_sandbox.services.migrate import MIGRATIONS_DIR, list_migrations
from spark_sandbox.services.pgbouncer import start_pgbouncer
from spark_sandbox.services.postgres import Postgres

MIGRATIONS = list_migrations(MIGRATIONS_DIR)


def migration_rows(dsn: str) -> dict[str, tuple[str, bool, bool]]:
    """migration_name -> (checksum, finished, rolled back)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at IS NOT NULL "
            "FROM _prisma_migrations"
        ).fetchall()
    return {name: (checksum, finished, rolled) for name, checksum, finished, rolled in rows}


def file_checksums() -> dict[str, str]:
    return {m.name: hashlib.sha256(m.path.read_bytes()).hexdigest() for m in MIGRATIONS}


def test_no_defect_leaves_a_clean_history(fresh_db: str) -> None:
    migrate_with_defects(fresh_db, MIGRATIONS_DIR, ["no_coep"])
    rows = migration_rows(fresh_db)
    assert {name: checksum for name, (checksum, _, _) in rows.items()} == file_checksums()
    assert all(finished and not rolled for _, finished, rolled in rows.values())


def test_pending_migration(fresh_db: str) -> None:
    migrate_with_defects(fresh_db, MIGRATIONS_DIR, ["pending_migration"])
    pending = set(file_checksums()) - set(migration_rows(fresh_db))
    assert pending == {MIGRATIONS[-1].name}


def test_modified_migration(fresh_db: str) -> None:
    migrate_with_defects(fresh_db, MIGRATIONS_DIR, ["modified_migration"])
    files = file_checksums()
    modified = [name for name, (stored, _, _) in migration_rows(fresh_db).items()
                if stored != files[name]]  # fmt: skip
    assert modified == [MIGRATIONS[0].name]


def test_failed_migration(fresh_db: str) -> None:
    migrate_with_defects(fresh_db, MIGRATIONS_DIR, ["failed_migration"])
    with psycopg.connect(fresh_db) as conn:
        failed = conn.execute(
            "SELECT migration_name FROM _prisma_migrations "
            "WHERE finished_at IS NULL AND rolled_back_at IS NULL"
        ).fetchall()
    assert failed == [(MIGRATIONS[-1].name,)]


def test_sequence_behind(fresh_db: str) -> None:
    migrate_with_defects(fresh_db, MIGRATIONS_DIR, ["sequence_behind"])
    with psycopg.connect(fresh_db) as conn:
        last_value, max_id = conn.execute(
            "SELECT (SELECT coalesce(last_value, 0) FROM pg_sequences "
            "WHERE sequencename = 'orders_id_seq'), (SELECT max(id) FROM orders)"
        ).fetchone()
    assert last_value < max_id


@pytest.mark.parametrize("defect", ["pending_migration", "sequence_behind"])
def test_unknown_defect_names_are_refused(fresh_db: str, defect: str) -> None:
    with pytest.raises(ValueError, match="unknown sandbox defect 'no_such_defect'"):
        migrate_with_defects(fresh_db, MIGRATIONS_DIR, [defect, "no_such_defect"])


def test_long_running_query_sits_idle_in_transaction_through_pgbouncer(
    run_dir: Path, pg: Postgres
) -> None:
    bouncer_proc, bouncer = start_pgbouncer(run_dir, pg)
    try:
        assert Blueprint.of(["no_coep"]).db_sessions == []
        [start_session] = Blueprint.of(["long_running_query"]).db_sessions
        idle = start_session(run_dir, bouncer.dsn())
        pid = idle.pid
        assert pid is not None
        try:
            # What a B3 check runs: a session idle in transaction for more than 10 s.
            with psycopg.connect(pg.dsn(), autocommit=True) as conn:
                sessions = conn.execute(
                    "SELECT usename, datname FROM pg_stat_activity "
                    "WHERE state = 'idle in transaction' "
                    "AND clock_timestamp() - state_change > interval '10 seconds'"
                ).fetchall()
            assert sessions == [("spark_app", "spark")]
        finally:
            idle.stop()
        assert_stopped(pid)
        assert idle_in_transaction_seconds(pg.dsn()) == 0.0
    finally:
        bouncer_proc.stop()
