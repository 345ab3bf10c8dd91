"""Every toxic has the observable effect Toxiproxy documents (lower time bounds only)."""

from __future__ import annotations

import socket
import time

import pytest
from chaosproxy_support import connect, receive_exactly, receive_until_closed, round_trip

from pytest_spark.probes.toxiproxy import Proxy, ToxiproxyClient


def test_no_toxic_passes_bytes_unchanged(echo_proxy: Proxy) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    with connect(echo_proxy) as sock:
        assert round_trip(sock, payload) == payload


def test_latency_delays_a_connection_that_was_already_open(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"before") == b"before"
        toxiproxy.add_toxic(echo_proxy.name, "latency", {"latency": 250})
        started = time.monotonic()
        assert round_trip(sock, b"order") == b"order"
        assert time.monotonic() - started >= 0.25


def test_latency_applies_to_new_connections_in_both_streams(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "latency", {"latency": 150}, stream="upstream")
    toxiproxy.add_toxic(echo_proxy.name, "latency", {"latency": 150}, stream="downstream")
    with connect(echo_proxy) as sock:
        started = time.monotonic()
        assert round_trip(sock, b"quote") == b"quote"
        assert time.monotonic() - started >= 0.3


def test_bandwidth_slows_a_bulk_transfer(toxiproxy: ToxiproxyClient, echo_proxy: Proxy) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "bandwidth", {"rate": 100})  # 100 KB/s downstream
    payload = b"x" * 60_000
    with connect(echo_proxy) as sock:
        started = time.monotonic()
        assert round_trip(sock, payload) == payload
        assert time.monotonic() - started >= 0.5


def test_timeout_stalls_data_then_closes_after_the_timeout(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "timeout", {"timeout": 300})
    started = time.monotonic()
    with connect(echo_proxy) as sock:
        sock.sendall(b"market order")
        assert receive_until_closed(sock) == b""  # nothing came through, then FIN
    assert time.monotonic() - started >= 0.3


def test_timeout_zero_stalls_until_the_toxic_is_removed(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "timeout", {"timeout": 0})
    with connect(echo_proxy) as sock:
        sock.sendall(b"dropped")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        toxiproxy.remove_toxic(echo_proxy.name, "timeout_downstream")
        sock.settimeout(5.0)
        # Toxiproxy drops what arrived during the stall; the connection itself survives.
        assert round_trip(sock, b"resumed") == b"resumed"


def test_reset_peer_gives_connection_reset(toxiproxy: ToxiproxyClient, echo_proxy: Proxy) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "reset_peer", {"timeout": 0})
    with connect(echo_proxy) as sock:
        sock.sendall(b"cancel")
        with pytest.raises(ConnectionResetError):
            receive_until_closed(sock)


def test_reset_peer_waits_its_timeout_after_data(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "reset_peer", {"timeout": 200}, stream="upstream")
    with connect(echo_proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"cancel")
        with pytest.raises(ConnectionResetError):
            receive_until_closed(sock)
        assert time.monotonic() - started >= 0.2


def test_slow_close_delays_the_close(toxiproxy: ToxiproxyClient, echo_proxy: Proxy) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "slow_close", {"delay": 300})
    with connect(echo_proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"logout")
        sock.shutdown(socket.SHUT_WR)
        assert receive_until_closed(sock) == b"logout"
        assert time.monotonic() - started >= 0.3


def test_limit_data_closes_after_that_many_bytes(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "limit_data", {"bytes": 10})
    with connect(echo_proxy) as sock:
        sock.sendall(b"0123456789abcdefghij" * 5)
        assert receive_until_closed(sock) == b"0123456789"


def test_limit_data_counts_across_chunks_on_the_upstream_stream(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "limit_data", {"bytes": 7}, stream="upstream")
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"abcd") == b"abcd"
        sock.sendall(b"efghij")
        # The proxy closes once the 7th byte went upstream; the echo of it may not make it back.
        echoed = receive_until_closed(sock)
        assert b"efg".startswith(echoed)


def test_toxicity_zero_never_applies(toxiproxy: ToxiproxyClient, echo_proxy: Proxy) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "timeout", {"timeout": 0}, toxicity=0.0)
    toxiproxy.add_toxic(echo_proxy.name, "limit_data", {"bytes": 1}, toxicity=0.0)
    for _ in range(20):
        with connect(echo_proxy) as sock:
            assert round_trip(sock, b"fill") == b"fill"


def test_toxicity_is_drawn_per_connection(toxiproxy: ToxiproxyClient, echo_proxy: Proxy) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "limit_data", {"bytes": 1}, toxicity=0.5)
    outcomes = set()
    for _ in range(64):  # both outcomes missing has probability 2 * 0.5**64
        with connect(echo_proxy) as sock:
            sock.sendall(b"ab")
            outcomes.add(receive_exactly(sock, 2))
        if len(outcomes) == 2:
            break
    assert outcomes == {b"a", b"ab"}


def test_removed_toxic_stops_applying_to_open_connections(
    toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    toxiproxy.add_toxic(echo_proxy.name, "limit_data", {"bytes": 1000})
    with connect(echo_proxy) as sock:
        assert round_trip(sock, b"a" * 600) == b"a" * 600
        toxiproxy.remove_toxic(echo_proxy.name, "limit_data_downstream")
        assert round_trip(sock, b"b" * 600) == b"b" * 600
