"""The sandbox orchestrator: every service of a Spark deployment on loopback, in order.

Interface used by the gate plugin::

    from spark_sandbox.sandbox import Sandbox, Endpoints, find_running

    sandbox = Sandbox(run_root=None, defects=(), progress=None)
    endpoints = sandbox.start()      # every service ready, or ServiceStartError (nothing left)
    sandbox.stop()                   # idempotent; nothing left running
    with Sandbox(defects=["no_coep"]) as endpoints: ...
    find_running(state_dir=None)     # Endpoints of a sandbox started by `sandbox up`, or None

``Sandbox(run_root, defects, progress)``: ``run_root`` holds one ``run-<timestamp>-<pid>`` dir per
start (default: this user's sandbox home, ``<temp dir>/spark-sandbox-<uid>``, the same from any
working directory; it must be traversable by the ``postgres`` user); ``defects`` are names from
:mod:`spark_sandbox.defects`; ``progress`` gets one line per service as it becomes ready.
``stop()`` is safe at any moment, also from a KeyboardInterrupt that lands in the middle of
``start()``: steps still starting a service stop it themselves, and every child spawned is
swept by its recorded identity.

:class:`Endpoints` is a frozen dataclass (``to_dict()`` / ``from_dict()``): ``api_url`` (the API
behind the fault proxy), ``web_url`` (its web page), ``third_party_origin``, ``toxiproxy_url``,
``toxiproxy_token`` (the fault proxy's per-run bearer token: a secret, like the DSN passwords),
``prometheus_url``, ``alertmanager_url``, ``alert_sink_url``, ``ntp_server`` (``host:port``),
``postgres_dsn`` (superuser, direct, with its per-run password), ``app_dsn`` (what the API
uses: fault proxy -> PgBouncer transaction pool), ``listen_dsn`` (PgBouncer session pool),
``pgbouncer_admin_dsn``, ``migrations_dir``, ``ops_dir`` (the ops artefacts this deployment
serves), ``run_dir``, ``defects``, ``pids`` (service name -> pid; each service leads its own
process group) and ``release_environment`` (the Python environment the deployment releases,
for its SBOM).

State of a sandbox left running (``sandbox up``): ``<state_dir>/sandbox.json``, where
``state_dir`` is ``$SPARK_SANDBOX_STATE_DIR`` or the sandbox home. Each run dir holds
``run.json`` (owner, detached flag, every spawned process with its start time and executable),
which is how a later start recognises and removes the leftovers of a killed run; both files
are sealed with this user's key and checked before anything they name is touched
(:mod:`spark_sandbox.runs`). ``sandbox.detach(state_dir)`` leaves a started sandbox running
and writes the state file; ``stop_recorded(state_dir)`` stops what it records;
``redact(text)`` hides DSN passwords. Set ``SPARK_SANDBOX_KEEP=1`` to keep run dirs (logs,
data) after ``stop()``, and ``SPARK_SANDBOX_OPS_DIR`` to serve another ops dir than the repo's
``ops/``.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from spark_sandbox import ops_defects, supply_chain
from spark_sandbox.defects import for_layer, resolve
from spark_sandbox.runs import (
    DATABASE_TIER,
    FIRST_STOP_SIGNAL,
    RUN_RECORD,
    STATE_FILE,
    NotOurs,
    ProcessIdentity,
    RecordedRun,
    Report,
    RunDirGone,
    RunRecord,
    drop_state,
    finish_despite_interrupts,
    forget_state,
    group_members,
    home_dir,
    load_recorded_run,
    process_start_time,
    read_owned_json,
    reap_stale_runs,
    run_dir_name,
    run_key,
    sigterm_as_interrupt,
    state_path,
    stop_process_group,
    stop_recorded_processes,
    unseal,
    warn,
    write_state,
)
from spark_sandbox.services.ports import free_port, is_listening
from spark_sandbox.services.process import (
    ServiceProcess,
    ServiceStartError,
    spawn_observer,
    tail,
)

__all__ = [
    "RUN_RECORD",
    "STATE_FILE",
    "Endpoints",
    "Sandbox",
    "find_running",
    "group_members",
    "process_start_time",
    "reap_stale_runs",
    "redact",
    "sigterm_as_interrupt",
    "stop_recorded",
]

HOST = "127.0.0.1"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
KEEP_ENV = "SPARK_SANDBOX_KEEP"
# A whole start is a few seconds; this only bounds a wedged step that has no deadline of its own.
START_DEADLINE_SECONDS = 120.0
# How long stop() lets steps that are still starting a service finish (they then stop it).
STEPS_FINISH_SECONDS = 30.0
# Prometheus and Alertmanager confirm a SIGHUP reload in their metrics within a second or two.
RELOAD_SECONDS = 10.0
CHAOSPROXY_TOKEN_ENV = "SPARK_CHAOSPROXY_TOKEN"
PYTHON_READY_SECONDS = 20.0
# Steps that are not a service themselves: whose log explains their failure.
STEP_LOGS = {
    "migrate": "postgres",
    "proxies": "chaosproxy",
    "db_sessions": "long_running_query",
    "exporters": "pgbouncer_exporter",
    "scraping": "prometheus",
}
# Defect layers a sandbox start applies; supply_chain ones change the release environment
# that the B9 check generates the SBOM from (spark_sandbox.supply_chain).
APPLIED_LAYERS = frozenset({"app", "db", "pgbouncer", "ntp", "ops", "supply_chain"})
# Prometheus applies discovered targets every 5 s, then scrapes each within one 1 s interval.
SCRAPE_READY_SECONDS = 20.0


class Stoppable(Protocol):
    """What the orchestrator needs from a started service: its pid and a clean stop."""

    @property
    def pid(self) -> int | None: ...

    def stop(self, timeout: float = ...) -> None: ...


@dataclass(frozen=True)
class Endpoints:
    """Where each part of one running sandbox answers. The DSNs carry passwords: pass them
    through :func:`redact` before printing or storing them anywhere but the state file."""

    api_url: str
    web_url: str
    third_party_origin: str
    toxiproxy_url: str
    prometheus_url: str
    alertmanager_url: str
    alert_sink_url: str
    ntp_server: str
    postgres_dsn: str
    app_dsn: str
    listen_dsn: str
    pgbouncer_admin_dsn: str
    migrations_dir: Path
    ops_dir: Path
    run_dir: Path
    defects: tuple[str, ...] = ()
    pids: Mapping[str, int] = field(default_factory=dict)
    # The Python environment this deployment releases (a venv dir): what its SBOM describes.
    release_environment: str = ""
    # The fault proxy's bearer token. Its key ends in "_token" so the gate redacts it as it
    # does DSN passwords; kept out of repr() for the same reason.
    toxiproxy_token: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: paths as strings, defects as a list."""
        data = asdict(self)
        for name in ("migrations_dir", "ops_dir", "run_dir"):
            data[name] = str(data[name])
        data["defects"] = list(self.defects)
        data["pids"] = dict(self.pids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoints:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("migrations_dir", "ops_dir", "run_dir"):
            values[name] = Path(values[name])
        values["defects"] = tuple(values.get("defects", ()))
        values["pids"] = {str(k): int(v) for k, v in values.get("pids", {}).items()}
        return cls(**values)


@dataclass
class Plan:
    """Ports, addresses and results filled in as the steps of one start run."""

    run_dir: Path
    defects: tuple[str, ...]
    ops_dir: Path
    ports: dict[str, int]
    values: dict[str, Any] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}"


