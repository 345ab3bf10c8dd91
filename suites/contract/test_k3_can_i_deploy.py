"""K3 can-i-deploy: the Pact Broker must say this release of each provider can go to
production. Required only when the target names a broker (``pact_broker_url``); without one
the checklist marks K3 NOT-REQUIRED and this check has nothing to ask."""

from __future__ import annotations

import json

import pytest

from pytest_spark import CheckEvidence, Reach, SparkConfig, Target
from pytest_spark.probes import pacts
from suites.limits import Limits

from .order_event_contract import PROVIDER as OUTBOX
from .web_contract import PROVIDER as API

ENVIRONMENT = "production"

pytestmark = pytest.mark.contract("K3")


@pytest.mark.parametrize("pacticipant", [API, OUTBOX])
def test_can_i_deploy(
    pacticipant: str,
    reach: Reach,
    spark_target: Target,
    spark_config: SparkConfig,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    # Without a pact_broker_url the gate does not run this test at all (K3 is NOT-REQUIRED).
    token = spark_target.require("pact_broker_token")
    version = spark_config.release
    with reach("pact_broker_url") as [broker_url]:
        decision, doc = pacts.can_i_deploy(broker_url, token, pacticipant, version, ENVIRONMENT)
    spark_evidence.attach(f"can-i-deploy-{pacticipant}.json", json.dumps(doc, indent=2).encode())
    spark_evidence.note(decision.summary())
    spark_evidence.check(
        f"{pacticipant.replace('-', '_')}_not_deployable",
        int(not decision.deployable),
        limit=limits.k3.not_deployable,
        why=f"the Pact Broker says no, a consumer's contract would break in production: "
        f"{decision.summary()} (check the broker's matrix for {pacticipant} {version})",
    )
