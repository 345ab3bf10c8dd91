"""The readiness checklist as tests.

Each suite module claims its checklist items with markers (``@pytest.mark.blind_spot("B3")``)
and measures them on the target from ``--spark-target`` (the embedded sandbox by default)
through the probes in ``pytest_spark.probes``. Thresholds come from ``ops/``, never from here.
"""
