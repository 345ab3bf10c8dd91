"""Sealing a decided run: the files other plugins wrote are taken in and scrubbed, the inputs
that decided it are bound by digest, and the statement is signed, last."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pytest_spark import signing
from pytest_spark.config import SparkConfig
from pytest_spark.evidence.bundle import Bundle, CheckRecord
from pytest_spark.evidence.inputs import record_inputs
from pytest_spark.evidence.junit import carry_gate_properties
from pytest_spark.gate import Verdict

# The reports pytest-html and junitxml write, by their option and their name in the bundle.
REPORT_FILES = (("htmlpath", "report.html"), ("xmlpath", "junit.xml"))


def take_in_reports(config: pytest.Config, bundle: Bundle) -> None:
    """Copy report.html and junit.xml in when the user chose other paths, and scrub them
    (both copies) before they are signed."""
    for option, name in REPORT_FILES:
        chosen = config.getoption(option, None)
        # As pytest-html and junitxml do: `--html=~/r.html` is not expanded by the shell.
        path = Path(os.path.expandvars(chosen)).expanduser() if chosen else None
        if path is not None and path.resolve() != (bundle.root / name).resolve():
            bundle.adopt(path, name)
        else:
            bundle.redact_in_place(name)


def seal(
    bundle: Bundle,
    key: signing.SigningKey,
    spark: SparkConfig,
    verdict: Verdict,
    records: Mapping[str, CheckRecord],
    run: Mapping[str, object],
    target_notes: Sequence[str] = (),
) -> None:
    """Sign the bundle: ``run`` names it (run id, target), ``target_notes`` say how the
    target was opened (one sandbox start); raises UnsignableBundle when the bundle holds
    something that could not be verified."""
    junit = bundle.root / "junit.xml"
    if junit.exists():
        # The bundle's copy, already scrubbed; the values added here are scrubbed as added.
        carry_gate_properties(junit, verdict, str(run["run_id"]), records, bundle.redactor.text)
    predicate = {
        "result": "PASSED" if verdict.go else "FAILED",
        "passedTests": [i for i, r in verdict.items.items() if r.status == "PASSED"],
        "warnedTests": [i for i, r in verdict.items.items() if r.status == "WAIVED"],
        "failedTests": [r.id for r in verdict.not_passed()],
        # The files that decided the verdict, by digest: a name alone would let a weakened
        # checklist from outside the repository pass for the real one.
        "configuration": record_inputs(bundle, spark, target_notes),
        "spark": {
            **verdict.to_json(),
            "release": verdict.release,
            "gate": verdict.gate,
            **run,
        },
        "signing": {"mode": key.mode, "key_fingerprint": key.fingerprint},
    }
    signing.sign_bundle(bundle.root, key, predicate)
