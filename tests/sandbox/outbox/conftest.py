"""Real PostgreSQL + PgBouncer per xdist worker, and the feed/publisher/consumer as children."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from outbox_harness import OutboxDatabase, Services

from spark_sandbox.services.migrate import MIGRATIONS_DIR, apply_migrations
from spark_sandbox.services.pgbouncer import start_pgbouncer
from spark_sandbox.services.postgres import postgres_run_dir, remove_run_dir, start_postgres
from spark_sandbox.services.process import ServiceProcess


@pytest.fixture(scope="session")
def outbox_db() -> Iterator[OutboxDatabase]:
    run_dir = postgres_run_dir("spark-outbox-tests-")
    pg_proc: ServiceProcess | None = None
    bouncer_proc: ServiceProcess | None = None
    try:
        pg_proc, pg = start_postgres(run_dir)
        apply_migrations(pg.app_dsn(), MIGRATIONS_DIR)
        bouncer_proc, bouncer = start_pgbouncer(run_dir, pg)
        yield OutboxDatabase(pg, bouncer, run_dir)
    finally:
        if bouncer_proc is not None:
            bouncer_proc.stop()
        if pg_proc is not None:
            pg_proc.stop()
        remove_run_dir(run_dir)


@pytest.fixture
def clean_outbox(outbox_db: OutboxDatabase) -> OutboxDatabase:
    """Every test starts from an empty outbox and an empty consumer side."""
    with psycopg.connect(outbox_db.pg.dsn(), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE outbox_events, order_ledger, consumed_events, fills, orders RESTART IDENTITY"
        )
    return outbox_db


@pytest.fixture
def services(clean_outbox: OutboxDatabase, tmp_path: Path) -> Iterator[Services]:
    children = Services(clean_outbox, tmp_path / "logs")
    try:
        yield children
    finally:
        children.stop_all()


@pytest.fixture
def feed_services(tmp_path: Path) -> Iterator[Services]:
    """Children that need no database (the market-data feed)."""
    children = Services(None, tmp_path / "logs")
    try:
        yield children
    finally:
        children.stop_all()
