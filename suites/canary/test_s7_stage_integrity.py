"""S7 stage integrity: the stage is in the plan, no rollback trigger was pending or firing in
its window, the absent-signal alert stayed quiet (quiet triggers over missing data prove
nothing), and the previous stage's bundle, or for the first stage the GO/NO-GO run's, is GO
and verifies. A stage that skipped its predecessor is not a canary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_spark import (
    CanaryPlan,
    CheckEvidence,
    Reach,
    SparkConfig,
    Stage,
    find_bundle,
    load_triggers,
)
from pytest_spark.probes import stage_metrics
from suites.canary_window import Window

pytestmark = pytest.mark.canary("S7")


def test_stage_in_the_plan(
    canary_plan: CanaryPlan, stage_percent: int, spark_evidence: CheckEvidence
) -> None:
    planned = canary_plan.percents
    spark_evidence.check(
        "stage_not_in_plan",
        0 if stage_percent in planned else 1,
        limit=1,
        unit="stages",
        why=f"stage {stage_percent} % is not one of the plan's stages {list(planned)}",
    )


def test_no_rollback_trigger_in_the_window(
    reach: Reach,
    canary_plan: CanaryPlan,
    ops_dir: Path,
    stage_window: Window,
    spark_evidence: CheckEvidence,
) -> None:
    if stage_window.problem is not None:
        spark_evidence.inconclusive(stage_window.problem)
    spark_evidence.note(stage_window.describe())
    triggers = load_triggers(ops_dir)
    aborting = {
        triggers.trigger[t].alert: t for t in canary_plan.abort.triggers if t in triggers.trigger
    }
    absent = canary_plan.abort.absent_signal_alert
    with reach("prometheus_url") as [url]:
        seen = stage_metrics.alerts_in_window(
            url, [*aborting, absent], stage_window.end, stage_window.seconds
        )
    pending = [s.describe() for s in seen if s.alert in aborting]
    blind = [s.describe() for s in seen if s.alert == absent]
    spark_evidence.check(
        "triggers_pending_or_firing",
        len(pending),
        limit=1,
        unit="alerts",
        why=f"rollback triggers were active during the stage: {', '.join(pending)}; a stage "
        "is promoted only when none was even pending",
    )
    spark_evidence.check(
        "absent_signal_alerts",
        len(blind),
        limit=1,
        unit="alerts",
        why=f"{absent} was active during the stage: the API's signals were missing, so quiet "
        "triggers prove nothing",
    )


def test_previous_stage_is_go(
    canary_plan: CanaryPlan,
    stage_percent: int,
    spark_config: SparkConfig,
    signer_public_pem: bytes | None,
    spark_evidence: CheckEvidence,
) -> None:
    previous: Stage | None = canary_plan.previous(stage_percent)
    if previous is None:
        gate, stage = "go_nogo", None
        wanted = f"the GO/NO-GO gate of release {spark_config.release}"
    else:
        gate, stage = "canary", previous.percent
        wanted = f"canary stage {previous.percent} % of release {spark_config.release}"
    search = find_bundle(
        spark_config.evidence_dir / spark_config.release,
        gate=gate,
        stage=stage,
        public_pem=signer_public_pem,
        checklist=spark_config.checklist_path,
    )
    found = search.found
    if found is not None:
        spark_evidence.note(f"previous: {found.path.name} ({found.verdict}), verified")
    problem = (
        search.why_none(wanted)
        if found is None
        else (None if found.go else f"{wanted} ended {found.verdict} ({found.path})")
    )
    spark_evidence.check(
        "previous_stage_not_go",
        0 if problem is None else 1,
        limit=1,
        unit="bundles",
        why=f"{problem}: a stage follows a GO of the one before it, whose bundle verifies",
    )
