"""The machinery of a chaos scenario (C1–C6): the safety interlock, the fault injected through
the Toxiproxy API and removed in every case, the sweep of faults a killed run left behind, the
steady-state judgement, and the journal and timeline that go into the evidence.

- **Interlock** (:func:`refusal`): faults go only to loopback targets, or to a target whose
  file opts in (``[chaos] chaos_allowed = true``) and names the proxies; anything else is
  refused before any traffic, with the way to opt in.
- **Fault** (:meth:`Scenario.fault`): every toxic the gate adds is named ``spark-chaos-…``
  (:data:`TOXIC_PREFIX`). It is read back once added, removed when the block ends however it
  ends (failure, error, timeout, Ctrl-C: :meth:`ToxiproxyClient.toxic`), and its absence is
  read back again and journalled as the rollback.
- **Leftovers** (:func:`sweep_leftovers`): a run killed with SIGKILL removes nothing; the next
  scenario (and ``spark-gate sandbox down``) lists every proxy's toxics and removes those with
  the prefix, and says so.
- **Journal** (:class:`Journal`): Chaos Toolkit's journal shape where it fits (``status``,
  ``deviated``, ``steady_states.before/after/during``, ``run``, ``rollbacks``, ``start``,
  ``end``, ``duration``), attached as JSON; :func:`timeline_svg` plots it.

Not imported by ``pytest_spark.plugin`` (httpx through the Toxiproxy client).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from pytest_spark.evidence.chart import line_chart
from pytest_spark.probes.chaos_load import Shot, p95_ms
from pytest_spark.probes.toxiproxy import Toxic, ToxiproxyClient, ToxiproxyError
from pytest_spark.probes.traffic import is_loopback

# Every toxic the gate adds carries this prefix: what it finds with it later is its own.
TOXIC_PREFIX = "spark-chaos-"


class ChaosRefused(RuntimeError):
    """The target may not receive faults (see :func:`refusal`)."""


def refusal(
    endpoints: Mapping[str, str], opt_in: Mapping[str, object], proxies: Sequence[str]
) -> str | None:
    """Why a scenario must not run against these endpoints (key -> URL or host:port), or None.

    Loopback hosts only, unless the target's ``[chaos]`` says ``chaos_allowed = true`` and its
    ``proxies`` list every proxy the scenario faults."""
    remote = sorted(key for key, url in endpoints.items() if not is_loopback(_host(url)))
    if not remote:
        return None
    shown = ", ".join(f"{key} ({_host(endpoints[key])})" for key in remote)
    if opt_in.get("chaos_allowed") is not True:
        return (
            f"refusing to inject faults: {shown} not on loopback and the target file does not "
            "opt in; add [chaos] chaos_allowed = true and proxies = [...] naming the Toxiproxy "
            "proxies the chaos gate may fault (docs/chaos.md)"
        )
    allowed = opt_in.get("proxies")
    named = set(allowed) if isinstance(allowed, list) else set()
    unnamed = [p for p in proxies if p not in named]
    if unnamed:
        return (
            f"refusing to inject faults: {shown} not on loopback and proxies {unnamed} are not "
            "named in the target file's [chaos] proxies; add them there to allow it"
        )
    return None


def _host(endpoint: str) -> str:
    """The host of a URL, a ``host:port`` or a libpq conninfo (no host: the local socket)."""
    if "://" in endpoint:
        return urlsplit(endpoint).hostname or "localhost"
    if "=" in endpoint:
        found = re.search(r"(?:^|\s)host\s*=\s*'?([^\s']+)", endpoint)
        return found.group(1) if found else "localhost"
    return endpoint.rpartition(":")[0].strip("[]") if ":" in endpoint else endpoint


def sweep_leftovers(client: ToxiproxyClient) -> list[str]:
    """Remove every ``spark-chaos-`` toxic on every proxy (a killed run's); what was removed."""
    removed = []
    for proxy in client.proxies().values():
        for toxic in proxy.toxics:
            if toxic.name.startswith(TOXIC_PREFIX):
                with contextlib.suppress(ToxiproxyError):  # gone meanwhile is as good
                    client.remove_toxic(proxy.name, toxic.name)
                removed.append(f"{toxic.name} ({toxic.type}) on proxy {proxy.name}")
    return removed


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


@dataclass
class Activity:
    """One entry of ``run`` or ``rollbacks``: an action or probe and what it gave."""

    name: str
    kind: str  # "action" or "probe"
    start: float
    end: float = 0.0
    status: str = "succeeded"
    output: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "activity": {"type": self.kind, "name": self.name},
            "status": self.status,
            "output": self.output,
            "start": iso(self.start),
            "end": iso(self.end or self.start),
            "duration": round((self.end or self.start) - self.start, 3),
        }


