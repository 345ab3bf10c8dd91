"""The sandbox orchestrator: every service of a Spark deployment on loopback, in order.

Interface used by the gate plugin::

    from spark_sandbox.sandbox import Sandbox, Endpoints, find_running

    sandbox = Sandbox(run_root=None, defects=(), progress=None)
    endpoints = sandbox.start()      # every service ready, or ServiceStartError (nothing left)
    sandbox.stop()                   # idempotent; nothing left running
    with Sandbox(defects=["no_coep"]) as endpoints: ...
    find_running(state_dir=None)     # Endpoints of a sandbox started by `sandbox up`, or None

``Sandbox(run_root, defects, progress)``: ``run_root`` holds one ``run-<timestamp>-<pid>`` dir per
start (default ``.spark/sandbox`` in the current directory; it must be traversable by the
``postgres`` user); ``defects`` are names from :mod:`spark_sandbox.defects`; ``progress`` gets
one line per service as it becomes ready.

:class:`Endpoints` is a frozen dataclass (``to_dict()`` / ``from_dict()``): ``api_url`` (the API
behind the fault proxy), ``web_url`` (its web page), ``third_party_origin``, ``toxiproxy_url``,
``prometheus_url``, ``alertmanager_url``, ``alert_sink_url``, ``ntp_server`` (``host:port``),
``postgres_dsn`` (superuser, direct), ``app_dsn`` (what the API uses: fault proxy ->
PgBouncer transaction pool), ``listen_dsn`` (PgBouncer session pool), ``pgbouncer_admin_dsn``,
``migrations_dir``, ``ops_dir`` (the ops artefacts this deployment serves), ``run_dir``,
``defects``, ``pids`` (service name -> pid; each service leads its own process group) and
``release_environment`` (the Python environment the deployment releases, for its SBOM).

State of a detached sandbox (``sandbox up``): ``<state_dir>/sandbox.json``, where ``state_dir``
is ``$SPARK_SANDBOX_STATE_DIR`` or ``.spark`` in the current directory. Each run dir also holds
``run.json`` (owner pid, detached flag, service pids with their start times), which is how a
later start recognises and removes the leftovers of a killed run. ``sandbox.detach(state_dir)``
leaves a started sandbox running and writes the state file; ``stop_recorded(state_dir)`` stops
what it records; ``redact(text)`` hides DSN passwords. Set ``SPARK_SANDBOX_KEEP=1``
to keep run dirs (logs, data) after ``stop()``, and ``SPARK_SANDBOX_OPS_DIR`` to serve another
ops dir than the repo's ``ops/``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from spark_sandbox import ops_defects, supply_chain
from spark_sandbox.defects import for_layer, resolve
from spark_sandbox.services.ports import free_port, is_listening
from spark_sandbox.services.process import ServiceProcess, ServiceStartError, tail

HOST = "127.0.0.1"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
STATE_FILE = "sandbox.json"
RUN_RECORD = "run.json"
STATE_DIR_ENV = "SPARK_SANDBOX_STATE_DIR"
KEEP_ENV = "SPARK_SANDBOX_KEEP"
# A whole start is a few seconds; this only bounds a wedged step that has no deadline of its own.
START_DEADLINE_SECONDS = 120.0
STOP_GRACE_SECONDS = 5.0
# SIGTERM is PostgreSQL's *smart* shutdown, which waits for every client; SIGINT is *fast*.
# Its backends lead their own process groups, so only the postmaster can stop them cleanly.
FIRST_STOP_SIGNAL = {"postgres": signal.SIGINT}
# Stopped last, in this order, once every client of theirs is gone.
DATABASE_TIER = {"pgbouncer": 0, "postgres": 1}
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
        self._lock = threading.Lock()
        self._detached = False
        self._plan: Plan | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Endpoints:
        """Start every service in dependency order; on any failure stop them all and re-raise."""
        if self.run_dir is not None:
            raise RuntimeError("this Sandbox was already started; create a new one")
        began = time.monotonic()
        self.run_root.mkdir(parents=True, exist_ok=True)
        self.run_root = self.run_root.resolve()
        check_reachable_by_postgres(self.run_root)
        for removed in reap_stale_runs(self.run_root):
            self.progress(f"removed stale run dir {removed}")
        for defect in resolve(self.defects):
            if defect.layer not in APPLIED_LAYERS:
                self.progress(f"defect {defect.name} ({defect.layer} layer) is not applied here")
        self.run_dir = new_run_dir(self.run_root)
        self._write_run_record()
        try:
            plan = Plan(
                run_dir=self.run_dir,
                defects=self.defects,
                ops_dir=ops_defects.prepare_ops_dir(self.defects, self.run_dir),
                ports=allocate_ports(),
            )
            self._plan = plan
            self._run_steps(plan, self._steps())
            self.endpoints = self._endpoints(plan)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, ServiceStartError | KeyboardInterrupt | SystemExit):
                raise
            step = "ops" if isinstance(exc, ops_defects.OpsDefectError) else "sandbox"
            raise ServiceStartError(step, [], f"{type(exc).__name__}: {exc}", "") from exc
        self.progress(f"sandbox ready in {time.monotonic() - began:.2f} s: {self.run_dir}")
        return self.endpoints

    def stop(self) -> None:
        """Stop every started service, sweep their process groups, remove the run dir.

        The clients go first, all at once; then PgBouncer, then PostgreSQL, so that no client
        holds a connection the database would wait for.
        """
        with self._lock:
            services, self._services = self._services, []
        if self._detached:
            return
        clients = [(n, s) for n, s in services if n not in DATABASE_TIER]
        databases = [(n, s) for n, s in services if n in DATABASE_TIER]
        databases.sort(key=lambda entry: DATABASE_TIER[entry[0]])
        if clients:
            with ThreadPoolExecutor(len(clients), thread_name_prefix="sandbox-stop") as pool:
                list(pool.map(lambda entry: self._stop_one(*entry), clients))
        for name, service in databases:
            self._stop_one(name, service)
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

    def detach(self, state_dir: Path | None = None) -> Path:
        """Leave the services running past this process and record them in the state file."""
        if self.endpoints is None or self.run_dir is None:
            raise RuntimeError("only a started sandbox can be detached")
        path = write_state(self.endpoints, state_dir)
        with self._lock:
            self._detached = True
            self._write_run_record()
            self._services = []
        return path

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
        """Record a service the moment it runs, so that a failure later still stops it."""
        with self._lock:
            self._services.append((name, service))
            self._write_run_record()

    def _write_run_record(self) -> None:
        if self.run_dir is None:
            return
        processes = {n: [s.pid, process_start_time(s.pid)] for n, s in self._services if s.pid}
        record = {
            "owner_pid": os.getpid(),
            "owner_start": process_start_time(os.getpid()),
            "detached": self._detached,
            "processes": processes,
        }
        write_json_atomically(self.run_dir / RUN_RECORD, record)

    def _spawn(self, plan: Plan, name: str, service: ServiceProcess, address: str) -> None:
        began = time.monotonic()
        # Registered before start(): start() stops a child that fails, and stop() is idempotent.
        self._started(name, service)
        service.start()
        with self._lock:
            self._write_run_record()
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
        with ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="sandbox") as pool:
            while pending or running:
                if failure is None:
                    for name, step in list(pending.items()):
                        if set(step.after) <= done:
                            running[pool.submit(step.run, plan)] = name
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
        response = httpx.post(f"{plan.url('chaosproxy')}/populate", json=body, timeout=5.0)
        if response.status_code != 201:
            raise RuntimeError(f"POST /populate answered {response.status_code}: {response.text}")
        self.progress(f"proxies created: {', '.join(upstreams)}")

    def _start_chaosproxy(self, plan: Plan) -> None:
        port = plan.ports["chaosproxy"]
        argv = python_module("spark_sandbox.chaosproxy", "--host", HOST, "--port", str(port))
        service = self._python_service(plan, "chaosproxy", argv, {}, http_ready(port, "/proxies"))
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
        proc, am = start_alertmanager(
            plan.run_dir, plan.values["alert_sink"].webhook_url, port=plan.ports["alertmanager"]
        )
        self._started("alertmanager", proc)
        routing = plan.ops_dir / "alertmanager.yml"
        if routing.is_file():
            # The release's own routing, every webhook pointed at the alert sink: receivers and
            # routes are then the ones the gate judges, not the executor's catch-all.
            am.config_path.write_text(
                routed_to_sink(routing.read_text(), plan.values["alert_sink"].webhook_url)
            )
            reload_config(am.url, plan.run_dir / "logs" / "alertmanager.log")
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


def reload_config(url: str, log_path: Path) -> None:
    """``POST /-/reload`` (Prometheus, Alertmanager); a refused config fails with the log."""
    import httpx

    response = httpx.post(f"{url}/-/reload", timeout=5.0)
    if response.status_code != 200:
        raise ServiceStartError(
            log_path.stem,
            [],
            f"config reload refused ({response.status_code}): {response.text.strip()}",
            tail(log_path),
        )


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


# -- run dirs, pids and the state file ----------------------------------------------------------


def new_run_dir(run_root: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    run_dir = run_root / f"run-{stamp}-{os.getpid()}"
    run_dir.mkdir(mode=0o755)
    # PostgreSQL (as the postgres user) writes its cluster, archive and sockets below it.
    from spark_sandbox.services.postgres import chown_to_service_user

    chown_to_service_user(run_dir)
    return run_dir


def default_run_root() -> Path:
    """``.spark/sandbox`` in the checkout, or a folder in the system temp dir when the postgres
    user could not reach the checkout (a clone inside a 0700 directory, as ``mktemp -d`` makes)."""
    local = Path(".spark") / "sandbox"
    try:
        check_reachable_by_postgres(Path.cwd())
    except ServiceStartError:
        shared = Path(tempfile.gettempdir()) / "spark-sandbox"
        shared.mkdir(mode=0o755, exist_ok=True)
        return shared
    return local


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
                "world-searchable); choose a run root under a 0755 directory",
                "",
            )


def process_start_time(pid: int | None) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if gone or a zombie.

    Recorded next to each pid so that a pid reused by an unrelated process is never
    mistaken for a sandbox service, let alone signalled.
    """
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    after = stat[stat.rindex(")") + 2 :].split()
    if after[0] in ("Z", "X"):
        return None
    return int(after[19])


