"""``spark-gate rollback`` against a running sandbox, as an operator types it: the traffic moves
to the previous release and the signed record says so; a second rollback is refused before
anything moves; a deployer that does not switch fails the confirmation. Each one notifies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_spark import rollback as rollback_module
from pytest_spark.probes.serving import serving_version
from pytest_spark.rollback import Deployment, Rollback, RollbackRequest
from pytest_spark.signing import load_signing_key
from spark_sandbox.endpoints import Endpoints
from spark_sandbox.plugin import newest_migration
from spark_sandbox.state import find_running

REPO = Path(__file__).resolve().parents[2]


def _command(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPARK_SANDBOX_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "pytest_spark.cli", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Endpoints, Path]]:
    """A sandbox left running by `spark-gate sandbox up`, with a state dir of its own."""
    state_dir = tmp_path_factory.mktemp("state")
    root = Path(tempfile.mkdtemp(prefix="spark-sandbox-rollback-"))
    root.chmod(0o755)  # the postgres user must reach the run root
    try:
        up = _command("sandbox", "up", "--run-root", str(root), state_dir=state_dir)
        assert up.returncode == 0, up.stderr
        endpoints = find_running(state_dir)
        assert endpoints is not None
        yield endpoints, state_dir
    finally:
        _command("sandbox", "down", state_dir=state_dir)
        shutil.rmtree(root, ignore_errors=True)


def _record(evidence: Path) -> tuple[Path, dict[str, object]]:
    [folder] = sorted((evidence / "v1").glob("rollback-*"))[-1:]
    [record] = folder.glob("rollback_*.json")
    return folder, json.loads(record.read_text())


def _messages(endpoints: Endpoints) -> list[str]:
    return [m["text"] for m in httpx.get(endpoints.rollback_webhook_url, timeout=5).json()]


def test_a_deployer_that_does_not_switch_fails_the_confirmation(
    running: tuple[Endpoints, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints, _ = running
    # A real target's deployer is a command; this one exits 0 and moves nothing.
    deployment = Deployment(
        name="sandbox", api_url=endpoints.api_url, prometheus_url=endpoints.prometheus_url,
        stable_api_url=endpoints.stable_api_url, webhook_url=endpoints.rollback_webhook_url,
        command="true", migrations_dir=str(endpoints.migrations_dir),
        previous_release_migration=newest_migration(endpoints.migrations_dir),
    )  # fmt: skip
    monkeypatch.setattr(rollback_module, "CONFIRM_TIMEOUT_S", 3.0)
    request = RollbackRequest("v1", "p95_breach", 25)
    run = Rollback(request, deployment, REPO / "ops", tmp_path, load_signing_key(None, REPO)).run()
    assert not run.ok
    confirmation = next(s for s in run.steps if s.name == "confirmation")
    assert not confirmation.ok and "not confirmed by the deadline" in confirmation.detail
    assert f"serving {run.serving}" in confirmation.detail  # still the release rolled back
    assert run.recovery_s is None
    folder, record = _record(tmp_path)
    assert record["outcome"] == "FAILED"
    assert _command("verify", str(folder), state_dir=tmp_path).returncode == 0
    assert any("p95_breach" in m and "FAILED" in m for m in _messages(endpoints))


def test_rollback_moves_the_traffic_to_the_previous_release(
    running: tuple[Endpoints, Path], tmp_path: Path
) -> None:
    endpoints, state_dir = running
    before = serving_version(endpoints.api_url)
    previous = serving_version(endpoints.stable_api_url)
    assert before and previous and before != previous
    evidence = tmp_path / "reports"
    args = ("rollback", "--release", "v1", "--reason", "t02_5xx", "--stage", "25",
            "--evidence-dir", str(evidence))  # fmt: skip
    done = _command(*args, state_dir=state_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[3/7] switch" in done.stdout  # progress, step by step
    assert serving_version(endpoints.api_url) == previous
    folder, record = _record(evidence)
    assert record["outcome"] == "ROLLED BACK"
    assert (record["from_version"], record["to_version"]) == (before, previous)
    assert isinstance(record["recovery_s"], float) and record["recovery_s"] >= 0
    names = {p.name for p in folder.iterdir()}
    assert {f"metrics_before_rollback_{folder.name[9:]}.txt",
            f"metrics_after_rollback_{folder.name[9:]}.txt"} <= names  # fmt: skip
    verified = _command("verify", str(folder), state_dir=state_dir)
    assert verified.returncode == 0, verified.stderr
    assert "gate rollback, verdict ROLLED BACK" in verified.stdout
    assert any("t02_5xx" in m and "ROLLED BACK" in m for m in _messages(endpoints))

    # Once rolled back there is nothing left to roll back to: refused before anything moves.
    again = _command(*args, state_dir=state_dir)
    assert again.returncode == 1
    assert f"the previous release {previous} is what serves now" in again.stdout
    assert "switch: FAILED (0.0 s) not run: the pre-checks failed" in again.stdout


def test_rollback_needs_a_target_and_one_word_of_reason(tmp_path: Path) -> None:
    empty = tmp_path / "no-sandbox"
    empty.mkdir()
    args = ("rollback", "--release", "v1", "--stage", "25")
    no_target = _command(*args, "--reason", "drill", state_dir=empty)
    assert no_target.returncode == 2 and "pass --spark-target FILE" in no_target.stderr
    sentence = _command(*args, "--reason", "it was slow", state_dir=empty)
    assert sentence.returncode == 2 and "one word" in sentence.stderr
