"""One chaos scenario's run, shared by the C suites: the interlock, the Toxiproxy client, the
leftover sweep, steady-state probes, traffic during the fault with its trigger sampled, and
the journal and timeline attached to the evidence in every case.

The machinery is the plugin's (:mod:`pytest_spark.probes.chaos`); this module only wires it
to the target's endpoints and the thresholds of ``ops/chaos.toml``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from pytest_spark import CheckEvidence, Inconclusive, Target, TargetConfigError
from pytest_spark.probes import chaos
from pytest_spark.probes.chaos import Journal, Scenario, SteadyState
from pytest_spark.probes.chaos_load import Shot, send_orders
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.spark_api import Ticket, new_account, new_key
from pytest_spark.probes.toxiproxy import Proxy, ToxiproxyClient
from pytest_spark.probes.waiting import wait_until
from suites.limits import Limits

POLL_S = 0.25
# The endpoints a scenario touches: each must be on loopback, or the target must opt in.
TOUCHED = ("toxiproxy_url", "api_url", "postgres_dsn")


@dataclass
class ChaosRun:
    """What a scenario's test works with; ``shots`` and ``trigger`` feed the timeline."""

    item: str
    scenario: Scenario
    api_url: str
    db: Postgres
    limits: Limits
    evidence: CheckEvidence
    tradable: tuple[str, Decimal]
    fault_s: float
    shots: list[Shot] = field(default_factory=list)
    trigger: tuple[str, str, list[tuple[float, float]]] | None = None

    @property
    def journal(self) -> Journal:
        return self.scenario.journal

    @property
    def client(self) -> ToxiproxyClient:
        return self.scenario.client

    def proxy(self, name: str) -> Proxy:
        return self.client.get_proxy(name)

    def orders(self, purpose: str, count: int) -> list[tuple[Ticket, str]]:
        """``count`` keyed orders, each of its own account (no position lock is shared, so
        what the fault does is not hidden behind a queue of one account's orders)."""
        symbol, price = self.tradable
        purpose = f"{self.item.lower()}-{purpose}"
        return [
            (Ticket(new_account(purpose), symbol, "buy", 1, price), new_key()) for _ in range(count)
        ]

    def steady_state(self, phase: str) -> SteadyState:
        """Probe the steady state (``before`` or ``after``) and journal it."""
        ss = self.limits.steady_state
        with self.journal.activity(f"steady state {phase}", "probe") as entry:
            shots = send_orders(
                self.api_url, self.orders("steady", ss.requests), ss.rate_per_s,
                ss.request_timeout_s,
            )  # fmt: skip
            pending = wait_until(
                ss.settle_s,
                "the outbox drained after the probe",
                lambda _: self.db.outbox_pending(),
                lambda n: n == 0,
                pause_s=POLL_S,
            ).value
            state = SteadyState(
                shots,
                pending,
                chaos.steady_state_findings(
                    shots,
                    pending,
                    p95_limit_ms=ss.p95_ms,
                    server_errors_limit=ss.server_errors,
                    pending_limit=ss.pending_events,
                ),
            )
            entry.output = state.to_json()
        self.shots.extend(shots)
        if phase == "before":
            self.journal.before = state
        else:
            self.journal.after = state
        return state

    def send_sampling(
        self,
        orders: Sequence[tuple[Ticket, str]],
        rate_per_s: float,
        timeout_s: float,
        sample: Callable[[], float | None],
        every_s: float,
    ) -> list[Shot]:
        """Send ``orders`` while sampling the trigger every ``every_s`` (into ``trigger``)."""
        result: list[list[Shot]] = []
        failure: list[BaseException] = []

        def send() -> None:
            try:
                result.append(send_orders(self.api_url, orders, rate_per_s, timeout_s))
            except BaseException as exc:  # handed to the test's thread below
                failure.append(exc)

        sender = threading.Thread(target=send, name=f"{self.item} orders", daemon=True)
        sender.start()
        points = self.trigger[2] if self.trigger is not None else []
        while sender.is_alive():
            value = sample()
            if value is not None:
                points.append((time.time(), value))
                self.journal.during.append({"at": chaos.iso(time.time()), "value": value})
            sender.join(every_s)
        if failure:
            raise failure[0]
        self.shots.extend(result[0])
        return result[0]

    def sample_trigger(self, sample: Callable[[], float | None]) -> None:
        """One reading of the trigger outside the fault, so the timeline shows its baseline."""
        value = sample()
        if self.trigger is not None and value is not None:
            self.trigger[2].append((time.time(), value))

    def judge_before(self, before: SteadyState) -> None:
        """INCONCLUSIVE when the steady state does not hold before the fault: a scenario
        that starts unhealthy shows nothing about the fault."""
        findings = self.limits.findings
        self.evidence.note(f"steady state before: {before.to_json()}")
        if not before.met:
            self.evidence.inconclusive(
                "the steady state does not hold before the fault, so no fault was injected: "
                + "; ".join(before.findings)
            )
        self.evidence.check(
            "steady_state_before_findings",
            len(before.findings),
            limit=findings.steady_state_before_findings,
            why="; ".join(before.findings),
        )

    def judge_after(self, after: SteadyState) -> None:
        self.evidence.note(f"steady state after: {after.to_json()}")
        self.evidence.check(
            "steady_state_after_findings",
            len(after.findings),
            limit=self.limits.findings.steady_state_after_findings,
            why="the steady state did not come back once the fault was removed: "
            + "; ".join(after.findings),
        )


