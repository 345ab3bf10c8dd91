"""B3 PgBouncer: pool modes, long-running sessions, LISTEN/NOTIFY through a session pool.

The app's pool must be in transaction mode (session mode pins a server connection per client
and exhausts PostgreSQL under load), while LISTEN only works on a session pool: in transaction
mode the server connection that ran LISTEN goes back to the pool and the notifications are
lost. So the listener needs its own pool in session mode, and a real NOTIFY must arrive.

Connections (the admin console's included) are made by :func:`postgres.connect`, whose
settings both the console and a transaction pool need; ``pg_stat_activity`` is read there too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pytest_spark.probes.postgres import SessionActivity, connect
from pytest_spark.probes.waiting import wait_until

DEFAULT_POOL_MODE = "session"  # PgBouncer's default when neither the db nor [pgbouncer] set one
TRANSACTION, SESSION = "transaction", "session"
IDLE_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)")


# --- pool modes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolModeFinding:
    role: str  # "app" or "listen"
    pool: str
    expected: str
    actual: str | None  # None: the pool is not in SHOW DATABASES

    def describe(self) -> str:
        if self.actual is None:
            return f"{self.role} pool {self.pool!r} is not in SHOW DATABASES"
        return (
            f"{self.role} pool {self.pool!r} runs pool_mode={self.actual}, expected {self.expected}"
        )


def dbname_of(dsn: str) -> str:
    """The database (PgBouncer pool) a conninfo string or URL connects to."""
    name = conninfo_to_dict(dsn).get("dbname")
    if not name:
        raise ValueError("the DSN names no dbname: PgBouncer would pick the user name")
    return str(name)


def effective_pool_mode(row: Mapping[str, Any], default_mode: str) -> str:
    """``SHOW DATABASES.pool_mode`` is NULL (or empty) when the global default applies."""
    mode = row.get("pool_mode")
    return str(mode) if mode else default_mode


def pool_mode_findings(
    show_databases_rows: Iterable[Mapping[str, Any]],
    app_db: str,
    listen_db: str,
    default_mode: str = DEFAULT_POOL_MODE,
) -> list[PoolModeFinding]:
    """The app pool must run in transaction mode and the LISTEN pool in session mode."""
    modes = {str(r["name"]): effective_pool_mode(r, default_mode) for r in show_databases_rows}
    findings = []
    for role, pool, expected in (("app", app_db, TRANSACTION), ("listen", listen_db, SESSION)):
        actual = modes.get(pool)
        if actual != expected:
            findings.append(PoolModeFinding(role, pool, expected, actual))
    return findings


# --- long-running sessions -------------------------------------------------------------------


def long_running(
    rows: Iterable[SessionActivity], active_s: float, idle_tx_s: float
) -> list[SessionActivity]:
    """Sessions active for more than ``active_s`` or idle in transaction more than ``idle_tx_s``."""
    return [
        r
        for r in rows
        if (r.state == "active" and r.seconds > active_s)
        or (r.state in IDLE_IN_TRANSACTION and r.seconds > idle_tx_s)
    ]


def longest(rows: Iterable[SessionActivity], states: Sequence[str]) -> float:
    """The longest time any session has spent in one of ``states`` (0 when none is)."""
    return max((r.seconds for r in rows if r.state in states), default=0.0)


# --- I/O -------------------------------------------------------------------------------------


def console_rows(admin_dsn: str, command: str) -> list[dict[str, Any]]:
    """A ``SHOW`` command on the PgBouncer admin console, as dicts keyed by column name."""
    if not command.upper().startswith("SHOW "):
        raise ValueError(f"only SHOW commands are read from the console, not {command!r}")
    with connect(admin_dsn) as conn:
        cursor = conn.execute(command)
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def default_pool_mode(show_config_rows: Iterable[Mapping[str, Any]]) -> str:
    """The global ``pool_mode`` from ``SHOW CONFIG`` (PgBouncer's own default if absent)."""
    for row in show_config_rows:
        if row.get("key") == "pool_mode" and row.get("value"):
            return str(row["value"])
    return DEFAULT_POOL_MODE


@dataclass(frozen=True)
class NotifyResult:
    channel: str
    received: bool
    seconds: float  # until it arrived, or the whole wait when it did not


def notify_round_trip(listen_dsn: str, notify_dsn: str, timeout: float = 5.0) -> NotifyResult:
    """LISTEN on a fresh channel through ``listen_dsn``, NOTIFY through ``notify_dsn``, and wait
    at most ``timeout`` seconds for that very payload to arrive."""
    channel = f"spark_gate_{uuid.uuid4().hex[:16]}"
    payload = uuid.uuid4().hex
    with connect(listen_dsn) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        with connect(notify_dsn) as sender:
            sender.execute("SELECT pg_notify(%s, %s)", (channel, payload))

        def arrived(left: float) -> bool:
            return left > 0 and any(
                note.channel == channel and note.payload == payload
                for note in listener.notifies(timeout=left, stop_after=1)
            )

        waited = wait_until(
            timeout, f"NOTIFY {channel} through the listen pool", arrived, pause_s=0
        )
    return NotifyResult(channel, waited.done, waited.seconds)
