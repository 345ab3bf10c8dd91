"""The sandbox orchestrator: runs the deployment's table of service specs, and stops it all.

Interface::

    from spark_sandbox.sandbox import Sandbox, Endpoints, find_running

    sandbox = Sandbox(run_root=None, defects=(), progress=None)
    endpoints = sandbox.start()      # every service ready, or ServiceStartError (nothing left)
    sandbox.stop()                   # idempotent; nothing left running
    with Sandbox(defects=["no_coep"]) as endpoints: ...
    find_running(state_dir=None)     # Endpoints of a sandbox started by `sandbox up`, or None

``Sandbox(run_root, defects, progress, services, drill_alert_for)``: ``run_root`` holds one
``run-<timestamp>-<pid>`` dir per start (default: this user's sandbox home,
``<temp dir>/spark-sandbox-<uid>``, the same from any working directory; it must be
traversable by the ``postgres`` user); ``defects`` are names from :mod:`spark_sandbox.defects`;
``progress`` gets one line per service as it becomes ready; ``services`` is the table to run
(:data:`spark_sandbox.deployment.SERVICES`); ``drill_alert_for`` (a Prometheus duration such
as ``"3s"``) caps every alerting rule's ``for:`` in the served ops copy, for drills that watch
rules fire from live traffic. ``stop()`` is safe at any moment, also from a
KeyboardInterrupt that lands in the middle of ``start()``: steps still starting a service stop
it themselves, and every child spawned is swept by its recorded identity.

The endpoints contract is :class:`spark_sandbox.endpoints.Endpoints`; run dirs, their records
and reaping are :mod:`spark_sandbox.runs`; the state file of a sandbox left running is
:mod:`spark_sandbox.state`. ``sandbox.detach(state_dir)`` leaves a started sandbox running and
writes the state file. Set ``SPARK_SANDBOX_KEEP=1`` to keep run dirs (logs, data) after
``stop()``, and ``SPARK_SANDBOX_OPS_DIR`` to serve another ops dir than the repo's ``ops/``.
"""

from __future__ import annotations

import contextvars
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import TracebackType

from spark_sandbox import ops_defects
from spark_sandbox.defects import Blueprint
from spark_sandbox.deployment import SERVICES, Plan, Spec, endpoints_of
from spark_sandbox.endpoints import Endpoints, redact
from spark_sandbox.home import run_key
from spark_sandbox.processes import ProcessIdentity, finish_despite_interrupts, sigterm_as_interrupt
from spark_sandbox.runs import (
    RunRecord,
    check_reachable_by_postgres,
    default_run_root,
    reap_stale_runs,
    run_dir_name,
)
from spark_sandbox.scrapes import await_first_scrapes
from spark_sandbox.services.process import ServiceProcess, ServiceStartError, spawn_observer, tail
from spark_sandbox.state import (
    STATE_FILE,
    find_running,
    forget_state,
    recorded_run,
    stop_recorded,
    write_state,
)
from spark_sandbox.stopping import Stoppable, stop_recorded_processes, stop_services
from spark_sandbox.wiring import allocate_ports, reload_config

__all__ = [
    "STATE_FILE",
    "Endpoints",
    "Sandbox",
    "find_running",
    "recorded_run",
    "redact",
    "sigterm_as_interrupt",
    "stop_recorded",
]

KEEP_ENV = "SPARK_SANDBOX_KEEP"
# A whole start is a few seconds; this only bounds a wedged step that has no deadline of its own.
START_DEADLINE_SECONDS = 120.0
# How long stop() lets steps that are still starting a service finish (they then stop it).
STEPS_FINISH_SECONDS = 30.0


class StartAbandoned(RuntimeError):
    """A step finished starting a service after stop() began; the service was stopped at once."""