@dataclass
class SteadyState:
    """One steady-state probe: what was sent, what it showed, and the findings against it."""

    shots: list[Shot]
    pending_events: int | None
    findings: list[str]

    @property
    def met(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        answered = [s for s in self.shots if s.status is not None]
        return {
            "steady_state_met": self.met,
            "requests": len(self.shots),
            "answered": len(answered),
            "p95_ms": p95_ms(self.shots),
            "server_errors": sum(s.server_error for s in self.shots),
            "pending_events": self.pending_events,
            "findings": self.findings,
        }


def steady_state_findings(
    shots: Sequence[Shot],
    pending_events: int | None,
    *,
    p95_limit_ms: float,
    server_errors_limit: float,
    pending_limit: float,
) -> list[str]:
    """The clauses of the steady state that do not hold: p95 under its limit, no 5xx or
    unanswered order, nothing left pending in the outbox."""
    findings = []
    p95 = p95_ms(shots)
    if p95 is None or p95 >= p95_limit_ms:
        shown = "no answered order" if p95 is None else f"{p95:.0f} ms"
        findings.append(f"client p95 {shown} over {len(shots)} orders, limit {p95_limit_ms:g} ms")
    errors = [s for s in shots if s.server_error]
    if len(errors) >= server_errors_limit:
        sample = "; ".join(s.describe() for s in errors[:3])
        findings.append(
            f"{len(errors)} of {len(shots)} orders answered 5xx or not at all: {sample}"
        )
    if pending_events is None or pending_events >= pending_limit:
        findings.append(f"outbox events pending after the probe settled: {pending_events}")
    return findings


@dataclass
class Journal:
    """A Chaos Toolkit-shaped journal of one scenario run."""

    item: str
    title: str
    hypothesis: str
    start: float = field(default_factory=time.time)
    end: float | None = None
    status: str = "running"
    before: SteadyState | None = None
    after: SteadyState | None = None
    during: list[dict[str, Any]] = field(default_factory=list)
    run: list[Activity] = field(default_factory=list)
    rollbacks: list[Activity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def activity(self, name: str, kind: str = "action") -> Iterator[Activity]:
        """Journal ``name`` in ``run``; an exception marks it failed and goes on up."""
        entry = Activity(name, kind, time.time())
        self.run.append(entry)
        try:
            yield entry
        except BaseException as exc:
            entry.status = "failed"
            entry.output = entry.output or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            entry.end = time.time()

    def finish(self, status: str) -> None:
        self.status, self.end = status, time.time()

    def to_json(self) -> dict[str, Any]:
        end = self.end or time.time()
        after = self.after
        return {
            "experiment": {"title": self.title, "item": self.item, "hypothesis": self.hypothesis},
            "status": self.status,
            "deviated": bool(after is not None and not after.met),
            "steady_states": {
                "before": None if self.before is None else self.before.to_json(),
                "after": None if after is None else after.to_json(),
                "during": self.during,
            },
            "run": [a.to_json() for a in self.run],
            "rollbacks": [a.to_json() for a in self.rollbacks],
            "notes": self.notes,
            "start": iso(self.start),
            "end": iso(end),
            "duration": round(end - self.start, 3),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)


@dataclass(frozen=True)
class FaultSpec:
    """A toxic to inject: on ``proxy``, of ``type`` with ``attributes``, on ``stream``."""

    scenario: str
    proxy: str
    type: str
    attributes: Mapping[str, Any]
    stream: str = "downstream"

    @property
    def name(self) -> str:
        return f"{TOXIC_PREFIX}{self.scenario.lower()}-{self.type}"

    def describe(self) -> str:
        return f"{self.type} {dict(self.attributes)} ({self.stream}) on proxy {self.proxy}"


class Scenario:
    """One scenario's journal and its fault through ``client``."""

    def __init__(self, client: ToxiproxyClient, journal: Journal) -> None:
        self.client = client
        self.journal = journal
        self.fault_started: float | None = None
        self.fault_ended: float | None = None

    def sweep(self) -> list[str]:
        """Remove a killed run's leftover toxics, journalled as a rollback."""
        entry = Activity("remove leftover spark-chaos- toxics", "action", time.time())
        removed = sweep_leftovers(self.client)
        entry.end, entry.output = time.time(), removed
        self.journal.rollbacks.append(entry)
        if removed:
            self.journal.notes.append(
                "removed toxics a previous run left behind: " + "; ".join(removed)
            )
        return removed

    @contextlib.contextmanager
    def fault(self, spec: FaultSpec) -> Iterator[bool]:
        """Inject ``spec`` for the block; yields whether the proxy reads it back as asked.
        Removed in every case, then its absence read back and journalled as a rollback."""
        try:
            with (
                self.journal.activity(f"inject {spec.name}: {spec.describe()}") as entry,
                self.client.toxic(
                    spec.proxy,
                    type=spec.type,
                    attributes=spec.attributes,
                    stream=spec.stream,
                    name=spec.name,
                ) as added,
            ):
                self.fault_started = time.time()
                read_back = _read_back(self.client, spec, added)
                entry.output = {"toxic": added.to_json(), "read_back": read_back}
                yield read_back is not None
        finally:
            self.fault_ended = time.time()
            self._journal_removal(spec)

    def _journal_removal(self, spec: FaultSpec) -> None:
        entry = Activity(f"remove {spec.name} from {spec.proxy}", "action", time.time())
        try:
            left = [t.name for t in self.client.toxics(spec.proxy) if t.name == spec.name]
        except ToxiproxyError as exc:
            entry.status, entry.output = "failed", f"cannot read the proxy's toxics back: {exc}"
        else:
            entry.status = "failed" if left else "succeeded"
            entry.output = "still present" if left else "removed; read back absent"
        entry.end = time.time()
        self.journal.rollbacks.append(entry)


def _read_back(client: ToxiproxyClient, spec: FaultSpec, added: Toxic) -> dict[str, Any] | None:
    """The toxic as the proxy lists it, when it is there as asked; else None."""
    for toxic in client.toxics(spec.proxy):
        if toxic.name == added.name and toxic.type == spec.type and toxic.stream == spec.stream:
            wanted = {k: v for k, v in spec.attributes.items()}
            if all(toxic.attributes.get(k) == v for k, v in wanted.items()):
                return toxic.to_json()
    return None


def per_second(events: Sequence[float], t0: float, end: float) -> list[tuple[float, float]]:
    """Counts of ``events`` (Unix seconds) per whole second from ``t0`` to ``end``."""
    seconds = max(1, int(end - t0) + 1)
    counts = [0] * seconds
    for at in events:
        if t0 <= at < t0 + seconds:
            counts[int(at - t0)] += 1
    return [(float(n), float(c)) for n, c in enumerate(counts)]


def timeline_svg(
    title: str,
    shots: Sequence[Shot],
    trigger: tuple[str, str, Sequence[tuple[float, float]]] | None,
    fault: tuple[float, float] | None,
    latency_limit_ms: float | None,
) -> str:
    """Three stacked charts on one time axis (seconds from the scenario's first order): each
    order's latency, non-2xx answers per second, and the trigger's value (name of at most a
    dozen characters, unit, Unix-time points) with the fault's span as a step. Every chart
    holds a point at both ends of the run, so their axes line up."""
    if not shots:
        return line_chart(title, "ms", {}, None)
    t0 = min(s.sent_at for s in shots)
    end = max(s.sent_at for s in shots) + 1
    span = (0.0, end - t0)
    latency = [(s.sent_at - t0, s.latency_ms) for s in shots if s.latency_ms is not None]
    failed = per_second([s.sent_at for s in shots if not s.succeeded], t0, end)
    charts = [
        line_chart(f"{title}: latency per order", "ms", {"latency": latency}, latency_limit_ms),
        line_chart(f"{title}: non-2xx answers", "per s", {"non-2xx": failed}, None),
    ]
    if trigger is not None:
        name, unit, points = trigger
        series: dict[str, list[tuple[float, float]]] = {name: [(x - t0, y) for x, y in points]}
        top = max([y for _, y in points] or [1.0])
        step = [(span[0], 0.0), (span[1], 0.0)]
        if fault is not None:
            on, off = fault[0] - t0, fault[1] - t0
            step[1:1] = [(on - 0.001, 0.0), (on, top), (off, top), (off + 0.001, 0.0)]
        series["fault"] = step
        charts.append(line_chart(f"{title}: {name} (trigger)", unit, series, None))
    return _stacked(title, charts)


def _stacked(title: str, charts: Sequence[str], height: int = 240, width: int = 640) -> str:
    inner = "".join(c.replace("<svg ", f'<svg y="{n * height}" ', 1) for n, c in enumerate(charts))
    total = height * len(charts)
    label = escape(title, {'"': "&quot;"})
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" '
        f'viewBox="0 0 {width} {total}" role="img" aria-label="{label}">{inner}</svg>'
    )
