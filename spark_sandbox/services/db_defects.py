"""The ``db`` layer defects' work: each breaks one database property that the gate checks.

The entries of :mod:`spark_sandbox.defects` name these functions; a sandbox start runs them
through its blueprint. Alone, right after :func:`start_postgres`::

    applied = migrate_with_defects(pg.app_dsn(), MIGRATIONS_DIR, defect_names)
    idle = start_long_running_query(run_dir, bouncer.dsn("spark"))
    ...
    idle.stop()

- ``pending_migration``: the newest migration is never applied (migrator's ``skip_last``).
- ``modified_migration``: the oldest applied row's stored checksum no longer matches its file.
- ``failed_migration``: the newest applied row is started but neither finished nor rolled back.
- ``sequence_behind``: ``orders_id_seq`` is set below ``max(orders.id)``.
- ``long_running_query``: a child process sits *idle in transaction* until stopped (or its
  maximum lifetime); its start returns once ``pg_stat_activity`` has shown it idle for
  ``min_idle_seconds`` (10 s by default), so a check run right after sees it.

Run as a module, this file is that child: ``python -m spark_sandbox.services.db_defects
idle-in-transaction --max-lifetime 900`` with the conninfo in ``SPARK_IDLE_DSN`` (the
environment, so the password never shows in ``ps``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Collection
from pathlib import Path

from spark_sandbox.services.migrate import apply_migrations, migration_checksum
from spark_sandbox.services.process import ServiceProcess

IDLE_MARKER = "spark_long_running_query"
IDLE_DSN_ENV = "SPARK_IDLE_DSN"
# Explicit ids far above anything a sandbox run inserts through the sequence, so the app's own
# orders (ids 2, 3, ...) never collide with them: only the sequence check sees the defect.
BEHIND_ORDER_IDS = (1001, 1002, 1003)
BEHIND_ACCOUNT = "spark-sequence-defect"


def migrate_with_defects(dsn: str, migrations_dir: Path, defects: Collection[str]) -> list[str]:
    """Migrate, then break the migration history and sequences as the named defects ask
    (unknown names are a ValueError, other layers' defects change nothing here)."""
    from spark_sandbox.defects import Blueprint

    blueprint = Blueprint.of(defects)
    applied = apply_migrations(dsn, migrations_dir, skip_last=blueprint.skip_last_migration)
    for change in blueprint.after_migrate:
        change(dsn)
    return applied


def modify_applied_migration(dsn: str) -> str:
    """Store a different checksum for the oldest applied migration; return its name."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(
            "SELECT id, migration_name, checksum FROM _prisma_migrations "
            "WHERE finished_at IS NOT NULL ORDER BY migration_name LIMIT 1"
        ).fetchone()
        if row is None:
            raise RuntimeError("modified_migration: no applied migration to modify")
        row_id, name, checksum = row
        # The checksum of an edited file: as if a line was added after the deploy.
        edited = migration_checksum(f"{checksum}\n-- edited after it was applied\n".encode())
        conn.execute("UPDATE _prisma_migrations SET checksum = %s WHERE id = %s", (edited, row_id))
    return str(name)


def fail_applied_migration(dsn: str) -> str:
    """Put the newest applied migration in Prisma's failed state; return its name."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(
            "UPDATE _prisma_migrations SET finished_at = NULL, rolled_back_at = NULL, "
            "applied_steps_count = 0, logs = %s "
            "WHERE id = (SELECT id FROM _prisma_migrations WHERE finished_at IS NOT NULL "
            "ORDER BY migration_name DESC LIMIT 1) RETURNING migration_name",
            ("Database error: canceling statement due to statement timeout (sandbox defect)",),
        ).fetchone()
    if row is None:
        raise RuntimeError("failed_migration: no applied migration to mark failed")
    return str(row[0])


def set_orders_sequence_behind(dsn: str) -> None:
    """Insert orders with explicit ids, then set ``orders_id_seq`` below their max."""
    import psycopg

    with psycopg.connect(dsn, prepare_threshold=None) as conn:
        instrument = conn.execute(
            "SELECT symbol, base_price FROM instruments ORDER BY symbol LIMIT 1"
        ).fetchone()
        if instrument is None:
            raise RuntimeError("sequence_behind: the instruments table is empty")
        symbol, price = instrument
        for order_id in BEHIND_ORDER_IDS:
            conn.execute(
                "INSERT INTO orders (id, account_id, symbol, side, quantity, price, commission, "
                "status) VALUES (%s, %s, %s, 'buy', 1, %s, 0, 'cancelled')",
                (order_id, BEHIND_ACCOUNT, symbol, price),
            )
        conn.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), 1, true)")


def idle_in_transaction_seconds(dsn: str) -> float:
    """How long the defect's session has been idle in transaction (0 when it is not)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None, connect_timeout=2) as conn:
        row = conn.execute(
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - state_change)), 0) "
            "FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE %s",
            (f"%/* {IDLE_MARKER} */%",),
        ).fetchone()
    return float(row[0]) if row else 0.0


def start_long_running_query(
    run_dir: Path,
    dsn: str,
    *,
    observer_dsn: str | None = None,
    min_idle_seconds: float = 10.0,
    max_lifetime: float = 900.0,
) -> ServiceProcess:
    """Start the idle-in-transaction session and wait until it has been idle long enough."""
    observer = observer_dsn or dsn
    started = time.monotonic()

    def idle_long_enough() -> bool:
        # Not worth a connection before the minimum idle time can possibly have passed.
        if time.monotonic() - started < min_idle_seconds:
            return False
        return idle_in_transaction_seconds(observer) >= min_idle_seconds

    proc = ServiceProcess(
        "long_running_query",
        [
            sys.executable,
            "-m",
            "spark_sandbox.services.db_defects",
            "idle-in-transaction",
            "--max-lifetime",
            str(max_lifetime),
        ],
        log_path=run_dir / "logs" / "long_running_query.log",
        ready=idle_long_enough,
        ready_timeout=min_idle_seconds + 15.0,
        env={**os.environ, IDLE_DSN_ENV: dsn},
    )
    proc.start()
    return proc


def hold_idle_transaction(dsn: str, max_lifetime: float) -> None:
    """Open a transaction, run one query, then do nothing until the lifetime is over."""
    import psycopg

    deadline = time.monotonic() + max_lifetime
    with psycopg.connect(dsn, prepare_threshold=None, application_name=IDLE_MARKER) as conn:
        conn.execute(f"SELECT 1 /* {IDLE_MARKER} */")  # opens the transaction, never commits
        print(f"idle in transaction for at most {max_lifetime:.0f} s", flush=True)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
        conn.rollback()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_sandbox.services.db_defects")
    commands = parser.add_subparsers(dest="command", required=True)
    idle = commands.add_parser("idle-in-transaction", help="the long_running_query session")
    idle.add_argument("--max-lifetime", type=float, default=900.0, help="seconds before exiting")
    args = parser.parse_args(argv)
    dsn = os.environ.get(IDLE_DSN_ENV)
    if not dsn:
        parser.error(f"set {IDLE_DSN_ENV} to the conninfo of the session to hold open")
    hold_idle_transaction(dsn, args.max_lifetime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
