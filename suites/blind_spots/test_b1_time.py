"""B1 Time & sequences: NTP offset, app-vs-DB clock difference, sequence anomalies."""

from __future__ import annotations

import pytest

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import clock
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.spark_api import SparkApi
from suites.limits import Limits

pytestmark = pytest.mark.blind_spot("B1")


def test_ntp_offset(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    with reach("ntp_server") as [server]:
        sample = clock.sntp_best(server, limits.b1.clock_samples, limits.b1.sntp_timeout_s)
    spark_evidence.note(
        f"SNTP {server}: stratum {sample.stratum}, offset {sample.offset_ms:+.3f} ms, "
        f"delay {sample.delay_ms:.3f} ms (T1..T4 = {sample.t1:.6f} {sample.t2:.6f} "
        f"{sample.t3:.6f} {sample.t4:.6f})"
    )
    spark_evidence.check(
        "ntp_offset_ms",
        abs(sample.offset_ms),
        limit=limits.b1.ntp_offset_ms,
        unit="ms",
        why=f"NTP server {server} is {sample.offset_ms:+.1f} ms off this host, so order "
        "timestamps drift; check the server's upstream sources and the gate host's own clock "
        "(chronyc tracking)",
    )


def test_app_db_clock_difference(
    reach: Reach, spark_api: SparkApi, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    samples = limits.b1.clock_samples
    with reach("api_url"):
        app = clock.best_sample(spark_api.clock_samples(samples))
    with reach("postgres_dsn") as [dsn], Postgres(dsn) as db:
        database = clock.best_sample(db.clock_samples(samples))
    difference = app.offset_ms - database.offset_ms
    spark_evidence.note(
        f"best of {samples}: app {app.offset_ms:+.3f} ms ±{app.error_ms:.3f} "
        f"(GET {spark_api.base_url}/api/time), database {database.offset_ms:+.3f} ms "
        f"±{database.error_ms:.3f} (SELECT clock_timestamp()), both against the gate host"
    )
    spark_evidence.measure("app_clock_offset_ms", app.offset_ms, unit="ms")
    spark_evidence.measure("db_clock_offset_ms", database.offset_ms, unit="ms")
    spark_evidence.check(
        "app_db_clock_difference_ms",
        abs(difference),
        limit=limits.b1.app_db_clock_difference_ms,
        unit="ms",
        why=f"the app clock is {difference:+.1f} ms off the database clock (app "
        f"{app.offset_ms:+.1f} ms, database {database.offset_ms:+.1f} ms vs the gate host), so "
        "timestamps written by each disagree; check NTP on the API hosts and the database host",
    )


def _sequences(reach: Reach, spark_evidence: CheckEvidence) -> list[clock.SequenceRow]:
    with reach("postgres_dsn") as [dsn], Postgres(dsn) as db:
        rows = db.sequences()
    spark_evidence.note(clock.describe_sequences(rows) or "no sequences")
    if not rows:
        spark_evidence.inconclusive(
            "the database has no sequences: nothing was measured; check that postgres_dsn "
            "points at the application database"
        )
    return rows


def test_sequences_not_behind(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    rows = _sequences(reach, spark_evidence)
    anomalies = clock.sequence_anomalies(rows, limits.b1.sequence_max_used_fraction)
    behind = [a for a in anomalies if a.kind == "behind"]
    spark_evidence.check(
        "sequences_behind",
        len(behind),
        limit=limits.b1.sequences_behind,
        unit="sequences",
        why=f"{len(behind)} of {len(rows)} sequences would hand out an existing id: "
        + "; ".join(f"{a.sequence}: {a.detail}" for a in behind)
        + " (look for explicit-id inserts, logical loads or a restore that skipped setval)",
    )


def test_sequences_headroom(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    limit = limits.b1.sequence_max_used_fraction
    rows = _sequences(reach, spark_evidence)
    near = [a for a in clock.sequence_anomalies(rows, limit) if a.kind == "near_exhaustion"]
    spark_evidence.check(
        "sequence_max_used_fraction",
        max(r.used_fraction for r in rows),
        limit=limit,
        why=f"{len(near)} sequences have spent more than {limit:.0%} of their range: "
        + "; ".join(f"{a.sequence}: {a.detail}" for a in near),
    )
