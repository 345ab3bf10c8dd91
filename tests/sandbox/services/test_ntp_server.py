from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from services_support import assert_stopped

from spark_sandbox.defects import Blueprint
from spark_sandbox.services import ntp as ntp_module
from spark_sandbox.services.ntp import (
    MODE_SERVER,
    PortTaken,
    client_request,
    free_udp_port,
    parse_response,
    sntp_query,
    start_ntp,
)
from spark_sandbox.services.process import ServiceStartError


def best_of(host: str, port: int, samples: int = 5) -> float:
    """Offset of the minimum-delay sample, as an NTP client would keep."""
    taken = [sntp_query(host, port) for _ in range(samples)]
    return min(taken, key=lambda s: s.delay).offset


def test_packet_round_trip_keeps_timestamps() -> None:
    now = time.time()
    request = bytearray(client_request(now))
    assert request[0] & 0x7 == 3
    request[0] = (request[0] & ~0x7) | MODE_SERVER
    request[32:40] = request[40:48]  # a server that received and sent at T1
    sample = parse_response(bytes(request), now, now)
    assert sample.mode == MODE_SERVER
    assert sample.offset == pytest.approx(0.0, abs=1e-6)


def test_zero_transmit_timestamp_is_rejected() -> None:
    with pytest.raises(ValueError, match="zero transmit"):
        parse_response(bytes(48), 0.0, 0.0)


def test_ntp_serves_host_time_and_stops_clean(run_dir: Path) -> None:
    proc, ntp = start_ntp(run_dir)
    pid = proc.pid
    assert pid is not None
    try:
        sample = sntp_query(ntp.host, ntp.port)
        assert (sample.mode, sample.stratum) == (MODE_SERVER, 8)
        assert best_of(ntp.host, ntp.port) == pytest.approx(0.0, abs=0.5)
    finally:
        proc.stop()
    assert_stopped(pid)
    with pytest.raises(OSError):
        sntp_query(ntp.host, ntp.port, timeout=0.3)


def test_ntp_offset_defect_serves_time_five_seconds_ahead(run_dir: Path) -> None:
    proc, ntp = start_ntp(
        run_dir, offset_seconds=Blueprint.of(["ntp_offset", "no_coep"]).ntp_offset_s
    )
    try:
        assert ntp.offset_seconds == 5.0
        assert best_of(ntp.host, ntp.port) == pytest.approx(5.0, abs=0.5)
    finally:
        proc.stop()


def test_bad_config_is_a_start_error_with_the_log(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ntp_module.render_config
    monkeypatch.setattr(
        ntp_module, "render_config", lambda base, port: original(base, port) + "no_such_option 1\n"
    )
    with pytest.raises(ServiceStartError) as failure:
        start_ntp(run_dir, ready_timeout=3)
    assert failure.value.name == "ntp"
    assert "Invalid directive" in failure.value.log_tail


def test_a_port_taken_after_its_choice_moves_the_start_to_a_fresh_port(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process binds the chosen port first: chronyd logs it and keeps running, so the
    start must notice in the log, not wait out its timeout, and try a fresh port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", free_udp_port()))
        taken = squatter.getsockname()[1]
        with pytest.raises(PortTaken, match=f"udp port {taken} was taken"):
            start_ntp(run_dir, port=taken)  # a named port is never changed
        offered = iter([taken])
        monkeypatch.setattr(
            ntp_module, "free_udp_port", lambda: next(offered, None) or free_udp_port()
        )
        proc, ntp = start_ntp(run_dir)
    try:
        assert ntp.port != taken
        assert sntp_query(ntp.host, ntp.port).mode == MODE_SERVER
    finally:
        proc.stop()
    kept = sorted(p.name for p in (run_dir / "logs").glob("ntp*.log"))
    assert len(kept) == 3, kept  # the two failed attempts' logs and the serving one's
