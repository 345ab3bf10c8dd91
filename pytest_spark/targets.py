"""The target session: opens the run's target once, shares it with xdist workers, closes it.

The plugin knows no provider: a target is opened through the ``pytest_spark_open_target`` hook
(the first plugin that answers provides it; the embedded sandbox's plugin answers for targets
of kind ``sandbox``). A target of kind ``deployment`` that no provider answers for is measured
as its file describes it. A provider may leave lines about what it did (``sandbox started
...``) in the opened target's ``settings["notes"]``; they join :attr:`TargetSession.notes`.

Without pytest-xdist the target opens at its first use (the ``spark_target`` fixture) and
closes when the session ends. Under pytest-xdist, when a gate is in play, the controller opens
it at ``pytest_sessionstart``, before xdist starts its workers, and hands it to each of them in
``workerinput``: the workers rebuild the :class:`~pytest_spark.config.Target` and never start
anything, so the gate measures one deployment. The controller closes it after the workers are
done. Secrets the target holds reach the run's redactor the moment a process has them.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.config import DEPLOYMENT, SANDBOX, SparkConfig, Target
from pytest_spark.evidence.redact import Redactor
from pytest_spark.keys import recorder_key

PLUGIN_NAME = "spark-target-session"
WORKER_TARGET = "spark_target"
WORKER_TARGET_ERROR = "spark_target_error"
# The provider of each kind that needs one, for the error when none is installed.
PROVIDERS = {SANDBOX: ("spark_sandbox", "spark_sandbox.plugin", "pytest-spark-gate")}


class TargetOpenError(RuntimeError):
    """The run's target could not be opened; every check that needs it fails with this."""


class TargetSession:
    """Opens the run's target once (lazily, or on the xdist controller up front) and closes
    it at the end of the session; ``notes`` are lines about it for the bundle."""

    def __init__(self, config: pytest.Config, spark: SparkConfig, redactor: Redactor) -> None:
        self.config = config
        self.spark = spark
        self.redactor = redactor
        self.notes: list[str] = []
        self._target: Target | None = None
        self._error: str | None = None
        self._failure: BaseException | None = None
        self._opened: contextlib.ExitStack | None = None
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        if workerinput is not None and WORKER_TARGET in workerinput:
            self._hold(target_from_wire(workerinput[WORKER_TARGET], spark.target))
            self.notes.append("target handed over by the xdist controller")
        elif workerinput is not None and WORKER_TARGET_ERROR in workerinput:
            self._error = str(workerinput[WORKER_TARGET_ERROR])

    def target(self) -> Target:
        """The opened target; opened now if this is its first use."""
        if self._target is None and self._error is None:
            self._open()
        if self._error is not None:
            raise TargetOpenError(self._error) from self._failure
        assert self._target is not None
        return self._target

    def close(self) -> None:
        """Release what the provider started (idempotent; a worker has nothing to release)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            began = time.monotonic()
            opened.close()
            self.notes.append(f"target released in {time.monotonic() - began:.1f} s")

    def _open(self) -> None:
        began = time.monotonic()
        stack = contextlib.ExitStack()
        try:
            provided: AbstractContextManager[Target] | None = (
                self.config.hook.pytest_spark_open_target(config=self.config, spark=self.spark)
            )
            if provided is None:
                target = self._without_provider()
            else:
                self._opened = stack
                target = stack.enter_context(provided)
        except Exception as exc:
            stack.close()
            self._opened = None
            self._fail(exc)
            return
        self._hold(target)
        self.notes.append(
            f"target {target.name} ({target.kind}) opened in {time.monotonic() - began:.1f} s"
        )

    def _fail(self, exc: Exception) -> None:
        # Kept, not retried: every check that needs the target fails with the same error (with
        # the provider's log lines), instead of starting it again test after test.
        self._failure = exc
        message = str(exc)
        if not isinstance(exc, TargetOpenError):
            target = self.spark.target
            message = f"cannot open the target {target.name} ({target.kind}): {exc}"
        self._error = self.redactor.text(message)
        self.notes.append(self._error.splitlines()[0])

    def _without_provider(self) -> Target:
        target = self.spark.target
        if target.kind == DEPLOYMENT:
            return target
        name, module, distribution = PROVIDERS.get(target.kind, ("?", "?", "?"))
        raise TargetOpenError(
            f"no plugin answered pytest_spark_open_target for the target {target.name} of kind "
            f"{target.kind!r}: its provider, the pytest plugin {name!r} ({module}, shipped with "
            f"{distribution}), is not installed or was disabled with -p no:{name}; install "
            f"{distribution} with its plugins, or point --spark-target at a target file of "
            f"kind {DEPLOYMENT!r}"
        )

    def _hold(self, target: Target) -> None:
        self.redactor.add(target.secret_values())
        self._target = target
        notes = target.settings.get("notes")
        if isinstance(notes, list):
            self.notes.extend(str(note) for note in notes)

    # -- hooks ---------------------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Before xdist's own (trylast) sessionstart starts the workers: they get the target.
        if _distributing(self.config) and _gate_in_play(self.config):
            with contextlib.suppress(TargetOpenError):
                self.target()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self._target is not None:
            node.workerinput[WORKER_TARGET] = target_to_wire(self._target)
        elif self._error is not None:
            node.workerinput[WORKER_TARGET_ERROR] = self._error

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # trylast: after xdist has taken its workers down, so none measures a stopped target.
        self.close()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()


def register(config: pytest.Config, spark: SparkConfig, redactor: Redactor) -> TargetSession:
    """The run's target session, registered as a plugin (once: a second call returns it)."""
    existing = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(existing, TargetSession):
        return existing
    session = TargetSession(config, spark, redactor)
    config.pluginmanager.register(session, PLUGIN_NAME)
    return session


def _distributing(config: pytest.Config) -> bool:
    """This process is an xdist controller that will start workers."""
    return config.pluginmanager.has_plugin("dsession") and not hasattr(config, "workerinput")


def _gate_in_play(config: pytest.Config) -> bool:
    """A gate run measures the target: open it up front. Other runs (the project's own tests
    under -n) may never use it, and a worker that does opens its own."""
    return getattr(config.stash.get(recorder_key, None), "bundle", None) is not None


def target_to_wire(target: Target) -> dict[str, Any]:
    """The target as execnet can send it (str, int, float, bool, None, list, dict)."""
    return {
        "name": target.name,
        "kind": target.kind,
        "path": str(target.path) if target.path is not None else None,
        "endpoints": dict(target.endpoints),
        "secret_env": dict(target.secret_env),
        "secrets": dict(target.secrets),
        "settings": _plain(dict(target.settings)),
        "chaos": _plain(dict(target.chaos)),
    }


def target_from_wire(data: dict[str, Any], loaded: Target) -> Target:
    path = data.get("path")
    return Target(
        name=str(data["name"]),
        kind=str(data["kind"]),
        path=Path(path) if path else loaded.path,
        endpoints=dict(data["endpoints"]),
        secret_env=dict(data["secret_env"]),
        settings=dict(data["settings"]),
        secrets=dict(data["secrets"]),
        chaos=dict(data.get("chaos") or {}),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
