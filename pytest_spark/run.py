"""Turn a resolved SparkConfig into this run's GateRun: registry, waivers, key, bundle paths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.checklist import ChecklistError
from pytest_spark.checklist import load as load_checklist
from pytest_spark.config import SparkConfig
from pytest_spark.evidence.bundle import Bundle, new_run_id
from pytest_spark.evidence.redact import Redactor
from pytest_spark.session import GateRun
from pytest_spark.signing import SigningKeyError, load_signing_key
from pytest_spark.waivers import WaiverFileError
from pytest_spark.waivers import load as load_waivers


def configure_run(config: pytest.Config, spark: SparkConfig, now: dt.datetime) -> GateRun | None:
    """The run's GateRun, or None when there is no checklist and no gate is asked for."""
    markexpr = (config.option.markexpr or "").strip()
    if not spark.checklist_path.exists() and spark.gate is None:
        return None  # a plain pytest run outside a project with a checklist
    try:
        checklist = load_checklist(spark.checklist_path)
    except ChecklistError as exc:
        raise pytest.UsageError(f"spark: {exc}") from None
    for name, title in checklist.gates.items():
        config.addinivalue_line("markers", f"{name}: gate marker: {title}")
    gate = spark.gate or (markexpr if markexpr in checklist.gates else None)
    if gate is not None and gate not in checklist.gates:
        raise pytest.UsageError(
            f"--spark-gate {gate!r} is not a gate of {checklist.path}; "
            f"choose one of {', '.join(checklist.gates)}"
        )
    redactor = Redactor(spark.target.secret_values())
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if gate is None:
        return GateRun(config, spark, checklist, (), None, None, None, redactor, "")
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
    bundle.create()
    if not config.option.htmlpath:
        config.option.htmlpath = str(bundle.root / "report.html")
    config.option.self_contained_html = True
    if not config.option.xmlpath:
        config.option.xmlpath = str(bundle.root / "junit.xml")
    return GateRun(config, spark, checklist, waivers, gate, bundle, key, redactor, run_id)


class XdistBridge:
    """Hands the controller's bundle folder and run id to each xdist worker."""

    def __init__(self, run: GateRun) -> None:
        self.run = run

    def pytest_configure_node(self, node: Any) -> None:
        if self.run.bundle is not None:
            node.workerinput["spark_bundle_dir"] = str(self.run.bundle.root)
            node.workerinput["spark_run_id"] = self.run.run_id
