"""B5 CSP / COOP / COEP: the web page in a real browser (Chromium through Playwright), its
headers from a plain GET, the third-party origins it loads against ``csp-allowlist.toml``, and
the violation-report collector."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pytest_spark import CheckEvidence, Reach, Target, TargetConfigError
from pytest_spark.probes import browser, csp_allowlist, csp_policy, csp_reports
from pytest_spark.probes.spark_api import SparkApi
from suites.limits import B5Limits, Limits

pytestmark = pytest.mark.blind_spot("B5")

ALLOWLIST_FILE = "csp-allowlist.toml"
REPORT_SUB_CHECKS = {
    csp_reports.LEGACY_REPORT: "csp_report_posts_not_204",
    csp_reports.REPORTING_API_REPORT: "reporting_api_posts_not_204",
}


@pytest.fixture(scope="module")
def page_visit(spark_target: Target, limits: Limits) -> browser.PageVisit | str:
    """One load of ``web_url`` in Chromium, shared by the module's browser checks (launching
    the browser is the slow part). A failure is handed to each check as its message, so the
    checks FAIL naming the endpoint instead of erroring in a fixture."""
    try:
        url = spark_target.require("web_url")
        with browser.chromium() as chromium:
            b5 = limits.b5
            return browser.visit(chromium, url, b5.page_load_timeout_s, b5.page_settle_s)
    except (browser.BrowserProbeError, TargetConfigError) as exc:
        return f"{exc}; check web_url in the target file (or that the deployment is up)"


def visited(page_visit: browser.PageVisit | str) -> browser.PageVisit:
    if isinstance(page_visit, str):
        pytest.fail(f"the page could not be loaded in Chromium: {page_visit}", pytrace=False)
    return page_visit


def allowlist(spark_target: Target) -> dict[str, csp_allowlist.AllowlistEntry]:
    """The deployment's allowlist with its placeholders resolved from the target's endpoints;
    a malformed file or an endpoint the target lacks fails the check naming it."""
    try:
        path = Path(spark_target.require("ops_dir")) / ALLOWLIST_FILE
        entries = csp_allowlist.load_allowlist(path)
        return csp_allowlist.resolve_allowlist(entries, spark_target.require)
    except (OSError, csp_allowlist.AllowlistError, TargetConfigError) as exc:
        pytest.fail(f"the CSP allowlist cannot be used: {exc}", pytrace=False)


def page_headers(reach: Reach, limits: B5Limits) -> tuple[str, csp_policy.PageHeaders]:
    with reach("web_url") as [url]:
        headers = csp_policy.fetch_page_headers(url, limits.http_timeout_s)
    assert headers.status == 200, f"GET {url} answered {headers.status}, not 200"
    return url, headers


def test_page_is_cross_origin_isolated(
    page_visit: browser.PageVisit | str, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    visit = visited(page_visit)
    spark_evidence.note(
        f"Chromium loaded {visit.url} ({visit.status}): crossOriginIsolated = "
        f"{str(visit.cross_origin_isolated).lower()}, {len(visit.requests)} requests, "
        f"third-party widget {visit.third_party_widget or 'not run'}; COOP "
        f"{visit.headers.get('cross-origin-opener-policy', 'absent')}, COEP "
        f"{visit.headers.get('cross-origin-embedder-policy', 'absent')}"
    )
    spark_evidence.measure("page_csp_violations", len(visit.violations), unit="violations")
    if visit.violations:
        spark_evidence.note(f"securitypolicyviolation events: {visit.violations}")
    if visit.failed_requests:
        spark_evidence.note(f"failed requests: {'; '.join(visit.failed_requests)}")
    problems = csp_policy.grade_isolation_headers(visit.headers)
    spark_evidence.check(
        "cross_origin_isolated",
        int(visit.cross_origin_isolated),
        at_least=limits.b5.cross_origin_isolated_at_least,
        why=f"window.crossOriginIsolated is false in Chromium on {visit.url}: "
        + ("; ".join(problems) or "COOP/COEP look right; check Permissions-Policy and HTTPS")
        + " (SharedArrayBuffer and precise timers are unavailable)",
    )


def test_isolation_headers(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    url, page = page_headers(reach, limits.b5)
    problems = csp_policy.grade_isolation_headers(page.headers)
    spark_evidence.note(
        f"GET {url}: Cross-Origin-Opener-Policy "
        f"{page.headers.get('cross-origin-opener-policy', 'absent')}, "
        f"Cross-Origin-Embedder-Policy {page.headers.get('cross-origin-embedder-policy', 'absent')}"
    )
    spark_evidence.check(
        "isolation_header_findings",
        len(problems),
        limit=limits.b5.isolation_header_findings,
        why=f"{url} is not set up for cross-origin isolation: {'; '.join(problems)} "
        "(the web server's security headers)",
    )


def test_loaded_origins_on_allowlist(
    page_visit: browser.PageVisit | str,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    visit = visited(page_visit)
    allowed = allowlist(spark_target)
    policies = csp_policy.parse_policy_header(visit.csp)
    audit = csp_allowlist.audit_origins(visit.requests, visit.url, allowed, policies)
    spark_evidence.note(
        f"allowlist: {', '.join(sorted(allowed)) or '(empty)'}; third-party origins loaded: "
        f"{csp_allowlist.describe_requests(audit.third_party) or 'none'}"
    )
    spark_evidence.check(
        "origins_off_allowlist",
        len(audit.off_allowlist),
        limit=limits.b5.origins_off_allowlist,
        why=f"{visit.url} loads from {len(audit.off_allowlist)} origin(s) nobody reviewed (not "
        f"on {ALLOWLIST_FILE}): {csp_allowlist.describe_requests(audit.off_allowlist)}; review "
        f"them and add them to ops/{ALLOWLIST_FILE}, or remove them from the page",
    )


def test_csp_agrees_with_allowlist(
    page_visit: browser.PageVisit | str,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    visit = visited(page_visit)
    allowed = allowlist(spark_target)
    policies = csp_policy.parse_policy_header(visit.csp)
    assert policies, f"{visit.url} was served without a Content-Security-Policy header"
    audit = csp_allowlist.audit_origins(visit.requests, visit.url, allowed, policies)
    trusted_unreviewed = csp_allowlist.origins_named_off_allowlist(policies, visit.url, allowed)
    # A violation whose blocked URL is allowlisted: the page needs an origin the CSP refuses.
    blocked_listed = [
        v for v in visit.violations if csp_policy.origin_of(str(v.get("blockedURI", ""))) in allowed
    ]
    mismatches = [f"CSP trusts {o}, which is not on {ALLOWLIST_FILE}" for o in trusted_unreviewed]
    if audit.not_permitted_by_csp:
        mismatches.append(
            "loaded, yet not permitted by the CSP: "
            + csp_allowlist.describe_requests(audit.not_permitted_by_csp)
        )
    mismatches += [f"allowlisted, yet blocked by the CSP: {v}" for v in blocked_listed]
    spark_evidence.note(f"Content-Security-Policy: {' , '.join(visit.csp)}")
    spark_evidence.check(
        "csp_allowlist_mismatches",
        len(mismatches),
        limit=limits.b5.csp_allowlist_mismatches,
        why=f"the CSP of {visit.url} and ops/{ALLOWLIST_FILE} disagree: {'; '.join(mismatches)}; "
        "name exactly the allowlisted origins in the policy",
    )


def test_policy_is_strict(reach: Reach, spark_evidence: CheckEvidence, limits: Limits) -> None:
    url, page = page_headers(reach, limits.b5)
    policies = csp_policy.parse_policy_header(page.csp)
    findings = [f for p in policies for f in csp_policy.grade_policy(p)]
    if not policies:
        header = "Content-Security-Policy"
        findings.append(csp_policy.Finding(csp_policy.HIGH, header, "header is absent"))
        if page.csp_report_only:
            findings.append(csp_policy.Finding(csp_policy.HIGH, header, "report-only"))
    spark_evidence.note(f"GET {url}: Content-Security-Policy: {' , '.join(page.csp) or '(none)'}")
    spark_evidence.check(
        "csp_findings",
        len(findings),
        limit=limits.b5.csp_findings,
        why=f"the page's CSP is weaker than B5 allows, so injected script could run "
        f"({len(findings)} findings): "
        + "; ".join(str(f) for f in findings)
        + " (see DOMAIN-FACTS §7: csp-evaluator / HTTP Observatory)",
    )


@pytest.mark.parametrize("media_type", list(REPORT_SUB_CHECKS))
def test_report_endpoint_accepts(
    media_type: str,
    reach: Reach,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    timeout = limits.b5.http_timeout_s
    url, page = page_headers(reach, limits.b5)
    policies = csp_policy.parse_policy_header(page.csp)
    headers = page.headers.get("reporting-endpoints", "")
    endpoints = csp_reports.report_endpoints(policies, headers, url)
    # A policy with only report-to (or only report-uri) still has a collector for both types.
    targets = endpoints[media_type] or [u for us in endpoints.values() for u in us]
    assert targets, (
        f"the CSP of {url} names no report endpoint (report-uri / report-to with "
        "Reporting-Endpoints): violations would go unseen"
    )
    policy_text = " , ".join(page.csp)
    blocked = "https://injected.invalid/x.js"
    if media_type == csp_reports.LEGACY_REPORT:
        body = csp_reports.legacy_report(url, policy_text, blocked)
    else:
        body = csp_reports.reporting_api_report(url, policy_text, blocked, "spark-gate")
    malformed_body = csp_reports.MALFORMED_REPORTS[media_type]
    # The collector is named by the page; its counter is on the API's metrics (when exposed).
    with reach("web_url", "api_url") as [_, api_url], SparkApi(api_url, timeout) as api:
        before = _reports_counted(api)
        statuses = {t: csp_reports.post_report(t, media_type, body, timeout) for t in targets}
        malformed = {
            t: csp_reports.post_report(t, media_type, malformed_body, timeout) for t in targets
        }
        after = _reports_counted(api)
    spark_evidence.note(
        f"POST {media_type}: well-formed -> "
        + ", ".join(f"{t} {s}" for t, s in statuses.items())
        + "; malformed (informational, 4xx expected) -> "
        + ", ".join(f"{t} {s}" for t, s in malformed.items())
    )
    if before is not None and after is not None:
        spark_evidence.measure("reports_counted_by_collector", after, unit="reports")
        spark_evidence.measure("reports_counted_during_check", after - before, unit="reports")
    else:
        spark_evidence.note(f"{api_url}/metrics has no {csp_reports.VIOLATIONS_METRIC} to count")
    bad = {t: s for t, s in statuses.items() if s != 204}
    # One sub-check per report format, so that a run without one of them cannot pass B5.
    spark_evidence.check(
        REPORT_SUB_CHECKS[media_type],
        len(bad),
        limit=limits.b5.report_posts_not_204,
        why=f"a well-formed {media_type} report was not accepted with 204: "
        + ", ".join(f"{t} answered {s}" for t, s in bad.items())
        + "; browsers drop reports the collector refuses (see the collector's log)",
    )


def _reports_counted(api: SparkApi) -> float | None:
    """The collector's received-report count; None when the API's metrics cannot tell."""
    try:
        return csp_reports.violation_reports_counted(api.metrics())
    except httpx.HTTPError:
        return None
