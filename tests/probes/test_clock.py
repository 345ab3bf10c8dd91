"""B1 probe logic: SNTP formulas and packets, Cristian offsets, sequence grading."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_spark.probes import clock


def test_rfc4330_offset_and_delay() -> None:
    # Server 5 s ahead, 10 ms each way, 1 ms spent inside the server.
    t1, t2, t3, t4 = 1000.000, 1005.010, 1005.011, 1000.021
    assert clock.offset_from_timestamps(t1, t2, t3, t4) == pytest.approx(5.0)
    assert clock.round_trip_delay(t1, t2, t3, t4) == pytest.approx(0.020)


def test_asymmetric_path_shows_up_as_offset_error_of_half_the_asymmetry() -> None:
    # Same clocks, 30 ms out and 10 ms back: SNTP cannot tell, it reports +10 ms.
    t1, t2, t3, t4 = 0.0, 0.030, 0.030, 0.040
    assert clock.offset_from_timestamps(t1, t2, t3, t4) == pytest.approx(0.010)


def test_ntp_era_conversion() -> None:
    assert clock.to_ntp(0.0) == (2_208_988_800, 0)
    seconds, fraction = clock.to_ntp(1_700_000_000.25)
    assert fraction == 2**30
    assert clock.from_ntp(seconds, fraction) == pytest.approx(1_700_000_000.25)


def server_answer(
    request: bytes, receive: float, transmit: float, *, mode: int = 4, stratum: int = 2
) -> bytes:
    """What an SNTP server sends back for ``request``."""
    _, _, _, _, *sent = clock.SNTP_PACKET.unpack(request)
    words = [0] * 11
    words[clock.ORIGINATE], words[clock.ORIGINATE + 1] = sent[9], sent[10]
    words[clock.RECEIVE], words[clock.RECEIVE + 1] = clock.to_ntp(receive)
    words[clock.TRANSMIT], words[clock.TRANSMIT + 1] = clock.to_ntp(transmit)
    return clock.SNTP_PACKET.pack((4 << 3) | mode, stratum, 0, 0, *words)


def test_parse_answer_uses_the_sent_t1() -> None:
    request = clock.sntp_request(1000.0)
    sample = clock.parse_sntp_response(
        "s:123", request, server_answer(request, 1005.01, 1005.011), 1000.021
    )
    assert sample.t1 == pytest.approx(1000.0, abs=1e-6)
    assert sample.offset_ms == pytest.approx(5000.0, abs=0.01)
    assert sample.delay_ms == pytest.approx(20.0, abs=0.01)
    assert sample.stratum == 2


@pytest.mark.parametrize(
    ("answer_kwargs", "message"),
    [({"mode": 3}, "mode 3"), ({"stratum": 0}, "unsynchronised")],
)
def test_unusable_answers_are_refused(answer_kwargs: dict[str, int], message: str) -> None:
    request = clock.sntp_request(1000.0)
    answer = server_answer(request, 1000.0, 1000.0, **answer_kwargs)
    with pytest.raises(clock.ClockProbeError, match=message):
        clock.parse_sntp_response("s:123", request, answer, 1000.0)


def test_answer_to_another_request_is_refused() -> None:
    answer = server_answer(clock.sntp_request(999.0), 1000.0, 1000.0)
    with pytest.raises(clock.ClockProbeError, match="does not echo"):
        clock.parse_sntp_response("s:123", clock.sntp_request(1000.0), answer, 1000.0)


def test_short_answer_is_refused() -> None:
    with pytest.raises(clock.ClockProbeError, match="12 bytes"):
        clock.parse_sntp_response("s:123", clock.sntp_request(1.0), b"\x24" * 12, 1.0)


def test_parse_server() -> None:
    assert clock.parse_server("127.0.0.1:1234") == ("127.0.0.1", 1234)
    assert clock.parse_server("ntp.internal") == ("ntp.internal", 123)
    with pytest.raises(ValueError, match="host:port"):
        clock.parse_server("ntp:abc")


@pytest.fixture
def skewed_sntp_server() -> Iterator[str]:
    """A UDP responder on loopback that answers one request with a clock 5 s ahead."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)

    def answer_once() -> None:
        try:
            request, client = sock.recvfrom(512)
        except OSError:
            return
        now = time.time() + 5.0
        sock.sendto(server_answer(request, now, now), client)

    worker = threading.Thread(target=answer_once, daemon=True)
    worker.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
        worker.join(timeout=6.0)