class Sandbox:
    """One sandbox deployment: start it, use its endpoints, stop it (also as a context manager)."""

    def __init__(
        self,
        run_root: Path | None = None,
        defects: Sequence[str] = (),
        progress: Callable[[str], None] | None = None,
        services: Sequence[Spec] = SERVICES,
        drill_alert_for: str | None = None,
    ) -> None:
        self.blueprint = Blueprint.of(defects)  # an unknown name fails here, before anything
        if drill_alert_for is not None:
            # A drill, not a defect: rules fire from live traffic in seconds, not minutes.
            self.blueprint.ops_changes.append(ops_defects.AlertForCap(drill_alert_for))
        self.run_root = Path(run_root) if run_root is not None else default_run_root()
        self.defects = tuple(defects)
        self.progress = progress or (lambda line: None)
        self.services = tuple(services)
        self.endpoints: Endpoints | None = None
        self.run_dir: Path | None = None
        self._services: list[tuple[str, Stoppable]] = []
        # Every child spawned for this run, by name, from the moment it exists.
        self._children: dict[str, ProcessIdentity] = {}
        self._lock = threading.Lock()
        self._detached = False
        self._stopping = threading.Event()
        self._step_futures: list[Future[None]] = []
        self._plan: Plan | None = None
        self._nonce = secrets.token_hex(16)
        self._key: bytes | None = None
        self._state_path: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Endpoints:
        """Start every service in dependency order; on any failure stop them all and re-raise."""
        if self.run_dir is not None or self._stopping.is_set():
            raise RuntimeError("this Sandbox was already started; create a new one")
        began = time.monotonic()
        observing = spawn_observer.set(self._spawned)
        try:
            self._key = run_key()
            self.run_root.mkdir(parents=True, exist_ok=True)
            self.run_root = self.run_root.resolve()
            check_reachable_by_postgres(self.run_root)
            for removed in reap_stale_runs(self.run_root, self.progress):
                self.progress(f"removed stale run dir {removed}")
            # Named before it exists, so that stop() removes it whenever an interrupt lands.
            self.run_dir = self.run_root / run_dir_name()
            self.run_dir.mkdir(mode=0o755)
            with self._lock:
                self._write_run_record()
            # PostgreSQL (as the postgres user) writes its cluster, archive and sockets below it.
            from spark_sandbox.services.postgres import chown_to_service_user

            chown_to_service_user(self.run_dir)
            plan = Plan(
                run_dir=self.run_dir,
                blueprint=self.blueprint,
                ops_dir=ops_defects.prepare_ops_dir(self.blueprint.ops_changes, self.run_dir),
                ports=allocate_ports(),
                values={"toxiproxy_token": secrets.token_urlsafe(32)},
            )
            self._plan = plan
            self._run_specs(plan)
            with self._lock:
                pids = {name: s.pid for name, s in self._services if s.pid is not None}
            self.endpoints = endpoints_of(plan, pids)
            self.progress(f"sandbox ready in {time.monotonic() - began:.2f} s: {self.run_dir}")
            return self.endpoints
        except BaseException as exc:
            self.stop()
            if isinstance(exc, ServiceStartError | KeyboardInterrupt | SystemExit):
                raise
            step = "ops" if isinstance(exc, ops_defects.OpsDefectError) else "sandbox"
            raise ServiceStartError(step, [], f"{type(exc).__name__}: {exc}", "") from exc
        finally:
            spawn_observer.reset(observing)

    def stop(self) -> None:
        """Stop every started service, sweep their process groups, remove the run dir.

        Tier by tier (:mod:`spark_sandbox.stopping`): the clients all at once, then PgBouncer,
        then PostgreSQL. Safe at any point of start() (from its KeyboardInterrupt too) and
        idempotent; a Ctrl-C during stop() is held until it is done.
        """
        self._stopping.set()
        with self._lock:
            if self._detached:
                return
        finish_despite_interrupts(
            [
                self._let_steps_finish,
                self._stop_services,
                self._sweep_children,
                self._forget_state,
                self._remove_run_dir,
            ]
        )

    def _let_steps_finish(self) -> None:
        # A step in the middle of a readiness wait stops its service itself once it sees
        # _stopping (see started and _spawned); waiting here keeps the sweep below last.
        with self._lock:
            # A step cancelled before it ran never runs; and wait() would not count it as done
            # (cancel() alone does not notify waiters), holding the stop for the full timeout.
            futures = [f for f in self._step_futures if not f.cancelled()]
        if futures:
            wait(futures, timeout=STEPS_FINISH_SECONDS)

    def _stop_services(self) -> None:
        with self._lock:
            services, self._services = self._services, []
        stop_services(services, self.progress)

    def _sweep_children(self) -> None:
        """Whatever was spawned and still runs as itself: also children never registered,
        such as one whose start was interrupted mid-way."""
        with self._lock:
            children = dict(self._children)
        stop_recorded_processes(children, self.progress)

    def _forget_state(self) -> None:
        if self._state_path is not None:
            forget_state(self._state_path, self._nonce)
            self._state_path = None

    def _remove_run_dir(self) -> None:
        run_dir, self.run_dir = self.run_dir, None
        if run_dir is not None and not os.environ.get(KEEP_ENV):
            shutil.rmtree(run_dir, ignore_errors=True)

    def record_state(self, state_dir: Path | None = None) -> Path:
        """Write the state file that lets ``sandbox status|down`` and later gate runs find this
        sandbox; stop() removes it again unless the sandbox was detached."""
        if self.endpoints is None or self.run_dir is None or self._key is None:
            raise RuntimeError("only a started sandbox can be recorded")
        with self._lock:
            record = self._run_record()
        path = write_state(record, self.endpoints.to_dict(), self._key, state_dir)
        self._state_path = path
        return path

    def detach(self, state_dir: Path | None = None) -> Path:
        """Leave the services running past this process and record them in the state file."""
        path = self.record_state(state_dir)
        with self._lock:
            self._detached = True
            self._write_run_record()
            self._services = []
        return path

    def await_first_scrapes(self) -> None:
        """Wait until Prometheus has scraped every job once (as ``sandbox up`` does)."""
        if self._plan is None:
            raise RuntimeError("start() the sandbox first")
        await_first_scrapes(self._plan, self.report)

    def exited_services(self) -> list[str]:
        """Services of this running sandbox whose process is no longer the one started."""
        with self._lock:
            services = {name: self._children.get(name) for name, _ in self._services}
        return [n for n, ident in services.items() if ident is None or ident.mismatch() is not None]

    def reload(self, service: str) -> None:
        """Make ``prometheus`` or ``alertmanager`` re-read its config files (after a rule or
        routing change): SIGHUP to the process this sandbox started, confirmed by its metrics."""
        if self._plan is None:
            raise RuntimeError("start() the sandbox first")
        with self._lock:
            pid = next((s.pid for n, s in self._services if n == service), None)
        if pid is None or service not in ("prometheus", "alertmanager"):
            raise ValueError(f"{service!r} is not a running prometheus or alertmanager")
        log_path = self._plan.run_dir / "logs" / f"{service}.log"
        reload_config(service, pid, self._plan.url(service), log_path)

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the specs call (spark_sandbox.deployment.Launch) ---------------------------------

    def started(self, name: str, service: Stoppable) -> None:
        """Register a service as it starts, so that a failure later still stops it; one that
        finishes starting after stop() began is stopped at once."""
        with self._lock:
            abandoned = self._stopping.is_set()
            if not abandoned:
                self._services.append((name, service))
        if abandoned:
            stop_services([(name, service)], self.progress)
            raise StartAbandoned(f"{name}: the sandbox was stopped while it started")

    def spawn(self, name: str, service: ServiceProcess, address: str) -> None:
        began = time.monotonic()
        # Registered before start(): start() stops a child that fails, and stop() is idempotent.
        self.started(name, service)
        service.start()
        self.report(f"{name} ready on {address}", began)

    def report(self, what: str, began: float) -> None:
        self.progress(f"{what} ({time.monotonic() - began:.2f} s)")

    # -- bookkeeping -------------------------------------------------------------------------

    def _spawned(self, service: ServiceProcess) -> None:
        """Record a child in run.json the moment it exists (before its readiness wait)."""
        assert service.pid is not None
        identity = ProcessIdentity.of(service.pid, service.stop_signal, service.stop_tier)
        with self._lock:
            if identity.start is not None and identity.exe is not None:
                self._children[service.name] = identity  # else it has exited already
                self._write_run_record()
            abandoned = self._stopping.is_set()
        if abandoned:  # raised inside ServiceProcess.start(), which then stops the child
            raise StartAbandoned(f"{service.name}: the sandbox was stopped while it started")

    def _run_record(self) -> RunRecord:
        assert self.run_dir is not None
        return RunRecord(
            run_dir=self.run_dir,
            nonce=self._nonce,
            owner=ProcessIdentity.of(os.getpid()),
            detached=self._detached,
            processes=dict(self._children),
        )

    def _write_run_record(self) -> None:
        """Hold self._lock: every writer rewrites the whole record."""
        if self.run_dir is not None and self._key is not None:
            self._run_record().write(self._key)

    def _run_specs(self, plan: Plan) -> None:
        """Run each spec once the specs it comes after are done; independent ones in parallel."""
        pending = {spec.name: spec for spec in self.services}
        done: set[str] = set()
        running: dict[Future[None], Spec] = {}
        failure: BaseException | None = None
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        pool = ThreadPoolExecutor(max_workers=len(pending), thread_name_prefix="sandbox")
        try:
            while pending or running:
                if failure is None:
                    for name, spec in list(pending.items()):
                        if set(spec.after) <= done:
                            # Each spec sees this start's spawn observer (a context variable).
                            context = contextvars.copy_context()
                            future = pool.submit(context.run, spec.start, plan, self)
                            with self._lock:
                                self._step_futures.append(future)
                            running[future] = spec
                            del pending[name]
                if not running:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    late = ", ".join(sorted(spec.name for spec in running.values()))
                    raise ServiceStartError(late, [], "sandbox start deadline passed", "")
                finished, _ = wait(running, timeout=remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    spec = running.pop(future)
                    error = future.exception()
                    if error is None:
                        done.add(spec.name)
                    elif failure is None:
                        failure = as_start_error(spec, error, plan.run_dir)
        finally:
            # Not shutdown(wait=True): on Ctrl-C the running steps are stop()'s to wind down.
            pool.shutdown(wait=False, cancel_futures=True)
        if failure is not None:
            raise failure
        if pending:
            raise ServiceStartError(", ".join(pending), [], "steps never became startable", "")


def as_start_error(spec: Spec, error: BaseException, run_dir: Path) -> BaseException:
    """A spec's failure as a ServiceStartError naming it, with the log that explains it."""
    if isinstance(error, ServiceStartError | KeyboardInterrupt | SystemExit):
        return error
    wrapped = ServiceStartError(
        spec.name,
        [],
        f"{type(error).__name__}: {error}",
        tail(run_dir / "logs" / f"{spec.log_name}.log"),
    )
    wrapped.__cause__ = error
    return wrapped
