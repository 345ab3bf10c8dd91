"""Waiting for something on the target, bounded by a monotonic deadline.

Every wait of the probes goes through :func:`wait_until`: a fresh Prometheus that has not
scraped yet, a rule not evaluated yet, a NOTIFY on its way, an SNTP answer among stray
datagrams. Each attempt is given the seconds left, so one that blocks (a socket read, a
``notifies()`` generator) never outlives the deadline; one that returns at once is repeated
after a short pause. The result says whether the condition held and how long it took, and
names what was awaited, so a check can report "not within 15 s" instead of a bare timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
# Between attempts that return at once: often enough to see a 1 s scrape interval promptly.
DEFAULT_PAUSE_S = 0.25


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock; ``Deadline.after(5)`` is five seconds from now."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + max(seconds, 0.0), max(seconds, 0.0))

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at


@dataclass(frozen=True)
class Waited(Generic[T]):
    """The last value seen, whether it satisfied the wait, and what the wait was for."""

    value: T
    done: bool
    what: str
    seconds: float
    attempts: int

    def describe(self) -> str:
        if self.done:
            return f"{self.what} after {self.seconds:.2f} s ({self.attempts} attempt(s))"
        return f"{self.what}: not within {self.seconds:.1f} s ({self.attempts} attempt(s))"


def wait_until(
    deadline: Deadline | float,
    what: str,
    attempt: Callable[[float], T],
    done: Callable[[T], bool] = bool,
    *,
    pause_s: float = DEFAULT_PAUSE_S,
) -> Waited[T]:
    """``attempt(seconds_left)`` until ``done(value)`` holds or ``deadline`` (a
    :class:`Deadline`, or seconds from now) passes; always at least one attempt.

    ``what`` says what is awaited ("every scrape target scraped once"), for the evidence.
    """
    if not isinstance(deadline, Deadline):
        deadline = Deadline.after(deadline)
    started = time.monotonic()
    attempts = 1
    value = attempt(deadline.left())
    while not done(value) and not deadline.passed:
        time.sleep(min(pause_s, deadline.left()))
        attempts += 1
        value = attempt(deadline.left())
    return Waited(value, done(value), what, time.monotonic() - started, attempts)
