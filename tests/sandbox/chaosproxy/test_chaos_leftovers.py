"""A chaos run's fault against the real fault proxy, from another process: Ctrl-C removes it
on the way out; SIGKILL cannot, so the next run's sweep (and ``sandbox down``) removes it and
says which it removed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from pytest_spark.probes.chaos import FaultSpec, Journal, Scenario
from pytest_spark.probes.toxiproxy import Proxy, ToxiproxyClient
from spark_sandbox.cli import sweep_chaos_toxics

STARTED_S = 20.0
# A chaos run in miniature: inject C1's fault, say so, then wait inside the fault.
RUN = """
import sys, time
from pytest_spark.probes.chaos import FaultSpec, Journal, Scenario
from pytest_spark.probes.toxiproxy import ToxiproxyClient
url, proxy = sys.argv[1], sys.argv[2]
scenario = Scenario(ToxiproxyClient(url), Journal("C1", "C1", "a chaos run"))
with scenario.fault(FaultSpec("C1", proxy, "latency", {"latency": 1500, "jitter": 0})):
    print("injected", flush=True)
    time.sleep(60)
"""


def start_run(fault_proxy_url: str, proxy: Proxy) -> subprocess.Popen[str]:
    run = subprocess.Popen(
        [sys.executable, "-c", RUN, fault_proxy_url, proxy.name],
        stdout=subprocess.PIPE,
        text=True,
        # A child started from a test may inherit SIGINT ignored; Ctrl-C must reach it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert run.stdout is not None
    line = run.stdout.readline()
    assert line.strip() == "injected", f"the run did not inject its fault: {line!r}"
    return run


def names(toxiproxy: ToxiproxyClient, proxy: Proxy) -> list[str]:
    return [t.name for t in toxiproxy.toxics(proxy.name)]


def test_ctrl_c_removes_the_fault(
    fault_proxy_url: str, toxiproxy: ToxiproxyClient, echo_proxy: Proxy
) -> None:
    run = start_run(fault_proxy_url, echo_proxy)
    assert names(toxiproxy, echo_proxy) == ["spark-chaos-c1-latency"]
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=STARTED_S) != 0
    assert names(toxiproxy, echo_proxy) == []


@pytest.mark.parametrize("sweeper", ["next run", "sandbox down"])
def test_a_killed_runs_fault_is_removed_by_the_next_run(
    fault_proxy_url: str, toxiproxy: ToxiproxyClient, echo_proxy: Proxy, sweeper: str
) -> None:
    run = start_run(fault_proxy_url, echo_proxy)
    run.kill()
    run.wait(timeout=STARTED_S)
    time.sleep(0.2)
    assert names(toxiproxy, echo_proxy) == ["spark-chaos-c1-latency"], "SIGKILL removed it?"
    # Someone else's toxic on the same proxy is not the gate's to remove.
    toxiproxy.add_toxic(echo_proxy.name, "latency", {"latency": 1}, name="operator-latency")
    expected = [f"spark-chaos-c1-latency (latency) on proxy {echo_proxy.name}"]
    if sweeper == "next run":
        scenario = Scenario(toxiproxy, Journal("C1", "C1", "the next run"))
        assert scenario.sweep() == expected
        journal = json.loads(scenario.journal.dumps())
        assert journal["rollbacks"][0]["output"] == expected
        assert "left behind" in journal["notes"][0]
    else:
        assert sweep_chaos_toxics({"toxiproxy_url": fault_proxy_url}) == expected
    assert names(toxiproxy, echo_proxy) == ["operator-latency"]
    # The scenario then injects its own fault as usual.
    spec = FaultSpec("C1", echo_proxy.name, "latency", {"latency": 10, "jitter": 0})
    with Scenario(toxiproxy, Journal("C1", "C1", "h")).fault(spec) as read_back:
        assert read_back
    assert names(toxiproxy, echo_proxy) == ["operator-latency"]
