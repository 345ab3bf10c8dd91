"""Processes a sandbox spawned: who they are, how to stop them, and holding on through Ctrl-C.

A recorded process is signalled only while it is still the process recorded: same boot, same
pid, same kernel start time, same executable, still leading its process group, and never
init, this process or one of its ancestors. A record without a start time matches nothing.
How a service is stopped (its first signal, and its tier: clients first, then PgBouncer, then
PostgreSQL) is its executor's to say (:class:`~spark_sandbox.services.process.ServiceProcess`),
and is recorded with its identity, so that a later start stops a killed run's orphans the
same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_sandbox.home import NotOurs

STOP_GRACE_SECONDS = 5.0
# Returned by ProcessIdentity.mismatch when nothing runs under the pid any more.
GONE = "gone"


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from the state field on, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_start_time(pid: int | None) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if gone or a zombie."""
    fields = _stat_fields(pid) if pid is not None and pid > 0 else None
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_exe(pid: int) -> str | None:
    """The executable ``pid`` runs, None when gone or not readable."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def process_group(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[2])


def boot_id() -> str:
    """This boot of the kernel: pids and start times from another boot mean nothing now."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def protected_pids() -> set[int]:
    """Processes no record may ever get signalled: init, this process and its ancestors."""
    protected = {0, 1, os.getpid(), os.getpgrp()}
    pid = os.getppid()
    while pid > 1 and pid not in protected:
        protected.add(pid)
        fields = _stat_fields(pid)
        pid = int(fields[1]) if fields else 0
    return protected


@dataclass(frozen=True)
class ProcessIdentity:
    """A recorded process: pid, kernel start time and executable, and how its executor stops
    it. A pid alone would name whatever process reuses it, and a damaged record may name any
    pid at all."""

    pid: int
    start: int | None
    exe: str | None
    stop_signal: int = signal.SIGTERM
    # Stopped in ascending tiers, each tier all at once: clients 0, PgBouncer 1, PostgreSQL 2.
    stop_tier: int = 0

    @classmethod
    def of(cls, pid: int, stop_signal: int = signal.SIGTERM, stop_tier: int = 0) -> ProcessIdentity:
        return cls(pid, process_start_time(pid), process_exe(pid), int(stop_signal), stop_tier)

    def to_json(self) -> list[Any]:
        return [self.pid, self.start, self.exe, self.stop_signal, self.stop_tier]

    @classmethod
    def from_json(cls, value: Any) -> ProcessIdentity:
        if (
            not isinstance(value, list)
            or len(value) not in (3, 5)
            or type(value[0]) is not int
            or not (value[1] is None or type(value[1]) is int)
            or not (value[2] is None or isinstance(value[2], str))
            or not all(type(v) is int for v in value[3:])
        ):
            raise NotOurs(
                f"recorded process {value!r} is not [pid, start time, executable, stop signal, "
                "stop tier]"
            )
        stop_signal, stop_tier = value[3:] or (signal.SIGTERM, 0)
        if stop_signal not in {int(s) for s in signal.Signals}:
            raise NotOurs(f"recorded process {value!r} names no signal ({stop_signal})")
        return cls(value[0], value[1], value[2], stop_signal, stop_tier)

    def mismatch(self) -> str | None:
        """None while the pid is still this very process; :data:`GONE` when nothing runs under
        it; otherwise why whatever runs there now is not it."""
        now = process_start_time(self.pid)
        if now is None:
            return GONE
        if self.start is None or self.exe is None:
            return (
                f"pid {self.pid}: no start time or executable was recorded, so a reused pid "
                "could not be told apart"
            )
        if now != self.start:
            return f"pid {self.pid} started at tick {now}, not {self.start}: a reused pid"
        exe = process_exe(self.pid)
        if exe != self.exe:
            return f"pid {self.pid} runs {exe or 'an unreadable executable'}, not {self.exe}"
        return None

    def refusal_to_signal(self) -> str | None:
        """None when the process group of this service may be signalled; else why not."""
        if self.pid in protected_pids():
            return f"pid {self.pid} is init, this process or one of its ancestors"
        problem = self.mismatch()
        if problem is None and process_group(self.pid) != self.pid:
            return f"pid {self.pid} no longer leads its own process group"
        return problem


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def stop_process_group(
    pgid: int, grace: float = STOP_GRACE_SECONDS, first: signal.Signals = signal.SIGTERM
) -> None:
    """Signal a service's process group (``first``), SIGKILL what is left after ``grace`` s."""
    if pgid <= 1:
        return  # killpg(0) is our own group and killpg(1) init's: never a service
    for sig in (first, signal.SIGKILL):
        if not group_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        # Zombies count as gone: their parent (maybe not this process) reaps them.
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


def finish_despite_interrupts(steps: Sequence[Callable[[], None]], attempts: int = 3) -> None:
    """Run each teardown step to its end even when Ctrl-C or SIGTERM lands meanwhile: the steps
    are idempotent, so an interrupted one simply runs again. The interrupt is re-raised after."""
    held: KeyboardInterrupt | None = None
    for step in steps:
        for _ in range(attempts):
            try:
                step()
                break
            except KeyboardInterrupt as exc:
                held = exc
    if held is not None:
        raise held


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM (how CI cancels a job) raises KeyboardInterrupt, so it runs the
    same teardown as Ctrl-C. Signal handlers belong to the main thread; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
