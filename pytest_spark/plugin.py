"""pytest-spark-gate's entry point: options, markers and wiring, nothing else.

Importing this module must stay cheap: no Playwright, psycopg, pact or httpx (a test checks).
The concerns live in their own modules and are imported inside the hooks that need them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator

import pytest

from pytest_spark import config as spark_config
from pytest_spark.keys import (
    plugins_key,
    recorder_key,
    reporter_key,
    spark_config_key,
    target_session_key,
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_spark import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    spark_config.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: junitxml and pytest-html read their output paths in their own configure hooks,
    # so the bundle's paths must be set before they run.
    from pytest_spark.claims import marker_lines

    for line in marker_lines():
        config.addinivalue_line("markers", line)
    config.pluginmanager.import_plugin("pytest_spark.fixtures")
    if config.option.help:
        return
    from pytest_spark.run import configure_run

    spark = spark_config.resolve(config)
    config.stash[spark_config_key] = spark
    plugins = configure_run(config, spark, now=dt.datetime.now(dt.UTC))
    config.stash[plugins_key] = plugins
    if plugins.recorder is not None:
        config.stash[recorder_key] = plugins.recorder
    if plugins.reporter is not None:
        config.stash[reporter_key] = plugins.reporter
    config.stash[target_session_key] = plugins.target
    for name, plugin in plugins.in_order():
        config.pluginmanager.register(plugin, name)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    """The exit code of a gate run is the verdict's, whatever else set one.

    ``pytest.exit(returncode=0)`` in a late hook, or another plugin rewriting
    ``session.exitstatus``, could otherwise turn a NO-GO into exit 0. This wrapper around the
    whole run is the last word: a gate in play without a GO verdict never exits 0.
    """
    code = yield
    reporter = config.stash.get(reporter_key, None)
    if reporter is None or code not in (0, pytest.ExitCode.OK):
        return code
    verdict = reporter.verdict
    return (
        pytest.ExitCode.OK if verdict is not None and verdict.go else pytest.ExitCode.TESTS_FAILED
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    plugins = config.stash.get(plugins_key, None)
    for _, plugin in reversed(plugins.in_order() if plugins is not None else []):
        config.pluginmanager.unregister(plugin)
