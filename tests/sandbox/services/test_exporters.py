from __future__ import annotations

from pathlib import Path

import psycopg
from services_support import assert_stopped

from spark_sandbox.services.exporters import start_pgbouncer_exporter, start_postgres_exporter
from spark_sandbox.services.pgbouncer import start_pgbouncer
from spark_sandbox.services.postgres import Postgres


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_pgbouncer_exporter_reports_pools_and_goes_down_with_pgbouncer(
    run_dir: Path, pg: Postgres
) -> None:
    session_pools = {"spark": "session", "spark_listen": "session"}
    bouncer_proc, bouncer = start_pgbouncer(run_dir, pg, pool_modes=session_pools)
    try:
        exporter_proc, exporter = start_pgbouncer_exporter(run_dir, bouncer)
        pid = exporter_proc.pid
        assert pid is not None
        try:
            with psycopg.connect(bouncer.dsn("spark"), prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
                metrics = samples(exporter.scrape())
            assert metrics["pgbouncer_up"] == 1
            assert (
                metrics[
                    'pgbouncer_databases_pool_size{database="spark",name="spark",'
                    'pool_mode="session"}'
                ]
                == 20
            )
            active = 'pgbouncer_pools_client_active_connections{database="spark",user="spark_app"}'
            assert metrics[active] == 1
            bouncer_proc.stop()
            assert samples(exporter.scrape())["pgbouncer_up"] == 0
        finally:
            exporter_proc.stop()
        assert_stopped(pid, exporter.port)
    finally:
        bouncer_proc.stop()


def test_postgres_exporter_sees_the_database(run_dir: Path, pg: Postgres) -> None:
    proc, exporter = start_postgres_exporter(run_dir, pg)
    pid = proc.pid
    assert pid is not None
    try:
        metrics = samples(exporter.scrape())
        assert metrics["pg_up"] == 1
        assert any(name.startswith("pg_stat_activity_max_tx_duration") for name in metrics)
    finally:
        proc.stop()
    assert_stopped(pid, exporter.port)
