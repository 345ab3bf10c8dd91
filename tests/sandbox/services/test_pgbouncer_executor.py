from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from services_support import assert_stopped

from spark_sandbox.defects import Blueprint
from spark_sandbox.services import pgbouncer as pgbouncer_module
from spark_sandbox.services.pgbouncer import PgBouncer, start_pgbouncer
from spark_sandbox.services.postgres import Postgres
from spark_sandbox.services.process import ServiceProcess, ServiceStartError


def show_pool_modes(bouncer: PgBouncer) -> dict[str, str]:
    # The console rejects prepared statements and transactions.
    with psycopg.connect(bouncer.admin_dsn(), autocommit=True, prepare_threshold=None) as conn:
        cur = conn.execute("SHOW DATABASES")
        names = [column.name for column in cur.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return {row["name"]: row["pool_mode"] for row in rows if row["name"] != "pgbouncer"}


@pytest.fixture
def bouncer(run_dir: Path, pg: Postgres) -> Iterator[tuple[ServiceProcess, PgBouncer]]:
    proc, bouncer = start_pgbouncer(run_dir, pg)
    try:
        yield proc, bouncer
    finally:
        proc.stop()


def test_pools_answer_and_show_their_modes(bouncer: tuple[ServiceProcess, PgBouncer]) -> None:
    _, pgb = bouncer
    # Transaction pooling breaks psycopg's auto-prepare, hence prepare_threshold=None.
    with psycopg.connect(pgb.dsn("spark"), prepare_threshold=None) as conn:
        for _ in range(8):
            assert conn.execute("SELECT current_database()").fetchone() == ("spark",)
    assert show_pool_modes(pgb) == {"spark": "transaction", "spark_listen": "session"}


def test_listen_pool_delivers_notifications(bouncer: tuple[ServiceProcess, PgBouncer]) -> None:
    _, pgb = bouncer
    with psycopg.connect(pgb.dsn("spark_listen"), autocommit=True) as listener:
        listener.execute("LISTEN outbox_events")
        with psycopg.connect(pgb.dsn("spark"), prepare_threshold=None) as producer:
            producer.execute("SELECT pg_notify('outbox_events', '42')")
        received = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert received == ["42"]


def test_stats_user_reads_the_console(bouncer: tuple[ServiceProcess, PgBouncer]) -> None:
    _, pgb = bouncer
    with psycopg.connect(pgb.stats_dsn(), autocommit=True, prepare_threshold=None) as conn:
        pools = {row[0] for row in conn.execute("SHOW POOLS").fetchall()}
    assert "pgbouncer" in pools


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        ("pool_mode_session", {"spark": "session", "spark_listen": "session"}),
        ("listen_on_transaction_pool", {"spark": "transaction", "spark_listen": "transaction"}),
    ],
)
def test_each_defect_flips_one_pool_mode(
    run_dir: Path, pg: Postgres, defect: str, expected: dict[str, str]
) -> None:
    proc, pgb = start_pgbouncer(
        run_dir, pg, pool_modes=Blueprint.of([defect, "no_coep"]).pool_modes
    )
    try:
        assert show_pool_modes(pgb) == expected
    finally:
        proc.stop()


def test_stop_leaves_no_process_or_port(run_dir: Path, pg: Postgres) -> None:
    proc, pgb = start_pgbouncer(run_dir, pg)
    pid = proc.pid
    assert pid is not None
    proc.stop()
    assert_stopped(pid, pgb.port)


def test_port_taken_is_a_start_error_with_the_log(
    run_dir: Path, pg: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monkeypatch.setattr(pgbouncer_module, "free_port", lambda host: taken)
        with pytest.raises(ServiceStartError) as failure:
            start_pgbouncer(run_dir, pg, ready_timeout=2)
    assert failure.value.name == "pgbouncer"
    # PgBouncer only warns and stays up on its unix socket, so it is the probe that catches it.
    assert "cannot listen on 127.0.0.1" in failure.value.log_tail


def test_the_userlist_is_readable_by_its_service_user_only(
    bouncer: tuple[ServiceProcess, PgBouncer],
) -> None:
    import os
    import pwd

    _, pgb = bouncer
    info = (pgb.config_path.parent / "userlist.txt").stat()
    owner = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert (oct(info.st_mode & 0o777), info.st_uid) == ("0o600", owner)
