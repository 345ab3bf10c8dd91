"""Sandbox-only holds: keep one keyed order in progress until the test releases it.

The in-flight answer of the Idempotency-Key draft (409 while the first request with a key is
still being processed) needs two requests to overlap on the server. Fired together, they
overlap only when the first is slower than the gap between their arrivals, which depends on
the machine's load: a check built on that passes or fails by luck. In the sandbox a check
arms a hold on a key instead; the first request with that key then pauses, key claimed and
order not yet placed, until the check has sent its second request and releases it.

``POST /_sandbox/holds {"key", "timeout_s"}`` arms, ``POST /_sandbox/holds/await {"key",
"timeout_s"}`` answers once a request is held (``{"held": true}``) or the timeout passed,
``POST /_sandbox/holds/release {"key"}`` lets it go. A held request resumes by itself after
``timeout_s`` (at most :data:`MAX_HOLD_S`), well inside the key's lease, so it never loses its
claim to a retry. Outside the sandbox the routes answer 404 and nothing ever pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from spark_sandbox.app.idempotency import MAX_KEY_LENGTH
from spark_sandbox.app.problems import Problem

MAX_HOLD_S = 5.0
# Armed holds nobody used are dropped after this, and there are never more than MAX_ARMED.
STALE_AFTER_S = 60.0
MAX_ARMED = 256


@dataclass
class Hold:
    timeout_s: float
    armed_at: float = field(default_factory=time.monotonic)
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class Holds:
    """Armed holds by Idempotency-Key, for one API process (one event loop)."""

    def __init__(self) -> None:
        self._armed: dict[str, Hold] = {}

    def arm(self, key: str, timeout_s: float) -> None:
        now = time.monotonic()
        for stale in [k for k, h in self._armed.items() if now - h.armed_at > STALE_AFTER_S]:
            self._armed.pop(stale).released.set()
        if key not in self._armed and len(self._armed) >= MAX_ARMED:
            raise Problem(429, "too_many_holds", f"at most {MAX_ARMED} holds may be armed")
        self._armed[key] = Hold(timeout_s)

    async def pause(self, key: str) -> None:
        """Called by the order path once the key is claimed: the first request for an armed
        key waits here until released or timed out; every other request passes straight on."""
        hold = self._armed.get(key)
        if hold is None or hold.reached.is_set():
            return
        hold.reached.set()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(hold.timeout_s):
                    await hold.released.wait()
        finally:
            if self._armed.get(key) is hold:
                del self._armed[key]

    async def wait_reached(self, key: str, timeout_s: float) -> bool:
        hold = self._armed.get(key)
        if hold is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await hold.reached.wait()
        return hold.reached.is_set()

    def release(self, key: str) -> bool:
        hold = self._armed.get(key)
        if hold is None:
            return False
        hold.released.set()
        if not hold.reached.is_set():
            del self._armed[key]  # never used: nothing else will remove it
        return True


def parse_hold(doc: object) -> tuple[str, float]:
    """``(key, timeout_s)`` from a hold request body; a malformed one is a 400."""
    if not isinstance(doc, dict):
        raise Problem(400, "invalid_request", 'expected {"key": str, "timeout_s": number}')
    key = doc.get("key")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(400, "invalid_request", f"key must be 1 to {MAX_KEY_LENGTH} printable chars")
    timeout = doc.get("timeout_s", MAX_HOLD_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise Problem(400, "invalid_request", "timeout_s must be a positive number of seconds")
    return key, min(float(timeout), MAX_HOLD_S)
