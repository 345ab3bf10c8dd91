"""B5 probe logic: parse and grade a Content-Security-Policy, COOP/COEP, the origin allowlist.

Pure functions first (no browser, no HTTP), so every rule is unit-tested without a page; the
few HTTP calls are at the bottom and the browser side is :mod:`pytest_spark.probes.browser`.
Not imported by ``pytest_spark.plugin`` (loading the plugin must not import httpx).

Sources: CSP Level 3, "parse a serialized CSP" (``;``-separated directives, the first of a
repeated directive wins; ``,`` separates policies in one header), "does url match expression
in origin" (source matching) and "get the effective directive" (the fallback lists). The
findings follow google/csp-evaluator's checks and the MDN HTTP Observatory's CSP grading (see
DOMAIN-FACTS §7); origins are serialized as the WHATWG URL standard does.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

HIGH, MEDIUM = "high", "medium"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# CSP3 "directive fallback list": where a directive
# that is absent takes its sources from. base-uri, form-action and frame-ancestors fall back
# to nothing, which is why a policy must name them itself.
FALLBACKS: dict[str, tuple[str, ...]] = {
    "script-src-elem": ("script-src-elem", "script-src", "default-src"),
    "script-src-attr": ("script-src-attr", "script-src", "default-src"),
    "script-src": ("script-src", "default-src"),
    "style-src-elem": ("style-src-elem", "style-src", "default-src"),
    "style-src-attr": ("style-src-attr", "style-src", "default-src"),
    "style-src": ("style-src", "default-src"),
    "worker-src": ("worker-src", "child-src", "script-src", "default-src"),
    "frame-src": ("frame-src", "child-src", "default-src"),
    "child-src": ("child-src", "default-src"),
    "img-src": ("img-src", "default-src"),
    "connect-src": ("connect-src", "default-src"),
    "font-src": ("font-src", "default-src"),
    "media-src": ("media-src", "default-src"),
    "manifest-src": ("manifest-src", "default-src"),
    "object-src": ("object-src", "default-src"),
}
# Directives whose sources decide what code runs: wildcards and bare schemes there are HIGH.
CODE_DIRECTIVES = ("script-src", "script-src-elem", "script-src-attr", "object-src", "base-uri")
UNSAFE_KEYWORDS = ("'unsafe-inline'", "'unsafe-eval'")
REQUIRED_DIRECTIVES = ("base-uri", "frame-ancestors")
# Playwright's request.resource_type -> the directive that governs that fetch.
RESOURCE_DIRECTIVES = {
    "script": "script-src-elem",
    "stylesheet": "style-src-elem",
    "image": "img-src",
    "font": "font-src",
    "media": "media-src",
    "fetch": "connect-src",
    "xhr": "connect-src",
    "eventsource": "connect-src",
    "websocket": "connect-src",
    "manifest": "manifest-src",
    "texttrack": "media-src",
}
ISOLATING_COEP = frozenset({"require-corp", "credentialless"})
SCHEME_SOURCE = re.compile(r"^[a-z][a-z0-9+.-]*:$", re.IGNORECASE)
HOST_SOURCE = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>\*|(?:\*\.)?[a-z0-9.-]+|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>\*|\d+))?(?P<path>/.*)?$",
    re.IGNORECASE,
)
NONCE_OR_HASH = re.compile(r"^'(nonce|sha256|sha384|sha512)-([^']*)'$", re.IGNORECASE)
MIN_NONCE_LENGTH = 8
PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")


# --- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """One serialized policy: directive name -> its source list, in header order."""

    directives: Mapping[str, tuple[str, ...]]
    # Repeated directives are ignored by browsers (the first wins): worth showing, never silent.
    ignored_duplicates: tuple[str, ...] = ()

    def sources(self, directive: str) -> tuple[str, ...] | None:
        """The sources the browser enforces for ``directive`` after the CSP3 fallback; None
        when neither it nor any fallback is present (the fetch is unrestricted)."""
        for name in FALLBACKS.get(directive, (directive,)):
            if name in self.directives:
                return self.directives[name]
        return None

    def __str__(self) -> str:
        return "; ".join(" ".join((name, *values)) for name, values in self.directives.items())


def parse_policy(serialized: str) -> Policy:
    """A serialized policy (no ``,``); names are lower-cased, keywords kept as written."""
    directives: dict[str, tuple[str, ...]] = {}
    duplicates: list[str] = []
    for token in serialized.split(";"):
        parts = token.split()
        if not parts:
            continue
        name = parts[0].lower()
        if name in directives:
            duplicates.append(name)
            continue
        directives[name] = tuple(parts[1:])
    return Policy(directives, tuple(duplicates))


def parse_policy_header(values: Iterable[str]) -> list[Policy]:
    """Every policy of the ``Content-Security-Policy`` header field(s); a page is bound by all
    of them, each one separately (CSP3 "parse a response's Content Security Policies")."""
    return [parse_policy(chunk) for value in values for chunk in value.split(",") if chunk.strip()]


# --- grading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    severity: str
    directive: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.directive}: {self.detail}"


def is_keyword(source: str) -> bool:
    return source.startswith("'") and source.endswith("'")


def is_wildcard(source: str) -> bool:
    """``*``, a ``*.`` host or a ``:*`` port: each trusts hosts or ports nobody reviewed."""
    if is_keyword(source):
        return False
    match = HOST_SOURCE.match(source)
    if source == "*" or match is None:
        return source == "*"
    return match["host"].startswith("*") or match["port"] == "*"


def is_bare_scheme(source: str) -> bool:
    """``https:``, ``data:``, ``blob:`` …: every URL of that scheme, i.e. any host at all."""
    return bool(SCHEME_SOURCE.match(source))


def grade_policy(policy: Policy) -> list[Finding]:
    """Everything that makes the policy weaker than the checklist's: unsafe keywords,
    wildcards and bare schemes where code is loaded, object-src other than 'none', missing
    script-src / base-uri / frame-ancestors, short nonces, ignored repeated directives."""
    findings: list[Finding] = []
    for name, values in policy.directives.items():
        lowered = [v.lower() for v in values]
        for keyword in UNSAFE_KEYWORDS:
            if keyword in lowered:
                findings.append(Finding(HIGH, name, f"allows {keyword}"))
        for value in values:
            nonce = NONCE_OR_HASH.match(value)
            if nonce and nonce[1].lower() == "nonce" and len(nonce[2]) < MIN_NONCE_LENGTH:
                findings.append(
                    Finding(MEDIUM, name, f"nonce {value} is shorter than {MIN_NONCE_LENGTH}")
                )
    for directive in CODE_DIRECTIVES:
        sources = policy.sources(directive)
        for source in sources or ():
            if is_wildcard(source):
                findings.append(Finding(HIGH, directive, f"wildcard source {source}"))
            elif is_bare_scheme(source):
                findings.append(Finding(HIGH, directive, f"bare scheme source {source}"))
    if policy.sources("script-src") is None:
        findings.append(Finding(HIGH, "script-src", "missing (and no default-src): any script"))
    objects = policy.sources("object-src")
    if objects is None:
        findings.append(Finding(HIGH, "object-src", "missing: set object-src 'none'"))
    elif [s.lower() for s in objects] != ["'none'"]:
        findings.append(Finding(HIGH, "object-src", f"is {' '.join(objects)}, not 'none'"))
    for directive in REQUIRED_DIRECTIVES:
        if directive not in policy.directives:
            findings.append(Finding(HIGH, directive, "missing (it has no default-src fallback)"))
    for name in policy.ignored_duplicates:
        findings.append(Finding(MEDIUM, name, "repeated: browsers ignore all but the first"))
    return findings


LEGACY_REPORT = "application/csp-report"
REPORTING_API_REPORT = "application/reports+json"


def report_endpoints(
    policies: Sequence[Policy], reporting_endpoints: str, page_url: str
) -> dict[str, list[str]]:
    """Absolute URLs the page's violation reports go to, by the body type sent there:
    ``report-uri`` gets ``application/csp-report``; a ``report-to`` group, resolved through the
    ``Reporting-Endpoints`` header, gets ``application/reports+json``."""
    named = dict(re.findall(r'([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"', reporting_endpoints or ""))
    legacy: list[str] = []
    reporting: list[str] = []
    for policy in policies:
        legacy += [urljoin(page_url, uri) for uri in policy.directives.get("report-uri", ())]
        groups = policy.directives.get("report-to", ())
        reporting += [urljoin(page_url, named[g]) for g in groups if g in named]
    return {
        LEGACY_REPORT: list(dict.fromkeys(legacy)),
        REPORTING_API_REPORT: list(dict.fromkeys(reporting)),
    }


# --- COOP / COEP ---------------------------------------------------------------------------


def structured_token(value: str | None) -> str:
    """The item of a structured header such as ``same-origin; report-to="x"``, lower-cased."""
    return (value or "").split(";")[0].strip().strip('"').lower()


def grade_isolation_headers(headers: Mapping[str, str]) -> list[str]:
    """What keeps the page from being cross-origin isolated, judged on its response headers
    (lower-case names): COOP must be same-origin, COEP require-corp or credentialless."""
    problems = []
    coop = structured_token(headers.get("cross-origin-opener-policy"))
    if coop != "same-origin":
        problems.append(f"Cross-Origin-Opener-Policy is {coop or 'absent'}, not same-origin")
    coep = structured_token(headers.get("cross-origin-embedder-policy"))
    if coep not in ISOLATING_COEP:
        problems.append(
            f"Cross-Origin-Embedder-Policy is {coep or 'absent'}, not require-corp or "
            "credentialless"
        )
    if headers.get("cross-origin-embedder-policy-report-only") and coep not in ISOLATING_COEP:
        problems.append("COEP is report-only, which never isolates the page")
    return problems


# --- origins, the allowlist and CSP source matching ------------------------------------------


def origin_of(url: str) -> str:
    """The serialized origin (WHATWG URL): scheme://host[:port], default port left out."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def is_network_url(url: str) -> bool:
    """Only http(s)/ws(s) URLs have an origin worth checking; data:, blob: and about: don't."""
    return urlsplit(url).scheme.lower() in DEFAULT_PORTS


