"""Fixtures the suites use: evidence recording, the resolved config, the target under test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_spark.config import SparkConfig, Target
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.evidence.redact import Redactor


@pytest.fixture
def spark_evidence(request: pytest.FixtureRequest) -> CheckEvidence:
    """Record measurements, notes and attachments for this test's checklist items."""
    from pytest_spark.plugin import run_key
    from pytest_spark.session import claims_key, evidence_key

    run = request.config.stash.get(run_key, None)
    bundle = getattr(run, "bundle", None)
    redactor = getattr(run, "redactor", None) or Redactor()
    evidence = CheckEvidence(
        nodeid=request.node.nodeid,
        items=request.node.stash.get(claims_key, ()),
        attachments_dir=bundle.attachments_dir if bundle is not None else None,
        redactor=redactor,
    )
    request.node.stash[evidence_key] = evidence
    return evidence


@pytest.fixture(scope="session")
def spark_config(pytestconfig: pytest.Config) -> SparkConfig:
    """The run's resolved configuration (CLI > env > ini > target file > defaults)."""
    from pytest_spark.plugin import spark_config_key

    return pytestconfig.stash[spark_config_key]


@pytest.fixture(scope="session")
def spark_target(spark_config: SparkConfig, pytestconfig: pytest.Config) -> Iterator[Target]:
    """The deployment under test; the embedded sandbox is started here when none is running."""
    from pytest_spark.targets import open_target

    with open_target(spark_config, pytestconfig) as target:
        yield target