def is_alive(pid: int, start_time: int | None = None) -> bool:
    now = process_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        after = stat[stat.rindex(")") + 2 :].split()
        if int(after[2]) == pgid and after[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def stop_process_group(
    pgid: int, grace: float = STOP_GRACE_SECONDS, first: signal.Signals = signal.SIGTERM
) -> None:
    """Signal a service's process group (``first``), SIGKILL what is left after ``grace`` s."""
    for sig in (first, signal.SIGKILL):
        if not group_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        # Zombies count as gone: their parent (maybe not this process) reaps them.
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write to a temp name and rename, so readers never see half a file; owner-only, because
    the state holds the sandbox's DSNs with their passwords."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_processes(record: Mapping[str, Any]) -> dict[str, tuple[int, int | None]]:
    return {name: (int(p[0]), p[1]) for name, p in record.get("processes", {}).items()}


def stop_recorded_processes(processes: Mapping[str, tuple[int, int | None]]) -> None:
    """Stop recorded services that are still the processes recorded: clients all at once, then
    PgBouncer, then PostgreSQL (as :meth:`Sandbox.stop` does for its own children)."""

    def stop(name: str) -> None:
        pid, start = processes[name]
        if is_alive(pid, start):
            stop_process_group(pid, first=FIRST_STOP_SIGNAL.get(name, signal.SIGTERM))

    clients = [name for name in processes if name not in DATABASE_TIER]
    if clients:
        with ThreadPoolExecutor(len(clients), thread_name_prefix="sandbox-stop") as pool:
            list(pool.map(stop, clients))
    for name in sorted(set(processes) & set(DATABASE_TIER), key=DATABASE_TIER.__getitem__):
        stop(name)


def reap_stale_runs(run_root: Path) -> Iterator[Path]:
    """Remove run dirs whose sandbox is gone; stop the orphans of an owner that was killed.

    A detached run (``sandbox up``) is stale once all its services are gone; an attached run
    is stale once its owner is gone, and whatever it left running is an orphan to stop.
    """
    for run_dir in sorted(run_root.glob("run-*")):
        record = read_json(run_dir / RUN_RECORD)
        if record is None:
            owner = int(run_dir.name.rsplit("-", 1)[-1]) if run_dir.name[-1].isdigit() else 0
            if owner and is_alive(owner):
                continue
            processes: dict[str, tuple[int, int | None]] = {}
        else:
            processes = recorded_processes(record)
            if record.get("detached"):
                if any(is_alive(pid, start) for pid, start in processes.values()):
                    continue
            elif is_alive(int(record["owner_pid"]), record.get("owner_start")):
                continue
        stop_recorded_processes(processes)
        shutil.rmtree(run_dir, ignore_errors=True)
        yield run_dir


def remove_run_dir(run_dir: Path) -> None:
    """Delete a run dir, and only a run dir: a damaged state file must not aim rmtree elsewhere."""
    if run_dir.name.startswith("run-") and run_dir.is_dir():
        shutil.rmtree(run_dir, ignore_errors=True)


def state_dir_default() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or ".spark")


