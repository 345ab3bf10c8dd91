"""What the Toxiproxy REST API accepts and answers: toxic specs, addresses, API errors.

Pure logic (no sockets), so validation is unit-tested without a running proxy. The names,
defaults and messages follow Toxiproxy 2.x (``api.go``, ``toxic_collection.go``) so a chaos
suite written against this proxy runs unchanged against a real Toxiproxy in staging.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

STREAMS = ("upstream", "downstream")

# Every toxic type with its attributes and their defaults, as Toxiproxy marshals them:
# GET answers all attributes of the type, also those the client never sent.
TOXIC_ATTRIBUTES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slow_close": {"delay": 0},
    "limit_data": {"bytes": 0},
}


class ApiError(Exception):
    """An error the REST API answers as ``{"error": message, "status": code}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


def bad_request(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


def missing_field(name: str) -> ApiError:
    return ApiError(f"missing required field: {name}", 400)


PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
TOXIC_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)


@dataclass
class ToxicSpec:
    """One toxic as the API stores it; ``toxicity`` is the chance a connection gets it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def parse_toxic(body: object) -> ToxicSpec:
    """A new toxic from a POST body, with Toxiproxy's defaults (downstream, toxicity 1)."""
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    stream = body.get("stream", "downstream")
    if stream not in STREAMS:
        raise INVALID_STREAM
    kind = body.get("type")
    if kind not in TOXIC_ATTRIBUTES:
        raise INVALID_TOXIC_TYPE
    name = body.get("name") or f"{kind}_{stream}"
    if not isinstance(name, str):
        raise bad_request("name must be a string")
    toxicity = parse_toxicity(body.get("toxicity", 1.0))
    attributes = parse_attributes(kind, body.get("attributes"), TOXIC_ATTRIBUTES[kind])
    return ToxicSpec(name, kind, stream, toxicity, attributes)


def updated_toxic(current: ToxicSpec, body: object) -> ToxicSpec:
    """The toxic after a POST/PATCH: attributes and toxicity change, name/type/stream do not."""
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    toxicity = parse_toxicity(body.get("toxicity", current.toxicity))
    attributes = parse_attributes(current.type, body.get("attributes"), current.attributes)
    return ToxicSpec(current.name, current.type, current.stream, toxicity, attributes)


def parse_toxicity(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request("toxicity must be a number")
    if not 0.0 <= float(value) <= 1.0:
        raise bad_request("toxicity must be between 0 and 1")
    return float(value)


def parse_attributes(kind: str, raw: object, base: dict[str, int]) -> dict[str, int]:
    """Known attributes over ``base``; unknown keys are ignored like Go's JSON decoder does."""
    attributes = dict(base)
    if raw is None:
        return attributes
    if not isinstance(raw, dict):
        raise bad_request("attributes must be an object")
    for key in TOXIC_ATTRIBUTES[kind]:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"{kind}.{key} must be an integer")
        if value < 0:
            raise bad_request(f"{kind}.{key} must not be negative")
        attributes[key] = value
    return attributes


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) into its parts; ApiError 400 when malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise bad_request(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_address(address: str, role: str, allow_non_loopback: bool) -> tuple[str, int]:
    """Split ``address`` and refuse a non-loopback host unless the server allows it.

    The sandbox proxy must never listen on, or forward to, anything but this machine's
    loopback; an empty host would mean every interface.
    """
    host, port = split_address(address)
    if not allow_non_loopback and not is_loopback(host):
        raise ApiError(
            f"{role} address {address!r} is not on loopback; the fault proxy only binds and "
            "forwards on 127.0.0.1/::1/localhost unless started with --allow-non-loopback",
            400,
        )
    return host, port
