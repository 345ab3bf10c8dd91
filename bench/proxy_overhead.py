"""What the fault proxy costs with no toxic: added latency per round trip and bulk throughput.

    .venv/bin/python bench/proxy_overhead.py [--round-trips 2000] [--megabytes 200] [--repeats 5]

The upstream (echo for round trips, sink for bulk) runs in its own process, like the real
services behind the proxy, and is measured once directly and once through the proxy. Each
figure is the median over the repeats. Targets: <= 1 ms p50 added per round trip and
>= 0.5 of direct throughput. Toxiproxy publishes < 100 us added latency and ~1 GB/s.
"""

from __future__ import annotations

import argparse
import os
import socket
import socketserver
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from pytest_spark.probes.toxiproxy import ToxiproxyClient
from spark_sandbox.services.ports import free_port, is_listening
from spark_sandbox.services.process import ServiceProcess

REQUEST = b"O" * 63 + b"\n"  # about the size of a small order request
BULK_CHUNK = 256 * 1024
IO_TIMEOUT = 30.0


class UpstreamHandler(socketserver.BaseRequestHandler):
    """First byte picks the mode: E echoes each read, S counts bytes until EOF and answers."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(IO_TIMEOUT)
        mode = sock.recv(1)
        if mode == b"E":
            while data := sock.recv(65536):
                sock.sendall(data)
        elif mode == b"S":
            received = 0
            buffer = bytearray(BULK_CHUNK)
            while count := sock.recv_into(buffer):
                received += count
            sock.sendall(struct.pack("!Q", received))


class UpstreamServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_upstream(port: int) -> None:
    with UpstreamServer(("127.0.0.1", port), UpstreamHandler) as server:
        server.serve_forever(poll_interval=0.1)


def round_trip_latencies(port: int, count: int) -> list[float]:
    """Seconds per request/response on one connection, after a short warm-up."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"E")
        samples = []
        for i in range(count + 100):
            started = time.perf_counter()
            sock.sendall(REQUEST)
            received = 0
            while received < len(REQUEST):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("upstream closed during the round trips")
                received += len(chunk)
            if i >= 100:
                samples.append(time.perf_counter() - started)
        return samples


def bulk_throughput(port: int, megabytes: int) -> float:
    """Bytes per second for ``megabytes`` MB sent upstream, until the sink confirms the count."""
    total = megabytes * 1_000_000
    payload = memoryview(b"\x5a" * BULK_CHUNK)
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(b"S")
        started = time.perf_counter()
        sent = 0
        while sent < total:
            piece = payload[: min(BULK_CHUNK, total - sent)]
            sock.sendall(piece)
            sent += len(piece)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 8:
            chunk = sock.recv(8 - len(answer))
            if not chunk:
                raise ConnectionError("sink closed before confirming the byte count")
            answer += chunk
        elapsed = time.perf_counter() - started
    (confirmed,) = struct.unpack("!Q", answer)
    if confirmed != total:
        raise RuntimeError(f"sink received {confirmed} bytes, sent {total}")
    return total / elapsed


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process (Linux /proc); 0.0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return 0

    with tempfile.TemporaryDirectory(prefix="proxy-overhead-") as logs:
        results = measure(Path(logs), args.round_trips, args.megabytes, args.repeats)
    return report(results, args.round_trips, args.megabytes, args.repeats)


def measure(
    logs: Path, round_trips: int, megabytes: int, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """p50/p95 round-trip seconds and bulk bytes/s, per repeat, direct and through the proxy."""
    upstream_port, api_port = free_port(), free_port()
    upstream = ServiceProcess(
        "bench-upstream",
        [sys.executable, __file__, "--serve-upstream", str(upstream_port)],
        log_path=logs / "upstream.log",
        ready=lambda: is_listening(upstream_port),
    )
    fault_proxy = ServiceProcess(
        "chaosproxy",
        [
            sys.executable,
            "-m",
            "spark_sandbox.chaosproxy",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
        ],
        log_path=logs / "chaosproxy.log",
        ready=lambda: is_listening(api_port),
    )
    try:
        upstream.start()
        fault_proxy.start()
        with ToxiproxyClient(f"http://127.0.0.1:{api_port}") as client:
            proxy_port = client.create_proxy("bench", f"127.0.0.1:{upstream_port}").listen_port
        results: dict[str, dict[str, list[float]]] = {
            "direct": {"p50": [], "p95": [], "bps": [], "cpu": []},
            "proxy": {"p50": [], "p95": [], "bps": [], "cpu": []},
        }
        for _ in range(repeats):
            for label, port in (("direct", upstream_port), ("proxy", proxy_port)):
                samples = round_trip_latencies(port, round_trips)
                results[label]["p50"].append(percentile(samples, 0.50))
                results[label]["p95"].append(percentile(samples, 0.95))
                cpu_before = cpu_seconds(fault_proxy.pid)
                results[label]["bps"].append(bulk_throughput(port, megabytes))
                # The proxy's CPU per MB does not depend on what else the machine is doing.
                results[label]["cpu"].append(cpu_seconds(fault_proxy.pid) - cpu_before)
    finally:
        fault_proxy.stop()
        upstream.stop()
    return results


def report(
    results: dict[str, dict[str, list[float]]], round_trips: int, megabytes: int, repeats: int
) -> int:
    """Print the table; exit code 0 when both targets are met."""
    median = {
        label: {key: statistics.median(values) for key, values in figures.items()}
        for label, figures in results.items()
    }
    direct, proxied = median["direct"], median["proxy"]
    added_p50 = (proxied["p50"] - direct["p50"]) * 1e6
    added_p95 = (proxied["p95"] - direct["p95"]) * 1e6
    ratio = proxied["bps"] / direct["bps"]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"fault proxy overhead, no toxics: {round_trips} round trips x {repeats}, "
        f"{megabytes} MB bulk x {repeats}, medians; load average {load} on "
        f"{os.cpu_count()} cores"
    )
    print(f"{'':24}{'direct':>12}{'proxy':>12}{'added':>12}   Toxiproxy published")
    print(
        f"{'round trip p50 (us)':24}{direct['p50'] * 1e6:12.1f}{proxied['p50'] * 1e6:12.1f}"
        f"{added_p50:12.1f}   < 100 us added"
    )
    print(
        f"{'round trip p95 (us)':24}{direct['p95'] * 1e6:12.1f}{proxied['p95'] * 1e6:12.1f}"
        f"{added_p95:12.1f}"
    )
    print(
        f"{'bulk (MB/s)':24}{direct['bps'] / 1e6:12.0f}{proxied['bps'] / 1e6:12.0f}"
        f"{'ratio ' + format(ratio, '.2f'):>12}   ~1000 MB/s"
    )
    if proxied["cpu"] > 0:
        capacity = megabytes / proxied["cpu"]
        print(f"{'proxy CPU (MB per s)':24}{'':12}{capacity:12.0f}{'':12}   (the proxy alone)")
    target_met = added_p50 <= 1000 and ratio >= 0.5
    verdict = "met" if target_met else "MISSED"
    print(f"targets (<= 1000 us p50 added, >= 0.50 throughput ratio): {verdict}")
    return 0 if target_met else 1


if __name__ == "__main__":
    sys.exit(main())