def source_allows(source: str, url: str, page_origin: str) -> bool:
    """CSP3 "does url match expression in origin", for origins (paths are not compared: the
    allowlist is of origins). Keywords other than 'self' never allow a URL by origin."""
    target = urlsplit(url)
    scheme, host = target.scheme.lower(), (target.hostname or "").lower()
    port = target.port or DEFAULT_PORTS.get(scheme)
    page = urlsplit(page_origin)
    if source.lower() == "'self'":
        # 'self' also allows the secure upgrades of the page's scheme (http -> https, ws(s)).
        same_host = host == (page.hostname or "").lower()
        page_port = page.port or DEFAULT_PORTS.get(page.scheme.lower())
        page_scheme = page.scheme.lower()
        upgraded = scheme in ("https", "wss") or (page_scheme == "http" and scheme == "ws")
        same_port = port == page_port or (
            upgraded
            and port == DEFAULT_PORTS[scheme]
            and page_port == DEFAULT_PORTS.get(page_scheme)
        )
        return same_host and same_port and (scheme == page_scheme or upgraded)
    if is_keyword(source):
        return False
    if source == "*":
        return scheme in ("http", "https", "ws", "wss")
    if is_bare_scheme(source):
        return _scheme_allows(source[:-1].lower(), scheme)
    match = HOST_SOURCE.match(source)
    if match is None:
        return False
    expected_scheme = (match["scheme"] or page.scheme).lower()
    if not _scheme_allows(expected_scheme, scheme):
        return False
    pattern = match["host"].lower()
    if pattern.startswith("*."):
        if not host.endswith(pattern[1:]):
            return False
    elif pattern != "*" and pattern != host:
        return False
    if match["port"] == "*":
        return True
    wanted = int(match["port"]) if match["port"] else DEFAULT_PORTS.get(expected_scheme)
    return port == wanted or (wanted == 80 and port == 443 and scheme in ("https", "wss"))


