"""The seeded defects of a canary stage (S1–S7) and of the items that prepare one (G08, G10),
part of the registry in :mod:`spark_sandbox.defects`.

App defects reach the canary track only: the stable track (the previous release) runs without
them, so each stage metric differs between the tracks.
"""

from __future__ import annotations

from spark_sandbox.defect_kinds import (
    AppDefect,
    Defect,
    OpsFileDefect,
    StableAppDefect,
    breaks_of,
)

CANARY_DEFECTS: tuple[Defect, ...] = (
    # Orders are most of the stage's traffic, so what slows or breaks them shows in the
    # metrics over all traffic routes.
    # p95 above 200 ms from waiting, not working, is also T08's condition (p95 > 0.2 s while
    # the API uses under 0.25 cores): T08 goes pending in the window, and S7 names it too.
    AppDefect(
        name="slow_canary_orders",
        description="POST /api/orders takes 300 ms longer on the canary",
        breaks=breaks_of(S1={"canary_p95_ms"}, S7={"triggers_pending_or_firing"}),
    ),
    AppDefect(
        name="canary_5xx_every_50th",
        description="every 50th order on the canary answers 500",
        breaks=breaks_of(S2={"canary_5xx_ratio"}),
    ),
    # A symbol the stage's traffic does not trade, so its risk blocks do not break S4 too.
    AppDefect(
        name="stale_feed_symbol",
        description="the canary drops every FROTO tick, stale since 60 s before it started",
        breaks=breaks_of(S3={"canary_ws_staleness_s"}),
    ),
    AppDefect(
        name="spurious_risk_blocks",
        description="every 20th order on the canary is refused as a stale-market risk block",
        breaks=breaks_of(S4={"canary_risk_blocks_per_min"}),
    ),
    # A completed key replayed with its own payload answers 409 as if still in flight: the
    # stage's replays become conflicts, and G03's byte-for-byte replay fails. One order in ten
    # is a replay, so the conflict ratio (~9 %) is over T05's 5 % as well: T05 goes pending in
    # the window and S7 names it.
    AppDefect(
        name="replay_answers_409",
        description="a replay of a completed Idempotency-Key answers 409",
        breaks=breaks_of(
            S5={"canary_idempotency_conflict_ratio"},
            S7={"triggers_pending_or_firing"},
            G03={"replay_mismatches"},
        ),
    ),
    AppDefect(
        name="inline_script_csp",
        description="the canary's page carries an inline script its CSP blocks",
        breaks=breaks_of(S6={"canary_csp_violations_over_baseline"}),
    ),
    OpsFileDefect(
        name="trigger_pending_in_stage",
        description="the T01 rule compares against 0 with for: 1h, pending through a stage",
        breaks=breaks_of(S7={"triggers_pending_or_firing"}),
        artefact="the T01 rule in rollback.yml",
        folder="prometheus/rules",
        finds="pending_trigger_rules",
        change="pend_trigger_in_stage",
    ),
    OpsFileDefect(
        name="loose_stage_threshold",
        description="the canary plan's S1 threshold is 500 ms, looser than T01's 400 ms",
        breaks=breaks_of(G10={"canary_plan_problems"}),
        artefact="canary-plan.toml",
        folder=".",
        finds="canary_plans",
        change="loosen_stage_threshold",
    ),
    # G08: production (the stable track) is already slow before the release.
    StableAppDefect(
        name="slow_stable_orders",
        description="POST /api/orders takes 300 ms longer on the stable track",
        breaks=breaks_of(G08={"baseline_p95_ms"}),
    ),
    # Too few requests to judge is not a pass: every stage metric is INCONCLUSIVE, and so is
    # the baseline, which the sandbox loads at the canary's rate.
    OpsFileDefect(
        name="thin_canary_traffic",
        description="the canary plan's sandbox traffic is 4 requests/s, 2 to the canary",
        breaks=breaks_of(
            G08={"baseline_requests"},
            S1={"canary_p95_ms"},
            S2={"canary_5xx_ratio"},
            S3={"canary_ws_staleness_s"},
            S4={"canary_risk_blocks_per_min"},
            S5={"canary_idempotency_conflict_ratio"},
            S6={"canary_csp_violations_over_baseline"},
        ),
        expect="INCONCLUSIVE",
        artefact="canary-plan.toml",
        folder=".",
        finds="canary_plans",
        change="thin_canary_traffic",
    ),
)
