"""B1 time and sequences: NTP offset, app-vs-DB clock offset, sequence anomalies.

Pure logic (SNTP packet and formulas, Cristian's offset, best sample, sequence grading) is kept
apart from the SNTP exchange at the bottom, so the formulas are unit-tested without a server.
The API's and the database's clocks are read by :mod:`pytest_spark.probes.spark_api` and
:mod:`pytest_spark.probes.postgres` into the samples defined here.

Sources: RFC 4330 §5 for SNTP; Cristian's algorithm for the RTT-compensated offsets (the
sample with the shortest round trip has the smallest error, ±RTT/2); PostgreSQL's
``clock_timestamp()`` because ``now()`` is frozen at the start of the transaction.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pytest_spark.probes.waiting import wait_until

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix)
NTP_DEFAULT_PORT = 123
# LI/VN/Mode, Stratum, Poll, Precision, then 11 32-bit words: root delay, root dispersion,
# reference id, and the reference/originate/receive/transmit timestamps (seconds, fraction).
SNTP_PACKET = struct.Struct("!BBbb11I")
SNTP_VERSION = 4
MODE_CLIENT, MODE_SERVER = 3, 4
ORIGINATE, RECEIVE, TRANSMIT = 5, 7, 9  # word index of each timestamp's seconds


class ClockProbeError(RuntimeError):
    """A clock source answered something that cannot be used as a time sample."""


# --- SNTP (RFC 4330) -----------------------------------------------------------------------


@dataclass(frozen=True)
class SntpSample:
    """One SNTP exchange: T1 client sent, T2 server received, T3 server sent, T4 client got it."""

    server: str
    stratum: int
    t1: float
    t2: float
    t3: float
    t4: float

    @property
    def offset_ms(self) -> float:
        """Server clock minus this host's clock."""
        return offset_from_timestamps(self.t1, self.t2, self.t3, self.t4) * 1000.0

    @property
    def delay_ms(self) -> float:
        return round_trip_delay(self.t1, self.t2, self.t3, self.t4) * 1000.0

    @property
    def rtt_ms(self) -> float:
        return self.delay_ms


def offset_from_timestamps(t1: float, t2: float, t3: float, t4: float) -> float:
    """RFC 4330 §5: ``t = ((T2 - T1) + (T3 - T4)) / 2``, in the unit of the timestamps."""
    return ((t2 - t1) + (t3 - t4)) / 2


def round_trip_delay(t1: float, t2: float, t3: float, t4: float) -> float:
    """RFC 4330 §5: ``d = (T4 - T1) - (T3 - T2)``: the network part of the exchange."""
    return (t4 - t1) - (t3 - t2)


def to_ntp(unix_seconds: float) -> tuple[int, int]:
    """Unix seconds -> NTP (seconds since 1900, 32-bit fraction)."""
    seconds = int(unix_seconds)
    fraction = int((unix_seconds - seconds) * 2**32) & 0xFFFFFFFF
    return (seconds + NTP_EPOCH_OFFSET) & 0xFFFFFFFF, fraction


def from_ntp(seconds: int, fraction: int) -> float:
    return seconds - NTP_EPOCH_OFFSET + fraction / 2**32


def sntp_request(t1: float) -> bytes:
    """A client (mode 3) packet; T1 goes in the transmit field, which the server echoes back
    as its originate timestamp, so the answer can be matched to this request."""
    words = [0] * 11
    words[TRANSMIT], words[TRANSMIT + 1] = to_ntp(t1)
    return SNTP_PACKET.pack((SNTP_VERSION << 3) | MODE_CLIENT, 0, 0, 0, *words)


def parse_sntp_response(server: str, request: bytes, answer: bytes, t4: float) -> SntpSample:
    """Validate a server's answer (RFC 4330 §5 client checks) and return the sample.

    T1 is taken from the request itself, so the offset uses exactly the time that was sent.
    """
    if len(answer) < SNTP_PACKET.size:
        raise ClockProbeError(f"SNTP answer from {server} is {len(answer)} bytes, expected 48")
    first, stratum, _poll, _precision, *words = SNTP_PACKET.unpack(answer[: SNTP_PACKET.size])
    _, _, _, _, *sent = SNTP_PACKET.unpack(request)
    mode = first & 0x7
    if mode != MODE_SERVER:
        raise ClockProbeError(f"SNTP answer from {server} has mode {mode}, expected 4 (server)")
    if first >> 6 == 3 or stratum == 0:
        # Leap indicator 3 = unsynchronised; stratum 0 = kiss-o'-death: the time is not usable.
        raise ClockProbeError(
            f"SNTP server {server} is unsynchronised (leap indicator {first >> 6}, "
            f"stratum {stratum}); check its upstream sources"
        )
    if words[ORIGINATE : ORIGINATE + 2] != sent[TRANSMIT : TRANSMIT + 2]:
        raise ClockProbeError(f"SNTP answer from {server} does not echo this request's time")
    if words[TRANSMIT] == 0 and words[TRANSMIT + 1] == 0:
        raise ClockProbeError(f"SNTP answer from {server} has a zero transmit timestamp")
    return SntpSample(
        server=server,
        stratum=stratum,
        t1=from_ntp(*sent[TRANSMIT : TRANSMIT + 2]),
        t2=from_ntp(words[RECEIVE], words[RECEIVE + 1]),
        t3=from_ntp(words[TRANSMIT], words[TRANSMIT + 1]),
        t4=t4,
    )


