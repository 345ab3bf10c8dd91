"""The sandbox orchestrator end to end: start, health, stop, failure, CLI, state, ops defects.

Each full start runs the real stack (PostgreSQL, PgBouncer, Prometheus, ...), so the tests
share one healthy sandbox per module and keep the other starts to the few that need their own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pytest_spark.config import Target
from pytest_spark.probes import money
from pytest_spark.probes.spark_api import SparkApi, Ticket, new_account, new_key
from spark_sandbox import ops_defects
from spark_sandbox.defects import Blueprint
from spark_sandbox.deployment import SERVICES, Launch, Plan, ServiceSpec, replaced
from spark_sandbox.home import run_key
from spark_sandbox.plugin import as_target
from spark_sandbox.processes import ProcessIdentity, group_members, process_start_time
from spark_sandbox.runs import RunRecord, reap_stale_runs
from spark_sandbox.sandbox import STATE_FILE, Endpoints, Sandbox, find_running, redact
from spark_sandbox.services.process import ServiceProcess, ServiceStartError
from spark_sandbox.state import write_state

REPO = Path(__file__).resolve().parents[2]
# Scrape targets by job, and by track for the API's two.
SCRAPE_TARGETS = {
    "spark-api/canary",
    "spark-api/stable",
    "spark-outbox",
    "spark-consumer",
    "pgbouncer",
    "prometheus",
    "alertmanager",
}
OPS_DEFECTS = (
    "no_6h_burn_alert",
    "dashboard_variable_without_default",
    "scrape_target_down",
    "silenced_release_alert",
)
# Started with the ops defects above: they reach the canary track and never the stable one.
CANARY_DEFECTS = ("stale_feed_symbol", "replay_answers_409")
TRACK_KEYS = (
    "canary_api_url",
    "canary_web_url",
    "stable_api_url",
    "stable_web_url",
    "canary_selector",
    "stable_selector",
)
BURN_RULES = """\
groups:
- name: slo-burn
  rules:
  - alert: OrderApiBurnRateFast
    expr: slo:errors:ratio_rate1h > 14.4 * 0.001 and slo:errors:ratio_rate5m > 14.4 * 0.001
    labels: {severity: page}
  - alert: OrderApiBurnRateSlow
    expr: slo:errors:ratio_rate6h > 6 * 0.001 and slo:errors:ratio_rate30m > 6 * 0.001
    labels: {severity: page}
  - record: slo:errors:ratio_rate6h
    expr: sum(rate(errors[6h])) / sum(rate(requests[6h]))
"""
DASHBOARD = {
    "title": "Spark orders",
    "templating": {"list": [{"name": "instance", "current": {"text": "all", "value": "$__all"}}]},
}


def write_ops_dir(source: Path) -> Path:
    """An ops dir with the artefacts the ops defects change: burn-rate rules, a dashboard."""
    (source / "prometheus" / "rules").mkdir(parents=True)
    (source / "prometheus" / "rules" / "slo.yml").write_text(BURN_RULES)
    (source / "grafana").mkdir()
    (source / "grafana" / "orders.json").write_text(json.dumps(DASHBOARD))
    shutil.copy(REPO / "ops" / "flags.toml", source / "flags.toml")
    return source


# Waits in these tests poll a live service; the bound is generous because the machine is shared.
POLL_SECONDS = 30.0


def public_run_root(prefix: str) -> Path:
    """A run root the postgres user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def healthy() -> Iterator[tuple[Sandbox, Endpoints]]:
    root = public_run_root("spark-sandbox-healthy-")
    sandbox = Sandbox(run_root=root)
    try:
        endpoints = sandbox.start()
        yield sandbox, endpoints
        sandbox.stop()
        assert_nothing_left(endpoints)  # stop() of a whole, healthy sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_root() -> Iterator[Path]:
    root = public_run_root("spark-sandbox-test-")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def recorded_ports(endpoints: Endpoints) -> set[int]:
    """Every TCP port an endpoint names (URLs, host:port pairs and DSN ``port=`` fields)."""
    ports = set()
    for value in endpoints.to_dict().values():
        text = str(value)
        for marker in ("127.0.0.1:", "port="):
            for part in text.split(marker)[1:]:
                digits = "".join(c for c in part[:6] if c.isdigit())
                if digits:
                    ports.add(int(digits))
    return ports


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def assert_nothing_left(endpoints: Endpoints) -> None:
    """No recorded pid, none of their process groups, no recorded port, no run dir."""
    for name, pid in endpoints.pids.items():
        assert process_start_time(pid) is None, f"{name} (pid {pid}) still runs"
        assert group_members(pid) == [], f"{name}'s process group {pid} still has members"
    tcp = {p for p in recorded_ports(endpoints) if listening(p)}
    assert tcp == set(), f"ports still listening: {sorted(tcp)}"
    assert not endpoints.run_dir.exists()


