"""Run dirs and the processes they record: what a later start may clean up.

A sandbox start leaves two kinds of traces that outlive a killed owner: a run dir
(``run-<time>-<pid>`` under the run root, holding the cluster, logs and ``run.json``) and the
service processes, each leading its own process group. The next start, from any directory,
removes the traces of runs whose owner is gone, and ``sandbox down`` removes a detached one
(:mod:`spark_sandbox.state`). Neither trusts what it reads: a run record is sealed with this
user's key (:mod:`spark_sandbox.home`), and it counts only in its own dir, which must be a
real directory (not a symlink) named like a run dir, with the record a regular file of this
user. Its processes are stopped only while they are still the processes recorded
(:mod:`spark_sandbox.processes`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_sandbox.home import (
    NotOurs,
    Report,
    home_dir,
    read_owned_json,
    run_key,
    seal,
    unseal,
    warn,
    write_json_atomically,
)
from spark_sandbox.processes import ProcessIdentity, boot_id
from spark_sandbox.services.process import ServiceStartError
from spark_sandbox.stopping import stop_recorded_processes

RUN_RECORD = "run.json"
RECORD_FORMAT = 2
RUN_DIR_NAME = re.compile(r"run-[0-9T]+-[0-9]+")


def default_run_root() -> Path:
    """This user's sandbox home (:func:`spark_sandbox.home.home_dir`), whatever the current
    directory: so the next start reaps what a killed run left, wherever that run started."""
    return home_dir()


def check_reachable_by_postgres(path: Path) -> None:
    """Fail early and clearly when the postgres user could not reach a dir under ``path``."""
    if os.geteuid() != 0:
        return
    for directory in (path, *path.parents):
        if not directory.stat().st_mode & 0o001:
            raise ServiceStartError(
                "postgres",
                [],
                f"run root {path} is not reachable by the postgres user ({directory} is not "
                "world-searchable); choose a run root under a 0755 directory (the default one "
                "is in the temp dir: point TMPDIR at such a directory)",
                "",
            )


def run_dir_name() -> str:
    from datetime import UTC, datetime

    return f"run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}"


@dataclass(frozen=True)
class RunRecord:
    """``run.json``: who owns a run dir and which processes its start spawned."""

    run_dir: Path
    nonce: str
    owner: ProcessIdentity
    detached: bool = False
    processes: Mapping[str, ProcessIdentity] = field(default_factory=dict)
    boot: str = field(default_factory=boot_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "run_dir": str(self.run_dir),
            "nonce": self.nonce,
            "boot_id": self.boot,
            "owner": self.owner.to_json(),
            "detached": self.detached,
            "processes": {name: p.to_json() for name, p in self.processes.items()},
        }

    def write(self, key: bytes) -> None:
        write_json_atomically(self.run_dir / RUN_RECORD, seal(self.to_json(), key))

    @classmethod
    def load(cls, run_dir: Path, key: bytes) -> RunRecord:
        """The record in ``run_dir``, if this project wrote it for this very dir."""
        if not RUN_DIR_NAME.fullmatch(run_dir.name):
            raise NotOurs(f"{run_dir} is not named like a run dir (run-<time>-<pid>)")
        try:
            info = run_dir.lstat()
        except OSError:
            raise NotOurs(f"run dir {run_dir} does not exist") from None
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise NotOurs(f"{run_dir} is a symlink or not a directory")
        path = run_dir / RUN_RECORD
        body = unseal(read_owned_json(path, "run record"), key, f"run record {path}")
        if body.get("format") != RECORD_FORMAT or body.get("run_dir") != str(run_dir):
            raise NotOurs(f"run record {path} was written for {body.get('run_dir')!r}")
        processes = body.get("processes")
        if not isinstance(processes, dict) or not isinstance(body.get("nonce"), str):
            raise NotOurs(f"run record {path} lacks its nonce or processes")
        record = cls(
            run_dir=run_dir,
            nonce=body["nonce"],
            owner=ProcessIdentity.from_json(body.get("owner")),
            detached=body.get("detached") is True,
            processes={str(n): ProcessIdentity.from_json(p) for n, p in processes.items()},
            boot=str(body.get("boot_id", "")),
        )
        unverifiable = [
            str(p.pid)
            for p in (record.owner, *record.processes.values())
            if p.start is None or p.exe is None
        ]
        if unverifiable:
            raise NotOurs(
                f"run record {path} names pid {', '.join(unverifiable)} without a start time or "
                "executable: a reused pid could not be told apart, so nothing it names is touched"
            )
        return record

    def live_processes(self) -> dict[str, ProcessIdentity]:
        """The recorded processes, or none when they were recorded during another boot."""
        return dict(self.processes) if self.boot == boot_id() else {}

    def owner_running(self) -> bool:
        return self.boot == boot_id() and self.owner.mismatch() is None

    def services_running(self) -> dict[str, bool]:
        same_boot = self.boot == boot_id()
        return {n: same_boot and p.mismatch() is None for n, p in self.processes.items()}


def reap_stale_runs(run_root: Path, report: Report = warn) -> Iterator[Path]:
    """Remove run dirs whose sandbox is gone; stop the orphans of an owner that was killed.

    A detached run (``sandbox up``) is stale once all its services are gone; an attached run
    is stale once its owner is gone, and whatever it left running is an orphan to stop. A dir
    whose record this project cannot vouch for is left alone, and reported.
    """
    key = run_key()
    for run_dir in sorted(run_root.glob("run-*")):
        try:
            record = RunRecord.load(run_dir, key)
        except NotOurs as exc:
            report(f"left {run_dir} alone: {exc}")
            continue
        if record.detached:
            if any(record.services_running().values()):
                continue
        elif record.owner_running():
            continue
        stop_recorded_processes(record.live_processes(), report)
        shutil.rmtree(run_dir, ignore_errors=True)
        yield run_dir
