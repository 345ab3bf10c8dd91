"""Rollback's pre-check on the schema: every migration the previous release did not ship with
must be additive, since that release's code runs on today's schema after the switch."""

from __future__ import annotations

from pathlib import Path

from pytest_spark.probes.migrations import non_additive_since


def _migrations(root: Path, **scripts: str) -> Path:
    for name, sql in scripts.items():
        (root / name).mkdir(parents=True)
        (root / name / "migration.sql").write_text(sql)
    return root


def test_only_migrations_newer_than_the_previous_release_are_read(tmp_path: Path) -> None:
    root = _migrations(
        tmp_path,
        m20261101_init="CREATE TABLE orders (id bigint); DROP TABLE legacy;",
        m20261201_add="ALTER TABLE orders ADD COLUMN note text; CREATE INDEX i ON orders (note);",
    )
    assert non_additive_since(root, "m20261101_init") == []


def test_drops_renames_retypes_and_new_not_null_are_named(tmp_path: Path) -> None:
    root = _migrations(
        tmp_path,
        m20261101_init="CREATE TABLE orders (id bigint);",
        m20261201_contract=(
            "-- DROP TABLE in a comment is no statement\n"
            "ALTER TABLE orders DROP COLUMN note;\n"
            "ALTER TABLE orders RENAME COLUMN qty TO quantity;\n"
            "ALTER TABLE orders ALTER COLUMN price TYPE numeric(20,4);\n"
            "ALTER TABLE orders ALTER COLUMN side SET NOT NULL;\n"
            "/* TRUNCATE neither */ DELETE FROM orders WHERE id < 0;"
        ),
    )
    assert non_additive_since(root, "m20261101_init") == [
        "m20261201_contract: DROP COLUMN",
        "m20261201_contract: RENAME",
        "m20261201_contract: ALTER COLUMN price TYPE",
        "m20261201_contract: ALTER COLUMN side SET NOT NULL",
        "m20261201_contract: DELETE FROM",
    ]


def test_the_sandbox_migrations_are_additive_from_the_first(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "spark_sandbox" / "prisma" / "migrations"
    first = min(p.name for p in shipped.iterdir() if p.is_dir())
    assert non_additive_since(shipped, first) == []
