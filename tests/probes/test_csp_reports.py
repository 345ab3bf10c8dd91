"""CSP violation reports: endpoints by body type, report bodies, the collector's counter."""

from __future__ import annotations

import json

from pytest_spark.probes import csp_policy, csp_reports

PAGE = "http://127.0.0.1:8000/"
PARTNER = "http://127.0.0.1:9000"
STRICT = (
    "default-src 'self'; script-src 'self' http://127.0.0.1:9000; img-src 'self' "
    "http://127.0.0.1:9000; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "report-uri /csp-report; report-to csp-endpoint"
)


def findings(policy: str) -> list[str]:
    return [str(f) for f in csp_policy.grade_policy(csp_policy.parse_policy(policy))]


def test_report_endpoints_by_body_type() -> None:
    policies = csp_policy.parse_policy_header([STRICT])
    endpoints = csp_reports.report_endpoints(
        policies, 'csp-endpoint="https://reports.example/csp", other="/x"', PAGE
    )
    assert endpoints == {
        csp_reports.LEGACY_REPORT: ["http://127.0.0.1:8000/csp-report"],
        csp_reports.REPORTING_API_REPORT: ["https://reports.example/csp"],
    }
    assert csp_reports.report_endpoints(policies, "", PAGE)[csp_reports.REPORTING_API_REPORT] == []


def test_report_bodies_have_the_fields_collectors_read() -> None:
    legacy = json.loads(csp_reports.legacy_report(PAGE, STRICT, f"{PARTNER}/x.js"))
    assert legacy["csp-report"]["document-uri"] == PAGE
    assert legacy["csp-report"]["effective-directive"] == "script-src-elem"
    [report] = json.loads(csp_reports.reporting_api_report(PAGE, STRICT, f"{PARTNER}/x.js", "ua"))
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
    assert csp_reports.violation_reports_counted(text) == 3.0
    assert (
        csp_reports.violation_reports_counted("# TYPE spark_csp_violations_total counter\n") == 0.0
    )
    assert csp_reports.violation_reports_counted("up 1\n") is None
