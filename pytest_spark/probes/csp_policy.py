"""B5 the Content-Security-Policy and COOP/COEP: parse, grade, and match URLs against sources.

Pure functions first (no browser, no HTTP), so every rule is unit-tested without a page; the
one HTTP call (the page's headers) is at the bottom. The allowlist of third-party origins is
:mod:`pytest_spark.probes.csp_allowlist`, the violation reports
:mod:`pytest_spark.probes.csp_reports`, the browser :mod:`pytest_spark.probes.browser`.

Sources: CSP Level 3, "parse a serialized CSP" (``;``-separated directives, the first of a
repeated directive wins; ``,`` separates policies in one header), "does url match expression
in origin" (source matching) and "get the effective directive" (the fallback lists). The
findings follow google/csp-evaluator's checks and the MDN HTTP Observatory's CSP grading (see
DOMAIN-FACTS §7); origins are serialized as the WHATWG URL standard does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

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


# --- I/O: the page's headers over plain HTTP ---------------------------------------------


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
