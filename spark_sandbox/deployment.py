"""The deployment as a table: one spec per service (or setup step), what it comes after, how
it starts, and what it leaves in the plan for the steps after it.

The orchestrator (:class:`spark_sandbox.sandbox.Sandbox`) runs the table: each spec starts
once every spec it comes ``after`` is done, independent ones in parallel. A spec reads the
start's :class:`~spark_sandbox.defects.Blueprint` (the healthy settings as the active defects
left them) and never asks for a defect by name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spark_sandbox import ops_defects
from spark_sandbox.defects import Blueprint
from spark_sandbox.endpoints import CANARY_TRACK, HOST, STABLE_TRACK, Endpoints
from spark_sandbox.scrapes import scrape_jobs, track_labels
from spark_sandbox.services.ports import is_listening
from spark_sandbox.services.process import ServiceProcess
from spark_sandbox.stopping import Stoppable
from spark_sandbox.wiring import http_ready, python_module, routed_to_sink, uvicorn

REPO_DIR = Path(__file__).resolve().parent.parent
# The API runs as two tracks, each scraped with its `track` target label: the canary (`api`,
# this release, behind the fault proxy) and the stable track (`api_stable`, the previous
# release, reached directly), so a canary stage compares the two as a real rollout does.
# The stable track's spark_build_info version: the installed version with this suffix.
PREVIOUS_RELEASE_SUFFIX = "-previous"
CHAOSPROXY_TOKEN_ENV = "SPARK_CHAOSPROXY_TOKEN"
PYTHON_READY_SECONDS = 20.0


@dataclass
class Plan:
    """Ports, addresses and results filled in as the specs of one start run."""

    run_dir: Path
    blueprint: Blueprint
    ops_dir: Path
    ports: dict[str, int]
    values: dict[str, Any] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}"


class Launch(Protocol):
    """What a spec gets from the orchestrator while it starts."""

    def started(self, name: str, service: Stoppable) -> None:
        """Register a started service, so that a later failure or stop() stops it."""

    def spawn(self, name: str, service: ServiceProcess, address: str) -> None:
        """Register, start and report a service process (its start waits for readiness)."""

    def report(self, what: str, began: float) -> None:
        """One progress line, with the seconds since ``began``."""


@dataclass(frozen=True)
class ServiceSpec:
    """One row of the table: ``start(plan, launch)`` once every spec in ``after`` is done;
    ``log`` is the log that explains its failure (its own by default)."""

    name: str
    after: tuple[str, ...]
    start: Callable[[Plan, Launch], None]
    log: str = ""

    @property
    def log_name(self) -> str:
        return self.log or self.name


@dataclass(frozen=True)
class PythonService:
    """A Python service of the deployment: its command, environment and readiness, from the
    plan. Started with only the ``SPARK_*`` variables it is given, from the repository."""

    name: str
    after: tuple[str, ...]
    argv: Callable[[Plan], list[str]]
    env: Callable[[Plan], dict[str, str]] = lambda plan: {}
    health_path: str | None = "/health"  # None: ready once its port listens

    @property
    def log_name(self) -> str:
        return self.name

    def start(self, plan: Plan, launch: Launch) -> None:
        port = plan.ports[self.name]
        ready = http_ready(port, self.health_path) if self.health_path else None
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
        child_env.update(self.env(plan))
        child_env["PYTHONUNBUFFERED"] = "1"
        service = ServiceProcess(
            self.name,
            self.argv(plan),
            log_path=plan.run_dir / "logs" / f"{self.name}.log",
            ready=ready or (lambda: is_listening(port)),
            ready_timeout=PYTHON_READY_SECONDS,
            env=child_env,
            cwd=REPO_DIR,
        )
        launch.spawn(self.name, service, f"{HOST}:{port}")


Spec = ServiceSpec | PythonService


def start_postgres(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.postgres import start_postgres

    began = time.monotonic()
    unmounted = plan.blueprint.unmounted_wal_archive
    proc, pg = start_postgres(
        plan.run_dir, archive_to=plan.run_dir / unmounted if unmounted else None
    )
    launch.started("postgres", proc)
    plan.values["pg"] = pg
    launch.report(f"postgres ready on {pg.host}:{pg.port}", began)


def migrate(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.migrate import MIGRATIONS_DIR, apply_migrations

    began = time.monotonic()
    dsn = plan.values["pg"].app_dsn()
    blueprint = plan.blueprint
    applied = apply_migrations(dsn, MIGRATIONS_DIR, skip_last=blueprint.skip_last_migration)
    for change in blueprint.after_migrate:
        change(dsn)
    plan.values["migrations_dir"] = MIGRATIONS_DIR
    launch.report(f"migrate applied {len(applied)} migrations", began)


def base_backup(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.postgres import take_base_backup

    began = time.monotonic()
    dest = take_base_backup(plan.values["pg"], plan.run_dir)
    launch.report(f"base backup taken into {dest}", began)


def start_db_sessions(plan: Plan, launch: Launch) -> None:
    """Sessions a defect holds open for as long as the deployment runs."""
    for start_session in plan.blueprint.db_sessions:
        began = time.monotonic()
        proc = start_session(plan.run_dir, plan.values["pgbouncer"].dsn("spark"))
        launch.started(proc.name, proc)
        launch.report(f"{proc.name} holding its session", began)


def start_pgbouncer(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.pgbouncer import start_pgbouncer

    began = time.monotonic()
    pool_modes = plan.blueprint.pool_modes
    proc, bouncer = start_pgbouncer(plan.run_dir, plan.values["pg"], pool_modes=pool_modes)
    launch.started("pgbouncer", proc)
    plan.values["pgbouncer"] = bouncer
    # The API reaches the transaction pool through the fault proxy, so that chaos scenarios
    # can delay or cut its database traffic.
    plan.values["app_dsn"] = (
        f"host={HOST} port={plan.ports['proxy_db']} dbname=spark "
        f"user={bouncer.app_user} password={bouncer.app_password}"
    )
    launch.report(f"pgbouncer ready on {HOST}:{bouncer.port}", began)


def create_proxies(plan: Plan, launch: Launch) -> None:
    """The fault proxy's four proxies, created through its Toxiproxy API (``/populate``)."""
    import httpx

    began = time.monotonic()
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
    launch.report(f"proxies created: {', '.join(upstreams)}", began)


