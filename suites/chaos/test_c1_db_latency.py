"""C1 DB latency: with every answer of the database 1.5 s late, keyed orders get only 201, a
replay or 503 with Retry-After, none slower than the API's own deadlines allow; per key at most
one order, exactly one where the client saw a 2xx; p95 back under 200 ms within 30 s after.

The fault is a ``latency`` toxic on the proxy between the API and PgBouncer (``[proxies] db``),
downstream. It is shown active before anything is judged: the proxy reads it back and a
PostgreSQL SSLRequest through the proxy takes at least the configured fraction of the latency
(sampled through the fault: the timeline's trigger). After removal the client does what a
client must: it sends every key that got no 2xx again, honouring Retry-After, until it gets
201 or the stored answer; then orders are counted per key in ``orders`` (``postgres_dsn``).
Thresholds: ``ops/chaos.toml`` [C1], [steady_state], [findings].
"""

from __future__ import annotations

import math
import time
from collections import Counter
from decimal import Decimal

import pytest

from pytest_spark import CheckEvidence, Target
from pytest_spark.probes import outbox
from pytest_spark.probes.chaos import FaultSpec
from pytest_spark.probes.chaos_load import (
    Shot,
    p95_ms,
    pg_round_trip_ms,
    probe_address,
    send_orders,
)
from pytest_spark.probes.spark_api import Ticket
from suites.chaos.scenario import ChaosRun, chaos_run, fault_seconds
from suites.limits import Limits

# The [proxies] roles this scenario faults: the interlock checks them before any traffic.
FAULTED = ("db",)
pytestmark = pytest.mark.chaos("C1")

HYPOTHESIS = (
    "DB latency: only 201, replay or 503 + Retry-After, no answer slower than the API's "
    "deadlines, no lost or duplicated order, p95 back under the limit within 30 s after"
)
# The trigger (an SSLRequest round trip through the proxy) is sampled this often.
SAMPLE_EVERY_S = 0.5


