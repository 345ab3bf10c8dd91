"""Turn a resolved SparkConfig into the run's plugin objects: registry, gate, waivers, key,
bundle paths; every refusal here is a usage error before any test runs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.checklist import Checklist, ChecklistError
from pytest_spark.checklist import load as load_checklist
from pytest_spark.claims import CLAIM_MARKERS
from pytest_spark.config import SparkConfig
from pytest_spark.evidence.bundle import Bundle, new_run_id
from pytest_spark.evidence.inputs import fingerprint as fingerprint_inputs
from pytest_spark.evidence.redact import Redactor
from pytest_spark.markexpr import IDENT, GateExpressionError, gate_named
from pytest_spark.recorder import ClaimRecorder
from pytest_spark.reporter import GateReporter
from pytest_spark.signing import SigningKeyError, load_signing_key
from pytest_spark.targets import PLUGIN_NAME as TARGET_SESSION
from pytest_spark.targets import TargetSession
from pytest_spark.waivers import WaiverFileError
from pytest_spark.waivers import load as load_waivers

# The gate that judges one canary stage, and so needs --spark-stage.
CANARY_GATE = "canary"


@dataclass
class GatePlugins:
    """The plugin objects a run registers, in order (and unregisters in reverse)."""

    recorder: ClaimRecorder | None = None  # every process of a run with a checklist
    reporter: GateReporter | None = None  # the controller of a gate run with a bundle
    guard: object | None = None  # a run without a checklist: refuses gate tests
    secrets: object | None = None  # a gate with a bundle: masks secrets at the source
    target: TargetSession | None = None  # opens the target once; every run has one

    def in_order(self) -> list[tuple[str, object]]:
        named = (
            ("spark-gate-recorder", self.recorder),
            ("spark-gate-reporter", self.reporter),
            ("spark-gate-no-checklist", self.guard),
            ("spark-secret-guard", self.secrets),
            (TARGET_SESSION, self.target),
        )
        return [(name, plugin) for name, plugin in named if plugin is not None]


def configure_run(config: pytest.Config, spark: SparkConfig, now: dt.datetime) -> GatePlugins:
    """The plugin objects of this run: the gate's, a secret guard when a gate is in play,
    and the target session, which shares the run's redactor."""
    plugins = _gate_plugins(config, spark, now)
    recorder = plugins.recorder
    if recorder is not None and recorder.bundle is not None:
        # A gate is in play, on the controller and on each xdist worker.
        from pytest_spark.secrecy import SecretGuard

        plugins.secrets = SecretGuard(recorder.redactor)
    redactor = recorder.redactor if recorder else Redactor(spark.target.secret_values())
    plugins.target = TargetSession(config, spark, redactor)
    return plugins


