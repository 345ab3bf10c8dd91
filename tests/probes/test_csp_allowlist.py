"""CSP allowlist logic: the reviewed origins file, placeholders, and the page's requests
audited against it and the policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_spark.probes import csp_allowlist, csp_policy
from pytest_spark.probes.csp_allowlist import PageRequest

REPO = Path(__file__).resolve().parents[2]
PAGE = "http://127.0.0.1:8000/"
PARTNER = "http://127.0.0.1:9000"
STRICT = (
    "default-src 'self'; script-src 'self' http://127.0.0.1:9000; img-src 'self' "
    "http://127.0.0.1:9000; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "report-uri /csp-report; report-to csp-endpoint"
)


def findings(policy: str) -> list[str]:
    return [str(f) for f in csp_policy.grade_policy(csp_policy.parse_policy(policy))]


def allowlist_doc(*origins: str) -> dict[str, object]:
    return {"origin": [{"origin": o, "purpose": "p", "owner": "web"} for o in origins]}


def test_allowlist_placeholder_resolves_from_the_target() -> None:
    entries = csp_allowlist.parse_allowlist(
        allowlist_doc("{third_party_origin}", "https://cdn.example")
    )
    resolved = csp_allowlist.resolve_allowlist(
        entries, {"third_party_origin": PARTNER + "/"}.__getitem__
    )
    assert set(resolved) == {PARTNER, "https://cdn.example"}


def test_allowlist_placeholder_missing_endpoint_names_it() -> None:
    def endpoint(key: str) -> str:
        raise LookupError(f"{key}: not configured")

    entries = csp_allowlist.parse_allowlist(allowlist_doc("{partner_origin}"))
    with pytest.raises(LookupError, match="partner_origin"):
        csp_allowlist.resolve_allowlist(entries, endpoint)


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
    with pytest.raises(csp_allowlist.AllowlistError, match=complaint):
        csp_allowlist.parse_allowlist(allowlist_doc(origin))


def test_allowlist_entry_needs_purpose_and_owner() -> None:
    with pytest.raises(csp_allowlist.AllowlistError, match="purpose, owner"):
        csp_allowlist.parse_allowlist({"origin": [{"origin": PARTNER}]})
    with pytest.raises(csp_allowlist.AllowlistError, match=r"\[\[origin\]\]"):
        csp_allowlist.parse_allowlist({})


def test_repo_allowlist_parses() -> None:
    path = REPO / "ops" / "csp-allowlist.toml"
    assert [e.origin for e in csp_allowlist.load_allowlist(path)] == ["{third_party_origin}"]


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"origin": [{"origin": PARTNER, "purpose": "p", "owner": "o", "ownr": "x"}]}, "ownr"),
        ({"version": 1, "origin": [], "origins": []}, "origins"),
    ],
)
def test_allowlist_unknown_key_is_named(doc: dict[str, object], named: str) -> None:
    with pytest.raises(csp_allowlist.AllowlistError, match=f"unknown key.*{named}"):
        csp_allowlist.parse_allowlist(doc)


def test_audit_sorts_requests_into_own_listed_and_unlisted() -> None:
    listed = csp_allowlist.resolve_allowlist(
        csp_allowlist.parse_allowlist(allowlist_doc(PARTNER)), str
    )
    requests = [
        PageRequest(PAGE, "document"),
        PageRequest("http://127.0.0.1:8000/static/app.js", "script"),
        PageRequest("data:image/png;base64,AAAA", "image"),
        PageRequest(f"{PARTNER}/widget.js", "script"),
        PageRequest("http://localhost:9000/widget.js", "script"),
        PageRequest("http://localhost:9000/badge.svg", "image"),
    ]
    policies = csp_policy.parse_policy_header([STRICT])
    audit = csp_allowlist.audit_origins(requests, PAGE, listed, policies)
    assert set(audit.third_party) == {PARTNER, "http://localhost:9000"}
    assert set(audit.off_allowlist) == {"http://localhost:9000"}
    # The policy names only the partner: the localhost fetches would not be permitted.
    assert set(audit.not_permitted_by_csp) == {"http://localhost:9000"}
    assert "badge.svg" in csp_allowlist.describe_requests(audit.off_allowlist)


def test_policy_trusting_an_unlisted_origin_is_named() -> None:
    listed = csp_allowlist.resolve_allowlist(
        csp_allowlist.parse_allowlist(allowlist_doc(PARTNER)), str
    )
    wider = STRICT.replace("script-src 'self'", "script-src 'self' http://localhost:9000")
    policies = csp_policy.parse_policy_header([wider])
    assert csp_allowlist.origins_named_off_allowlist(policies, PAGE, listed) == [
        "http://localhost:9000"
    ]
    assert (
        csp_allowlist.origins_named_off_allowlist(
            csp_policy.parse_policy_header([STRICT]), PAGE, listed
        )
        == []
    )
    starred = csp_policy.parse_policy_header([STRICT + "; img-src https://*.cdn.example"])
    assert (
        csp_allowlist.origins_named_off_allowlist(starred, PAGE, listed) == []
    )  # repeated: ignored
    starred = csp_policy.parse_policy_header(["connect-src https://*.cdn.example"])
    assert csp_allowlist.origins_named_off_allowlist(starred, PAGE, listed) == [
        "https://*.cdn.example"
    ]