def test_db_latency_fails_fast_and_keeps_orders_whole(
    spark_target: Target,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    c1 = limits.c1
    proxy = limits.proxies.db
    fault_s = fault_seconds(spark_target, c1.fault_s, limits)
    with chaos_run(
        "C1", HYPOTHESIS, [proxy], spark_target, limits, spark_evidence, tradable, fault_s
    ) as run:
        run.judge_before(run.steady_state("before"))
        _latency(run, proxy)
        run.judge_after(run.steady_state("after"))


def _latency(run: ChaosRun, proxy: str) -> None:
    c1, evidence = run.limits.c1, run.evidence
    spec = FaultSpec("C1", proxy, "latency", {"latency": c1.latency_ms, "jitter": 0})
    address = probe_address(run.proxy(proxy).listen, run.client.base_url)
    timeout_s = c1.latency_ms / 1000 * 4
    orders = run.orders("latency", math.ceil(c1.rate_per_s * run.fault_s))
    run.trigger = ("DB round trip", "ms", [])
    run.sample_trigger(lambda: pg_round_trip_ms(address, timeout_s))
    with run.scenario.fault(spec) as read_back:
        observed_ms = pg_round_trip_ms(address, timeout_s)
        shots = run.send_sampling(
            orders, c1.rate_per_s, c1.slowest_answer_s + 5,
            lambda: pg_round_trip_ms(address, timeout_s), SAMPLE_EVERY_S,
        )  # fmt: skip
    removed_at = time.time()
    run.sample_trigger(lambda: pg_round_trip_ms(address, timeout_s))
    shown = "no answer" if observed_ms is None else f"{observed_ms:.0f} ms"
    evidence.note(
        f"fault {spec.describe()} for {run.fault_s:g} s (+ the last answers): read back "
        f"{read_back}; SSLRequest through {address[0]}:{address[1]} took {shown}; answers "
        f"during it: {_statuses(shots)}"
    )
    wanted_ms = c1.latency_ms * c1.observed_latency_fraction
    observed = read_back and observed_ms is not None and observed_ms >= wanted_ms
    evidence.check(
        "fault_observed",
        int(observed),
        at_least=run.limits.findings.fault_observed_at_least,
        why=f"the latency never took effect (read back {read_back}, a round trip through the "
        f"proxy {shown}, expected at least {wanted_ms:.0f} ms): a fault that did not happen "
        "cannot pass",
    )
    answered = [s.latency_ms for s in shots if s.latency_ms is not None]
    evidence.measure(
        "slowest_answer_during_fault_s", round(max(answered) / 1000, 2) if answered else None,
        unit="s",
    )  # fmt: skip
    findings = _answer_findings(shots, c1.slowest_answer_s)
    recovered_s = _recovery(run, removed_at, findings)
    evidence.measure("p95_recovered_after_s", recovered_s, unit="s")
    retried = _retry_unresolved(run, orders, shots, findings)
    _integrity(run, [key for _, key in orders], shots + retried, findings)
    run.journal.notes.append(f"hypothesis findings: {findings}")
    evidence.check(
        "hypothesis_findings",
        len(findings),
        limit=run.limits.findings.hypothesis_findings,
        why="; ".join(findings) + ". A slow database must make the API fail fast with 503 and "
        "Retry-After, never 500 or a hang, and a client's retry must neither lose nor repeat "
        "an order",
    )


def _statuses(shots: list[Shot]) -> str:
    counts = Counter(
        "no answer" if s.status is None else f"{s.status}{' replayed' if s.replayed else ''}"
        for s in shots
    )
    return ", ".join(f"{n}× {status}" for status, n in sorted(counts.items()))


def _answer_findings(shots: list[Shot], slowest_s: float) -> list[str]:
    """Answers other than 201, a replay or 503 with Retry-After; answers too slow."""
    findings = []
    odd = [
        s for s in shots
        if not (s.status in (200, 201) or (s.status == 503 and s.retry_after is not None))
    ]  # fmt: skip
    if odd:
        findings.append(
            f"{len(odd)} answer(s) during the fault other than 201, a replay or 503 with "
            f"Retry-After: {outbox.sample([s.describe() for s in odd])}"
        )
    slow = [s for s in shots if s.latency_ms is None or s.latency_ms > slowest_s * 1000]
    if slow:
        findings.append(
            f"{len(slow)} answer(s) slower than {slowest_s:g} s or never: "
            + outbox.sample([s.describe() for s in slow])
        )
    return findings


def _recovery(run: ChaosRun, removed_at: float, findings: list[str]) -> float | None:
    """Seconds from removal to the end of the first probe whose p95 is back under the limit."""
    c1, ss = run.limits.c1, run.limits.steady_state
    probes = []
    with run.journal.activity("p95 back under the limit after removal", "probe") as entry:
        while time.time() - removed_at < c1.recovery_s:
            shots = send_orders(
                run.api_url, run.orders("recovery", c1.recovery_probe_requests),
                ss.rate_per_s, ss.request_timeout_s,
            )  # fmt: skip
            run.shots.extend(shots)
            p95 = p95_ms(shots)
            probes.append(p95)
            if p95 is not None and p95 < c1.recovery_p95_ms:
                entry.output = {"probes_p95_ms": probes}
                return round(time.time() - removed_at, 2)
        entry.output = {"probes_p95_ms": probes}
    findings.append(
        f"p95 not back under {c1.recovery_p95_ms:g} ms within {c1.recovery_s:g} s of removal "
        f"(probes' p95: {probes})"
    )
    return None


def _retry_unresolved(
    run: ChaosRun, orders: list[tuple[Ticket, str]], shots: list[Shot], findings: list[str]
) -> list[Shot]:
    """Each key without a 2xx sent again (same body) until it gets one, within retry_s."""
    c1, ss = run.limits.c1, run.limits.steady_state
    waiting = [o for o, s in zip(orders, shots, strict=True) if not s.succeeded]
    retried: list[Shot] = []
    deadline = time.monotonic() + c1.retry_s
    with run.journal.activity(f"retry {len(waiting)} keys without a 2xx", "action") as entry:
        while waiting and time.monotonic() < deadline:
            answers = send_orders(run.api_url, waiting, ss.rate_per_s, ss.request_timeout_s)
            retried.extend(answers)
            waiting = [o for o, s in zip(waiting, answers, strict=True) if not s.succeeded]
            if waiting:
                pause = max([_seconds(s.retry_after) for s in answers] + [1.0])
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        entry.output = {"retries": len(retried), "unresolved": [key for _, key in waiting]}
    run.shots.extend(retried)
    if waiting:
        findings.append(
            f"{len(waiting)} key(s) still without a 2xx after {c1.retry_s:g} s of retries: "
            + outbox.sample([key for _, key in waiting])
        )
    return retried


def _seconds(retry_after: str | None) -> float:
    try:
        return float(retry_after) if retry_after is not None else 0.0
    except ValueError:
        return 0.0


def _integrity(run: ChaosRun, keys: list[str], shots: list[Shot], findings: list[str]) -> None:
    """Per key at most one order; exactly one where the client saw a 2xx."""
    booked = run.db.orders_per_key(keys)
    confirmed = {s.key for s in shots if s.succeeded}
    duplicated = [f"{k} {n}×" for k, n in booked.items() if n > 1]
    lost = [k for k in confirmed if booked.get(k, 0) == 0]
    run.evidence.note(
        f"{len(keys)} keys: {sum(booked.values())} orders booked, {len(confirmed)} confirmed "
        "to the client"
    )
    if duplicated:
        findings.append(f"keys with more than one order: {outbox.sample(duplicated)}")
    if lost:
        findings.append(f"keys answered 2xx without any order: {outbox.sample(lost)}")
