"""An NTP server on a loopback port: chronyd serving its local clock, never adjusting it.

Call::

    proc, ntp = start_ntp(run_dir, offset_seconds=5.0)   # the ntp_offset defect's setting
    sample = sntp_query(ntp.host, ntp.port)               # sample.offset ≈ +5.0 (0.0 by default)

chronyd runs with ``-x`` (never touches the system clock), ``-d`` (foreground, so the
executor supervises it), ``cmdport 0`` (no control socket) and ``local stratum 8`` (it serves
the host clock without upstream sources). A non-zero offset runs it under libfaketime
(``faketime -f +5s``), so only this server's idea of the time is ahead.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceProcess, ServiceStartError, tail

HOST = "127.0.0.1"
CHRONYD_BIN = "chronyd"
FAKETIME_BIN = "faketime"
# chronyd drops root for this user after binding; its files must be writable by it.
CHRONY_USER = "_chrony"
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
SNTP_PACKET = struct.Struct("!BBbb11I")  # LI/VN/mode, stratum, poll, precision, 11 words
MODE_CLIENT, MODE_SERVER = 3, 4
NTP_VERSION = 4


@dataclass(frozen=True)
class NtpServer:
    host: str
    port: int
    config_path: Path
    offset_seconds: float  # what the server was told to add; 0.0 without the defect

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SntpSample:
    """One SNTP exchange (RFC 4330 §5): T1 sent, T2 server received, T3 server sent, T4 back."""

    mode: int
    stratum: int
    t1: float
    t2: float
    t3: float
    t4: float

    @property
    def offset(self) -> float:
        """Server clock minus local clock, in seconds."""
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) / 2

    @property
    def delay(self) -> float:
        return (self.t4 - self.t1) - (self.t3 - self.t2)


def to_ntp(unix_seconds: float) -> tuple[int, int]:
    seconds = int(unix_seconds)
    return seconds + NTP_EPOCH_OFFSET, int((unix_seconds - seconds) * 2**32)


def from_ntp(seconds: int, fraction: int) -> float:
    return seconds - NTP_EPOCH_OFFSET + fraction / 2**32


def client_request(t1: float) -> bytes:
    words = [0] * 11
    words[9], words[10] = to_ntp(t1)  # transmit timestamp: echoed back as the origin
    return SNTP_PACKET.pack((NTP_VERSION << 3) | MODE_CLIENT, 0, 0, 0, *words)


def parse_response(data: bytes, t1: float, t4: float) -> SntpSample:
    if len(data) < SNTP_PACKET.size:
        raise ValueError(f"SNTP answer is {len(data)} bytes, expected at least 48")
    first, stratum, _, _, *words = SNTP_PACKET.unpack(data[: SNTP_PACKET.size])
    if words[9] == 0 and words[10] == 0:
        raise ValueError("SNTP answer has a zero transmit timestamp")
    return SntpSample(
        mode=first & 0x7,
        stratum=stratum,
        t1=t1,
        t2=from_ntp(words[7], words[8]),
        t3=from_ntp(words[9], words[10]),
        t4=t4,
    )


def sntp_query(host: str, port: int, timeout: float = 1.0) -> SntpSample:
    """One real SNTP (mode 3) exchange with the server."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        t1 = time.time()
        sock.sendto(client_request(t1), (host, port))
        data, _ = sock.recvfrom(512)
        t4 = time.time()
    return parse_response(data, t1, t4)


def serves_time(server: NtpServer) -> bool:
    sample = sntp_query(server.host, server.port, timeout=0.2)
    return sample.mode == MODE_SERVER


def render_config(base: Path, port: int) -> str:
    return (
        f"port {port}\n"
        f"bindaddress {HOST}\n"
        f"allow {HOST}\n"
        "local stratum 8\n"
        "cmdport 0\n"
        f"pidfile {base / 'chronyd.pid'}\n"
        f"driftfile {base / 'chrony.drift'}\n"
    )


def give_to_chrony_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(CHRONY_USER)
    except KeyError:
        return
    os.chown(path, entry.pw_uid, entry.pw_gid)


def start_ntp(
    run_dir: Path,
    *,
    offset_seconds: float = 0.0,
    port: int | None = None,
    ready_timeout: float = 10.0,
) -> tuple[ServiceProcess, NtpServer]:
    """chronyd on a free loopback UDP port, serving the host clock plus ``offset_seconds``.

    A port that another process bound between its choice and chronyd's bind is seen in the
    log at once (chronyd keeps running without its socket) and the start moves to a fresh
    port, at most ``PORT_ATTEMPTS`` times; a port the caller named is not changed.
    """
    attempts = 1 if port else PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return _start_on(run_dir, offset_seconds, port or free_udp_port(), ready_timeout)
        except PortTaken:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


# chronyd's line when it cannot bind its server socket (it does not exit).
SOCKET_FAILURE = "Could not open NTP socket"
PORT_ATTEMPTS = 3


class PortTaken(ServiceStartError):
    """chronyd could not bind the chosen port: something else took it after it was chosen."""


def _start_on(
    run_dir: Path, offset_seconds: float, port: int, ready_timeout: float
) -> tuple[ServiceProcess, NtpServer]:
    base = run_dir / "ntp"
    base.mkdir(parents=True, exist_ok=True)
    give_to_chrony_user(base)
    config_path = base / "chrony.conf"
    config_path.write_text(render_config(base, port))
    server = NtpServer(HOST, port, config_path, offset_seconds)
    argv = [CHRONYD_BIN, "-x", "-d", "-f", str(config_path)]
    if offset_seconds:
        argv = [FAKETIME_BIN, "-f", f"{offset_seconds:+.0f}s", *argv]
    log_path = run_dir / "logs" / "ntp.log"

    def ready() -> bool:
        if SOCKET_FAILURE in _text(log_path):
            raise PortTaken("ntp", argv, f"udp port {port} was taken", tail(log_path))
        return serves_time(server)

    proc = ServiceProcess("ntp", argv, log_path=log_path, ready=ready, ready_timeout=ready_timeout)
    _rotate(log_path)
    proc.start()
    return proc, server


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _rotate(log_path: Path) -> None:
    """Keep a failed attempt's log beside the next one's, so the retry starts with a clean log."""
    if SOCKET_FAILURE in _text(log_path):
        log_path.replace(log_path.with_suffix(f".{time.monotonic_ns()}.log"))


def free_udp_port(host: str = HOST, attempts: int = 20) -> int:
    """A port from ``free_port`` (which asks about TCP) that is also free for UDP."""
    for _ in range(attempts):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free UDP port on {host} after {attempts} attempts")
