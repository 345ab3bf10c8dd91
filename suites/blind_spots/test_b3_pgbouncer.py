"""B3 PgBouncer: transaction pool for the app, session pool for LISTEN, no long sessions."""

from __future__ import annotations

import pytest

from pytest_spark import CheckEvidence, Reach, Target
from pytest_spark.probes import pgbouncer
from pytest_spark.probes.postgres import Postgres, SessionActivity
from suites.limits import Limits

pytestmark = pytest.mark.blind_spot("B3")


def _pool_findings(
    spark_target: Target, reach: Reach, spark_evidence: CheckEvidence, role: str
) -> list[str]:
    app_db = pgbouncer.dbname_of(spark_target.require("app_dsn"))
    listen_db = pgbouncer.dbname_of(spark_target.require("listen_dsn"))
    with reach("pgbouncer_admin_dsn") as [admin_dsn]:
        databases = pgbouncer.console_rows(admin_dsn, "SHOW DATABASES")
        default = pgbouncer.default_pool_mode(pgbouncer.console_rows(admin_dsn, "SHOW CONFIG"))
    spark_evidence.note(
        f"app pool {app_db!r}, listen pool {listen_db!r}, default pool_mode {default}; "
        "SHOW DATABASES: "
        + "; ".join(
            f"{r.get('name')} -> {r.get('database')} pool_mode={r.get('pool_mode')}"
            for r in databases
        )
    )
    findings = pgbouncer.pool_mode_findings(databases, app_db, listen_db, default)
    return [f.describe() for f in findings if f.role == role]


def test_app_pool_is_transaction_mode(
    spark_target: Target, reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    found = _pool_findings(spark_target, reach, spark_evidence, "app")
    spark_evidence.check(
        "app_pool_mode_findings",
        len(found),
        limit=limits.b3.app_pool_mode_findings,
        why=f"{'; '.join(found)}: session pooling pins one server connection per client and "
        "exhausts PostgreSQL under load; set pool_mode=transaction on the app's entry in "
        "[databases] of pgbouncer.ini",
    )


def test_listen_pool_is_session_mode(
    spark_target: Target, reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    found = _pool_findings(spark_target, reach, spark_evidence, "listen")
    spark_evidence.check(
        "listen_pool_mode_findings",
        len(found),
        limit=limits.b3.listen_pool_mode_findings,
        why=f"{'; '.join(found)}: LISTEN on a transaction pool loses notifications; give the "
        "listener its own [databases] entry with pool_mode=session and point listen_dsn at it",
    )


def _activity(reach: Reach, spark_evidence: CheckEvidence) -> list[SessionActivity]:
    with reach("postgres_dsn") as [dsn], Postgres(dsn) as db:
        sessions = db.session_activity()
    spark_evidence.note(
        "pg_stat_activity (active / idle in transaction, this check excluded): "
        + ("; ".join(s.describe() for s in sessions) or "none")
    )
    return sessions


def test_no_long_running_query(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    limit = limits.b3.active_query_s
    sessions = _activity(reach, spark_evidence)
    slow = pgbouncer.long_running(sessions, active_s=limit, idle_tx_s=float("inf"))
    spark_evidence.check(
        "longest_active_query_s",
        pgbouncer.longest(sessions, ("active",)),
        limit=limit,
        unit="s",
        why=f"{len(slow)} queries active for more than {limit:g} s hold a pooled server "
        "connection each: "
        + "; ".join(s.describe() for s in slow)
        + " (look for missing indexes or lock waits; statement_timeout bounds them)",
    )


def test_no_long_idle_transaction(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    limit = limits.b3.idle_in_transaction_s
    sessions = _activity(reach, spark_evidence)
    idle = pgbouncer.long_running(sessions, active_s=float("inf"), idle_tx_s=limit)
    spark_evidence.check(
        "longest_idle_in_transaction_s",
        pgbouncer.longest(sessions, pgbouncer.IDLE_IN_TRANSACTION),
        limit=limit,
        unit="s",
        why=f"{len(idle)} sessions idle in transaction for more than {limit:g} s: "
        + "; ".join(s.describe() for s in idle)
        + " (they hold locks and a pooled server connection; set "
        "idle_in_transaction_session_timeout and find the code path that never commits)",
    )


def test_notify_round_trip_through_listen_pool(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    limit = limits.b3.notify_round_trip_s
    with reach("listen_dsn", "app_dsn") as [listen_dsn, notify_dsn]:
        result = pgbouncer.notify_round_trip(listen_dsn, notify_dsn, timeout=limit)
    spark_evidence.note(
        f"LISTEN {result.channel} via listen_dsn, NOTIFY via app_dsn: "
        + (f"arrived after {result.seconds:.3f} s" if result.received else "never arrived")
    )
    spark_evidence.check(
        "notify_round_trip_s",
        result.seconds if result.received else float(limit),
        limit=limit,
        unit="s",
        why=f"a NOTIFY on {result.channel} did not reach the listener within {limit:g} s, so "
        "the outbox publisher would miss new events; check that listen_dsn goes through a "
        "session-mode pool (SHOW DATABASES on the console)",
    )
