"""B7 Feature flags: explicit defaults, risky flags off at release, and a flag service that
answers quickly with a valid document matching the declared ``flags.toml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_spark import CheckEvidence, OpsFileError, Reach, Target, TargetConfigError, load_plan
from pytest_spark.probes import flags
from pytest_spark.probes.spark_api import SparkApi
from suites.limits import B7Limits, Limits

pytestmark = pytest.mark.blind_spot("B7")

FLAGS_FILE = "flags.toml"


def served_flags(
    reach: Reach, limits: B7Limits, requests: int | None = None
) -> tuple[str, list[flags.FlagFetch]]:
    """``flags_requests`` GETs of ``{api_url}/api/flags`` on one connection, as a client SDK
    polls; the last one's document is judged."""
    with reach("api_url") as [api_url], SparkApi(api_url, limits.http_timeout_s) as api:
        fetches = [api.fetch_flags() for _ in range(requests or limits.flags_requests)]
    return f"{api.base_url}/api/flags", fetches


def served_document(reach: Reach, limits: B7Limits) -> tuple[str, dict[str, Any]]:
    url, [*_, fetch] = served_flags(reach, limits, requests=1)
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
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    url, fetches = served_flags(reach, limits.b7)
    median = flags.median_latency_ms(fetches)
    spark_evidence.note(
        f"GET {url} x{len(fetches)}: status {sorted({f.status for f in fetches})}, latency ms "
        + ", ".join(f"{f.latency_ms:.1f}" for f in fetches)
    )
    spark_evidence.check(
        "flags_latency_median_ms",
        median,
        limit=limits.b7.flags_latency_ms,
        unit="ms",
        why=f"the flag service answered in a median {median:.0f} ms over {len(fetches)} "
        "requests: clients fall back to their built-in defaults when it is slow",
    )
    problems = [f"answered {f.status}, not 200" for f in fetches if f.status != 200]
    problems += [f.error for f in fetches if f.error]
    if not problems:
        problems = flags.document_problems(fetches[-1].document)
    spark_evidence.check(
        "flag_document_problems",
        len(problems),
        limit=limits.b7.flag_document_problems,
        why=f"GET {url} served no valid flag document, so every client runs on its SDK's "
        f"defaults: {'; '.join(problems)}",
    )


def test_every_flag_has_explicit_default(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    url, served = served_document(reach, limits.b7)
    path, declared = declared_document(spark_target)
    findings = [(url, f) for f in flags.implicit_defaults(served)]
    findings += [(str(path), f) for f in flags.implicit_defaults(declared)]
    spark_evidence.note(f"{len(served['flags'])} flags served by {url}")
    spark_evidence.check(
        "implicit_defaults",
        len(findings),
        limit=limits.b7.implicit_defaults,
        unit="flags",
        why="flags without an explicit boolean default (each client SDK would pick its own): "
        + "; ".join(f"{f} ({where})" for where, f in findings),
    )


def test_risky_flags_start_off(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
    ops_dir: Path,
) -> None:
    try:
        first_stage = load_plan(ops_dir).stages[0].percent
    except (OpsFileError, IndexError) as exc:
        pytest.fail(f"the canary plan has no first stage: {exc}", pytrace=False)
    url, served = served_document(reach, limits.b7)
    path, declared = declared_document(spark_target)
    findings = [(url, f) for f in flags.risky_flags_on(served, first_stage)]
    findings += [(str(path), f) for f in flags.risky_flags_on(declared, first_stage)]
    risky = sorted(n for n, f in flags.flags_by_name(served).items() if f.get("risky") is True)
    spark_evidence.note(f"risky flags served: {', '.join(risky) or 'none'}")
    spark_evidence.check(
        "risky_flags_on",
        len(findings),
        limit=limits.b7.risky_flags_on,
        unit="flags",
        why=f"risky flags must start off (≤ the first canary stage, {first_stage:g} %) and be "
        "raised stage by stage with the canary: "
        + "; ".join(f"{f} ({where})" for where, f in findings),
    )


def test_served_flags_match_declared(
    reach: Reach,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    url, served = served_document(reach, limits.b7)
    path, declared = declared_document(spark_target)
    findings = flags.drift(served, declared)
    spark_evidence.note(
        f"{len(served['flags'])} flags served by {url}, {len(declared['flags'])} declared in {path}"
    )
    spark_evidence.check(
        "flags_drifted",
        len(findings),
        limit=limits.b7.flags_drifted,
        unit="findings",
        why=f"the flag service does not serve {path.name}, the declared source of truth: "
        f"{flags.describe(findings)}; redeploy the flag configuration or fix the file",
    )
