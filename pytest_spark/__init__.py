"""pytest-spark-gate: the Spark readiness checklist as measured tests and a signed bundle."""

__version__ = "0.1.0"
__all__ = ["__version__"]
