"""Every stash key of the plugin, in one leaf module: it imports nothing from the plugin at
run time, so any module can reach a key without importing upward (plugin.py, the recorder)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # names in the keys' type parameters, which are evaluated lazily
    from pytest_spark.config import SparkConfig  # noqa: F401
    from pytest_spark.evidence.records import CheckEvidence  # noqa: F401

# config.stash: the resolved configuration of the run.
spark_config_key = pytest.StashKey["SparkConfig"]()
# config.stash: the run's plugin objects (run.GatePlugins), unregistered at unconfigure.
plugins_key = pytest.StashKey[Any]()
# config.stash: the per-process claim/outcome recorder (every process of a gate run).
recorder_key = pytest.StashKey[Any]()
# config.stash: the reporter that decides, writes and signs (the controller only).
reporter_key = pytest.StashKey[Any]()
# config.stash: the target session (opens the target once, shares it with xdist workers).
target_session_key = pytest.StashKey[Any]()

# item.stash: the checklist items the test claims through its markers.
claims_key = pytest.StashKey[tuple[str, ...]]()
# item.stash: what the test recorded through the spark_evidence fixture.
evidence_key = pytest.StashKey["CheckEvidence"]()
# item.stash: set by the recorder's own pytest_runtest_call wrapper: the body really ran.
call_ran_key = pytest.StashKey[bool]()
