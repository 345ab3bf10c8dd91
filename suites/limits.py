"""The schemas of the thresholds in ``ops/``: one frozen dataclass per table of each file.

A threshold named after a measurement is its exclusive upper limit (the value must stay below
it; a count limit of 1 means "none allowed"); ``<measurement>_at_least`` is its inclusive lower
limit. The files are read by :func:`pytest_spark.ops.load_ops`, which refuses a key these
schemas do not name, a missing one, or a value of the wrong type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_spark import load_ops, ops_key

BLIND_SPOTS_FILE = "blind_spots.toml"
MONEY_FILE = "money.toml"
CONTRACTS_FILE = "contracts.toml"
GO_NOGO_FILE = "go_nogo.toml"
BACKUP_FILE = "backup.toml"
CHAOS_FILE = "chaos.toml"

# --- ops/blind_spots.toml ---------------------------------------------------------------------


@dataclass(frozen=True)
class B1Limits:
    ntp_offset_ms: float
    app_db_clock_difference_ms: float
    clock_samples: int
    sntp_timeout_s: float
    sequences_behind: float
    sequence_max_used_fraction: float


@dataclass(frozen=True)
class B2Limits:
    pending_migrations: float
    failed_migrations: float
    modified_migrations: float
    migrations_missing_on_disk: float
    shadow_database_urls: float


@dataclass(frozen=True)
class B3Limits:
    app_pool_mode_findings: float
    listen_pool_mode_findings: float
    active_query_s: float
    idle_in_transaction_s: float
    notify_round_trip_s: float


@dataclass(frozen=True)
class B4Limits:
    commission_mismatches: float
    average_price_mismatches: float
    aligned_prices_refused: float
    misaligned_prices_not_refused: float
    average_price_instruments: int


@dataclass(frozen=True)
class B5Limits:
    page_load_timeout_s: float
    page_settle_s: float
    http_timeout_s: float
    cross_origin_isolated_at_least: float
    origins_off_allowlist: float
    csp_allowlist_mismatches: float
    csp_findings: float
    isolation_header_findings: float
    report_posts_not_204: float


@dataclass(frozen=True)
class B6Limits:
    variables_without_default: float
    empty_panel_queries: float
    panel_data_wait_s: float
    target_count_mismatches: float
    targets_down: float
    targets_wait_s: float


@dataclass(frozen=True)
class B7Limits:
    flags_requests: int
    flags_latency_ms: float
    http_timeout_s: float
    implicit_defaults: float
    risky_flags_on: float
    flag_document_problems: float
    flags_drifted: float


@dataclass(frozen=True)
class B8Limits:
    fast_burn_factor: float
    fast_long_window_s: float
    fast_short_window_s: float
    slow_burn_factor: float
    slow_long_window_s: float
    slow_short_window_s: float
    burn_alerts_loaded_at_least: float
    rules_evaluated_wait_s: float
    silenced_release_alerts: float
    alerts_without_severity_or_runbook: float
    unrouted_alerts: float


@dataclass(frozen=True)
class B9Limits:
    sbom_problems: float
    components_without_purl: float
    licence_findings: float
    provenance_problems: float


@dataclass(frozen=True)
class BlindSpotLimits:
    b1: B1Limits = field(metadata=ops_key("B1"))
    b2: B2Limits = field(metadata=ops_key("B2"))
    b3: B3Limits = field(metadata=ops_key("B3"))
    b4: B4Limits = field(metadata=ops_key("B4"))
    b5: B5Limits = field(metadata=ops_key("B5"))
    b6: B6Limits = field(metadata=ops_key("B6"))
    b7: B7Limits = field(metadata=ops_key("B7"))
    b8: B8Limits = field(metadata=ops_key("B8"))
    b9: B9Limits = field(metadata=ops_key("B9"))


# --- ops/money.toml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketSettings:
    symbols: tuple[str, ...]
    http_timeout_s: float
    db_connect_timeout_s: float


@dataclass(frozen=True)
class HypothesisSettings:
    seed: int
    max_orders_per_property: int


@dataclass(frozen=True)
class M1Limits:
    commission_examples: int
    position_examples: int
    commission_mismatches: float
    position_amount_mismatches: float


@dataclass(frozen=True)
class M2Limits:
    tick_examples: int
    tick_grid_findings: float
    band_findings: float
    band_edge_findings: float


@dataclass(frozen=True)
class M3Limits:
    wire_examples: int
    wire_findings: float
    float_money_columns: float
    decimal_precision_errors: float


@dataclass(frozen=True)
class M4Limits:
    book_examples: int
    book_orders: int
    book_symbols: int
    position_drift_findings: float
    commission_sum_findings: float


@dataclass(frozen=True)
class G03Limits:
    concurrent_submissions: int
    in_flight_attempts: int
    burst_timeout_s: float
    orders_without_key: float
    replayed_orders_per_key: float
    replayed_orders_per_key_at_least: float
    reused_key_not_refused: float
    bursts_with_409_at_least: float
    orders_per_key: float
    orders_per_key_at_least: float
    outbox_events_per_order: float
    outbox_events_per_order_at_least: float
    open_positions_per_symbol: float
    open_positions_per_symbol_at_least: float
    open_position_index_findings: float
    second_open_positions_accepted: float


@dataclass(frozen=True)
class MoneyLimits:
    market: MarketSettings
    hypothesis: HypothesisSettings
    m1: M1Limits = field(metadata=ops_key("M1"))
    m2: M2Limits = field(metadata=ops_key("M2"))
    m3: M3Limits = field(metadata=ops_key("M3"))
    m4: M4Limits = field(metadata=ops_key("M4"))
    g03: G03Limits = field(metadata=ops_key("G03"))


# --- ops/contracts.toml -----------------------------------------------------------------------


@dataclass(frozen=True)
class K1Limits:
    pact_interactions_failed: float


@dataclass(frozen=True)
class K2Limits:
    pact_messages_failed: float


@dataclass(frozen=True)
class K3Limits:
    not_deployable: float


@dataclass(frozen=True)
class ContractLimits:
    k1: K1Limits = field(metadata=ops_key("K1"))
    k2: K2Limits = field(metadata=ops_key("K2"))
    k3: K3Limits = field(metadata=ops_key("K3"))


# --- ops/go_nogo.toml -------------------------------------------------------------------------


@dataclass(frozen=True)
class G07Limits:
    alert_delivery_s: float
    readback_poll_s: float
    oncall_receiver: str
    resolved_wait_s: float


@dataclass(frozen=True)
class G05Limits:
    rollback_dry_run_s: float
    rollback_precheck_problems: float
    rollback_snapshot_problems: float
    rollback_steps_failed: float


@dataclass(frozen=True)
class G09Limits:
    probe_delivery_s: float
    probe_event_deliveries_at_least: float
    probe_event_deliveries: float
    window_s: float
    window_orders: int
    window_events_at_least: float
    outbox_lag_p99_s: float
    stuck_after_s: float
    stuck_after_attempts: int
    stuck_events: float
    events_missing: float
    events_applied_twice: float
    settle_s: float


@dataclass(frozen=True)
class GoNoGoLimits:
    g05: G05Limits = field(metadata=ops_key("G05"))
    g07: G07Limits = field(metadata=ops_key("G07"))
    g09: G09Limits = field(metadata=ops_key("G09"))


# --- ops/backup.toml --------------------------------------------------------------------------


@dataclass(frozen=True)
class G04Limits:
    wal_archive_failures: float
    last_archive_age_s: float
    segment_archived_s: float
    archive_poll_s: float
    base_backup_age_s: float
    drill_orders: int
    pitr_orders_missing_before_target: float
    pitr_orders_after_target: float
    pitr_sequences_behind: float
    pitr_recovery_log_problems: float
    pitr_restore_s: float
    pitr_command_timeout_s: float


@dataclass(frozen=True)
class RestoreRunbook:
    """The recovery settings the restore runbook writes ("{target_time}" is replaced)."""

    recovery_target_time: str
    recovery_target_action: str
    recovery_target_inclusive: bool


@dataclass(frozen=True)
class BackupLimits:
    g04: G04Limits = field(metadata=ops_key("G04"))
    restore: RestoreRunbook


# --- ops/chaos.toml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosProxies:
    api: str
    db: str
    feed: str
    consumer: str


@dataclass(frozen=True)
class SteadyStateLimits:
    requests: int
    rate_per_s: float
    request_timeout_s: float
    p95_ms: float
    server_errors: float
    pending_events: float
    settle_s: float


@dataclass(frozen=True)
class ChaosFindings:
    steady_state_before_findings: float
    hypothesis_findings: float
    steady_state_after_findings: float
    fault_observed_at_least: float


@dataclass(frozen=True)
class C1Limits:
    latency_ms: int
    fault_s: float
    rate_per_s: float
    observed_latency_fraction: float
    slowest_answer_s: float
    retry_s: float
    recovery_s: float
    recovery_p95_ms: float
    recovery_probe_requests: int


@dataclass(frozen=True)
class C4Limits:
    fault_s: float
    rate_per_s: float
    orders_refused: float
    drain_s: float


@dataclass(frozen=True)
class ChaosSandbox:
    fault_s: float


@dataclass(frozen=True)
class ChaosLimits:
    proxies: ChaosProxies
    steady_state: SteadyStateLimits
    findings: ChaosFindings
    c1: C1Limits = field(metadata=ops_key("C1"))
    c4: C4Limits = field(metadata=ops_key("C4"))
    chaos_sandbox: ChaosSandbox = field(metadata=ops_key("sandbox"))


# --- all of them -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits(BlindSpotLimits, MoneyLimits, ContractLimits, GoNoGoLimits, BackupLimits, ChaosLimits):
    """Every table of the six files under one name: ``limits.b1.ntp_offset_ms``,
    ``limits.market.symbols``, ``limits.g03.concurrent_submissions``, ``limits.k1...``,
    ``limits.g07.alert_delivery_s``, ``limits.g04.segment_archived_s``,
    ``limits.g09.outbox_lag_p99_s``, ``limits.c1.latency_ms``."""


def load_limits(ops_dir: Path) -> Limits:
    """The thresholds of ``ops_dir``; a broken file raises OpsFileError naming file and key."""
    files: list[Any] = [
        load_ops(ops_dir / BLIND_SPOTS_FILE, BlindSpotLimits),
        load_ops(ops_dir / MONEY_FILE, MoneyLimits),
        load_ops(ops_dir / CONTRACTS_FILE, ContractLimits),
        load_ops(ops_dir / GO_NOGO_FILE, GoNoGoLimits),
        load_ops(ops_dir / BACKUP_FILE, BackupLimits),
        load_ops(ops_dir / CHAOS_FILE, ChaosLimits),
    ]
    tables = {f.name: getattr(part, f.name) for part in files for f in dataclasses.fields(part)}
    return Limits(**tables)
