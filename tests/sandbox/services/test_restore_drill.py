"""G04's restore drill against a real cluster of the sandbox's executor: a local drill restores
to a point in time and leaves no scratch cluster behind (also when the check raises), and a
deployment's restore command gets the target time and is always torn down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pytest_spark.probes import pitr
from pytest_spark.probes.restore_drill import CommandDrill, DrillError, LocalDrill, is_open
from spark_sandbox.services import postgres as sandbox_postgres
from spark_sandbox.services.postgres import Postgres, start_postgres

RUNBOOK = {
    "recovery_target_time": "{target_time}",
    "recovery_target_action": "promote",
    "recovery_target_inclusive": False,
}


@pytest.fixture
def source(run_dir: Path) -> Iterator[Postgres]:
    proc, pg = start_postgres(run_dir)
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE drill (id bigserial PRIMARY KEY, at text)")
        yield pg
    finally:
        proc.stop()


def _drill(run_dir: Path) -> LocalDrill:
    return LocalDrill(
        sandbox_postgres.PG_BIN,
        sandbox_postgres.SERVICE_USER,
        sandbox_postgres.wal_archive_dir(run_dir),
        sandbox_postgres.pitr_scratch_dir(run_dir),
        timeout_s=30,
    )


def _insert(conn: psycopg.Connection[tuple[object, ...]], n: int, at: str) -> list[int]:
    return [
        int(conn.execute("INSERT INTO drill (at) VALUES (%s) RETURNING id", (at,)).fetchone()[0])  # type: ignore[index]
        for _ in range(n)
    ]


def _switch_and_await_archive(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    segment = str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])  # type: ignore[index]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
        if last is not None and pitr.segment_archived(last[0], segment):
            return
        time.sleep(0.1)
    pytest.fail(f"segment {segment} was not archived within 10 s")


def test_a_local_drill_restores_to_its_target_and_leaves_nothing_behind(
    source: Postgres, run_dir: Path
) -> None:
    with _drill(run_dir) as drill, psycopg.connect(source.dsn(), autocommit=True) as conn:
        drill.prepare(source.dsn())
        before = _insert(conn, 2, "before")
        target = str(conn.execute("SELECT clock_timestamp()::text").fetchone()[0])  # type: ignore[index]
        _insert(conn, 2, "after")
        _switch_and_await_archive(conn)
        settings = pitr.recovery_settings(RUNBOOK, target)
        with drill.restore(source.dsn(), settings, target) as restored:
            assert restored.opened, f"{restored.waited_for}:\n{restored.log()}"
            with psycopg.connect(restored.dsn) as copy:
                kept = [int(r[0]) for r in copy.execute("SELECT id FROM drill ORDER BY id")]
            log = pitr.read_recovery_log(restored.log())
    assert kept == before
    assert pitr.recovery_log_problems(log, source_timeline=1) == [], log
    assert not drill.scratch.exists()
    assert not is_open(restored.dsn)
    # The copy archived nothing into the source's archive (no timeline 2 history there).
    assert not list(sandbox_postgres.wal_archive_dir(run_dir).glob("00000002*"))


def test_the_scratch_cluster_is_stopped_and_deleted_when_the_check_raises(
    source: Postgres, run_dir: Path
) -> None:
    drill = _drill(run_dir)
    with pytest.raises(RuntimeError, match="a check blew up"), drill:
        drill.prepare(source.dsn())
        # No target: the copy replays what the archive holds; the raise is what matters here.
        settings = pitr.recovery_settings({"recovery_target_action": "promote"}, "")
        with drill.restore(source.dsn(), settings, "") as restored:
            assert drill.scratch.exists()
            raise RuntimeError("a check blew up")
    assert not drill.scratch.exists()
    assert not is_open(restored.dsn)


def test_a_restore_command_gets_the_target_and_is_always_torn_down(
    source: Postgres, tmp_path: Path
) -> None:
    torn_down = tmp_path / "torn-down"
    got = tmp_path / "got"
    drill = CommandDrill(
        restore_command=f"sh -c 'echo \"$SPARK_PITR_TARGET_TIME\" > {got}; echo restored'",
        teardown_command=f"touch {torn_down}",
        restored_dsn=source.dsn(),
        timeout_s=10,
    )
    with drill, drill.restore(source.dsn(), {"recovery_target_time": "T"}, "T") as restored:
        assert restored.opened and restored.log().strip() == "restored"
    assert got.read_text().strip() == "T" and torn_down.exists()


def test_a_failing_restore_command_is_not_open_and_a_failing_teardown_is_an_error(
    source: Postgres,
) -> None:
    drill = CommandDrill("sh -c 'echo no backup; exit 3'", "false", source.dsn(), 10)
    with (
        pytest.raises(DrillError, match="pitr_teardown_command exited with 1"),
        drill.restore(source.dsn(), {}, "T") as restored,
    ):
        assert not restored.opened
        assert restored.waited_for == "pitr_restore_command exited with 3"
        assert "no backup" in restored.log()