def _gate_plugins(config: pytest.Config, spark: SparkConfig, now: dt.datetime) -> GatePlugins:
    """The gate's plugin objects.

    The gate never switches itself off in silence: a missing checklist, or a run that
    selects tests claiming checklist items without naming a gate, is a usage error (raised
    here, or at collection by the recorder or the guard).
    """
    markexpr = config.option.markexpr or ""
    if not spark.checklist_path.exists():
        return GatePlugins(guard=_refuse_without_checklist(spark, markexpr))
    try:
        checklist = load_checklist(spark.checklist_path)
    except ChecklistError as exc:
        raise pytest.UsageError(f"spark: {exc}") from None
    for name, title in checklist.gates.items():
        if name not in CLAIM_MARKERS:  # the claim markers are registered with their meaning
            config.addinivalue_line("markers", f"{name}: gate marker: {title}")
    try:
        gate = gate_named(markexpr, checklist.gates)
    except GateExpressionError as exc:
        raise pytest.UsageError(f"spark: {exc}") from None
    _check_pin(spark, gate, checklist)
    if gate == CANARY_GATE and spark.stage is None and not config.option.collectonly:
        raise pytest.UsageError(
            "spark: the canary gate judges one stage: add --spark-stage N (a stage of "
            "ops/canary-plan.toml), e.g. pytest -m canary --spark-stage 25"
        )
    redactor = Redactor(spark.target.secret_values())
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if gate is None or config.option.collectonly:
        # A no-gate run may not select gate tests (checked at collection); --collect-only
        # shows the selection and decides nothing, so it writes no bundle.
        return GatePlugins(ClaimRecorder(config, spark, checklist, gate, None, redactor))
    if workerinput is not None:
        # xdist worker: the controller owns the bundle; attachments go into its folder.
        bundle = Bundle(Path(workerinput["spark_bundle_dir"]), redactor)
        return GatePlugins(ClaimRecorder(config, spark, checklist, gate, bundle, redactor))
    try:
        waivers = load_waivers(spark.waivers_path, checklist)
    except WaiverFileError as exc:
        raise pytest.UsageError(f"spark: {exc}") from None
    if not config.pluginmanager.hasplugin("html"):
        raise pytest.UsageError(
            "spark: the sign-off report needs pytest-html; remove '-p no:html' "
            "(or install pytest-html)"
        )
    try:
        key = load_signing_key(spark.signing_key, spark.rootdir)
    except SigningKeyError as exc:
        raise pytest.UsageError(f"spark: {exc}") from None
    run_id = new_run_id(now)
    bundle = Bundle(spark.evidence_dir / spark.release / run_id, redactor)
    try:
        bundle.create()
    except OSError as exc:
        raise pytest.UsageError(
            f"spark: cannot create the evidence bundle {bundle.root}: {exc.strerror or exc}; "
            "point --spark-evidence-dir at a writable directory"
        ) from None
    if not config.option.htmlpath:
        config.option.htmlpath = str(bundle.root / "report.html")
    config.option.self_contained_html = True
    if not config.option.xmlpath:
        config.option.xmlpath = str(bundle.root / "junit.xml")
    recorder = ClaimRecorder(config, spark, checklist, gate, bundle, redactor)
    reporter = GateReporter(
        config, spark, checklist, waivers, gate, bundle, key, redactor, run_id, recorder
    )
    reporter.inputs_at_start = fingerprint_inputs(spark)
    return GatePlugins(recorder, reporter)


def _check_pin(spark: SparkConfig, gate: str | None, checklist: Checklist) -> None:
    """A gate set anywhere but -m only pins it: it must agree with what -m names."""
    pinned = spark.gate
    if pinned is None:
        return
    where = "--spark-gate, SPARK_GATE, the spark_gate ini key or the target's [settings]"
    if pinned not in checklist.gates:
        raise pytest.UsageError(
            f"spark: the gate is pinned to {pinned!r} ({where}), which is not a gate of "
            f"{checklist.path}; choose one of {', '.join(checklist.gates)}"
        )
    if gate != pinned:
        named = f"names gate {gate!r}" if gate else "names no gate"
        raise pytest.UsageError(
            f"spark: the gate is pinned to {pinned!r} ({where}) but -m {named}; "
            f"run `pytest -m {pinned}`, or remove the pin"
        )


def _refuse_without_checklist(spark: SparkConfig, markexpr: str) -> ChecklistMissingGuard:
    where = spark.checklist_path
    if spark.checklist_explicit:
        raise pytest.UsageError(
            f"spark: the checklist {where} does not exist; check --spark-checklist "
            "(or SPARK_CHECKLIST, spark_checklist, the target's [settings])"
        )
    if spark.gate is not None or set(IDENT.findall(markexpr)) & CLAIM_MARKERS:
        raise pytest.UsageError(
            f"spark: a gate run needs the checklist, and there is none at {where} (rootdir "
            f"{spark.rootdir}); run from the repository root, or pass --spark-checklist"
        )
    return ChecklistMissingGuard(where)


class ChecklistMissingGuard:
    """Without a checklist, a run that collects tests claiming checklist items is refused,
    selected or not: without the registry the gate markers they imply are unknown, so `-m`
    would deselect them all and the run would end with nothing measured and no verdict."""

    def __init__(self, checklist_path: Path) -> None:
        self.checklist_path = checklist_path

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        claiming = [
            i.nodeid for i in items if any(m.name in CLAIM_MARKERS for m in i.iter_markers())
        ]
        if claiming:
            raise pytest.UsageError(
                f"spark: {len(claiming)} collected test(s) claim checklist items (e.g. "
                f"{claiming[0]}) but there is no checklist at {self.checklist_path}; run from "
                "the repository root, or pass --spark-checklist"
            )
