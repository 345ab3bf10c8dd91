from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from services_support import assert_stopped

from spark_sandbox.services.alert_sink import AlertSink, start_alert_sink
from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceProcess, ServiceStartError
from spark_sandbox.services.prometheus import (
    Alertmanager,
    render_prometheus_config,
    start_alertmanager,
    start_prometheus,
    write_config,
)

DELIVERY_DEADLINE = 20.0


def wait_for(what: str, probe: Callable[[], Any], timeout: float = DELIVERY_DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.1)


def http_json(url: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture
def sink(run_dir: Path) -> Iterator[tuple[ServiceProcess, AlertSink]]:
    proc, sink = start_alert_sink(run_dir)
    try:
        yield proc, sink
    finally:
        proc.stop()


@pytest.fixture
def alertmanager(
    run_dir: Path, sink: tuple[ServiceProcess, AlertSink]
) -> Iterator[tuple[ServiceProcess, Alertmanager]]:
    proc, am = start_alertmanager(run_dir, sink[1].webhook_url)
    try:
        yield proc, am
    finally:
        proc.stop()


def test_sink_records_posted_alerts_with_receive_time(
    sink: tuple[ServiceProcess, AlertSink],
) -> None:
    _, alert_sink = sink
    payload = {"receiver": "alert_sink", "alerts": [{"labels": {"alertname": "Probe"}}]}
    assert http_json(alert_sink.webhook_url, payload) == {"recorded": 1}
    [alert] = alert_sink.received()
    assert alert["labels"] == {"alertname": "Probe"}
    assert alert["receiver"] == "alert_sink"
    assert abs(alert["receivedAtUnix"] - time.time()) < 60


def test_alertmanager_delivers_to_the_sink(
    sink: tuple[ServiceProcess, AlertSink], alertmanager: tuple[ServiceProcess, Alertmanager]
) -> None:
    _, alert_sink = sink
    _, am = alertmanager
    alert = {"labels": {"alertname": "ReleaseGateProbe", "severity": "page"}}
    http_json(f"{am.url}/api/v2/alerts", [alert])
    delivered = wait_for(
        "delivery from Alertmanager to the sink",
        lambda: [a for a in alert_sink.received() if a["labels"] == alert["labels"]],
    )
    assert delivered[0]["status"] == "firing"


def test_prometheus_scrapes_and_its_alert_reaches_the_sink(
    run_dir: Path,
    sink: tuple[ServiceProcess, AlertSink],
    alertmanager: tuple[ServiceProcess, Alertmanager],
) -> None:
    _, alert_sink = sink
    _, am = alertmanager
    rules = write_config(
        run_dir / "prometheus" / "rules.yml",
        json.dumps(
            {
                "groups": [
                    {
                        "name": "sandbox",
                        "rules": [{"alert": "SandboxAlwaysFiring", "expr": "vector(1)"}],
                    }
                ]
            }
        ),
    )
    port = free_port()
    config = write_config(
        run_dir / "prometheus" / "prometheus.yml",
        render_prometheus_config(
            {"prometheus": [f"127.0.0.1:{port}"], "alertmanager": [am.address]},
            rule_files=[rules],
            alertmanager=am.address,
        ),
    )
    proc, prom = start_prometheus(run_dir, config, port=port)
    pid = proc.pid
    assert pid is not None
    try:

        def targets_up() -> bool:
            query = f"{prom.url}/api/v1/query?query=up"
            result = http_json(query)["data"]["result"]
            return {r["metric"]["job"]: r["value"][1] for r in result} == {
                "prometheus": "1",
                "alertmanager": "1",
            }

        wait_for("both scrape targets up", targets_up)
        wait_for(
            "SandboxAlwaysFiring at the sink",
            lambda: [
                a
                for a in alert_sink.received()
                if a["labels"].get("alertname") == "SandboxAlwaysFiring"
            ],
        )
    finally:
        proc.stop()
    assert_stopped(pid, prom.port)


def test_executors_stop_clean(run_dir: Path) -> None:
    sink_proc, alert_sink = start_alert_sink(run_dir)
    am_proc, am = start_alertmanager(run_dir, alert_sink.webhook_url)
    pids = [sink_proc.pid, am_proc.pid]
    am_proc.stop()
    sink_proc.stop()
    for pid, port in zip(pids, (alert_sink.port, am.port), strict=True):
        assert pid is not None
        assert_stopped(pid, port)


def test_bad_prometheus_config_is_a_start_error_with_the_log(run_dir: Path) -> None:
    config = write_config(run_dir / "prometheus" / "prometheus.yml", '{"global": {"nope": 1}}')
    with pytest.raises(ServiceStartError) as failure:
        start_prometheus(run_dir, config)
    assert failure.value.name == "prometheus"
    assert "nope" in failure.value.log_tail


def test_rendered_prometheus_config_passes_promtool(run_dir: Path) -> None:
    rules = write_config(
        run_dir / "prometheus" / "rules.yml",
        json.dumps({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "vector(1)"}]}]}),
    )
    text = render_prometheus_config(
        {"spark-api": ["127.0.0.1:8001", "127.0.0.1:8004"], "pgbouncer": ["127.0.0.1:8002"]},
        rule_files=[rules],
        alertmanager="127.0.0.1:8003",
        metrics_paths={"spark-api": "/metrics/"},
        target_labels={
            "127.0.0.1:8001": {"track": "canary"},
            "127.0.0.1:8004": {"track": "stable"},
        },
    )
    config = write_config(run_dir / "prometheus" / "prometheus.yml", text)
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scrape = json.loads(text)["scrape_configs"]
    assert {job["job_name"]: job["metrics_path"] for job in scrape} == {
        "spark-api": "/metrics/",
        "pgbouncer": "/metrics",
    }
    # One static group per labelled target; a job without target labels keeps one group.
    assert {job["job_name"]: job["static_configs"] for job in scrape} == {
        "spark-api": [
            {"targets": ["127.0.0.1:8001"], "labels": {"track": "canary"}},
            {"targets": ["127.0.0.1:8004"], "labels": {"track": "stable"}},
        ],
        "pgbouncer": [{"targets": ["127.0.0.1:8002"]}],
    }


