"""CSP probe logic: policy parsing and grading, COOP/COEP, origins and source matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_spark.probes import csp_policy

PAGE = "http://127.0.0.1:8000/"
PARTNER = "http://127.0.0.1:9000"
STRICT = (
    "default-src 'self'; script-src 'self' http://127.0.0.1:9000; img-src 'self' "
    "http://127.0.0.1:9000; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "report-uri /csp-report; report-to csp-endpoint"
)


def findings(policy: str) -> list[str]:
    return [str(f) for f in csp_policy.grade_policy(csp_policy.parse_policy(policy))]


def test_parser_lowercases_names_keeps_first_of_a_repeated_directive() -> None:
    policy = csp_policy.parse_policy("  Script-Src 'self' ;;script-src *; OBJECT-SRC 'none'  ")
    assert policy.directives == {"script-src": ("'self'",), "object-src": ("'none'",)}
    assert policy.ignored_duplicates == ("script-src",)
    assert any("repeated" in f for f in findings("script-src 'self'; script-src *"))


def test_header_with_commas_is_several_policies() -> None:
    policies = csp_policy.parse_policy_header(
        ["script-src 'self', object-src 'none'", "base-uri 'none'"]
    )
    assert [list(p.directives) for p in policies] == [["script-src"], ["object-src"], ["base-uri"]]


def test_fallback_to_default_src_but_not_for_base_uri_or_frame_ancestors() -> None:
    policy = csp_policy.parse_policy("default-src 'none'")
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
    assert len(csp_policy.grade_isolation_headers(headers)) == problems


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
    assert csp_policy.origin_of(url) == origin


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
    assert csp_policy.source_allows(source, url, "http://127.0.0.1:8000") is allowed


def test_policy_allows_by_resource_type() -> None:
    policy = csp_policy.parse_policy(STRICT)
    assert csp_policy.policy_allows(policy, "script", f"{PARTNER}/widget.js", PAGE)
    assert not csp_policy.policy_allows(
        policy, "fetch", f"{PARTNER}/api", PAGE
    )  # default-src 'self'
    assert csp_policy.policy_allows(policy, "document", "https://elsewhere.example/", PAGE)


@given(st.lists(st.sampled_from(["'self'", "'none'", "https:", "*", PARTNER, "'unsafe-inline'"])))
def test_grading_is_total_and_stable(sources: list[str]) -> None:
    policy = csp_policy.parse_policy(f"script-src {' '.join(sources)}; object-src 'none'")
    graded = csp_policy.grade_policy(policy)
    assert graded == csp_policy.grade_policy(csp_policy.parse_policy(str(policy)))
    if "'unsafe-inline'" in sources:
        assert any("'unsafe-inline'" in f.detail for f in graded)
