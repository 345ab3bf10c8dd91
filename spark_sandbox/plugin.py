"""The embedded sandbox as a pytest plugin: the target provider for targets of kind ``sandbox``.

Loaded through its own ``pytest11`` entry point. It implements the gate's
``pytest_spark_open_target`` (reuse the sandbox ``spark-gate sandbox up`` left running, unless
defects are asked for; else start one for the run) and ``pytest_spark_reproduce_args``, and
owns ``--spark-sandbox-defect`` (ini ``spark_sandbox_defects``, env ``SPARK_SANDBOX_DEFECTS``,
comma-separated; CLI over env over ini). Importing it is cheap: the orchestrator is imported
when a sandbox is opened.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_spark.config import SparkConfig, Target
    from spark_sandbox.endpoints import Endpoints

OPTION = "--spark-sandbox-defect"
INI = "spark_sandbox_defects"
ENV = "SPARK_SANDBOX_DEFECTS"
SANDBOX_KIND = "sandbox"
defects_key = pytest.StashKey[tuple[str, ...]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("spark-sandbox", "Spark embedded sandbox")
    group.addoption(
        OPTION,
        dest="spark_sandbox_defects",
        action="append",
        default=None,
        metavar="NAME",
        help="start the embedded sandbox with this seeded defect (repeatable; names in "
        f"spark_sandbox/defects.py) [env {ENV}, comma-separated]",
    )
    parser.addini(INI, "seeded defects for the embedded sandbox, one per line", type="linelist")


def requested_defects(config: pytest.Config) -> tuple[str, ...]:
    """The defects asked for: the option, else the variable, else the ini key."""
    cli = config.getoption("spark_sandbox_defects", None)
    if cli:
        return tuple(cli)
    if os.environ.get(ENV):
        return tuple(d.strip() for d in os.environ[ENV].split(",") if d.strip())
    return tuple(config.getini(INI))


def pytest_configure(config: pytest.Config) -> None:
    defects = requested_defects(config)
    if defects:
        from spark_sandbox.defects import DEFECTS

        unknown = [name for name in defects if name not in DEFECTS]
        if unknown:
            raise pytest.UsageError(
                f"{OPTION} {', '.join(unknown)}: no such sandbox defect (from the option, {ENV} "
                f"or the {INI} ini key); the known defects are: {', '.join(sorted(DEFECTS))}"
            )
        kind = _target_kind(config)
        if kind is not None and kind != SANDBOX_KIND:
            raise pytest.UsageError(
                f"{OPTION} seeds faults into the embedded sandbox, but the target is of kind "
                f"{kind!r}, a deployment the run only measures; drop the defects (option, "
                f"{ENV} or {INI}) or run against --spark-target sandbox"
            )
    config.stash[defects_key] = defects


def _target_kind(config: pytest.Config) -> str | None:
    """The kind of the run's target once the gate plugin resolved it (None without it)."""
    try:
        from pytest_spark.keys import spark_config_key
    except ImportError:
        return None
    spark = config.stash.get(spark_config_key, None)
    return None if spark is None else str(spark.target.kind)


@pytest.hookimpl(optionalhook=True)
def pytest_spark_reproduce_args(config: pytest.Config) -> list[str]:
    return [arg for name in config.stash.get(defects_key, ()) for arg in (OPTION, name)]


@pytest.hookimpl(optionalhook=True)
def pytest_spark_open_target(
    config: pytest.Config, spark: SparkConfig
) -> contextlib.AbstractContextManager[Target] | None:
    if spark.target.kind != SANDBOX_KIND:
        return None
    return open_sandbox(config, spark.target, config.stash.get(defects_key, ()))


