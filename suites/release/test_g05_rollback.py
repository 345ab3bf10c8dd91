"""G05 Rollback readiness: a dry run of ``spark-gate rollback`` for this release, against the
target, completes every step but the switch within five minutes.

The dry run is the command itself (:mod:`pytest_spark.rollback`), not a model of it: its
pre-checks read the serving version and the previous release from the deployment, check that
the deployer would reach that release and that a notification webhook is set; it takes both
snapshots from the target's Prometheus, posts its notification (marked as a dry run) and signs
its record. The record and the snapshots are attached to this run's evidence. Thresholds:
``ops/go_nogo.toml`` [G05]; the command and its keys: ``docs/rollback.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_spark import (
    CheckEvidence,
    Deployment,
    Rollback,
    RollbackRequest,
    SparkConfig,
    Target,
    load_plan,
    load_signing_key,
)
from suites.limits import Limits

pytestmark = pytest.mark.go_nogo("G05")


def test_rollback_dry_run_completes_with_snapshots(
    spark_target: Target,
    spark_config: SparkConfig,
    ops_dir: Path,
    spark_evidence: CheckEvidence,
    limits: Limits,
    tmp_path: Path,
) -> None:
    g05 = limits.g05
    # The first stage: where a rollback of a fresh release would start from.
    stage = load_plan(ops_dir).stages[0].percent
    request = RollbackRequest(spark_config.release, "g05_rehearsal", stage, dry_run=True)
    # The record is signed with a key of its own; the gate's bundle signs the copy kept here.
    key = load_signing_key(None, tmp_path)
    run = Rollback(request, Deployment.of(spark_target), ops_dir, tmp_path, key).run()
    for step in run.steps:
        spark_evidence.note(step.line())
    if run.record_dir is not None:
        for path in sorted(run.record_dir.glob("*.txt")):
            spark_evidence.attach(path.name, path)
    spark_evidence.check(
        "rollback_precheck_problems",
        len(run.precheck_problems),
        limit=g05.rollback_precheck_problems,
        unit="problems",
        why="; ".join(run.precheck_problems)
        + ": a rollback that cannot start, or would not land on the previous release, is no "
        "rollback path",
    )
    spark_evidence.check(
        "rollback_snapshot_problems",
        len(run.snapshot_problems),
        limit=g05.rollback_snapshot_problems,
        unit="problems",
        why="; ".join(run.snapshot_problems)
        + ": without both snapshots nobody can tell what the rollback changed",
    )
    failed = [s.line() for s in run.steps if not s.ok]
    spark_evidence.check(
        "rollback_steps_failed",
        len(failed),
        limit=g05.rollback_steps_failed,
        unit="steps",
        why="; ".join(failed) + ": every step but the switch must pass in a dry run",
    )
    spark_evidence.check(
        "rollback_dry_run_s",
        run.seconds,
        limit=g05.rollback_dry_run_s,
        unit="s",
        why=f"the dry run must finish every step within {g05.rollback_dry_run_s:g} s",
    )
