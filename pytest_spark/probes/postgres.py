"""Every read the checks make of the target's PostgreSQL, and how they connect.

Connection settings live here only: autocommit (a read never leaves a transaction open on the
target), ``prepare_threshold=None`` (PgBouncer's transaction pool and its admin console cannot
carry named prepared statements), a connect timeout, and a statement timeout on every session
of :class:`Postgres` so that a read blocked on a lock fails instead of hanging the gate.

The rows come back as the types the pure graders take (:class:`clock.SequenceRow`,
:class:`migrations.MigrationRow`, :class:`orders.Fill`, ...). Not imported by the plugin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from pytest_spark.probes import clock, migrations, orders, outbox, pacts, pitr

CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 10.0


def connect(dsn: str, timeout_s: float = CONNECT_TIMEOUT_S) -> psycopg.Connection[Any]:
    """A connection with the settings every probe uses (see the module's docstring)."""
    return psycopg.connect(
        dsn, autocommit=True, prepare_threshold=None, connect_timeout=max(1, round(timeout_s))
    )


@dataclass(frozen=True)
class BookedOrder:
    id: int
    symbol: str
    side: str
    quantity: int
    price: Decimal
    commission: Decimal


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


SEQUENCES_SQL = """
SELECT n.nspname, c.relname, tn.nspname, t.relname, a.attname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY n.nspname, c.relname
"""

ACTIVITY_SQL = """
SELECT pid, state,
       extract(epoch FROM clock_timestamp()
               - CASE WHEN state = 'active' THEN query_start ELSE state_change END),
       usename, datname, application_name, coalesce(query, '')
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
"""

COLUMNS_SQL = """
SELECT c.table_schema, c.table_name, c.column_name, c.data_type
FROM information_schema.columns c JOIN information_schema.tables t
USING (table_schema, table_name)
WHERE t.table_type = 'BASE TABLE'
  AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
  AND c.table_schema NOT LIKE 'pg_toast%%'
ORDER BY 1, 2, c.ordinal_position
"""


class Postgres:
    """``with Postgres(dsn) as db: db.sequences()``: one session for a check's reads."""

    def __init__(
        self,
        dsn: str,
        timeout_s: float = CONNECT_TIMEOUT_S,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        self.conn = connect(dsn, timeout_s)
        self.conn.execute(
            sql.SQL("SET statement_timeout = {}").format(int(statement_timeout_s * 1000))
        )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _rows(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()

    # --- B1: time and sequences -----------------------------------------------------------

    def clock_samples(self, samples: int) -> list[clock.ClockSample]:
        """The database's clock from ``clock_timestamp()`` (``now()`` is frozen per
        transaction), each reading bracketed by this host's clock."""
        self.conn.execute("SELECT 1")  # the first round trip pays for catalog lookups

        def read() -> float:
            row = self.conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
            if row is None:
                raise clock.ClockProbeError("SELECT clock_timestamp() returned no row")
            return float(row[0])

        return clock.sample_remote_clock("database", read, samples)

    def sequences(self) -> list[clock.SequenceRow]:
        """Every user sequence, its state and the max of the column that owns it.

        The owning column comes from ``pg_depend`` (``OWNED BY``/serial: 'a', identity: 'i'),
        as ``pg_get_serial_sequence`` finds it; the state is read from the sequence itself.
        """
        rows: list[clock.SequenceRow] = []
        for seq_schema, seq_name, tab_schema, table, column in self._rows(SEQUENCES_SQL):
            state = self.conn.execute(
                sql.SQL(
                    "SELECT s.last_value, s.is_called, p.increment_by, p.min_value, p.max_value "
                    "FROM {} s, pg_sequences p WHERE p.schemaname = %s AND p.sequencename = %s"
                ).format(sql.Identifier(seq_schema, seq_name)),
                (seq_schema, seq_name),
            ).fetchone()
            if state is None:
                continue
            max_id = owner = None
            if table is not None and column is not None:
                owner = f"{tab_schema}.{table}.{column}"
                top = self.conn.execute(
                    sql.SQL("SELECT max({}) FROM {}").format(
                        sql.Identifier(column), sql.Identifier(tab_schema, table)
                    )
                ).fetchone()
                max_id = int(top[0]) if top is not None and top[0] is not None else None
            last_value, is_called, increment, min_value, max_value = state
            rows.append(
                clock.SequenceRow(
                    sequence=f"{seq_schema}.{seq_name}",
                    owner=owner,
                    last_value=int(last_value),
                    is_called=bool(is_called),
                    increment=int(increment),
                    min_value=int(min_value),
                    max_value=int(max_value),
                    max_id=max_id,
                )
            )
        return rows

    # --- B2: Prisma Migrate ---------------------------------------------------------------

    def migration_rows(self) -> list[migrations.MigrationRow]:
        """Every row of ``_prisma_migrations``; a database without it is an error naming it."""
        exists = self.conn.execute(
            "SELECT to_regclass('_prisma_migrations') IS NOT NULL"
        ).fetchone()
        if exists is None or not exists[0]:
            raise LookupError(
                "the database has no _prisma_migrations table: it is not managed by Prisma "
                "Migrate (or postgres_dsn points at another database)"
            )
        rows = self._rows(
            "SELECT migration_name, checksum, started_at, finished_at, rolled_back_at, logs "
            "FROM _prisma_migrations ORDER BY started_at, migration_name"
        )
        return [migrations.MigrationRow(*row) for row in rows]

    # --- B3: sessions ---------------------------------------------------------------------

    def session_activity(self) -> list[SessionActivity]:
        """Client backends running a query or holding a transaction open (not this one)."""
        return [
            SessionActivity(int(pid), str(state), float(secs or 0.0), user, db, app, str(query))
            for pid, state, secs, user, db, app, query in self._rows(ACTIVITY_SQL)
        ]

    # --- G04: WAL archiving and base backups ---------------------------------------------

    def archiver(self) -> pitr.ArchiverState:
        """``pg_stat_archiver`` with ages measured on the database's own clock."""
        row = self.conn.execute(
            "SELECT archived_count, last_archived_wal,"
            " extract(epoch FROM clock_timestamp() - last_archived_time),"
            " failed_count, last_failed_wal,"
            " extract(epoch FROM clock_timestamp() - last_failed_time),"
            " extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()),"
            " current_setting('archive_mode')"
            " FROM pg_stat_archiver"
        ).fetchone()
        if row is None:
            raise LookupError("pg_stat_archiver returned no row")
        archived, last_wal, age, failed, failed_wal, failed_age, uptime, mode = row
        return pitr.ArchiverState(
            archived_count=int(archived),
            last_archived_wal=last_wal,
            last_archived_age_s=None if age is None else float(age),
            failed_count=int(failed),
            last_failed_wal=failed_wal,
            last_failed_age_s=None if failed_age is None else float(failed_age),
            uptime_s=float(uptime),
            archive_mode=str(mode),
        )

    def switch_wal(self) -> str:
        """Write a WAL record and close the current segment; the closed segment's file name.
        The record makes sure there is something to switch away from (an idle server's
        pg_switch_wal() would switch nothing)."""
        self.conn.execute("SELECT pg_logical_emit_message(false, 'spark-gate', 'G04 switch')")
        row = self.conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        if row is None:
            raise LookupError("pg_switch_wal() returned no row")
        return str(row[0])

    def timeline(self) -> int:
        """The timeline the server writes WAL on (the first 8 hex digits of its WAL file)."""
        row = self.conn.execute(
            "SELECT CASE WHEN pg_is_in_recovery() THEN NULL"
            " ELSE pg_walfile_name(pg_current_wal_lsn()) END"
        ).fetchone()
        if row is None or row[0] is None:
            raise LookupError("the server is in recovery: it writes no WAL of its own")
        return int(str(row[0])[:8], 16)

    def base_backups(self) -> list[pitr.BackupHistory]:
        """The backup history files in ``pg_wal`` (one per finished base backup, kept until
        the next one), with their age on the database's clock."""
        rows = self._rows(
            "SELECT name, extract(epoch FROM clock_timestamp() - modification)"
            " FROM pg_ls_waldir() WHERE name LIKE '%%.backup' ORDER BY modification DESC"
        )
        return [pitr.BackupHistory(str(name), float(age)) for name, age in rows]

    def now(self) -> str:
        """The database's clock as text with its UTC offset (what a recovery target takes)."""
        row = self.conn.execute(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC',"
            " 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
        ).fetchone()
        if row is None:
            raise LookupError("SELECT clock_timestamp() returned no row")
        return str(row[0])

    # --- orders, positions, fills, the outbox (M3, M4, G03, K2) -----------------------------

    def booked_orders(self, account_id: str) -> list[BookedOrder]:
        rows = self._rows(
            "SELECT id, symbol, side, quantity, price, commission FROM orders"
            " WHERE account_id = %s ORDER BY id",
            (account_id,),
        )
        return [BookedOrder(*row) for row in rows]

    def order_amounts(self, order_id: int) -> tuple[str, str] | None:
        """``(price, commission)`` of one order as the database renders the numerics."""
        row = self.conn.execute(
            "SELECT price::text, commission::text FROM orders WHERE id = %s", (order_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def booked_fills(self, account_id: str) -> list[orders.Fill]:
        rows = self._rows(
            "SELECT symbol, side, quantity, price, commission FROM fills"
            " WHERE account_id = %s ORDER BY id",
            (account_id,),
        )
        return [orders.Fill(*row) for row in rows]

    def open_position_rows(self, account_id: str) -> list[tuple[str, int]]:
        """``(symbol, quantity)`` of every open position row of the account (duplicates
        kept: two rows for one symbol is the defect the partial unique index prevents)."""
        rows = self._rows(
            "SELECT symbol, quantity FROM positions"
            " WHERE account_id = %s AND status = 'open' ORDER BY id",
            (account_id,),
        )
        return [(str(symbol), int(quantity)) for symbol, quantity in rows]

    def position_amounts(self, account_id: str) -> dict[str, tuple[str, str]]:
        """Open positions' ``(average_price, realised_pnl)`` as the database renders them."""
        rows = self._rows(
            "SELECT symbol, average_price::text, realised_pnl::text FROM positions"
            " WHERE account_id = %s AND status = 'open'",
            (account_id,),
        )
        return {str(symbol): (str(avg), str(pnl)) for symbol, avg, pnl in rows}

    def outbox_events_per_order(self, order_ids: Sequence[int]) -> dict[int, int]:
        """``order.accepted`` events in ``outbox_events`` per order id (0 for none)."""
        rows = self._rows(
            "SELECT aggregate_id, count(*) FROM outbox_events"
            " WHERE event_type = 'order.accepted' AND aggregate_id = ANY(%s)"
            " GROUP BY aggregate_id",
            (list(order_ids),),
        )
        counts = {int(order_id): 0 for order_id in order_ids}
        counts.update({int(order_id): int(n) for order_id, n in rows})
        return counts

    def outbox_event(self, order_id: int) -> pacts.OutboxRow:
        """The ``order.accepted`` outbox row of ``order_id``; it is written in the order's own
        transaction, so it exists as soon as the API has answered 201."""
        row = self.conn.execute(
            "SELECT event_id::text, event_type, aggregate_id, created_at, payload::text"
            " FROM outbox_events WHERE aggregate_id = %s AND event_type = 'order.accepted'"
            " ORDER BY id DESC LIMIT 1",
            (order_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"no order.accepted outbox event for order {order_id}")
        return pacts.OutboxRow(*row)

    # --- the catalog (M3, G03) ------------------------------------------------------------

    def application_columns(self) -> list[orders.Column]:
        """Every column of the application's tables (system schemas left out)."""
        return [orders.Column(*row) for row in self._rows(COLUMNS_SQL)]

    def position_indexes(self) -> list[str]:
        """``pg_indexes.indexdef`` of every index on ``positions``."""
        rows = self._rows(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'positions' ORDER BY indexname"
        )
        return [str(row[0]) for row in rows]

    def second_open_position_error(self, account_id: str, symbol: str) -> str | None:
        """Insert two open positions for one account and symbol in a transaction that is
        always rolled back; the SQLSTATE and message of the second insert's refusal, or None
        when both went in."""
        try:
            with self.conn.transaction(force_rollback=True):
                for _ in range(2):
                    self.conn.execute(
                        "INSERT INTO positions (account_id, symbol, status)"
                        " VALUES (%s, %s, 'open')",
                        (account_id, symbol),
                    )
        except psycopg.errors.UniqueViolation as exc:
            return f"{exc.sqlstate} unique_violation: {' '.join(str(exc).split())}"
        return None

    # --- G09: the outbox end to end ---------------------------------------------------------

    def outbox_delivery(self, order_id: int) -> outbox.EventDelivery | None:
        """The ``order.accepted`` event of ``order_id`` as the outbox and the consumer saw
        it; None when the order has no event."""
        row = self.conn.execute(outbox.DELIVERY_SQL, (order_id,)).fetchone()
        return None if row is None else outbox.EventDelivery(order_id, *row)

    def outbox_pending(self) -> int:
        """Outbox events not yet published (chaos steady state: none)."""
        row = self.conn.execute(
            "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def orders_per_key(self, keys: Sequence[str]) -> dict[str, int]:
        """Orders booked under each Idempotency-Key (0 for none)."""
        rows = self._rows(
            "SELECT idempotency_key, count(*) FROM orders WHERE idempotency_key = ANY(%s)"
            " GROUP BY idempotency_key",
            (list(keys),),
        )
        counts = dict.fromkeys(keys, 0)
        counts.update({str(key): int(n) for key, n in rows})
        return counts

    def outbox_window(
        self, window_s: float, stuck_after_s: float, stuck_after_attempts: int
    ) -> outbox.OutboxWindow:
        """Events created in the last ``window_s`` s (database clock), and every stuck event
        of the whole table: a stuck event is older than any window worth reading."""
        window = {"window": window_s}
        row = self.conn.execute(outbox.WINDOW_SQL, window).fetchone()
        events, published, lag = row if row is not None else (0, 0, None)
        stuck = self._rows(
            outbox.STUCK_SQL, {"after": stuck_after_s, "attempts": stuck_after_attempts}
        )
        missing = self._rows(outbox.MISSING_SQL, window)
        twice = self._rows(outbox.APPLIED_TWICE_SQL, window)
        return outbox.OutboxWindow(
            window_s=window_s,
            events=int(events),
            published=int(published),
            lag_p99_s=None if lag is None else float(lag),
            stuck=tuple(
                outbox.StuckEvent(str(e), int(a), str(t), int(n), float(age))
                for e, a, t, n, age in stuck
            ),
            missing=tuple(str(e) for (e,) in missing),
            applied_twice=tuple((int(o), int(n)) for o, n in twice),
        )
