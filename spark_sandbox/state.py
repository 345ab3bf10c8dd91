"""The state file of a sandbox left running (``sandbox up``), and finding or stopping it.

``<state_dir>/sandbox.json``, where ``state_dir`` is ``$SPARK_SANDBOX_STATE_DIR`` or the
sandbox home, records the endpoints and run dir of a detached sandbox, sealed with this user's
key. It is checked against the run dir's own record before anything it names is used,
stopped or removed.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_sandbox.endpoints import Endpoints
from spark_sandbox.home import (
    NotOurs,
    Report,
    RunDirGone,
    home_dir,
    read_owned_json,
    run_key,
    sandbox_home,
    seal,
    unseal,
    warn,
    write_json_atomically,
)
from spark_sandbox.runs import RECORD_FORMAT, RunRecord
from spark_sandbox.services.process import ServiceStartError
from spark_sandbox.stopping import stop_recorded_processes

STATE_FILE = "sandbox.json"


def state_dir_default() -> Path:
    """``$SPARK_SANDBOX_STATE_DIR``, else this user's sandbox home."""
    override = os.environ.get("SPARK_SANDBOX_STATE_DIR")
    return Path(override) if override else home_dir()


def write_state(
    record: RunRecord, endpoints: Mapping[str, Any], key: bytes, state_dir: Path | None = None
) -> Path:
    """Record a sandbox for ``sandbox status|down`` and later gate runs; atomic, owner-only."""
    from datetime import UTC, datetime

    directory = state_dir or state_dir_default()
    if directory == home_dir():
        sandbox_home()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = {
        "format": RECORD_FORMAT,
        "run_dir": str(record.run_dir),
        "nonce": record.nonce,
        "endpoints": dict(endpoints),
        "pids": {name: p.pid for name, p in record.processes.items()},
        "owner_pid": record.owner.pid,
        "started_at": datetime.now(UTC).isoformat(),
    }
    path = directory / STATE_FILE
    write_json_atomically(path, seal(state, key))
    return path


@dataclass(frozen=True)
class RecordedRun:
    """The sandbox a state file names, checked against its run dir's own record."""

    state_path: Path
    state: dict[str, Any]
    record: RunRecord

    def stale(self) -> bool:
        """A service gone, or the owner of a run that is not detached gone."""
        status = self.record.services_running()
        if not status or not all(status.values()):
            return True
        return not self.record.detached and not self.record.owner_running()

    def tear_down(self, report: Report = warn) -> None:
        """Stop its processes, remove its run dir and the state file."""
        stop_recorded_processes(self.record.live_processes(), report)
        shutil.rmtree(self.record.run_dir, ignore_errors=True)
        forget_state(self.state_path, self.record.nonce)


def state_path(state_dir: Path | None = None) -> Path:
    return (state_dir or state_dir_default()) / STATE_FILE


def load_recorded_run(state_dir: Path | None = None) -> RecordedRun | None:
    """None without a state file; NotOurs (RunDirGone) when it cannot be vouched for."""
    path = state_path(state_dir)
    if not os.path.lexists(path):
        return None
    key = run_key()
    state = unseal(read_owned_json(path, "state file"), key, f"state file {path}")
    if state.get("format") != RECORD_FORMAT or not isinstance(state.get("endpoints"), dict):
        raise NotOurs(f"state file {path} is not in this version's format")
    run_dir = Path(str(state.get("run_dir", "")))
    if not run_dir.is_absolute():
        raise NotOurs(f"state file {path} names a relative run dir {run_dir}")
    if not os.path.lexists(run_dir):
        raise RunDirGone(f"state file {path}: its run dir {run_dir} no longer exists")
    record = RunRecord.load(run_dir, key)
    if not hmac.compare_digest(str(state.get("nonce", "")), record.nonce):
        raise NotOurs(f"state file {path} and run record of {run_dir} come from different starts")
    return RecordedRun(path, state, record)


def forget_state(path: Path, nonce: str) -> None:
    """Remove the state file if it still records the start with ``nonce``."""
    try:
        state = unseal(read_owned_json(path, "state file"), run_key(), f"state file {path}")
    except (NotOurs, ServiceStartError):
        return
    if state.get("nonce") == nonce:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def drop_state(path: Path) -> None:
    """Remove a state file of ours whose run is gone: there is nothing left it could name."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_state(state_dir: Path | None = None) -> dict[str, Any] | None:
    """The state file's contents when this project wrote it (not checked against its run)."""
    path = state_path(state_dir)
    try:
        return unseal(read_owned_json(path, "state file"), run_key(), f"state file {path}")
    except (NotOurs, ServiceStartError):
        return None


def recorded_run(state_dir: Path | None = None, report: Report = warn) -> RecordedRun | None:
    """The sandbox the state file records, verified; None (and said why) when there is none
    this project can vouch for. A state file whose run dir is gone is removed."""
    try:
        return load_recorded_run(state_dir)
    except RunDirGone as exc:
        report(f"{exc}; removed the stale state file")
        drop_state(state_path(state_dir))
    except NotOurs as exc:
        report(f"{exc}: nothing it names was stopped or removed")
    except ServiceStartError as exc:
        report(exc.reason)
    return None


def find_running(state_dir: Path | None = None, report: Report = warn) -> Endpoints | None:
    """The endpoints of a sandbox started by ``sandbox up``, or None.

    A recorded sandbox with a service gone (or, when not detached, its owner gone) is stale:
    what is left of it is stopped and its state file and run dir removed, so that no half
    sandbox runs on untracked.
    """
    run = recorded_run(state_dir, report)
    if run is None:
        return None
    if run.stale():
        run.tear_down(report)
        return None
    try:
        return Endpoints.from_dict(run.state["endpoints"])
    except (KeyError, TypeError, ValueError) as exc:
        report(
            f"{run.state_path} records endpoints this version cannot read ({exc!r}), so a new "
            "sandbox is started instead; replace the old one with `spark-gate sandbox down` "
            "and `spark-gate sandbox up`"
        )
        return None


def stop_recorded(state_dir: Path | None = None, report: Report = warn) -> Endpoints | None:
    """Stop a recorded sandbox: its verified processes, its run dir, its state file."""
    run = recorded_run(state_dir, report)
    if run is None:
        return None
    run.tear_down(report)
    try:
        return Endpoints.from_dict(run.state["endpoints"])
    except (KeyError, TypeError, ValueError):
        return None
