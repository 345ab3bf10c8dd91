"""pytest-spark-gate: the Spark readiness checklist as measured tests and a signed bundle.

The public API the suites use; everything else is an implementation detail::

    from pytest_spark import CheckEvidence, Reach, Target

    @pytest.mark.blind_spot("B1")
    def test_ntp_offset(reach: Reach, spark_evidence: CheckEvidence) -> None:
        with reach("ntp_server") as [server]:
            offset = ...
        spark_evidence.check("ntp_offset_ms", offset, limit=100, unit="ms", why="...")
"""

from typing import TYPE_CHECKING

from pytest_spark.canary_plan import CanaryPlan, Stage, StageMetric, load_plan, plan_problems
from pytest_spark.checklist import ChecklistError
from pytest_spark.checklist import load as load_checklist
from pytest_spark.config import SparkConfig, Target, TargetConfigError
from pytest_spark.evidence.chart import line_chart
from pytest_spark.evidence.records import CheckEvidence, Inconclusive, Measurement
from pytest_spark.fixtures import Reach
from pytest_spark.ops import OpsFileError, load_ops, ops_key
from pytest_spark.triggers import RollbackTriggers, RuleSettings, Trigger, load_triggers
from pytest_spark.waivers import WaiverFileError
from pytest_spark.waivers import load as load_waivers

if TYPE_CHECKING:
    from pytest_spark.bundles import FoundBundle, find_bundle
    from pytest_spark.rollback import Deployment, Rollback, RollbackRequest, RollbackRun
    from pytest_spark.signing import SigningKeyError, load_signing_key

# Names whose modules pull cryptography: imported on first use, so that loading the plugin
# stays light (tests/gate/test_plugin_surface.py holds it to that).
_LAZY = {
    "FoundBundle": "pytest_spark.bundles",
    "find_bundle": "pytest_spark.bundles",
    "SigningKeyError": "pytest_spark.signing",
    "load_signing_key": "pytest_spark.signing",
    "Deployment": "pytest_spark.rollback",
    "Rollback": "pytest_spark.rollback",
    "RollbackRequest": "pytest_spark.rollback",
    "RollbackRun": "pytest_spark.rollback",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_spark' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "CanaryPlan",
    "CheckEvidence",
    "ChecklistError",
    "Deployment",
    "FoundBundle",
    "Inconclusive",
    "Measurement",
    "OpsFileError",
    "Reach",
    "Rollback",
    "RollbackRequest",
    "RollbackRun",
    "RollbackTriggers",
    "RuleSettings",
    "SigningKeyError",
    "SparkConfig",
    "Stage",
    "StageMetric",
    "Target",
    "TargetConfigError",
    "Trigger",
    "WaiverFileError",
    "__version__",
    "find_bundle",
    "line_chart",
    "load_checklist",
    "load_ops",
    "load_plan",
    "load_signing_key",
    "load_triggers",
    "load_waivers",
    "ops_key",
    "plan_problems",
]
