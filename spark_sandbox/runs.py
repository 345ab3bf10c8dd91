"""Run dirs, the processes they record, and the state file: what a later start may clean up.

A sandbox start leaves two kinds of traces that outlive a killed owner: a run dir
(``run-<time>-<pid>`` under the run root, holding the cluster, logs and ``run.json``) and the
service processes, each leading its own process group. The next start, from any directory,
removes the traces of runs whose owner is gone, and ``sandbox down`` removes a detached one.
Neither trusts what it reads:

- Every run record and state file carries an HMAC made with this user's key
  (``<home>/sandbox.key``, 0600, created on first use). A file without it (damaged, hand-written,
  another user's) names nothing that is stopped or removed, and the refusal is reported.
- A run record names its own dir; it counts only in that dir, which must be a real directory
  (not a symlink) named like a run dir, with the record a regular file of this user.
- A recorded process is signalled only while it is still the process recorded: same boot, same
  pid, same kernel start time, same executable, still leading its process group, and never
  init, this process or one of its ancestors. A record without a start time matches nothing.

The home is ``<temp dir>/spark-sandbox-<uid>``: the same from every working directory, and
reachable by the ``postgres`` user (``$XDG_RUNTIME_DIR`` is 0700, so PostgreSQL could not run
below it). It is the default run root and state dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_sandbox.services.process import ServiceStartError

RUN_RECORD = "run.json"
STATE_FILE = "sandbox.json"
KEY_FILE = "sandbox.key"
KEY_BYTES = 32
RECORD_FORMAT = 2
# A run record or state file is a few kB; anything far larger is not one of ours.
MAX_RECORD_BYTES = 1 << 20
RUN_DIR_NAME = re.compile(r"run-[0-9T]+-[0-9]+")
STOP_GRACE_SECONDS = 5.0
# SIGTERM is PostgreSQL's *smart* shutdown, which waits for every client; SIGINT is *fast*.
# Its backends lead their own process groups, so only the postmaster can stop them cleanly.
FIRST_STOP_SIGNAL = {"postgres": signal.SIGINT}
# Stopped last, in this order, once every client of theirs is gone.
DATABASE_TIER = {"pgbouncer": 0, "postgres": 1}
# Returned by ProcessIdentity.mismatch when nothing runs under the pid any more.
GONE = "gone"

log = logging.getLogger("spark_sandbox")

Report = Callable[[str], None]


def warn(line: str) -> None:
    """The default report: a warning on the ``spark_sandbox`` logger (stderr when unconfigured)."""
    log.warning("spark sandbox: %s", line)


class NotOurs(Exception):
    """A run dir, run record or state file this project cannot vouch for; the message says why."""


class RunDirGone(NotOurs):
    """A state file of ours whose run dir no longer exists (removed by hand, or a reboot)."""


# -- the home and its key ---------------------------------------------------------------------


def home_dir() -> Path:
    """``<temp dir>/spark-sandbox-<uid>``: this user's sandbox home, from any directory."""
    return Path(tempfile.gettempdir()) / f"spark-sandbox-{os.geteuid()}"


def sandbox_home() -> Path:
    """:func:`home_dir`, created 0755 when missing. The temp dir is shared, so a home that is a
    symlink, belongs to someone else or is writable by others is refused, not used."""
    home = home_dir()
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o755)
    info = home.lstat()
    if (
        stat.S_ISLNK(info.st_mode)
        or not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & 0o022
    ):
        raise ServiceStartError(
            "sandbox",
            [],
            f"{home} is not a directory of uid {os.geteuid()} that only it may write (someone "
            "else may have created it); remove it, or set TMPDIR to another temp dir",
            "",
        )
    if stat.S_IMODE(info.st_mode) != 0o755:
        home.chmod(0o755)  # made under umask 077: the postgres user could not reach its runs
    return home


