"""B5 violation reports: where a page sends them, well-formed bodies of both formats, and the
collector's count of what it received.

``report-uri`` sends ``application/csp-report``; ``report-to`` sends the Reporting API's
``application/reports+json`` to the group the ``Reporting-Endpoints`` header names. Pure logic
except :func:`post_report`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import urljoin

import httpx

from pytest_spark.probes.csp_policy import Policy
from pytest_spark.probes.prometheus import exposition_total

VIOLATIONS_METRIC = "spark_csp_violations_total"
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


def violation_reports_counted(metrics_text: str, metric: str = VIOLATIONS_METRIC) -> float | None:
    """The report collector's received-report count from a ``/metrics`` exposition; None when
    the deployment does not expose it."""
    return exposition_total(metrics_text, metric)


# --- I/O -------------------------------------------------------------------------------------


def post_report(url: str, media_type: str, body: bytes, timeout_s: float) -> int:
    """POST one violation report as a browser does; the status code it got."""
    response = httpx.post(
        url, content=body, timeout=timeout_s, headers={"Content-Type": media_type}
    )
    return response.status_code
