"""What Prometheus scrapes in a sandbox deployment, and the wait for its first scrapes.

One target per job, but the API's, which scrapes its two tracks: the canary (``api``) and the
stable track (``api_stable``), each with its ``track`` target label.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from spark_sandbox.endpoints import CANARY_TRACK, HOST, STABLE_TRACK
from spark_sandbox.services.process import ServiceStartError, tail

if TYPE_CHECKING:
    from spark_sandbox.deployment import Plan

# Prometheus applies discovered targets every 5 s, then scrapes each within one 1 s interval.
SCRAPE_READY_SECONDS = 20.0


def scrape_jobs(plan: Plan) -> dict[str, list[str]]:
    """Job name -> its ``host:port`` targets: one each, but the API's job, which scrapes both
    tracks (:func:`track_labels` tells them apart)."""
    jobs = {
        "spark-api": [f"{HOST}:{plan.ports['api']}", f"{HOST}:{plan.ports['api_stable']}"],
        "spark-outbox": [f"{HOST}:{plan.ports['outbox']}"],
        "spark-consumer": [f"{HOST}:{plan.ports['consumer']}"],
        "pgbouncer": [f"{HOST}:{plan.ports['pgbouncer_exporter']}"],
        "prometheus": [f"{HOST}:{plan.ports['prometheus']}"],
        "alertmanager": [f"{HOST}:{plan.ports['alertmanager']}"],
    }
    down_job = plan.blueprint.down_scrape_job
    if down_job is not None:
        # A port reserved for nobody: the job's one target is expected and down.
        jobs[down_job] = [f"{HOST}:{plan.ports['closed_target']}"]
    return jobs


def track_labels(plan: Plan) -> dict[str, dict[str, str]]:
    """``host:port`` -> the target labels of each API track: ``track="canary"|"stable"`` on
    every series scraped from it (a real deployment's service discovery sets the same)."""
    return {
        f"{HOST}:{plan.ports['api']}": {"track": CANARY_TRACK},
        f"{HOST}:{plan.ports['api_stable']}": {"track": STABLE_TRACK},
    }


def await_first_scrapes(plan: Plan, report: Callable[[str, float], None]) -> None:
    """Ready means Prometheus has scraped every target of every job and found it as this
    deployment intends: up, except a job a defect points at a closed port."""
    import httpx

    began = time.monotonic()
    jobs = scrape_jobs(plan)
    down = plan.blueprint.down_scrape_job
    wanted = {
        f"{job} {target}": "down" if job == down else "up"
        for job, targets in jobs.items()
        for target in targets
    }
    deadline = began + SCRAPE_READY_SECONDS
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            body = httpx.get(f"{plan.url('prometheus')}/api/v1/targets", timeout=2.0).json()
            seen = {
                f"{t['labels']['job']} {t['labels']['instance']}": t["health"]
                for t in body["data"]["activeTargets"]
            }
            if seen == wanted:
                report(
                    f"scraping: prometheus has scraped all {len(wanted)} targets of "
                    f"{len(jobs)} jobs",
                    began,
                )
                return
        time.sleep(0.1)
    raise ServiceStartError(
        "prometheus",
        [],
        f"scrape targets not as expected within {SCRAPE_READY_SECONDS:.0f} s: "
        f"wanted {wanted}, seen {seen}",
        tail(plan.run_dir / "logs" / "prometheus.log"),
    )
