"""K1 consumer side: the web UI's client against pact's mock server, one interaction at a
time, and the whole pact as the provider check replays it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_spark import CheckEvidence

from . import web_contract
from .web_contract import INTERACTIONS, WebInteraction

pytestmark = pytest.mark.contract("K1")


@pytest.mark.parametrize("interaction", INTERACTIONS, ids=lambda i: i.name)
def test_web_client_honours_its_expectation(interaction: WebInteraction) -> None:
    pact = web_contract.new_pact()
    interaction.declare(pact)
    # Leaving the mock server raises on any request the pact did not describe or never saw.
    web_contract.exercise(pact, (interaction,))


def test_web_pact_written(web_api_pact: Path, spark_evidence: CheckEvidence) -> None:
    doc = json.loads(web_api_pact.read_text())
    described = [i["description"] for i in doc["interactions"]]
    declared = len(INTERACTIONS)
    spark_evidence.check(
        "web_pact_interactions",
        len(described),
        # Exactly what the consumer declares: the count comes from the contract, not from ops.
        at_least=declared,
        limit=declared + 1,
        unit="interactions",
        why=f"the web pact {web_api_pact.name} holds {len(described)} interactions, the "
        f"consumer declares {declared}: {described}; the provider would be verified against "
        "another contract than the UI's",
    )
    assert doc["metadata"]["pactSpecification"]["version"].startswith("4"), doc["metadata"]
