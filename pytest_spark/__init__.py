"""pytest-spark-gate: the Spark readiness checklist as measured tests and a signed bundle.

The public API the suites use; everything else is an implementation detail::

    from pytest_spark import CheckEvidence, Reach, Target

    @pytest.mark.blind_spot("B1")
    def test_ntp_offset(reach: Reach, spark_evidence: CheckEvidence) -> None:
        with reach("ntp_server") as [server]:
            offset = ...
        spark_evidence.check("ntp_offset_ms", offset, limit=100, unit="ms", why="...")
"""

from pytest_spark.config import SparkConfig, Target, TargetConfigError
from pytest_spark.evidence.records import CheckEvidence, Inconclusive, Measurement
from pytest_spark.fixtures import Reach
from pytest_spark.ops import OpsFileError, load_ops, ops_key

__version__ = "0.1.0"
__all__ = [
    "CheckEvidence",
    "Inconclusive",
    "Measurement",
    "OpsFileError",
    "Reach",
    "SparkConfig",
    "Target",
    "TargetConfigError",
    "__version__",
    "load_ops",
    "ops_key",
]
