"""State files and run records are not trusted blindly: hand-written, damaged or misplaced
ones make the sandbox stop nothing and remove nothing, and say so.

No services here: the "services" are sleeping processes, each leading its own process group as
a sandbox service does, and the sandbox home is a temp dir of each test's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from spark_sandbox.home import run_key, seal
from spark_sandbox.processes import ProcessIdentity, process_start_time
from spark_sandbox.runs import RUN_RECORD, RunRecord, reap_stale_runs
from spark_sandbox.state import STATE_FILE, find_running, stop_recorded, write_state

RUN_NAME = "run-20260101T000000000000-{}"


@pytest.fixture
def home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """This test's own sandbox home: run root, state dir and key."""
    tmp_path_factory.getbasetemp()  # before tempfile's dir changes: pytest derives it from that
    temp = Path(tempfile.mkdtemp(prefix="spark-run-records-"))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.delenv("SPARK_SANDBOX_STATE_DIR", raising=False)
    try:
        yield temp / f"spark-sandbox-{os.geteuid()}"
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """An innocent process that leads its own process group, as a sandbox service would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def signals_to_us() -> Iterator[list[int]]:
    """Stop signals that reach this test process (they would otherwise end it)."""
    received: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def precious_dir(where: Path) -> Path:
    """A directory with content that no sandbox command may remove."""
    where.mkdir(parents=True)
    (where / "keep.txt").write_text("not the sandbox's\n")
    return where


def hand_written_state(home: Path, run_dir: Path, processes: dict[str, list[Any]]) -> Path:
    """A state file and run record in the right places and shapes, but without the MAC."""
    record = {
        "format": 2,
        "run_dir": str(run_dir),
        "nonce": "guessed",
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "owner": [1, process_start_time(1), "/sbin/init"],
        "detached": True,
        "processes": processes,
    }
    if run_dir.is_dir() and not run_dir.is_symlink():
        (run_dir / RUN_RECORD).write_text(json.dumps(record))
    state = {"format": 2, "run_dir": str(run_dir), "nonce": "guessed", "endpoints": {}}
    home.mkdir(exist_ok=True)
    path = home / STATE_FILE
    path.write_text(json.dumps(state))
    path.chmod(0o600)
    return path


def identity_list(pid: int) -> list[Any]:
    return ProcessIdentity.of(pid).to_json()


def run_everything(home: Path) -> list[str]:
    """Every command that acts on recorded runs: what they reported."""
    lines: list[str] = []
    assert find_running(report=lines.append) is None
    assert stop_recorded(report=lines.append) is None
    list(reap_stale_runs(home, lines.append))
    return lines


def assert_untouched(victim: subprocess.Popen[bytes], *dirs: Path) -> None:
    assert victim.poll() is None, "an innocent process was signalled"
    for directory in dirs:
        assert (directory / "keep.txt").exists() or (directory / RUN_RECORD).exists(), directory


# -- hand-written state files -------------------------------------------------------------------


HOSTILE_PROCESSES: dict[str, Callable[[int], list[Any]]] = {
    "init": lambda victim: identity_list(1),
    "this test process": lambda victim: identity_list(os.getpid()),
    "a live process with its true identity": identity_list,
    "a live process without a start time": lambda victim: [victim, None, None],
}


@pytest.mark.parametrize("names", list(HOSTILE_PROCESSES))
def test_a_hand_written_state_file_stops_nothing_and_removes_nothing(
    names: str,
    home: Path,
    victim: subprocess.Popen[bytes],
    signals_to_us: list[int],
) -> None:
    run_key()
    run_dir = home / RUN_NAME.format(1)
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("a run dir someone else laid out\n")
    state = hand_written_state(home, run_dir, {"api": HOSTILE_PROCESSES[names](victim.pid)})
    lines = run_everything(home)
    assert_untouched(victim, run_dir)
    assert signals_to_us == []
    assert state.exists(), "a state file this project cannot vouch for is not deleted either"
    assert any("does not carry this user's sandbox MAC" in line for line in lines), lines
    assert any("nothing it names was stopped or removed" in line for line in lines), lines


@pytest.mark.parametrize(
    "where",
    ["outside the run root", "a run-* dir elsewhere", "a symlink in the run root"],
)
def test_a_state_file_aimed_at_another_directory_removes_nothing(
    where: str, home: Path, tmp_path: Path, victim: subprocess.Popen[bytes]
) -> None:
    run_key()
    precious = precious_dir(tmp_path / "precious")
    elsewhere = precious_dir(tmp_path / RUN_NAME.format(2))
    aimed_at = {
        "outside the run root": precious,
        "a run-* dir elsewhere": elsewhere,
        "a symlink in the run root": home / RUN_NAME.format(3),
    }[where]
    if where == "a symlink in the run root":
        aimed_at.symlink_to(precious, target_is_directory=True)
    hand_written_state(home, aimed_at, {"api": identity_list(victim.pid)})
    run_everything(home)
    assert_untouched(victim, precious, elsewhere)
    assert (precious / "keep.txt").read_text() == "not the sandbox's\n"


# -- records sealed with the right key, naming what must never be touched ------------------------


def sealed_run(
    home: Path, number: int, processes: dict[str, ProcessIdentity], owner: ProcessIdentity
) -> RunRecord:
    run_dir = home / RUN_NAME.format(number)
    run_dir.mkdir(parents=True)
    record = RunRecord(run_dir, f"nonce-{number}", owner, detached=True, processes=processes)
    record.write(run_key())
    return record


def test_a_sealed_record_still_never_gets_init_or_this_process_signalled(
    home: Path, signals_to_us: list[int]
) -> None:
    own = ProcessIdentity.of(os.getpid())
    processes = {
        # Its executable may be unreadable (another namespace): pid 1 is refused whatever
        # the record says of it.
        "api": ProcessIdentity(1, process_start_time(1), "/sbin/init"),
        "feed": own,
        "outbox": ProcessIdentity.of(os.getppid()),
    }
    record = sealed_run(home, 1, processes, owner=ProcessIdentity(1, 1, "/sbin/init"))
    write_state(record, {}, run_key())
    lines: list[str] = []
    stop_recorded(report=lines.append)
    assert signals_to_us == []
    assert process_start_time(1) is not None
    refused = [line for line in lines if "init, this process or one of its ancestors" in line]
    assert len(refused) == 3, lines


def test_a_sealed_record_without_a_start_time_stops_and_removes_nothing(
    home: Path, victim: subprocess.Popen[bytes]
) -> None:
    gone_owner = ProcessIdentity(2**22 + 1, 1, sys.executable)  # beyond pid_max: never alive
    unknown = ProcessIdentity(victim.pid, None, None)
    record = sealed_run(home, 1, {"api": unknown}, owner=gone_owner)
    write_state(record, {}, run_key())
    lines = run_everything(home)
    assert_untouched(victim, record.run_dir)
    assert any("without a start time" in line for line in lines), lines


def test_a_reused_pid_or_another_program_is_never_signalled(
    home: Path, victim: subprocess.Popen[bytes]
) -> None:
    real = ProcessIdentity.of(victim.pid)
    assert real.start is not None
    gone_owner = ProcessIdentity(2**22 + 1, 1, sys.executable)
    sealed_run(home, 1, {"api": ProcessIdentity(victim.pid, real.start + 1, real.exe)}, gone_owner)
    sealed_run(
        home, 2, {"api": ProcessIdentity(victim.pid, real.start, "/usr/sbin/other")}, gone_owner
    )
    lines: list[str] = []
    removed = list(reap_stale_runs(home, lines.append))
    assert victim.poll() is None
    # The runs are ours and their processes gone, so their dirs go; the pid is not signalled.
    assert removed == [home / RUN_NAME.format(1), home / RUN_NAME.format(2)]
    assert any("a reused pid" in line for line in lines), lines
    assert any("/usr/sbin/other" in line for line in lines), lines


def test_a_sealed_record_copied_into_another_dir_is_not_that_dir_s_record(
    home: Path, tmp_path: Path, victim: subprocess.Popen[bytes]
) -> None:
    record = sealed_run(
        home, 1, {"api": ProcessIdentity.of(victim.pid)}, ProcessIdentity(2**22 + 1, 1, "x")
    )
    copy = precious_dir(tmp_path / RUN_NAME.format(1))
    shutil.copy(record.run_dir / RUN_RECORD, copy / RUN_RECORD)
    state = seal(
        {"format": 2, "run_dir": str(copy), "nonce": record.nonce, "endpoints": {}}, run_key()
    )
    (home / STATE_FILE).write_text(json.dumps(state))
    (home / STATE_FILE).chmod(0o600)
    lines: list[str] = []
    assert stop_recorded(report=lines.append) is None
    assert_untouched(victim, copy)
    assert any("was written for" in line for line in lines), lines


def test_a_state_file_and_a_record_of_different_starts_do_not_pair(
    home: Path, victim: subprocess.Popen[bytes]
) -> None:
    record = sealed_run(
        home, 1, {"api": ProcessIdentity.of(victim.pid)}, ProcessIdentity.of(os.getpid())
    )
    other = RunRecord(record.run_dir, "another-start", record.owner, True, record.processes)
    write_state(other, {}, run_key())
    lines: list[str] = []
    assert stop_recorded(report=lines.append) is None
    assert_untouched(victim, record.run_dir)
    assert any("different starts" in line for line in lines), lines


def test_the_files_that_hold_secrets_are_owner_only(home: Path) -> None:
    record = sealed_run(home, 1, {}, ProcessIdentity.of(os.getpid()))
    state = write_state(record, {"postgres_dsn": "password=secret"}, run_key())
    for path in (state, home / "sandbox.key", record.run_dir / RUN_RECORD):
        info = path.stat()
        assert (oct(info.st_mode & 0o777), info.st_uid) == ("0o600", os.geteuid()), path
