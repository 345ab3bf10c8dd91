"""G04 backups, the pure part: WAL archiving state, the restore runbook, and what a
point-in-time restore kept, lost and logged. Unit-tested without a server; the drill that
produces the inputs is :mod:`pytest_spark.probes.restore_drill`.

- :class:`ArchiverState` (``pg_stat_archiver``) and whether a WAL segment has reached the
  archive (:func:`segment_archived`); :class:`BackupHistory`, a finished base backup.
- :func:`recovery_settings`: the runbook's recovery settings for a target time, as
  postgresql.conf values (:func:`conf_lines`).
- :func:`read_recovery_log` and :func:`recovery_log_problems`: where the restored server's
  recovery stopped, on which timeline, and what is wrong with that (DOMAIN-FACTS §5).
- :func:`orders_missing` and :func:`orders_present`: the orders a restore lost or kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A WAL segment file name: timeline, log and segment, 8 hex digits each.
WAL_FILE = re.compile(r"^[0-9A-F]{24}$")
TARGET_TIME = "{target_time}"
STOPPING = re.compile(r"recovery stopping (before|after) (?:commit|abort) of transaction.*$")
STARTING = re.compile(r"starting point-in-time recovery to (.+)$")
NEW_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
ENDED_BEFORE_TARGET = "recovery ended before configured recovery target was reached"
FATAL = re.compile(r"\b(FATAL|PANIC):\s+(.*)$")


# --- WAL archiving ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiverState:
    """``pg_stat_archiver``, ages in seconds on the database's clock (None: never)."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_age_s: float | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_age_s: float | None
    uptime_s: float
    archive_mode: str = "on"

    @property
    def archive_age_s(self) -> float:
        """Seconds since the last successful archive; never archived: the server's uptime
        (it has gone at least that long without one)."""
        age = self.last_archived_age_s
        return self.uptime_s if age is None else age

    def describe(self) -> str:
        def ago(age: float | None) -> str:
            return "never" if age is None else f"{age:.1f} s ago"

        return (
            f"archive_mode={self.archive_mode}; archived {self.archived_count} (last "
            f"{self.last_archived_wal or '-'}, {ago(self.last_archived_age_s)}); failed "
            f"{self.failed_count} (last {self.last_failed_wal or '-'}, "
            f"{ago(self.last_failed_age_s)}); up {self.uptime_s:.0f} s"
        )


def segment_archived(last_archived_wal: str | None, segment: str) -> bool:
    """Whether the archiver has reported ``segment`` (or a later one) archived. Segments are
    archived in order, and a WAL file name orders as its (timeline, log, segment) digits."""
    if last_archived_wal is None or not WAL_FILE.match(last_archived_wal[:24]):
        return False
    if not WAL_FILE.match(segment):
        raise ValueError(f"{segment!r} is not a WAL segment file name")
    return last_archived_wal[:24] >= segment


@dataclass(frozen=True)
class BackupHistory:
    """A backup history file in ``pg_wal`` (``<segment>.<offset>.backup``) and its age."""

    name: str
    age_s: float


# --- the restore runbook -----------------------------------------------------------------------


def recovery_settings(runbook: Mapping[str, object], target_time: str) -> dict[str, str]:
    """The runbook's recovery settings as postgresql.conf values, ``{target_time}`` replaced;
    booleans as on/off."""
    rendered = {}
    for key, value in runbook.items():
        if isinstance(value, bool):
            rendered[key] = "on" if value else "off"
        else:
            rendered[key] = str(value).replace(TARGET_TIME, target_time)
    return rendered


def conf_lines(settings: Mapping[str, str]) -> str:
    """``key = 'value'`` lines, quotes doubled as postgresql.conf wants them."""
    return "".join(
        f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n" for key, value in settings.items()
    )


# --- what the restored server's log says -------------------------------------------------------


@dataclass(frozen=True)
class RecoveryLog:
    """The lines of a restored server's log that tell where its recovery stopped."""

    target: str | None  # "starting point-in-time recovery to ..."
    stopping: str | None  # "recovery stopping before commit of transaction ..."
    new_timeline: int | None
    ended_before_target: bool
    fatal: tuple[str, ...]

    @property
    def stopped_before(self) -> bool:
        return self.stopping is not None and " stopping before " in self.stopping


def read_recovery_log(text: str) -> RecoveryLog:
    target = stopping = None
    timeline = None
    fatal: list[str] = []
    for line in text.splitlines():
        if (found := STARTING.search(line)) is not None:
            target = found.group(1).strip()
        if (found := STOPPING.search(line)) is not None:
            stopping = found.group(0).strip()
        if (found := NEW_TIMELINE.search(line)) is not None:
            timeline = int(found.group(1))
        if (found := FATAL.search(line)) is not None:
            fatal.append(found.group(2).strip())
    return RecoveryLog(
        target, stopping, timeline, any(ENDED_BEFORE_TARGET in line for line in fatal), tuple(fatal)
    )


def recovery_log_problems(log: RecoveryLog, source_timeline: int) -> list[str]:
    """What the log shows wrong with a restore to a point in time (empty: nothing)."""
    problems = []
    if log.target is None:
        problems.append(
            "no 'starting point-in-time recovery to' line: the server was not given a recovery "
            "target (recovery_target_time empty or unset?) and replays whatever WAL it finds"
        )
    if log.ended_before_target:
        problems.append(
            f"'{ENDED_BEFORE_TARGET}': the archive does not hold the WAL up to the target"
        )
    elif not log.stopped_before:
        problems.append(
            "recovery did not stop before the target "
            f"({log.stopping or 'no recovery stopping line'}): it replayed past the point in "
            "time asked for"
        )
    if log.new_timeline is None or log.new_timeline <= source_timeline:
        problems.append(
            f"no new timeline after the source's {source_timeline} "
            f"(selected: {log.new_timeline}): the restored server was not promoted"
        )
    other = [line for line in log.fatal if ENDED_BEFORE_TARGET not in line]
    if other:
        problems.append("FATAL: " + "; ".join(other))
    return problems


def orders_missing(booked_before: Iterable[int], restored: Iterable[int]) -> list[int]:
    """Orders booked before the target that the restored database lacks."""
    kept = set(restored)
    return sorted(o for o in booked_before if o not in kept)


def orders_present(booked_after: Iterable[int], restored: Iterable[int]) -> list[int]:
    """Orders booked after the target that the restored database holds anyway."""
    after = set(booked_after)
    return sorted(o for o in restored if o in after)
