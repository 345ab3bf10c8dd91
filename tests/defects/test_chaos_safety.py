"""The chaos gate's safety: it refuses a target it may not fault before it sends anything (a
deployment on other hosts whose target file does not opt in: [chaos] chaos_allowed = true,
proxies named), and a scenario that finds the target unhealthy before its fault injects
nothing and is INCONCLUSIVE, neither FAILED nor PASSED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gate_runner import REPO, gate, read_bundle

STAGING = """\
[target]
name = "staging"
kind = "deployment"

[endpoints]
api_url = "https://spark-staging.internal.example"
toxiproxy_url = "http://toxiproxy.staging.internal.example:8474"

[secrets]
postgres_dsn = "SPARK_TEST_STAGING_POSTGRES_DSN"
"""


def test_a_remote_target_without_opt_in_is_refused_before_any_traffic(tmp_path: Path) -> None:
    target = tmp_path / "staging.toml"
    target.write_text(STAGING)
    env = {
        **os.environ,
        "SPARK_TEST_STAGING_POSTGRES_DSN": "host=db.staging.internal.example dbname=spark",
        "SPARK_SANDBOX_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    argv = [sys.executable, "-m", "pytest", "suites/chaos", "-m", "chaos",
            "--spark-target", str(target), "--spark-evidence-dir", str(tmp_path),
            "-p", "no:cacheprovider"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.count("refusing to inject faults") >= 2, output
    assert "chaos_allowed = true" in output, output
    # Refused by the interlock, not by a connection that was tried and failed.
    assert "cannot reach the target" not in output, output
    verdict, _ = read_bundle(tmp_path)
    for item in ("C1", "C4"):
        assert verdict["items"][item]["status"] in ("ERROR", "FAILED"), verdict["items"][item]


# Alone on the machine: the steady state judges p95.
@pytest.mark.solo
def test_a_scenario_that_starts_unhealthy_is_inconclusive_and_injects_nothing(
    tmp_path: Path,
) -> None:
    # Every order on the API behind the fault proxy takes 300 ms: p95 over the steady state's
    # 200 ms before any fault.
    run = gate(["suites/chaos"], "chaos", "slow_canary_orders", tmp_path)
    assert run.code == 1, run.tail
    for item in ("C1", "C4"):
        assert run.items[item]["status"] == "INCONCLUSIVE", f"{item}: {run.items[item]}"
        [journal] = run.bundle.rglob(f"{item.lower()}_journal.json")
        doc = json.loads(journal.read_text())
        assert doc["status"] == "aborted", doc
        assert doc["steady_states"]["before"]["steady_state_met"] is False, doc
        assert [a["activity"]["name"] for a in doc["run"]] == ["steady state before"], doc
