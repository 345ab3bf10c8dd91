from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
import pytest
from services_support import assert_stopped

from spark_sandbox.services import postgres as postgres_module
from spark_sandbox.services.migrate import MIGRATIONS_DIR, apply_migrations
from spark_sandbox.services.postgres import Postgres, start_postgres
from spark_sandbox.services.process import ServiceStartError


def test_postgres_starts_archives_wal_and_stops_clean(run_dir: Path) -> None:
    proc, pg = start_postgres(run_dir)
    pid = proc.pid
    assert pid is not None
    try:
        with psycopg.connect(pg.app_dsn()) as conn:
            user, database = conn.execute("SELECT current_user, current_database()").fetchone()
            assert (user, database) == ("spark_app", "spark")
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                    (["wal_level", "archive_mode", "listen_addresses"],),
                ).fetchall()
            )
            assert settings == {
                "wal_level": "replica",
                "archive_mode": "on",
                "listen_addresses": "127.0.0.1",
            }
            segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
            conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 10
        while not (pg.wal_archive / segment).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (pg.wal_archive / segment).exists(), "the switched WAL segment was not archived"

        # Migrations applied with the superuser DSN stay usable by the app role.
        apply_migrations(pg.dsn(), MIGRATIONS_DIR)
        with psycopg.connect(pg.app_dsn()) as conn:
            order_id = conn.execute(
                "INSERT INTO orders (account_id, symbol, side, quantity, price, commission, "
                "status) VALUES ('acct-1', 'THYAO', 'buy', 10, 285.25, 0.57, 'accepted') "
                "RETURNING id"
            ).fetchone()[0]
        assert order_id == 1
    finally:
        proc.stop()
    assert_stopped(pid, pg.port)


def test_app_role_needs_its_password(pg: Postgres) -> None:
    wrong = pg.app_dsn().replace(pg.app_password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


def test_port_taken_is_a_start_error_with_the_log(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monkeypatch.setattr(postgres_module, "free_port", lambda host: taken)
        with pytest.raises(ServiceStartError) as failure:
            start_postgres(run_dir, ready_timeout=10)
    assert failure.value.name == "postgres"
    assert "could not bind" in failure.value.log_tail


def test_run_dir_the_postgres_user_cannot_reach_is_refused_clearly(tmp_path: Path) -> None:
    # pytest's tmp_path lives under a 0700 root-owned directory.
    with pytest.raises(ServiceStartError, match="postgres_run_dir"):
        start_postgres(tmp_path / "run")


def test_the_superuser_needs_its_password_over_tcp(
    pg: Postgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No password from anywhere but the DSN: the environment and ~/.pgpass are out of play.
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    bare = f"host={pg.host} port={pg.port} dbname=postgres user={pg.superuser}"
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(bare, connect_timeout=5).close()
    wrong = pg.dsn("postgres").replace(pg.superuser_password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()
    with psycopg.connect(pg.dsn("postgres"), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (pg.superuser,)
    hba = (pg.data_dir / "pg_hba.conf").read_text()
    assert "trust" not in hba and "host  all         all      127.0.0.1/32 scram-sha-256" in hba
    assert pg.superuser_password not in repr(pg)
    assert not list(pg.data_dir.parent.glob(".initdb-pw-*"))  # the password file is gone
