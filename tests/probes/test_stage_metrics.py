"""Reading a canary stage from Prometheus answers: one value or no data, and alert sightings."""

from __future__ import annotations

import pytest

from pytest_spark.probes.stage_metrics import sightings, single_value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}, 0.25),
        ({"resultType": "scalar", "result": [1, "3"]}, 3.0),
        ({"resultType": "vector", "result": []}, None),  # no series: no data, not zero
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}, None),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "+Inf"]}]}, None),
        # Two series where one was asked for: which one would be judged? Neither.
        (
            {
                "resultType": "vector",
                "result": [{"metric": {"a": "1"}, "value": [1, "1"]}] * 2,
            },
            None,
        ),
    ],
)
def test_single_value(data: dict[str, object], expected: float | None) -> None:
    assert single_value(data) == expected


def test_sightings_name_the_alert_its_state_and_trigger() -> None:
    found = sightings(
        [
            {"metric": {"alertname": "B", "alertstate": "firing", "trigger": "T02"}},
            {"metric": {"alertname": "A", "alertstate": "pending", "trigger": "T01"}},
            {"metric": {"alertname": "SparkApiSignalAbsent", "alertstate": "firing"}},
        ]
    )
    assert [s.describe() for s in found] == [
        "A (T01) pending",
        "B (T02) firing",
        "SparkApiSignalAbsent firing",
    ]
