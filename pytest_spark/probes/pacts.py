"""K1–K3 contracts: replay consumer pacts against the provider build, produce the order event
from the target, and ask the Pact Broker whether this version can be deployed.

Pure logic first (grading the verifier's results, building the delivered order event, grading
a can-i-deploy answer); the I/O functions are at the bottom. pact-python is imported lazily,
after ``PACT_DO_NOT_TRACK`` is set, so that its FFI never tries to send telemetry. Not
imported by the plugin.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx

# Interaction timeouts of the verifier; a state change or a produced message gets the same.
REQUEST_TIMEOUT_S = 5.0
BROKER_TIMEOUT_S = 10.0

# (state, "setup" | "teardown", parameters) and (message description, metadata) -> message.
StateHandler = Callable[[str, str, dict[str, Any] | None], None]
MessageProducer = Callable[[str, dict[str, Any] | None], dict[str, Any]]


@dataclass(frozen=True)
class InteractionOutcome:
    """One interaction of a pact as the provider answered it."""

    description: str
    states: tuple[str, ...]
    ok: bool
    problems: tuple[str, ...] = ()

    def __str__(self) -> str:
        given = f" (given {', '.join(self.states)})" if self.states else ""
        if self.ok:
            return f"{self.description!r}{given}: OK"
        return f"{self.description!r}{given}: " + "; ".join(self.problems or ("failed",))


@dataclass(frozen=True)
class Verification:
    """The verifier's results, graded: verified only when every interaction was replayed and
    matched, and the verifier itself reported no error."""

    provider: str
    interactions: tuple[InteractionOutcome, ...]
    errors: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[InteractionOutcome, ...]:
        return tuple(i for i in self.interactions if not i.ok)

    @property
    def verified(self) -> bool:
        # No interaction replayed is no evidence: an empty pact must not pass.
        return bool(self.interactions) and not self.failed and not self.errors

    def summary(self) -> str:
        ok = len(self.interactions) - len(self.failed)
        head = f"{ok} of {len(self.interactions)} interactions verified against {self.provider}"
        details = [str(i) for i in self.failed] + list(self.errors)
        return head + (": " + " | ".join(details) if details else "")


def describe_mismatch(mismatch: Mapping[str, Any]) -> str:
    """One line per mismatch: where, and what the verifier said."""
    text = str(mismatch.get("mismatch") or mismatch.get("message") or mismatch)
    where = mismatch.get("path") or mismatch.get("key") or mismatch.get("type") or ""
    return f"{where} {text}".strip() if where and str(where) not in text else text


def _problems(detail: Any) -> tuple[str, ...]:
    if not isinstance(detail, Mapping):
        return (str(detail),) if detail else ()
    listed = detail.get("mismatches")
    if isinstance(listed, list) and listed:
        return tuple(describe_mismatch(m) if isinstance(m, Mapping) else str(m) for m in listed)
    message = detail.get("message") or detail.get("error")
    return (str(message),) if message else (json.dumps(detail, sort_keys=True),)


def grade_verification(provider: str, results: Mapping[str, Any]) -> Verification:
    """Grade ``Verifier.results`` (the FFI's JSON): per interaction OK or its mismatches."""
    outcomes = []
    for entry in results.get("interactionResults") or []:
        ok = entry.get("result") == "OK"
        outcomes.append(
            InteractionOutcome(
                description=str(entry.get("description", "?")),
                states=tuple(str(s) for s in entry.get("providerStates") or ()),
                ok=ok,
                problems=() if ok else _problems(entry.get("mismatch")) or ("failed",),
            )
        )
    described = {o.description for o in outcomes}
    errors = []
    for error in results.get("errors") or []:
        # Errors of an interaction are already in its outcome; anything else is the verifier's.
        name = str(error.get("interaction", ""))
        if not any(name.endswith(f"- {d}") or name == d for d in described):
            errors.append(f"{name}: " + "; ".join(_problems(error.get("mismatch"))))
    if results.get("result") is False and all(o.ok for o in outcomes) and not errors:
        # Fail closed: the verifier's own verdict wins over results that look clean.
        errors.append("the verifier reported failure without a failing interaction")
    return Verification(provider, tuple(outcomes), tuple(errors))


@dataclass(frozen=True)
class OutboxRow:
    """An ``order.accepted`` row of ``outbox_events``; the payload as stored, as JSON text."""

    event_id: str
    event_type: str
    aggregate_id: int
    created_at: datetime
    payload_json: str


def delivery_body(row: OutboxRow) -> bytes:
    """The bytes the outbox publisher POSTs to the consumer for ``row``.

    The payload is spliced in as stored: decoding and re-encoding it would turn a JSON number
    into a float and could hide exactly the money defects the contract exists for.
    """
    envelope = json.dumps(
        {
            "event_id": row.event_id,
            "event_type": row.event_type,
            "aggregate_id": row.aggregate_id,
            "created_at": row.created_at.isoformat(),
        }
    )
    return (envelope[:-1] + ', "payload": ' + row.payload_json + "}").encode()


@dataclass(frozen=True)
class DeployDecision:
    """A can-i-deploy answer: deployable only when the broker says ``true``, not merely truthy;
    ``null`` (unknown: a verification missing) is not deployable."""

    pacticipant: str
    version: str
    to: str
    deployable: bool
    reason: str
    blocking: tuple[str, ...] = ()

    def summary(self) -> str:
        verdict = "deployable" if self.deployable else "NOT deployable"
        head = f"{self.pacticipant} {self.version} to {self.to}: {verdict} ({self.reason})"
        return head + (": " + "; ".join(self.blocking) if self.blocking else "")


def _verified(row: Mapping[str, Any]) -> bool:
    result = row.get("verificationResult")
    return isinstance(result, Mapping) and result.get("success") is True


def _matrix_row(row: Mapping[str, Any]) -> str:
    consumer = row.get("consumer") or {}
    provider = row.get("provider") or {}
    result = row.get("verificationResult")

    def name(side: Mapping[str, Any]) -> str:
        number = (side.get("version") or {}).get("number", "?")
        return f"{side.get('name', '?')} {number}"

    state = "unverified" if not result else "verification failed"
    return f"{name(consumer)} → {name(provider)}: {state}"


def grade_can_i_deploy(
    pacticipant: str, version: str, to: str, doc: Mapping[str, Any]
) -> DeployDecision:
    """Grade the broker's ``/can-i-deploy`` JSON; a malformed answer is not deployable."""
    summary = doc.get("summary")
    if not isinstance(summary, Mapping):
        return DeployDecision(pacticipant, version, to, False, "the answer has no summary")
    deployable = summary.get("deployable") is True
    reason = str(summary.get("reason") or "no reason given")
    rows = [row for row in doc.get("matrix") or [] if isinstance(row, Mapping)]
    blocking = tuple(_matrix_row(row) for row in rows if not _verified(row))
    return DeployDecision(pacticipant, version, to, deployable, reason, blocking)


def sandbox_state_url(api_url: str) -> str:
    """The sandbox API's provider-state hook (enabled only with ``SPARK_SANDBOX=1``)."""
    return api_url.rstrip("/") + "/_sandbox/provider-state"


# ---- I/O -----------------------------------------------------------------------------------


def _pact() -> ModuleType:
    # Set before the first import: the FFI reads it once, and no traffic may leave loopback.
    os.environ["PACT_DO_NOT_TRACK"] = "true"
    import pact

    return pact


@dataclass(frozen=True)
class VerificationRun:
    verification: Verification
    output: str
    results: dict[str, Any]


def verify_pacts(
    provider: str,
    pact_files: Sequence[Path],
    *,
    base_url: str | None = None,
    state_handler: StateHandler | None = None,
    message_producer: MessageProducer | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
) -> VerificationRun:
    """Replay every interaction of ``pact_files`` for ``provider``: HTTP ones against
    ``base_url``, message ones through ``message_producer``; states through ``state_handler``
    (setup and teardown). A mismatch is a graded result, not an exception."""
    pact = _pact()
    host = urlsplit(base_url).hostname if base_url else "127.0.0.1"
    verifier = pact.Verifier(provider, host=host)
    if base_url:
        verifier.add_transport(url=base_url)
    failures: list[str] = []
    if message_producer is not None:
        verifier.message_handler(_recording_producer(message_producer, failures))
    for path in pact_files:
        verifier.add_source(path)
    if state_handler is not None:
        verifier.state_handler(_recording(state_handler, failures), teardown=True)
    verifier.set_request_timeout(int(request_timeout_s * 1000))
    verifier.set_coloured_output(enabled=False)
    # The verifier raises on any mismatch; its results say which, and are graded below.
    with contextlib.suppress(RuntimeError):
        verifier.verify()
    results = verifier.results
    graded = grade_verification(provider, results)
    if failures:
        graded = replace(graded, errors=graded.errors + tuple(failures))
    return VerificationRun(graded, verifier.output(strip_ansi=True), results)


def _recording(handler: StateHandler, failures: list[str]) -> StateHandler:
    """The handler, with a failure recorded instead of raised: the FFI retries a failed state
    change with exponential backoff for about two minutes, while a recorded one fails the
    verification at once (the interaction then runs without its state and says why)."""

    def change(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        try:
            handler(state, action, parameters)
        except Exception as exc:
            failures.append(f"provider state {state!r} ({action}) failed: {exc}")

    return change


def _recording_producer(producer: MessageProducer, failures: list[str]) -> MessageProducer:
    """The producer, with its failure recorded: the verifier itself only sees an error page."""

    def produce(name: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
        try:
            return producer(name, metadata)
        except Exception as exc:
            failures.append(f"producing message {name!r} failed: {exc}")
            raise

    return produce


class StateChangeFailed(RuntimeError):
    """The target's provider-state hook refused or failed a state."""


def hook_state_handler(url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> StateHandler:
    """A state handler that POSTs ``{"state", "params", "action"}`` to the target's hook."""

    def change(state: str, action: str, parameters: dict[str, Any] | None) -> None:
        if not state:
            return  # pact's generic per-interaction setup: the target needs nothing for it
        body = {"state": state, "params": parameters or {}, "action": action}
        answer = httpx.post(url, json=body, timeout=timeout_s)
        if answer.status_code >= 300:
            raise StateChangeFailed(
                f"provider state {state!r} ({action}) at {url}: HTTP {answer.status_code} "
                f"{answer.text[:300]}"
            )

    return change


def can_i_deploy(
    broker_url: str,
    token: str,
    pacticipant: str,
    version: str,
    to: str = "production",
    timeout_s: float = BROKER_TIMEOUT_S,
) -> tuple[DeployDecision, dict[str, Any]]:
    """Ask the broker ``GET /can-i-deploy``; the graded decision and the raw answer."""
    answer = httpx.get(
        broker_url.rstrip("/") + "/can-i-deploy",
        params={"pacticipant": pacticipant, "version": version, "to": to},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/hal+json"},
        timeout=timeout_s,
    )
    answer.raise_for_status()
    doc: dict[str, Any] = answer.json()
    return grade_can_i_deploy(pacticipant, version, to, doc), doc
