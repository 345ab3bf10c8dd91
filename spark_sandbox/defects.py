"""Named, seeded defects: each one breaks exactly one checked property of the sandbox.

The gate's own tests start the sandbox with a defect and assert that the gate answers NO-GO
naming exactly ``Defect.breaks``. That is how the project proves every check can fail.

Each defect is applied by the layer that owns the broken property (``Defect.layer``):

- ``app``: the reference API reads ``SPARK_DEFECTS`` (comma-separated names) at start-up.
- ``db``: the sandbox orchestrator changes the database after migrating it.
- ``pgbouncer``: the PgBouncer executor writes a different ``[databases]`` section.
- ``ntp``: the sandbox NTP server runs with a deliberate offset.
- ``ops``: the sandbox loads a changed copy of an ``ops/`` artefact.
- ``supply_chain``: the sandbox's artefact/SBOM inputs are changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Defect:
    name: str
    layer: str
    breaks: tuple[str, ...]
    description: str


def _d(name: str, layer: str, breaks: tuple[str, ...], description: str) -> Defect:
    return Defect(name, layer, breaks, description)


DEFECTS: dict[str, Defect] = {
    d.name: d
    for d in (
        # B1 time and sequences
        _d("app_clock_skew", "app", ("B1",), "/api/time answers 2 s ahead of the host clock"),
        _d("ntp_offset", "ntp", ("B1",), "the NTP server serves time 5 s ahead"),
        _d("sequence_behind", "db", ("B1",), "orders_id_seq is set below max(orders.id)"),
        # B2 Prisma Migrate
        _d("pending_migration", "db", ("B2",), "the newest migration is never applied"),
        _d("modified_migration", "db", ("B2",), "an applied migration's stored checksum differs"),
        _d("failed_migration", "db", ("B2",), "a migration row is started but never finished"),
        # B3 PgBouncer
        _d("pool_mode_session", "pgbouncer", ("B3",), "the app pool runs in session mode"),
        _d(
            "listen_on_transaction_pool",
            "pgbouncer",
            ("B3",),
            "the LISTEN pool is in transaction mode",
        ),
        _d("long_running_query", "db", ("B3",), "a session sits idle in transaction for minutes"),
        # B4 / M1 / M2 decimal behaviour
        _d("half_up_rounding", "app", ("B4", "M1"), "commission rounds half-up, not half-even"),
        _d(
            "tick_misaligned_accepted",
            "app",
            ("B4", "M2"),
            "prices off the BIST tick grid are accepted",
        ),
        _d("band_rounded_outward", "app", ("M2",), "price-band limits round outward, not inward"),
        # B5 CSP / COOP / COEP
        _d("no_coep", "app", ("B5",), "the page is served without Cross-Origin-Embedder-Policy"),
        _d("unsafe_inline_csp", "app", ("B5",), "script-src allows 'unsafe-inline'"),
        _d("unlisted_third_party", "app", ("B5",), "the page loads an origin off the allowlist"),
        _d("csp_report_500", "app", ("B5",), "POST /csp-report answers 500"),
        # B6 Prometheus / Grafana
        _d(
            "dashboard_variable_without_default",
            "ops",
            ("B6",),
            "a dashboard variable has no default",
        ),
        _d("scrape_target_down", "ops", ("B6",), "one expected scrape target is down"),
        # B7 feature flags
        _d("implicit_flag_default", "app", ("B7",), "a flag is served without a default"),
        _d("risky_flag_on", "app", ("B7",), "a risky flag starts on at 100 %"),
        # B8 SLO burn alerts
        _d("no_6h_burn_alert", "ops", ("B8",), "the 6 h / 30 m burn-rate alert is not loaded"),
        _d("silenced_release_alert", "ops", ("B8",), "an active silence matches a release alert"),
        # B9 supply chain
        _d("denied_license", "supply_chain", ("B9",), "a component carries a denied licence"),
        # M3 / M4 money
        # The web UI's pact carries money as decimal strings too, so K1 must refuse it as well.
        _d("float_money", "app", ("M3", "K1"), "money is returned as JSON numbers"),
        _d("reconciliation_drift", "app", ("M4",), "a position's quantity drifts from its fills"),
        # G03 idempotency and order integrity
        _d(
            "idempotency_replay_mismatch_200",
            "app",
            ("G03",),
            "same key, other payload answers 200 instead of 422",
        ),
        _d(
            "duplicate_order_under_concurrency",
            "app",
            ("G03",),
            "concurrent submissions of one key create several orders",
        ),
        # K1 / K2 contracts
        _d("contract_field_renamed", "app", ("K1",), "order responses rename `price` to `px`"),
        _d("order_event_schema_changed", "app", ("K2",), "the order event drops `account_id`"),
    )
}


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
