"""Stopping a deployment on a thread-pool executor: tier by tier, each tier all at once.

Clients go first (tier 0), then PgBouncer, then PostgreSQL, so that no client holds a
connection the database would wait for. Each service's executor says its tier and its first
signal (:class:`~spark_sandbox.services.process.ServiceProcess`); the same rules stop the
recorded processes of a run whose owner is gone.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from spark_sandbox.home import Report, warn
from spark_sandbox.processes import GONE, ProcessIdentity, stop_process_group

Entry = TypeVar("Entry")


class Stoppable(Protocol):
    """What stopping needs from a started service: its pid, a clean stop, and its policy."""

    stop_signal: int
    stop_tier: int

    @property
    def pid(self) -> int | None: ...

    def stop(self, timeout: float = ...) -> None: ...


def in_tiers(
    entries: Iterable[Entry], tier: Callable[[Entry], int], stop: Callable[[Entry], None]
) -> None:
    """``stop`` every entry, lowest tier first, the entries of one tier concurrently."""
    tiers: dict[int, list[Entry]] = defaultdict(list)
    for entry in entries:
        tiers[tier(entry)].append(entry)
    for number in sorted(tiers):
        group = tiers[number]
        with ThreadPoolExecutor(len(group), thread_name_prefix="sandbox-stop") as pool:
            list(pool.map(stop, group))


def stop_services(services: Sequence[tuple[str, Stoppable]], report: Report = warn) -> None:
    """Stop started services, then sweep each one's process group (children it left)."""

    def stop_one(entry: tuple[str, Stoppable]) -> None:
        name, service = entry
        pid = service.pid
        try:
            service.stop()
        except Exception as exc:  # one stubborn service must not keep the others running
            report(f"{name}: stop failed ({exc}); killing its process group")
        if pid is not None:
            stop_process_group(pid, first=signal.Signals(service.stop_signal))

    in_tiers(services, lambda entry: entry[1].stop_tier, stop_one)


def stop_recorded_processes(
    processes: Mapping[str, ProcessIdentity], report: Report = warn
) -> None:
    """Stop the recorded services that are still the processes recorded; any other process
    under a recorded pid is left alone, and that is reported."""

    def stop(name: str) -> None:
        identity = processes[name]
        problem = identity.refusal_to_signal()
        if problem is None:
            stop_process_group(identity.pid, first=signal.Signals(identity.stop_signal))
        elif problem != GONE:
            report(f"left {name} (pid {identity.pid}) alone: {problem}")

    in_tiers(list(processes), lambda name: processes[name].stop_tier, stop)
