"""B1 Time & sequences: NTP offset, app-vs-DB clock difference, sequence anomalies."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import clock

Limits = dict[str, dict[str, float]]
Reach = Callable[..., AbstractContextManager[list[str]]]

pytestmark = pytest.mark.blind_spot("B1")


def test_ntp_offset(reach: Reach, spark_evidence: CheckEvidence, blind_spot_limits: Limits) -> None:
    limits = blind_spot_limits["B1"]
    with reach("ntp_server") as [server]:
        sample = clock.sntp_best(server, int(limits["clock_samples"]), limits["sntp_timeout_s"])
    spark_evidence.note(
        f"SNTP {server}: stratum {sample.stratum}, offset {sample.offset_ms:+.3f} ms, "
        f"delay {sample.delay_ms:.3f} ms (T1..T4 = {sample.t1:.6f} {sample.t2:.6f} "
        f"{sample.t3:.6f} {sample.t4:.6f})"
    )
    offset = abs(sample.offset_ms)
    limit = limits["ntp_offset_ms"]
    spark_evidence.measure("ntp_offset_ms", offset, unit="ms", limit=limit)
    assert offset < limit, (
        f"NTP server {server} is {sample.offset_ms:+.1f} ms off this host (limit {limit:g} ms); "
        "check the server's upstream sources and the gate host's own clock (chronyc tracking)"
    )


def test_app_db_clock_difference(
    reach: Reach, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    limits = blind_spot_limits["B1"]
    samples = int(limits["clock_samples"])
    with reach("api_url") as [api_url]:
        app = clock.best_sample(clock.app_clock_samples(api_url, samples))
    with reach("postgres_dsn") as [dsn]:
        db = clock.best_sample(clock.db_clock_samples(dsn, samples))
    difference = app.offset_ms - db.offset_ms
    spark_evidence.note(
        f"best of {samples}: app {app.offset_ms:+.3f} ms ±{app.error_ms:.3f} "
        f"(GET {api_url}/api/time), database {db.offset_ms:+.3f} ms ±{db.error_ms:.3f} "
        "(SELECT clock_timestamp()), both against the gate host"
    )
    spark_evidence.measure("app_clock_offset_ms", app.offset_ms, unit="ms")
    spark_evidence.measure("db_clock_offset_ms", db.offset_ms, unit="ms")
    limit = limits["app_db_clock_difference_ms"]
    spark_evidence.measure("app_db_clock_difference_ms", abs(difference), unit="ms", limit=limit)
    assert abs(difference) < limit, (
        f"app clock is {difference:+.1f} ms off the database clock (limit {limit:g} ms; app "
        f"{app.offset_ms:+.1f} ms, database {db.offset_ms:+.1f} ms vs the gate host); check "
        "NTP on the API hosts and the database host"
    )


def _sequences(reach: Reach, spark_evidence: CheckEvidence) -> list[clock.SequenceRow]:
    with reach("postgres_dsn") as [dsn]:
        rows = clock.read_sequences(dsn)
    spark_evidence.note(clock.describe_sequences(rows) or "no sequences")
    if not rows:
        spark_evidence.inconclusive(
            "the database has no sequences: nothing was measured; check that postgres_dsn "
            "points at the application database"
        )
    return rows


def test_sequences_not_behind(
    reach: Reach, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    limits = blind_spot_limits["B1"]
    rows = _sequences(reach, spark_evidence)
    behind = [
        a
        for a in clock.sequence_anomalies(rows, limits["sequence_max_used_fraction"])
        if a.kind == "behind"
    ]
    spark_evidence.measure(
        "sequences_behind", len(behind), unit="sequences", limit=limits["sequences_behind"]
    )
    assert len(behind) < limits["sequences_behind"], (
        f"{len(behind)} of {len(rows)} sequences would hand out an existing id: "
        + "; ".join(f"{a.sequence}: {a.detail}" for a in behind)
        + " (look for explicit-id inserts, logical loads or a restore that skipped setval)"
    )


def test_sequences_headroom(
    reach: Reach, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    limit = blind_spot_limits["B1"]["sequence_max_used_fraction"]
    rows = _sequences(reach, spark_evidence)
    used = max(r.used_fraction for r in rows)
    spark_evidence.measure("sequence_max_used_fraction", used, limit=limit)
    near = [a for a in clock.sequence_anomalies(rows, limit) if a.kind == "near_exhaustion"]
    assert not near, (
        f"{len(near)} sequences have spent more than {limit:.0%} of their range: "
        + "; ".join(f"{a.sequence}: {a.detail}" for a in near)
    )