def fault_seconds(target: Target, fault_s: float, limits: Limits) -> float:
    """The scenario's fault duration: shorter on the embedded sandbox, as ops/chaos.toml says."""
    return min(fault_s, limits.chaos_sandbox.fault_s) if target.is_sandbox else fault_s


@contextlib.contextmanager
def chaos_run(
    item: str,
    hypothesis: str,
    proxies: Sequence[str],
    target: Target,
    limits: Limits,
    evidence: CheckEvidence,
    tradable: tuple[str, Decimal],
    fault_s: float,
) -> Iterator[ChaosRun]:
    """The scenario's run: refused before any traffic unless the interlock allows it; the
    leftover sweep first; the journal and the timeline attached however the run ends."""
    endpoints = {key: target.require(key) for key in TOUCHED}
    refused = chaos.refusal(endpoints, target.chaos, proxies)
    if refused is not None:
        pytest.fail(f"{item}: {refused}", pytrace=False)
    try:
        token: str | None = target.require("toxiproxy_token")
    except TargetConfigError:
        token = None  # a plain Toxiproxy has no token
    journal = Journal(item, f"{item} {hypothesis.split(':')[0]}", hypothesis)
    client = ToxiproxyClient(endpoints["toxiproxy_url"], token=token)
    db = Postgres(endpoints["postgres_dsn"], limits.market.db_connect_timeout_s)
    run = ChaosRun(
        item, Scenario(client, journal), endpoints["api_url"], db, limits, evidence, tradable,
        fault_s,
    )  # fmt: skip
    try:
        removed = run.scenario.sweep()
        if removed:
            evidence.note(
                f"removed {len(removed)} toxic(s) a previous run left behind: " + "; ".join(removed)
            )
        yield run
        journal.finish("completed")
    except Inconclusive:
        journal.finish("aborted")
        raise
    except KeyboardInterrupt:
        journal.finish("interrupted")
        raise
    except BaseException:
        journal.finish("failed")
        raise
    finally:
        fault = run.scenario.fault_started, run.scenario.fault_ended
        span = (fault[0], fault[1]) if fault[0] is not None and fault[1] is not None else None
        svg = chaos.timeline_svg(item, run.shots, run.trigger, span, limits.steady_state.p95_ms)
        evidence.attach(f"{item.lower()}_journal.json", journal.dumps())
        evidence.attach(f"{item.lower()}_timeline.svg", svg)
        evidence.measure(f"{item.lower()}_duration_s", round(time.time() - journal.start, 1),
                         unit="s")  # fmt: skip
        client.close()
        db.close()
