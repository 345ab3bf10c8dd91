"""Idempotency-Key: header parsing, request fingerprints and the key's life in the database.

A key is claimed with ``INSERT … ON CONFLICT (key) DO NOTHING RETURNING`` in its own committed
statement, so a concurrent retry sees it ``in_progress`` at once (409) instead of blocking.
The order transaction later completes the key with the stored response, under a row lock on
the claim's lease token: if a lapsed lease was taken over by a retry, the original loses and
rolls back, so at most one order exists per key.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from spark_sandbox.app.problems import Problem

KEY_TTL = "24 hours"
# How long a claim may stay in progress before a retry may take it over (a crashed request).
LEASE = "10 seconds"
MAX_KEY_LENGTH = 255
_BARE_KEY = re.compile(r"[A-Za-z0-9_\-.:/+=*]+")


def key_from_headers(values: Sequence[str]) -> str:
    """The request's one key. Two ``Idempotency-Key`` lines are two keys: which one the
    client meant is unknowable, so the request is refused rather than either one guessed."""
    if len(values) > 1:
        raise _several(f"{len(values)} Idempotency-Key header lines")
    return parse_key(values[0] if values else None)


def parse_key(header: str | None) -> str:
    """The key from an RFC 8941 sf-string (``"abc"``); a bare token ``abc`` is tolerated."""
    if header is None or not header.strip():
        raise Problem(
            400, "idempotency_key_missing", "POST /api/orders needs an Idempotency-Key header"
        )
    value = header.strip()
    if _list_separators(value):
        # A proxy joins repeated header lines with commas: the same ambiguity as two lines.
        raise _several(f"a comma-separated list of keys ({value[:80]!r})")
    if value.startswith('"'):
        unquoted = _unquote(value)
        if unquoted is None:
            raise _invalid(header)
        key = unquoted
    elif _BARE_KEY.fullmatch(value):
        key = value
    else:
        raise _invalid(header)
    if not key:
        raise _invalid(header)
    if len(key) > MAX_KEY_LENGTH:
        raise Problem(
            400,
            "idempotency_key_invalid",
            f"the Idempotency-Key is {len(key)} characters long; at most {MAX_KEY_LENGTH}",
        )
    return key


def _list_separators(value: str) -> int:
    """Commas outside sf-strings: how many more members a list-valued header has."""
    commas, quoted, escaped = 0, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            commas += 1
    return commas


def _several(what: str) -> Problem:
    return Problem(
        400,
        "idempotency_key_duplicated",
        f"the request carries {what}; send exactly one Idempotency-Key per request, or the "
        "server cannot know which operation a retry repeats",
    )


def _unquote(value: str) -> str | None:
    """The content of an sf-string: printable ASCII, with only \\" and \\\\ as escapes."""
    if len(value) < 2 or not value.endswith('"'):
        return None
    chars: list[str] = []
    i, end = 1, len(value) - 1
    while i < end:
        ch = value[i]
        if ch == "\\":
            if i + 1 >= end or value[i + 1] not in '"\\':
                return None
            chars.append(value[i + 1])
            i += 2
            continue
        if ch == '"' or not 0x20 <= ord(ch) <= 0x7E:
            return None
        chars.append(ch)
        i += 1
    return "".join(chars)


def _invalid(header: str) -> Problem:
    return Problem(
        400,
        "idempotency_key_invalid",
        f"Idempotency-Key {header[:80]!r} is not a structured-field string of 1 to 255 "
        'printable characters, e.g. "8e03978e-40d5-43e8-bc93-6894a57f9324"',
    )


def fingerprint(payload: Any) -> str:
    """sha256 of the canonical JSON of the request body: key order and spacing do not matter."""
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class StoredKey:
    fingerprint: str
    status: str
    response_status: int | None
    response_body: str | None


async def claim(conn: psycopg.AsyncConnection[Any], key: str, print_: str) -> uuid.UUID | None:
    """A lease token when this request now owns ``key``; None when it was already taken."""
    token = uuid.uuid4()
    cur = await conn.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, status, lease_token, leased_until,"
        " expires_at)"
        f" VALUES (%s, %s, 'in_progress', %s, clock_timestamp() + interval '{LEASE}',"
        f" clock_timestamp() + interval '{KEY_TTL}')"
        " ON CONFLICT (key) DO NOTHING RETURNING key",
        (key, print_, token),
    )
    if await cur.fetchone() is not None:
        return token
    # A claim whose holder died (crash, dropped connection) is taken over once its lease lapses.
    cur = await conn.execute(
        "UPDATE idempotency_keys SET lease_token = %s,"
        f" leased_until = clock_timestamp() + interval '{LEASE}'"
        " WHERE key = %s AND fingerprint = %s AND status = 'in_progress'"
        " AND leased_until < clock_timestamp() RETURNING key",
        (token, key, print_),
    )
    return token if await cur.fetchone() is not None else None


async def lookup(conn: psycopg.AsyncConnection[Any], key: str) -> StoredKey | None:
    cur = await conn.execute(
        "SELECT fingerprint, status, response_status, response_body"
        " FROM idempotency_keys WHERE key = %s",
        (key,),
    )
    row = await cur.fetchone()
    return None if row is None else StoredKey(*row)


async def lock_lease(conn: psycopg.AsyncConnection[Any], key: str, token: uuid.UUID) -> bool:
    """Inside the order transaction: True while this request still holds the key's lease."""
    cur = await conn.execute(
        "SELECT 1 FROM idempotency_keys"
        " WHERE key = %s AND lease_token = %s AND status = 'in_progress' FOR UPDATE",
        (key, token),
    )
    return await cur.fetchone() is not None


async def complete(conn: psycopg.AsyncConnection[Any], key: str, status: int, body: bytes) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status = 'completed', response_status = %s,"
        " response_body = %s, lease_token = NULL, leased_until = NULL WHERE key = %s",
        (status, body.decode(), key),
    )


async def store_unclaimed(
    conn: psycopg.AsyncConnection[Any], key: str, print_: str, status: int, body: bytes
) -> None:
    """Record a response without a prior claim (the duplicate_order_under_concurrency path)."""
    await conn.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, status, response_status, response_body,"
        f" expires_at) VALUES (%s, %s, 'completed', %s, %s, clock_timestamp() + interval"
        f" '{KEY_TTL}') ON CONFLICT (key) DO UPDATE SET response_status = excluded.response_status,"
        " response_body = excluded.response_body, status = 'completed'",
        (key, print_, status, body.decode()),
    )


async def release(conn: psycopg.AsyncConnection[Any], key: str, token: uuid.UUID) -> None:
    """Give a claim back after a failure, so that the client's retry is not answered 409."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE key = %s AND lease_token = %s"
        " AND status = 'in_progress'",
        (key, token),
    )


async def collect_expired(conn: psycopg.AsyncConnection[Any], batch: int = 1000) -> int:
    """Delete one batch of expired keys; the GC loop calls this until a batch comes back short."""
    cur = await conn.execute(
        "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys"
        " WHERE expires_at < clock_timestamp() LIMIT %s)",
        (batch,),
    )
    return cur.rowcount