def _scheme_allows(expected: str, actual: str) -> bool:
    """CSP3 "scheme-part match": a source also allows its secure upgrade."""
    upgrades = {"http": {"https"}, "ws": {"wss", "http", "https"}, "wss": {"https"}}
    return actual == expected or actual in upgrades.get(expected, set())


def policy_allows(policy: Policy, resource_type: str, url: str, page_origin: str) -> bool:
    """Whether the policy lets the page fetch ``url`` as ``resource_type``; a type with no
    governing directive (or a directive absent with no default-src) is unrestricted."""
    directive = RESOURCE_DIRECTIVES.get(resource_type)
    sources = policy.sources(directive) if directive else None
    if sources is None:
        return True
    return any(source_allows(s, url, page_origin) for s in sources)


def named_origins(policy: Policy, page_origin: str) -> set[str]:
    """Origins that host-source expressions of the policy name (not 'self', not keywords);
    a scheme-relative source takes the page's scheme. Wildcards are kept as written."""
    page_scheme = urlsplit(page_origin).scheme
    found: set[str] = set()
    for name, values in policy.directives.items():
        if name in ("report-uri", "report-to", "sandbox", "trusted-types"):
            continue
        for source in values:
            if is_keyword(source) or is_bare_scheme(source):
                continue
            match = HOST_SOURCE.match(source)
            if match is None:
                continue
            if is_wildcard(source):
                found.add(source)
                continue
            scheme = match["scheme"] or page_scheme
            port = f":{match['port']}" if match["port"] else ""
            found.add(origin_of(f"{scheme}://{match['host']}{port}"))
    return found


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
    parsed = []
    for index, raw in enumerate(entries, 1):
        where = f"{source}: [[origin]] #{index}"
        if not isinstance(raw, Mapping):
            raise AllowlistError(f"{where} must be a table")
        missing = [k for k in ("origin", "purpose", "owner") if not isinstance(raw.get(k), str)]
        if missing:
            raise AllowlistError(f"{where} lacks {', '.join(missing)} (each a string)")
        origin = raw["origin"].strip()
        if not PLACEHOLDER.match(origin):
            _check_literal_origin(origin, where)
        parsed.append(AllowlistEntry(origin, raw["purpose"], raw["owner"]))
    return parsed


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


