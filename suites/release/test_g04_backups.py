"""G04 Backups: WAL archiving healthy, a recent base backup, a point-in-time restore that lands
exactly on its target.

Archiving and the base backup are read from the target's PostgreSQL (``postgres_dsn``):
``pg_stat_archiver`` around a segment closed with ``pg_switch_wal()``, and the backup history
file a finished base backup leaves in ``pg_wal``. The restore drill (DOMAIN-FACTS §5) books
orders through the API (``api_url``), records the database's time T, books more, closes the
WAL segment, and restores a fresh base backup into a scratch cluster with the restore
runbook's recovery settings (``[restore]`` of ``backup.toml`` in the target's ``ops_dir``) and
``recovery_target_time = T``. The restored database must hold every order from before T and
none from after, no sequence may be behind its column, and its log must show recovery
stopping before the target on a new timeline. Thresholds: ``[G04]`` of ``ops/backup.toml``.

The drill never restores over the target: it needs a restore environment separate from it.
The sandbox gives a local one (``pitr_*`` keys); a deployment must configure
``pitr_restore_command`` (``docs/backups.md``), and without one the drill is INCONCLUSIVE.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from pathlib import Path

import pytest

from pytest_spark import CheckEvidence, Reach, Target, TargetConfigError, load_ops
from pytest_spark.probes import clock, money, pitr
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.restore_drill import CommandDrill, LocalDrill
from pytest_spark.probes.spark_api import SparkApi, Ticket, new_account, new_key
from pytest_spark.probes.waiting import Deadline, Waited, wait_until
from suites.limits import BACKUP_FILE, BackupLimits, G04Limits, Limits

pytestmark = pytest.mark.go_nogo("G04")

# The sandbox's local restore environment; a deployment configures a restore command instead.
LOCAL_RESTORE_KEYS = ("pitr_postgres_bin_dir", "pitr_wal_archive_dir", "pitr_scratch_dir")


def _db(dsn: str, limits: Limits) -> Postgres:
    return Postgres(dsn, limits.market.db_connect_timeout_s)


def _await_segment(db: Postgres, segment: str, g04: G04Limits) -> Waited[pitr.ArchiverState]:
    return wait_until(
        Deadline.after(g04.segment_archived_s),
        f"WAL segment {segment} reported archived",
        lambda _: db.archiver(),
        lambda state: pitr.segment_archived(state.last_archived_wal, segment),
        pause_s=g04.archive_poll_s,
    )


def test_wal_archiving_is_healthy(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    g04 = limits.g04
    with reach("postgres_dsn") as [dsn], _db(dsn, limits) as db:
        before = db.archiver()
        switched = time.monotonic()
        segment = db.switch_wal()
        waited = _await_segment(db, segment, g04)
        seconds = time.monotonic() - switched
    after = waited.value
    spark_evidence.note(f"pg_stat_archiver before: {before.describe()}")
    spark_evidence.note(f"closed segment {segment}; {waited.describe()}; after: {after.describe()}")
    failures = after.failed_count - before.failed_count
    spark_evidence.check(
        "wal_archive_failures",
        failures,
        limit=g04.wal_archive_failures,
        unit="failures",
        why=f"archive_command failed {failures} time(s) while segment {segment} was awaited "
        f"(last failed: {after.last_failed_wal}); WAL that is not archived cannot be restored: "
        "check archive_command and the server log",
    )
    spark_evidence.check(
        "segment_archived_s",
        round(seconds if waited.done else max(seconds, g04.segment_archived_s), 3),
        limit=g04.segment_archived_s,
        unit="s",
        why=f"segment {segment}, closed with pg_switch_wal(), was not reported archived within "
        f"{g04.segment_archived_s:g} s (last archived: {after.last_archived_wal or 'none'})",
    )
    spark_evidence.check(
        "last_archive_age_s",
        round(after.archive_age_s, 3),
        limit=g04.last_archive_age_s,
        unit="s",
        why=f"the last successful archive was {after.archive_age_s:.0f} s ago: {after.describe()}",
    )


def test_a_recent_base_backup_exists(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    with reach("postgres_dsn") as [dsn], _db(dsn, limits) as db:
        backups = db.base_backups()
    spark_evidence.note(
        "backup history files in pg_wal: "
        + (", ".join(f"{b.name} ({b.age_s:.0f} s old)" for b in backups) or "none")
    )
    if not backups:
        spark_evidence.inconclusive(
            "no backup history file in pg_wal (pg_ls_waldir()): no base backup of this server "
            "has finished since its last one was cleaned up, so none can be shown to exist"
        )
    spark_evidence.check(
        "base_backup_age_s",
        round(backups[0].age_s, 3),
        limit=limits.g04.base_backup_age_s,
        unit="s",
        why=f"the newest base backup ({backups[0].name}) finished {backups[0].age_s:.0f} s ago: "
        "a restore would replay everything since then, if the archive still holds it",
    )


def _drill(
    reach: Reach, spark_target: Target, spark_evidence: CheckEvidence, timeout_s: float
) -> LocalDrill | CommandDrill:
    """How this target restores for the drill; INCONCLUSIVE when it configures no way."""
    if spark_target.is_sandbox:
        with reach(*LOCAL_RESTORE_KEYS) as [bin_dir, archive, scratch]:
            user = spark_target.endpoints.get("pitr_postgres_os_user") or None
            return LocalDrill(Path(bin_dir), user, Path(archive), Path(scratch), timeout_s)
    try:
        spark_target.require("pitr_restore_command")
    except TargetConfigError:
        spark_evidence.inconclusive(
            "the point-in-time restore drill needs a restore environment separate from the "
            f"target, and the target {spark_target.name} configures none: set "
            "pitr_restore_command, pitr_teardown_command and pitr_restored_dsn in its target "
            "file (docs/backups.md); the gate never restores over a deployment's own database"
        )
    with reach("pitr_restore_command", "pitr_teardown_command", "pitr_restored_dsn") as keys:
        return CommandDrill(*keys, timeout_s=timeout_s)


def _book(api: SparkApi, db: Postgres, ticket: Ticket, count: int) -> list[int]:
    for _ in range(count):
        reply = api.submit(ticket, new_key())
        assert reply.status == 201, f"drill order {ticket.describe()}: {reply.describe()}"
    return [o.id for o in db.booked_orders(ticket.account_id)]


def _tradable(api: SparkApi, symbol: str) -> tuple[str, Decimal]:
    instrument = api.instrument(symbol)
    [price] = money.aligned_prices_near(instrument.base_price, instrument.band, 1)
    return instrument.symbol, price


def test_point_in_time_restore_lands_on_its_target(
    reach: Reach,
    spark_target: Target,
    spark_api: SparkApi,
    listed_symbols: list[str],
    ops_dir: Path,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    g04 = limits.g04
    drill = _drill(reach, spark_target, spark_evidence, g04.pitr_command_timeout_s)
    runbook = load_ops(ops_dir / BACKUP_FILE, BackupLimits).restore
    account = new_account("g04-pitr")
    drill_began = time.monotonic()
    with reach("api_url", "postgres_dsn") as [_, dsn], _db(dsn, limits) as db, drill:
        symbol, price = _tradable(spark_api, listed_symbols[0])
        ticket = Ticket(account, symbol, "buy", 1, price)
        prepared = drill.prepare(dsn)
        before = _book(spark_api, db, ticket, g04.drill_orders)
        target_time = db.now()
        after = [o for o in _book(spark_api, db, ticket, g04.drill_orders) if o not in before]
        segment = db.switch_wal()
        archived = _await_segment(db, segment, g04)
        source_timeline = db.timeline()
        settings = pitr.recovery_settings(dataclasses.asdict(runbook), target_time)
        with drill.restore(dsn, settings, target_time) as restored:
            restored_ids: list[int] = []
            behind: list[clock.SequenceAnomaly] = []
            if restored.opened:
                with _db(restored.dsn, limits) as copy:
                    restored_ids = [o.id for o in copy.booked_orders(account)]
                    behind = [
                        a for a in clock.sequence_anomalies(copy.sequences(), 1.0)
                        if a.kind == "behind"
                    ]  # fmt: skip
            log_text = restored.log()
    drill_s = time.monotonic() - drill_began
    if isinstance(drill, LocalDrill):
        assert not drill.scratch.exists(), f"the drill's scratch {drill.scratch} was not deleted"
    spark_evidence.attach("g04_restore_log.txt", log_text)
    spark_evidence.measure("pitr_drill_s", round(drill_s, 3), unit="s")
    log = pitr.read_recovery_log(log_text)
    problems = pitr.recovery_log_problems(log, source_timeline)
    spark_evidence.note(
        f"restore by {drill.describe()}; {prepared}; "
        f"orders of {account} booked before T {before}, T = {target_time} (database clock), "
        f"after T {after}; {archived.describe()}"
    )
    spark_evidence.note(f"recovery settings (runbook {ops_dir / BACKUP_FILE}): {settings}")
    spark_evidence.note(
        f"restored server: {'open' if restored.opened else restored.waited_for} after "
        f"{restored.seconds:.2f} s; its orders of {account}: {restored_ids}; log: target "
        f"{log.target!r}, {log.stopping or 'no recovery stopping line'}, new timeline "
        f"{log.new_timeline} (source {source_timeline}); see attachment g04_restore_log.txt"
    )
    missing = pitr.orders_missing(before, restored_ids)
    spark_evidence.check(
        "pitr_recovery_log_problems",
        len(problems),
        limit=g04.pitr_recovery_log_problems,
        unit="problems",
        why="; ".join(problems) + " (see attachment g04_restore_log.txt)",
    )
    spark_evidence.check(
        "pitr_orders_missing_before_target",
        len(missing),
        limit=g04.pitr_orders_missing_before_target,
        unit="orders",
        why=f"orders {missing}, booked before T = {target_time}, are not in the restored "
        f"database ({restored.waited_for or 'it opened'}): a restore to T loses them",
    )
    if not restored.opened:
        return  # nothing else was restored to judge: those sub-checks stay unmeasured
    present = pitr.orders_present(after, restored_ids)
    spark_evidence.check(
        "pitr_orders_after_target",
        len(present),
        limit=g04.pitr_orders_after_target,
        unit="orders",
        why=f"orders {present}, booked after T = {target_time}, are in the database restored "
        "to T: the restore replayed past its target (check the runbook's recovery settings)",
    )
    spark_evidence.check(
        "pitr_sequences_behind",
        len(behind),
        limit=g04.pitr_sequences_behind,
        unit="sequences",
        why="; ".join(f"{a.sequence}: {a.detail}" for a in behind),
    )
    spark_evidence.check(
        "pitr_restore_s",
        round(restored.seconds, 3),
        limit=g04.pitr_restore_s,
        unit="s",
        why=f"the restored server took {restored.seconds:.1f} s to open (limit "
        f"{g04.pitr_restore_s:g} s): a restore drill that slow means a longer outage",
    )