def write_state(endpoints: Endpoints, state_dir: Path | None = None) -> Path:
    """Atomically record a detached sandbox: endpoints, run dir, pids and owner pid."""
    directory = state_dir or state_dir_default()
    directory.mkdir(parents=True, exist_ok=True)
    processes = {n: [pid, process_start_time(pid)] for n, pid in endpoints.pids.items()}
    state = {
        "endpoints": endpoints.to_dict(),
        "run_dir": str(endpoints.run_dir),
        "pids": dict(endpoints.pids),
        "processes": processes,
        "owner_pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(),
    }
    path = directory / STATE_FILE
    write_json_atomically(path, state)
    return path


def read_state(state_dir: Path | None = None) -> dict[str, Any] | None:
    return read_json((state_dir or state_dir_default()) / STATE_FILE)


def service_status(state: Mapping[str, Any]) -> dict[str, bool]:
    """Service name -> whether its recorded process is still the one that was started."""
    return {name: is_alive(pid, start) for name, (pid, start) in recorded_processes(state).items()}


def find_running(state_dir: Path | None = None) -> Endpoints | None:
    """The endpoints of a sandbox started by ``sandbox up``, or None.

    A recorded sandbox with a service gone is stale: what is left of it is stopped and its
    state file and run dir removed, so that no half sandbox runs on untracked.
    """
    state = read_state(state_dir)
    if state is None:
        return None
    status = service_status(state)
    if not status or not all(status.values()):
        stop_recorded(state_dir)
        return None
    return Endpoints.from_dict(state["endpoints"])


def stop_recorded(state_dir: Path | None = None) -> Endpoints | None:
    """Stop a detached sandbox: every recorded process group, its run dir, its state file."""
    path = (state_dir or state_dir_default()) / STATE_FILE
    state = read_json(path)
    if state is None:
        return None
    stop_recorded_processes(recorded_processes(state))
    remove_run_dir(Path(str(state.get("run_dir", ""))))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        return Endpoints.from_dict(state["endpoints"])
    except (KeyError, TypeError, ValueError):  # a damaged state file still gets cleaned up
        return None


def redact(text: str) -> str:
    """``text`` with every DSN password replaced: conninfo ``password=`` and URL userinfo."""
    import re

    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)
    return re.sub(r"(://[^/:@\s]+:)[^@\s]+@", r"\1***@", text)
