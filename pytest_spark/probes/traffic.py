"""A canary stage's traffic, sent by the gate when the target is the embedded sandbox (it has no
users): orders, replays of answered orders and market reads, split between the tracks by the
stage's weight (:func:`split`), and page loads in Chromium so CSP violation reports travel the
real browser-to-collector path. A real canary is measured on its users' traffic, never loaded:
only loopback hosts are accepted unless the caller passes ``allow_remote=True``.

Open loop: a track's requests are sent when due, at fixed intervals, however the earlier ones
are doing; with ``max_in_flight`` outstanding the due request is *shed* (counted, never queued),
for a closed loop would slow down with a slow canary and hide the latency the stage measures.
Bounded: ``ceil(rps × duration)`` requests per track, a per-request timeout, and a deadline
(duration + grace) after which outstanding requests are cancelled and counted unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import json
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

import httpx

from pytest_spark.probes import money
from pytest_spark.probes.spark_api import Ticket, new_account, new_key, sf_string

ORDER, REPLAY, READ = "order", "replay", "read"
READ_EVERY = 10  # one due request in ten reads the market; the others are orders and replays
START_LEAD_S = 0.05  # the clock starts after the clients are ready: request 0 is not late
# After a page's load event, so the browser has posted its violation reports.
PAGE_SETTLE_S = 1.0
BROWSER_START_S = 30.0


class TrafficError(RuntimeError):
    """The traffic cannot be sent as planned (no price for a symbol, a malformed URL, ...)."""


class RemoteTargetRefused(TrafficError):
    """A track's URL is not on a loopback host and the caller did not allow remote load."""


def split(weight_percent: int, rate: float, canary_rate: float) -> tuple[float, float]:
    """Requests per second to ``(canary, stable)`` at ``weight_percent``: the canary gets
    ``max(canary_rate, rate × w/100)`` (it always reaches its minimum sample), stable its share
    in proportion, ``canary × (100 − w)/w``, capped by what is left of ``rate``; the total never
    exceeds ``max(rate, canary_rate)``. At small weights the sandbox cannot send 99 times the
    canary's share to stable: the stable share is capped, the split sent is not the stage's
    weight, and the report gives what was sent. Rate 72, canary_rate 36: 1–50 % send (36, 36),
    75 % (54, 18), 100 % (72, 0): the canary is all the traffic and gets the whole rate."""
    if not 1 <= weight_percent <= 100:
        raise ValueError(f"a canary weight is 1–100 %, not {weight_percent}")
    if not rate > 0 or not canary_rate >= 0:
        raise ValueError(f"rate must be > 0 and canary_rate >= 0, not {rate} and {canary_rate}")
    canary = max(canary_rate, rate * weight_percent / 100)
    in_proportion = canary * (100 - weight_percent) / weight_percent
    return canary, min(in_proportion, max(0.0, rate - canary))


@dataclass(frozen=True)
class Track:
    """One side of the comparison: ``name`` is ``canary`` or ``stable``."""

    name: str
    api_url: str
    web_url: str | None = None


@dataclass(frozen=True)
class TrafficPlan:
    """What one stage's window sends. ``max_in_flight`` holds per track, so a slow canary
    sheds its own requests, never stable's; ``replay_every``: every N-th due request re-sends
    an answered order (0: none); ``page_loads``: loads of each track's page in the window."""

    duration_s: float
    canary_rps: float
    stable_rps: float
    max_in_flight: int
    replay_every: int
    symbols: tuple[str, ...]
    page_loads: int = 0
    request_timeout_s: float = 5.0
    # Outstanding requests get this long after the window before they are cancelled.
    grace_s: float = 5.0

    def __post_init__(self) -> None:
        positive = (self.duration_s, self.canary_rps, self.max_in_flight, self.request_timeout_s)
        if min(positive) <= 0 or min(self.stable_rps, self.grace_s, self.replay_every) < 0:
            raise ValueError(f"{self}: durations, rates and counts must be positive")
        if self.replay_every == 1 or not self.symbols:
            raise ValueError(f"{self}: replay_every is 0 (none) or >= 2, and symbols not empty")

    def requests_at_most(self, rps: float) -> int:
        """The track's request budget: ``ceil(rps × duration)``."""
        return math.ceil(rps * self.duration_s - 1e-9) if rps > 0 else 0


