"""wait_until: bounded by its deadline, at least one attempt, the seconds left handed on."""

from __future__ import annotations

import time

from pytest_spark.probes.waiting import Deadline, wait_until


def test_stops_as_soon_as_the_condition_holds() -> None:
    calls: list[float] = []

    def attempt(left: float) -> int:
        calls.append(left)
        return len(calls)

    waited = wait_until(10, "three calls", attempt, lambda n: n >= 3, pause_s=0)
    assert (waited.value, waited.done, waited.attempts) == (3, True, 3)
    assert all(0 < left <= 10 for left in calls)
    assert waited.describe().startswith("three calls after ")


def test_gives_up_at_the_deadline_with_the_last_value() -> None:
    started = time.monotonic()
    waited = wait_until(0.3, "never", lambda _: "still no", lambda _: False, pause_s=0.05)
    assert 0.3 <= time.monotonic() - started < 2
    assert (waited.value, waited.done) == ("still no", False)
    assert waited.attempts > 1
    assert "never: not within" in waited.describe()


def test_a_passed_deadline_still_makes_one_attempt() -> None:
    waited = wait_until(Deadline.after(0), "once", lambda left: left, lambda _: False)
    assert (waited.value, waited.attempts, waited.done) == (0.0, 1, False)


def test_a_blocking_attempt_is_given_the_time_left() -> None:
    deadline = Deadline.after(0.5)
    seen: list[float] = []

    def attempt(left: float) -> bool:
        seen.append(left)
        time.sleep(min(left, 0.2))  # like a socket read with a timeout of `left`
        return False

    wait_until(deadline, "a datagram", attempt, pause_s=0)
    assert deadline.passed and seen[0] <= 0.5
    assert seen == sorted(seen, reverse=True)
