"""PgBouncer and PostgreSQL exporters, so alert rules use the metric names operators know.

Call::

    proc, exporter = start_pgbouncer_exporter(run_dir, bouncer)   # pgbouncer_pools_* ...
    proc, exporter = start_postgres_exporter(run_dir, pg)         # pg_up, pg_stat_activity_*
    scrape_jobs["pgbouncer"] = [exporter.address]

PostgreSQL: Debian's ``prometheus-postgres-exporter`` (0.11). PgBouncer: Debian's
``prometheus-pgbouncer-exporter`` 1.7 cannot read PgBouncer 1.18 (it wants ``SHOW STATS``'
``total_requests``, gone since PgBouncer 1.8, and exits at start), so this module carries a
small console exporter with the metric names of prometheus-community/pgbouncer_exporter:
``python -m spark_sandbox.services.exporters pgbouncer --host H --port P`` with the console
conninfo in ``SPARK_PGBOUNCER_STATS_DSN``.

Passwords reach the exporters through the environment, never the command line (``ps``).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spark_sandbox.services.pgbouncer import PgBouncer
from spark_sandbox.services.ports import free_port
from spark_sandbox.services.postgres import Postgres
from spark_sandbox.services.process import ServiceProcess

HOST = "127.0.0.1"
STATS_DSN_ENV = "SPARK_PGBOUNCER_STATS_DSN"
POSTGRES_EXPORTER_BIN = "prometheus-postgres-exporter"
HTTP_TIMEOUT = 2.0


@dataclass(frozen=True)
class Exporter:
    name: str
    host: str
    port: int
    metrics_path: str = "/metrics"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.metrics_path}"

    def scrape(self) -> str:
        """The exposition text, as Prometheus would scrape it."""
        with urllib.request.urlopen(self.url, timeout=HTTP_TIMEOUT) as response:
            return str(response.read().decode())


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment: the Debian exporters read their options from variables too
    (``PORT``, ``HOST``, ``CONFIG`` ...), so nothing is inherited but the search path."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **extra}


def exposes_metric(exporter: Exporter, metric: str) -> bool:
    return any(line.startswith(metric) for line in exporter.scrape().splitlines())


def start_pgbouncer_exporter(
    run_dir: Path, bouncer: PgBouncer, *, port: int | None = None, ready_timeout: float = 10.0
) -> tuple[ServiceProcess, Exporter]:
    """The console exporter, logged in to PgBouncer as the stats user on every scrape."""
    exporter = Exporter("pgbouncer_exporter", HOST, port or free_port(HOST))
    proc = ServiceProcess(
        exporter.name,
        [
            sys.executable,
            "-m",
            "spark_sandbox.services.exporters",
            "pgbouncer",
            "--host",
            exporter.host,
            "--port",
            str(exporter.port),
        ],
        log_path=run_dir / "logs" / "pgbouncer_exporter.log",
        ready=lambda: exposes_metric(exporter, "pgbouncer_up 1"),
        ready_timeout=ready_timeout,
        env={**os.environ, STATS_DSN_ENV: bouncer.stats_dsn()},
    )
    proc.start()
    return proc, exporter


def start_postgres_exporter(
    run_dir: Path, pg: Postgres, *, port: int | None = None, ready_timeout: float = 10.0
) -> tuple[ServiceProcess, Exporter]:
    """The exporter reads PostgreSQL's statistics views as the superuser (its DSN carries the
    password; it travels in the environment, never in argv)."""
    exporter = Exporter("postgres_exporter", HOST, port or free_port(HOST))
    dsn = f"{pg.dsn()} sslmode=disable"
    proc = ServiceProcess(
        exporter.name,
        [
            POSTGRES_EXPORTER_BIN,
            f"--web.listen-address={exporter.address}",
            "--disable-settings-metrics",
        ],
        log_path=run_dir / "logs" / "postgres_exporter.log",
        ready=lambda: exposes_metric(exporter, "pg_up 1"),
        ready_timeout=ready_timeout,
        env=base_env(DATA_SOURCE_NAME=dsn),
    )
    proc.start()
    return proc, exporter


# SHOW POOLS column -> (metric, help); names as prometheus-community/pgbouncer_exporter.
POOL_GAUGES = {
    "cl_active": ("pools_client_active_connections", "Client connections linked to a server"),
    "cl_waiting": ("pools_client_waiting_connections", "Clients waiting for a server connection"),
    "sv_active": ("pools_server_active_connections", "Server connections linked to a client"),
    "sv_idle": ("pools_server_idle_connections", "Server connections unused and usable"),
    "sv_used": ("pools_server_used_connections", "Server connections idle longer than check"),
    "sv_tested": ("pools_server_testing_connections", "Server connections being tested"),
    "sv_login": ("pools_server_login_connections", "Server connections logging in"),
    "maxwait": ("pools_client_maxwait_seconds", "Age of the oldest waiting client"),
}
# SHOW DATABASES column -> (metric, help)
DATABASE_GAUGES = {
    "pool_size": ("databases_pool_size", "Maximum server connections of the pool"),
    "current_connections": ("databases_current_connections", "Server connections now"),
    "max_connections": ("databases_max_connections", "Maximum server connections (0: none)"),
}
# SHOW STATS column -> (metric, help, scale to base units)
STATS_COUNTERS = {
    "total_xact_count": ("stats_sql_transactions_pooled", "Transactions pooled", 1.0),
    "total_query_count": ("stats_queries_pooled", "Queries pooled", 1.0),
    "total_wait_time": ("stats_client_wait_seconds", "Time clients waited for a server", 1e-6),
    "total_query_time": ("stats_queries_duration_seconds", "Time spent on queries", 1e-6),
}


class PgBouncerConsoleCollector:
    """Reads PgBouncer's console on each scrape; ``pgbouncer_up`` is 0 when it cannot."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def describe(self) -> list[Any]:
        return []  # collected lazily: registration must not need a live PgBouncer

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("pgbouncer_up", "PgBouncer console answered the scrape")
        try:
            pools, databases, stats = self.read_console()
        except Exception as exc:  # a scrape must answer even when PgBouncer is gone
            print(f"pgbouncer console unreachable: {exc}", file=sys.stderr, flush=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for column, (name, doc) in POOL_GAUGES.items():
            gauge = GaugeMetricFamily(f"pgbouncer_{name}", doc, labels=["database", "user"])
            for row in pools:
                gauge.add_metric([row["database"], row["user"]], float(row.get(column) or 0))
            yield gauge
        labels = ["name", "database", "pool_mode"]
        for column, (name, doc) in DATABASE_GAUGES.items():
            gauge = GaugeMetricFamily(f"pgbouncer_{name}", doc, labels=labels)
            for row in databases:
                values = [row["name"], row["database"] or "", row["pool_mode"] or ""]
                gauge.add_metric(values, float(row.get(column) or 0))
            yield gauge
        for column, (name, doc, scale) in STATS_COUNTERS.items():
            counter = CounterMetricFamily(f"pgbouncer_{name}", doc, labels=["database"])
            for row in stats:
                counter.add_metric([row["database"]], float(row.get(column) or 0) * scale)
            yield counter

    def read_console(self) -> tuple[list[dict[str, Any]], ...]:
        import psycopg
        from psycopg.rows import dict_row

        # The console has no transactions and rejects prepared statements.
        with psycopg.connect(
            self.dsn,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=2,
            row_factory=dict_row,
        ) as conn:
            return tuple(
                conn.execute(f"SHOW {what}").fetchall() for what in ("POOLS", "DATABASES", "STATS")
            )


def serve_pgbouncer_metrics(host: str, port: int, dsn: str) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import MetricsHandler

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PgBouncerConsoleCollector(dsn))
    server = ThreadingHTTPServer((host, port), MetricsHandler.factory(registry))
    server.daemon_threads = True
    print(f"pgbouncer exporter on http://{host}:{port}/metrics", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_sandbox.services.exporters")
    commands = parser.add_subparsers(dest="command", required=True)
    pgbouncer = commands.add_parser("pgbouncer", help="export PgBouncer's console")
    pgbouncer.add_argument("--host", default=HOST)
    pgbouncer.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    dsn = os.environ.get(STATS_DSN_ENV)
    if not dsn:
        parser.error(f"set {STATS_DSN_ENV} to the PgBouncer console conninfo (dbname=pgbouncer)")
    serve_pgbouncer_metrics(args.host, args.port, dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
