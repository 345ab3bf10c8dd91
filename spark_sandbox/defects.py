"""Named, seeded defects: each applies itself to a sandbox start and declares what it breaks.

The gate's own tests start the sandbox with a defect and assert that the gate answers NO-GO
naming exactly the items in ``Defect.breaks``, and within each of them exactly the sub-checks
listed there (measurement names of ``ops/checklist.toml``): the proof that every check can fail.

A start builds a :class:`Blueprint` (the healthy deployment's settings) and hands it to each
active defect's :meth:`Defect.apply`, which changes what its layer owns: the reference API's
switches (``app``: the API reads them from ``SPARK_DEFECTS``; ``outbox``: the publisher and the
consumer do), PgBouncer's pool modes, the NTP server's offset, the migration history or a live
database session (``db``), the ops artefacts and the live Prometheus/Alertmanager (``ops``),
or the released environment (``supply_chain``). The services then read the blueprint; none
of them asks for a defect by name. The kinds of defect are in :mod:`spark_sandbox.defect_kinds`,
the canary stage's defects in :mod:`spark_sandbox.canary_defects`, the chaos scenarios' in
:mod:`spark_sandbox.chaos_defects`. Importing this module is
cheap: what a defect runs is imported when it runs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spark_sandbox.canary_defects import CANARY_DEFECTS
from spark_sandbox.chaos_defects import CHAOS_DEFECTS
from spark_sandbox.defect_kinds import (
    RESTORED_DATABASE,
    AppDefect,
    DatabaseSessionDefect,
    DeadWebhookDefect,
    Defect,
    MigratedDatabaseDefect,
    NtpOffsetDefect,
    OpsFileDefect,
    OutboxDefect,
    PoolModeDefect,
    ReleasedEnvironmentDefect,
    RollbackDeployerDefect,
    ScrapeTargetDownDefect,
    SilencedAlertDefect,
    UnappliedMigrationDefect,
    UnloadedRuleFileDefect,
    UnmountedWalArchiveDefect,
    WeakenedTriggerDefect,
    breaks_of,
)
from spark_sandbox.ops_defects import OPS_DIR
from spark_sandbox.services.pgbouncer import APP_POOL, HEALTHY_POOL_MODES, LISTEN_POOL

if TYPE_CHECKING:
    from spark_sandbox.ops_defects import OpsChange
    from spark_sandbox.services.process import ServiceProcess


@dataclass
class Blueprint:
    """One deployment as a start builds it: healthy, then changed by each active defect."""

    defects: tuple[str, ...] = ()
    # Switches of the reference API (SPARK_DEFECTS), each named at the line it changes.
    app_defects: list[str] = field(default_factory=list)
    # The same switches for the stable track (the previous release), which has none of them
    # unless a defect of the baseline puts one there.
    stable_app_defects: list[str] = field(default_factory=list)
    # Switches of the outbox publisher and the event consumer (their SPARK_DEFECTS).
    outbox_defects: list[str] = field(default_factory=list)
    # Where the deployer's rollback sends the traffic (the track serving the previous release),
    # and whether the stable track still serves an older version than the canary.
    rollback_track: str = "stable"
    stable_is_previous_release: bool = True
    pool_modes: dict[str, str] = field(default_factory=lambda: dict(HEALTHY_POOL_MODES))
    ntp_offset_s: float = 0.0
    skip_last_migration: bool = False
    # A folder of the run dir, never created, that PostgreSQL's archive_command copies into.
    unmounted_wal_archive: str | None = None
    # Run on the migrated database (its superuser DSN), before any client connects.
    after_migrate: list[Callable[[str], object]] = field(default_factory=list)
    # (run_dir, app pool DSN) -> a started session that must stay alive with the deployment.
    db_sessions: list[Callable[[Path, str], ServiceProcess]] = field(default_factory=list)
    # Changes to a copy of the ops dir; each can say first what it needs in the source. Also
    # holds the drill's cap on alert durations (ops_defects.AlertForCap), which is no defect.
    ops_changes: list[OpsChange] = field(default_factory=list)
    down_scrape_job: str | None = None
    # Rule files of the ops dir that Prometheus is not given (the file itself stays in place).
    unloaded_rule_files: list[str] = field(default_factory=list)
    # (alertmanager URL, ops dir) -> what was changed, once Alertmanager is up.
    after_alertmanager: list[Callable[[str, Path], str]] = field(default_factory=list)
    # Receivers of ops/alertmanager.yml whose webhook goes to an address nobody answers.
    dead_webhooks: list[str] = field(default_factory=list)
    # (name, change): the released environment -> the environment released instead.
    release_changes: list[tuple[str, Callable[[Path, Path], Path]]] = field(default_factory=list)

    @classmethod
    def of(cls, names: Iterable[str]) -> Blueprint:
        """The blueprint with the named defects applied; an unknown name is a ValueError."""
        chosen = resolve(names)
        blueprint = cls(defects=tuple(d.name for d in chosen))
        for defect in chosen:
            defect.apply(blueprint)
        return blueprint


_DB = "spark_sandbox.services.db_defects"
# The rollback triggers the release declares: each one gets its weakened-rule defect.
with (OPS_DIR / "rollback-triggers.toml").open("rb") as _triggers:
    TRIGGERS = tuple(tomllib.load(_triggers)["trigger"])
_DEFECT_LIST: tuple[Defect, ...] = (
    # B1 time and sequences
    AppDefect(
        name="app_clock_skew",
        description="/api/time answers 2 s ahead of the host clock",
        breaks=breaks_of(B1={"app_db_clock_difference_ms"}),
    ),
    NtpOffsetDefect(
        name="ntp_offset",
        description="the NTP server serves time 5 s ahead",
        breaks=breaks_of(B1={"ntp_offset_ms"}),
        offset_s=5.0,
    ),
    MigratedDatabaseDefect(
        name="sequence_behind",
        description="orders_id_seq is set below max(orders.id)",
        breaks=breaks_of(B1={"sequences_behind"}),
        change=f"{_DB}:set_orders_sequence_behind",
    ),
    # B2 Prisma Migrate
    UnappliedMigrationDefect(
        name="pending_migration",
        description="the newest migration is never applied",
        breaks=breaks_of(B2={"pending_migrations"}),
    ),
    MigratedDatabaseDefect(
        name="modified_migration",
        description="an applied migration's stored checksum differs",
        breaks=breaks_of(B2={"modified_migrations"}),
        change=f"{_DB}:modify_applied_migration",
    ),
    MigratedDatabaseDefect(
        name="failed_migration",
        description="a migration row is started but never finished",
        breaks=breaks_of(B2={"failed_migrations"}),
        change=f"{_DB}:fail_applied_migration",
    ),
    # B3 PgBouncer
    PoolModeDefect(
        name="pool_mode_session",
        description="the app pool runs in session mode",
        breaks=breaks_of(B3={"app_pool_mode_findings"}),
        pool=APP_POOL,
        mode="session",
    ),
    # LISTEN on a transaction pool breaks the mode check and, as a consequence, the round trip.
    PoolModeDefect(
        name="listen_on_transaction_pool",
        description="the LISTEN pool is in transaction mode",
        breaks=breaks_of(B3={"listen_pool_mode_findings", "notify_round_trip_s"}),
        pool=LISTEN_POOL,
        mode="transaction",
    ),
    DatabaseSessionDefect(
        name="long_running_query",
        description="a session sits idle in transaction for minutes",
        breaks=breaks_of(B3={"longest_idle_in_transaction_s"}),
        start=f"{_DB}:start_long_running_query",
    ),
    # B4 / M1 / M2 decimal behaviour: half-up shows in every amount the API computes.
    AppDefect(
        name="half_up_rounding",
        description="commission rounds half-up, not half-even",
        breaks=breaks_of(
            B4={"commission_mismatches", "average_price_mismatches"},
            M1={"commission_mismatches", "position_amount_mismatches"},
        ),
    ),
    AppDefect(
        name="tick_misaligned_accepted",
        description="prices off the BIST tick grid are accepted",
        breaks=breaks_of(B4={"misaligned_prices_not_refused"}, M2={"tick_grid_findings"}),
    ),
    # The outward band is both published by /api/market and enforced on orders.
    AppDefect(
        name="band_rounded_outward",
        description="price-band limits round outward, not inward",
        breaks=breaks_of(M2={"band_findings", "band_edge_findings"}),
    ),
    # B5 CSP / COOP / COEP: the browser sees no isolation, and the headers say why.
    AppDefect(
        name="no_coep",
        description="the page is served without Cross-Origin-Embedder-Policy",
        breaks=breaks_of(B5={"cross_origin_isolated", "isolation_header_findings"}),
    ),
    AppDefect(
        name="unsafe_inline_csp",
        description="script-src allows 'unsafe-inline'",
        breaks=breaks_of(B5={"csp_findings"}),
    ),
    # The page loads an unreviewed origin, and its CSP trusts it.
    AppDefect(
        name="unlisted_third_party",
        description="the page loads an origin off the allowlist",
        breaks=breaks_of(B5={"origins_off_allowlist", "csp_allowlist_mismatches"}),
    ),
    AppDefect(
        name="csp_report_500",
        description="POST /csp-report answers 500",
        breaks=breaks_of(B5={"csp_report_posts_not_204", "reporting_api_posts_not_204"}),
    ),
    # B6 Prometheus / Grafana. The variable that loses its default is the one every panel
    # filters on, so the panels have nothing to query with either.
    OpsFileDefect(
        name="dashboard_variable_without_default",
        description="a dashboard variable has no default",
        breaks=breaks_of(B6={"variables_without_default", "empty_panel_queries"}),
        artefact="a dashboard",
        folder="grafana",
        finds="dashboards",
        change="drop_dashboard_variable_default",
    ),
    # Alertmanager's job: no other check reads its metrics (the PgBouncer exporter's feed the
    # saturation rules and the baseline, so withholding it would break more than B6).
    ScrapeTargetDownDefect(
        name="scrape_target_down",
        description="one expected scrape target is down",
        breaks=breaks_of(B6={"targets_down"}),
        job="alertmanager",
    ),
    # B7 feature flags: a served flag that lost its default, or that is switched on for
    # everyone, no longer matches flags.toml either.
    AppDefect(
        name="implicit_flag_default",
        description="a flag is served without a default",
        breaks=breaks_of(B7={"implicit_defaults", "flags_drifted"}),
    ),
    AppDefect(
        name="risky_flag_on",
        description="a risky flag starts on at 100 %",
        breaks=breaks_of(B7={"risky_flags_on", "flags_drifted"}),
    ),
    # B8 SLO burn alerts
    OpsFileDefect(
        name="no_6h_burn_alert",
        description="the 6 h / 30 m burn-rate alert is not loaded",
        breaks=breaks_of(B8={"slow_burn_alerts_loaded"}),
        artefact="Prometheus rule files",
        folder="prometheus/rules",
        finds="rule_files",
        change="drop_6h_burn_alert",
    ),
    SilencedAlertDefect(
        name="silenced_release_alert",
        description="an active silence matches a release alert",
        breaks=breaks_of(B8={"silenced_release_alerts"}),
    ),
    # B9 supply chain
    ReleasedEnvironmentDefect(
        name="denied_license",
        description="a component carries a denied licence",
        breaks=breaks_of(B9={"licence_findings"}),
        change="spark_sandbox.supply_chain:with_denied_licence",
    ),
    # M3 / M4 money. The web UI's pact carries money as decimal strings too, so K1 must
    # refuse float money as well.
    AppDefect(
        name="float_money",
        description="money is returned as JSON numbers",
        breaks=breaks_of(M3={"wire_findings"}, K1={"pact_interactions_failed"}),
    ),
    AppDefect(
        name="reconciliation_drift",
        description="a position's quantity drifts from its fills",
        breaks=breaks_of(M4={"position_drift_findings"}),
    ),
    # G03 idempotency and order integrity
    AppDefect(
        name="idempotency_replay_mismatch_200",
        description="same key, other payload answers 200 instead of 422",
        breaks=breaks_of(G03={"reused_key_not_refused"}),
    ),
    # Without a claim no submission ever sees the key in flight, and each places its order
    # (and writes its event: one key, several events).
    AppDefect(
        name="duplicate_order_under_concurrency",
        description="concurrent submissions of one key create several orders",
        breaks=breaks_of(G03={"bursts_with_409", "orders_per_key", "outbox_events_per_order"}),
    ),
    # K1 / K2 contracts
    AppDefect(
        name="contract_field_renamed",
        description="order responses rename `price` to `px`",
        breaks=breaks_of(K1={"pact_interactions_failed"}),
    ),
    AppDefect(
        name="order_event_schema_changed",
        description="the order event drops `account_id`",
        breaks=breaks_of(K2={"pact_messages_failed"}),
    ),
    # T01–T14 rollback triggers. Each trigger's rule weakened (its first threshold × 10)
    # without touching its promtool cases: the cases and the declared threshold both see it.
    *(
        WeakenedTriggerDefect(
            name=f"weakened_{trigger.lower()}_rule",
            description=f"the {trigger} rule compares against ten times its threshold",
            breaks=breaks_of(**{trigger: {"promtool_failures", "rule_drift"}}),
            trigger=trigger,
        )
        for trigger in TRIGGERS
    ),
    # The rule file is deployed but Prometheus never loads it: every trigger and the
    # absent-signal page are quiet for good.
    UnloadedRuleFileDefect(
        name="rollback_rules_not_loaded",
        description="Prometheus runs without the rollback rule file",
        breaks=breaks_of(
            **{trigger: {"rule_not_loaded"} for trigger in TRIGGERS},
            G06={"absent_signal_rules_unhealthy"},
        ),
        rule_file="rollback.yml",
    ),
    # The API renames a metric the T13 rule reads; the rule itself is unchanged.
    AppDefect(
        name="ws_metric_renamed",
        description="spark_ws_disconnects_total is exported as spark_ws_disconnections_total",
        breaks=breaks_of(T13={"series_missing"}),
    ),
    *CANARY_DEFECTS,
    # G09 outbox. A poison event stays pending; an event acknowledged on a failed delivery
    # is lost, the probe's among them.
    OutboxDefect(
        name="consumer_rejects_sells",
        description="the consumer answers 422 to every sell order's event, which then sits "
        "in the outbox retried forever",
        breaks=breaks_of(G09={"stuck_events"}),
    ),
    OutboxDefect(
        name="publisher_acks_failed_delivery",
        description="the publisher marks an event published when its delivery failed (and "
        "the consumer sheds each event's first delivery with 503, so every event fails once)",
        breaks=breaks_of(G09={"probe_event_deliveries", "events_missing"}),
    ),
    OutboxDefect(
        name="consumer_applies_twice",
        description="the consumer applies each order's effect twice in its transaction",
        breaks=breaks_of(G09={"probe_event_deliveries", "events_applied_twice"}),
    ),
    # G05 rollback readiness: what the dry run's pre-checks read before anything moves.
    RollbackDeployerDefect(
        name="no_previous_release",
        description="the stable track serves this very release: there is nothing to roll back to",
        breaks=breaks_of(G05={"rollback_precheck_problems", "rollback_steps_failed"}),
        stable_is_previous_release=False,
    ),
    RollbackDeployerDefect(
        name="deployer_does_not_switch",
        description="the deployer's rollback points the traffic at the canary it rolls back from",
        breaks=breaks_of(G05={"rollback_precheck_problems", "rollback_steps_failed"}),
        rollback_track="canary",
    ),
    # G04 backups. Nothing archived: the drill's restore never opens, its data goes unmeasured.
    UnmountedWalArchiveDefect(
        name="wal_archive_failing",
        description="archive_command copies into a folder that is not mounted",
        breaks=breaks_of(G04={"wal_archive_failures", "segment_archived_s", *RESTORED_DATABASE}),
    ),
    OpsFileDefect(
        name="pitr_target_left_empty",
        description="the restore runbook's recovery_target_time is empty: replay to the end",
        breaks=breaks_of(G04={"pitr_orders_after_target", "pitr_recovery_log_problems"}),
        artefact="backup.toml",
        folder=".",
        finds="restore_runbooks",
        change="empty_recovery_target",
    ),
    # G07 alert delivery. The routing still names a receiver with a webhook, so B8's checks
    # of the configuration pass: only a page sent end to end shows that nobody gets it.
    DeadWebhookDefect(
        name="dead_oncall_webhook",
        description="the on-call receiver's webhook points at a port nobody listens on",
        breaks=breaks_of(G07={"alert_delivery_s"}),
        receiver="spark-oncall",
    ),
    # C1–C6 chaos: each breaks its scenario's hypothesis once the scenario's fault is active.
    *CHAOS_DEFECTS,
)
DEFECTS: dict[str, Defect] = {d.name: d for d in _DEFECT_LIST}


def resolve(names: Iterable[str]) -> tuple[Defect, ...]:
    """The defects named, in order; an unknown name is a ValueError listing the known ones."""
    chosen = []
    for name in names:
        try:
            chosen.append(DEFECTS[name])
        except KeyError:
            known = ", ".join(sorted(DEFECTS))
            raise ValueError(f"unknown sandbox defect {name!r}; known defects: {known}") from None
    return tuple(chosen)


def for_layer(defects: Iterable[Defect], layer: str) -> frozenset[str]:
    """Names of the defects that the given layer applies."""
    return frozenset(d.name for d in defects if d.layer == layer)


def switches(spark_defects: str, *layers: str) -> frozenset[str]:
    """The switches a process of ``layers`` turns on, from its ``SPARK_DEFECTS`` value (comma
    separated names); an unknown name is a ValueError, so a typo fails the start."""
    chosen = resolve(n.strip() for n in spark_defects.split(",") if n.strip())
    return frozenset().union(*(for_layer(chosen, layer) for layer in layers))