def test_sntp_query_over_udp(skewed_sntp_server: str) -> None:
    sample = clock.sntp_query(skewed_sntp_server, timeout=3.0)
    assert sample.offset_ms == pytest.approx(5000.0, abs=200.0)


def test_sntp_query_without_answer_names_the_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        server = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(clock.ClockProbeError, match=f"no SNTP answer from {server}"):
            clock.sntp_query(server, timeout=0.2)


def test_cristian_offset_is_against_the_midpoint() -> None:
    sample = clock.cristian_sample("app", 100.0, 102.5, 101.0)
    assert sample.offset_ms == pytest.approx(2000.0)
    assert sample.rtt_ms == pytest.approx(1000.0)
    assert sample.error_ms == pytest.approx(500.0)


def test_best_sample_is_the_shortest_round_trip() -> None:
    samples = [
        clock.cristian_sample("db", 0.0, 0.9, 1.0),
        clock.cristian_sample("db", 0.0, 0.01, 0.02),
        clock.cristian_sample("db", 0.0, 0.3, 0.5),
    ]
    assert clock.best_sample(samples) is samples[1]
    with pytest.raises(clock.ClockProbeError):
        clock.best_sample([])


def seq(
    last: int, called: bool = True, max_id: int | None = None, *, max_value: int = 2**31 - 1
) -> clock.SequenceRow:
    return clock.SequenceRow(
        "public.orders_id_seq", "public.orders.id", last, called, 1, 1, max_value, max_id
    )


@pytest.mark.parametrize(
    ("row", "behind"),
    [
        (seq(1, True, 1003), True),  # setval(seq, 1, true) under explicit ids 1001..1003
        (seq(1003, True, 1003), False),  # next is 1004
        (seq(1002, True, 1003), True),
        (seq(1004, False, 1003), False),  # setval(seq, max+1, false): the documented fix
        (seq(1, False, 1), True),  # never called, but id 1 already taken
        (seq(1, False, None), False),  # empty table
    ],
)
def test_sequence_behind(row: clock.SequenceRow, behind: bool) -> None:
    kinds = [a.kind for a in clock.sequence_anomalies([row], 0.8)]
    assert ("behind" in kinds) is behind


def test_sequence_near_exhaustion() -> None:
    int4 = 2**31 - 1
    assert clock.sequence_anomalies([seq(int(int4 * 0.79), max_id=1)], 0.8) == []
    found = clock.sequence_anomalies([seq(int(int4 * 0.81), max_id=1)], 0.8)
    assert [a.kind for a in found] == ["near_exhaustion"]
    assert "81.0%" in found[0].detail


def test_descending_sequence_is_graded_against_its_minimum() -> None:
    row = clock.SequenceRow("public.down", None, -90, True, -1, -100, -1, None)
    assert row.used_fraction == pytest.approx(0.9)
    assert [a.kind for a in clock.sequence_anomalies([row], 0.8)] == ["near_exhaustion"]


@given(
    theta=st.floats(-10.0, 10.0),
    out=st.floats(0.0, 0.5),
    back=st.floats(0.0, 0.5),
    inside=st.floats(0.0, 0.1),
)
def test_sntp_offset_error_is_half_the_path_asymmetry(
    theta: float, out: float, back: float, inside: float
) -> None:
    """For a server ``theta`` ahead, SNTP reports theta + (out - back) / 2, delay out + back."""
    t1 = 1_000.0
    t2 = t1 + out + theta
    t3 = t2 + inside
    t4 = t3 - theta + back
    assert clock.offset_from_timestamps(t1, t2, t3, t4) == pytest.approx(
        theta + (out - back) / 2, abs=1e-9
    )
    assert clock.round_trip_delay(t1, t2, t3, t4) == pytest.approx(out + back, abs=1e-9)
