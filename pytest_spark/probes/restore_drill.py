"""G04's point-in-time restore drill: restore the target's backup to a time T somewhere that is
not the target, and hand back the restored server and its log.

Two ways, one interface (``with drill: drill.prepare(dsn)`` before T, then
``with drill.restore(dsn, settings, T) as restored:`` after it):

- :class:`LocalDrill`, for a database on this host that offers a *local restore environment*
  (the embedded sandbox does): its PostgreSQL binaries, the OS user its server runs as, its
  WAL archive and a scratch folder. ``prepare`` copies the running cluster with
  ``pg_basebackup -X stream -c fast`` into a fresh scratch folder; ``restore`` configures the
  copy with the runbook's recovery settings and a ``restore_command`` reading the archive,
  starts it on a free loopback port with archiving off, and waits until it is open (promoted)
  or has exited. The scratch server is stopped and its folder deleted whatever happens.
  ``pg_basebackup`` reads the source over the replication protocol; its data directory is
  never touched.
- :class:`CommandDrill`, for a deployment: its ``pitr_restore_command`` restores the latest
  base backup and the WAL archive into a separate environment (its runbook's automation), the
  gate reads the restored database at ``pitr_restored_dsn``, and ``pitr_teardown_command``
  always runs afterwards. The contract is in ``docs/backups.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pytest_spark.probes.pitr import conf_lines

HOST = "127.0.0.1"
STOP_WAIT_S = 10.0
OPEN_POLL_S = 0.1
TARGET_TIME_ENV = "SPARK_PITR_TARGET_TIME"
SETTINGS_ENV = "SPARK_PITR_RECOVERY_SETTINGS"


class DrillError(RuntimeError):
    """A step of the drill could not run (not: the restore landed in the wrong place)."""


@dataclass
class Restored:
    """A restored server: open (promoted) or not, after how long, and its log."""

    dsn: str = field(repr=False)  # the restored server's, with the source's password
    opened: bool = False
    seconds: float = 0.0
    waited_for: str = ""  # why it is not open
    log_path: Path | None = None
    output: str = ""  # the log, when it came as a command's output

    def log(self) -> str:
        if self.log_path is None:
            return self.output
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def with_port(dsn: str, port: int) -> str:
    """The same conninfo on another port of the loopback host: the restored server is a copy
    of the source, with its roles and passwords."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params.update(host=HOST, port=str(port))
    return make_conninfo(**params)  # type: ignore[arg-type]