def start_ntp(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.ntp import start_ntp

    began = time.monotonic()
    # NTP is UDP: the executor picks a port free for UDP, not one from the TCP reservation.
    proc, server = start_ntp(plan.run_dir, offset_seconds=plan.blueprint.ntp_offset_s)
    launch.started("ntp", proc)
    plan.values["ntp_server"] = f"{server.host}:{server.port}"
    launch.report(f"ntp ready on udp {plan.values['ntp_server']}", began)


def start_alert_sink(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.alert_sink import start_alert_sink

    began = time.monotonic()
    proc, sink = start_alert_sink(plan.run_dir, port=plan.ports["alert_sink"])
    launch.started("alert_sink", proc)
    plan.values["alert_sink"] = sink
    launch.report(f"alert_sink ready on {sink.host}:{sink.port}", began)


def start_alertmanager(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.prometheus import start_alertmanager

    began = time.monotonic()
    webhook_url = plan.values["alert_sink"].webhook_url
    routing = plan.ops_dir / "alertmanager.yml"
    # The release's own routing, every webhook pointed at the alert sink: receivers and routes
    # are then the ones the gate judges, not the executor's catch-all. Given at start rather
    # than reloaded after, so no reload endpoint is needed for it.
    # A receiver a defect cuts off delivers to a reserved port nobody listens on.
    dead = dict.fromkeys(plan.blueprint.dead_webhooks, f"{plan.url('closed_target')}/alerts")
    config = routed_to_sink(routing.read_text(), webhook_url, dead) if routing.is_file() else None
    proc, am = start_alertmanager(
        plan.run_dir, webhook_url, port=plan.ports["alertmanager"], config_text=config
    )
    launch.started("alertmanager", proc)
    launch.report(f"alertmanager ready on {am.address}", began)
    for change in plan.blueprint.after_alertmanager:
        launch.report(change(am.url, plan.ops_dir), began)


def start_exporters(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.exporters import start_pgbouncer_exporter

    began = time.monotonic()
    proc, exporter = start_pgbouncer_exporter(
        plan.run_dir, plan.values["pgbouncer"], port=plan.ports["pgbouncer_exporter"]
    )
    launch.started("pgbouncer_exporter", proc)
    launch.report(f"pgbouncer_exporter ready on {exporter.address}", began)


def start_prometheus(plan: Plan, launch: Launch) -> None:
    from spark_sandbox.services.prometheus import (
        render_prometheus_config,
        start_prometheus,
        write_config,
    )

    began = time.monotonic()
    config = render_prometheus_config(
        scrape_jobs(plan),
        target_labels=track_labels(plan),
        rule_files=[
            path
            for path in ops_defects.rule_files(plan.ops_dir)
            if path.name not in plan.blueprint.unloaded_rule_files
        ],
        alertmanager=f"{HOST}:{plan.ports['alertmanager']}",
    )
    path = write_config(plan.run_dir / "prometheus" / "prometheus.yml", config)
    proc, prom = start_prometheus(plan.run_dir, path, port=plan.ports["prometheus"])
    launch.started("prometheus", proc)
    launch.report(f"prometheus ready on {prom.address}", began)


def build_release(plan: Plan, launch: Launch) -> None:
    """The release this deployment ships (sdist, SBOM, provenance), built or reused."""
    from spark_sandbox.release import sandbox_release

    began = time.monotonic()
    release = sandbox_release(plan.blueprint, plan.run_dir)
    plan.values["release"] = release
    launch.report(f"release {'reused' if release.reused else 'built'}: {release.summary}", began)


def _api_wiring(plan: Plan) -> dict[str, str]:
    """What both tracks of the API share: the database, the feed, the third party, the flags."""
    return {
        "SPARK_APP_DSN": plan.values["app_dsn"],
        "SPARK_LISTEN_DSN": plan.values["pgbouncer"].dsn("spark_listen"),
        "SPARK_FEED_ADDR": f"{HOST}:{plan.ports['proxy_feed']}",
        "SPARK_THIRD_PARTY_ORIGIN": plan.url("third_party"),
        "SPARK_UNLISTED_ORIGIN": f"http://localhost:{plan.ports['third_party']}",
        "SPARK_FLAGS_FILE": str(plan.ops_dir / "flags.toml"),
        # Pact provider states (POST /_sandbox/provider-state) exist only in the sandbox.
        "SPARK_SANDBOX": "1",
    }


def api_env(plan: Plan) -> dict[str, str]:
    """The canary track (``api``): this release, with every app defect of the deployment."""
    return {
        **_api_wiring(plan),
        "SPARK_TRACK": CANARY_TRACK,
        "SPARK_DEFECTS": ",".join(sorted(plan.blueprint.app_defects)),
    }


def stable_api_env(plan: Plan) -> dict[str, str]:
    """The stable track (``api_stable``): the previous release, which has none of this one's
    defects; it is the same code, told apart in ``spark_build_info`` by its version."""
    from spark_sandbox.app.settings import installed_version

    return {
        **_api_wiring(plan),
        "SPARK_TRACK": STABLE_TRACK,
        "SPARK_DEFECTS": ",".join(sorted(plan.blueprint.stable_app_defects)),
        "SPARK_BUILD_VERSION": installed_version()
        + (PREVIOUS_RELEASE_SUFFIX if plan.blueprint.stable_is_previous_release else ""),
    }


def _listening_on(module: str, name: str) -> Callable[[Plan], list[str]]:
    return lambda plan: python_module(module, "--host", HOST, "--port", str(plan.ports[name]))


# The start order; specs with no pending predecessor start at once, in this order. Prometheus
# applies discovered targets on a fixed 5 s tick after it starts, so it goes first (its config
# needs only the reserved ports) and the wait overlaps the rest; PostgreSQL's initdb is the
# other long pole. Ready does not include Prometheus's first scrapes: checks that read scraped
# data poll with their own deadline, and `sandbox up` waits for them (await_first_scrapes).
SERVICES: tuple[Spec, ...] = (
    ServiceSpec("prometheus", (), start_prometheus),
    ServiceSpec("postgres", (), start_postgres),
    ServiceSpec("alert_sink", (), start_alert_sink),
    ServiceSpec("alertmanager", ("alert_sink",), start_alertmanager),
    ServiceSpec("ntp", (), start_ntp),
    PythonService(
        "chaosproxy",
        (),
        _listening_on("spark_sandbox.chaosproxy", "chaosproxy"),
        # In the environment, not argv: any local user can read another's command line.
        lambda plan: {CHAOSPROXY_TOKEN_ENV: plan.values["toxiproxy_token"]},
    ),
    PythonService("feed", (), _listening_on("spark_sandbox.app.feed", "feed"), health_path=None),
    PythonService(
        "third_party",
        (),
        lambda plan: uvicorn("spark_sandbox.app.thirdparty:app", plan.ports["third_party"]),
    ),
    ServiceSpec("release", (), build_release),
    ServiceSpec("migrate", ("postgres",), migrate, log="postgres"),
    # After the schema, as a nightly backup finds it; G04 checks that one exists.
    ServiceSpec("base_backup", ("migrate",), base_backup, log="postgres"),
    ServiceSpec("pgbouncer", ("postgres",), start_pgbouncer),
    ServiceSpec("proxies", ("chaosproxy", "pgbouncer"), create_proxies, log="chaosproxy"),
    ServiceSpec("db_sessions", ("migrate", "pgbouncer"), start_db_sessions, "long_running_query"),
    ServiceSpec("exporters", ("pgbouncer",), start_exporters, log="pgbouncer_exporter"),
    PythonService(
        "api",
        ("migrate", "proxies", "feed"),
        lambda plan: uvicorn("spark_sandbox.app.main:app", plan.ports["api"]),
        api_env,
    ),
    PythonService(
        "api_stable",
        ("migrate", "proxies", "feed"),
        lambda plan: uvicorn("spark_sandbox.app.main:app", plan.ports["api_stable"]),
        stable_api_env,
    ),
    PythonService(
        "consumer",
        ("migrate", "pgbouncer"),
        _listening_on("spark_sandbox.app.consumer", "consumer"),
        lambda plan: {
            "SPARK_CONSUMER_DSN": plan.values["pgbouncer"].dsn("spark"),
            "SPARK_DEFECTS": ",".join(sorted(plan.blueprint.outbox_defects)),
        },
    ),
    # The publisher retries with backoff until the consumer answers: no need to wait for it.
    PythonService(
        "outbox",
        ("migrate", "proxies"),
        lambda plan: python_module(
            "spark_sandbox.app.outbox", "--metrics-port", str(plan.ports["outbox"])
        ),
        lambda plan: {
            "SPARK_APP_DSN": plan.values["app_dsn"],
            "SPARK_LISTEN_DSN": plan.values["pgbouncer"].dsn("spark_listen"),
            "SPARK_CONSUMER_URL": f"http://{HOST}:{plan.ports['proxy_consumer']}",
            "SPARK_DEFECTS": ",".join(sorted(plan.blueprint.outbox_defects)),
        },
    ),
)


def replaced(services: Sequence[Spec], spec: Spec) -> tuple[Spec, ...]:
    """``services`` with the spec of the same name replaced by ``spec``."""
    return tuple(spec if s.name == spec.name else s for s in services)


def endpoints_of(plan: Plan, pids: Mapping[str, int]) -> Endpoints:
    """The endpoints contract of a started plan."""
    pg = plan.values["pg"]
    bouncer = plan.values["pgbouncer"]
    release = plan.values["release"]
    api_url = f"http://{HOST}:{plan.ports['proxy_api']}"
    return Endpoints(
        api_url=api_url,
        web_url=f"{api_url}/",
        stable_api_url=plan.url("api_stable"),
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
        artifact_path=release.artifact,
        sbom_path=release.sbom,
        provenance_path=release.provenance,
        defects=plan.blueprint.defects,
        pids=dict(pids),
        passwords={
            "postgres_password": pg.superuser_password,
            "app_password": bouncer.app_password,
            "pgbouncer_admin_password": bouncer.admin_password,
        },
        toxiproxy_token=plan.values["toxiproxy_token"],
        rollback_upstream=f"{HOST}:{plan.ports[ROLLBACK_SERVICES[plan.blueprint.rollback_track]]}",
    )


# The API service serving each track: a rollback moves the fault proxy's spark_api upstream.
ROLLBACK_SERVICES = {CANARY_TRACK: "api", STABLE_TRACK: "api_stable"}
ROLLBACK_PROXY = "spark_api"
