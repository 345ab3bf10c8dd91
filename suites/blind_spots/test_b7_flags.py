"""B7 Feature flags: explicit defaults, risky flags off at release, and a flag service that
answers quickly with a valid document matching the declared ``flags.toml``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.config import Target, TargetConfigError
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import flags

Limits = dict[str, dict[str, float]]
Reach = Callable[..., AbstractContextManager[list[str]]]

pytestmark = pytest.mark.blind_spot("B7")

FLAGS_FILE = "flags.toml"


def served_flags(reach: Reach, limits: dict[str, float]) -> tuple[str, list[flags.FlagFetch]]:
    """``flags_requests`` GETs of ``{api_url}/api/flags``; the last one's document is judged."""
    with reach("api_url") as [api_url]:
        url = f"{api_url.rstrip('/')}/api/flags"
        fetches = [
            flags.fetch_flags(url, limits["http_timeout_s"])
            for _ in range(int(limits["flags_requests"]))
        ]
    return url, fetches


def served_document(reach: Reach, limits: dict[str, float]) -> tuple[str, dict[str, Any]]:
    url, [*_, fetch] = served_flags(reach, {**limits, "flags_requests": 1})
    problems = flags.document_problems(fetch.document) if not fetch.error else [fetch.error]
    assert fetch.status == 200 and not problems, (
        f"GET {url} answered {fetch.status} with an unusable flag document: {'; '.join(problems)}"
    )
    return url, fetch.document


def declared_document(spark_target: Target) -> tuple[Path, dict[str, Any]]:
    try:
        path = Path(spark_target.require("ops_dir")) / FLAGS_FILE
        return path, flags.declared_document(path)
    except (OSError, ValueError, TargetConfigError) as exc:
        pytest.fail(
            f"the declared flags ({FLAGS_FILE} in ops_dir) cannot be read: {exc}", pytrace=False
        )


def test_flag_service_answers_valid_document_quickly(
    reach: Reach, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    limits = blind_spot_limits["B7"]
    url, fetches = served_flags(reach, limits)
    median = flags.median_latency_ms(fetches)
    spark_evidence.note(
        f"GET {url} x{len(fetches)}: status {sorted({f.status for f in fetches})}, latency ms "
        + ", ".join(f"{f.latency_ms:.1f}" for f in fetches)
    )
    limit = limits["flags_latency_ms"]
    spark_evidence.measure("flags_latency_median_ms", median, unit="ms", limit=limit)
    not_ok = [f for f in fetches if f.status != 200]
    problems = [f.error for f in fetches if f.error]
    if not problems:
        problems = flags.document_problems(fetches[-1].document)
    spark_evidence.measure(
        "flag_document_problems", len(problems), limit=limits["flag_document_problems"]
    )
    assert not not_ok, f"GET {url} answered {[f.status for f in not_ok]}, not 200"
    assert len(problems) < limits["flag_document_problems"], (
        f"GET {url} served an invalid flag document: {'; '.join(problems)}"
    )
    assert median < limit, (
        f"the flag service answered in a median {median:.0f} ms over {len(fetches)} requests "
        f"(limit {limit:g} ms): clients fall back to their built-in defaults when it is slow"
    )


def test_every_flag_has_explicit_default(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    url, served = served_document(reach, blind_spot_limits["B7"])
    path, declared = declared_document(spark_target)
    findings = [(url, f) for f in flags.implicit_defaults(served)]
    findings += [(str(path), f) for f in flags.implicit_defaults(declared)]
    spark_evidence.note(f"{len(served['flags'])} flags served by {url}")
    limit = blind_spot_limits["B7"]["implicit_defaults"]
    spark_evidence.measure("implicit_defaults", len(findings), unit="flags", limit=limit)
    assert len(findings) < limit, (
        "flags without an explicit boolean default (each client SDK would pick its own): "
        + "; ".join(f"{f} ({where})" for where, f in findings)
    )


def test_risky_flags_start_off(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    limits = blind_spot_limits["B7"]
    first_stage = limits["first_canary_stage_percent"]
    url, served = served_document(reach, limits)
    path, declared = declared_document(spark_target)
    findings = [(url, f) for f in flags.risky_flags_on(served, first_stage)]
    findings += [(str(path), f) for f in flags.risky_flags_on(declared, first_stage)]
    risky = sorted(n for n, f in flags.flags_by_name(served).items() if f.get("risky") is True)
    spark_evidence.note(f"risky flags served: {', '.join(risky) or 'none'}")
    limit = limits["risky_flags_on"]
    spark_evidence.measure("risky_flags_on", len(findings), unit="flags", limit=limit)
    assert len(findings) < limit, (
        f"risky flags must start off (≤ the first canary stage, {first_stage:g} %): "
        + "; ".join(f"{f} ({where})" for where, f in findings)
    )


def test_served_flags_match_declared(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    url, served = served_document(reach, blind_spot_limits["B7"])
    path, declared = declared_document(spark_target)
    findings = flags.drift(served, declared)
    spark_evidence.note(
        f"{len(served['flags'])} flags served by {url}, {len(declared['flags'])} declared in {path}"
    )
    limit = blind_spot_limits["B7"]["flags_drifted"]
    spark_evidence.measure("flags_drifted", len(findings), unit="findings", limit=limit)
    assert len(findings) < limit, (
        f"the flag service does not serve {path.name}, the declared source of truth: "
        f"{flags.describe(findings)}; redeploy the flag configuration or fix the file"
    )