def is_open(dsn: str) -> bool:
    """The server at ``dsn`` accepts a connection and is out of recovery."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=1, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] is False


# --- a local restore environment ----------------------------------------------------------------


@dataclass
class LocalDrill:
    """The drill on this host: binaries, the server's OS user (switched to when running as
    root), the WAL archive and a scratch root that user may write."""

    bin_dir: Path
    os_user: str | None
    wal_archive: Path
    scratch_root: Path
    timeout_s: float
    scratch: Path = field(init=False)

    def __post_init__(self) -> None:
        self.scratch = self.scratch_root / f"g04-drill-{secrets.token_hex(4)}"

    def describe(self) -> str:
        return f"a scratch cluster in {self.scratch} ({self.bin_dir}), WAL from {self.wal_archive}"

    def __enter__(self) -> LocalDrill:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _user(self) -> dict[str, Any]:
        if self.os_user is None or os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(self.os_user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def prepare(self, source_dsn: str) -> str:
        """``pg_basebackup`` of the source into the scratch folder, WAL streamed alongside;
        the password goes through the environment, never the command line."""
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(source_dsn)
        argv = [
            str(self.bin_dir / "pg_basebackup"),
            "-D", str(self.scratch / "data"),
            "-X", "stream",
            "-c", "fast",
            "--no-sync",
            "-l", "spark-gate G04 drill",
            "-h", str(params.get("host", HOST)),
            "-p", str(params.get("port", 5432)),
            "-U", str(params.get("user", "postgres")),
            "-w",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if params.get("password"):
            env["PGPASSWORD"] = str(params["password"])
        began = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
                cwd="/",
                **self._user(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DrillError(f"pg_basebackup into {self.scratch}: {exc}") from exc
        output = f"{done.stdout}{done.stderr}".strip()
        if done.returncode != 0:
            raise DrillError(f"pg_basebackup exited with {done.returncode}: {output}")
        return f"pg_basebackup into {self.scratch} in {time.monotonic() - began:.2f} s"

    @contextlib.contextmanager
    def restore(
        self, source_dsn: str, settings: Mapping[str, str], target_time: str
    ) -> Iterator[Restored]:
        """Start the base backup as a recovering server with ``settings`` (the runbook's)
        and a restore_command reading the archive; stopped on leaving, whatever happened."""
        data_dir = self.scratch / "data"
        archived = f"{self.wal_archive}/%f"
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# spark-gate G04 restore drill\n")
            conf.write(conf_lines({"restore_command": f'cp "{archived}" "%p"', **settings}))
        (data_dir / "recovery.signal").touch()
        port = _free_port()
        argv = [
            str(self.bin_dir / "postgres"),
            "-D", str(data_dir),
            "-c", f"port={port}",
            "-c", f"listen_addresses={HOST}",
            "-c", "unix_socket_directories=",
            # The copy must never write into the source's archive.
            "-c", "archive_mode=off",
        ]  # fmt: skip
        restored = Restored(with_port(source_dsn, port), log_path=self.scratch / "restore.log")
        assert restored.log_path is not None
        with restored.log_path.open("ab") as log:
            began = time.monotonic()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
                **self._user(),
            )
        try:
            deadline = began + self.timeout_s
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    restored.waited_for = f"the server exited with code {proc.returncode}"
                    break
                if is_open(restored.dsn):
                    restored.opened = True
                    break
                time.sleep(OPEN_POLL_S)
            else:
                restored.waited_for = f"not open after {self.timeout_s:g} s"
            restored.seconds = time.monotonic() - began
            yield restored
        finally:
            _stop(proc)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


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


# --- a deployment's restore command -------------------------------------------------------------


@dataclass
class CommandDrill:
    """The drill through a deployment's own restore automation (``docs/backups.md``)."""

    restore_command: str
    teardown_command: str
    restored_dsn: str = field(repr=False)
    timeout_s: float = 60.0

    def describe(self) -> str:
        return f"pitr_restore_command {shlex.split(self.restore_command)[:1]}"

    def __enter__(self) -> CommandDrill:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def prepare(self, source_dsn: str) -> str:
        return "the restore command restores the target's latest base backup"

    @contextlib.contextmanager
    def restore(
        self, source_dsn: str, settings: Mapping[str, str], target_time: str
    ) -> Iterator[Restored]:
        """Run the restore command with the target time and the runbook's settings in its
        environment; the teardown command runs on leaving, whatever happened."""
        env = {
            **os.environ,
            TARGET_TIME_ENV: target_time,
            SETTINGS_ENV: json.dumps(dict(settings)),
        }
        restored = Restored(self.restored_dsn)
        began = time.monotonic()
        try:
            try:
                done = _run(self.restore_command, env, self.timeout_s)
                restored.output = done.stdout
                if done.returncode != 0:
                    restored.waited_for = f"pitr_restore_command exited with {done.returncode}"
            except subprocess.TimeoutExpired as exc:
                restored.output = str(exc.stdout or "")
                restored.waited_for = f"pitr_restore_command overran {self.timeout_s:g} s"
            restored.seconds = time.monotonic() - began
            if not restored.waited_for:
                restored.opened = is_open(self.restored_dsn)
                restored.waited_for = "" if restored.opened else "not open at pitr_restored_dsn"
            yield restored
        finally:
            teardown = _run(self.teardown_command, dict(os.environ), self.timeout_s)
            if teardown.returncode != 0:
                raise DrillError(
                    f"pitr_teardown_command exited with {teardown.returncode}: the restored "
                    f"environment may still run: {teardown.stdout[-2000:]}"
                )


def _run(
    command: str, env: Mapping[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            shlex.split(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except OSError as exc:
        raise DrillError(f"cannot run {shlex.split(command)[:1]}: {exc}") from exc
