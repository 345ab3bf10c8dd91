"""K1 provider side: the web UI's pact replayed against the target's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import pacts
from suites.limits import Limits

from .web_contract import PROVIDER

pytestmark = pytest.mark.contract("K1")


def test_web_pact_verified_against_provider(
    reach: Reach,
    web_api_pact: Path,
    web_states: pacts.StateHandler,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    spark_evidence.attach(f"pact-{web_api_pact.name}", web_api_pact)
    with reach("api_url") as [api_url]:
        run = pacts.verify_pacts(
            PROVIDER, [web_api_pact], base_url=api_url, state_handler=web_states
        )
    spark_evidence.attach(f"verification-{web_api_pact.stem}.txt", run.output.encode())
    spark_evidence.attach(
        f"verification-{web_api_pact.stem}.json", json.dumps(run.results, indent=2).encode()
    )
    verification = run.verification
    spark_evidence.note(verification.summary())
    spark_evidence.measure(
        "pact_interactions_verified", len(verification.interactions) - len(verification.failed)
    )
    spark_evidence.check(
        "pact_interactions_failed",
        len(verification.failed),
        limit=limits.k1.pact_interactions_failed,
        why=f"the web UI's pact does not hold against {api_url}, so the UI would break on this "
        f"release (verifier output attached as verification-{web_api_pact.stem}.txt): "
        f"{verification.summary()}",
    )
    # Verifier errors outside any interaction (a failed provider state) fail it as well.
    assert verification.verified, (
        f"the web UI's pact does not hold against {api_url} (verifier output attached as "
        f"verification-{web_api_pact.stem}.txt): {verification.summary()}"
    )