def test_bad_alertmanager_config_is_a_start_error_with_the_log(run_dir: Path) -> None:
    with pytest.raises(ServiceStartError) as failure:
        start_alertmanager(run_dir, "ftp://127.0.0.1/alerts")
    assert failure.value.name == "alertmanager"
    assert "ftp" in failure.value.log_tail


def test_prometheus_has_no_lifecycle_api_and_reloads_on_sighup(run_dir: Path) -> None:
    from spark_sandbox.wiring import reload_config

    port = free_port()
    config = write_config(
        run_dir / "prometheus" / "prometheus.yml",
        render_prometheus_config({"prometheus": [f"127.0.0.1:{port}"]}),
    )
    proc, prom = start_prometheus(run_dir, config, port=port)
    log_path = run_dir / "logs" / "prometheus.log"
    try:
        assert proc.pid is not None
        for action in ("reload", "quit"):  # any local process could call these
            request = urllib.request.Request(f"{prom.url}/-/{action}", method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 403, action
        write_config(
            config,
            render_prometheus_config({"prometheus": [f"127.0.0.1:{port}"], "extra": ["x:1"]}),
        )
        reload_config("prometheus", proc.pid, prom.url, log_path)
        jobs = http_json(f"{prom.url}/api/v1/status/config")["data"]["yaml"]
        assert "job_name: extra" in jobs

        config.write_text("scrape_configs: [{job_name: }]\n")  # refused by Prometheus
        with pytest.raises(ServiceStartError, match="not confirmed") as failed:
            reload_config("prometheus", proc.pid, prom.url, log_path)
        assert "Error reloading config" in failed.value.log_tail
    finally:
        proc.stop()


def test_alertmanager_starts_with_a_given_routing(
    run_dir: Path, sink: tuple[ServiceProcess, AlertSink]
) -> None:
    routing = {
        "route": {"receiver": "oncall"},
        "receivers": [{"name": "oncall", "webhook_configs": [{"url": sink[1].webhook_url}]}],
    }
    proc, am = start_alertmanager(run_dir, sink[1].webhook_url, config_text=json.dumps(routing))
    try:
        status = http_json(f"{am.url}/api/v2/status")
        assert "oncall" in status["config"]["original"]
    finally:
        proc.stop()
