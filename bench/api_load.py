"""Reference API under a bounded local load: order placement at a fixed rate on loopback.

    .venv/bin/python bench/api_load.py [--rate 200] [--seconds 10] [--repeats 3]

Starts its own sandbox (or reuses one running under SPARK_SANDBOX_STATE_DIR), then sends
`POST /api/orders` at an open-loop fixed rate (a request is started on schedule whether or not
earlier ones finished, so a slow server shows up as latency rather than as a lower rate), each
with its own Idempotency-Key, to the API through the fault proxy as every client does. Bounded:
rate x seconds requests, a per-request timeout, loopback only. Prints p50/p95/max latency and the
error count per repeat and the median p95 (target < 200 ms, the canary's S1 threshold).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from urllib.parse import urlsplit

import httpx

from spark_sandbox.sandbox import Sandbox, find_running

SYMBOL, PRICE = "THYAO", "285.25"


async def load(api_url: str, rate: int, seconds: float) -> tuple[list[float], int]:
    if urlsplit(api_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load {api_url}: this benchmark targets loopback only")
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=api_url, timeout=5.0, limits=limits) as client:

        async def one(n: int) -> None:
            nonlocal errors
            body = {
                "account_id": f"bench-{n % 50}-{uuid.uuid4().hex[:6]}",
                "symbol": SYMBOL,
                "side": "buy",
                "quantity": 1,
                "price": PRICE,
            }
            start = time.perf_counter()
            try:
                answer = await client.post(
                    "/api/orders", json=body, headers={"Idempotency-Key": f'"{uuid.uuid4()}"'}
                )
                if answer.status_code != 201:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - start)

        begin = time.perf_counter()
        tasks = []
        for n in range(total):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return latencies, errors


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="orders per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    running = find_running()
    sandbox = None if running else Sandbox()
    endpoints = running or sandbox.start()  # type: ignore[union-attr]
    try:
        p95s = []
        for _ in range(args.repeats):
            lat, errors = asyncio.run(load(endpoints.api_url, args.rate, args.seconds))
            p95s.append(quantile(lat, 0.95) * 1000)
            print(
                f"{len(lat)} orders at {args.rate}/s: p50 {quantile(lat, 0.5) * 1000:.1f} ms, "
                f"p95 {p95s[-1]:.1f} ms, max {max(lat) * 1000:.1f} ms, errors {errors}"
            )
        print(
            f"median p95 over {args.repeats} repeats: {statistics.median(p95s):.1f} ms "
            "(target < 200 ms)"
        )
    finally:
        if sandbox is not None:
            sandbox.stop()


if __name__ == "__main__":
    main()
