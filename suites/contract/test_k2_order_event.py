"""K2 order-event message pact: the ledger's expectations of ``order.accepted``, and the
event as the target produces it.

The provider's message comes from the target's database: a real order placed through the API,
then its ``outbox_events`` row, delivered as the publisher sends it (the payload spliced in as
stored). That row is the event's source of truth and exists the moment the order is accepted;
the consumer's ``GET /events/{id}`` shows only that an event arrived, not its payload, and
waiting for a delivery would make the check depend on the publisher's timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import pacts
from suites.limits import Limits

from . import order_event_contract
from .order_event_contract import PROVIDER

pytestmark = pytest.mark.contract("K2")


def test_ledger_handles_the_declared_event(order_event_pact: Path) -> None:
    # Writing the pact ran the ledger's expectations over the declared message (a refusal
    # fails the fixture); check the file it wrote.
    doc = json.loads(order_event_pact.read_text())
    [interaction] = doc["interactions"]
    assert interaction["description"] == order_event_contract.DESCRIPTION, interaction
    assert interaction["type"] == "Asynchronous/Messages", interaction["type"]


def test_order_event_pact_verified_against_provider(
    reach: Reach,
    order_event_pact: Path,
    provider_state_url: str,
    order_event_producer: pacts.MessageProducer,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    spark_evidence.attach(f"pact-{order_event_pact.name}", order_event_pact)
    with reach("api_url", "postgres_dsn"):
        run = pacts.verify_pacts(
            PROVIDER,
            [order_event_pact],
            state_handler=pacts.hook_state_handler(provider_state_url),
            message_producer=order_event_producer,
        )
    spark_evidence.attach(f"verification-{order_event_pact.stem}.txt", run.output.encode())
    spark_evidence.attach(
        f"verification-{order_event_pact.stem}.json", json.dumps(run.results, indent=2).encode()
    )
    verification = run.verification
    spark_evidence.note(verification.summary())
    spark_evidence.check(
        "pact_messages_failed",
        len(verification.failed),
        limit=limits.k2.pact_messages_failed,
        why="the order event the target produces breaks the ledger's pact, so the ledger "
        "would refuse or mis-book accepted orders (verifier output attached as "
        f"verification-{order_event_pact.stem}.txt): {verification.summary()}",
    )
    # Verifier errors outside any message (a failed provider state) fail it as well.
    assert verification.verified, (
        "the order event the target produces breaks the ledger's pact (verifier output "
        f"attached as verification-{order_event_pact.stem}.txt): {verification.summary()}"
    )
