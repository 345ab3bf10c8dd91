"""Bad input is the client's error: a 4xx problem saying why, never a 5xx.

A NUL or an unpaired surrogate in any text, a body that is not a JSON object, several
Idempotency-Keys, an over-long key, ids out of range and malformed provider-state parameters
are all refused before they reach the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from api_harness import Api, new_key, ticket
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

ORDER_FIELDS = ("account_id", "symbol", "side", "quantity", "price")
UNSTORABLE = {"NUL": "a\x00b", "unpaired surrogate": "a\ud800b"}


def post_order(api: Api, body: bytes, *keys: str) -> httpx.Response:
    headers = [("Content-Type", "application/json")]
    headers += [("Idempotency-Key", key) for key in (keys or (new_key(),))]
    with api.client() as client:
        answer: httpx.Response = client.post("/api/orders", content=body, headers=headers)
    return answer


def assert_problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = answer.json()
    assert doc["code"] == code and doc["detail"], doc
    return doc


def orders_of(db: psycopg.Connection[tuple[object, ...]], account: str) -> int:
    row = db.execute("SELECT count(*) FROM orders WHERE account_id LIKE %s", (account + "%",))
    counted = row.fetchone()
    assert counted is not None
    return int(str(counted[0]))


# -- order bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("what", list(UNSTORABLE))
@pytest.mark.parametrize("where", [*ORDER_FIELDS, "an extra field", "a member name"])
def test_unstorable_text_anywhere_in_an_order_is_400(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str, what: str, where: str
) -> None:
    order: dict[str, Any] = ticket(account)
    if where in ORDER_FIELDS:
        order[where] = UNSTORABLE[what] if where != "account_id" else account + UNSTORABLE[what]
    elif where == "an extra field":
        order["note"] = {"lines": ["fine", UNSTORABLE[what]]}
    else:
        order[UNSTORABLE[what]] = 1
    answer = post_order(api, json.dumps(order).encode())  # \u escapes: valid JSON text
    assert 400 <= answer.status_code < 500, answer.text
    assert orders_of(db, account) == 0


def test_nul_in_account_id_names_the_field(api: Api, account: str) -> None:
    body = json.dumps({**ticket(account), "account_id": "acct\x00"}).encode()
    doc = assert_problem(post_order(api, body), 400, "invalid_order")
    assert "$.account_id" in doc["detail"] and "NUL" in doc["detail"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_order"),
        (b"not json", "invalid_order"),
        (b"\xff\xfe{}", "invalid_order"),  # not UTF-8
        (b'{"account_id": "a\x00"}', "invalid_order"),  # a raw control character in a string
        (b"[" * 5000 + b"]" * 5000, "invalid_order"),  # deeper than the parser goes
        (b"[]", "invalid_order"),
        (b'"an order"', "invalid_order"),
        (b"42", "invalid_order"),
        (b"null", "invalid_order"),
        (b'{"quantity": NaN}', "invalid_order"),
    ],
    ids=["empty", "text", "latin-1", "raw-nul", "deep", "array", "string", "number", "null",
         "nan"],
)  # fmt: skip
def test_a_body_that_is_not_an_order_object_is_400(api: Api, body: bytes, code: str) -> None:
    assert_problem(post_order(api, body), 400, code)


# -- Idempotency-Key headers -------------------------------------------------------------------


def test_two_idempotency_key_lines_are_refused(
    api: Api, db: psycopg.Connection[tuple[object, ...]], account: str
) -> None:
    body = json.dumps(ticket(account)).encode()
    doc = assert_problem(
        post_order(api, body, new_key(), new_key()), 400, "idempotency_key_duplicated"
    )
    assert "2 Idempotency-Key header lines" in doc["detail"]
    assert orders_of(db, account) == 0


@pytest.mark.parametrize("joined", ['"k-1", "k-2"', "k-1,k-2", '"k-1",k-2', '"a\\",b", "c"'])
def test_a_comma_joined_list_of_keys_is_refused(api: Api, account: str, joined: str) -> None:
    body = json.dumps(ticket(account)).encode()
    doc = assert_problem(post_order(api, body, joined), 400, "idempotency_key_duplicated")
    assert "comma-separated list" in doc["detail"]


def test_a_comma_inside_one_quoted_key_is_one_key(api: Api, account: str) -> None:
    answer = post_order(api, json.dumps(ticket(account)).encode(), '"k,1-' + new_key()[1:])
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("length", [256, 1000])
def test_an_over_long_key_is_refused_saying_its_length(api: Api, account: str, length: int) -> None:
    body = json.dumps(ticket(account)).encode()
    for key in ("k" * length, '"' + "k" * length + '"'):
        doc = assert_problem(post_order(api, body, key), 400, "idempotency_key_invalid")
        assert f"{length} characters long; at most 255" in doc["detail"]


# -- reads and the sandbox's provider states ---------------------------------------------------


@pytest.mark.parametrize("order_id", [2**63, 2**64 + 7, 10**30])
def test_an_order_id_beyond_the_column_is_404(api: Api, order_id: int) -> None:
    with api.client() as client:
        assert_problem(client.get(f"/api/orders/{order_id}"), 404, "order_not_found")


def test_nul_in_the_positions_account_is_400(api: Api) -> None:
    with api.client() as client:
        answer = client.get("/api/positions", params={"account_id": "a\x00b"})
    assert_problem(answer, 400, "invalid_request")


@pytest.mark.parametrize(
    "state",
    [
        {"state": "an order 99999999999999999999 exists"},
        {"state": "an order 0 exists"},
        {"state": "an order exists", "params": {"order_id": "forty-two"}},
        {"state": "an order exists", "params": {"order_id": -5}},
        {"state": "an order exists", "params": {"order_id": True}},
        {"state": "an order exists", "params": {"order_id": 2**70}},
        {"state": "an order exists", "params": {"order_id": 10**6, "quantity": "many"}},
        {"state": "an order exists", "params": {"order_id": 10**6, "quantity": 10**12}},
        {"state": "an order exists", "params": {"order_id": 10**6, "price": "1e999"}},
        {"state": "an order exists", "params": {"order_id": 10**6, "price": "99999999999999.99"}},
        {"state": "an order exists", "params": {"order_id": 10**6, "side": "hold"}},
        {"state": "an order exists", "params": {"order_id": 10**6, "account_id": {"a": 1}}},
        {"state": "an order exists", "params": {"order_id": 10**6, "account_id": "a\x00"}},
        {"state": "account a\x00 has an open position in THYAO"},
        {"state": "account A has an open position in THYAO", "params": {"quantity": -1}},
        {"state": "account A has an open position in NOPE"},
        {"state": "account A has an open position in THYAO", "params": {"average_price": 1}},
        {"state": 42},
        {"state": "an order 42 exists", "params": ["not", "an", "object"]},
        {"state": "an order 42 exists", "action": "explode"},
    ],
)
def test_a_malformed_provider_state_is_4xx(api: Api, state: dict[str, Any]) -> None:
    with api.client() as client:
        answer = client.post("/_sandbox/provider-state", json=state)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("body", [b"not json", b"\xff", b"[" * 5000, b"x" * 20_000])
def test_a_provider_state_body_that_is_not_json_is_4xx(api: Api, body: bytes) -> None:
    with api.client() as client:
        answer = client.post("/_sandbox/provider-state", content=body)
    assert answer.status_code in (400, 413), answer.text


def test_a_deep_csp_report_is_400(api: Api) -> None:
    with api.client() as client:
        answer = client.post(
            "/csp-report",
            content=b"[" * 5000 + b"]" * 5000,
            headers={"Content-Type": "application/reports+json"},
        )
    assert answer.status_code == 400


# -- random input ------------------------------------------------------------------------------


# Any code point, surrogates included; and text with a NUL or a lone surrogate in it.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
UNSTORABLE_TEXT = st.builds(
    "{}{}{}".format,
    st.text(max_size=20),
    st.sampled_from(["\x00", "\ud800", "\udfff"]),
    st.text(max_size=20),
)
ANY_JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT | UNSTORABLE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)


def fuzz_settings(examples: int) -> Callable[[Any], Any]:
    def apply(test: Any) -> Any:
        return seed(20261129)(
            settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )(test)
        )

    return apply


@fuzz_settings(80)
@given(
    field=st.sampled_from([*ORDER_FIELDS, "extra"]),
    value=UNSTORABLE_TEXT | ANY_TEXT | ANY_JSON_VALUE,
)
def test_any_value_in_any_order_field_is_never_a_server_error(
    api: Api, account: str, field: str, value: Any
) -> None:
    order = {**ticket(account), field: value}
    answer = post_order(api, json.dumps(order).encode())
    assert answer.status_code < 500, (order, answer.status_code, answer.text)


# What an HTTP client can put in a header value at all: visible ASCII, spaces and tabs.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)


@fuzz_settings(40)
@given(body=st.binary(max_size=200), key=HEADER_TEXT)
def test_any_bytes_and_any_key_are_never_a_server_error(api: Api, body: bytes, key: str) -> None:
    answer = post_order(api, body, key.strip() or "k")
    assert answer.status_code < 500, (body, key, answer.status_code, answer.text)


@fuzz_settings(40)
@given(
    state=st.sampled_from(["an order {} exists", "account {} has an open position in THYAO"]),
    text=ANY_TEXT,
    params=st.dictionaries(
        st.sampled_from(["order_id", "id", "account_id", "symbol", "side", "quantity", "price"]),
        ANY_JSON_VALUE,
        max_size=3,
    ),
)
def test_any_provider_state_parameters_are_never_a_server_error(
    api: Api, state: str, text: str, params: dict[str, Any]
) -> None:
    # json.dumps rather than httpx's json=: it escapes lone surrogates and writes NaN.
    body = json.dumps({"state": state.format(text), "params": params}).encode()
    with api.client() as client:
        answer = client.post("/_sandbox/provider-state", content=body)
    assert answer.status_code < 500, (state, text, params, answer.text)
