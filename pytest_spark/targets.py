"""The target under test: a configured deployment, or the embedded sandbox started on demand.

The plugin knows the sandbox only through ``spark_sandbox.sandbox``'s public interface
(``Sandbox``, ``find_running``, ``Endpoints.to_dict``); it is imported here, lazily, so that
a gate against staging never loads it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from pytest_spark.config import SparkConfig, Target

DSN_PASSWORD = re.compile(r"password=(\S+)|://[^:/@\s]+:([^@\s]+)@")


@contextlib.contextmanager
def open_target(spark: SparkConfig, config: pytest.Config) -> Iterator[Target]:
    if not spark.target.is_sandbox:
        yield spark.target
        return
    from spark_sandbox.sandbox import Sandbox, find_running

    terminal = config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if terminal is not None and not hasattr(config, "workerinput"):
            terminal.write_line(f"spark sandbox: {line}")

    running = None if spark.sandbox_defects else find_running()
    if running is not None:
        progress(f"using the running sandbox in {running.run_dir}")
        yield _sandbox_target(spark, running.to_dict(), config)
        return
    sandbox = Sandbox(defects=spark.sandbox_defects, progress=progress)
    endpoints = sandbox.start()
    try:
        yield _sandbox_target(spark, endpoints.to_dict(), config)
    finally:
        sandbox.stop()


def _sandbox_target(
    spark: SparkConfig, endpoints: dict[str, object], config: pytest.Config
) -> Target:
    from pytest_spark.plugin import run_key

    flat = {k: str(v) for k, v in endpoints.items() if isinstance(v, str | int | float)}
    run = config.stash.get(run_key, None)
    if run is not None:
        # The sandbox's DSNs carry its (throw-away) passwords, and its control API a bearer
        # token: keep them out of the bundle too.
        run.redactor.add(
            m.group(1) or m.group(2)
            for k, v in flat.items()
            if k.endswith("dsn") and (m := DSN_PASSWORD.search(v))
        )
        run.redactor.add(v for k, v in flat.items() if k.endswith("_token"))
    return replace(spark.target, endpoints=flat, settings={**spark.target.settings, **endpoints})
