"""A real PostgreSQL per xdist worker, migrated with the init migration, and API processes."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from api_harness import Api, FakeFeed, start_api

from spark_sandbox.services.migrate import MIGRATIONS_DIR, apply_migrations
from spark_sandbox.services.postgres import (
    Postgres,
    postgres_run_dir,
    remove_run_dir,
    start_postgres,
)
from spark_sandbox.services.process import ServiceProcess

INIT_MIGRATION = "20261101000000_init"


@pytest.fixture(scope="session")
def database() -> Iterator[Postgres]:
    run_dir = postgres_run_dir("spark-api-tests-")
    migrations = Path(tempfile.mkdtemp(prefix="spark-api-migrations-"))
    proc: ServiceProcess | None = None
    try:
        # Only the API's own migration: these tests must not depend on other tables' drafts.
        shutil.copytree(MIGRATIONS_DIR / INIT_MIGRATION, migrations / INIT_MIGRATION)
        proc, pg = start_postgres(run_dir)
        apply_migrations(pg.app_dsn(), migrations)
        yield pg
    finally:
        if proc is not None:
            proc.stop()
        remove_run_dir(run_dir)
        shutil.rmtree(migrations, ignore_errors=True)


@pytest.fixture(scope="session")
def feed() -> Iterator[FakeFeed]:
    fake = FakeFeed().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-logs")


@pytest.fixture(scope="session")
def api(database: Postgres, feed: FakeFeed, log_dir: Path) -> Iterator[Api]:
    """The healthy API, shared by the tests of one worker."""
    server = start_api(database.app_dsn(), log_dir, feed_addr=feed.addr)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def api_factory(database: Postgres, feed: FakeFeed, log_dir: Path) -> Iterator[Callable[..., Api]]:
    """Start extra APIs (a defect, another feed, another DSN); all stop after the test."""
    started: list[Api] = []

    def make(**kwargs: object) -> Api:
        kwargs.setdefault("feed_addr", feed.addr)
        dsn = str(kwargs.pop("dsn", database.app_dsn()))
        server = start_api(dsn, log_dir, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.process.stop()


@pytest.fixture
def db(database: Postgres) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def account() -> str:
    """A fresh account per test, so tests sharing one database never see each other's orders."""
    return f"acct-{uuid.uuid4().hex[:12]}"
