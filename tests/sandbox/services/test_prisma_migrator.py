from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from spark_sandbox.services.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    apply_migrations,
    list_migrations,
)

PRISMA_COLUMNS = [
    ("id", "character varying", 36, "NO"),
    ("checksum", "character varying", 64, "NO"),
    ("finished_at", "timestamp with time zone", None, "YES"),
    ("migration_name", "character varying", 255, "NO"),
    ("logs", "text", None, "YES"),
    ("rolled_back_at", "timestamp with time zone", None, "YES"),
    ("started_at", "timestamp with time zone", None, "NO"),
    ("applied_steps_count", "integer", None, "NO"),
]


def write_migrations(root: Path, scripts: dict[str, str]) -> Path:
    root.mkdir()
    (root / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name, script in scripts.items():
        (root / name).mkdir()
        (root / name / "migration.sql").write_text(script)
    return root


@pytest.fixture
def two_migrations(tmp_path: Path) -> Path:
    return write_migrations(
        tmp_path / "migrations",
        {
            "20261101000000_init": "CREATE TABLE accounts (id text PRIMARY KEY);\n"
            "CREATE TABLE trades (id bigserial PRIMARY KEY, price numeric(18,2));\n",
            "20261101000100_trade_side": "ALTER TABLE trades ADD COLUMN side text;\n",
        },
    )


def test_applies_in_order_and_records_rows_as_prisma(fresh_db: str, two_migrations: Path) -> None:
    assert apply_migrations(fresh_db, two_migrations) == [
        "20261101000000_init",
        "20261101000100_trade_side",
    ]
    with psycopg.connect(fresh_db) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_name = '_prisma_migrations' "
            "ORDER BY ordinal_position"
        ).fetchall()
        rows = conn.execute(
            "SELECT id, migration_name, checksum, started_at <= finished_at, "
            "applied_steps_count, rolled_back_at FROM _prisma_migrations ORDER BY started_at"
        ).fetchall()
        assert conn.execute("SELECT side FROM trades").fetchall() == []
    assert columns == PRISMA_COLUMNS
    for (row_id, name, checksum, ordered, steps, rolled_back), folder in zip(
        rows, sorted(two_migrations.glob("2026*")), strict=True
    ):
        assert name == folder.name
        assert checksum == hashlib.sha256((folder / "migration.sql").read_bytes()).hexdigest()
        assert len(row_id) == 36 and ordered and steps == 1 and rolled_back is None


def test_second_run_applies_nothing(fresh_db: str, two_migrations: Path) -> None:
    apply_migrations(fresh_db, two_migrations)
    assert apply_migrations(fresh_db, two_migrations) == []


def test_skip_last_leaves_the_newest_pending(fresh_db: str, two_migrations: Path) -> None:
    assert apply_migrations(fresh_db, two_migrations, skip_last=True) == ["20261101000000_init"]
    with psycopg.connect(fresh_db) as conn:
        names = [r[0] for r in conn.execute("SELECT migration_name FROM _prisma_migrations")]
    assert names == ["20261101000000_init"]
    assert apply_migrations(fresh_db, two_migrations) == ["20261101000100_trade_side"]


def test_failing_script_leaves_a_failed_row_and_blocks_later_runs(
    fresh_db: str, tmp_path: Path
) -> None:
    migrations = write_migrations(
        tmp_path / "migrations",
        {
            "20261101000000_init": "CREATE TABLE accounts (id text PRIMARY KEY);\n",
            "20261101000100_broken": "CREATE TABLE half_done (id int);\nSELECT 1/0;\n",
        },
    )
    with pytest.raises(MigrationError, match="20261101000100_broken"):
        apply_migrations(fresh_db, migrations)
    with psycopg.connect(fresh_db) as conn:
        failed = conn.execute(
            "SELECT migration_name, logs FROM _prisma_migrations "
            "WHERE finished_at IS NULL AND rolled_back_at IS NULL"
        ).fetchall()
        half_done = conn.execute("SELECT to_regclass('half_done')").fetchone()[0]
    assert [name for name, _ in failed] == ["20261101000100_broken"]
    assert "division by zero" in failed[0][1]
    assert half_done is None, "the failed script's DDL must be rolled back"
    with pytest.raises(MigrationError, match="failed migrations"):
        apply_migrations(fresh_db, migrations)


def test_repository_migrations_apply(fresh_db: str) -> None:
    names = [m.name for m in list_migrations(MIGRATIONS_DIR)]
    if not names:
        pytest.fail(f"no migrations in {MIGRATIONS_DIR}")
    assert apply_migrations(fresh_db, MIGRATIONS_DIR) == names
    with psycopg.connect(fresh_db) as conn:
        index = conn.execute("SELECT to_regclass('open_position_index')").fetchone()[0]
    assert index is not None


def test_concurrent_deploys_apply_each_migration_once(fresh_db: str, two_migrations: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: apply_migrations(fresh_db, two_migrations), range(2)))
    assert sorted(runs, key=len) == [[], ["20261101000000_init", "20261101000100_trade_side"]]
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute("SELECT count(*) FROM _prisma_migrations").fetchone()[0]
    assert rows == 2
