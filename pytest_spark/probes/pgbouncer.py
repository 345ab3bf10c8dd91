"""B3 PgBouncer: pool modes, long-running sessions, LISTEN/NOTIFY through a session pool.

The app's pool must be in transaction mode (session mode pins a server connection per client
and exhausts PostgreSQL under load), while LISTEN only works on a session pool: in transaction
mode the server connection that ran LISTEN goes back to the pool and the notifications are
lost. So the listener needs its own pool in session mode, and a real NOTIFY must arrive.

Console connections need ``autocommit=True`` and ``prepare_threshold=None`` (the console
rejects prepared statements); app connections through a transaction pool need
``prepare_threshold=None`` too (PgBouncer 1.18 cannot carry named prepared statements).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

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


@dataclass(frozen=True)
class SessionActivity:
    """A client backend from ``pg_stat_activity`` and how long it has been in its state."""

    pid: int
    state: str
    seconds: float  # active: since query_start; idle in transaction: since state_change
    user: str | None = None
    database: str | None = None
    application: str | None = None
    query: str = ""

    def describe(self) -> str:
        return (
            f"pid {self.pid} {self.state} for {self.seconds:.1f} s "
            f"(user={self.user} db={self.database} app={self.application!r}): "
            f"{' '.join(self.query.split())[:160]}"
        )


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
    with psycopg.connect(
        admin_dsn, autocommit=True, prepare_threshold=None, connect_timeout=5
    ) as conn:
        cursor = conn.execute(command)
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def default_pool_mode(show_config_rows: Iterable[Mapping[str, Any]]) -> str:
    """The global ``pool_mode`` from ``SHOW CONFIG`` (PgBouncer's own default if absent)."""
    for row in show_config_rows:
        if row.get("key") == "pool_mode" and row.get("value"):
            return str(row["value"])
    return DEFAULT_POOL_MODE


ACTIVITY_SQL = """
SELECT pid, state,
       extract(epoch FROM clock_timestamp()
               - CASE WHEN state = 'active' THEN query_start ELSE state_change END),
       usename, datname, application_name, coalesce(query, '')
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
"""


def session_activity(dsn: str) -> list[SessionActivity]:
    """Client backends that are running a query or holding a transaction open (not this one)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None, connect_timeout=5) as conn:
        rows = conn.execute(ACTIVITY_SQL).fetchall()
    return [
        SessionActivity(int(pid), str(state), float(secs or 0.0), user, db, app, str(query))
        for pid, state, secs, user, db, app, query in rows
    ]


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
    with psycopg.connect(
        listen_dsn, autocommit=True, prepare_threshold=None, connect_timeout=5
    ) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        with psycopg.connect(
            notify_dsn, autocommit=True, prepare_threshold=None, connect_timeout=5
        ) as sender:
            started = time.monotonic()
            sender.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        deadline = started + timeout
        while (left := deadline - time.monotonic()) > 0:
            for note in listener.notifies(timeout=left, stop_after=1):
                if note.channel == channel and note.payload == payload:
                    return NotifyResult(channel, True, time.monotonic() - started)
        return NotifyResult(channel, False, time.monotonic() - started)
