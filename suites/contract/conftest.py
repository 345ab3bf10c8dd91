"""Contract fixtures: the pacts written by this session's consumer side, the provider-state
handler that puts the target in each interaction's state, and reaching target endpoints with a
failure that names the config key to check."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_spark import Target
from pytest_spark.probes import pacts
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.spark_api import SparkApi

from . import order_event_contract, web_contract


@pytest.fixture(scope="session")
def pact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this session's consumer side writes its pacts (never committed)."""
    return tmp_path_factory.mktemp("pacts")


@pytest.fixture(scope="session")
def web_api_pact(pact_dir: Path) -> Path:
    """The web UI ↔ API pact, declared and exercised against the mock server in this session
    (each xdist worker writes its own, so the provider check never waits on another worker)."""
    return web_contract.write_pact(pact_dir)


@pytest.fixture(scope="session")
def order_event_pact(pact_dir: Path) -> Path:
    return order_event_contract.write_pact(pact_dir)


@pytest.fixture(scope="session")
def provider_state_url(spark_target: Target) -> str:
    """The target's provider-state hook: the sandbox API's own, else ``provider_state_url``."""
    if spark_target.is_sandbox:
        return pacts.sandbox_state_url(spark_target.require("api_url"))
    return spark_target.require("provider_state_url")


@pytest.fixture
def web_states(spark_target: Target, provider_state_url: str) -> pacts.StateHandler:
    """States of the web pact: the one the gate sets up itself through the public API (an
    earlier submission under a key), the others through the target's hook."""
    hook = pacts.hook_state_handler(provider_state_url)
    api_url = spark_target.require("api_url")

    def change(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        if state != web_contract.ORDER_PLACED:
            hook(state, action, parameters)
        elif action == "setup":
            params = parameters or {}
            # The key exactly as the pact's request header carries it, so the replay matches.
            with SparkApi(api_url, pacts.REQUEST_TIMEOUT_S) as api:
                api.submit(
                    params["order"], str(params["idempotency_key"]), as_sf_string=False
                ).expect(201, what=f"placing the order of state {state!r}")

    return change


@pytest.fixture
def order_event_producer(spark_target: Target) -> pacts.MessageProducer:
    """Produce ``order.accepted`` from the target: a real order through the API, then its
    outbox row as the publisher delivers it."""
    api_url = spark_target.require("api_url")
    dsn = spark_target.require("postgres_dsn")

    def produce(name: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
        ticket = {
            "account_id": "acct-ledger",
            "symbol": "THYAO",
            "side": "buy",
            "quantity": 10,
            "price": "285.25",
        }
        # A fresh key: the event must come from a new order, not a replay of an old one.
        with SparkApi(api_url, pacts.REQUEST_TIMEOUT_S) as api:
            order = api.submit(ticket, f"k2-{uuid.uuid4()}").expect(201, what="the K2 order")
        with Postgres(dsn, pacts.REQUEST_TIMEOUT_S) as db:
            row = db.outbox_event(int(order["id"]))
        return {
            "contents": pacts.delivery_body(row),
            "metadata": {"contentType": "application/json"},
            "content_type": "application/json",
        }

    return produce