# --- report bodies ---------------------------------------------------------------------------


def legacy_report(page_url: str, policy: str, blocked_url: str) -> bytes:
    """A well-formed ``application/csp-report`` body (the deprecated ``report-uri``)."""
    return json.dumps(
        {
            "csp-report": {
                "document-uri": page_url,
                "referrer": "",
                "violated-directive": "script-src-elem",
                "effective-directive": "script-src-elem",
                "original-policy": policy,
                "disposition": "enforce",
                "blocked-uri": blocked_url,
                "status-code": 200,
                "script-sample": "",
            }
        }
    ).encode()


def reporting_api_report(page_url: str, policy: str, blocked_url: str, user_agent: str) -> bytes:
    """A well-formed ``application/reports+json`` body: a JSON array of ``csp-violation``
    reports, as a browser's Reporting API sends for ``report-to``."""
    return json.dumps(
        [
            {
                "age": 10,
                "type": "csp-violation",
                "url": page_url,
                "user_agent": user_agent,
                "body": {
                    "documentURL": page_url,
                    "blockedURL": blocked_url,
                    "effectiveDirective": "script-src-elem",
                    "originalPolicy": policy,
                    "disposition": "enforce",
                    "statusCode": 200,
                    "sample": "",
                },
            }
        ]
    ).encode()


MALFORMED_REPORTS = {
    # Not JSON at all, and JSON of the wrong shape for each type: a collector should refuse
    # both with a 4xx rather than count them (or fall over with a 5xx).
    "application/csp-report": b'{"csp-report": "not an object"}',
    "application/reports+json": b'{"type": "csp-violation"}',
}


def violation_reports_counted(
    metrics_text: str, metric: str = "spark_csp_violations_total"
) -> float | None:
    """The sum of the report collector's counter over its labels, from a Prometheus text
    exposition; None when the deployment does not expose it."""
    total, seen = 0.0, False
    for line in metrics_text.splitlines():
        # A labelled counter with no report yet is declared but has no sample: that is 0.
        if line.startswith(f"# TYPE {metric} "):
            seen = True
        if line.startswith(metric) and line[len(metric) : len(metric) + 1] in ("{", " "):
            seen = True
            total += float(line.rsplit(None, 1)[-1])
    return total if seen else None


# --- I/O: the page's headers and the report collector, over plain HTTP -------------------------


@dataclass(frozen=True)
class PageHeaders:
    status: int
    headers: Mapping[str, str]
    csp: tuple[str, ...]
    csp_report_only: tuple[str, ...]


def fetch_page_headers(url: str, timeout_s: float) -> PageHeaders:
    """GET the page as a browser would navigate to it; every CSP header field is kept, since
    a page is bound by each policy separately."""
    response = httpx.get(
        url, timeout=timeout_s, headers={"Accept": "text/html"}, follow_redirects=True
    )
    return PageHeaders(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items()},
        csp=tuple(response.headers.get_list("content-security-policy")),
        csp_report_only=tuple(response.headers.get_list("content-security-policy-report-only")),
    )


def post_report(url: str, media_type: str, body: bytes, timeout_s: float) -> int:
    """POST one violation report as a browser does; the status code it got."""
    response = httpx.post(
        url, content=body, timeout=timeout_s, headers={"Content-Type": media_type}
    )
    return response.status_code


def scrape_violation_reports(metrics_url: str, timeout_s: float) -> float | None:
    """The collector's received-report count, or None when the metrics are not reachable."""
    try:
        response = httpx.get(metrics_url, timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return violation_reports_counted(response.text)
