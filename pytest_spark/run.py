"""Turn a resolved SparkConfig into this run's GateRun: registry, waivers, key, bundle paths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.checklist import Checklist, ChecklistError
from pytest_spark.checklist import load as load_checklist
from pytest_spark.config import SparkConfig
from pytest_spark.evidence.bundle import Bundle, new_run_id
from pytest_spark.evidence.inputs import fingerprint as fingerprint_inputs
from pytest_spark.evidence.redact import Redactor
from pytest_spark.markexpr import IDENT, GateExpressionError, gate_named
from pytest_spark.session import CLAIM_MARKERS, GateRun
from pytest_spark.signing import SigningKeyError, load_signing_key
from pytest_spark.waivers import WaiverFileError
from pytest_spark.waivers import load as load_waivers


def configure_run(config: pytest.Config, spark: SparkConfig, now: dt.datetime) -> GateRun | None:
    """The run's GateRun, or None when no checklist applies to it.

    The gate never switches itself off in silence: a missing checklist, or a run that
    selects tests claiming checklist items without naming a gate, is a usage error (raised
    here, or at collection by the guard registered for it).
    """
    markexpr = config.option.markexpr or ""
    if not spark.checklist_path.exists():
        _refuse_without_checklist(config, spark, markexpr)
        return None
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
    redactor = Redactor(spark.target.secret_values())
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if gate is None or config.option.collectonly:
        # A no-gate run may not select gate tests (checked at collection); --collect-only
        # shows the selection and decides nothing, so it writes no bundle.
        return GateRun(config, spark, checklist, (), gate, None, None, redactor, "")
    try:
        waivers = load_waivers(spark.waivers_path, checklist)
    except WaiverFileError as exc:
        raise pytest.UsageError(f"spark: {exc}") from None
    if workerinput is not None:
        # xdist worker: the controller owns the bundle; attachments go into its folder.
        bundle = Bundle(Path(workerinput["spark_bundle_dir"]), redactor)
        return GateRun(
            config,
            spark,
            checklist,
            waivers,
            gate,
            bundle,
            None,
            redactor,
            workerinput["spark_run_id"],
        )
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
    run = GateRun(config, spark, checklist, waivers, gate, bundle, key, redactor, run_id)
    run.inputs_at_start = fingerprint_inputs(spark)
    return run


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


def _refuse_without_checklist(config: pytest.Config, spark: SparkConfig, markexpr: str) -> None:
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
    config.pluginmanager.register(ChecklistMissingGuard(where), "spark-gate-no-checklist")


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


class XdistBridge:
    """Hands the controller's bundle folder and run id to each xdist worker."""

    def __init__(self, run: GateRun) -> None:
        self.run = run

    def pytest_configure_node(self, node: Any) -> None:
        if self.run.bundle is not None:
            node.workerinput["spark_bundle_dir"] = str(self.run.bundle.root)
            node.workerinput["spark_run_id"] = self.run.run_id
