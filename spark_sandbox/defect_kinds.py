"""The kinds of seeded defect: each applies itself to a :class:`~spark_sandbox.defects.Blueprint`
by changing what its layer owns (the API's switches, PgBouncer's pool modes, the NTP offset,
the migrated database, the ops artefacts, Prometheus/Alertmanager, the released environment).
The registry of named defects is :mod:`spark_sandbox.defects`."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from spark_sandbox.defects import Blueprint


def _load(reference: str) -> Callable[..., Any]:
    """``"module:function"`` -> the function, imported now (a defect's work runs late)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def breaks_of(**items: Iterable[str]) -> dict[str, frozenset[str]]:
    """``breaks_of(B1={"ntp_offset_ms"})``: checklist item -> the sub-checks a defect fails."""
    return {item: frozenset(sub_checks) for item, sub_checks in items.items()}


@dataclass(frozen=True, kw_only=True)
class Defect:
    """A named fault. ``breaks``: checklist item -> the sub-checks that must fail, no others;
    ``expect``: the status those items end with (``INCONCLUSIVE`` for a fault that leaves them
    unmeasurable rather than out of their limits)."""

    layer: ClassVar[str]
    name: str
    description: str
    breaks: Mapping[str, frozenset[str]]
    expect: str = "FAILED"

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(self.breaks)

    def apply(self, blueprint: Blueprint) -> None:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class AppDefect(Defect):
    layer: ClassVar[str] = "app"

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.app_defects.append(self.name)


@dataclass(frozen=True, kw_only=True)
class StableAppDefect(Defect):
    """A switch of the reference API on the stable track only: production before the release."""

    layer: ClassVar[str] = "app_stable"

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.stable_app_defects.append(self.name)


@dataclass(frozen=True, kw_only=True)
class OutboxDefect(Defect):
    """A switch of the outbox publisher and the event consumer (both read ``SPARK_DEFECTS``)."""

    layer: ClassVar[str] = "outbox"

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.outbox_defects.append(self.name)


@dataclass(frozen=True, kw_only=True)
class RollbackDeployerDefect(Defect):
    """The deployment as a rollback finds it: where the deployer sends the traffic back to
    (``rollback_track``), and whether the stable track serves an older release at all."""

    layer: ClassVar[str] = "deployer"
    rollback_track: str = "stable"
    stable_is_previous_release: bool = True

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.rollback_track = self.rollback_track
        blueprint.stable_is_previous_release = self.stable_is_previous_release


@dataclass(frozen=True, kw_only=True)
class PoolModeDefect(Defect):
    layer: ClassVar[str] = "pgbouncer"
    pool: str
    mode: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.pool_modes[self.pool] = self.mode


@dataclass(frozen=True, kw_only=True)
class NtpOffsetDefect(Defect):
    layer: ClassVar[str] = "ntp"
    offset_s: float

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.ntp_offset_s = self.offset_s


@dataclass(frozen=True, kw_only=True)
class UnappliedMigrationDefect(Defect):
    layer: ClassVar[str] = "db"

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.skip_last_migration = True


# G04's sub-checks judged on the restored database (its orders, its sequences, its log, how
# soon it opened): a restore that never opens fails each of them or leaves it unmeasured.
RESTORED_DATABASE = frozenset(
    {
        "pitr_orders_missing_before_target",
        "pitr_orders_after_target",
        "pitr_sequences_behind",
        "pitr_recovery_log_problems",
        "pitr_restore_s",
    }
)


@dataclass(frozen=True, kw_only=True)
class UnmountedWalArchiveDefect(Defect):
    """PostgreSQL's archive_command copies into a folder that is not there (a backup volume
    that was never mounted): every archive attempt fails and no segment reaches the archive."""

    layer: ClassVar[str] = "db"
    folder: str = "wal_archive_unmounted"

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.unmounted_wal_archive = self.folder


@dataclass(frozen=True, kw_only=True)
class MigratedDatabaseDefect(Defect):
    """Changes the database once it is migrated (``change``: a ``module:function`` of a DSN)."""

    layer: ClassVar[str] = "db"
    change: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.after_migrate.append(lambda dsn: _load(self.change)(dsn))


@dataclass(frozen=True, kw_only=True)
class DatabaseSessionDefect(Defect):
    """A live session (``start``: ``module:function`` of the run dir and a DSN)."""

    layer: ClassVar[str] = "db"
    start: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.db_sessions.append(lambda run_dir, dsn: _load(self.start)(run_dir, dsn))


@dataclass(frozen=True, kw_only=True)
class OpsFileDefect(Defect):
    """A changed copy of one kind of ops artefact. ``finds`` lists those artefacts in an ops
    dir and ``change`` breaks them (both functions of :mod:`spark_sandbox.ops_defects`)."""

    layer: ClassVar[str] = "ops"
    artefact: str  # what it needs, for the error when the source has none
    folder: str
    finds: str
    change: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.ops_changes.append(self)

    def require(self, source: Path) -> None:
        """Fail naming the artefact when ``source`` has none of it (checked before copying)."""
        from spark_sandbox.ops_defects import OpsDefectError

        if not _load(f"spark_sandbox.ops_defects:{self.finds}")(source):
            raise OpsDefectError(f"{self.name} needs {self.artefact} in {source / self.folder}")

    def change_copy(self, ops_dir: Path) -> None:
        _load(f"spark_sandbox.ops_defects:{self.change}")(ops_dir)


@dataclass(frozen=True, kw_only=True)
class ScrapeTargetDownDefect(Defect):
    """One scrape job points at a port nobody listens on; the service itself keeps running."""

    layer: ClassVar[str] = "ops"
    job: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.down_scrape_job = self.job


@dataclass(frozen=True, kw_only=True)
class SilencedAlertDefect(Defect):
    layer: ClassVar[str] = "ops"

    def apply(self, blueprint: Blueprint) -> None:
        def silence(alertmanager_url: str, ops_dir: Path) -> str:
            from spark_sandbox.ops_defects import silence_release_alert

            return f"release alert silenced: {silence_release_alert(alertmanager_url, ops_dir)}"

        blueprint.after_alertmanager.append(silence)


@dataclass(frozen=True, kw_only=True)
class DeadWebhookDefect(Defect):
    """One receiver's webhook points at a loopback port nobody listens on: Alertmanager loads
    and routes to it as configured (an integration is there), but nothing is delivered."""

    layer: ClassVar[str] = "ops"
    receiver: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.dead_webhooks.append(self.receiver)


@dataclass(frozen=True, kw_only=True)
class ReleasedEnvironmentDefect(Defect):
    """The released environment changes (``change``: ``module:function`` of the environment
    and the run dir, returning the environment to release)."""

    layer: ClassVar[str] = "supply_chain"
    change: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.release_changes.append(
            (self.name, lambda environment, run_dir: _load(self.change)(environment, run_dir))
        )


@dataclass(frozen=True, kw_only=True)
class UnloadedRuleFileDefect(Defect):
    """Prometheus is started without one of the ops dir's rule files, which stays on disk:
    the file and its promtool cases look fine, but nothing evaluates its rules."""

    layer: ClassVar[str] = "ops"
    rule_file: str

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.unloaded_rule_files.append(self.rule_file)


# A comparison with a number literal in PromQL: `> 0.4`, `== 1`.
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*)(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")


def weakened(expr: str) -> str:
    """``expr`` with its first threshold ten times as far (a zero threshold becomes 10)."""
    match = COMPARISON.search(expr)
    if match is None:
        raise ValueError(f"no threshold to weaken in {expr!r}")
    value = float(match.group(3))
    new = f"{value * 10:.15g}" if value else "10"
    return f"{expr[: match.start(3)]}{new}{expr[match.end(3) :]}"


@dataclass(frozen=True, kw_only=True)
class WeakenedTriggerDefect(Defect):
    """One rollback trigger's rule in a copy of the ops dir compares against ten times its
    threshold; its promtool cases and rollback-triggers.toml are left as they are."""

    layer: ClassVar[str] = "ops"
    trigger: str
    rule_file: str = "prometheus/rules/rollback.yml"

    def apply(self, blueprint: Blueprint) -> None:
        blueprint.ops_changes.append(self)

    def _expr(self, path: Path) -> str:
        import yaml

        from spark_sandbox.ops_defects import OpsDefectError

        document = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        for group in (document or {}).get("groups") or []:
            for rule in group.get("rules") or []:
                if (rule.get("labels") or {}).get("trigger") == self.trigger:
                    return str(rule["expr"])
        raise OpsDefectError(f"{self.name} needs a rule labelled trigger={self.trigger} in {path}")

    def require(self, source: Path) -> None:
        self._expr(source / self.rule_file)

    def change_copy(self, ops_dir: Path) -> None:
        path = ops_dir / self.rule_file
        text, expr = path.read_text(encoding="utf-8"), self._expr(path)
        # The block scalar's lines as written: weaken the first line that holds a threshold.
        for line in expr.splitlines():
            if COMPARISON.search(line) and text.count(line) == 1:
                path.write_text(text.replace(line, weakened(line)), encoding="utf-8")
                return
        raise ValueError(f"{self.name}: no unique threshold line for {self.trigger} in {path}")
