"""K1–K3 probe logic: grading the verifier's results, the delivered order event, can-i-deploy
answers (recorded JSON; no broker is started), and one real verifier run on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.probes import pacts

MISMATCH = {
    "interactionId": "",
    "mismatches": [
        {
            "actual": "285.25",
            "expected": '"285.25"',
            "mismatch": "Expected 285.25 (Decimal) to be the same type as '285.25' (String)",
            "path": "$.price",
            "type": "BodyMismatch",
        }
    ],
    "type": "mismatches",
}
# Recorded from a verification of the web pact against the sandbox with float_money.
RESULTS_ONE_FAILED: dict[str, Any] = {
    "errors": [
        {
            "interaction": "Verifying a pact between web and spark-api Given market data is "
            "fresh - a new limit order",
            "mismatch": MISMATCH,
        }
    ],
    "interactionResults": [
        {
            "consumer": "web",
            "description": "a new limit order",
            "mismatch": MISMATCH,
            "pending": False,
            "provider": "spark-api",
            "providerStates": ["market data is fresh"],
            "result": "Error",
        },
        {
            "consumer": "web",
            "description": "an order priced off the tick grid",
            "pending": False,
            "provider": "spark-api",
            "providerStates": ["market data is fresh"],
            "result": "OK",
        },
    ],
    "notices": [],
    "pendingErrors": [],
    "result": False,
}


def test_a_mismatch_fails_the_verification_naming_interaction_and_path() -> None:
    graded = pacts.grade_verification("spark-api", RESULTS_ONE_FAILED)
    assert not graded.verified
    [failed] = graded.failed
    assert failed.description == "a new limit order"
    assert failed.states == ("market data is fresh",)
    assert failed.problems == (
        "$.price Expected 285.25 (Decimal) to be the same type as '285.25' (String)",
    )
    # The interaction's error is not repeated as a verifier-level error.
    assert graded.errors == ()
    assert graded.summary().startswith("1 of 2 interactions verified against spark-api: ")
    assert "'a new limit order' (given market data is fresh): $.price" in graded.summary()


def test_all_interactions_ok_is_verified() -> None:
    results = {
        **RESULTS_ONE_FAILED,
        "errors": [],
        "result": True,
        "interactionResults": [RESULTS_ONE_FAILED["interactionResults"][1]],
    }
    graded = pacts.grade_verification("spark-api", results)
    assert graded.verified
    assert graded.summary() == "1 of 1 interactions verified against spark-api"


@pytest.mark.parametrize(
    "results",
    [
        {"errors": [], "interactionResults": [], "result": True},
        {},
        {"errors": [], "interactionResults": [], "result": False},
        {"interactionResults": [RESULTS_ONE_FAILED["interactionResults"][1]], "result": False},
    ],
    ids=["empty-pact", "no-results", "failed-without-results", "failed-with-clean-results"],
)
def test_nothing_verified_is_not_verified(results: dict[str, Any]) -> None:
    assert not pacts.grade_verification("spark-api", results).verified


def test_an_error_outside_any_interaction_fails() -> None:
    results = {
        "errors": [
            {
                "interaction": "loading pacts",
                "mismatch": {"type": "error", "message": "no pact files found"},
            }
        ],
        "interactionResults": [RESULTS_ONE_FAILED["interactionResults"][1]],
        "result": False,
    }
    graded = pacts.grade_verification("spark-api", results)
    assert not graded.verified
    assert graded.errors == ("loading pacts: no pact files found",)


def test_delivery_body_splices_the_stored_payload_byte_for_byte() -> None:
    # A float in the stored payload must reach the contract check as the float it is.
    payload = '{"price": 285.25, "order_id": 7, "account_id": "A"}'
    row = pacts.OutboxRow(
        event_id="6f1c2b9e-3d4a-4c5b-8e7f-9a0b1c2d3e4f",
        event_type="order.accepted",
        aggregate_id=7,
        created_at=datetime(2026, 11, 26, 9, 30, 0, 123456, tzinfo=UTC),
        payload_json=payload,
    )
    body = pacts.delivery_body(row)
    assert body.endswith(b', "payload": ' + payload.encode() + b"}")
    doc = json.loads(body)
    assert doc["created_at"] == "2026-11-26T09:30:00.123456+00:00"
    assert (doc["event_type"], doc["aggregate_id"]) == ("order.accepted", 7)
    assert isinstance(doc["payload"]["price"], float)


# Recorded shapes of the Pact Broker's /can-i-deploy answer.
DEPLOYABLE = {
    "summary": {
        "deployable": True,
        "reason": "All required verification results are published and successful",
        "success": 2,
        "failed": 0,
        "unknown": 0,
    },
    "matrix": [
        {
            "consumer": {"name": "web", "version": {"number": "4f2a1c0"}},
            "provider": {"name": "spark-api", "version": {"number": "v1.4.0"}},
            "verificationResult": {"success": True, "verifiedAt": "2026-11-26T09:00:00+00:00"},
        }
    ],
}
FAILED_VERIFICATION = {
    "summary": {
        "deployable": False,
        "reason": "The verification for the pact between web 4f2a1c0 and spark-api v1.4.0 failed",
        "success": 0,
        "failed": 1,
        "unknown": 0,
    },
    "matrix": [
        {
            "consumer": {"name": "web", "version": {"number": "4f2a1c0"}},
            "provider": {"name": "spark-api", "version": {"number": "v1.4.0"}},
            "verificationResult": {"success": False},
        }
    ],
}
UNKNOWN = {
    "summary": {
        "deployable": None,
        "reason": "There is no verified pact between web (4f2a1c0) and spark-api (v1.4.0)",
        "success": 0,
        "failed": 0,
        "unknown": 1,
    },
    "matrix": [
        {
            "consumer": {"name": "web", "version": {"number": "4f2a1c0"}},
            "provider": {"name": "spark-api", "version": {"number": "v1.4.0"}},
            "verificationResult": None,
        }
    ],
}


def test_deployable_only_when_the_broker_says_true() -> None:
    decision = pacts.grade_can_i_deploy("spark-api", "v1.4.0", "production", DEPLOYABLE)
    assert decision.deployable
    assert decision.blocking == ()
    assert decision.summary().startswith("spark-api v1.4.0 to production: deployable")


def test_a_failed_verification_blocks_and_is_named() -> None:
    decision = pacts.grade_can_i_deploy("spark-api", "v1.4.0", "production", FAILED_VERIFICATION)
    assert not decision.deployable
    assert decision.blocking == ("web 4f2a1c0 → spark-api v1.4.0: verification failed",)


def test_unknown_is_not_deployable() -> None:
    decision = pacts.grade_can_i_deploy("spark-api", "v1.4.0", "production", UNKNOWN)
    assert not decision.deployable
    assert "no verified pact" in decision.reason
    assert decision.blocking == ("web 4f2a1c0 → spark-api v1.4.0: unverified",)


@pytest.mark.parametrize(
    "doc",
    [{}, {"summary": "yes"}, {"summary": {"deployable": "true"}}, {"summary": {"deployable": 1}}],
    ids=["no-summary", "summary-not-object", "string-true", "number-one"],
)
def test_a_malformed_answer_is_not_deployable(doc: dict[str, Any]) -> None:
    assert not pacts.grade_can_i_deploy("spark-api", "v1", "production", doc).deployable


def test_sandbox_state_url() -> None:
    assert (
        pacts.sandbox_state_url("http://127.0.0.1:8000/")
        == "http://127.0.0.1:8000/_sandbox/provider-state"
    )


class _Provider(BaseHTTPRequestHandler):
    """A tiny provider answering the one interaction below, with money as a number."""

    def do_GET(self) -> None:
        body = json.dumps({"id": 42, "price": 285.25}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def provider_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _money_pact(directory: Path) -> Path:
    pact_module = pacts._pact()
    pact = pact_module.Pact("web", "spark-api").with_specification("V4")
    (
        pact.upon_receiving("an order by its id")
        .given("an order 42 exists")
        .with_request("GET", "/api/orders/42")
        .will_respond_with(200)
        .with_body(
            {
                "id": pact_module.match.int(42),
                "price": pact_module.match.regex("285.25", regex=r"^-?\d+\.\d{2}$"),
            },
            content_type="application/json",
        )
        .with_matching_rules(
            {"body": {"$.price": {"combine": "AND", "matchers": [{"match": "type"}]}}},
            "Response",
        )
    )
    pact.write_file(directory, overwrite=True)
    return directory / "web-spark-api.json"


def test_real_verifier_fails_fast_and_says_why(provider_url: str, tmp_path: Path) -> None:
    """A float where the pact wants a decimal string is a mismatch, and a failing state change
    is recorded, not retried by the FFI for minutes."""
    calls: list[tuple[str, str]] = []

    def refuse(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        calls.append((state, action))
        raise pacts.StateChangeFailed("the hook is down")

    run = pacts.verify_pacts(
        "spark-api", [_money_pact(tmp_path)], base_url=provider_url, state_handler=refuse
    )
    graded = run.verification
    assert not graded.verified
    assert calls[0] == ("an order 42 exists", "setup")
    [failed] = graded.failed
    assert any(p.startswith("$.price") and "String" in p for p in failed.problems), failed
    assert "provider state 'an order 42 exists' (setup) failed: the hook is down" in graded.errors
    assert "an order by its id" in run.output
