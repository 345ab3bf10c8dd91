"""Prometheus 2.42 and Alertmanager 0.25 (Debian) for the sandbox.

Call (Alertmanager first, or Prometheus drops the first alert and re-sends it a minute later)::

    am_proc, am = start_alertmanager(run_dir, sink.webhook_url)
    prom_port = free_port()
    config = run_dir / "prometheus" / "prometheus.yml"
    write_config(config, render_prometheus_config(
        {"api": ["127.0.0.1:8001"], "prometheus": [f"127.0.0.1:{prom_port}"]},
        rule_files=[rules_path], alertmanager=am.address,
        metrics_paths={"api": "/metrics/"}, target_labels={"127.0.0.1:8001": {"track": "canary"}}))
    prom_proc, prom = start_prometheus(run_dir, config, port=prom_port)

Configs are written as JSON, which is valid YAML, so no YAML library is needed. Scrape and
rule evaluation run every second so that a check sees a change within a few seconds.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceProcess

HOST = "127.0.0.1"
PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
HTTP_TIMEOUT = 2.0
SINK_RECEIVER = "alert_sink"


@dataclass(frozen=True)
class Alertmanager:
    host: str
    port: int
    config_path: Path

    @property
    def address(self) -> str:
        """``host:port``, as Prometheus' ``alertmanagers`` targets want it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True)
class Prometheus:
    host: str
    port: int
    config_path: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def render_alertmanager_config(webhook_url: str) -> str:
    """Every alert goes, ungrouped and without waiting, to the webhook (the alert sink)."""
    config = {
        "route": {
            "receiver": SINK_RECEIVER,
            "group_by": ["..."],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": SINK_RECEIVER,
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def render_prometheus_config(
    scrape_jobs: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path | str] = (),
    alertmanager: str | None = None,
    *,
    metrics_paths: Mapping[str, str] | None = None,
    target_labels: Mapping[str, Mapping[str, str]] | None = None,
    interval: str = "1s",
) -> str:
    """prometheus.yml text: one job per name with its ``host:port`` targets.

    ``metrics_paths`` overrides ``/metrics`` per job (``prometheus_client``'s ASGI app lives
    at ``/metrics/``); ``target_labels`` gives a target (``host:port``) labels of its own on
    every series scraped from it (the sandbox's ``track``); ``alertmanager`` is the
    ``host:port`` that receives alerts.
    """
    metrics_paths = metrics_paths or {}
    target_labels = target_labels or {}
    config: dict[str, object] = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": metrics_paths.get(job, "/metrics"),
                "static_configs": _static_configs(targets, target_labels),
            }
            for job, targets in scrape_jobs.items()
        ],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return json.dumps(config, indent=2) + "\n"


def _static_configs(
    targets: Sequence[str], target_labels: Mapping[str, Mapping[str, str]]
) -> list[dict[str, object]]:
    """The targets without labels of their own in one group, each labelled one in its own."""
    plain = [t for t in targets if t not in target_labels]
    labelled: list[dict[str, object]] = [
        {"targets": [t], "labels": dict(target_labels[t])} for t in targets if t in target_labels
    ]
    unlabelled: list[dict[str, object]] = [{"targets": plain}] if plain or not labelled else []
    return unlabelled + labelled


def answers_ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=HTTP_TIMEOUT) as response:
        return bool(response.status == 200)


def start_alertmanager(
    run_dir: Path,
    webhook_url: str,
    *,
    port: int | None = None,
    ready_timeout: float = 10.0,
    config_text: str | None = None,
) -> tuple[ServiceProcess, Alertmanager]:
    """Alertmanager delivering to ``webhook_url`` (or running ``config_text``, a routing the
    caller already pointed at its sink); gossip off so it binds nothing on ``*``."""
    base = run_dir / "alertmanager"
    config = config_text if config_text is not None else render_alertmanager_config(webhook_url)
    config_path = write_config(base / "alertmanager.yml", config)
    am = Alertmanager(HOST, port or free_port(HOST), config_path)
    proc = ServiceProcess(
        "alertmanager",
        [
            ALERTMANAGER_BIN,
            f"--config.file={config_path}",
            f"--storage.path={base / 'data'}",
            f"--web.listen-address={am.address}",
            f"--web.external-url={am.url}/",
            "--cluster.listen-address=",
        ],
        log_path=run_dir / "logs" / "alertmanager.log",
        ready=lambda: answers_ready(am.url),
        ready_timeout=ready_timeout,
    )
    proc.start()
    return proc, am


def start_prometheus(
    run_dir: Path, config_path: Path, *, port: int | None = None, ready_timeout: float = 15.0
) -> tuple[ServiceProcess, Prometheus]:
    """Prometheus over a config the caller rendered; TSDB under ``run_dir/prometheus/data``.

    ``--rules.alert.resend-delay=1s`` so a firing alert reaches Alertmanager within seconds.
    No ``--web.enable-lifecycle``: its ``/-/reload`` and ``/-/quit`` would let any local process
    reconfigure or stop the gate's Prometheus; a reload is a SIGHUP from the process owner.
    """
    prom = Prometheus(HOST, port or free_port(HOST), config_path)
    proc = ServiceProcess(
        "prometheus",
        [
            PROMETHEUS_BIN,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={run_dir / 'prometheus' / 'data'}",
            f"--web.listen-address={prom.address}",
            f"--web.external-url={prom.url}/",
            "--rules.alert.resend-delay=1s",
        ],
        log_path=run_dir / "logs" / "prometheus.log",
        ready=lambda: answers_ready(prom.url),
        ready_timeout=ready_timeout,
    )
    proc.start()
    return proc, prom