@contextlib.contextmanager
def open_sandbox(
    config: pytest.Config, target: Target, defects: tuple[str, ...]
) -> Iterator[Target]:
    """The sandbox ``sandbox up`` left running (when no defects are asked for), else a new one
    that is stopped when the context ends."""
    from spark_sandbox.sandbox import Sandbox, find_running

    terminal = config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if terminal is not None:
            terminal.write_line(f"spark sandbox: {line}")

    running = None if defects else find_running(report=progress)
    if running is not None:
        progress(f"using the running sandbox in {running.run_dir}")
        yield as_target(target, running, f"reused the running sandbox {running.run_dir}")
        return
    began = time.monotonic()
    sandbox = Sandbox(defects=defects, progress=progress)
    endpoints = sandbox.start()
    seeded = f" with defects {', '.join(defects)}" if defects else ""
    note = f"sandbox started{seeded}: {endpoints.run_dir} in {time.monotonic() - began:.1f} s"
    try:
        yield as_target(target, endpoints, note)
    finally:
        sandbox.stop()


def running_target() -> Target | None:
    """The sandbox ``spark-gate sandbox up`` left running, as a target; None without one."""
    from spark_sandbox.state import find_running

    running = find_running()
    if running is None:
        return None
    from pytest_spark.config import Target

    target = Target(name=SANDBOX_KIND, kind=SANDBOX_KIND)
    return as_target(target, running, f"the running sandbox {running.run_dir}")


def newest_migration(migrations_dir: Path) -> str:
    return max((p.name for p in migrations_dir.iterdir() if p.is_dir()), default="")


def as_target(target: Target, endpoints: Endpoints, note: str) -> Target:
    """The run's target with the sandbox's endpoints, its credentials as secrets, and facts
    about this deployment (run dir, defects, pids) as settings.

    The canary gate's keys are derived: the canary track is the API behind the fault proxy
    (``api_url``), the stable track ``stable_api_url``, and each track's series carry the
    target label ``track`` that ``canary_selector`` / ``stable_selector`` match (a real
    target file names its own matchers). So is G04's local restore environment (``pitr_*``):
    the drill restores on this host, beside the sandbox, never over it."""
    from spark_sandbox.deployment import ROLLBACK_PROXY
    from spark_sandbox.endpoints import CANARY_TRACK, STABLE_TRACK
    from spark_sandbox.services import postgres

    data = endpoints.to_dict()
    secrets = endpoints.secrets()
    facts = {"run_dir", "defects", "pids", "passwords", *secrets}
    derived = {
        "oncall_readback_url": endpoints.oncall_readback_url,
        "canary_api_url": endpoints.api_url,
        "canary_web_url": endpoints.web_url,
        "stable_web_url": endpoints.stable_web_url,
        "canary_selector": f'track="{CANARY_TRACK}"',
        "stable_selector": f'track="{STABLE_TRACK}"',
        # G05: the deployer's rollback moves the fault proxy's spark_api upstream to
        # rollback_upstream (the stable track), and notifies the alert sink's message log.
        "rollback_proxy": ROLLBACK_PROXY,
        "rollback_webhook_url": endpoints.rollback_webhook_url,
        # Both tracks run one schema: the previous release shipped with every migration here.
        "previous_release_migration": newest_migration(endpoints.migrations_dir),
        # G04's restore drill runs here, on this host: the sandbox's PostgreSQL binaries, the
        # user its server runs as, its WAL archive and a scratch folder that user may write.
        "pitr_postgres_bin_dir": str(postgres.PG_BIN),
        "pitr_postgres_os_user": postgres.SERVICE_USER,
        "pitr_wal_archive_dir": str(postgres.wal_archive_dir(endpoints.run_dir)),
        "pitr_scratch_dir": str(postgres.pitr_scratch_dir(endpoints.run_dir)),
    }
    return replace(
        target,
        endpoints={**{k: str(v) for k, v in data.items() if k not in facts}, **derived},
        secrets=secrets,
        settings={
            **target.settings,
            "run_dir": data["run_dir"],
            "sandbox_defects": list(endpoints.defects),
            "pids": dict(endpoints.pids),
            "notes": [note],
        },
    )
