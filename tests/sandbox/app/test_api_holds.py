"""The sandbox's hold hook makes the in-flight 409 deterministic: the first submission of a key
is held (key claimed, order not placed) until the second has been answered."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import httpx
import psycopg
import pytest
from api_harness import Api

from pytest_spark.probes import orders

HOLD_TIMEOUT_S = 10.0


def thyao(account: str) -> orders.Ticket:
    return orders.Ticket(account, "THYAO", "buy", 1, Decimal("285.25"))


def test_a_held_key_is_refused_in_flight_every_time(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    for _ in range(5):
        held = orders.submit_while_held(api.base_url, thyao(account), orders.new_key(), 30)
        assert held is not None, "the sandbox API has a hold hook"
        assert held.during is not None and held.refused_in_flight, held.during
        assert (held.first.status, held.first.replayed) == (201, False)
    booked = db.execute("SELECT count(*) FROM orders WHERE account_id = %s", (account,))
    assert booked.fetchone() == (5,)


def test_without_a_claim_the_held_key_is_placed_twice(
    api_factory: Callable[..., Api], account: str
) -> None:
    broken = api_factory(defects=["duplicate_order_under_concurrency"])
    held = orders.submit_while_held(broken.base_url, thyao(account), orders.new_key(), 30)
    assert held is not None and held.during is not None
    assert not held.refused_in_flight
    assert held.during.status == 201 and held.first.status == 201
    assert held.during.content != held.first.content  # two orders under one key


def test_a_target_without_the_hook_is_told_apart(api_factory: Callable[..., Api]) -> None:
    production_like = api_factory(extra_env={"SPARK_SANDBOX": "0"})
    ticket = thyao("acct-no-hook")
    assert orders.submit_while_held(production_like.base_url, ticket, "k-1", 30) is None


def test_a_hold_nobody_releases_lets_go_by_itself(api: Api, account: str) -> None:
    key = orders.new_key()
    with api.client() as client:
        armed = client.post("/_sandbox/holds", json={"key": key, "timeout_s": 0.5})
        assert armed.status_code == 201
        began = time.monotonic()
        answer = client.post(
            "/api/orders", json=thyao(account).body(), headers={"Idempotency-Key": f'"{key}"'}
        )
    assert answer.status_code == 201
    assert 0.4 < time.monotonic() - began < HOLD_TIMEOUT_S


@pytest.mark.parametrize(
    "body",
    [{}, {"key": ""}, {"key": 7}, {"key": "k" * 256}, {"key": "k", "timeout_s": -1},
     {"key": "k", "timeout_s": "soon"}, {"key": "k", "timeout_s": True}, ["k"]],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/_sandbox/holds", "/_sandbox/holds/await"])
def test_a_malformed_hold_is_400(api: Api, body: object, path: str) -> None:
    with api.client() as client:
        answer = client.post(path, json=body)
    assert answer.status_code == 400, answer.text


def test_releasing_a_hold_that_is_not_armed_is_404(api: Api) -> None:
    with httpx.Client(base_url=api.base_url, timeout=5) as client:
        answer = client.post("/_sandbox/holds/release", json={"key": "never-armed"})
    assert answer.status_code == 404
