"""SIGTERM (how CI cancels a job) stops the sandbox as Ctrl-C does, at any point of a start,
and a foreground sandbox is found and stopped from any directory.

Each test uses a temp dir of its own as the sandbox home (TMPDIR for the CLI children,
``tempfile.tempdir`` in process), so that it neither sees nor disturbs any other sandbox.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spark_sandbox.home import run_key
from spark_sandbox.processes import process_start_time
from spark_sandbox.runs import RUN_RECORD, RunRecord
from spark_sandbox.sandbox import Sandbox, sigterm_as_interrupt

REPO = Path(__file__).resolve().parents[2]
# A start takes a few seconds; a stop at most the services' grace periods.
START_SECONDS = 60.0
STOP_SECONDS = 45.0


@pytest.fixture
def home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    tmp_path_factory.getbasetemp()  # before tempfile's dir changes: pytest derives it from that
    temp = Path(tempfile.mkdtemp(prefix="spark-signals-"))
    temp.chmod(0o755)  # PostgreSQL runs as the postgres user below it
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv("SPARK_SANDBOX_STATE_DIR", raising=False)
    try:
        yield temp / f"spark-sandbox-{os.geteuid()}"
    finally:
        shutil.rmtree(temp, ignore_errors=True)


class Lines:
    """A child's stdout, line by line, waited for with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return
        pytest.fail(
            f"{text!r} not printed within {timeout:.0f} s; output:\n" + "\n".join(self.seen)
        )


def sandbox_cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spark_sandbox", "sandbox", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def running_record(home: Path) -> RunRecord:
    [run_dir] = [p for p in home.glob("run-*") if (p / RUN_RECORD).exists()]
    return RunRecord.load(run_dir, run_key())


def processes_naming(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (PostgreSQL, PgBouncer, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(path) in cmdline and process_start_time(int(entry.name)) is not None:
                found.append(f"{entry.name}: {cmdline}")
    return found


def assert_nothing_left(record: RunRecord) -> None:
    for name, process in record.processes.items():
        assert process.mismatch() is not None, f"{name} (pid {process.pid}) still runs"
    assert processes_naming(record.run_dir) == []
    assert not record.run_dir.exists()


def test_sigterm_stops_a_foreground_sandbox_found_from_another_directory(
    home: Path, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    up = sandbox_cli("up", "--foreground", cwd=tmp_path / "a")
    try:
        Lines(up).wait_for("running in the foreground", START_SECONDS)
        record = running_record(home)
        status = sandbox_cli("status", cwd=tmp_path / "b")
        out, err = status.communicate(timeout=30)
        assert status.returncode == 0, err
        assert str(record.run_dir) in out and "DOWN" not in out
        assert "secret" not in out and record.nonce not in out

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=STOP_SECONDS) == 0
    finally:
        if up.poll() is None:
            up.kill()
    assert_nothing_left(record)
    assert not (home / "sandbox.json").exists()


def test_sigterm_during_sandbox_up_stops_what_already_runs(home: Path, tmp_path: Path) -> None:
    up = sandbox_cli("up", cwd=tmp_path)
    try:
        Lines(up).wait_for("postgres ready", START_SECONDS)  # steps are still in flight
        record = running_record(home)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=STOP_SECONDS) == 1
        assert up.stderr is not None and "interrupted" in up.stderr.read()
    finally:
        if up.poll() is None:
            up.kill()
    # Whatever was spawned after the record was read is in the run dir's cmdlines or gone.
    assert_nothing_left(record)
    assert list(home.glob("run-*")) == []


@pytest.mark.parametrize("after_s", [0.0, 0.4, 1.5, 3.0])
def test_an_interrupt_anywhere_in_start_leaves_nothing(home: Path, after_s: float) -> None:
    """SIGTERM as KeyboardInterrupt at several moments of start(): before the run dir exists,
    while the first services come up, and while the last steps are in flight."""
    assert threading.current_thread() is threading.main_thread(), "signals need the main thread"
    sandbox = Sandbox()
    timer = threading.Timer(after_s, os.kill, (os.getpid(), signal.SIGTERM))
    # A SIGTERM that lands after the block would end the test process: ignore it outside.
    outer = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            timer.start()
            sandbox.start()
            time.sleep(STOP_SECONDS)  # started before the signal came: wait for it
    finally:
        timer.cancel()
        timer.join()
        time.sleep(0.1)  # a signal still pending is handled by `outer`, not the default
        signal.signal(signal.SIGTERM, outer)
        sandbox.stop()
    spawned = dict(sandbox._children)  # every child the start spawned, with its identity
    assert spawned or after_s < 1.0, "the interrupt came before anything ran: nothing tested"
    for name, process in spawned.items():
        assert process.mismatch() is not None, f"{name} (pid {process.pid}) still runs"
    assert processes_naming(home) == []
    assert list(home.glob("run-*")) == []
