"""What the canary gate reads: the target's canary plan, the stage under judgement, the
stage's window (driven with traffic on the sandbox), and every stage metric over it per track.

``pytest -m canary --spark-stage N [--spark-stage-since T]``: the window is the stage's
planned duration ending now; on the embedded sandbox the gate sends the traffic itself over
the plan's shortened window. Everything is read once per run, then each item judges its part.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_spark import (
    CanaryPlan,
    OpsFileError,
    SigningKeyError,
    SparkConfig,
    Stage,
    Target,
    TargetConfigError,
    load_plan,
    load_signing_key,
)
from suites import canary_window
from suites.canary_window import Readings, Window


@pytest.fixture(scope="session")
def canary_plan(ops_dir: Path) -> CanaryPlan:
    """The release's ``canary-plan.toml`` as the target deploys it."""
    try:
        return load_plan(ops_dir)
    except OpsFileError as exc:
        pytest.fail(f"the canary plan cannot be read: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def stage_percent(spark_config: SparkConfig) -> int:
    if spark_config.stage is None:
        pytest.fail(
            "the canary gate judges one stage: pass --spark-stage N (a stage of "
            "ops/canary-plan.toml)",
            pytrace=False,
        )
    return spark_config.stage


@pytest.fixture(scope="session")
def stage_window(
    spark_target: Target,
    spark_config: SparkConfig,
    canary_plan: CanaryPlan,
    stage_percent: int,
) -> Window:
    """The window the stage is judged over: traffic the gate sends on the sandbox, the
    planned duration ending now on a real target."""
    stage = canary_plan.stage(stage_percent)
    if stage is None:  # S7 names it; the metrics have no window to read
        return canary_window.Window(0, 0, 0, False, problem=f"stage {stage_percent} % not planned")
    if spark_target.is_sandbox:
        return canary_window.sandbox_window(spark_target, canary_plan, stage_percent)
    return canary_window.deployment_window(stage.duration_s, spark_config.stage_since, time.time())


@pytest.fixture(scope="session")
def stage(canary_plan: CanaryPlan, stage_percent: int) -> Stage | None:
    return canary_plan.stage(stage_percent)


@pytest.fixture(scope="session")
def track_selectors(spark_target: Target) -> dict[str, str]:
    try:
        return canary_window.selectors(spark_target)
    except TargetConfigError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def stage_readings(
    spark_target: Target,
    canary_plan: CanaryPlan,
    stage_window: Window,
    track_selectors: dict[str, str],
) -> Readings | None:
    """S1–S6 on each track over the stage's window; None when the window cannot be judged."""
    if stage_window.problem is not None:
        return None
    url = spark_target.require("prometheus_url")
    return canary_window.read_metrics(url, canary_plan, stage_window, track_selectors)


@pytest.fixture(scope="session")
def signer_public_pem(spark_config: SparkConfig) -> bytes | None:
    """The release key's public half when the run is release-signed: earlier bundles must
    be signed by it. None when dev-signed (sandbox), where a bundle's own key proves
    integrity only."""
    if not spark_config.signing_key:
        return None
    try:
        return load_signing_key(spark_config.signing_key, spark_config.rootdir).public_pem
    except SigningKeyError as exc:
        pytest.fail(str(exc), pytrace=False)
