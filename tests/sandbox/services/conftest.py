"""Fixtures for the sandbox service executors: run dirs, a cluster per module, fresh databases."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from spark_sandbox.services.postgres import Postgres, postgres_run_dir, start_postgres
from spark_sandbox.services.process import ServiceProcess


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run dir the ``postgres`` user can reach (pytest's tmp_path is private to root)."""
    path = postgres_run_dir("spark-services-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[ServiceProcess, Postgres]]:
    """One cluster per xdist worker; tests that change a database get their own database."""
    path = postgres_run_dir("spark-services-pg-")
    proc, pg = start_postgres(path)
    try:
        yield proc, pg
    finally:
        proc.stop()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg(postgres_server: tuple[ServiceProcess, Postgres]) -> Postgres:
    return postgres_server[1]


@pytest.fixture
def fresh_db(pg: Postgres) -> Iterator[str]:
    """A new empty database owned by the app role; yields its superuser DSN."""
    name = f"spark_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(pg.app_user)
            )
        )
    try:
        yield pg.dsn(name)
    finally:
        with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
