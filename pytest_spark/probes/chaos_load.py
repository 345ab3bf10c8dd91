"""What a chaos scenario sends and how it sees a fault: keyed orders at a fixed rate, each
answer timed as the client saw it, and raw probes through a proxy's listening port.

Open loop and bounded, like the canary traffic (:mod:`pytest_spark.probes.traffic`): request
``n`` leaves at ``n / rate`` seconds whatever the earlier ones are doing, each has its own
timeout, and the batch has a deadline after which what is still outstanding is cancelled and
recorded as unanswered. A slow API therefore shows as slow answers, never as fewer requests.

Not imported by ``pytest_spark.plugin`` (httpx).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from pytest_spark.probes.spark_api import Ticket, sf_string
from pytest_spark.probes.traffic import percentile

# PostgreSQL's SSLRequest: length 8, code 80877103; the server answers one byte, S or N.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
# After the last scheduled send, outstanding requests get their timeout plus this.
GRACE_S = 1.0


@dataclass(frozen=True)
class Shot:
    """One keyed order as the client saw it. ``sent_at``: Unix seconds; ``status`` None when
    no answer came (``error`` says why)."""

    key: str
    sent_at: float
    latency_ms: float | None
    status: int | None
    retry_after: str | None = None
    replayed: bool = False
    order_id: int | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in (200, 201)

    @property
    def server_error(self) -> bool:
        """A 5xx or no answer at all: what a client counts against the service."""
        return self.status is None or self.status >= 500

    def describe(self) -> str:
        answer = f"{self.status}" if self.status is not None else f"no answer ({self.error})"
        if self.replayed:
            answer += " replayed"
        if self.retry_after is not None:
            answer += f" Retry-After {self.retry_after}"
        took = "" if self.latency_ms is None else f" in {self.latency_ms:.0f} ms"
        return f"key {self.key}: {answer}{took}"


def p95_ms(shots: Sequence[Shot]) -> float | None:
    """Nearest-rank p95 of the answered shots' latency; None when none was answered."""
    return percentile([s.latency_ms for s in shots if s.latency_ms is not None], 0.95)


def send_orders(
    api_url: str,
    orders: Sequence[tuple[Ticket, str]],
    rate_per_s: float,
    timeout_s: float,
) -> list[Shot]:
    """Send ``orders`` (ticket, Idempotency-Key) open-loop at ``rate_per_s``; one
    :class:`Shot` per order, in order. Bounded by ``len / rate + timeout + grace``."""
    if rate_per_s <= 0 or timeout_s <= 0:
        raise ValueError(f"rate {rate_per_s} and timeout {timeout_s} must be positive")
    base = api_url.rstrip("/")
    deadline_s = len(orders) / rate_per_s + timeout_s + GRACE_S

    async def one(client: httpx.AsyncClient, delay: float, ticket: Ticket, key: str) -> Shot:
        await asyncio.sleep(delay)
        sent_at, started = time.time(), time.perf_counter()
        try:
            response = await client.post(
                f"{base}/api/orders",
                headers={"Idempotency-Key": sf_string(key)},
                json=ticket.body(),
            )
        except (httpx.HTTPError, OSError) as exc:
            return Shot(key, sent_at, None, None, error=type(exc).__name__)
        latency_ms = (time.perf_counter() - started) * 1000.0
        order_id = None
        if response.status_code in (200, 201):
            try:
                order_id = int(response.json()["id"])
            except (ValueError, KeyError, TypeError):
                order_id = None
        return Shot(
            key,
            sent_at,
            latency_ms,
            response.status_code,
            response.headers.get("retry-after"),
            response.headers.get("idempotent-replayed", "").lower() == "true",
            order_id,
        )

    async def batch() -> list[Shot]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits, trust_env=False) as client:
            tasks = [
                asyncio.create_task(one(client, n / rate_per_s, ticket, key))
                for n, (ticket, key) in enumerate(orders)
            ]
            done, pending = await asyncio.wait(tasks, timeout=deadline_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            shots = []
            for task, (_, key) in zip(tasks, orders, strict=True):
                if task in done and not task.cancelled() and task.exception() is None:
                    shots.append(task.result())
                else:
                    shots.append(Shot(key, time.time(), None, None, error="unanswered at deadline"))
            return shots

    return asyncio.run(batch())


def probe_address(listen: str, control_url: str) -> tuple[str, int]:
    """Where to reach a proxy from here: its ``listen`` address, with a wildcard host
    (``0.0.0.0``, ``[::]``) replaced by the Toxiproxy server's own host."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = httpx.URL(control_url).host
    return host, int(port)


def pg_round_trip_ms(address: tuple[str, int], timeout_s: float) -> float | None:
    """Milliseconds for a PostgreSQL SSLRequest's one-byte answer through ``address``: the
    latency a toxic adds to the database link, seen without logging in. None: no answer."""
    started = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
    except OSError:
        return None
    return (time.perf_counter() - started) * 1000.0 if answer in (b"S", b"N") else None


def http_reachable(address: tuple[str, int], timeout_s: float) -> str | None:
    """None when an HTTP request through ``address`` gets a status line back; otherwise what
    happened instead (reset, closed without an answer, timed out, refused)."""
    request = f"GET /health HTTP/1.1\r\nHost: {address[0]}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            sock.sendall(request.encode())
            head = sock.recv(16)
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return type(exc).__name__
    return None if head.startswith(b"HTTP/") else "closed without an answer"
