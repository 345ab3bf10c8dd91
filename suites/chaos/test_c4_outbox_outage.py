"""C4 Broker / outbox outage: with the outbox consumer unreachable, orders are still accepted;
once it is back the backlog drains within 30 s and every order's event is applied exactly once.

The fault is a ``reset_peer`` toxic on the proxy in front of the consumer (``[proxies]
consumer``), upstream, timeout 0: whatever the publisher sends is answered with a reset and
never reaches the consumer. It is shown active three ways before anything is judged: the
proxy reads it back, a fresh HTTP request through the proxy gets no answer, and no event of an
order placed during the outage reaches the consumer while it lasts. Effects are counted where
they land: ``outbox_events``, ``consumed_events``, ``order_ledger`` (``postgres_dsn``).
Thresholds: ``ops/chaos.toml`` [C4], [steady_state], [findings].
"""

from __future__ import annotations

import math
import time
from decimal import Decimal

import pytest

from pytest_spark import CheckEvidence, Target
from pytest_spark.probes import outbox
from pytest_spark.probes.chaos import FaultSpec
from pytest_spark.probes.chaos_load import http_reachable, probe_address
from pytest_spark.probes.outbox import EventDelivery
from pytest_spark.probes.waiting import wait_until
from suites.chaos.scenario import ChaosRun, chaos_run, fault_seconds
from suites.limits import Limits

# The [proxies] roles this scenario faults: the interlock checks them before any traffic.
FAULTED = ("consumer",)
pytestmark = pytest.mark.chaos("C4")

HYPOTHESIS = (
    "broker / outbox outage: orders still accepted; backlog drains within the limit after; "
    "every event delivered, its effect applied exactly once"
)
PROBE_TIMEOUT_S = 2.0


def test_outbox_outage_loses_and_duplicates_nothing(
    spark_target: Target,
    tradable: tuple[str, Decimal],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    c4 = limits.c4
    proxy = limits.proxies.consumer
    fault_s = fault_seconds(spark_target, c4.fault_s, limits)
    with chaos_run(
        "C4", HYPOTHESIS, [proxy], spark_target, limits, spark_evidence, tradable, fault_s
    ) as run:
        run.judge_before(run.steady_state("before"))
        _outage(run, proxy)
        run.judge_after(run.steady_state("after"))


def _outage(run: ChaosRun, proxy: str) -> None:
    c4, evidence = run.limits.c4, run.evidence
    spec = FaultSpec("C4", proxy, "reset_peer", {"timeout": 0}, stream="upstream")
    address = probe_address(run.proxy(proxy).listen, run.client.base_url)
    orders = run.orders("outage", math.ceil(c4.rate_per_s * run.fault_s))
    run.trigger = ("pending events", "events", [])
    run.sample_trigger(lambda: float(run.db.outbox_pending()))
    with run.scenario.fault(spec) as read_back:
        refused = http_reachable(address, PROBE_TIMEOUT_S)
        shots = run.send_sampling(
            orders, c4.rate_per_s, run.limits.steady_state.request_timeout_s,
            lambda: float(run.db.outbox_pending()), 0.5,
        )  # fmt: skip
        accepted = {s.order_id: s for s in shots if s.status == 201 and s.order_id is not None}
        during = [run.db.outbox_delivery(o) for o in accepted]
        reached = [d for d in during if d is not None and d.applied > 0]
    removed_at = time.time()
    evidence.note(
        f"fault {spec.describe()} for {run.fault_s:g} s: read back {read_back}; a request "
        f"through {address[0]}:{address[1]} → {refused or 'answered'}; {len(reached)} of "
        f"{len(accepted)} outage orders' events reached the consumer during the outage"
    )
    observed = read_back and refused is not None and bool(accepted) and not reached
    evidence.check(
        "fault_observed",
        int(observed),
        at_least=run.limits.findings.fault_observed_at_least,
        why=f"the outage never took effect (read back {read_back}, request through the proxy "
        f"{refused or 'answered'}, events applied during it {len(reached)} of {len(accepted)}): "
        "a fault that did not happen cannot pass",
    )

    findings = []
    not_accepted = [s for s in shots if s.status != 201]
    if len(not_accepted) >= c4.orders_refused:
        findings.append(
            f"{len(not_accepted)} of {len(shots)} orders not accepted during the outage: "
            + outbox.sample([s.describe() for s in not_accepted])
        )
    drained = wait_until(
        c4.drain_s,
        f"every event of the {len(accepted)} outage orders applied by the consumer",
        lambda _: [run.db.outbox_delivery(o) for o in accepted],
        lambda seen: all(d is not None and d.applied >= 1 for d in seen),
        pause_s=0.25,
    )
    drain_s = time.time() - removed_at
    run.sample_trigger(lambda: float(run.db.outbox_pending()))
    evidence.measure("backlog_drain_s", round(drain_s, 2) if drained.done else None, unit="s")
    if not drained.done:
        findings.append(f"backlog not drained: {drained.describe()}")
    deliveries: list[EventDelivery | None] = drained.value
    wrong = [
        d.describe() if d is not None else "an order without an order.accepted event"
        for d in deliveries
        if d is None or d.applied != 1 or d.deliveries < 1
    ]
    if wrong:
        findings.append(
            f"{len(wrong)} outage order(s) not applied exactly once (consumed_events, "
            f"order_ledger): {outbox.sample(wrong)}"
        )
    run.journal.notes.append(f"hypothesis findings: {findings}")
    evidence.note(
        f"{len(shots)} orders during the outage, {len(accepted)} accepted; {drained.describe()}"
    )
    evidence.check(
        "hypothesis_findings",
        len(findings),
        limit=run.limits.findings.hypothesis_findings,
        why="; ".join(findings)
        + ". The publisher must keep an event pending until the consumer's 2xx, retry it "
        "after the outage, and the consumer dedupe by event_id",
    )
