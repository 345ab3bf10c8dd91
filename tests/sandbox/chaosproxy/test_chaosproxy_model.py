"""Toxic and address validation without a running proxy."""

from __future__ import annotations

import pytest

from spark_sandbox.chaosproxy.model import (
    ApiError,
    checked_address,
    parse_toxic,
    split_address,
    updated_toxic,
)


def test_toxic_defaults_follow_toxiproxy() -> None:
    toxic = parse_toxic({"type": "slow_close"})
    assert toxic.to_json() == {
        "name": "slow_close_downstream",
        "type": "slow_close",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"delay": 0},
    }


def test_unknown_attributes_are_ignored_and_known_ones_validated() -> None:
    toxic = parse_toxic({"type": "latency", "attributes": {"latency": 5, "colour": "red"}})
    assert toxic.attributes == {"latency": 5, "jitter": 0}
    with pytest.raises(ApiError, match=r"latency\.jitter must be an integer"):
        parse_toxic({"type": "latency", "attributes": {"jitter": 1.5}})
    with pytest.raises(ApiError, match="must not be negative"):
        parse_toxic({"type": "limit_data", "attributes": {"bytes": -1}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "latency", "stream": "both"}, "stream was invalid"),
        ({"type": "slicer"}, "invalid toxic type"),
        ({"type": "latency", "toxicity": 1.5}, "between 0 and 1"),
        ({"type": "latency", "toxicity": True}, "must be a number"),
        (["latency"], "expected a JSON object"),
    ],
)
def test_invalid_toxics_are_400(body: object, message: str) -> None:
    with pytest.raises(ApiError, match=message) as caught:
        parse_toxic(body)
    assert caught.value.status == 400


def test_update_keeps_identity_and_unchanged_attributes() -> None:
    toxic = parse_toxic({"name": "db", "type": "latency", "attributes": {"latency": 100}})
    updated = updated_toxic(toxic, {"attributes": {"jitter": 5}, "toxicity": 0.25})
    assert (updated.name, updated.type, updated.stream) == ("db", "latency", "downstream")
    assert updated.attributes == {"latency": 100, "jitter": 5}
    assert updated.toxicity == 0.25


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:5432", ("127.0.0.1", 5432)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_loopback_addresses_are_accepted(address: str, expected: tuple[str, int]) -> None:
    assert checked_address(address, "listen", allow_non_loopback=False) == expected


@pytest.mark.parametrize("address", [":8474", "0.0.0.0:1", "10.1.2.3:5432", "db.internal:5432"])
def test_non_loopback_addresses_need_the_explicit_flag(address: str) -> None:
    with pytest.raises(ApiError, match="--allow-non-loopback"):
        checked_address(address, "upstream", allow_non_loopback=False)
    assert (
        checked_address(address, "upstream", allow_non_loopback=True)[1]
        == split_address(address)[1]
    )


@pytest.mark.parametrize("address", ["5432", "host:", "host:port", "host:70000"])
def test_malformed_addresses_are_400(address: str) -> None:
    with pytest.raises(ApiError, match="is not host:port"):
        split_address(address)