def sntp_reply(server: str) -> bytes:
    """One SNTP client request (mode 3) to ``host:port``; the raw 48-byte reply."""
    host, port = server.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(b"\x23" + 47 * b"\0", (host, int(port)))
        return sock.recvfrom(512)[0]


def poll(check: Any, what: str) -> Any:
    """The first truthy value of ``check()`` within POLL_SECONDS, else a failure naming it."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {POLL_SECONDS:.0f} s")
        time.sleep(0.25)


def prometheus_targets(endpoints: Endpoints) -> dict[str, str]:
    """Scrape target (``job``, or ``job/track`` for the API's tracks) -> its health, as
    Prometheus sees them."""
    body = httpx.get(f"{endpoints.prometheus_url}/api/v1/targets", timeout=5).json()
    return {
        "/".join(filter(None, (t["labels"]["job"], t["labels"].get("track")))): t["health"]
        for t in body["data"]["activeTargets"]
    }


def instant(endpoints: Endpoints, query: str) -> list[dict[str, Any]]:
    """The series of an instant PromQL query, each ``{"metric": labels, "value": [t, v]}``."""
    body = httpx.get(
        f"{endpoints.prometheus_url}/api/v1/query", params={"query": query}, timeout=5
    ).json()
    return list(body["data"]["result"])


# -- the healthy sandbox ------------------------------------------------------------------------


def test_every_service_answers_its_health_endpoint(healthy: tuple[Sandbox, Endpoints]) -> None:
    _, ep = healthy
    for url in (
        f"{ep.api_url}/health",
        f"{ep.third_party_origin}/health",
        f"{ep.alert_sink_url}/health",
        f"{ep.prometheus_url}/-/ready",
        f"{ep.alertmanager_url}/-/ready",
    ):
        assert httpx.get(url, timeout=5).status_code == 200, url
    assert httpx.get(f"{ep.toxiproxy_url}/proxies", timeout=5).status_code == 401
    bearer = {"Authorization": f"Bearer {ep.toxiproxy_token}"}
    proxies = httpx.get(f"{ep.toxiproxy_url}/proxies", headers=bearer, timeout=5).json()
    assert set(proxies) == {"spark_api", "spark_db", "spark_feed", "spark_consumer"}
    # In its environment, not argv: any local user may read another's /proc/<pid>/cmdline.
    cmdline = Path(f"/proc/{ep.pids['chaosproxy']}/cmdline").read_bytes()
    assert ep.toxiproxy_token.encode() not in cmdline
    assert all(p["enabled"] for p in proxies.values())
    with psycopg.connect(ep.postgres_dsn, connect_timeout=5) as conn:
        applied = conn.execute("SELECT count(*) FROM _prisma_migrations").fetchone()
    assert applied is not None and applied[0] >= 1
    for dsn in (ep.app_dsn, ep.listen_dsn):
        with psycopg.connect(dsn, connect_timeout=5, prepare_threshold=None) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(
        ep.pgbouncer_admin_dsn, autocommit=True, prepare_threshold=None, connect_timeout=5
    ) as conn:
        pools = {row[0] for row in conn.execute("SHOW DATABASES").fetchall()}
    assert {"spark", "spark_listen"} <= pools
    reply = sntp_reply(ep.ntp_server)
    assert len(reply) >= 48 and reply[0] & 0x7 == 4  # mode 4: a server answered
    assert struct.unpack("!I", reply[40:44])[0] > 0  # it filled in its transmit time


def test_prometheus_scrapes_every_expected_job_and_all_are_up(
    healthy: tuple[Sandbox, Endpoints],
) -> None:
    _, ep = healthy
    targets = poll(
        lambda: (t := prometheus_targets(ep)) and set(t.values()) == {"up"} and t,
        "every scrape target up",
    )
    assert set(targets) == SCRAPE_TARGETS


def test_the_api_runs_as_a_canary_and_a_stable_track_each_scraped_with_its_label(
    healthy: tuple[Sandbox, Endpoints],
) -> None:
    _, ep = healthy
    assert httpx.get(f"{ep.api_url}/health", timeout=5).json()["track"] == "canary"
    assert httpx.get(f"{ep.stable_api_url}/health", timeout=5).json()["track"] == "stable"
    assert {"api", "api_stable"} <= set(ep.pids)
    target = as_target(Target("sandbox", "sandbox"), ep, "note")
    keys = {k: target.endpoints[k] for k in TRACK_KEYS}
    assert keys == {
        "canary_api_url": ep.api_url,
        "canary_web_url": ep.web_url,
        "stable_api_url": ep.stable_api_url,
        "stable_web_url": f"{ep.stable_api_url}/",
        "canary_selector": 'track="canary"',
        "stable_selector": 'track="stable"',
    }
    # Each selector picks its one track out of the API's job; the stable target is the
    # stable URL itself (the canary's is the API behind the fault proxy).
    builds = poll(
        lambda: len(found := instant(ep, 'spark_build_info{job="spark-api"}')) == 2 and found,
        "spark_build_info of both tracks",
    )
    version = {b["metric"]["track"]: b["metric"]["version"] for b in builds}
    assert version["stable"] == f"{version['canary']}-previous"
    for track in ("canary", "stable"):
        [up] = instant(ep, f'up{{job="spark-api",{keys[f"{track}_selector"]}}}')
        assert up["value"][1] == "1"
        if track == "stable":
            assert f"http://{up['metric']['instance']}" == ep.stable_api_url


def test_alertmanager_routes_the_release_receivers_to_the_alert_sink(
    healthy: tuple[Sandbox, Endpoints],
) -> None:
    import yaml

    _, ep = healthy
    release = yaml.safe_load((ep.ops_dir / "alertmanager.yml").read_text())
    status = httpx.get(f"{ep.alertmanager_url}/api/v2/status", timeout=5).json()
    live = yaml.safe_load(status["config"]["original"])
    assert [r["name"] for r in live["receivers"]] == [r["name"] for r in release["receivers"]]
    urls = {w["url"] for r in live["receivers"] for w in r.get("webhook_configs", [])}
    assert urls == {f"{ep.alert_sink_url}/alerts"}


def test_endpoints_survive_a_json_round_trip(healthy: tuple[Sandbox, Endpoints]) -> None:
    _, ep = healthy
    assert Endpoints.from_dict(json.loads(json.dumps(ep.to_dict()))) == ep
    assert ep.ops_dir == REPO / "ops"
    assert ep.defects == ()
    assert {"postgres", "pgbouncer", "api", "prometheus", "alertmanager"} <= set(ep.pids)
    record = RunRecord.load(ep.run_dir, run_key())
    assert record.owner.pid == os.getpid() and record.detached is False
    assert {name: p.pid for name, p in record.processes.items()} == dict(ep.pids)
    assert ep.toxiproxy_token and ep.toxiproxy_token not in repr(ep)
    # Every credential is declared, and every password a DSN embeds is one of them.
    secrets = ep.secrets()
    assert secrets["toxiproxy_token"] == ep.toxiproxy_token
    for dsn in (ep.postgres_dsn, ep.app_dsn, ep.listen_dsn, ep.pgbouncer_admin_dsn):
        password = dsn.split("password=")[1].split()[0]
        assert password in secrets.values(), redact(dsn)
    # Its own release, named as a build pipeline would name it, inside its run dir.
    for path in (ep.artifact_path, ep.sbom_path, ep.provenance_path):
        assert path.is_file() and ep.run_dir in path.parents, path
    assert ep.artifact_path.name.endswith(".tar.gz")


# -- start failures, a second sandbox, ops defects -----------------------------------------------


def api_that_cannot_start(plan: Plan, launch: Launch) -> None:
    """The API exits at once with a message, after the database tier is already up."""
    argv = [sys.executable, "-c", "print('api: cannot bind the order book'); raise SystemExit(3)"]
    service = ServiceProcess(
        "api", argv, log_path=plan.run_dir / "logs" / "api.log", ready=lambda: False
    )
    launch.spawn("api", service, "nowhere")


class StopRecordingSandbox(Sandbox):
    """Remembers which services its stop() had to stop."""

    stopped_pids: tuple[int, ...] = ()

    def stop(self) -> None:
        self.stopped_pids = tuple(s.pid for _, s in self._services if s.pid is not None)
        super().stop()


def test_a_service_that_fails_raises_with_its_log_and_leaves_nothing(run_root: Path) -> None:
    lines: list[str] = []
    [api] = [spec for spec in SERVICES if spec.name == "api"]
    failing = ServiceSpec("api", api.after, api_that_cannot_start)
    sandbox = StopRecordingSandbox(
        run_root=run_root, progress=lines.append, services=replaced(SERVICES, failing)
    )
    with pytest.raises(ServiceStartError) as raised:
        sandbox.start()
    assert raised.value.name == "api"
    assert "cannot bind the order book" in str(raised.value)
    assert "exited early with code 3" in str(raised.value)
    started = [line.split()[0] for line in lines if " ready on " in line]
    assert "postgres" in started  # the failure came after something was really running
    assert list(run_root.iterdir()) == []
    assert len(sandbox.stopped_pids) >= 3
    for pid in sandbox.stopped_pids:
        assert group_members(pid) == [], f"process group {pid} outlived the failed start"


def assert_ops_defects_show(bad: Endpoints, source: Path) -> None:
    """Each ops defect's broken property, seen directly, against the ops dir it came from."""
    # no_6h_burn_alert: the served rules lack the 6 h burn-rate alert, the source keeps it.
    assert bad.ops_dir == bad.run_dir / "ops"
    assert burn_windows(source) == {"1h", "6h"}
    assert burn_windows(bad.ops_dir) == {"1h"}
    loaded = loaded_alert_exprs(bad)
    assert loaded and not any(ops_defects.SIX_HOUR_WINDOW.search(e) for e in loaded)

    # dashboard_variable_without_default: one variable lost its `current`.
    assert variables_without_default(bad.ops_dir) == ["orders.json:instance"]
    assert variables_without_default(source) == []

    # scrape_target_down: the alertmanager job's target is down, every other one is up, while
    # Alertmanager itself still answers (the silence below is read from it).
    # Readiness does not wait for Prometheus's first scrapes (its 5 s discovery tick): poll.
    targets = poll(
        lambda: (t := prometheus_targets(bad)) and "unknown" not in t.values() and len(t) > 1 and t,
        "every scrape target scraped once",
    )
    assert targets.pop("alertmanager") == "down"
    assert set(targets.values()) == {"up"}

    # silenced_release_alert: an active silence matches a release alert.
    silences = httpx.get(f"{bad.alertmanager_url}/api/v2/silences", timeout=5).json()
    active = [s for s in silences if s["status"]["state"] == "active"]
    release = ops_defects.release_alert_name(bad.ops_dir)
    assert [m["value"] for s in active for m in s["matchers"]] == [release]


def assert_canary_defects_spare_the_stable_track(bad: Endpoints) -> None:
    """The app defects change the canary (``api_url``) only: the stable track answers and is
    scraped as the healthy release."""
    # stale_feed_symbol: FROTO is stale on the canary from its first scrape, as S3 reads it.
    staleness = poll(
        lambda: len(s := instant(bad, 'spark_feed_staleness_seconds{symbol="FROTO"}')) == 2 and s,
        "FROTO's staleness on both tracks",
    )
    by_track = {s["metric"]["track"]: float(s["value"][1]) for s in staleness}
    assert by_track["canary"] > 60 and by_track["stable"] < 5, by_track
    # replay_answers_409: a replay answers 409 on the canary, the stored order on stable.
    statuses = {}
    for track, url in (("canary", bad.api_url), ("stable", bad.stable_api_url)):
        with SparkApi(url, 5.0) as api:
            instrument = api.instrument("THYAO")
            [price] = money.aligned_prices_near(instrument.base_price, instrument.band, 1)
            ticket = Ticket(new_account(f"tracks-{track}"), "THYAO", "buy", 1, price)
            key = new_key()
            statuses[track] = (api.submit(ticket, key).status, api.submit(ticket, key).status)
    assert statuses == {"canary": (201, 409), "stable": (201, 201)}


def burn_windows(ops_dir: Path) -> set[str]:
    import yaml

    windows = set()
    for path in ops_defects.rule_files(ops_dir):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule and "burn" in str(rule["alert"]).lower():
                    expr = str(rule.get("expr", ""))
                    windows |= {w for w in ("1h", "6h") if w in expr}
    return windows


def loaded_alert_exprs(endpoints: Endpoints) -> list[str]:
    body = httpx.get(f"{endpoints.prometheus_url}/api/v1/rules", timeout=5).json()
    return [
        rule["query"]
        for group in body["data"]["groups"]
        for rule in group["rules"]
        if rule["type"] == "alerting"
    ]


def variables_without_default(ops_dir: Path) -> list[str]:
    missing = []
    for path in sorted((ops_dir / "grafana").glob("*.json")):
        model = json.loads(path.read_text())
        model = model.get("dashboard", model)
        for variable in model.get("templating", {}).get("list", []):
            if not variable.get("current"):
                missing.append(f"{path.name}:{variable.get('name')}")
    return missing


# -- the CLI and the state file -----------------------------------------------------------------


def spark_sandbox(
    *args: str, state_dir: Path, ops_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPARK_SANDBOX_STATE_DIR": str(state_dir)}
    if ops_dir is not None:
        env[ops_defects.OPS_DIR_ENV] = str(ops_dir)
    return subprocess.run(
        [sys.executable, "-m", "spark_sandbox", "sandbox", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(gone.stdout)


def plant_stale_run(run_root: Path) -> tuple[Path, subprocess.Popen[bytes]]:
    """The leftovers of a killed run: a dead owner and an orphaned service still running."""
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    owner = dead_pid()
    run_dir = run_root / f"run-20260101T000000000000-{owner}"
    (run_dir / "logs").mkdir(parents=True)
    RunRecord(
        run_dir,
        "stale-run",
        ProcessIdentity(owner, 1, sys.executable),
        processes={"feed": ProcessIdentity.of(orphan.pid)},
    ).write(run_key())
    return run_dir, orphan


def test_cli_up_with_ops_defects_next_to_a_healthy_sandbox_then_status_and_down(
    healthy: tuple[Sandbox, Endpoints], run_root: Path, tmp_path: Path
) -> None:
    _, good = healthy
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / STATE_FILE).write_text(
        json.dumps({"endpoints": {}, "pids": {}, "processes": {"api": [dead_pid(), None]}})
    )
    stale_dir, orphan = plant_stale_run(run_root)
    source = write_ops_dir(tmp_path / "ops")
    defects = [arg for name in (*OPS_DEFECTS, *CANARY_DEFECTS) for arg in ("--defect", name)]
    try:
        up = spark_sandbox(
            "up", "--run-root", str(run_root), *defects, state_dir=state_dir, ops_dir=source
        )
        assert up.returncode == 0, up.stderr
        assert "api_url: http://127.0.0.1:" in up.stdout
        assert "password=***" in up.stdout and "secret" not in up.stdout
        assert not stale_dir.exists()
        assert orphan.wait(timeout=10) is not None

        # The CLI has exited; the services it started keep running.
        bad = find_running(state_dir)
        assert bad is not None
        assert httpx.get(f"{bad.api_url}/health", timeout=5).status_code == 200
        assert bad.defects == (*OPS_DEFECTS, *CANARY_DEFECTS)

        # Two sandboxes at once: their own run dirs and ports.
        assert bad.run_dir != good.run_dir
        assert recorded_ports(bad).isdisjoint(recorded_ports(good))
        assert_ops_defects_show(bad, source)
        assert_canary_defects_spare_the_stable_track(bad)

        status = spark_sandbox("status", state_dir=state_dir)
        assert status.returncode == 0, status.stderr
        assert "postgres" in status.stdout and "DOWN" not in status.stdout

        again = spark_sandbox("up", "--run-root", str(run_root), state_dir=state_dir)
        assert again.returncode == 1 and "already running" in again.stderr

        down = spark_sandbox("down", state_dir=state_dir)
        assert down.returncode == 0, down.stderr
        assert_nothing_left(bad)
        assert not (state_dir / STATE_FILE).exists()
        assert spark_sandbox("status", state_dir=state_dir).returncode == 1
        # Down again, with nothing running: says so and succeeds.
        again_down = spark_sandbox("down", state_dir=state_dir)
        assert again_down.returncode == 0, again_down.stderr
        assert "nothing to stop" in again_down.stdout
        assert httpx.get(f"{good.api_url}/health", timeout=5).status_code == 200
    finally:
        orphan.kill()
        spark_sandbox("down", state_dir=state_dir)


OWNER_SCRIPT = """
import json, sys, time
from pathlib import Path
from spark_sandbox.sandbox import Sandbox

endpoints = Sandbox().start()  # the default run root, from this process's own cwd
ready = Path(sys.argv[1])
ready.with_suffix(".tmp").write_text(json.dumps(endpoints.to_dict()))
ready.with_suffix(".tmp").rename(ready)  # whole or absent: the test polls for it
time.sleep(300)
"""


@pytest.fixture
def own_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A temp dir of this test's own for the sandbox home (default run root, state dir and key),
    for this process (tempfile) and its children (TMPDIR); reachable by the postgres user."""
    tmp_path_factory.getbasetemp()  # before tempfile's dir changes: pytest derives it from that
    temp = public_run_root("spark-sandbox-home-")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv("SPARK_SANDBOX_STATE_DIR", raising=False)
    try:
        yield temp / f"spark-sandbox-{os.geteuid()}"
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_a_killed_owner_is_reaped_by_the_next_start_from_another_directory(
    own_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready_file = tmp_path / "endpoints.json"
    first_cwd, second_cwd = tmp_path / "checkout", tmp_path / "elsewhere"
    first_cwd.mkdir()
    second_cwd.mkdir()
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(ready_file)],
        cwd=first_cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        poll(lambda: ready_file.exists() or owner.poll() is not None, "the owner's sandbox")
        assert owner.poll() is None, "the owner's sandbox did not start"
        old = Endpoints.from_dict(json.loads(ready_file.read_text()))
    finally:
        owner.kill()  # SIGKILL: no chance to stop its services
        owner.wait()
    assert old.run_dir.parent == own_home  # not below the owner's working directory
    orphans = [name for name, pid in old.pids.items() if process_start_time(pid)]
    assert "postgres" in orphans and "api" in orphans  # they outlive a killed owner ...

    monkeypatch.chdir(second_cwd)
    lines: list[str] = []
    sandbox = Sandbox(progress=lines.append)
    try:
        new = sandbox.start()
        assert f"removed stale run dir {old.run_dir}" in lines
        assert_nothing_left(old)  # ... until the next start, from anywhere, reaps them
        assert new.run_dir.parent == own_home
    finally:
        sandbox.stop()


def test_find_running_tears_down_a_sandbox_with_a_service_gone(own_home: Path) -> None:
    survivor = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        key = run_key()
        run_dir = own_home / "run-20260101T000000000000-1"
        run_dir.mkdir()
        record = RunRecord(
            run_dir,
            "half-a-sandbox",
            ProcessIdentity.of(os.getpid()),
            detached=True,
            processes={
                "feed": ProcessIdentity.of(survivor.pid),
                "api": ProcessIdentity(dead_pid(), 1, sys.executable),
            },
        )
        record.write(key)
        write_state(record, {"run_dir": str(run_dir)}, key)
        assert find_running() is None
        assert survivor.wait(timeout=10) is not None  # the half sandbox is not left running
        assert not (own_home / STATE_FILE).exists() and not run_dir.exists()
        assert find_running() is None
    finally:
        survivor.kill()
        survivor.wait()


def test_a_detached_run_whose_services_died_is_stale_a_live_one_is_not(own_home: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lines: list[str] = []
    try:
        current = ProcessIdentity.of(live.pid)
        for name, recorded in (
            ("run-1-1", current),
            # Same pid, other start time: a reused pid, not ours.
            ("run-2-1", ProcessIdentity(live.pid, 1, current.exe)),
        ):
            (own_home / name).mkdir(parents=True)
            RunRecord(
                own_home / name, name, ProcessIdentity(1, 1, "/sbin/init"), detached=True,
                processes={"api": recorded},
            ).write(run_key())  # fmt: skip
        assert list(reap_stale_runs(own_home, lines.append)) == [own_home / "run-2-1"]
        assert live.poll() is None  # a reused pid is never signalled ...
        assert any("a reused pid" in line for line in lines), lines  # ... and that is said
    finally:
        live.kill()
        live.wait()


def test_redact_hides_dsn_passwords() -> None:
    assert redact("host=h port=1 user=u password=s3cret dbname=d") == (
        "host=h port=1 user=u password=*** dbname=d"
    )
    assert redact("postgresql://u:s3cret@127.0.0.1:5/d") == "postgresql://u:***@127.0.0.1:5/d"
    assert redact("http://127.0.0.1:9090") == "http://127.0.0.1:9090"


def test_an_unknown_defect_fails_before_anything_starts(run_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown sandbox defect 'no_such_defect'"):
        Sandbox(run_root=run_root, defects=["no_such_defect"])
    assert list(run_root.iterdir()) == []


# -- ops defects on a synthetic ops dir (no services) -------------------------------------------


@pytest.fixture
def ops_source(tmp_path: Path) -> Path:
    return write_ops_dir(tmp_path / "ops")


def served_ops(defects: list[str], run_dir: Path, source: Path) -> Path:
    """The ops dir a deployment with ``defects`` serves from ``source``."""
    return ops_defects.prepare_ops_dir(Blueprint.of(defects).ops_changes, run_dir, source)


def test_healthy_deployments_serve_the_repo_ops_dir(ops_source: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert served_ops(["scrape_target_down"], run_dir, ops_source) == ops_source
    assert not run_dir.exists()


def test_no_6h_burn_alert_drops_only_the_slow_burn_alert(ops_source: Path, tmp_path: Path) -> None:
    served = served_ops(["no_6h_burn_alert"], tmp_path / "run", ops_source)
    assert served == tmp_path / "run" / "ops"
    import yaml

    rules = yaml.safe_load((served / "prometheus/rules/slo.yml").read_text())["groups"][0]["rules"]
    assert [r.get("alert") or r.get("record") for r in rules] == [
        "OrderApiBurnRateFast",
        "slo:errors:ratio_rate6h",
    ]
    assert (ops_source / "prometheus/rules/slo.yml").read_text() == BURN_RULES


def test_dashboard_variable_without_default_removes_current(
    ops_source: Path, tmp_path: Path
) -> None:
    served = served_ops(["dashboard_variable_without_default"], tmp_path / "run", ops_source)
    variable = json.loads((served / "grafana/orders.json").read_text())["templating"]["list"][0]
    assert variable == {"name": "instance"}
    assert variables_without_default(ops_source) == []


def test_the_release_alert_to_silence_is_a_burn_rate_alert(ops_source: Path) -> None:
    assert ops_defects.release_alert_name(ops_source) == "OrderApiBurnRateFast"


def _plan(ops_dir: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ops_dir / ops_defects.CANARY_PLAN).read_text())


def _rules_by_alert(ops_dir: Path) -> dict[str, dict[str, Any]]:
    import yaml

    document = yaml.safe_load((ops_dir / ops_defects.ROLLBACK_RULES).read_text())
    return {r["alert"]: r for g in document["groups"] for r in g["rules"] if "alert" in r}


def released_ops_files() -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(ops_defects.OPS_DIR.rglob("*")) if p.is_file()}


def test_the_canary_ops_defects_change_the_served_copy_and_nothing_else(tmp_path: Path) -> None:
    released = released_ops_files()
    defects = ["trigger_pending_in_stage", "loose_stage_threshold", "thin_canary_traffic"]
    served = served_ops(defects, tmp_path / "run", ops_defects.OPS_DIR)
    assert served == tmp_path / "run" / "ops"
    assert released_ops_files() == released  # the repo's ops dir is untouched

    # loose_stage_threshold and thin_canary_traffic: three values of the plan, nothing else.
    plan, changed = _plan(ops_defects.OPS_DIR), _plan(served)
    assert changed["metric"]["S1"]["below"] == 500  # T01's threshold is 400 ms
    assert (changed["sandbox"]["rate"], changed["sandbox"]["canary_rate"]) == (4, 2)
    plan["metric"]["S1"]["below"] = 500
    plan["sandbox"].update(rate=4, canary_rate=2)
    assert changed == plan
    # Edited line by line: the released comments are still there.
    assert (served / "canary-plan.toml").read_text().count("#") == (
        (ops_defects.OPS_DIR / "canary-plan.toml").read_text().count("#")
    )

    # trigger_pending_in_stage: T01 compares against 0 and waits 1 h; every other rule as is.
    rules, pending = _rules_by_alert(ops_defects.OPS_DIR), _rules_by_alert(served)
    t01 = pending.pop("SparkRollbackApiLatencyP95")
    released_t01 = rules.pop("SparkRollbackApiLatencyP95")
    assert t01["expr"].strip().endswith(") > 0") and t01["for"] == "1h"
    assert t01["expr"].replace(") > 0", ") > 0.4") == released_t01["expr"]
    assert pending == rules
    assert {p.name for p in ops_defects.rule_files(served)} == {
        p.name for p in ops_defects.rule_files(ops_defects.OPS_DIR)
    }


def test_pitr_target_left_empty_empties_only_the_runbooks_recovery_target(tmp_path: Path) -> None:
    served = served_ops(["pitr_target_left_empty"], tmp_path / "run", ops_defects.OPS_DIR)
    released = (ops_defects.OPS_DIR / "backup.toml").read_text()
    changed = (served / "backup.toml").read_text()
    runbook, emptied = tomllib.loads(released), tomllib.loads(changed)
    assert emptied["restore"]["recovery_target_time"] == ""
    runbook["restore"]["recovery_target_time"] = ""
    assert emptied == runbook
    assert changed.count("#") == released.count("#")


@pytest.mark.parametrize(
    ("defect", "missing"),
    [
        ("no_6h_burn_alert", "prometheus/rules"),
        ("dashboard_variable_without_default", "grafana"),
        ("trigger_pending_in_stage", "prometheus/rules"),
        ("loose_stage_threshold", "canary-plan.toml"),
        ("thin_canary_traffic", "canary-plan.toml"),
        ("pitr_target_left_empty", "backup.toml"),
    ],
)
def test_an_ops_defect_without_its_artefact_is_a_clear_error(
    defect: str, missing: str, tmp_path: Path
) -> None:
    source = tmp_path / "ops"
    source.mkdir()
    with pytest.raises(ops_defects.OpsDefectError, match=f"{defect} needs .*{missing}"):
        served_ops([defect], tmp_path / "run", source)


def test_a_promtool_test_file_beside_the_rules_is_not_loaded_as_rules(ops_source: Path) -> None:
    rules = ops_source / "prometheus" / "rules"
    (rules / "slo_test.yml").write_text("rule_files: [slo.yml]\ntests: []\n")
    assert ops_defects.rule_files(ops_source) == [rules / "slo.yml"]


def test_the_default_run_root_and_state_dir_do_not_depend_on_the_working_directory(
    own_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spark_sandbox.home import sandbox_home
    from spark_sandbox.runs import check_reachable_by_postgres, default_run_root
    from spark_sandbox.state import state_dir_default

    private = tmp_path / "private-clone"  # a clone inside a 0700 directory, as mktemp -d makes
    private.mkdir(mode=0o700)
    seen = set()
    for cwd in (private, tmp_path, Path("/")):
        monkeypatch.chdir(cwd)
        seen.add((default_run_root(), state_dir_default()))
    assert seen == {(own_home, own_home)}
    home = sandbox_home()
    assert oct(home.stat().st_mode & 0o777) == "0o755"
    check_reachable_by_postgres(home)  # PostgreSQL runs as the postgres user below it
    run_key()
    assert oct((home / "sandbox.key").stat().st_mode & 0o777) == "0o600"


def test_app_defects_reach_their_track_only(tmp_path: Path) -> None:
    """This release's defects go to the canary, a baseline defect to the stable track."""
    from spark_sandbox.defects import Blueprint
    from spark_sandbox.deployment import Plan, api_env, stable_api_env

    plan = Plan(
        run_dir=tmp_path,
        blueprint=Blueprint.of(["slow_canary_orders", "slow_stable_orders"]),
        ops_dir=tmp_path,
        ports={"proxy_db": 1, "proxy_feed": 2, "third_party": 3},
        values={"app_dsn": "dbname=x", "pgbouncer": _Bouncer()},
    )
    assert api_env(plan)["SPARK_DEFECTS"] == "slow_canary_orders"
    assert stable_api_env(plan)["SPARK_DEFECTS"] == "slow_stable_orders"


class _Bouncer:
    def dsn(self, database: str) -> str:
        return f"dbname={database}"
