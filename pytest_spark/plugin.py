"""pytest-spark-gate's entry point: options, markers and wiring, nothing else.

Importing this module must stay cheap: no Playwright, psycopg, pact or httpx (a test checks).
The concerns live in their own modules and are imported inside the hooks that need them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from typing import Any

import pytest

from pytest_spark import config as spark_config

spark_config_key = pytest.StashKey["spark_config.SparkConfig"]()
run_key = pytest.StashKey[Any]()  # the GateRun; typed loosely to keep its import lazy

MARKERS = {
    "blind_spot": "blind_spot(*ids): the test measures blind-spot items, e.g. blind_spot('B3')",
    "go_nogo": "go_nogo(*ids): the test measures GO/NO-GO checklist items, e.g. go_nogo('G05')",
    "money": "money(*ids): the test measures decimal money items, e.g. money('M1')",
    "contract": "contract(*ids): the test verifies consumer contracts, e.g. contract('K1')",
    "rollback": "rollback(*ids): the test checks rollback trigger rules, e.g. rollback('T05')",
    "canary": "canary(*ids): the test measures a canary stage metric, e.g. canary('S1')",
    "chaos": "chaos(*ids): the test runs a chaos scenario, e.g. chaos('C2')",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    spark_config.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: junitxml and pytest-html read their output paths in their own configure hooks,
    # so the bundle's paths must be set before they run.
    for line in MARKERS.values():
        config.addinivalue_line("markers", line)
    config.pluginmanager.import_plugin("pytest_spark.fixtures")
    if config.option.help:
        return
    from pytest_spark.run import configure_run

    spark = spark_config.resolve(config)
    config.stash[spark_config_key] = spark
    run = configure_run(config, spark, now=dt.datetime.now(dt.UTC))
    if run is not None:
        config.stash[run_key] = run
        config.pluginmanager.register(run, "spark-gate-run")
        if run.bundle is not None:  # a gate is in play, on the controller and on each worker
            from pytest_spark.secrecy import SecretGuard

            config.pluginmanager.register(SecretGuard(run.redactor), "spark-secret-guard")
        if config.pluginmanager.hasplugin("xdist"):
            from pytest_spark.run import XdistBridge

            config.pluginmanager.register(XdistBridge(run), "spark-gate-xdist")


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    """The exit code of a gate run is the verdict's, whatever else set one.

    ``pytest.exit(returncode=0)`` in a late hook, or another plugin rewriting
    ``session.exitstatus``, could otherwise turn a NO-GO into exit 0. This wrapper around the
    whole run is the last word: a gate in play without a GO verdict never exits 0.
    """
    code = yield
    run = config.stash.get(run_key, None)
    if run is None or not run.is_controller or code not in (0, pytest.ExitCode.OK):
        return code
    verdict = run.verdict
    return (
        pytest.ExitCode.OK if verdict is not None and verdict.go else pytest.ExitCode.TESTS_FAILED
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(run_key, None)
    if run is not None:
        config.pluginmanager.unregister(run)
    guard = config.pluginmanager.get_plugin("spark-secret-guard")
    if guard is not None:
        config.pluginmanager.unregister(guard)
