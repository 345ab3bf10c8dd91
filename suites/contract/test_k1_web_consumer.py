"""K1 consumer side: the web UI's client against pact's mock server, one interaction at a
time, and the whole pact as the provider check replays it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_spark.evidence.records import CheckEvidence

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
    spark_evidence.measure(
        "web_pact_interactions", len(described), unit="interactions", at_least=len(INTERACTIONS)
    )
    assert len(described) == len(INTERACTIONS), (
        f"the web pact {web_api_pact.name} holds {len(described)} interactions, the consumer "
        f"declares {len(INTERACTIONS)}: {described}"
    )
    assert doc["metadata"]["pactSpecification"]["version"].startswith("4"), doc["metadata"]
