"""The plugin's own hooks, added in ``pytest_addhooks``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_spark.config import SparkConfig, Target


@pytest.hookspec(firstresult=True)
def pytest_spark_open_target(
    config: pytest.Config, spark: SparkConfig
) -> AbstractContextManager[Target] | None:
    """Provide the deployment the suites measure, or None to let another provider answer.

    Called once per run, by the process that opens the target (the controller under
    pytest-xdist, which hands the target's endpoints to its workers). The context manager
    yields a :class:`~pytest_spark.Target` with every endpoint a check may ``require`` and,
    in ``Target.secrets``, the credentials the provider created (the run redacts them); it
    releases the deployment on exit. A target file of kind ``deployment`` needs no provider:
    the plugin measures its endpoints as they are. The embedded sandbox is a provider
    (``spark_sandbox.plugin``) for targets of kind ``sandbox``.
    """


def pytest_spark_reproduce_args(config: pytest.Config) -> list[str]:
    """Command-line arguments a plugin adds to the run's reproduce line (every result is
    appended, e.g. the sandbox's ``--spark-sandbox-defect NAME``), so that running the line
    again measures the same thing."""
    return []
