"""One supervised child process: start, readiness with a deadline, log capture, stop.

Modelled on mirakuru's executors: the child runs in its own session so that stopping it
takes its whole process group, readiness is polled until a monotonic deadline, an early exit
fails at once, and every failure carries the service's name, command and the last log lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 50

# Told of each child the moment it exists, before its readiness wait: the sandbox records the
# pid at once, so that its owner killed during a slow start still leaves the child findable.
# A context variable, so that only the starts made on a sandbox's behalf report to it.
spawn_observer: contextvars.ContextVar[Callable[[ServiceProcess], None] | None] = (
    contextvars.ContextVar("spawn_observer", default=None)
)


class ServiceStartError(RuntimeError):
    """A sandbox service did not become ready; the message says which, how and why."""

    def __init__(self, name: str, argv: Sequence[str], reason: str, log_tail: str) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(
            f"sandbox service {name!r} failed to start: {reason}\n"
            f"  command: {' '.join(self.argv)}\n"
            f"  last {LOG_TAIL_LINES} log lines:\n{log_tail or '  (log is empty)'}"
        )


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, indented, or '' when there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def run_as(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop to ``user`` (PostgreSQL and PgBouncer refuse to run as root).

    Empty when no user is asked for or we are not root (then we cannot switch anyway).
    """
    if user is None or os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class ServiceProcess:
    """A long-running child with a readiness probe, a log file and a clean stop.

    ``stop_tier`` orders a whole deployment's stop (clients 0, then connection poolers, then
    databases), and ``stop_signal`` is the first signal its process group gets when it is
    stopped by record rather than through this object (a killed owner's orphans).
    """

    stop_signal: int = signal.SIGTERM

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[], bool],
        ready_timeout: float = 15.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_tier: int = 0,
    ) -> None:
        self.name = name
        self.stop_tier = stop_tier
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Start the child and wait until ``ready()``; raise ServiceStartError otherwise."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                    **run_as(self.user),
                )
            except OSError as exc:
                raise ServiceStartError(self.name, self.argv, str(exc), "") from exc
        try:
            observer = spawn_observer.get()
            if observer is not None:
                observer(self)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.01
        while True:
            if self.proc is None:  # stop() was called from another thread: give up at once
                raise ServiceStartError(
                    self.name, self.argv, "stopped before it became ready", tail(self.log_path)
                )
            if self.proc.poll() is not None:
                raise ServiceStartError(
                    self.name,
                    self.argv,
                    f"exited early with code {self.proc.returncode}",
                    tail(self.log_path),
                )
            try:
                if self.ready():
                    return
            except ServiceStartError:  # the probe saw a failure that waiting will not cure
                raise
            except Exception:  # a probe that cannot connect yet is simply not ready
                pass
            if time.monotonic() >= deadline:
                raise ServiceStartError(
                    self.name,
                    self.argv,
                    f"not ready within {self.ready_timeout:.1f} s",
                    tail(self.log_path),
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL after ``timeout``; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