def run_key() -> bytes:
    """This user's key for run records and state files, made on first use (0600)."""
    path = sandbox_home() / KEY_FILE
    if not os.path.lexists(path):
        draft = path.with_name(f".{KEY_FILE}.{os.getpid()}.{threading.get_ident()}")
        draft.unlink(missing_ok=True)  # left by a killed start that had this pid
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(draft, path)  # never replaces a key another start made meanwhile
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _bad_key(path, exc.strerror or str(exc)) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        key = handle.read(KEY_BYTES + 1)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise _bad_key(path, "not a 0600 file of this user")
    if len(key) != KEY_BYTES:
        raise _bad_key(path, f"{len(key)} bytes, not {KEY_BYTES}")
    return key


def _bad_key(path: Path, why: str) -> ServiceStartError:
    return ServiceStartError(
        "sandbox",
        [],
        f"the sandbox key {path} cannot be used ({why}); remove it, then remove leftover run "
        f"dirs in {path.parent} by hand (they can no longer be verified)",
        "",
    )


def seal(document: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """``document`` with its HMAC-SHA256 under ``key`` in ``"mac"``."""
    body = {k: v for k, v in document.items() if k != "mac"}
    return {**body, "mac": _mac(body, key)}


def unseal(document: Any, key: bytes, what: str) -> dict[str, Any]:
    """``document`` without its MAC, if the MAC is right; NotOurs otherwise."""
    if not isinstance(document, dict):
        raise NotOurs(f"{what} is not a JSON object")
    body = {k: v for k, v in document.items() if k != "mac"}
    mac = document.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(body, key)):
        raise NotOurs(
            f"{what} does not carry this user's sandbox MAC (damaged, hand-written, or "
            "written with another key)"
        )
    return body


def _mac(body: Mapping[str, Any], key: bytes) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


# -- files ------------------------------------------------------------------------------------


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write to a temp name and rename, so readers never see half a file; owner-only, because
    the state holds the sandbox's DSNs with their passwords."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a killed writer with this pid: O_EXCL would refuse it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_owned_json(path: Path, what: str) -> Any:
    """JSON from a regular file of this user with a single link, never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotOurs(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise NotOurs(f"{what} {path} cannot be opened safely ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
            raise NotOurs(f"{what} {path} is not a regular, single-link file of this user")
        raw = handle.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:
        raise NotOurs(f"{what} {path} is larger than {MAX_RECORD_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise NotOurs(f"{what} {path} is not JSON") from None


# -- processes --------------------------------------------------------------------------------


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
    """A recorded process: pid, kernel start time and executable. A pid alone would name
    whatever process reuses it, and a damaged record may name any pid at all."""

    pid: int
    start: int | None
    exe: str | None

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        return cls(pid, process_start_time(pid), process_exe(pid))

    def to_json(self) -> list[Any]:
        return [self.pid, self.start, self.exe]

    @classmethod
    def from_json(cls, value: Any) -> ProcessIdentity:
        if (
            not isinstance(value, list)
            or len(value) != 3
            or type(value[0]) is not int
            or not (value[1] is None or type(value[1]) is int)
            or not (value[2] is None or isinstance(value[2], str))
        ):
            raise NotOurs(f"recorded process {value!r} is not [pid, start time, executable]")
        return cls(value[0], value[1], value[2])

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


def stop_recorded_processes(
    processes: Mapping[str, ProcessIdentity], report: Report = warn
) -> None:
    """Stop the recorded services that are still the processes recorded: clients all at once,
    then PgBouncer, then PostgreSQL; any other process under a recorded pid is left alone."""

    def stop(name: str) -> None:
        identity = processes[name]
        problem = identity.refusal_to_signal()
        if problem is None:
            stop_process_group(identity.pid, first=FIRST_STOP_SIGNAL.get(name, signal.SIGTERM))
        elif problem != GONE:
            report(f"left {name} (pid {identity.pid}) alone: {problem}")

    clients = [name for name in processes if name not in DATABASE_TIER]
    if clients:
        with ThreadPoolExecutor(len(clients), thread_name_prefix="sandbox-stop") as pool:
            list(pool.map(stop, clients))
    for name in sorted(set(processes) & set(DATABASE_TIER), key=DATABASE_TIER.__getitem__):
        stop(name)


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


# -- run records ------------------------------------------------------------------------------


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


# -- the state file ---------------------------------------------------------------------------


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
