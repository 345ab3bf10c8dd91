"""Evidence: per-check records, the ritual's files, atomic writes and redaction."""

from pytest_spark.evidence.records import CheckEvidence, Inconclusive, Measurement
from pytest_spark.evidence.redact import Redactor

__all__ = ["CheckEvidence", "Inconclusive", "Measurement", "Redactor"]
