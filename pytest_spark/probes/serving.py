"""What a deployment serves right now, asked of it directly: its build version
(``spark_build_info`` on ``/metrics``), its ``/health``, and a short bounded burst of reads
timed on the client.

Each request opens a fresh connection: after a rollback moves the traffic, a kept-alive
connection to the old upstream would keep answering for the release that was rolled back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import httpx

BUILD_INFO = "spark_build_info"


def _get(url: str, timeout_s: float) -> httpx.Response:
    # trust_env=False: an HTTP(S)_PROXY in the environment must not divert the probe.
    with httpx.Client(timeout=timeout_s, trust_env=False) as client:
        return client.get(url)


def serving_version(base_url: str, timeout_s: float = 5.0) -> str | None:
    """The ``version`` label of ``spark_build_info`` on ``base_url``/metrics; None when the
    deployment is unreachable or does not say."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = _get(f"{base_url.rstrip('/')}/metrics", timeout_s)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == BUILD_INFO and sample.labels.get("version"):
                return sample.labels["version"]
    return None


def health_status(base_url: str, timeout_s: float = 5.0) -> int:
    """The status of ``GET /health``; 0 when nothing answers."""
    try:
        return _get(f"{base_url.rstrip('/')}/health", timeout_s).status_code
    except httpx.HTTPError:
        return 0


@dataclass(frozen=True)
class ReadBurst:
    """``count`` reads of one path, one after another, timed on the client."""

    path: str
    latencies_ms: tuple[float, ...]
    server_errors: int  # 5xx answers
    unanswered: int  # connection refused, reset or timed out

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.unanswered

    @property
    def p95_ms(self) -> float | None:
        """Nearest-rank p95 of the answered reads; None when none was answered."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    @property
    def error_ratio(self) -> float | None:
        """5xx and unanswered reads over all reads; None for an empty burst."""
        return (self.server_errors + self.unanswered) / self.requests if self.requests else None

    def describe(self) -> str:
        p95 = "no answer" if self.p95_ms is None else f"p95 {self.p95_ms:.1f} ms"
        return (
            f"{self.requests} × GET {self.path}: {p95}, {self.server_errors} 5xx, "
            f"{self.unanswered} unanswered"
        )


def read_burst(base_url: str, path: str, count: int, timeout_s: float = 5.0) -> ReadBurst:
    latencies: list[float] = []
    server_errors = unanswered = 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            status = _get(f"{base_url.rstrip('/')}{path}", timeout_s).status_code
        except httpx.HTTPError:
            unanswered += 1
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        server_errors += status >= 500
    return ReadBurst(path, tuple(latencies), server_errors, unanswered)
