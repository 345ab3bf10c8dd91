"""Fixtures the suites use: evidence recording, the resolved config, the target under test,
and ``reach``, which names the config key to check when an endpoint cannot be reached."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from pytest_spark.config import SparkConfig, Target
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.evidence.redact import Redactor
from pytest_spark.keys import (
    spark_config_key,
    target_session_key,
)

# ``with reach("api_url", "postgres_dsn") as [api_url, dsn]: ...``
Reach = Callable[..., AbstractContextManager[list[str]]]


@pytest.fixture
def spark_evidence() -> CheckEvidence:
    """Record checks, measurements, notes and attachments for this test's checklist items.

    This one records nowhere: it serves runs the gate does not decide (no checklist). In a
    gate run the recorder's own ``spark_evidence`` (registered later, so it takes precedence)
    gives the test its record."""
    return CheckEvidence(nodeid="", items=(), attachments_dir=None, redactor=Redactor())


@pytest.fixture(scope="session")
def spark_config(pytestconfig: pytest.Config) -> SparkConfig:
    """The run's resolved configuration (CLI > env > ini > target file > defaults)."""
    spark: SparkConfig = pytestconfig.stash[spark_config_key]
    return spark


@pytest.fixture(scope="session")
def spark_target(spark_config: SparkConfig, pytestconfig: pytest.Config) -> Iterator[Target]:
    """The deployment under test, opened once for the run (the embedded sandbox is started
    by its provider plugin, or reused when `spark-gate sandbox up` runs one)."""
    yield pytestconfig.stash[target_session_key].target()


@pytest.fixture
def reach(spark_target: Target) -> Reach:
    """``with reach("api_url", "postgres_dsn") as [api_url, dsn]:`` gives the endpoints named;
    when one cannot be reached the check fails naming the config keys, the endpoints
    (passwords hidden) and the error, which says which host and port refused."""

    @contextlib.contextmanager
    def reaching(*keys: str) -> Iterator[list[str]]:
        endpoints = [spark_target.require(key) for key in keys]
        try:
            yield endpoints
        except _unreachable() as exc:
            hide = Redactor().text  # its patterns mask passwords in conninfo strings and URLs
            shown = "; ".join(f"{k} = {hide(e)}" for k, e in zip(keys, endpoints, strict=True))
            # One line: the gate's reason column shows a failure's last line only.
            error = " ".join(str(exc).split())
            pytest.fail(
                f"cannot reach the target: {error}; check {', '.join(keys)} in the target file "
                f"(or that the deployment is up): {shown}",
                pytrace=False,
            )

    return reaching


def _unreachable() -> tuple[type[BaseException], ...]:
    """Connection errors of the clients the probes use; imported only when a check runs."""
    errors: list[type[BaseException]] = [OSError]
    with contextlib.suppress(ImportError):
        import psycopg

        errors.append(psycopg.OperationalError)
    with contextlib.suppress(ImportError):
        import httpx

        errors.append(httpx.HTTPError)
    return tuple(errors)
