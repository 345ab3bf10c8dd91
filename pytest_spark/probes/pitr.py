"""G04 backups: WAL archiving state and the point-in-time restore drill.

Pure parts (unit-tested without a server): :class:`ArchiverState` and whether a WAL segment
has reached the archive (:func:`segment_archived`), the recovery settings a restore runbook
renders for a target time (:func:`recovery_settings`), what a restored server's log says about
its recovery (:func:`read_recovery_log`, :func:`recovery_log_problems`), and which orders a
restore kept or lost (:func:`orders_missing`, :func:`orders_present`).

The drill's mechanics need a *local restore environment*, which only a database on this host
can offer (the embedded sandbox gives one): PostgreSQL's binaries, the OS user its server runs
as, the WAL archive and a scratch folder. :func:`take_base_backup` copies the running cluster
with ``pg_basebackup -X stream -c fast`` into a fresh scratch folder, :func:`restored_server`
configures that copy with the runbook's recovery settings and a ``restore_command`` reading
the archive, starts it on a free loopback port and waits until it is open or has exited. The
scratch server is stopped and its folder deleted whatever happens (:func:`scratch_folder`).
Nothing here touches the source cluster's data directory: ``pg_basebackup`` reads it over
the replication protocol.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
# A WAL segment file name: timeline, log and segment, 8 hex digits each.
WAL_FILE = re.compile(r"^[0-9A-F]{24}$")
TARGET_TIME = "{target_time}"
STOPPING = re.compile(r"recovery stopping (before|after) (?:commit|abort) of transaction.*$")
STARTING = re.compile(r"starting point-in-time recovery to (.+)$")
NEW_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
ENDED_BEFORE_TARGET = "recovery ended before configured recovery target was reached"
FATAL = re.compile(r"\b(FATAL|PANIC):\s+(.*)$")
STOP_WAIT_S = 10.0
OPEN_POLL_S = 0.1


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


def with_port(dsn: str, port: int) -> str:
    """The same conninfo on another port of the same loopback host: the restored server is a
    copy of the source, with its roles and passwords."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params.update(host=HOST, port=str(port))
    return make_conninfo(**params)  # type: ignore[arg-type]


# --- the drill's local restore environment -----------------------------------------------------


@dataclass(frozen=True)
class LocalRestore:
    """Where a target on this host lets the drill restore: its PostgreSQL binaries, the OS
    user its server runs as (switched to when running as root), its WAL archive and a scratch
    folder that user may write."""

    bin_dir: Path
    os_user: str | None
    wal_archive: Path
    scratch_root: Path

    def popen_user(self) -> dict[str, Any]:
        if self.os_user is None or os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(self.os_user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class DrillError(RuntimeError):
    """A step of the drill could not run (not: the restore landed in the wrong place)."""


@contextlib.contextmanager
def scratch_folder(env: LocalRestore) -> Iterator[Path]:
    """A fresh path under the scratch root (created by the drill's first step), deleted with
    everything in it when the drill ends, also on errors."""
    path = env.scratch_root / f"g04-drill-{secrets.token_hex(4)}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def take_base_backup(env: LocalRestore, dsn: str, data_dir: Path, timeout_s: float) -> str:
    """``pg_basebackup`` of the server at ``dsn`` into ``data_dir``, WAL streamed alongside;
    the password goes through the environment, never the command line. Its output."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    argv = [
        str(env.bin_dir / "pg_basebackup"),
        "-D", str(data_dir),
        "-X", "stream",
        "-c", "fast",
        "--no-sync",
        "-l", "spark-gate G04 drill",
        "-h", str(params.get("host", HOST)),
        "-p", str(params.get("port", 5432)),
        "-U", str(params.get("user", "postgres")),
        "-w",
    ]  # fmt: skip
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if params.get("password"):
        child_env["PGPASSWORD"] = str(params["password"])
    try:
        done = subprocess.run(
            argv,
            env=child_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd="/",
            **env.popen_user(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DrillError(f"pg_basebackup into {data_dir}: {exc}") from exc
    output = f"{done.stdout}{done.stderr}".strip()
    if done.returncode != 0:
        raise DrillError(f"pg_basebackup exited with {done.returncode}: {output}")
    return output


@dataclass
class Restored:
    """A restored scratch server: open (promoted) or not, after how long, and its log."""

    dsn: str
    opened: bool
    seconds: float
    log_path: Path
    exit_code: int | None = None
    waited_for: str = ""

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _is_open(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=1, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] is False


@contextlib.contextmanager
def restored_server(
    env: LocalRestore,
    data_dir: Path,
    source_dsn: str,
    settings: Mapping[str, str],
    open_timeout_s: float,
) -> Iterator[Restored]:
    """Start the base backup in ``data_dir`` as a recovering server with ``settings`` (the
    runbook's) and a restore_command reading the archive, on a free loopback port, archiving
    nothing; wait until it is open or has exited or ``open_timeout_s`` passed. Stopped on
    leaving, whatever happened."""
    archived = f"{env.wal_archive}/%f"
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\n# spark-gate G04 restore drill\n")
        conf.write(conf_lines({"restore_command": f'cp "{archived}" "%p"', **settings}))
    (data_dir / "recovery.signal").touch()
    port = _free_port()
    argv = [
        str(env.bin_dir / "postgres"),
        "-D", str(data_dir),
        "-c", f"port={port}",
        "-c", f"listen_addresses={HOST}",
        "-c", "unix_socket_directories=",
        # The copy must never write into the source's archive.
        "-c", "archive_mode=off",
    ]  # fmt: skip
    restored = Restored(with_port(source_dsn, port), False, 0.0, data_dir.parent / "restore.log")
    with restored.log_path.open("ab") as log:
        began = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
            **env.popen_user(),
        )
    try:
        deadline = began + open_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                restored.exit_code = proc.returncode
                restored.waited_for = f"the server exited with code {proc.returncode}"
                break
            if _is_open(restored.dsn):
                restored.opened = True
                break
            time.sleep(OPEN_POLL_S)
        else:
            restored.waited_for = f"not open after {open_timeout_s:g} s"
        restored.seconds = time.monotonic() - began
        yield restored
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT), then SIGKILL to the server's whole process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(STOP_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_WAIT_S)