def slot_kind(index: int, replay_every: int) -> str:
    """What the ``index``-th due request of a track is: a replay every ``replay_every``-th,
    a market read every ``READ_EVERY``-th otherwise, else a new order."""
    if replay_every and index % replay_every == replay_every - 1:
        return REPLAY
    if index % READ_EVERY == READ_EVERY // 2:
        return READ
    return ORDER


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0–1); None without values."""
    if not values:
        return None
    return sorted(values)[max(0, math.ceil(q * len(values)) - 1)]


@dataclass
class TrackReport:
    """What one track was sent and answered, as the client saw it."""

    track: str
    api_url: str
    target_rps: float
    scheduled: int = 0
    sent: int = 0
    shed: int = 0
    orders: int = 0
    replays: int = 0
    # Replays the API answered with ``Idempotent-Replayed: true``.
    replays_confirmed: int = 0
    reads: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # Transport errors by kind (ConnectError, timeout, ...): sent, never answered.
    transport_errors: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0  # cancelled at the deadline while outstanding
    first_send_unix: float | None = None
    last_send_unix: float | None = None
    # How late the scheduler sent its latest request, at worst: open loop holds when it is small.
    max_lag_ms: float = 0.0
    # (send time in Unix seconds, latency in ms) of every answered request.
    samples: list[tuple[float, float]] = field(default_factory=list, repr=False)

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def latency_ms(self, q: float) -> float | None:
        return percentile([latency for _, latency in self.samples], q)

    def to_json(self) -> dict[str, object]:
        window = (self.last_send_unix or 0.0) - (self.first_send_unix or 0.0)
        counts = {k: v for k, v in dataclasses.asdict(self).items() if k != "samples"}
        return {
            **counts,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "answered": self.answered,
            "sent_rps": round(self.sent / window, 2) if window > 0 else None,
            "latency_p50_ms": self.latency_ms(0.50),
            "latency_p95_ms": self.latency_ms(0.95),
            "max_lag_ms": round(self.max_lag_ms, 1),
        }


@dataclass
class PageLoads:
    """Page loads per URL, the CSP violations the page's own listener saw, and what failed."""

    loads: dict[str, int] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrafficReport:
    """The run: its plan, each track's report by name, page loads, start and end (Unix s)."""

    plan: TrafficPlan
    tracks: Mapping[str, TrackReport]
    pages: PageLoads | None
    started_at: float
    ended_at: float

    def to_json(self) -> dict[str, object]:
        tracks = {name: report.to_json() for name, report in self.tracks.items()}
        return {**dataclasses.asdict(self), "tracks": tracks}


def is_loopback(host: str) -> bool:
    try:
        return host.lower().rstrip(".") == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(urls: Iterable[str], *, allow_remote: bool = False) -> None:
    """Raise unless every URL is http(s) on a loopback host (or ``allow_remote``)."""
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TrafficError(f"{url!r} is not an http(s) URL with a host")
        if not allow_remote and not is_loopback(parts.hostname):
            raise RemoteTargetRefused(
                f"canary traffic goes only to loopback hosts (the embedded sandbox), and {url} "
                f"is on {parts.hostname}: a real canary is measured on its users' traffic, not "
                "loaded by the gate (allow_remote=True: only for a deployment you mean to load)"
            )


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    kind: str
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None


