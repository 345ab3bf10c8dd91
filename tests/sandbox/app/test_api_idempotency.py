"""Idempotency-Key: the four answers, byte-for-byte replay, concurrency, leases and the GC."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import psycopg
import pytest
from api_harness import Api, new_key, place, submit_concurrently, ticket, wait_until

from spark_sandbox.app.idempotency import fingerprint


def _fingerprint(order: dict[str, object]) -> str:
    return fingerprint(json.loads(json.dumps(order), parse_float=Decimal))


def test_missing_key_is_400(api: Api, account: str) -> None:
    with api.client() as client:
        answer = client.post("/api/orders", json=ticket(account))
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "idempotency_key_missing"
    assert problem["status"] == 400 and problem["detail"] and problem["type"]


def test_replay_after_completion_is_byte_for_byte(api: Api, account: str) -> None:
    key = new_key()
    with api.client() as client:
        first = place(client, ticket(account), key)
        # Same payload with other key order and spacing: the fingerprint is of canonical JSON.
        body = json.dumps(dict(reversed(list(ticket(account).items()))), indent=2)
        again = client.post(
            "/api/orders",
            content=body,
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
    assert first.status_code == 201
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


def test_bare_token_key_is_the_same_key_as_its_quoted_form(api: Api, account: str) -> None:
    bare = f"order-{uuid.uuid4().hex}"
    with api.client() as client:
        first = place(client, ticket(account), f'"{bare}"')
        again = place(client, ticket(account), bare)
    assert first.status_code == 201
    assert again.content == first.content


def test_same_key_other_payload_is_422(api: Api, account: str) -> None:
    key = new_key()
    with api.client() as client:
        assert place(client, ticket(account, quantity=10), key).status_code == 201
        answer = place(client, ticket(account, quantity=11), key)
    assert answer.status_code == 422
    assert answer.json()["code"] == "idempotency_key_reused"


def test_same_key_while_in_flight_is_409(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    order = ticket(account)
    key = f"inflight-{uuid.uuid4().hex}"
    # A claim held by a request that is still running: in progress, lease not lapsed.
    db.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, status, lease_token, leased_until)"
        " VALUES (%s, %s, 'in_progress', %s, clock_timestamp() + interval '1 minute')",
        (key, _fingerprint(order), uuid.uuid4()),
    )
    with api.client() as client:
        answer = place(client, order, key)
    assert answer.status_code == 409
    assert answer.json()["code"] == "idempotency_key_in_use"


def test_a_lapsed_claim_is_taken_over_by_the_retry(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    order = ticket(account)
    key = f"lapsed-{uuid.uuid4().hex}"
    # The first request died mid-way (its transaction never committed) and its lease lapsed.
    db.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, status, lease_token, leased_until)"
        " VALUES (%s, %s, 'in_progress', %s, clock_timestamp() - interval '1 second')",
        (key, _fingerprint(order), uuid.uuid4()),
    )
    with api.client() as client:
        answer = place(client, order, key)
    assert answer.status_code == 201
    count = db.execute("SELECT count(*) FROM orders WHERE idempotency_key = %s", (key,))
    assert count.fetchone() == (1,)


def test_twenty_concurrent_submissions_of_one_key_create_one_order(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    key = new_key()
    statuses = submit_concurrently(api, ticket(account), key, 20)
    # 503 is allowed (a busy machine can starve the pool); such a client retries, as here.
    assert set(statuses) <= {201, 409, 503}, statuses
    with api.client() as client:
        assert place(client, ticket(account), key).status_code == 201
    orders = db.execute("SELECT id FROM orders WHERE account_id = %s", (account,)).fetchall()
    assert len(orders) == 1
    events = db.execute(
        "SELECT count(*) FROM outbox_events WHERE aggregate_id = %s", (orders[0][0],)
    ).fetchone()
    assert events == (1,)


@pytest.mark.parametrize(
    "header",
    ['"unterminated', '"bad \\x escape"', "has space", '"' + "k" * 256 + '"'],
)
def test_malformed_key_is_400(api: Api, account: str, header: str) -> None:
    with api.client() as client:
        answer = place(client, ticket(account), header)
    assert answer.status_code == 400
    assert answer.json()["code"] == "idempotency_key_invalid"


def test_keys_expire_after_24_hours_and_the_gc_deletes_them(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    key = new_key()
    with api.client() as client:
        assert place(client, ticket(account), key).status_code == 201
    stored = key.strip('"')
    ttl = db.execute(
        "SELECT expires_at - created_at FROM idempotency_keys WHERE key = %s", (stored,)
    ).fetchone()
    assert ttl is not None and ttl[0].total_seconds() == pytest.approx(24 * 3600, abs=5)
    db.execute(
        "UPDATE idempotency_keys SET expires_at = clock_timestamp() - interval '1 second'"
        " WHERE key = %s",
        (stored,),
    )
    # The test API sweeps every 0.5 s.
    wait_until(
        lambda: (
            db.execute("SELECT 1 FROM idempotency_keys WHERE key = %s", (stored,)).fetchone()
            is None
        ),
        timeout=10,
        what="the expired key deleted by the GC",
    )


def test_a_refusal_decided_after_the_claim_is_stored_and_replayed(api: Api, account: str) -> None:
    key = new_key()
    with api.client() as client:
        assert place(client, ticket(account, "SASA", "4.58", 60_000)).status_code == 201
        refused = place(client, ticket(account, "SASA", "4.58", 60_000), key)
        again = place(client, ticket(account, "SASA", "4.58", 60_000), key)
    assert refused.status_code == 422 and refused.json()["reason"] == "position_limit"
    assert again.status_code == 422
    assert again.content == refused.content
    assert again.headers["content-type"] == "application/problem+json"
