"""The chaos gate refuses a target it may not fault before it sends anything: a deployment on
other hosts whose target file does not opt in ([chaos] chaos_allowed = true, proxies named).
A gate run as CI would start it, against a target file that names a staging deployment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gate_runner import REPO, read_bundle

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
