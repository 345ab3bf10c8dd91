"""B5 the third-party origins a page may load: the reviewed allowlist (``csp-allowlist.toml``)
against the origins the page really loaded and the ones its CSP trusts.

Pure logic except :func:`load_allowlist`; origins and source matching come from
:mod:`pytest_spark.probes.csp_policy`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytest_spark.probes.csp_policy import (
    Policy,
    is_network_url,
    named_origins,
    origin_of,
    policy_allows,
    source_allows,
)

ENTRY_KEYS = ("origin", "purpose", "owner")
PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")


@dataclass(frozen=True)
class AllowlistEntry:
    """One origin the web page may load from: a literal origin or an endpoint placeholder."""

    origin: str
    purpose: str
    owner: str


class AllowlistError(ValueError):
    """The allowlist file is malformed, or an entry cannot be resolved for this target."""


def parse_allowlist(
    doc: Mapping[str, Any], source: str = "csp-allowlist.toml"
) -> list[AllowlistEntry]:
    """``[[origin]]`` tables with ``origin``, ``purpose`` and ``owner``. An origin is either a
    literal ``scheme://host[:port]`` or exactly one ``{endpoint}`` placeholder; wildcards,
    bare schemes and paths are refused, since an allowlist entry is a reviewed origin."""
    entries = doc.get("origin")
    if not isinstance(entries, list):
        raise AllowlistError(f"{source}: expected [[origin]] tables, found none")
    _refuse_unknown(doc, {"version", "origin"}, source)
    parsed = []
    for index, raw in enumerate(entries, 1):
        where = f"{source}: [[origin]] #{index}"
        if not isinstance(raw, Mapping):
            raise AllowlistError(f"{where} must be a table")
        _refuse_unknown(raw, set(ENTRY_KEYS), where)
        missing = [k for k in ENTRY_KEYS if not isinstance(raw.get(k), str)]
        if missing:
            raise AllowlistError(f"{where} lacks {', '.join(missing)} (each a string)")
        origin = raw["origin"].strip()
        if not PLACEHOLDER.match(origin):
            _check_literal_origin(origin, where)
        parsed.append(AllowlistEntry(origin, raw["purpose"], raw["owner"]))
    return parsed


def _refuse_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    """A misspelt key would silently drop what it says; name it instead."""
    unknown = sorted(set(table) - known)
    if unknown:
        raise AllowlistError(
            f"{where}: unknown key(s) {', '.join(unknown)}; it takes {', '.join(sorted(known))}"
        )


def _check_literal_origin(origin: str, where: str) -> None:
    if "*" in origin:
        raise AllowlistError(f"{where}: {origin!r} is a wildcard; list each origin")
    if not is_network_url(origin) or not urlsplit(origin).hostname:
        raise AllowlistError(f"{where}: {origin!r} is not an origin such as https://host:port")
    if origin_of(origin) != origin.rstrip("/").lower():
        raise AllowlistError(
            f"{where}: {origin!r} is not a bare origin (write {origin_of(origin)!r})"
        )


def resolve_allowlist(
    entries: Sequence[AllowlistEntry], endpoint: Callable[[str], str]
) -> dict[str, AllowlistEntry]:
    """Serialized origin -> entry. A ``{key}`` placeholder is the origin of the target's
    endpoint ``key`` (``endpoint`` raises naming the key when the target lacks it), which is
    how an origin whose port is only known at deployment stays a single reviewed origin."""
    resolved: dict[str, AllowlistEntry] = {}
    for entry in entries:
        placeholder = PLACEHOLDER.match(entry.origin)
        if placeholder:
            value = endpoint(placeholder[1])
            _check_literal_origin(origin_of(value), f"endpoint {placeholder[1]} = {value!r}")
            resolved[origin_of(value)] = entry
        else:
            resolved[origin_of(entry.origin)] = entry
    return resolved


def load_allowlist(path: Path) -> list[AllowlistEntry]:
    with path.open("rb") as handle:
        return parse_allowlist(tomllib.load(handle), str(path))


# --- the page's requests against the allowlist and the policy --------------------------------


@dataclass(frozen=True)
class PageRequest:
    url: str
    resource_type: str


@dataclass
class OriginAudit:
    """Third-party origins the page loaded and where they fall short."""

    third_party: dict[str, list[PageRequest]] = field(default_factory=dict)
    off_allowlist: dict[str, list[PageRequest]] = field(default_factory=dict)
    not_permitted_by_csp: dict[str, list[PageRequest]] = field(default_factory=dict)


def audit_origins(
    requests: Iterable[PageRequest],
    page_url: str,
    allowlist: Mapping[str, AllowlistEntry],
    policies: Sequence[Policy],
) -> OriginAudit:
    """Each network request of the page: same-origin (fine), or a third-party origin that
    must be on the allowlist and permitted by every policy for its kind of fetch."""
    page_origin = origin_of(page_url)
    audit = OriginAudit()
    for request in requests:
        if not is_network_url(request.url):
            continue
        origin = origin_of(request.url)
        if origin == page_origin or source_allows("'self'", request.url, page_origin):
            continue
        audit.third_party.setdefault(origin, []).append(request)
        if origin not in allowlist:
            audit.off_allowlist.setdefault(origin, []).append(request)
        if not all(
            policy_allows(p, request.resource_type, request.url, page_url) for p in policies
        ):
            audit.not_permitted_by_csp.setdefault(origin, []).append(request)
    return audit


def origins_named_off_allowlist(
    policies: Sequence[Policy], page_url: str, allowlist: Mapping[str, AllowlistEntry]
) -> list[str]:
    """Origins the policy trusts that nobody reviewed: named in a directive but neither the
    page's own origin nor on the allowlist (a wildcard source is always in this list)."""
    page_origin = origin_of(page_url)
    named = set().union(*(named_origins(p, page_origin) for p in policies)) if policies else set()
    return sorted(o for o in named if o != page_origin and o not in allowlist)


def describe_requests(requests: Mapping[str, list[PageRequest]]) -> str:
    return "; ".join(
        f"{origin} ({', '.join(sorted({r.resource_type for r in reqs}))}: "
        f"{', '.join(sorted({urlsplit(r.url).path or '/' for r in reqs}))})"
        for origin, reqs in sorted(requests.items())
    )
