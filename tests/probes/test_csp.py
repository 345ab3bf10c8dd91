"""B5 probe logic: CSP parsing and grading, source matching, COOP/COEP, the allowlist."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_spark.probes import csp
from pytest_spark.probes.csp import PageRequest

PAGE = "http://127.0.0.1:8000/"
PARTNER = "http://127.0.0.1:9000"
STRICT = (
    "default-src 'self'; script-src 'self' http://127.0.0.1:9000; img-src 'self' "
    "http://127.0.0.1:9000; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "report-uri /csp-report; report-to csp-endpoint"
)


def findings(policy: str) -> list[str]:
    return [str(f) for f in csp.grade_policy(csp.parse_policy(policy))]


def test_parser_lowercases_names_keeps_first_of_a_repeated_directive() -> None:
    policy = csp.parse_policy("  Script-Src 'self' ;;script-src *; OBJECT-SRC 'none'  ")
    assert policy.directives == {"script-src": ("'self'",), "object-src": ("'none'",)}
    assert policy.ignored_duplicates == ("script-src",)
    assert any("repeated" in f for f in findings("script-src 'self'; script-src *"))


def test_header_with_commas_is_several_policies() -> None:
    policies = csp.parse_policy_header(["script-src 'self', object-src 'none'", "base-uri 'none'"])
    assert [list(p.directives) for p in policies] == [["script-src"], ["object-src"], ["base-uri"]]


def test_fallback_to_default_src_but_not_for_base_uri_or_frame_ancestors() -> None:
    policy = csp.parse_policy("default-src 'none'")
    assert policy.sources("script-src-elem") == ("'none'",)
    assert policy.sources("object-src") == ("'none'",)
    assert policy.sources("base-uri") is None
    assert set(findings("default-src 'none'")) == {
        "[high] base-uri: missing (it has no default-src fallback)",
        "[high] frame-ancestors: missing (it has no default-src fallback)",
    }


def test_the_sandbox_shape_of_policy_is_clean() -> None:
    assert findings(STRICT) == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (STRICT.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'"), "unsafe-inline"),
        (STRICT + "; style-src 'self' 'unsafe-inline'", "style-src: allows 'unsafe-inline'"),
        (STRICT.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'"), "unsafe-eval"),
        (STRICT.replace("script-src 'self'", "script-src *"), "wildcard source *"),
        (STRICT.replace("script-src 'self'", "script-src https://*.cdn.example"), "wildcard"),
        (STRICT.replace("script-src 'self'", "script-src http://127.0.0.1:*"), "wildcard"),
        (STRICT.replace("script-src 'self'", "script-src https:"), "bare scheme source https:"),
        (STRICT.replace("script-src 'self'", "script-src data:"), "bare scheme source data:"),
        (STRICT.replace("object-src 'none'", "object-src 'self'"), "not 'none'"),
        (STRICT.replace("object-src 'none'; ", ""), "object-src: is 'self', not 'none'"),
        (STRICT.replace("base-uri 'none'", "base-uri *"), "base-uri: wildcard"),
        (STRICT.replace("base-uri 'none'; ", ""), "base-uri: missing"),
        (STRICT.replace("frame-ancestors 'none'; ", ""), "frame-ancestors: missing"),
        ("object-src 'none'; base-uri 'none'; frame-ancestors 'none'", "script-src: missing"),
        (STRICT.replace("script-src 'self'", "script-src 'nonce-abc'"), "shorter than 8"),
    ],
)
def test_each_weakness_is_a_finding(policy: str, expected: str) -> None:
    assert any(expected in f for f in findings(policy)), findings(policy)


def test_nonce_of_eight_and_self_in_img_src_are_fine() -> None:
    assert findings(STRICT.replace("script-src 'self'", "script-src 'nonce-abcdefgh'")) == []
    # Wildcards outside the code directives are not B5's business (img-src * is common).
    assert findings(STRICT.replace("img-src 'self'", "img-src *")) == []


def test_report_endpoints_by_body_type() -> None:
    policies = csp.parse_policy_header([STRICT])
    endpoints = csp.report_endpoints(
        policies, 'csp-endpoint="https://reports.example/csp", other="/x"', PAGE
    )
    assert endpoints == {
        csp.LEGACY_REPORT: ["http://127.0.0.1:8000/csp-report"],
        csp.REPORTING_API_REPORT: ["https://reports.example/csp"],
    }
    assert csp.report_endpoints(policies, "", PAGE)[csp.REPORTING_API_REPORT] == []


COOP, COEP = "cross-origin-opener-policy", "cross-origin-embedder-policy"


@pytest.mark.parametrize(
    ("headers", "problems"),
    [
        ({COOP: "same-origin", COEP: "require-corp"}, 0),
        ({COOP: 'same-origin; report-to="x"', COEP: "credentialless"}, 0),
        ({COOP: "same-origin"}, 1),
        ({COOP: "same-origin-allow-popups", COEP: "require-corp"}, 1),
        ({COOP: "same-origin", COEP: "unsafe-none"}, 1),
        ({COOP: "same-origin", f"{COEP}-report-only": "require-corp"}, 2),
        ({}, 2),
    ],
)
def test_isolation_headers(headers: dict[str, str], problems: int) -> None:
    assert len(csp.grade_isolation_headers(headers)) == problems


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("HTTP://Example.COM:80/a?b", "http://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("https://example.com:8443/x", "https://example.com:8443"),
        ("http://127.0.0.1:9000/widget.js", "http://127.0.0.1:9000"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
    ],
)
def test_origin_serialization(url: str, origin: str) -> None:
    assert csp.origin_of(url) == origin


@pytest.mark.parametrize(
    ("source", "url", "allowed"),
    [
        ("'self'", "http://127.0.0.1:8000/app.js", True),
        ("'self'", "ws://127.0.0.1:8000/ws/prices", True),
        ("'self'", "http://127.0.0.1:8001/app.js", False),
        ("'self'", "http://localhost:8000/app.js", False),
        ("'none'", "http://127.0.0.1:8000/app.js", False),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/widget.js", True),
        ("http://127.0.0.1:9000", "https://127.0.0.1:9000/widget.js", True),
        ("https://127.0.0.1:9000", "http://127.0.0.1:9000/widget.js", False),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9001/widget.js", False),
        ("127.0.0.1:9000", "http://127.0.0.1:9000/widget.js", True),
        ("http://127.0.0.1:*", "http://127.0.0.1:9001/widget.js", True),
        ("https://*.example.com", "https://cdn.example.com/a.js", True),
        ("https://*.example.com", "https://example.com/a.js", False),
        ("https://example.com", "https://example.com:443/a.js", True),
        ("https:", "https://anything.example/a.js", True),
        ("*", "https://anything.example/a.js", True),
    ],
)
def test_source_matching(source: str, url: str, allowed: bool) -> None:
    assert csp.source_allows(source, url, "http://127.0.0.1:8000") is allowed


def allowlist_doc(*origins: str) -> dict[str, object]:
    return {"origin": [{"origin": o, "purpose": "p", "owner": "web"} for o in origins]}


def test_allowlist_placeholder_resolves_from_the_target() -> None:
    entries = csp.parse_allowlist(allowlist_doc("{third_party_origin}", "https://cdn.example"))
    resolved = csp.resolve_allowlist(entries, {"third_party_origin": PARTNER + "/"}.__getitem__)
    assert set(resolved) == {PARTNER, "https://cdn.example"}


def test_allowlist_placeholder_missing_endpoint_names_it() -> None:
    def endpoint(key: str) -> str:
        raise LookupError(f"{key}: not configured")

    entries = csp.parse_allowlist(allowlist_doc("{partner_origin}"))
    with pytest.raises(LookupError, match="partner_origin"):
        csp.resolve_allowlist(entries, endpoint)


@pytest.mark.parametrize(
    ("origin", "complaint"),
    [
        ("http://127.0.0.1:*", "wildcard"),
        ("https://*.example.com", "wildcard"),
        ("https:", "not an origin"),
        ("cdn.example.com", "not an origin"),
        ("https://cdn.example.com/lib/", "not a bare origin"),
        ("{third_party_origin}/x", "not an origin"),
    ],
)
def test_allowlist_refuses_wildcards_schemes_and_paths(origin: str, complaint: str) -> None:
    with pytest.raises(csp.AllowlistError, match=complaint):
        csp.parse_allowlist(allowlist_doc(origin))


def test_allowlist_entry_needs_purpose_and_owner() -> None:
    with pytest.raises(csp.AllowlistError, match="purpose, owner"):
        csp.parse_allowlist({"origin": [{"origin": PARTNER}]})
    with pytest.raises(csp.AllowlistError, match=r"\[\[origin\]\]"):
        csp.parse_allowlist({})


def test_repo_allowlist_parses() -> None:
    from pathlib import Path

    path = Path(csp.__file__).resolve().parents[2] / "ops" / "csp-allowlist.toml"
    assert [e.origin for e in csp.load_allowlist(path)] == ["{third_party_origin}"]


def test_audit_sorts_requests_into_own_listed_and_unlisted() -> None:
    listed = csp.resolve_allowlist(csp.parse_allowlist(allowlist_doc(PARTNER)), str)
    requests = [
        PageRequest(PAGE, "document"),
        PageRequest("http://127.0.0.1:8000/static/app.js", "script"),
        PageRequest("data:image/png;base64,AAAA", "image"),
        PageRequest(f"{PARTNER}/widget.js", "script"),
        PageRequest("http://localhost:9000/widget.js", "script"),
        PageRequest("http://localhost:9000/badge.svg", "image"),
    ]
    policies = csp.parse_policy_header([STRICT])
    audit = csp.audit_origins(requests, PAGE, listed, policies)
    assert set(audit.third_party) == {PARTNER, "http://localhost:9000"}
    assert set(audit.off_allowlist) == {"http://localhost:9000"}
    # The policy names only the partner: the localhost fetches would not be permitted.
    assert set(audit.not_permitted_by_csp) == {"http://localhost:9000"}
    assert "badge.svg" in csp.describe_requests(audit.off_allowlist)


def test_policy_trusting_an_unlisted_origin_is_named() -> None:
    listed = csp.resolve_allowlist(csp.parse_allowlist(allowlist_doc(PARTNER)), str)
    wider = STRICT.replace("script-src 'self'", "script-src 'self' http://localhost:9000")
    policies = csp.parse_policy_header([wider])
    assert csp.origins_named_off_allowlist(policies, PAGE, listed) == ["http://localhost:9000"]
    assert csp.origins_named_off_allowlist(csp.parse_policy_header([STRICT]), PAGE, listed) == []
    starred = csp.parse_policy_header([STRICT + "; img-src https://*.cdn.example"])
    assert csp.origins_named_off_allowlist(starred, PAGE, listed) == []  # repeated: ignored
    starred = csp.parse_policy_header(["connect-src https://*.cdn.example"])
    assert csp.origins_named_off_allowlist(starred, PAGE, listed) == ["https://*.cdn.example"]


def test_policy_allows_by_resource_type() -> None:
    policy = csp.parse_policy(STRICT)
    assert csp.policy_allows(policy, "script", f"{PARTNER}/widget.js", PAGE)
    assert not csp.policy_allows(policy, "fetch", f"{PARTNER}/api", PAGE)  # default-src 'self'
    assert csp.policy_allows(policy, "document", "https://elsewhere.example/", PAGE)


def test_report_bodies_have_the_fields_collectors_read() -> None:
    legacy = json.loads(csp.legacy_report(PAGE, STRICT, f"{PARTNER}/x.js"))
    assert legacy["csp-report"]["document-uri"] == PAGE
    assert legacy["csp-report"]["effective-directive"] == "script-src-elem"
    [report] = json.loads(csp.reporting_api_report(PAGE, STRICT, f"{PARTNER}/x.js", "ua"))
    assert report["type"] == "csp-violation"
    assert report["body"]["documentURL"] == PAGE


def test_collector_counter_is_summed_over_labels() -> None:
    text = (
        "# HELP spark_csp_violations_total CSP violation reports received.\n"
        "# TYPE spark_csp_violations_total counter\n"
        'spark_csp_violations_total{directive="script-src-elem"} 2.0\n'
        'spark_csp_violations_total{directive="img-src"} 1.0\n'
        "spark_csp_violations_created 1.7e9\n"
    )
    assert csp.violation_reports_counted(text) == 3.0
    assert csp.violation_reports_counted("# TYPE spark_csp_violations_total counter\n") == 0.0
    assert csp.violation_reports_counted("up 1\n") is None


@given(st.lists(st.sampled_from(["'self'", "'none'", "https:", "*", PARTNER, "'unsafe-inline'"])))
def test_grading_is_total_and_stable(sources: list[str]) -> None:
    policy = csp.parse_policy(f"script-src {' '.join(sources)}; object-src 'none'")
    graded = csp.grade_policy(policy)
    assert graded == csp.grade_policy(csp.parse_policy(str(policy)))
    if "'unsafe-inline'" in sources:
        assert any("'unsafe-inline'" in f.detail for f in graded)