class _TrackRun:
    """One track's schedule, its orders and what came back."""

    def __init__(self, track: Track, rps: float, plan: TrafficPlan, trust_env: bool) -> None:
        self.track, self.rps, self.plan = track, rps, plan
        self.report = TrackReport(track.name, track.api_url, rps)
        self.account = new_account(f"{track.name}-traffic")
        self.prices: dict[str, Decimal] = {}
        self.pending: set[asyncio.Task[None]] = set()
        self._orders = self._reads = 0
        self._last_placed: _Request | None = None
        self.client = httpx.AsyncClient(
            base_url=track.api_url.rstrip("/"),
            timeout=plan.request_timeout_s,
            limits=httpx.Limits(max_connections=plan.max_in_flight + 1),
            trust_env=trust_env,
        )

    async def drive(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        report = self.report
        for index in range(self.plan.requests_at_most(self.rps)):
            wait = start + index / self.rps - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                report.max_lag_ms = max(report.max_lag_ms, -wait * 1000)
            report.scheduled += 1
            if len(self.pending) >= self.plan.max_in_flight:
                report.shed += 1
                continue
            task = asyncio.create_task(self._send(self._request(index)))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    def _request(self, index: int) -> _Request:
        kind = slot_kind(index, self.plan.replay_every)
        if kind == REPLAY and self._last_placed is not None:
            return dataclasses.replace(self._last_placed, kind=REPLAY)
        symbols = self.plan.symbols
        if kind == ORDER:
            # Buy then sell the same symbol: the account's position never drifts past one share.
            symbol = symbols[(self._orders // 2) % len(symbols)]
            side = "buy" if self._orders % 2 == 0 else "sell"
            self._orders += 1
            body = Ticket(self.account, symbol, side, 1, self.prices[symbol]).body()
            headers = {"Idempotency-Key": sf_string(new_key()), "Content-Type": "application/json"}
            return _Request(ORDER, "POST", "/api/orders", headers, json.dumps(body).encode())
        # A read, or a replay due before any order was answered (nothing to replay yet).
        self._reads += 1
        return _Request(READ, "GET", f"/api/market/{symbols[self._reads % len(symbols)]}")

    async def _send(self, request: _Request) -> None:
        report = self.report
        sent_at = time.time()
        report.first_send_unix = report.first_send_unix or sent_at
        report.last_send_unix = sent_at
        report.sent += 1
        report.orders += request.kind == ORDER
        report.replays += request.kind == REPLAY
        report.reads += request.kind == READ
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.plan.request_timeout_s):
                response = await self.client.request(
                    request.method, request.path, headers=request.headers, content=request.content
                )
        except asyncio.CancelledError:
            report.unanswered += 1
            raise
        except (httpx.HTTPError, TimeoutError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            report.transport_errors[kind] = report.transport_errors.get(kind, 0) + 1
            return
        report.samples.append((sent_at, (time.perf_counter() - started) * 1000.0))
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        if request.kind == ORDER and response.status_code in (200, 201):
            self._last_placed = request
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        report.replays_confirmed += request.kind == REPLAY and replayed


def run_traffic(
    plan: TrafficPlan, canary: Track, stable: Track | None = None, *, allow_remote: bool = False
) -> TrafficReport:
    """Send ``plan`` to the tracks (stable may be None at 100 %) and report what happened.

    Raises :class:`RemoteTargetRefused` before any request for a non-loopback URL unless
    ``allow_remote``, and :class:`TrafficError` when no track prices an order. Blocks for about
    the plan's duration (at most duration + grace, after one price lookup); page loads, if
    planned, run beside the requests in a thread. Not callable from a running event loop.
    """
    if plan.stable_rps > 0 and stable is None:
        raise ValueError(f"the plan sends {plan.stable_rps:g} rps to stable but no stable track")
    rates = [(canary, plan.canary_rps)] + ([(stable, plan.stable_rps)] if stable else [])
    urls = [t.api_url for t, _ in rates] + [t.web_url for t, _ in rates if t.web_url]
    require_loopback(urls, allow_remote=allow_remote)
    # Loopback traffic never goes through a proxy named in the environment.
    return asyncio.run(_run(plan, rates, trust_env=allow_remote))


async def _run(
    plan: TrafficPlan, rates: Sequence[tuple[Track, float]], *, trust_env: bool
) -> TrafficReport:
    loop = asyncio.get_running_loop()
    runs = [_TrackRun(track, rps, plan, trust_env) for track, rps in rates]
    try:
        # Stable first: the known-good track prices the orders both tracks send.
        prices = await _price_book([run.client for run in reversed(runs)], plan)
        web_urls = [t.web_url for t, _ in rates if t.web_url]
        pages = None
        if plan.page_loads and web_urls:
            # A thread, self-bounded; the window opens once Chromium is up (its start is heavy).
            up = threading.Barrier(2, timeout=BROWSER_START_S)
            loads = functools.partial(load_pages, web_urls, plan.page_loads, plan.request_timeout_s)
            pages = asyncio.create_task(asyncio.to_thread(loads, spread_s=plan.duration_s, up=up))
            with contextlib.suppress(threading.BrokenBarrierError):
                await asyncio.to_thread(up.wait)
        for run in runs:
            run.prices = prices
        started_at = time.time()
        start = loop.time() + START_LEAD_S
        deadline = start + plan.duration_s + plan.grace_s
        drivers = [asyncio.create_task(run.drive(start)) for run in runs]
        await asyncio.wait(drivers, timeout=max(0.0, deadline - loop.time()))
        outstanding = {task for run in runs for task in run.pending}
        if outstanding:
            await asyncio.wait(outstanding, timeout=max(0.0, deadline - loop.time()))
        leftovers = [t for t in [*drivers, *outstanding] if not t.done()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        ended_at = time.time()
        page_loads = await pages if pages is not None else None
        reports = {run.track.name: run.report for run in runs}
        return TrafficReport(plan, reports, page_loads, started_at, ended_at)
    finally:
        await asyncio.gather(*(run.client.aclose() for run in runs), return_exceptions=True)


async def _price_book(
    clients: Sequence[httpx.AsyncClient], plan: TrafficPlan
) -> dict[str, Decimal]:
    """A tradable price per symbol: the tick-aligned price nearest its base, inside its band."""

    async def price(symbol: str) -> tuple[str, Decimal]:
        failures = []
        for client in clients:
            try:
                async with asyncio.timeout(plan.request_timeout_s):
                    response = await client.get(f"/api/market/{symbol}")
                body = money.loads_exact(response.text) if response.status_code == 200 else None
            except (httpx.HTTPError, TimeoutError, ValueError) as exc:
                failures.append(f"{client.base_url}: {exc.__class__.__name__} {exc}")
                continue
            base = money.as_decimal(body.get("base_price") if isinstance(body, dict) else None)
            prices = money.aligned_prices_near(base, money.price_band(base), 1) if base else []
            if prices:
                return symbol, prices[0]
            failures.append(f"{client.base_url} answered {response.status_code} {body!r:.160}")
        raise TrafficError(
            f"no tradable price for {symbol}: GET /api/market/{symbol} " + "; ".join(failures)
        )

    return dict(await asyncio.gather(*(price(s) for s in plan.symbols)))


# --- page loads ------------------------------------------------------------------------------


def load_pages(
    web_urls: Sequence[str],
    count: int,
    timeout_s: float,
    *,
    spread_s: float = 0.0,
    up: threading.Barrier | None = None,
) -> PageLoads:
    """Load each URL ``count`` times in headless Chromium (fresh context each), each round in
    the middle of its share of ``spread_s`` from the moment Chromium is up (``up`` is passed then),
    each waiting for ``load`` plus ``PAGE_SETTLE_S`` so the browser posts the page's CSP
    violation reports. Failures are collected, never raised: the stage's traffic goes on."""
    result = PageLoads({u: 0 for u in web_urls}, {u: 0 for u in web_urls})
    try:
        if count > 0 and web_urls:
            _load_pages(result, count, timeout_s, spread_s, up)
    finally:
        if up is not None:
            up.abort()  # never leaves the window waiting (no effect once both have passed)
    return result


def _load_pages(
    result: PageLoads, count: int, timeout_s: float, spread_s: float, up: threading.Barrier | None
) -> None:
    from playwright.sync_api import Error as PlaywrightError  # only when pages are loaded

    from pytest_spark.probes import browser

    try:
        with browser.chromium() as chromium:
            if up is not None:
                up.wait()
            started = time.monotonic()
            for round_ in range(count):
                # Mid-share: a single round lands inside the window, not in the traffic's lead.
                wait = started + (round_ + 0.5) * spread_s / count - time.monotonic()
                time.sleep(max(0.0, wait))
                for url in result.loads:
                    if spread_s and time.monotonic() > started + spread_s:
                        result.errors.append(f"{url}: not loaded, the window had ended")
                        continue
                    try:
                        visit = browser.visit(chromium, url, timeout_s, PAGE_SETTLE_S)
                    except (browser.BrowserProbeError, PlaywrightError) as exc:
                        result.errors.append(f"{url}: {exc}")
                        continue
                    if visit.status >= 400:
                        result.errors.append(f"{url} answered {visit.status}")
                        continue
                    result.loads[url] += 1
                    result.violations[url] += len(visit.violations)
    except (browser.BrowserProbeError, PlaywrightError, threading.BrokenBarrierError) as exc:
        result.errors.append(f"Chromium: {exc or f'not up within {BROWSER_START_S:g} s'}")