@dataclass(frozen=True)
class Step:
    name: str
    after: tuple[str, ...]
    run: Callable[[Plan], None]


class StartAbandoned(RuntimeError):
    """A step finished starting a service after stop() began; the service was stopped at once."""


class Sandbox:
    """One sandbox deployment: start it, use its endpoints, stop it (also as a context manager)."""

    def __init__(
        self,
        run_root: Path | None = None,
        defects: Sequence[str] = (),
        progress: Callable[[str], None] | None = None,
    ) -> None:
        resolve(defects)  # an unknown name fails here, before anything starts
        self.run_root = Path(run_root) if run_root is not None else default_run_root()
        self.defects = tuple(defects)
        self.progress = progress or (lambda line: None)
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
            for defect in resolve(self.defects):
                if defect.layer not in APPLIED_LAYERS:
                    self.progress(f"defect {defect.name} ({defect.layer} layer) is not applied")
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
                defects=self.defects,
                ops_dir=ops_defects.prepare_ops_dir(self.defects, self.run_dir),
                ports=allocate_ports(),
                values={"toxiproxy_token": secrets.token_urlsafe(32)},
            )
            self._plan = plan
            self._run_steps(plan, self._steps())
            self.endpoints = self._endpoints(plan)
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

        The clients go first, all at once; then PgBouncer, then PostgreSQL, so that no client
        holds a connection the database would wait for. Safe at any point of start() (from its
        KeyboardInterrupt too) and idempotent; a Ctrl-C during stop() is held until it is done.
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
        # _stopping (see _started and _spawned); waiting here keeps the sweep below last.
        with self._lock:
            futures = list(self._step_futures)
        if futures:
            wait(futures, timeout=STEPS_FINISH_SECONDS)

    def _stop_services(self) -> None:
        with self._lock:
            services, self._services = self._services, []
        clients = [(n, s) for n, s in services if n not in DATABASE_TIER]
        databases = [(n, s) for n, s in services if n in DATABASE_TIER]
        databases.sort(key=lambda entry: DATABASE_TIER[entry[0]])
        if clients:
            with ThreadPoolExecutor(len(clients), thread_name_prefix="sandbox-stop") as pool:
                list(pool.map(lambda entry: self._stop_one(*entry), clients))
        for name, service in databases:
            self._stop_one(name, service)

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

    def _stop_one(self, name: str, service: Stoppable) -> None:
        pid = service.pid
        try:
            service.stop()
        except Exception as exc:  # one stubborn service must not keep the others running
            self.progress(f"{name}: stop failed ({exc}); killing its process group")
        if pid is not None:
            stop_process_group(pid, first=FIRST_STOP_SIGNAL.get(name, signal.SIGTERM))

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

    # -- bookkeeping -------------------------------------------------------------------------

    def _started(self, name: str, service: Stoppable) -> None:
        """Register a service as it starts, so that a failure later still stops it; one that
        finishes starting after stop() began is stopped at once."""
        with self._lock:
            abandoned = self._stopping.is_set()
            if not abandoned:
                self._services.append((name, service))
        if abandoned:
            self._stop_one(name, service)
            raise StartAbandoned(f"{name}: the sandbox was stopped while it started")

    def _spawned(self, service: ServiceProcess) -> None:
        """Record a child in run.json the moment it exists (before its readiness wait)."""
        assert service.pid is not None
        identity = ProcessIdentity.of(service.pid)
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

    def _spawn(self, plan: Plan, name: str, service: ServiceProcess, address: str) -> None:
        began = time.monotonic()
        # Registered before start(): start() stops a child that fails, and stop() is idempotent.
        self._started(name, service)
        service.start()
        self._report(f"{name} ready on {address}", began)

    def _report(self, what: str, began: float) -> None:
        self.progress(f"{what} ({time.monotonic() - began:.2f} s)")

    def _run_steps(self, plan: Plan, steps: Sequence[Step]) -> None:
        """Run each step once the steps it comes after are done; independent ones in parallel."""
        pending = {step.name: step for step in steps}
        done: set[str] = set()
        running: dict[Future[None], str] = {}
        failure: BaseException | None = None
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        pool = ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="sandbox")
        try:
            while pending or running:
                if failure is None:
                    for name, step in list(pending.items()):
                        if set(step.after) <= done:
                            # Each step sees this start's spawn observer (a context variable).
                            context = contextvars.copy_context()
                            future = pool.submit(context.run, step.run, plan)
                            with self._lock:
                                self._step_futures.append(future)
                            running[future] = name
                            del pending[name]
                if not running:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    late = ", ".join(sorted(running.values()))
                    raise ServiceStartError(late, [], "sandbox start deadline passed", "")
                finished, _ = wait(running, timeout=remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    error = future.exception()
                    if error is None:
                        done.add(name)
                    elif failure is None:
                        failure = as_start_error(name, error, plan.run_dir)
        finally:
            # Not shutdown(wait=True): on Ctrl-C the running steps are stop()'s to wind down.
            pool.shutdown(wait=False, cancel_futures=True)
        if failure is not None:
            raise failure
        if pending:
            raise ServiceStartError(", ".join(pending), [], "steps never became startable", "")

    # -- the deployment ----------------------------------------------------------------------

    def _steps(self) -> list[Step]:
        """The start order; steps with no pending predecessor start at once, in list order."""
        return [
            # Prometheus applies discovered targets on a fixed 5 s tick after it starts, so it
            # goes first (its config needs only the reserved ports) and the wait overlaps the
            # rest; PostgreSQL's initdb is the other long pole.
            Step("prometheus", (), self._start_prometheus),
            Step("postgres", (), self._start_postgres),
            Step("alert_sink", (), self._start_alert_sink),
            Step("alertmanager", ("alert_sink",), self._start_alertmanager),
            Step("ntp", (), self._start_ntp),
            Step("chaosproxy", (), self._start_chaosproxy),
            Step("feed", (), self._start_feed),
            Step("third_party", (), self._start_third_party),
            Step("migrate", ("postgres",), self._migrate),
            Step("pgbouncer", ("postgres",), self._start_pgbouncer),
            Step("proxies", ("chaosproxy", "pgbouncer"), self._create_proxies),
            Step("db_sessions", ("migrate", "pgbouncer"), self._start_db_sessions),
            Step("exporters", ("pgbouncer",), self._start_exporters),
            Step("api", ("migrate", "proxies", "feed"), self._start_api),
            Step("consumer", ("migrate", "pgbouncer"), self._start_consumer),
            # The publisher retries with backoff until the consumer answers: no need to wait for it.
            Step("outbox", ("migrate", "proxies"), self._start_outbox),
            # Ready does not include Prometheus's first scrapes: its discovery applies targets
            # on a fixed 5 s tick, which would be most of the start. Checks that read scraped
            # data poll with their own deadline; `sandbox up` waits (await_first_scrapes).
        ]

    def _start_postgres(self, plan: Plan) -> None:
        from spark_sandbox.services.postgres import start_postgres

        began = time.monotonic()
        proc, pg = start_postgres(plan.run_dir)
        self._started("postgres", proc)
        plan.values["pg"] = pg
        self._report(f"postgres ready on {pg.host}:{pg.port}", began)

    def _migrate(self, plan: Plan) -> None:
        from spark_sandbox.services.db_defects import migrate_with_defects
        from spark_sandbox.services.migrate import MIGRATIONS_DIR

        began = time.monotonic()
        applied = migrate_with_defects(plan.values["pg"].app_dsn(), MIGRATIONS_DIR, plan.defects)
        plan.values["migrations_dir"] = MIGRATIONS_DIR
        self._report(f"migrate applied {len(applied)} migrations", began)

    def _start_db_sessions(self, plan: Plan) -> None:
        """Defects that need a live database session (``long_running_query``)."""
        from spark_sandbox.services.db_defects import start_long_running_query

        if "long_running_query" not in plan.defects:
            return
        began = time.monotonic()
        proc = start_long_running_query(plan.run_dir, plan.values["pgbouncer"].dsn("spark"))
        self._started("long_running_query", proc)
        self._report("long_running_query idle in transaction", began)

    def _start_pgbouncer(self, plan: Plan) -> None:
        from spark_sandbox.services.pgbouncer import start_pgbouncer

        began = time.monotonic()
        proc, bouncer = start_pgbouncer(plan.run_dir, plan.values["pg"], defects=plan.defects)
        self._started("pgbouncer", proc)
        plan.values["pgbouncer"] = bouncer
        # The API reaches the transaction pool through the fault proxy, so that chaos
        # scenarios can delay or cut its database traffic.
        plan.values["app_dsn"] = (
            f"host={HOST} port={plan.ports['proxy_db']} dbname=spark "
            f"user={bouncer.app_user} password={bouncer.app_password}"
        )
        self._report(f"pgbouncer ready on {HOST}:{bouncer.port}", began)

    def _create_proxies(self, plan: Plan) -> None:
        """The fault proxy's four proxies, created through its Toxiproxy API (``/populate``)."""
        import httpx

        upstreams = {
            "spark_api": ("proxy_api", plan.ports["api"]),
            "spark_db": ("proxy_db", plan.values["pgbouncer"].port),
            "spark_feed": ("proxy_feed", plan.ports["feed"]),
            "spark_consumer": ("proxy_consumer", plan.ports["consumer"]),
        }
        body = [
            {
                "name": name,
                "listen": f"{HOST}:{plan.ports[listen]}",
                "upstream": f"{HOST}:{upstream}",
                "enabled": True,
            }
            for name, (listen, upstream) in upstreams.items()
        ]
        response = httpx.post(
            f"{plan.url('chaosproxy')}/populate",
            json=body,
            headers={"Authorization": f"Bearer {plan.values['toxiproxy_token']}"},
            timeout=5.0,
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST /populate answered {response.status_code}: {response.text}")
        self.progress(f"proxies created: {', '.join(upstreams)}")

    def _start_chaosproxy(self, plan: Plan) -> None:
        port = plan.ports["chaosproxy"]
        argv = python_module("spark_sandbox.chaosproxy", "--host", HOST, "--port", str(port))
        # In the environment, not argv: any local user can read another's command line.
        env = {CHAOSPROXY_TOKEN_ENV: plan.values["toxiproxy_token"]}
        service = self._python_service(plan, "chaosproxy", argv, env, http_ready(port))
        self._spawn(plan, "chaosproxy", service, f"{HOST}:{port}")

    def _start_feed(self, plan: Plan) -> None:
        port = plan.ports["feed"]
        argv = python_module("spark_sandbox.app.feed", "--host", HOST, "--port", str(port))
        service = self._python_service(plan, "feed", argv, {}, lambda: is_listening(port))
        self._spawn(plan, "feed", service, f"{HOST}:{port}")

    def _start_third_party(self, plan: Plan) -> None:
        port = plan.ports["third_party"]
        argv = uvicorn("spark_sandbox.app.thirdparty:app", port)
        service = self._python_service(plan, "third_party", argv, {}, http_ready(port))
        self._spawn(plan, "third_party", service, f"{HOST}:{port}")

    def _start_consumer(self, plan: Plan) -> None:
        port = plan.ports["consumer"]
        argv = python_module("spark_sandbox.app.consumer", "--host", HOST, "--port", str(port))
        env = {"SPARK_CONSUMER_DSN": plan.values["pgbouncer"].dsn("spark")}
        service = self._python_service(plan, "consumer", argv, env, http_ready(port))
        self._spawn(plan, "consumer", service, f"{HOST}:{port}")

    def _start_api(self, plan: Plan) -> None:
        port = plan.ports["api"]
        env = {
            "SPARK_APP_DSN": plan.values["app_dsn"],
            "SPARK_LISTEN_DSN": plan.values["pgbouncer"].dsn("spark_listen"),
            "SPARK_FEED_ADDR": f"{HOST}:{plan.ports['proxy_feed']}",
            "SPARK_THIRD_PARTY_ORIGIN": plan.url("third_party"),
            "SPARK_UNLISTED_ORIGIN": f"http://localhost:{plan.ports['third_party']}",
            "SPARK_FLAGS_FILE": str(plan.ops_dir / "flags.toml"),
            "SPARK_DEFECTS": ",".join(sorted(for_layer(resolve(plan.defects), "app"))),
            # Pact provider states (POST /_sandbox/provider-state) exist only in the sandbox.
            "SPARK_SANDBOX": "1",
        }
        argv = uvicorn("spark_sandbox.app.main:app", port)
        service = self._python_service(plan, "api", argv, env, http_ready(port))
        self._spawn(plan, "api", service, f"{HOST}:{port}")

    def _start_outbox(self, plan: Plan) -> None:
        port = plan.ports["outbox"]
        env = {
            "SPARK_APP_DSN": plan.values["app_dsn"],
            "SPARK_LISTEN_DSN": plan.values["pgbouncer"].dsn("spark_listen"),
            "SPARK_CONSUMER_URL": f"http://{HOST}:{plan.ports['proxy_consumer']}",
        }
        argv = python_module("spark_sandbox.app.outbox", "--metrics-port", str(port))
        service = self._python_service(plan, "outbox", argv, env, http_ready(port))
        self._spawn(plan, "outbox", service, f"{HOST}:{port}")

    def _start_ntp(self, plan: Plan) -> None:
        from spark_sandbox.services.ntp import start_ntp

        began = time.monotonic()
        # NTP is UDP: the executor picks a port free for UDP, not one from the TCP reservation.
        proc, server = start_ntp(plan.run_dir, defects=plan.defects)
        self._started("ntp", proc)
        plan.values["ntp_server"] = f"{server.host}:{server.port}"
        self._report(f"ntp ready on udp {plan.values['ntp_server']}", began)

    def _start_alert_sink(self, plan: Plan) -> None:
        from spark_sandbox.services.alert_sink import start_alert_sink

        began = time.monotonic()
        proc, sink = start_alert_sink(plan.run_dir, port=plan.ports["alert_sink"])
        self._started("alert_sink", proc)
        plan.values["alert_sink"] = sink
        self._report(f"alert_sink ready on {sink.host}:{sink.port}", began)

    def _start_alertmanager(self, plan: Plan) -> None:
        from spark_sandbox.services.prometheus import start_alertmanager

        began = time.monotonic()
        webhook_url = plan.values["alert_sink"].webhook_url
        routing = plan.ops_dir / "alertmanager.yml"
        # The release's own routing, every webhook pointed at the alert sink: receivers and
        # routes are then the ones the gate judges, not the executor's catch-all. Given at
        # start rather than reloaded after, so no reload endpoint is needed for it.
        config = routed_to_sink(routing.read_text(), webhook_url) if routing.is_file() else None
        proc, am = start_alertmanager(
            plan.run_dir, webhook_url, port=plan.ports["alertmanager"], config_text=config
        )
        self._started("alertmanager", proc)
        self._report(f"alertmanager ready on {am.address}", began)
        if ops_defects.SILENCED_RELEASE_ALERT in plan.defects:
            silence = ops_defects.silence_release_alert(am.url, plan.ops_dir)
            self.progress(f"release alert silenced: {silence} (silenced_release_alert)")

    def _start_exporters(self, plan: Plan) -> None:
        from spark_sandbox.services.exporters import start_pgbouncer_exporter

        began = time.monotonic()
        proc, exporter = start_pgbouncer_exporter(
            plan.run_dir, plan.values["pgbouncer"], port=plan.ports["pgbouncer_exporter"]
        )
        self._started("pgbouncer_exporter", proc)
        self._report(f"pgbouncer_exporter ready on {exporter.address}", began)

    def _start_prometheus(self, plan: Plan) -> None:
        from spark_sandbox.services.prometheus import (
            render_prometheus_config,
            start_prometheus,
            write_config,
        )

        began = time.monotonic()
        config = render_prometheus_config(
            {job: [target] for job, target in self._scrape_jobs(plan).items()},
            rule_files=ops_defects.rule_files(plan.ops_dir),
            alertmanager=f"{HOST}:{plan.ports['alertmanager']}",
        )
        path = write_config(plan.run_dir / "prometheus" / "prometheus.yml", config)
        proc, prom = start_prometheus(plan.run_dir, path, port=plan.ports["prometheus"])
        self._started("prometheus", proc)
        self._report(f"prometheus ready on {prom.address}", began)

    def await_first_scrapes(self) -> None:
        """Wait until Prometheus has scraped every job once (as ``sandbox up`` does)."""
        assert self._plan is not None, "start() the sandbox first"
        self._await_first_scrapes(self._plan)

    def _await_first_scrapes(self, plan: Plan) -> None:
        """Ready means Prometheus has scraped every job and found it as this deployment intends:
        up, except the target that ``scrape_target_down`` points at a closed port."""
        import httpx

        began = time.monotonic()
        wanted = {job: "up" for job in self._scrape_jobs(plan)}
        down_job = ops_defects.down_scrape_job(plan.defects)
        if down_job is not None:
            wanted[down_job] = "down"
        deadline = began + SCRAPE_READY_SECONDS
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                body = httpx.get(f"{plan.url('prometheus')}/api/v1/targets", timeout=2.0).json()
                seen = {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}
                if seen == wanted:
                    self._report(f"scraping: prometheus has scraped all {len(wanted)} jobs", began)
                    return
            time.sleep(0.1)
        raise ServiceStartError(
            "prometheus",
            [],
            f"scrape targets not as expected within {SCRAPE_READY_SECONDS:.0f} s: "
            f"wanted {wanted}, seen {seen}",
            tail(plan.run_dir / "logs" / "prometheus.log"),
        )

    def _scrape_jobs(self, plan: Plan) -> dict[str, str]:
        """Job name -> ``host:port``; every job has exactly one target in the sandbox."""
        jobs = {
            "spark-api": f"{HOST}:{plan.ports['api']}",
            "spark-outbox": f"{HOST}:{plan.ports['outbox']}",
            "spark-consumer": f"{HOST}:{plan.ports['consumer']}",
            "pgbouncer": f"{HOST}:{plan.ports['pgbouncer_exporter']}",
            "prometheus": f"{HOST}:{plan.ports['prometheus']}",
            "alertmanager": f"{HOST}:{plan.ports['alertmanager']}",
        }
        down_job = ops_defects.down_scrape_job(plan.defects)
        if down_job is not None:
            # A port reserved for nobody: the job's one target is expected and down.
            jobs[down_job] = f"{HOST}:{plan.ports['closed_target']}"
        return jobs

    def _python_service(
        self,
        plan: Plan,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        ready: Callable[[], bool],
    ) -> ServiceProcess:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
        child_env.update(env)
        child_env["PYTHONUNBUFFERED"] = "1"
        return ServiceProcess(
            name,
            argv,
            log_path=plan.run_dir / "logs" / f"{name}.log",
            ready=ready,
            ready_timeout=PYTHON_READY_SECONDS,
            env=child_env,
            cwd=REPO_DIR,
        )

    def _endpoints(self, plan: Plan) -> Endpoints:
        pg = plan.values["pg"]
        bouncer = plan.values["pgbouncer"]
        with self._lock:
            pids = {name: s.pid for name, s in self._services if s.pid is not None}
        api_url = f"http://{HOST}:{plan.ports['proxy_api']}"
        return Endpoints(
            api_url=api_url,
            web_url=f"{api_url}/",
            third_party_origin=plan.url("third_party"),
            toxiproxy_url=plan.url("chaosproxy"),
            prometheus_url=plan.url("prometheus"),
            alertmanager_url=plan.url("alertmanager"),
            alert_sink_url=plan.url("alert_sink"),
            ntp_server=plan.values["ntp_server"],
            postgres_dsn=pg.dsn(),
            app_dsn=plan.values["app_dsn"],
            listen_dsn=bouncer.dsn("spark_listen"),
            pgbouncer_admin_dsn=bouncer.admin_dsn(),
            migrations_dir=plan.values["migrations_dir"],
            ops_dir=plan.ops_dir,
            run_dir=plan.run_dir,
            defects=self.defects,
            pids=pids,
            release_environment=str(supply_chain.release_environment(self.defects, plan.run_dir)),
            toxiproxy_token=plan.values["toxiproxy_token"],
        )


# -- wiring: ports, commands, readiness probes, configs ---------------------------------------


def allocate_ports() -> dict[str, int]:
    """One OS-chosen port per listener, reserved up front so that steps can run in parallel."""
    names = (
        "api", "third_party", "feed", "consumer", "outbox", "chaosproxy",
        "proxy_api", "proxy_db", "proxy_feed", "proxy_consumer",
        "alert_sink", "alertmanager", "pgbouncer_exporter", "prometheus", "closed_target",
    )  # fmt: skip
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        # free_port() closes its socket, so the OS may hand the same port out twice in a row.
        port = free_port(HOST)
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def uvicorn(app: str, port: int) -> list[str]:
    return python_module(
        "uvicorn", app, "--host", HOST, "--port", str(port), "--no-access-log",
        "--log-level", "warning",
    )  # fmt: skip


def http_ready(port: int, path: str = "/health") -> Callable[[], bool]:
    """A readiness probe: GET ``path`` answers 2xx."""

    def ready() -> bool:
        return http_status(f"http://{HOST}:{port}{path}") // 100 == 2

    return ready


def http_status(url: str, timeout: float = 1.0) -> int:
    """The status of a GET to a loopback URL, 0 when nothing answers."""
    rest = url.removeprefix("http://")
    address, _, path = rest.partition("/")
    host, _, port = address.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def routed_to_sink(config_text: str, webhook_url: str) -> str:
    """An Alertmanager config with every receiver's webhook URL replaced by ``webhook_url``."""
    import yaml

    config = yaml.safe_load(config_text) or {}
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url
    return str(yaml.safe_dump(config, sort_keys=False))


def reload_config(service: str, pid: int, url: str, log_path: Path) -> None:
    """SIGHUP ``pid`` (Prometheus or Alertmanager) and wait until its metrics confirm the
    reload; a refused config fails with the log. A signal, not ``POST /-/reload``: only the
    owner of the process can send it, while any local process could reach the endpoint."""
    before = reload_metrics(service, url)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_SECONDS
    while time.monotonic() < deadline:
        succeeded, at = reload_metrics(service, url)
        if succeeded == 1 and at > before[1]:
            return
        if succeeded == 0 and before[0] == 1:
            break
        time.sleep(0.05)
    raise ServiceStartError(
        service,
        [],
        f"config reload (SIGHUP) not confirmed within {RELOAD_SECONDS:.0f} s: the new config "
        "was refused or never read",
        tail(log_path),
    )


def reload_metrics(service: str, url: str) -> tuple[float, float]:
    """``(<service>_config_last_reload_successful, ..._success_timestamp_seconds)``, or
    ``(-1, -1)`` while the metrics cannot be read."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        f"{service}_config_last_reload_successful": 0,
        f"{service}_config_last_reload_success_timestamp_seconds": 1,
    }
    values = [-1.0, -1.0]
    try:
        text = httpx.get(f"{url}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return -1.0, -1.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                values[wanted[sample.name]] = float(sample.value)
    return values[0], values[1]


def as_start_error(step: str, error: BaseException, run_dir: Path) -> BaseException:
    """A step's failure as a ServiceStartError naming the step, with its log when it has one."""
    if isinstance(error, ServiceStartError | KeyboardInterrupt | SystemExit):
        return error
    log = STEP_LOGS.get(step, step)
    wrapped = ServiceStartError(
        step, [], f"{type(error).__name__}: {error}", tail(run_dir / "logs" / f"{log}.log")
    )
    wrapped.__cause__ = error
    return wrapped


# -- a sandbox left running: find it, stop it --------------------------------------------------


def default_run_root() -> Path:
    """This user's sandbox home (:func:`spark_sandbox.runs.home_dir`), whatever the current
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


def service_status(run: RecordedRun) -> dict[str, bool]:
    """Service name -> whether its recorded process is still the one that was started."""
    return run.record.services_running()


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
        report(f"{run.state_path} records endpoints this version cannot read ({exc!r})")
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


def redact(text: str) -> str:
    """``text`` with every DSN password replaced: conninfo ``password=`` and URL userinfo."""
    import re

    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)
    return re.sub(r"(://[^/:@\s]+:)[^@\s]+@", r"\1***@", text)
