"""Test harness for the reference API: a fake market-data feed and uvicorn-run API processes.

The API runs as a real uvicorn child (not in-process) so that lifespan, the WebSocket, the
feed client and the module-level metrics registry behave as they do in the sandbox, and so
that each defect gets a fresh process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from spark_sandbox.app.instruments import INSTRUMENTS
from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceProcess

TICK_INTERVAL_S = 0.2
THIRD_PARTY_ORIGIN = "http://127.0.0.1:9"  # only named in headers and markup by these tests
UNLISTED_ORIGIN = "http://localhost:9"


class FakeFeed:
    """A test double of the market-data feed: NDJSON ticks at base price for every symbol."""

    def __init__(self) -> None:
        self.silenced: set[str] = set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeFeed:
        thread = threading.Thread(target=self._accept, name="fake-feed", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while not self._stop.is_set():
                ts = int(time.time() * 1000)
                lines = [
                    json.dumps({"symbol": s, "price": str(p), "ts": ts}) + "\n"
                    for s, p in INSTRUMENTS.items()
                    if s not in self.silenced
                ]
                try:
                    conn.sendall("".join(lines).encode())
                except OSError:
                    return
                self._stop.wait(TICK_INTERVAL_S)


@dataclass
class Api:
    base_url: str
    process: ServiceProcess
    log_path: Path
    defects: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws/prices"


def start_api(
    dsn: str,
    log_dir: Path,
    *,
    feed_addr: str | None,
    defects: Iterable[str] = (),
    extra_env: Mapping[str, str] | None = None,
    wait_for_market: bool = True,
    require_database: bool = True,
    stale_symbols: Iterable[str] = (),
) -> Api:
    """A running API; with ``wait_for_market`` it is ready only once every symbol has a tick
    (but ``stale_symbols``, whose ticks a defect drops)."""
    port = free_port()
    defects = tuple(defects)
    stale = frozenset(stale_symbols)
    env = {
        "PATH": "/usr/bin:/bin",
        "SPARK_APP_DSN": dsn,
        "SPARK_THIRD_PARTY_ORIGIN": THIRD_PARTY_ORIGIN,
        "SPARK_UNLISTED_ORIGIN": UNLISTED_ORIGIN,
        "SPARK_DEFECTS": ",".join(defects),
        "SPARK_SANDBOX": "1",
        "SPARK_IDEMPOTENCY_GC_INTERVAL_S": "0.5",
        **(extra_env or {}),
    }
    if feed_addr:
        env["SPARK_FEED_ADDR"] = feed_addr
    base_url = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"api-{port}.log"
    argv = [sys.executable, "-m", "uvicorn", "spark_sandbox.app.main:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip

    def ready() -> bool:
        # /health itself waits up to 1 s for a database connection, so a probe that gave up
        # after 1 s would race it; with the database down that race can be lost every time.
        with httpx.Client(base_url=base_url, timeout=5.0) as client:
            if client.get("/health").status_code != 200 and require_database:
                return False
            if not wait_for_market:
                return True
            return all(
                not client.get(f"/api/market/{symbol}").json()["stale"]
                for symbol in INSTRUMENTS
                if symbol not in stale
            )

    process = ServiceProcess(
        "spark-api", argv, log_path=log_path, ready=ready, ready_timeout=20.0, env=env
    )
    process.start()
    return Api(base_url, process, log_path, defects, env)


def new_key() -> str:
    """A fresh Idempotency-Key as an RFC 8941 sf-string."""
    return f'"{uuid.uuid4()}"'


def ticket(
    account: str, symbol: str = "THYAO", price: str = "285.25", quantity: int = 10,
    side: str = "buy",
) -> dict[str, object]:  # fmt: skip
    return {"account_id": account, "symbol": symbol, "side": side, "quantity": quantity,
            "price": price}  # fmt: skip


def place(
    client: httpx.Client, order: Mapping[str, object], key: str | None = None
) -> httpx.Response:
    return client.post(
        "/api/orders", json=dict(order), headers={"Idempotency-Key": key or new_key()}
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; past the monotonic deadline, fail saying what."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.1f} s")
        time.sleep(0.05)


async def _burst(api: Api, order: Mapping[str, object], key: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=15, limits=limits) as client:
        # Open the n connections first, so that the submissions arrive together rather than
        # spread over n TCP handshakes.
        await asyncio.gather(*(client.get("/health") for _ in range(n)))
        answers = await asyncio.gather(
            *(client.post("/api/orders", json=dict(order), headers={"Idempotency-Key": key})
              for _ in range(n))
        )  # fmt: skip
    return [answer.status_code for answer in answers]


def submit_concurrently(api: Api, order: Mapping[str, object], key: str, n: int = 20) -> list[int]:
    """Submit one order n times at once under one key; the HTTP statuses, in no order."""
    return asyncio.run(_burst(api, order, key, n))


def exported(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample of a /metrics page (0 when it is not there)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
