"""Shared pieces of the outbox and feed tests: the database handle, the children, waits."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from spark_sandbox.services.pgbouncer import APP_POOL, LISTEN_POOL, PgBouncer
from spark_sandbox.services.ports import free_port, is_listening
from spark_sandbox.services.postgres import (
    Postgres,
)
from spark_sandbox.services.process import ServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
WAIT_SECONDS = 20.0


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s (last observation: {last!r})")


@dataclass
class OutboxDatabase:
    pg: Postgres
    bouncer: PgBouncer
    run_dir: Path

    @property
    def app_dsn(self) -> str:
        return self.bouncer.dsn(APP_POOL)

    @property
    def listen_dsn(self) -> str:
        return self.bouncer.dsn(LISTEN_POOL)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read straight from PostgreSQL as the superuser (sees every session's activity)."""
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.query(sql, params)[0][0]


def place_orders(db: OutboxDatabase, count: int, *, account: str = "acc-1") -> list[str]:
    """Insert orders as the API does: order + ``order.accepted`` outbox row + NOTIFY, one
    transaction each, through PgBouncer's transaction pool. Returns the event ids."""
    event_ids = []
    with psycopg.connect(db.app_dsn, autocommit=True, prepare_threshold=None) as conn:
        for n in range(count):
            event_id = str(uuid.uuid4())
            with conn.transaction():
                order_id = conn.execute(
                    "INSERT INTO orders (account_id, symbol, side, quantity, price, commission,"
                    " status) VALUES (%s, 'THYAO', 'buy', %s, 285.25, 0.11, 'accepted')"
                    " RETURNING id",
                    (account, n + 1),
                ).fetchone()[0]  # type: ignore[index]
                payload = {
                    "order_id": order_id,
                    "account_id": account,
                    "symbol": "THYAO",
                    "side": "buy",
                    "quantity": n + 1,
                    "price": "285.25",
                }
                outbox_id = conn.execute(
                    "INSERT INTO outbox_events (event_id, aggregate_id, event_type, payload)"
                    " VALUES (%s, %s, 'order.accepted', %s) RETURNING id",
                    (event_id, order_id, json.dumps(payload)),
                ).fetchone()[0]  # type: ignore[index]
                conn.execute("SELECT pg_notify('outbox_events', %s)", (str(outbox_id),))
            event_ids.append(event_id)
    return event_ids


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
    env.update(extra)
    return env


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200


@dataclass
class Services:
    """Children started by one test; every one is stopped in the fixture's teardown."""

    db: OutboxDatabase | None
    log_dir: Path
    started: list[ServiceProcess] = field(default_factory=list)

    def run(self, proc: ServiceProcess) -> ServiceProcess:
        self.started.append(proc)
        proc.start()
        return proc

    def database(self) -> OutboxDatabase:
        if self.db is None:
            raise RuntimeError("these children were created without a database")
        return self.db

    def consumer(self, port: int | None = None) -> tuple[ServiceProcess, str]:
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        proc = ServiceProcess(
            f"outbox-consumer-{port}",
            [sys.executable, "-m", "spark_sandbox.app.consumer", "--port", str(port)],
            log_path=self.log_dir / f"consumer-{port}.log",
            ready=lambda: http_ok(url + "/health"),
            env=base_env(SPARK_CONSUMER_DSN=self.database().app_dsn),
            cwd=REPO_ROOT,
        )
        return self.run(proc), url

    def publisher(self, consumer_url: str, defects: str = "") -> tuple[ServiceProcess, str]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = ServiceProcess(
            f"outbox-publisher-{port}",
            [sys.executable, "-m", "spark_sandbox.app.outbox", "--metrics-port", str(port)],
            log_path=self.log_dir / f"publisher-{port}.log",
            ready=lambda: http_ok(url + "/health"),
            env=base_env(
                SPARK_APP_DSN=self.database().app_dsn,
                SPARK_LISTEN_DSN=self.database().listen_dsn,
                SPARK_CONSUMER_URL=consumer_url,
                SPARK_DEFECTS=defects,
            ),
            cwd=REPO_ROOT,
        )
        return self.run(proc), url

    def feed(self, *extra_args: str) -> tuple[ServiceProcess, int]:
        port = free_port()
        proc = ServiceProcess(
            f"market-data-feed-{port}",
            [sys.executable, "-m", "spark_sandbox.app.feed", "--port", str(port), *extra_args],
            log_path=self.log_dir / f"feed-{port}.log",
            ready=lambda: is_listening(port),
            env=base_env(),
            cwd=REPO_ROOT,
        )
        return self.run(proc), port

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def metric_value(metrics_text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text format (0 when absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def scrape(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=2.0, trust_env=False).text
