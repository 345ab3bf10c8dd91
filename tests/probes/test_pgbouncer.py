"""B3 probe logic: pool modes from SHOW DATABASES, long-running sessions, DSN pool names."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_spark.probes import pgbouncer as pb


def databases(**modes: str | None) -> list[dict[str, Any]]:
    return [{"name": name, "database": "spark", "pool_mode": mode} for name, mode in modes.items()]


def test_dbname_of_conninfo_and_url() -> None:
    assert pb.dbname_of("host=127.0.0.1 port=6432 dbname=spark_listen user=u password=p") == (
        "spark_listen"
    )
    assert pb.dbname_of("postgresql://u:p@127.0.0.1:6432/spark") == "spark"
    with pytest.raises(ValueError, match="no dbname"):
        pb.dbname_of("host=127.0.0.1 user=u")


def test_healthy_pools() -> None:
    rows = databases(pgbouncer="statement", spark="transaction", spark_listen="session")
    assert pb.pool_mode_findings(rows, "spark", "spark_listen") == []


def test_app_pool_in_session_mode() -> None:
    rows = databases(spark="session", spark_listen="session")
    assert pb.pool_mode_findings(rows, "spark", "spark_listen") == [
        pb.PoolModeFinding("app", "spark", "transaction", "session")
    ]


def test_listen_pool_in_transaction_mode() -> None:
    rows = databases(spark="transaction", spark_listen="transaction")
    [finding] = pb.pool_mode_findings(rows, "spark", "spark_listen")
    assert finding.role == "listen"
    assert "runs pool_mode=transaction, expected session" in finding.describe()


def test_null_pool_mode_means_the_global_default() -> None:
    rows = databases(spark=None, spark_listen=None)
    assert [f.role for f in pb.pool_mode_findings(rows, "spark", "spark_listen")] == ["app"]
    assert [
        f.role for f in pb.pool_mode_findings(rows, "spark", "spark_listen", "transaction")
    ] == ["listen"]


def test_listener_sharing_the_app_pool_is_a_finding() -> None:
    rows = databases(spark="transaction")
    [finding] = pb.pool_mode_findings(rows, "spark", "spark")
    assert (finding.role, finding.actual) == ("listen", "transaction")


def test_unknown_pool_is_a_finding() -> None:
    [finding] = pb.pool_mode_findings(databases(spark="transaction"), "spark", "listener")
    assert finding.actual is None
    assert "not in SHOW DATABASES" in finding.describe()


def test_default_pool_mode_from_show_config() -> None:
    config = [{"key": "listen_port", "value": "6432"}, {"key": "pool_mode", "value": "transaction"}]
    assert pb.default_pool_mode(config) == "transaction"
    assert pb.default_pool_mode([]) == "session"


def session(state: str, seconds: float) -> pb.SessionActivity:
    return pb.SessionActivity(1, state, seconds, "app", "spark", "api", "SELECT 1")


def test_long_running_thresholds_are_strict() -> None:
    rows = [
        session("active", 30.0),
        session("active", 30.5),
        session("idle in transaction", 10.0),
        session("idle in transaction", 11.0),
        session("idle in transaction (aborted)", 12.0),
    ]
    found = pb.long_running(rows, active_s=30, idle_tx_s=10)
    assert [(r.state, r.seconds) for r in found] == [
        ("active", 30.5),
        ("idle in transaction", 11.0),
        ("idle in transaction (aborted)", 12.0),
    ]


def test_longest_per_state() -> None:
    rows = [session("active", 3.0), session("idle in transaction", 7.0)]
    assert pb.longest(rows, ("active",)) == 3.0
    assert pb.longest(rows, pb.IDLE_IN_TRANSACTION) == 7.0
    assert pb.longest([], ("active",)) == 0.0


def test_console_reads_only_show_commands() -> None:
    with pytest.raises(ValueError, match="only SHOW"):
        pb.console_rows("host=127.0.0.1 dbname=pgbouncer", "PAUSE spark")