def parse_server(address: str) -> tuple[str, int]:
    """``host:port`` (or ``host``, port 123) of an NTP server."""
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, NTP_DEFAULT_PORT
    if not host or not port.isdigit():
        raise ValueError(f"NTP server {address!r}: expected host:port, e.g. 127.0.0.1:123")
    return host, int(port)


# --- app and database clocks (Cristian's algorithm) ----------------------------------------


@dataclass(frozen=True)
class ClockSample:
    """A remote clock compared with this host's: ``offset_ms`` = remote - local midpoint."""

    source: str
    offset_ms: float
    rtt_ms: float

    @property
    def error_ms(self) -> float:
        """The offset is known to within half the round trip."""
        return self.rtt_ms / 2


def cristian_sample(source: str, t0: float, remote: float, t1: float) -> ClockSample:
    """Offset of a remote reading taken between local times ``t0`` and ``t1`` (seconds)."""
    if t1 < t0:
        raise ClockProbeError(f"{source}: the local clock went backwards during the sample")
    return ClockSample(source, (remote - (t0 + t1) / 2) * 1000.0, (t1 - t0) * 1000.0)


class TimedSample(Protocol):
    @property
    def rtt_ms(self) -> float: ...


SampleT = TypeVar("SampleT", bound=TimedSample)


def best_sample(samples: Iterable[SampleT]) -> SampleT:
    """The sample with the shortest round trip: the one with the smallest error bound."""
    chosen = list(samples)
    if not chosen:
        raise ClockProbeError("no clock sample was taken")
    return min(chosen, key=lambda s: s.rtt_ms)


# --- sequences ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceRow:
    """One sequence as read from the database, with the column it feeds (if owned)."""

    sequence: str
    owner: str | None  # "schema.table.column", or None for a free-standing sequence
    last_value: int
    is_called: bool
    increment: int
    min_value: int
    max_value: int
    max_id: int | None  # max of the owning column; None when not owned or the table is empty

    @property
    def next_value(self) -> int:
        """What ``nextval`` hands out next. ``pg_sequences.last_value`` reads NULL before the
        first call and after ``setval(seq, n, false)``; the sequence itself says which."""
        return self.last_value + self.increment if self.is_called else self.last_value

    @property
    def used_fraction(self) -> float:
        """How much of the sequence's range is spent, 0..1 (descending ones count downwards)."""
        if self.increment > 0:
            return self.last_value / self.max_value if self.max_value > 0 else 0.0
        return self.last_value / self.min_value if self.min_value < 0 else 0.0


@dataclass(frozen=True)
class SequenceAnomaly:
    sequence: str
    kind: str  # "behind" (next value collides with existing ids) or "near_exhaustion"
    detail: str


def sequence_anomalies(rows: Iterable[SequenceRow], max_fraction: float) -> list[SequenceAnomaly]:
    """Sequences that will hand out a duplicate id, or have spent more than ``max_fraction``."""
    found: list[SequenceAnomaly] = []
    for row in rows:
        ascending = row.increment > 0
        if row.max_id is not None and ascending and row.next_value <= row.max_id:
            found.append(
                SequenceAnomaly(
                    row.sequence,
                    "behind",
                    f"next value {row.next_value} <= max({row.owner}) = {row.max_id}: the next "
                    "insert fails with a duplicate key; fix with setval(seq, max(id)+1, false)",
                )
            )
        if row.used_fraction > max_fraction:
            found.append(
                SequenceAnomaly(
                    row.sequence,
                    "near_exhaustion",
                    f"last value {row.last_value} is {row.used_fraction:.1%} of its range "
                    f"(limit {max_fraction:.0%}); widen the column/sequence to bigint",
                )
            )
    return found


# --- I/O -------------------------------------------------------------------------------------


def sntp_query(server: str, timeout: float = 2.0) -> SntpSample:
    """One real SNTP exchange over UDP with ``server`` (``host:port``)."""
    host, port = parse_server(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = sntp_request(time.time())
        sock.sendto(request, (host, port))

        def receive(left: float) -> SntpSample | None:
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                answer, sender = sock.recvfrom(512)
            except TimeoutError:
                return None
            t4 = time.time()
            if sender[1] != port:  # a stray datagram from elsewhere is not the answer
                return None
            return parse_sntp_response(server, request, answer, t4)

        waited = wait_until(timeout, f"an SNTP answer from {server}", receive, pause_s=0)
    if waited.value is None:
        raise ClockProbeError(
            f"no SNTP answer from {server} within {timeout:g} s; "
            "check the target's ntp_server and that UDP reaches it"
        )
    return waited.value


def sntp_best(server: str, samples: int, timeout: float = 2.0) -> SntpSample:
    """The shortest-delay sample of ``samples`` SNTP exchanges."""
    return best_sample(sntp_query(server, timeout) for _ in range(max(samples, 1)))


def sample_remote_clock(
    source: str, read_remote: Callable[[], float], samples: int
) -> list[ClockSample]:
    """``samples`` readings of a remote clock, each bracketed by this host's clock."""
    taken = []
    for _ in range(max(samples, 1)):
        t0 = time.time()
        remote = read_remote()
        t1 = time.time()
        taken.append(cristian_sample(source, t0, remote, t1))
    return taken


def describe_sequences(rows: Sequence[SequenceRow]) -> str:
    """One line per sequence, for the evidence."""
    return "\n".join(
        f"{r.sequence} owner={r.owner or '-'} last_value={r.last_value} called={r.is_called} "
        f"next={r.next_value} max_id={r.max_id} used={r.used_fraction:.2e}"
        for r in rows
    )
