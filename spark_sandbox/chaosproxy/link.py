"""One proxied TCP connection: a client socket, its upstream socket and the toxics between.

The data path is asyncio protocols, not streams: with no toxic on a direction, each chunk
the kernel hands to ``data_received`` goes straight to the other socket's ``write`` (no
extra buffer, no task switch), which keeps an idle fault proxy cheap. Back-pressure is the
transports' own: a full write buffer pauses reading on the other socket.

When a direction has toxics, its chunks queue (stamped with their arrival time) for a
worker task that applies them in order; once the queue drains the worker exits and the
direct path resumes. Toxics are looked up per chunk, so adding or removing one through the
API affects connections that are already open, as it does in Toxiproxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from spark_sandbox.chaosproxy.model import STREAMS, ToxicSpec

# A toxic direction stops reading from its source beyond this many queued bytes.
QUEUE_LIMIT = 1024 * 1024
# Larger than asyncio's 64 KiB default: fewer pause/resume round trips on bulk transfers.
WRITE_BUFFER_HIGH = 1024 * 1024
# Bandwidth is paced in slices of at most 100 ms worth of data, so a slow link trickles
# rather than stalling for seconds and then bursting.
BANDWIDTH_SLICE_SECONDS = 0.1
# A bound on connecting upstream, so a black-holed upstream cannot pin a client forever.
UPSTREAM_CONNECT_TIMEOUT = 10.0
# SO_LINGER on, timeout 0: close() discards unsent data and sends RST (what reset_peer means).
LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class ActiveToxic:
    """A toxic that this connection drew (toxicity), with the state it keeps per connection."""

    spec: ToxicSpec
    transmitted: int = 0


class Side(asyncio.Protocol):
    """One socket of a link; ``stream`` names the direction its incoming bytes travel."""

    def __init__(self, link: Link, stream: str) -> None:
        self.link = link
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._holds: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self.link.side_connected(self)

    def data_received(self, data: bytes) -> None:
        self.link.on_data(self.stream, data)

    def eof_received(self) -> bool:
        self.link.on_eof(self.stream)
        return True  # keep the socket open for the other direction (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        self.link.close()

    def pause_writing(self) -> None:
        self.writable.clear()
        self.link.peer(self).hold("peer_buffer_full")

    def resume_writing(self) -> None:
        self.writable.set()
        self.link.peer(self).release("peer_buffer_full")

    def hold(self, reason: str) -> None:
        """Stop reading from this socket until every reason is released."""
        if not self._holds and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        if not self._holds and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class Link:
    """The client side and the upstream side of one connection, and the toxics between."""

    def __init__(
        self,
        upstream_address: tuple[str, int],
        toxics: Callable[[], list[ToxicSpec]],
        on_opened: Callable[[Link], None],
        on_closed: Callable[[Link], None],
    ) -> None:
        self.client = Side(self, "upstream")
        self.upstream = Side(self, "downstream")
        self._upstream_address = upstream_address
        self._toxics = toxics
        self._on_opened = on_opened
        self._on_closed = on_closed
        self._chains: dict[str, list[ActiveToxic]] = {stream: [] for stream in STREAMS}
        self._queues: dict[str, deque[tuple[float, bytes | None]]] = {s: deque() for s in STREAMS}
        self._queued_bytes = dict.fromkeys(STREAMS, 0)
        self._workers: dict[str, asyncio.Task[None] | None] = dict.fromkeys(STREAMS)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._reset_timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._finished: set[str] = set()
        self.closed = False

    def peer(self, side: Side) -> Side:
        return self.upstream if side is self.client else self.client

    def source(self, stream: str) -> Side:
        return self.client if stream == "upstream" else self.upstream

    def destination(self, stream: str) -> Side:
        return self.upstream if stream == "upstream" else self.client

    def side_connected(self, side: Side) -> None:
        if side is self.upstream:
            return
        # The client is accepted: hold its bytes until the upstream connection exists.
        self.client.hold("connecting")
        self._on_opened(self)
        for spec in self._toxics():
            self.attach(spec)
        self._connecting = asyncio.create_task(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._upstream_address
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: self.upstream, host, port),
                UPSTREAM_CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError):
            # Toxiproxy closes the client at once when the upstream cannot be reached.
            self.close()
            return
        if self.closed:  # disabled or deleted while we were connecting
            if self.upstream.transport is not None:
                self.upstream.transport.close()
            return
        self.client.release("connecting")

    def attach(self, spec: ToxicSpec) -> None:
        """Apply ``spec`` to this connection if it draws it (toxicity is per connection)."""
        if self.closed or random.random() >= spec.toxicity:
            return
        self._chains[spec.stream].append(ActiveToxic(spec))
        if spec.type == "timeout" and spec.attributes["timeout"] > 0:
            # Toxiproxy starts the clock when the toxic reaches the connection, not on data.
            delay = spec.attributes["timeout"] / 1000
            self._timers[spec.name] = asyncio.get_running_loop().call_later(delay, self.close)

    def detach(self, name: str) -> None:
        for chain in self._chains.values():
            chain[:] = [toxic for toxic in chain if toxic.spec.name != name]
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def replace(self, spec: ToxicSpec) -> None:
        """An updated toxic: redraw toxicity and restart its per-connection state."""
        self.detach(spec.name)
        self.attach(spec)

    def close(self, reset: bool = False) -> None:
        """Close both sockets; with ``reset`` the peers see RST instead of FIN."""
        if self.closed:
            return
        self.closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._reset_timer is not None:
            self._reset_timer.cancel()
        for side in (self.client, self.upstream):
            transport = side.transport
            if transport is None:
                continue
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                transport.abort()
            else:
                transport.close()
        current = asyncio.current_task()
        for task in (*self._workers.values(), self._connecting):
            if task is not None and task is not current:
                task.cancel()
        self._on_closed(self)

    def on_data(self, stream: str, data: bytes) -> None:
        if self.closed:
            return
        if not self._chains[stream] and self._workers[stream] is None:
            transport = self.destination(stream).transport
            assert transport is not None
            transport.write(data)
            return
        self._enqueue(stream, data)

    def on_eof(self, stream: str) -> None:
        if self.closed:
            return
        if not self._chains[stream] and self._workers[stream] is None:
            self._finish(stream)
            return
        self._enqueue(stream, None)

    def _enqueue(self, stream: str, data: bytes | None) -> None:
        self._queues[stream].append((asyncio.get_running_loop().time(), data))
        if data:
            self._queued_bytes[stream] += len(data)
            if self._queued_bytes[stream] > QUEUE_LIMIT:
                self.source(stream).hold("toxic_queue_full")
        if self._workers[stream] is None:
            self._workers[stream] = asyncio.create_task(self._work(stream))

    async def _work(self, stream: str) -> None:
        queue = self._queues[stream]
        try:
            while queue and not self.closed:
                arrival, data = queue.popleft()
                if data is None:
                    await self._slow_close(stream)
                    self._finish(stream)
                    continue
                self._queued_bytes[stream] -= len(data)
                if self._queued_bytes[stream] <= QUEUE_LIMIT // 2:
                    self.source(stream).release("toxic_queue_full")
                await self._through_toxics(stream, data, arrival)
        except (ConnectionError, OSError):
            self.close()
        finally:
            self._workers[stream] = None

    async def _through_toxics(self, stream: str, data: bytes, arrival: float) -> None:
        """Pass one chunk through the direction's toxics, in the order they were added."""
        rate = 0
        for toxic in list(self._chains[stream]):
            attributes = toxic.spec.attributes
            kind = toxic.spec.type
            if kind == "latency":
                due = arrival + latency_seconds(attributes)
                await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
            elif kind == "bandwidth" and attributes["rate"] > 0:
                rate = min(rate, attributes["rate"]) if rate else attributes["rate"]
            elif kind == "timeout":
                return  # data is dropped on the floor until the toxic goes away
            elif kind == "reset_peer":
                self._schedule_reset(attributes["timeout"] / 1000)
                return
            elif kind == "limit_data":
                allowed = max(0, attributes["bytes"] - toxic.transmitted)
                data = data[:allowed]
                toxic.transmitted += len(data)
                if toxic.transmitted >= attributes["bytes"]:
                    await self._write(stream, data, rate)
                    self.close()
                    return
        await self._write(stream, data, rate)

    async def _write(self, stream: str, data: bytes, rate: int) -> None:
        """Write with back-pressure; a bandwidth ``rate`` (KB/s) paces it in slices."""
        destination = self.destination(stream)
        step = max(1, int(rate * 1000 * BANDWIDTH_SLICE_SECONDS)) if rate else len(data)
        for start in range(0, len(data), step):
            if self.closed or destination.transport is None:
                return
            piece = data[start : start + step]
            if rate:
                await asyncio.sleep(len(piece) / (rate * 1000))
            destination.transport.write(piece)
            await destination.writable.wait()

    async def _slow_close(self, stream: str) -> None:
        chain = self._chains[stream]
        delay = sum(t.spec.attributes["delay"] for t in chain if t.spec.type == "slow_close")
        if delay:
            await asyncio.sleep(delay / 1000)

    def _finish(self, stream: str) -> None:
        """The source of ``stream`` sent FIN: half-close the destination, or close both."""
        if self.closed:
            return
        self._finished.add(stream)
        transport = self.destination(stream).transport
        if len(self._finished) == len(STREAMS) or transport is None:
            self.close()
        elif transport.can_write_eof():
            transport.write_eof()
        else:
            self.close()

    def _schedule_reset(self, delay: float) -> None:
        if self._reset_timer is None:
            loop = asyncio.get_running_loop()
            self._reset_timer = loop.call_later(delay, self.close, True)


def latency_seconds(attributes: dict[str, int]) -> float:
    """Latency plus or minus jitter, drawn per chunk as Toxiproxy does."""
    delay = attributes["latency"]
    jitter = attributes["jitter"]
    if jitter > 0:
        delay += random.randint(-jitter, jitter)
    return max(0, delay) / 1000
